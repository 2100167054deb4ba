//! Host-side NiNo nowcaster: owns the weights, graph features and buffers the core model needs.
//!
//! Everything a nowcast needs except the history is prepared once (graph, LPE, scratch), so a training
//! loop pays only for the prediction itself.

use crate::io::model_file::MetaModel;
use crate::io::weights::{WeightSet, WeightsError};
use crate::kernels::backend::RayonParallel;
use crate::kernels::gemm::ThreadedGemm;
use crate::kernels::simd::{fast_edge_kernels, fast_silu};
use half::f16;
use nino_core::nowcast::{self, Backend, Config, meta};
use nino_core::ops::gemm::Gemm;
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
    /// features; `None` computes them with [`crate::kernels::spectral::lpe`]. WNN+ ignores it.
    pub fn new(weights: WeightSet<f32>, arch: &Arch, lpe: Option<Vec<f32>>, f16: bool) -> Result<Self, NowcastError> {
        let cfg = weights.config;
        let graph = NeuralGraph::new(arch);
        let n = graph.num_nodes();
        let lpe = if !cfg.gnn || !cfg.has_node_proj() {
            Vec::new()
        } else {
            let lpe = match lpe {
                Some(l) => l,
                None => crate::kernels::spectral::lpe(arch, cfg.lpe)?,
            };
            if lpe.len() != n * cfg.lpe {
                return Err(NowcastError::Lpe { got: lpe.len(), expected: n * cfg.lpe, nodes: n, width: cfg.lpe });
            }
            lpe
        };
        let (weights, folded, scratch_len) = if weights.is_meta() {
            let mut model = MetaModel::from_weights(&weights).map_err(|e| NowcastError::Meta(e.to_string()))?;
            if f16 {
                model.params.iter_mut().for_each(|v| *v = f16::from_f32(*v).to_f32());
            }
            let mut cent = Vec::new();
            if cfg.centrality {
                let raw = crate::kernels::spectral::centrality(arch);
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
                meta::Compute { gemm: &*self.gemm, lo: &*self.gemm, kernels: crate::kernels::meta::host_kernels() },
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
    use crate::kernels::gemm::HostGemm;
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
