//! The host training engine: owns the buffers a target network needs and runs core ops on them.
//!
//! A batch is split into contiguous halves, one per core (`std::thread::scope`), and each half is
//! processed in small chunks so the im2col scratch and activations stay in the core's cache; every
//! chunk adds its share of the gradient into its thread's buffer, and the buffers are summed before Adam.

use crate::kernels::gemm::HostGemm;
use crate::training::metrics::Evaluation;
pub use nino_core::adam::AdamConfig;
use nino_core::adam::adam_step;
use nino_core::error::check_len;
use nino_core::net;
use nino_core::ops::loss::{count_correct, cross_entropy_sum};
use nino_core::{Arch, Error};

/// f32 values a chunk's buffers may take so that they stay in one core's L2 cache (1 MiB here).
const CHUNK_BUDGET: usize = 196_608;

/// Examples per chunk: as many as fit [`CHUNK_BUDGET`] (2 for FM-16, 1 for FM-32), at most 16.
fn chunk_for(arch: &Arch) -> usize {
    let per = net::work_len(arch, 1) + net::activation_len(arch, 1);
    (CHUNK_BUDGET / per.max(1)).clamp(1, 16)
}

/// Per-thread buffers.
struct Worker {
    chunk: usize,
    acts: Vec<f32>,
    work: Vec<f32>,
    gpacked: Vec<f32>,
}

impl Worker {
    fn new(arch: &Arch) -> Worker {
        let cap = chunk_for(arch);
        Worker {
            chunk: cap,
            acts: vec![0.0; net::activation_len(arch, cap)],
            work: vec![0.0; net::work_len_kept(arch, cap)],
            gpacked: vec![0.0; arch.param_count()],
        }
    }

    /// Adds the gradient of `scale * sum CE` over `x` into `gpacked`; returns the CE sum.
    fn grad(&mut self, arch: &Arch, packed: &[f32], x: &[f32], y: &[u32], scale: f32) -> Result<f32, Error> {
        self.gpacked.fill(0.0);
        let per = arch.input.len();
        let mut loss = 0.0;
        for (xc, yc) in x.chunks(self.chunk * per).zip(y.chunks(self.chunk)) {
            loss += net::accumulate_grad_packed(
                arch,
                packed,
                xc,
                yc,
                scale,
                &mut self.acts,
                &mut self.work,
                &mut self.gpacked,
                &HostGemm,
            )?;
        }
        Ok(loss)
    }

    /// Sum of CE and number correct over `x`.
    fn eval(&mut self, arch: &Arch, packed: &[f32], x: &[f32], y: &[u32]) -> Result<(f32, usize), Error> {
        let per = arch.input.len();
        let (mut loss, mut correct) = (0.0f64, 0);
        for (xc, yc) in x.chunks(self.chunk * per).zip(y.chunks(self.chunk)) {
            let logits = net::forward_packed(arch, packed, xc, &mut self.acts, &mut self.work, &HostGemm)?;
            loss += cross_entropy_sum(logits, yc, arch.classes, 1.0, None)? as f64;
            correct += count_correct(logits, yc, arch.classes)?;
        }
        Ok((loss as f32, correct))
    }
}

/// A target network with its parameters, Adam state and every buffer training and evaluation need.
pub struct Engine {
    arch: Arch,
    params: Vec<f32>,
    adam: AdamConfig,
    m: Vec<f32>,
    v: Vec<f32>,
    t: u64,
    packed: Vec<f32>,
    grad: Vec<f32>,
    workers: Vec<Worker>,
}

