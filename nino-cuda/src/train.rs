//! The training step of the reference nets on a [`Device`]: forward (conv or linear with ReLU fused,
//! global average pooling), softmax cross-entropy, backward (ReLU undone inside the input-gradient
//! kernels) and Adam, with parameters, gradients and Adam's moments in device memory. Mirrors nino-core's
//! `net::loss_and_grad` and `adam::adam_step` (which the tests compare against).

use crate::device::{Arg, CudaError, Device, Launch, blocks_for};
use crate::kernels::{Kernel, THREADS, flag};
use nino_core::Arch;
use nino_core::adam::AdamConfig;
use nino_core::arch::{Layer, LayerKind};

/// Loss and accuracy of an evaluation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Evaluation {
    /// Mean cross-entropy.
    pub loss: f32,
    /// Examples classified correctly.
    pub correct: usize,
    /// Examples evaluated.
    pub total: usize,
}

/// A target network with its parameters, Adam state and activation buffers on a device, for batches of
/// up to `capacity` examples.
pub struct Trainer<D: Device> {
    dev: D,
    arch: Arch,
    adam: AdamConfig,
    t: u64,
    cap: usize,
    params: D::Buf<f32>,
    grad: D::Buf<f32>,
    m: D::Buf<f32>,
    v: D::Buf<f32>,
    acts: Vec<D::Buf<f32>>,
    pooled: Vec<D::Buf<f32>>,
    ga: D::Buf<f32>,
    gb: D::Buf<f32>,
    x: D::Buf<f32>,
    y: D::Buf<i32>,
    rows: D::Buf<f32>,
    out: D::Buf<f32>,
    flag: D::Buf<i32>,
}

/// Arguments describing a conv layer's output: channels, kernel, stride, padding and size.
fn conv_output(l: &Layer) -> [Arg; 6] {
    let (k, s, pad) = match l.kind {
        LayerKind::Conv { kernel, stride, pad } => (kernel, stride, pad),
        LayerKind::Linear => (1, 1, 0),
    };
    [l.n_out, k, s, pad, l.out_hw.0, l.out_hw.1].map(|v| Arg::I32(v as i32))
}

impl<D: Device> Trainer<D> {
    /// Uploads `params` (PyTorch order) with zeroed Adam moments and allocates buffers for batches of up
    /// to `capacity` examples.
    pub fn new(dev: &D, arch: &Arch, params: &[f32], adam: AdamConfig, capacity: usize) -> Result<Self, CudaError> {
        let p = arch.param_count();
        if params.len() != p {
            return Err(nino_core::Error::BufferSize { what: "params", expected: p, got: params.len() }.into());
        }
        if capacity == 0 {
            return Err(nino_core::Error::InvalidArgument("net: empty batch").into());
        }
        let too_big = |v: usize| i32::try_from(v.saturating_mul(capacity)).is_err();
        if arch.layers().iter().any(|l| too_big(l.out_len()) || too_big(l.in_len())) || too_big(arch.input.len()) {
            return Err(CudaError::Unsupported(format!("batches of {capacity} of this network overflow int indices")));
        }
        let mut acts = Vec::new();
        let mut pooled = Vec::new();
        let mut grad_len = 0;
        let mut prev_out = arch.input.len();
        for l in arch.layers() {
            acts.push(dev.alloc(capacity * l.out_len())?);
            pooled.push(dev.alloc(if l.gap_before { capacity * l.n_in } else { 0 })?);
            grad_len = grad_len.max(l.out_len()).max(prev_out).max(l.n_in);
            prev_out = l.out_len();
        }
        Ok(Trainer {
            dev: dev.clone(),
            arch: arch.clone(),
            adam,
            t: 0,
            cap: capacity,
            params: dev.upload_new(params)?,
            grad: dev.alloc(p)?,
            m: dev.alloc(p)?,
            v: dev.alloc(p)?,
            acts,
            pooled,
            ga: dev.alloc(capacity * grad_len)?,
            gb: dev.alloc(capacity * grad_len)?,
            x: dev.alloc(capacity * arch.input.len())?,
            y: dev.alloc(capacity)?,
            rows: dev.alloc(2 * capacity)?,
            out: dev.alloc(2)?,
            flag: dev.alloc(1)?,
        })
    }

