//! Host-side NiNo nowcaster: owns the weights, graph features and buffers the core model needs.
//!
//! Everything a nowcast needs except the history is prepared once (graph, LPE, scratch), so a training
//! loop pays only for the prediction itself.

use crate::gemm::HostGemm;
use crate::metatrain::MetaModel;
use crate::weights::{WeightSet, WeightsError};
use half::f16;
use nino_core::nowcast::{self, Backend, Config, meta};
use nino_core::ops::gemm::{Gemm, MatRef, check_gemm};
use nino_core::{Arch, NeuralGraph};

/// Why a nowcaster could not be built or a nowcast failed.
#[derive(Debug, thiserror::Error)]
pub enum NowcastError {
    /// The weights are unusable.
    #[error(transparent)]
    Weights(#[from] WeightsError),
    /// A NiNo++ model file does not fit its own layout.
    #[error("{0}")]
    Meta(String),
    /// The core refused the inputs (wrong sizes, non-finite values, k out of range...).
    #[error("nowcast: {0}")]
    Core(#[from] nino_core::Error),
    /// Node features of the wrong size.
    #[error("node features (LPE) hold {got} values, expected {expected} ({nodes} nodes x {width})")]
    Lpe {
        /// Values given.
        got: usize,
        /// Values expected.
        expected: usize,
        /// Graph nodes.
        nodes: usize,
        /// Features per node the model reads.
        width: usize,
    },
}

/// [`HostGemm`] with the rows of large products split over rayon's threads (one product at a time is
/// all a nowcast has, unlike the trainer, which parallelises across examples).
#[derive(Clone, Copy, Debug, Default)]
pub struct ThreadedGemm;

/// Multiply-adds below which a product stays on one thread (a split costs a few microseconds).
const THREADED_MIN_WORK: usize = 1 << 20;

impl Gemm for ThreadedGemm {
    fn gemm(&self, a: MatRef<'_>, b: MatRef<'_>, c: &mut [f32], ldc: usize, beta: f32) -> Result<(), nino_core::Error> {
        let (m, k, n) = (a.rows, a.cols, b.cols);
        let parts = rayon::current_num_threads().min(m / 64).max(1);
        if m * k * n < THREADED_MIN_WORK || parts == 1 {
            return HostGemm.gemm(a, b, c, ldc, beta);
        }
        check_gemm(&a, &b, c, ldc)?;
        split_rows(a, b, c, ldc, beta, parts)
    }
}

/// Runs `parts` row blocks of the product on rayon's pool, halving recursively.
fn split_rows(
    a: MatRef<'_>,
    b: MatRef<'_>,
    c: &mut [f32],
    ldc: usize,
    beta: f32,
    parts: usize,
) -> Result<(), nino_core::Error> {
    if parts <= 1 {
        return HostGemm.gemm(a, b, c, ldc, beta);
    }
    let mid = a.rows * (parts / 2) / parts;
    let (c0, c1) = c.split_at_mut(mid * ldc);
    let a0 = MatRef { rows: mid, ..a };
    let a1 = MatRef { data: &a.data[mid * a.rs..], rows: a.rows - mid, ..a };
    let (r0, r1) = rayon::join(
        || split_rows(a0, b, c0, ldc, beta, parts / 2),
        || split_rows(a1, b, c1, ldc, beta, parts - parts / 2),
    );
    r0.and(r1)
}

/// `a * b + c`, fused where the caller is compiled with FMA (`F`), else as two operations (a fused
/// multiply-add without hardware support is a slow library call).
#[inline(always)]
fn madd<const F: bool>(a: f32, b: f32, c: f32) -> f32 {
    if F { a.mul_add(b, c) } else { a * b + c }
}

/// `exp(x)` for `x` in about `[-87, 88]` (clamped outside), Cephes-style: `2^n * poly(r)`, about 1 ulp, and
/// branch-free so the compiler vectorises it.
#[inline(always)]
fn exp_vec<const F: bool>(x: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0; // 1.5 * 2^23: adding it rounds to an integer held in the low bits.
    let x = x.clamp(-87.0, 88.0);
    let t = madd::<F>(x, std::f32::consts::LOG2_E, MAGIC);
    let n = t - MAGIC;
    let r = madd::<F>(n, 2.121_944_4e-4, madd::<F>(n, -0.693_359_4, x));
    let mut p = 1.987_569_1e-4;
    for c in [1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 1.666_666_5e-1, 0.5] {
        p = madd::<F>(p, r, c);
    }
    let y = madd::<F>(p, r * r, r + 1.0);
    let scale = (t.to_bits() as i32).wrapping_sub(MAGIC.to_bits() as i32) << 23;
    f32::from_bits((y.to_bits() as i32).wrapping_add(scale) as u32)
}

#[inline(always)]
fn silu_vec_body<const F: bool>(x: &mut [f32]) {
    // Fixed blocks of 64 unroll into several independent vectors, which hides the exp's latency chain.
    let mut blocks = x.chunks_exact_mut(64);
    for block in &mut blocks {
        for v in block {
            *v /= 1.0 + exp_vec::<F>(-*v);
        }
    }
    for v in blocks.into_remainder() {
        *v /= 1.0 + exp_vec::<F>(-*v);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn silu_avx2(x: &mut [f32]) {
    silu_vec_body::<true>(x)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn silu_avx512(x: &mut [f32]) {
    silu_vec_body::<true>(x)
}

/// SiLU over a slice with a vectorised exp (AVX-512 or AVX2 when present): the core's libm SiLU costs as much as the
/// matrix products of a nowcast. Agrees with it to a few ulp (tested).
pub fn fast_silu(x: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU feature the function is compiled for was just detected.
        unsafe { silu_avx512(x) };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU features the function is compiled for were just detected.
        unsafe { silu_avx2(x) };
        return;
    }
    silu_vec_body::<false>(x)
}

#[cfg(target_arch = "x86_64")]
mod edge_avx512 {
    //! The core's per-edge loops compiled for AVX-512 (the core itself is built for the baseline CPU).
    use nino_core::nowcast::linear::{add_portable, message_portable, update_sum};

    #[target_feature(enable = "avx512f,avx2,fma")]
    unsafe fn message_tf(a: &mut [f32], s: &[f32], b: &[f32], u: &[f32], v: &[f32]) {
        message_portable(a, s, b, u, v)
    }

    #[target_feature(enable = "avx512f,avx2,fma")]
    unsafe fn update_tf(g: &mut [f32], b: &[f32], s: &[f32], t: &[f32]) {
        update_sum(g, b, s, t);
        super::silu_vec_body::<true>(g)
    }

    #[target_feature(enable = "avx512f,avx2,fma")]
    unsafe fn add_tf(a: &mut [f32], x: &[f32]) {
        add_portable(a, x)
    }

    // SAFETY (all three): handed out by `super::fast_edge_kernels` only after detecting AVX-512F, AVX2 and FMA.
    pub(super) fn message(a: &mut [f32], s: &[f32], b: &[f32], u: &[f32], v: &[f32]) {
        unsafe { message_tf(a, s, b, u, v) }
    }

    pub(super) fn update(g: &mut [f32], b: &[f32], s: &[f32], t: &[f32]) {
        unsafe { update_tf(g, b, s, t) }
    }

    pub(super) fn add(a: &mut [f32], x: &[f32]) {
        unsafe { add_tf(a, x) }
    }
}

fn update_fast_silu(g: &mut [f32], b: &[f32], s: &[f32], t: &[f32]) {
    nowcast::linear::update_sum(g, b, s, t);
    fast_silu(g)
}

/// The folded model's per-edge loops for this CPU: AVX-512 when present, else plain loops with [`fast_silu`].
pub fn fast_edge_kernels() -> nowcast::EdgeKernels {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx2")
        && std::arch::is_x86_feature_detected!("fma")
    {
        return nowcast::EdgeKernels {
            message: edge_avx512::message,
            update: edge_avx512::update,
            add: edge_avx512::add,
        };
    }
    nowcast::EdgeKernels { update: update_fast_silu, ..nowcast::EdgeKernels::PORTABLE }
}

/// The folded form of a bound GNN ([`nowcast::folded_len`] floats).
fn fold_into<W: nowcast::WeightElem>(w: &nowcast::NinoWeights<'_, W>, cfg: &Config) -> Result<Vec<f32>, NowcastError> {
    let mut buf = vec![0.0; nowcast::folded_len(cfg)];
    fold(w, &mut buf)?;
    Ok(buf)
}

/// Folds a bound GNN into `buf` (sized by [`nowcast::folded_len`]).
fn fold<W: nowcast::WeightElem>(w: &nowcast::NinoWeights<'_, W>, buf: &mut [f32]) -> Result<(), NowcastError> {
    match &w.model {
        nowcast::ModelWeights::Gnn(g) => Ok(nowcast::fold_gnn(g, &w.config, buf)?),
        nowcast::ModelWeights::Wnn(_) => Err(nino_core::Error::InvalidArgument("folding: only the GNN folds").into()),
    }
}

/// Runs the core's parallel tasks on rayon's pool (the halves of a nowcast's per-edge work).
#[derive(Clone, Copy, Debug, Default)]
pub struct RayonParallel;

impl nowcast::Parallel for RayonParallel {
    fn run(&self, tasks: &mut [&mut (dyn FnMut() + Send)]) {
        match tasks {
            [] => {}
            [t] => t(),
            _ => {
                let (a, b) = tasks.split_at_mut(tasks.len() / 2);
                rayon::join(|| self.run(a), || self.run(b));
            }
        }
    }
}

static THREADED: ThreadedGemm = ThreadedGemm;

/// The fastest kernels this host offers: threaded `gemm`-crate products and the vectorised SiLU.
pub fn host_backend() -> Backend<'static> {
    Backend { gemm: &THREADED, silu: fast_silu, par: &RayonParallel, edge: fast_edge_kernels() }
}

/// Weights in the storage chosen at construction.
#[derive(Clone, Debug)]
enum Storage {
    F32(WeightSet<f32>),
    F16(WeightSet<f16>),
    /// A NiNo++ variant in the trainable layout (f32; with `--f16` the values are rounded through f16),
    /// with the centrality feature it reads.
    Meta(Box<MetaModel>, Vec<f32>),
}

/// Sizes, in values, of the buffers a [`Nowcaster`] allocated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NowcasterBuffers {
    /// Stored weights (f16 or f32).
    pub weights: usize,
    /// The folded GNN (f32; 0 for WNN+).
    pub folded: usize,
    /// Node features.
    pub node_features: usize,
    /// Scratch of one nowcast (the folded path's for a GNN).
    pub scratch: usize,
}

/// A ready-to-run NiNo model for one target architecture.
pub struct Nowcaster {
    weights: Storage,
    /// The GNN folded once at load ([`nowcast::fold_gnn`], f32 whatever the storage); `None` for WNN+.
    folded: Option<Vec<f32>>,
    graph: NeuralGraph,
    lpe: Vec<f32>,
    scratch: Vec<f32>,
    gemm: Box<dyn Gemm + Send>,
    silu: fn(&mut [f32]),
    par: &'static dyn nowcast::Parallel,
    edge: nowcast::EdgeKernels,
}

impl std::fmt::Debug for Nowcaster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Nowcaster").field("config", self.config()).field("nodes", &self.graph.num_nodes()).finish()
    }
}

