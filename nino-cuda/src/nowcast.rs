//! The NiNo step on a [`Device`]: nino-core's folded inference path (`nowcast_folded`) as five kinds of
//! launches, with the history, the parameters and the prediction in device memory.
//!
//! Per nowcast: `nino_tensor_stats` (one block per tensor), `nino_node_init` (one block per node),
//! `nino_layer` once per message-passing layer (one block per node), `nino_head` (one block per tile of
//! edges), then one device-to-device copy of the prediction into the parameters if no kernel raised an
//! error flag. Edge features exist only in shared memory, a tile at a time.

use crate::device::{Arg, CudaError, Device, Launch};
use crate::kernels::{HMAX, Kernel, MAXL, ROWS, THREADS, flag};
use crate::tables::graph_tables;
use half::f16;
use nino_core::NeuralGraph;
use nino_core::nowcast::{Config, FoldedGnn};

/// How the folded weights are stored on the device (the math is f32 either way).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precision {
    /// f32, as folded.
    F32,
    /// Each folded value rounded to f16: half the memory and bandwidth.
    F16,
}

/// Sizes and offsets the NiNo kernels read (`struct GnnDims` in `kernels/nowcast.cuh`, same fields in
/// the same order, all `int`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GnnDims {
    /// Hidden width `H`.
    pub h: i32,
    /// Message-passing layers evaluated (`layers - 1`).
    pub nl: i32,
    /// Feature slots `F` of the graph.
    pub f: i32,
    /// Context states.
    pub c: i32,
    /// `F * c`: the first edge product's input width.
    pub fc: i32,
    /// Parameters `P`.
    pub p: i32,
    /// Edges `E`.
    pub e: i32,
    /// Nodes `N`.
    pub n: i32,
    /// Horizons `S` of the DMS head.
    pub s: i32,
    /// 1 when the first product's bias depends on the edge type.
    pub typed: i32,
    /// Node feature width (0: no node projection product).
    pub lpe: i32,
    /// Offset of the node projection's weight in the folded buffer.
    pub node_w: i32,
    /// Offset of its bias.
    pub node_b: i32,
    /// Per layer: offset of `pre` (`FoldedGnn::layer_offsets`).
    pub pre: [i32; MAXL],
    /// Per layer: offset of `pre_b`.
    pub pre_b: [i32; MAXL],
    /// Per layer: offset of `post`.
    pub post: [i32; MAXL],
    /// Per layer: offset of `post_b`.
    pub post_b: [i32; MAXL],
    /// Per layer: offset of `st`.
    pub st: [i32; MAXL],
    /// Per layer: offset of `st_b`.
    pub st_b: [i32; MAXL],
    /// Per edge product: offset of its weight (`FoldedGnn::edge_offsets`).
    pub ew: [i32; MAXL + 1],
    /// Per edge product: offset of its bias table.
    pub eb: [i32; MAXL + 1],
    /// Offset of the head's output weight.
    pub head_w: i32,
    /// Offset of its bias.
    pub head_b: i32,
    /// Offset of the edge sources in the int tables (`tables::GraphTables`).
    pub t_src: i32,
    /// Offset of the edge targets.
    pub t_dst: i32,
    /// Offset of the edge types.
    pub t_kind: i32,
    /// Offset of the slot-to-parameter map.
    pub t_param: i32,
    /// Offset of the parameter-to-tensor map.
    pub t_tensor: i32,
    /// Offset of the incoming-edge CSR pointers.
    pub t_inptr: i32,
    /// Offset of the incoming-edge lists.
    pub t_inedges: i32,
}

impl GnnDims {
    /// The struct as the ints the device reads.
    pub fn words(&self) -> Vec<i32> {
        const N: usize = std::mem::size_of::<GnnDims>() / 4;
        // SAFETY: repr(C) struct of i32 and arrays of i32 only: N ints, no padding.
        unsafe { std::slice::from_raw_parts(self as *const GnnDims as *const i32, N) }.to_vec()
    }
}

fn int(what: &str, v: usize) -> Result<i32, CudaError> {
    i32::try_from(v).map_err(|_| CudaError::Unsupported(format!("{what} ({v}) does not fit an int")))
}