    /// The network.
    pub fn arch(&self) -> &Arch {
        &self.arch
    }

    /// Largest batch.
    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// Adam steps taken.
    pub fn step_count(&self) -> u64 {
        self.t
    }

    /// The parameters on the device (PyTorch order), e.g. for a nowcast to overwrite.
    pub fn params_buf(&self) -> &D::Buf<f32> {
        &self.params
    }

    /// The parameters on the device, writable.
    pub fn params_buf_mut(&mut self) -> &mut D::Buf<f32> {
        &mut self.params
    }

    /// The parameters read back.
    pub fn params(&self) -> Result<Vec<f32>, CudaError> {
        self.dev.download_vec(&self.params)
    }

    /// Overwrites the parameters (Adam's state is kept).
    pub fn set_params(&mut self, params: &[f32]) -> Result<(), CudaError> {
        let p = self.arch.param_count();
        if params.len() != p {
            return Err(nino_core::Error::BufferSize { what: "params", expected: p, got: params.len() }.into());
        }
        self.dev.upload(params, &mut self.params, 0)
    }

    /// The gradient of the last [`Trainer::gradient`] or [`Trainer::train_step`], read back.
    pub fn grad(&self) -> Result<Vec<f32>, CudaError> {
        self.dev.download_vec(&self.grad)
    }

    /// Uploads a batch; returns its size.
    fn load(&mut self, x: &[f32], y: Option<&[u32]>) -> Result<usize, CudaError> {
        let per = self.arch.input.len();
        if per == 0 || !x.len().is_multiple_of(per) || x.is_empty() {
            return Err(
                nino_core::Error::InvalidArgument("net: input length is not a multiple of the example size").into()
            );
        }
        let n = x.len() / per;
        if n > self.cap {
            return Err(nino_core::Error::BufferSize { what: "batch", expected: self.cap, got: n }.into());
        }
        self.dev.upload(x, &mut self.x, 0)?;
        if let Some(y) = y {
            if y.len() != n {
                return Err(nino_core::Error::BufferSize { what: "labels", expected: n, got: y.len() }.into());
            }
            let labels: Vec<i32> = y.iter().map(|&c| i32::try_from(c).unwrap_or(-1)).collect();
            self.dev.upload(&labels, &mut self.y, 0)?;
        }
        Ok(n)
    }

    fn launch(&self, kernel: Kernel, items: usize, args: &[Arg]) -> Result<(), CudaError> {
        self.dev.launch(Launch { kernel, grid: blocks_for(items, THREADS), block: THREADS }, args)
    }

    /// The input of layer `i` for the first `n` examples: the batch, the pooled previous output, or the
    /// previous output.
    fn input(&self, i: usize) -> Arg {
        if self.arch.layers()[i].gap_before {
            self.dev.ptr(&self.pooled[i], 0)
        } else if i == 0 {
            self.dev.ptr(&self.x, 0)
        } else {
            self.dev.ptr(&self.acts[i - 1], 0)
        }
    }

    /// Arguments describing conv layer `i`'s input: the tensor, its layout, `n`, channels and size.
    fn conv_input(&self, i: usize, n: usize) -> [Arg; 6] {
        let l = &self.arch.layers()[i];
        let size = |v: usize| Arg::I32(v as i32);
        [self.input(i), size((i == 0) as usize), size(n), size(l.n_in), size(l.in_hw.0), size(l.in_hw.1)]
    }