impl Nowcaster {
    /// Prepares `weights` for `arch`, optionally stored as f16. `lpe` (`[N, lpe]`) is the GNN's node
    /// features; `None` computes them with [`crate::spectral::lpe`]. WNN+ ignores it.
    pub fn new(weights: WeightSet<f32>, arch: &Arch, lpe: Option<Vec<f32>>, f16: bool) -> Result<Self, NowcastError> {
        let cfg = weights.config;
        let graph = NeuralGraph::new(arch);
        let n = graph.num_nodes();
        let lpe = if !cfg.gnn || !cfg.has_node_proj() {
            Vec::new()
        } else {
            let lpe = match lpe {
                Some(l) => l,
                None => crate::spectral::lpe(arch, cfg.lpe)?,
            };
            if lpe.len() != n * cfg.lpe {
                return Err(NowcastError::Lpe { got: lpe.len(), expected: n * cfg.lpe, nodes: n, width: cfg.lpe });
            }
            lpe
        };
        let (weights, folded, scratch_len) = if weights.is_meta() {
            let mut model = MetaModel::from_weights(&weights).map_err(|e| NowcastError::Meta(format!("{e:#}")))?;
            if f16 {
                model.params.iter_mut().for_each(|v| *v = f16::from_f32(*v).to_f32());
            }
            let mut cent = Vec::new();
            if cfg.centrality {
                let raw = crate::spectral::centrality(arch);
                cent = vec![0.0; raw.len()];
                nowcast::meta::centrality_feature(&raw, &mut cent)?;
            }
            (Storage::Meta(Box::new(model), cent), None, nowcast::meta_scratch_len(&graph, &cfg))
        } else {
            let weights = if f16 { Storage::F16(weights.to_f16()?) } else { Storage::F32(weights) };
            // f16 is a storage format: the folded working set is f32, folded from the f16-rounded values.
            let folded = match (&weights, cfg.gnn) {
                (Storage::F32(w), true) => Some(fold_into(&w.bind()?, &cfg)?),
                (Storage::F16(w), true) => Some(fold_into(&w.bind()?, &cfg)?),
                _ => None,
            };
            let len =
                if cfg.gnn { nowcast::folded_scratch_len(&graph, &cfg) } else { nowcast::scratch_len(&graph, &cfg) };
            (weights, folded, len)
        };
        Ok(Nowcaster {
            weights,
            folded,
            graph,
            lpe,
            scratch: vec![0.0; scratch_len],
            gemm: Box::new(ThreadedGemm),
            silu: fast_silu,
            par: &RayonParallel,
            edge: fast_edge_kernels(),
        })
    }