/// Folded weights in their device storage.
enum Weights<D: Device> {
    F32(D::Buf<f32>),
    F16(D::Buf<u16>),
}

/// Node-side values of the last nowcast, read back for tests and debugging.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeStates {
    /// Node projection `[N, H]` (nino-core's `Stage::NodeProj`).
    pub node_proj: Vec<f32>,
    /// Every evaluated layer's node output before its SiLU, `[N, H]` each (`Stage::Conv(l)`).
    pub conv: Vec<Vec<f32>>,
    /// Scaled edge outputs with the residual `[E, F]`, if [`Nowcaster::keep_edge_outputs`] was called.
    pub edge_out: Option<Vec<f32>>,
}

/// A folded NiNo GNN for one target network, with every buffer a nowcast needs on the device.
pub struct Nowcaster<D: Device> {
    dev: D,
    cfg: Config,
    dims: GnnDims,
    dims_buf: D::Buf<i32>,
    tab: D::Buf<i32>,
    tbeg: D::Buf<i32>,
    tensors: usize,
    weights: Weights<D>,
    lpe: D::Buf<f32>,
    stats: D::Buf<f32>,
    flag: D::Buf<i32>,
    x: D::Buf<f32>,
    xconv: D::Buf<f32>,
    uv: D::Buf<f32>,
    lst: D::Buf<f32>,
    pred: D::Buf<f32>,
    edge_out: Option<D::Buf<f32>>,
}

impl<D: Device> Nowcaster<D> {
    /// Uploads a folded model (nino-core's `fold_gnn`), the graph's tables and the node features `lpe`
    /// (`[N, lpe]`) of `graph`, and allocates every buffer; refuses models the kernels do not implement.
    pub fn new(
        dev: &D,
        model: &FoldedGnn<'_>,
        graph: &NeuralGraph,
        lpe: &[f32],
        precision: Precision,
    ) -> Result<Self, CudaError> {
        let cfg = *model.config();
        let (h, nl, f, c) = (cfg.hid, model.evaluated_layers(), graph.feat_slots(), cfg.ctx);
        let (e, n, p) = (graph.num_edges(), graph.num_nodes(), graph.arch().param_count());
        let lpe_w = if cfg.has_node_proj() { cfg.lpe } else { 0 };
        if h > HMAX || f * c > HMAX || nl > MAXL || h == 0 {
            return Err(CudaError::Unsupported(format!(
                "hidden width {h}, edge input {} and {nl} layers (the kernels hold at most {HMAX} and {MAXL})",
                f * c
            )));
        }
        if f > cfg.max_feat_size {
            return Err(nino_core::Error::InvalidArgument(
                "graph has more feature slots than the model (kernel > 3x3)",
            )
            .into());
        }
        if lpe.len() != n * lpe_w {
            return Err(nino_core::Error::BufferSize { what: "lpe", expected: n * lpe_w, got: lpe.len() }.into());
        }
        if lpe.iter().any(|x| !x.is_finite()) {
            return Err(nino_core::Error::NonFinite("node features (lpe)").into());
        }
        let typed = cfg.edge_types > 0;
        if typed {
            let mut kinds = vec![0u8; e];
            graph.write_edges(&mut vec![0; e], &mut vec![0; e], &mut kinds)?;
            if kinds.iter().any(|&k| k as usize >= cfg.edge_types) {
                return Err(nino_core::Error::InvalidArgument("edge type outside the model's embedding").into());
            }
        }
        let t = graph_tables(graph)?;
        let folded = model.as_slice();
        int("folded weights", folded.len())?;
        let mut d = GnnDims {
            h: h as i32,
            nl: nl as i32,
            f: f as i32,
            c: c as i32,
            fc: (f * c) as i32,
            p: int("parameters", p)?,
            e: int("edges", e)?,
            n: int("nodes", n)?,
            s: cfg.seq_len as i32,
            typed: typed as i32,
            lpe: lpe_w as i32,
            ..GnnDims::default()
        };
        let (nw, nb) = model.node_offsets();
        (d.node_w, d.node_b) = (nw as i32, nb as i32);
        for l in 0..nl {
            let o = model.layer_offsets(l);
            d.pre[l] = o.pre as i32;
            d.pre_b[l] = o.pre_b as i32;
            d.post[l] = o.post as i32;
            d.post_b[l] = o.post_b as i32;
            d.st[l] = o.st as i32;
            d.st_b[l] = o.st_b as i32;
        }
        for j in 0..=nl {
            let (w, b) = model.edge_offsets(j);
            (d.ew[j], d.eb[j]) = (w as i32, b as i32);
        }
        let (hw, hb) = model.head_offsets();
        (d.head_w, d.head_b) = (hw as i32, hb as i32);
        let o = t.offsets.map(|x| x as i32);
        (d.t_src, d.t_dst, d.t_kind, d.t_param, d.t_tensor, d.t_inptr, d.t_inedges) =
            (o[0], o[1], o[2], o[3], o[4], o[5], o[6]);
        let weights = match precision {
            Precision::F32 => Weights::F32(dev.upload_new(folded)?),
            Precision::F16 => {
                let bits: Vec<u16> = folded.iter().map(|&v| f16::from_f32(v).to_bits()).collect();
                Weights::F16(dev.upload_new(&bits)?)
            }
        };
        let tensors = t.tensor_bounds.len() - 1;
        let layers = nl.max(1);
        Ok(Nowcaster {
            dev: dev.clone(),
            cfg,
            dims: d,
            dims_buf: dev.upload_new(&d.words())?,
            tab: dev.upload_new(&t.words)?,
            tbeg: dev.upload_new(&t.tensor_bounds)?,
            tensors,
            weights,
            lpe: dev.upload_new(lpe)?,
            stats: dev.alloc(2 * tensors)?,
            flag: dev.alloc(1)?,
            x: dev.alloc((nl + 1) * n * h)?,
            xconv: dev.alloc(layers * n * h)?,
            uv: dev.alloc(2 * n * 2 * h)?,
            lst: dev.alloc(layers * n * 2 * h)?,
            pred: dev.alloc(p)?,
            edge_out: None,
        })
    }