    /// Forward pass of the first `n` uploaded examples into the activation buffers.
    fn forward(&self, n: usize) -> Result<(), CudaError> {
        let dev = &self.dev;
        let ni = n as i32;
        for (i, l) in self.arch.layers().iter().enumerate() {
            let w = dev.ptr(&self.params, l.weight_offset);
            let b = dev.ptr(&self.params, l.bias_offset);
            let y = dev.ptr(&self.acts[i], 0);
            let relu = Arg::I32(l.relu as i32);
            match l.kind {
                LayerKind::Conv { .. } => {
                    let args = [&self.conv_input(i, n)[..], &[w, b], &conv_output(l), &[relu, y]].concat();
                    self.launch(Kernel::ConvFwd, n * l.out_len(), &args)?;
                }
                LayerKind::Linear => {
                    if l.gap_before {
                        let prev = &self.arch.layers()[i - 1];
                        let pix = prev.out_hw.0 * prev.out_hw.1;
                        let args = [
                            dev.ptr(&self.acts[i - 1], 0),
                            Arg::I32(ni),
                            Arg::I32(pix as i32),
                            Arg::I32(l.n_in as i32),
                            dev.ptr(&self.pooled[i], 0),
                        ];
                        self.launch(Kernel::GapFwd, n * l.n_in, &args)?;
                    }
                    let args =
                        [self.input(i), Arg::I32(ni), Arg::I32(l.n_in as i32), w, b, Arg::I32(l.n_out as i32), relu, y];
                    self.launch(Kernel::LinearFwd, n * l.n_out, &args)?;
                }
            }
        }
        Ok(())
    }

    /// Cross-entropy of the logits of the first `n` examples (with `dlogits` into `ga` when `grad`);
    /// returns (sum of losses, hits).
    fn loss(&mut self, n: usize, grad: bool) -> Result<(f32, usize), CudaError> {
        let dev = &self.dev;
        dev.upload(&[0], &mut self.flag, 0)?;
        let last = self.acts.len() - 1;
        let args = [
            dev.ptr(&self.acts[last], 0),
            dev.ptr(&self.y, 0),
            Arg::I32(n as i32),
            Arg::I32(self.arch.classes as i32),
            Arg::F32(1.0 / n as f32),
            if grad { dev.ptr(&self.ga, 0) } else { Arg::Ptr(0) },
            dev.ptr(&self.rows, 0),
            dev.ptr(&self.out, 0),
            dev.ptr(&self.flag, 0),
        ];
        dev.launch(Launch { kernel: Kernel::Xent, grid: 1, block: THREADS }, &args)?;
        let mut bits = [0i32];
        dev.download(&self.flag, 0, &mut bits)?;
        if bits[0] & flag::LABEL != 0 {
            return Err(nino_core::Error::InvalidArgument("cross entropy: label out of range").into());
        }
        let mut out = [0.0f32; 2];
        dev.download(&self.out, 0, &mut out)?;
        Ok((out[0], out[1] as usize))
    }

    /// Backward pass from `dlogits` in `ga`: writes the whole gradient.
    fn backward(&mut self, n: usize) -> Result<(), CudaError> {
        let ni = n as i32;
        let layers: Vec<Layer> = self.arch.layers().to_vec();
        for i in (0..layers.len()).rev() {
            let l = &layers[i];
            let dev = &self.dev;
            let (gw, gbias) = (dev.ptr(&self.grad, l.weight_offset), dev.ptr(&self.grad, l.bias_offset));
            let w = dev.ptr(&self.params, l.weight_offset);
            let dy = dev.ptr(&self.ga, 0);
            let mask = if i > 0 && layers[i - 1].relu { dev.ptr(&self.acts[i - 1], 0) } else { Arg::Ptr(0) };
            match l.kind {
                LayerKind::Conv { .. } => {
                    let input = self.conv_input(i, n);
                    let args = [&input[..], &[dy], &conv_output(l), &[gw, gbias]].concat();
                    self.launch(Kernel::ConvBwdW, l.weight_len() + l.n_out, &args)?;
                    if i > 0 {
                        let gb = dev.ptr(&self.gb, 0);
                        let args = [&[dy, w], &input[2..], &conv_output(l), &[mask, gb]].concat();
                        self.launch(Kernel::ConvBwdX, n * l.in_len(), &args)?;
                        std::mem::swap(&mut self.ga, &mut self.gb);
                    }
                }
                LayerKind::Linear => {
                    let (nin, nout) = (Arg::I32(l.n_in as i32), Arg::I32(l.n_out as i32));
                    let args = [self.input(i), Arg::I32(ni), nin, dy, nout, gw, gbias];
                    self.launch(Kernel::LinearBwdW, l.n_out * l.n_in + l.n_out, &args)?;
                    if i == 0 {
                        continue;
                    }
                    if l.gap_before {
                        let args = [dy, Arg::I32(ni), nout, w, nin, Arg::Ptr(0), dev.ptr(&self.gb, 0)];
                        self.launch(Kernel::LinearBwdX, n * l.n_in, &args)?;
                        let prev = &layers[i - 1];
                        let pix = prev.out_hw.0 * prev.out_hw.1;
                        let args = [dev.ptr(&self.gb, 0), Arg::I32(ni), Arg::I32(pix as i32), nin, mask, dy];
                        self.launch(Kernel::GapBwd, n * pix * l.n_in, &args)?;
                    } else {
                        let args = [dy, Arg::I32(ni), nout, w, nin, mask, dev.ptr(&self.gb, 0)];
                        self.launch(Kernel::LinearBwdX, n * l.n_in, &args)?;
                        std::mem::swap(&mut self.ga, &mut self.gb);
                    }
                }
            }
        }
        Ok(())
    }