    /// Replaces the kernels (the default: [`ThreadedGemm`] and [`fast_silu`]), e.g. to compare them.
    pub fn with_kernels(mut self, gemm: Box<dyn Gemm + Send>, silu: fn(&mut [f32])) -> Self {
        self.gemm = gemm;
        self.silu = silu;
        self
    }

    /// Replaces how the per-edge halves run (the default: [`RayonParallel`]; [`nowcast::Sequential`] for one
    /// thread).
    pub fn with_parallel(mut self, par: &'static dyn nowcast::Parallel) -> Self {
        self.par = par;
        self
    }

    /// The model's options.
    pub fn config(&self) -> &Config {
        match &self.weights {
            Storage::F32(w) => &w.config,
            Storage::F16(w) => &w.config,
            Storage::Meta(m, _) => &m.layout.cfg,
        }
    }

    /// The neural graph of the target architecture.
    pub fn graph(&self) -> &NeuralGraph {
        &self.graph
    }

    /// The node features in use (`[N, lpe]`; empty for WNN+).
    pub fn lpe(&self) -> &[f32] {
        &self.lpe
    }

    /// Values of every buffer this nowcaster holds, to check against [`nino_core::plan::NowcastPlan`].
    pub fn buffers(&self) -> NowcasterBuffers {
        let weights = match &self.weights {
            Storage::F32(w) => w.num_values(),
            Storage::F16(w) => w.num_values(),
            Storage::Meta(m, _) => m.params.len(),
        };
        NowcasterBuffers {
            weights,
            folded: self.folded.as_ref().map_or(0, Vec::len),
            node_features: self.lpe.len(),
            scratch: self.scratch.len(),
        }
    }