    /// Also writes the scaled edge outputs (`[E, F]`, residual included) at every nowcast, for
    /// [`Nowcaster::node_states`].
    pub fn keep_edge_outputs(&mut self) -> Result<(), CudaError> {
        if self.edge_out.is_none() {
            self.edge_out = Some(self.dev.alloc((self.dims.e * self.dims.f) as usize)?);
        }
        Ok(())
    }

    /// The model's options.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Parameters of the target network.
    pub fn num_params(&self) -> usize {
        self.dims.p as usize
    }

    /// The sizes and offsets the kernels read.
    pub fn dims(&self) -> &GnnDims {
        &self.dims
    }

    /// Predicts the parameters `k` context spacings ahead from `history` (`[c][P]` on the device, oldest
    /// first) into `params` (`[P]` on the device), which is written only on success.
    pub fn nowcast(&mut self, history: &D::Buf<f32>, k: usize, params: &mut D::Buf<f32>) -> Result<(), CudaError> {
        let d = self.dims;
        let (p, c) = (d.p as usize, d.c as usize);
        if k == 0 || k > self.cfg.seq_len {
            return Err(nino_core::Error::InvalidArgument("horizon k must be in 1..=seq_len").into());
        }
        let dev = &self.dev;
        if dev.len(history) != c * p {
            return Err(nino_core::Error::BufferSize { what: "history", expected: c * p, got: dev.len(history) }.into());
        }
        if dev.len(params) != p {
            return Err(nino_core::Error::BufferSize { what: "params", expected: p, got: dev.len(params) }.into());
        }
        dev.upload(&[0], &mut self.flag, 0)?;
        let hist = dev.ptr(history, 0);
        let (stats, flag) = (dev.ptr(&self.stats, 0), dev.ptr(&self.flag, 0));
        let launch = |kernel, grid| Launch { kernel, grid, block: THREADS };
        dev.launch(
            launch(Kernel::TensorStats, self.tensors as u32),
            &[hist, dev.ptr(&self.tbeg, 0), Arg::I32(d.c), Arg::I32(d.p), stats, flag],
        )?;
        let (fw, f16w) = match &self.weights {
            Weights::F32(w) => (dev.ptr(w, 0), false),
            Weights::F16(w) => (dev.ptr(w, 0), true),
        };
        let pick = |a: Kernel, b: Kernel| if f16w { b } else { a };
        let (n, h) = (d.n as usize, d.h as usize);
        let dims = dev.ptr(&self.dims_buf, 0);
        let tab = dev.ptr(&self.tab, 0);
        let (x, uv) = (&self.x, &self.uv);
        dev.launch(
            launch(pick(Kernel::NodeInitF32, Kernel::NodeInitF16), n as u32),
            &[dims, fw, dev.ptr(&self.lpe, 0), dev.ptr(x, 0), dev.ptr(uv, 0)],
        )?;
        // Every edge kernel reads the model, the graph, the history and its scales.
        let common = [dims, tab, fw, hist, stats];
        for l in 0..d.nl as usize {
            let layer = [
                Arg::I32(l as i32),
                dev.ptr(x, l * n * h),
                dev.ptr(uv, (l % 2) * n * 2 * h),
                dev.ptr(&self.lst, 0),
                dev.ptr(&self.xconv, l * n * h),
                dev.ptr(x, (l + 1) * n * h),
                dev.ptr(uv, ((l + 1) % 2) * n * 2 * h),
            ];
            let args = [&common[..], &layer].concat();
            dev.launch(launch(pick(Kernel::LayerF32, Kernel::LayerF16), n as u32), &args)?;
        }
        let edge_out = self.edge_out.as_ref().map_or(Arg::Ptr(0), |b| dev.ptr(b, 0));
        let head = [
            dev.ptr(&self.lst, 0),
            Arg::I32(k as i32),
            Arg::F32(self.cfg.upd_scale),
            dev.ptr(&self.pred, 0),
            edge_out,
            flag,
        ];
        let args = [&common[..], &head].concat();
        let tiles = (d.e as usize).div_ceil(ROWS) as u32;
        dev.launch(launch(pick(Kernel::HeadF32, Kernel::HeadF16), tiles), &args)?;
        let mut bits = [0i32];
        dev.download(&self.flag, 0, &mut bits)?;
        for (bit, what) in [
            (flag::HISTORY, "parameter history"),
            (flag::SCALES, "per-tensor scales"),
            (flag::PREDICTION, "predicted parameters"),
        ] {
            if bits[0] & bit != 0 {
                return Err(nino_core::Error::NonFinite(what).into());
            }
        }
        dev.copy(&self.pred, 0, params, 0, p)
    }