impl Engine {
    /// An engine for `arch` starting at `params` (PyTorch order) with fresh Adam state; `batch` is the
    /// usual training batch size (any size is accepted later; it must be positive).
    pub fn new(arch: Arch, params: Vec<f32>, adam: AdamConfig, batch: usize) -> Result<Engine, Error> {
        let p = arch.param_count();
        check_len("params", params.len(), p)?;
        if batch == 0 {
            return Err(Error::InvalidArgument("engine: batch size must be positive"));
        }
        if params.iter().any(|v| !v.is_finite()) {
            return Err(Error::NonFinite("initial parameters"));
        }
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 2);
        let workers = (0..threads).map(|_| Worker::new(&arch)).collect();
        Ok(Engine {
            params,
            adam,
            m: vec![0.0; p],
            v: vec![0.0; p],
            t: 0,
            packed: vec![0.0; net::packed_len(&arch)],
            grad: vec![0.0; p],
            workers,
            arch,
        })
    }

    /// The network's architecture.
    pub fn arch(&self) -> &Arch {
        &self.arch
    }

    /// Current parameters (PyTorch order).
    pub fn params(&self) -> &[f32] {
        &self.params
    }

    /// Writable parameters, for nowcasts and rollbacks; Adam's moments and step count stay as they are.
    pub fn params_mut(&mut self) -> &mut [f32] {
        &mut self.params
    }

    /// Adam steps taken so far (PyTorch's `state['step']`).
    pub fn adam_step_count(&self) -> u64 {
        self.t
    }

    /// Adam's first and second moments `(m, v)`, for snapshots and rollback.
    pub fn adam_moments(&self) -> (&[f32], &[f32]) {
        (&self.m, &self.v)
    }

    /// The Adam configuration in use.
    pub fn adam_config(&self) -> &AdamConfig {
        &self.adam
    }

    /// Restores Adam's state (moments and step count) from a snapshot.
    pub fn set_adam_state(&mut self, m: &[f32], v: &[f32], t: u64) -> Result<(), Error> {
        check_len("adam m", m.len(), self.m.len())?;
        check_len("adam v", v.len(), self.v.len())?;
        self.m.copy_from_slice(m);
        self.v.copy_from_slice(v);
        self.t = t;
        Ok(())
    }

    /// The gradient of the mean loss computed by the last [`Engine::train_step`] or [`Engine::gradient`].
    pub fn last_grad(&self) -> &[f32] {
        &self.grad
    }

    fn check_batch(&self, x: &[f32], y: &[u32]) -> Result<usize, Error> {
        let n = y.len();
        if n == 0 {
            return Err(Error::InvalidArgument("engine: empty batch"));
        }
        check_len("input batch", x.len(), n * self.arch.input.len())?;
        if y.iter().any(|&c| c as usize >= self.arch.classes) {
            return Err(Error::InvalidArgument("engine: label out of range"));
        }
        Ok(n)
    }

    /// Splits `n` examples into one contiguous range per worker (at least one example each).
    fn ranges(&self, n: usize) -> Vec<std::ops::Range<usize>> {
        let t = self.workers.len().min(n).max(1);
        (0..t).map(|i| i * n / t..(i + 1) * n / t).collect()
    }

    /// Computes the mean loss and its gradient (into [`Engine::last_grad`]) without updating anything.
    pub fn gradient(&mut self, x: &[f32], y: &[u32]) -> Result<f32, Error> {
        let n = self.check_batch(x, y)?;
        net::pack(&self.arch, &self.params, &mut self.packed)?;
        let per = self.arch.input.len();
        let ranges = self.ranges(n);
        let scale = 1.0 / n as f32;
        let (arch, packed) = (&self.arch, &self.packed[..]);
        let results: Vec<Result<f32, Error>> = std::thread::scope(|s| {
            let mut it = self.workers.iter_mut().zip(&ranges);
            let (w0, r0) = it.next().expect("at least one worker");
            let handles: Vec<_> = it
                .map(|(w, r)| {
                    let (xs, ys) = (&x[r.start * per..r.end * per], &y[r.clone()]);
                    s.spawn(move || w.grad(arch, packed, xs, ys, scale))
                })
                .collect();
            let mut out = vec![w0.grad(arch, packed, &x[r0.start * per..r0.end * per], &y[r0.clone()], scale)];
            out.extend(handles.into_iter().map(|h| h.join().unwrap_or(Err(Error::InvalidArgument("worker panicked")))));
            out
        });
        let mut loss = 0.0f32;
        for r in results {
            loss += r?;
        }
        let (first, rest) = self.workers.split_at_mut(1);
        for w in rest.iter().take(ranges.len() - 1) {
            first[0].gpacked.iter_mut().zip(&w.gpacked).for_each(|(a, b)| *a += b);
        }
        self.grad.fill(0.0);
        net::unpack_grad(&self.arch, &first[0].gpacked, &mut self.grad)?;
        Ok(loss / n as f32)
    }

    /// One training step: forward, backward and Adam on the batch; returns the batch's mean loss before
    /// the update (NaN if the parameters or data produce it: the caller checks).
    pub fn train_step(&mut self, x: &[f32], y: &[u32]) -> Result<f32, Error> {
        let loss = self.gradient(x, y)?;
        adam_step(&self.adam, &mut self.params, &self.grad, &mut self.m, &mut self.v, &mut self.t)?;
        Ok(loss)
    }

    /// Mean loss of the batch, forward only.
    pub fn loss(&mut self, x: &[f32], y: &[u32]) -> Result<f32, Error> {
        Ok(self.evaluate(x, y)?.loss)
    }

    /// Mean loss and top-1 accuracy on any number of examples (split across cores, chunked).
    pub fn evaluate(&mut self, x: &[f32], y: &[u32]) -> Result<Evaluation, Error> {
        let n = self.check_batch(x, y)?;
        net::pack(&self.arch, &self.params, &mut self.packed)?;
        let per = self.arch.input.len();
        let ranges = self.ranges(n);
        let (arch, packed) = (&self.arch, &self.packed[..]);
        let results: Vec<Result<(f32, usize), Error>> = std::thread::scope(|s| {
            let mut it = self.workers.iter_mut().zip(&ranges);
            let (w0, r0) = it.next().expect("at least one worker");
            let handles: Vec<_> = it
                .map(|(w, r)| {
                    let (xs, ys) = (&x[r.start * per..r.end * per], &y[r.clone()]);
                    s.spawn(move || w.eval(arch, packed, xs, ys))
                })
                .collect();
            let mut out = vec![w0.eval(arch, packed, &x[r0.start * per..r0.end * per], &y[r0.clone()])];
            out.extend(handles.into_iter().map(|h| h.join().unwrap_or(Err(Error::InvalidArgument("worker panicked")))));
            out
        });
        let (mut loss, mut correct) = (0.0f64, 0);
        for r in results {
            let (l, c) = r?;
            loss += l as f64;
            correct += c;
        }
        Ok(Evaluation { loss: (loss / n as f64) as f32, correct, total: n })
    }
}