    /// Context states a nowcast needs (`c`).
    pub fn ctx(&self) -> usize {
        self.config().ctx
    }

    /// Predicts the parameters `k` context spacings ahead from `history` (`[c][P]`, oldest first) into `out`.
    pub fn nowcast(&mut self, history: &[f32], k: usize, out: &mut [f32]) -> Result<(), NowcastError> {
        let cfg = *self.config();
        let (g, lpe, scratch) = (&self.graph, &self.lpe, &mut self.scratch);
        let be = Backend { gemm: &*self.gemm, silu: self.silu, par: self.par, edge: self.edge };
        if let Some(buf) = &self.folded {
            let m = nowcast::FoldedGnn::new(&cfg, buf)?;
            nowcast::nowcast_folded(be, &m, g, history, lpe, k, scratch, out, &mut |_, _| {})?;
            return Ok(());
        }
        match &self.weights {
            Storage::F32(w) => nowcast::nowcast(be, &w.bind()?, g, history, lpe, k, scratch, out)?,
            Storage::F16(w) => nowcast::nowcast(be, &w.bind()?, g, history, lpe, k, scratch, out)?,
            Storage::Meta(m, cent) => nowcast::nowcast_meta(
                meta::Compute { gemm: &*self.gemm, kernels: crate::meta_kernels::host_kernels() },
                &m.layout,
                &m.params,
                g,
                history,
                lpe,
                cent,
                k,
                scratch,
                out,
            )?,
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nino_core::Task;

    fn wnn() -> WeightSet<f32> {
        let p = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/weights/nino_mlp_h32.safetensors");
        WeightSet::load(p).unwrap()
    }

    #[test]
    fn rejects_bad_inputs_without_touching_out() {
        let arch = Task::Debug.arch();
        let mut nc = Nowcaster::new(wnn(), &arch, None, false).unwrap();
        let p = arch.param_count();
        let mut h: Vec<f32> = (0..5 * p).map(|i| (i % 17) as f32 * 0.01).collect();
        let mut out = vec![7.0; p];
        nc.nowcast(&h, 40, &mut out).unwrap();
        assert!(out.iter().all(|x| x.is_finite()));
        let mut untouched = vec![7.0; p];
        assert!(matches!(nc.nowcast(&h, 0, &mut untouched), Err(NowcastError::Core(_))));
        assert!(matches!(nc.nowcast(&h, 41, &mut untouched), Err(NowcastError::Core(_))));
        assert!(nc.nowcast(&h[1..], 1, &mut untouched).is_err());
        h[3] = f32::NAN;
        assert!(matches!(nc.nowcast(&h, 1, &mut untouched), Err(NowcastError::Core(nino_core::Error::NonFinite(_)))));
        assert!(untouched.iter().all(|&x| x == 7.0));
    }

    #[test]
    fn threaded_gemm_agrees_with_portable() {
        use nino_core::ops::Portable;
        let (m, k, n) = (1037, 128, 272);
        let a: Vec<f32> = (0..m * k).map(|i| ((i * 7 % 13) as f32 - 6.0) / 7.0).collect();
        let b: Vec<f32> = (0..k * n).map(|i| ((i * 5 % 11) as f32 - 5.0) / 5.0).collect();
        for beta in [0.0, 1.0] {
            let mut c1: Vec<f32> = (0..m * n).map(|i| (i % 5) as f32).collect();
            let mut c2 = c1.clone();
            Portable.gemm(MatRef::row_major(&a, m, k), MatRef::transposed(&b, n, k), &mut c1, n, beta).unwrap();
            ThreadedGemm.gemm(MatRef::row_major(&a, m, k), MatRef::transposed(&b, n, k), &mut c2, n, beta).unwrap();
            // Sums of 128 products of magnitude <= 1 in another order: 1e-3 is ample, a wrong row is not.
            let d = c1.iter().zip(&c2).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max);
            assert!(d < 1e-3, "beta {beta}: {d}");
        }
    }

    #[test]
    fn threads_do_not_change_a_nowcast() {
        // The edge halves are fixed, so running them on rayon's pool or in turn must give the same bits.
        let p = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/weights/nino_no_posw.safetensors");
        let w = WeightSet::load(p).unwrap();
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        // FM-16's edge products are large enough for ThreadedGemm to split them as well.
        for task in [Task::Debug, Task::Fm16] {
            let arch = task.arch();
            let n = arch.param_count();
            let h: Vec<f32> =
                (0..5 * n).map(|i| ((i * 37 % 101) as f32 - 50.0) * 1e-3 * (1.0 + (i / n) as f32)).collect();
            let mut threaded = Nowcaster::new(w.clone(), &arch, None, false).unwrap();
            let mut one = Nowcaster::new(w.clone(), &arch, None, false)
                .unwrap()
                .with_kernels(Box::new(HostGemm), fast_silu)
                .with_parallel(&nowcast::Sequential);
            let (mut a, mut b) = (vec![0.0; n], vec![1.0; n]);
            for k in [1, 40] {
                pool.install(|| threaded.nowcast(&h, k, &mut a)).unwrap();
                one.nowcast(&h, k, &mut b).unwrap();
                assert_eq!(a, b, "{task:?}, k {k}");
            }
        }
    }

    #[test]
    fn fast_silu_agrees_with_libm() {
        let mut x: Vec<f32> = (-20_000..20_000).map(|i| i as f32 * 5e-3).collect();
        x.extend([-100.0, -88.5, 90.0, 1e-30, -1e-30, 0.0]);
        let mut y = x.clone();
        fast_silu(&mut y);
        for (&a, &b) in x.iter().zip(&y) {
            let want = nino_core::nowcast::linear::silu(a);
            // A few ulp relative, or absolute for the tiny tails where SiLU underflows towards 0.
            assert!((b - want).abs() <= 4.0 * f32::EPSILON * want.abs() + 1e-35, "silu({a}) = {b}, libm {want}");
        }
        let mut nan = [f32::NAN];
        fast_silu(&mut nan);
        assert!(nan[0].is_nan());
    }

    #[test]
    fn gnn_needs_lpe_of_the_right_size() {
        let p = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/weights/nino_no_posw.safetensors");
        let w = WeightSet::load(p).unwrap();
        let arch = Task::Debug.arch();
        let e = Nowcaster::new(w.clone(), &arch, Some(vec![0.0; 3]), false).unwrap_err();
        assert!(matches!(e, NowcastError::Lpe { expected: 248, .. }), "{e}");
        // Without an LPE the spectral module computes one.
        let nc = Nowcaster::new(w, &arch, None, true).unwrap();
        assert_eq!(nc.lpe().len(), 31 * 8);
    }
}