    /// [`Nowcaster::nowcast`] from and to host memory (uploads the history, downloads the prediction).
    pub fn nowcast_host(&mut self, history: &[f32], k: usize, out: &mut [f32]) -> Result<(), CudaError> {
        let p = self.num_params();
        if out.len() != p {
            return Err(nino_core::Error::BufferSize { what: "params", expected: p, got: out.len() }.into());
        }
        let hist = self.dev.upload_new(history)?;
        let mut params = self.dev.alloc(p)?;
        self.nowcast(&hist, k, &mut params)?;
        self.dev.download(&params, 0, out)
    }

    /// The node-side values (and edge outputs, if kept) of the last nowcast.
    pub fn node_states(&self) -> Result<NodeStates, CudaError> {
        let (n, h, nl) = (self.dims.n as usize, self.dims.h as usize, self.dims.nl as usize);
        let mut node_proj = vec![0.0; n * h];
        self.dev.download(&self.x, 0, &mut node_proj)?;
        let mut conv = Vec::new();
        for l in 0..nl {
            let mut v = vec![0.0; n * h];
            self.dev.download(&self.xconv, l * n * h, &mut v)?;
            conv.push(v);
        }
        let edge_out = self.edge_out.as_ref().map(|b| self.dev.download_vec(b)).transpose()?;
        Ok(NodeStates { node_proj, conv, edge_out })
    }
}