/// PyTorch's default initialisation in distribution ([`nino_core::init::init_params`]); deterministic in
/// `seed`.
pub fn init_params(arch: &Arch, seed: u64) -> Vec<f32> {
    let mut p = vec![0.0f32; arch.param_count()];
    nino_core::init::init_params(arch, seed, &mut p).expect("buffer sized from the arch");
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::gemm::tests::max_diff;
    use nino_core::Task;
    use nino_core::ops::gemm::Portable;

    fn data(arch: &Arch, n: usize, seed: u64) -> (Vec<f32>, Vec<u32>) {
        let mut r = nino_core::rng::SplitMix64::new(seed);
        let x = (0..n * arch.input.len()).map(|_| r.unit() * 2.0 - 0.5).collect();
        let y = (0..n).map(|_| (r.next_u64() % arch.classes as u64) as u32).collect();
        (x, y)
    }

    #[test]
    fn init_is_bounded_and_deterministic() {
        let arch = Task::Fm16.arch();
        let (a, b, c) = (init_params(&arch, 1), init_params(&arch, 1), init_params(&arch, 2));
        assert_eq!(a, b);
        assert_ne!(a, c);
        for l in arch.layers() {
            let bound = 1.0 / ((l.n_in * l.taps()) as f32).sqrt();
            let w = &a[l.weight_offset..l.bias_offset + l.n_out];
            assert!(w.iter().all(|v| v.abs() <= bound));
            // A uniform sample of >= 26 values spreads over more than half the interval.
            let max = max_diff(w, &vec![0.0; w.len()]);
            assert!(max > 0.5 * bound);
        }
    }

    #[test]
    fn threaded_chunked_gradient_matches_single_call() {
        // The engine splits across threads and chunks; the core's one-call loss_and_grad (portable GEMM)
        // is the independent path. Summation order differs: 1e-5 relative to the largest entry.
        for spec in ["conv:4,6,6", "mlp:32"] {
            let arch = Arch::parse(spec, nino_core::InputShape::FASHION_MNIST, 10).unwrap();
            let params = init_params(&arch, 7);
            let n = 11;
            let (x, y) = data(&arch, n, 3);
            let mut e = Engine::new(arch.clone(), params.clone(), AdamConfig::new(0.01), 8).unwrap();
            let loss = e.gradient(&x, &y).unwrap();
            let mut acts = vec![0.0; net::activation_len(&arch, n)];
            let mut scratch = vec![0.0; net::scratch_len(&arch, n)];
            let mut g = vec![0.0; arch.param_count()];
            let l2 = net::loss_and_grad(&arch, &params, &x, &y, &mut acts, &mut scratch, &mut g, &Portable).unwrap();
            assert!((loss - l2).abs() < 1e-5 * l2.abs());
            // NaN-propagating maxima: `f32::max` drops NaN, so a NaN gradient would pass `d < 1e-5 * m`.
            let m = max_diff(&g, &vec![0.0; g.len()]);
            let d = max_diff(&g, e.last_grad());
            assert!(d < 1e-5 * m, "{spec}: {d} vs max {m}");
            let ev = e.evaluate(&x, &y).unwrap();
            assert_eq!(ev.total, n);
            assert!((ev.loss - l2).abs() < 1e-5 * l2.abs());
        }
    }

    #[test]
    fn training_reduces_loss_and_state_round_trips() {
        let arch = Task::Debug.arch();
        let (x, y) = data(&arch, 16, 5);
        let mut e = Engine::new(arch.clone(), init_params(&arch, 3), AdamConfig::new(0.01), 16).unwrap();
        let first = e.train_step(&x, &y).unwrap();
        for _ in 0..30 {
            e.train_step(&x, &y).unwrap();
        }
        assert!(e.loss(&x, &y).unwrap() < first, "memorising 16 examples lowers the loss");
        assert_eq!(e.adam_step_count(), 31);
        let (m, v) = e.adam_moments();
        let (m, v) = (m.to_vec(), v.to_vec());
        e.set_adam_state(&m, &v, 5).unwrap();
        assert_eq!(e.adam_step_count(), 5);
        assert!(e.set_adam_state(&m[1..], &v, 5).is_err());
        assert!(e.train_step(&x[1..], &y).is_err());
        assert!(e.train_step(&x, &[10; 16]).is_err());
        assert!(Engine::new(arch.clone(), vec![0.0; 3], AdamConfig::new(0.01), 16).is_err());
        let mut bad = init_params(&arch, 1);
        bad[0] = f32::NAN;
        assert!(matches!(Engine::new(arch, bad, AdamConfig::new(0.01), 16), Err(Error::NonFinite(_))));
    }
}