    /// Mean cross-entropy of the batch (`x` `[n, C, H, W]`, labels `y`) and its gradient, kept on the
    /// device ([`Trainer::grad`] reads it); parameters unchanged.
    pub fn gradient(&mut self, x: &[f32], y: &[u32]) -> Result<f32, CudaError> {
        let n = self.load(x, Some(y))?;
        self.forward(n)?;
        let (sum, _) = self.loss(n, true)?;
        self.backward(n)?;
        Ok(sum / n as f32)
    }

    /// One Adam step on the batch; returns the batch's mean loss before the update.
    pub fn train_step(&mut self, x: &[f32], y: &[u32]) -> Result<f32, CudaError> {
        let loss = self.gradient(x, y)?;
        let step = self.t.checked_add(1).ok_or(nino_core::Error::InvalidArgument("adam: step counter overflow"))?;
        let s = self.adam.scalars(step);
        let dev = &self.dev;
        let p = self.arch.param_count();
        let args = [
            dev.ptr(&self.params, 0),
            dev.ptr(&self.grad, 0),
            dev.ptr(&self.m, 0),
            dev.ptr(&self.v, 0),
            Arg::I32(p as i32),
            Arg::F32(s.neg_step),
            Arg::F32(s.bc2_sqrt),
            Arg::F32(s.decay),
            Arg::I32((self.adam.weight_decay != 0.0) as i32),
            Arg::F32(s.w1),
            Arg::F32(s.b2),
            Arg::F32(s.w2),
            Arg::F32(s.eps),
        ];
        self.launch(Kernel::Adam, p, &args)?;
        self.t = step;
        Ok(loss)
    }

    /// Logits `[n, classes]` of the examples in `x` (at most `capacity`).
    pub fn logits(&mut self, x: &[f32]) -> Result<Vec<f32>, CudaError> {
        let n = self.load(x, None)?;
        self.forward(n)?;
        let mut out = vec![0.0; n * self.arch.classes];
        self.dev.download(&self.acts[self.acts.len() - 1], 0, &mut out)?;
        Ok(out)
    }

    /// Loss and accuracy over a labelled set, in chunks of `capacity`; parameters unchanged.
    pub fn evaluate(&mut self, x: &[f32], y: &[u32]) -> Result<Evaluation, CudaError> {
        let per = self.arch.input.len();
        if y.is_empty() || x.len() != y.len() * per {
            return Err(nino_core::Error::InvalidArgument("evaluate: inputs and labels disagree").into());
        }
        let (mut loss, mut correct) = (0.0f64, 0usize);
        for (xs, ys) in x.chunks(self.cap * per).zip(y.chunks(self.cap)) {
            let n = self.load(xs, Some(ys))?;
            self.forward(n)?;
            let (s, c) = self.loss(n, false)?;
            loss += s as f64;
            correct += c;
        }
        Ok(Evaluation { loss: (loss / y.len() as f64) as f32, correct, total: y.len() })
    }

    /// Adam's first and second moments, read back.
    pub fn adam_moments(&self) -> Result<(Vec<f32>, Vec<f32>), CudaError> {
        Ok((self.dev.download_vec(&self.m)?, self.dev.download_vec(&self.v)?))
    }
}
