//! Host-side NiNo nowcaster: owns the weights, graph features and buffers the core model needs.
//!
//! Everything a nowcast needs except the history is prepared once (graph, LPE, scratch), so a training
//! loop pays only for the prediction itself.

use crate::gemm::HostGemm;
use crate::weights::{WeightSet, WeightsError};
use half::f16;
use nino_core::nowcast::{self, Config};
use nino_core::ops::Gemm;
use nino_core::{Arch, NeuralGraph};

/// Why a nowcaster could not be built or a nowcast failed.
#[derive(Debug, thiserror::Error)]
pub enum NowcastError {
    /// The weights are unusable.
    #[error(transparent)]
    Weights(#[from] WeightsError),
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

/// Weights in the storage chosen at construction.
#[derive(Clone, Debug)]
enum Storage {
    F32(WeightSet<f32>),
    F16(WeightSet<f16>),
}

/// A ready-to-run NiNo model for one target architecture.
pub struct Nowcaster {
    weights: Storage,
    graph: NeuralGraph,
    lpe: Vec<f32>,
    scratch: Vec<f32>,
    gemm: Box<dyn Gemm + Send>,
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
        let weights = if f16 { Storage::F16(weights.to_f16()?) } else { Storage::F32(weights) };
        let scratch = vec![0.0; nowcast::scratch_len(&graph, &cfg)];
        Ok(Nowcaster { weights, graph, lpe, scratch, gemm: Box::new(HostGemm) })
    }

    /// Replaces the matrix multiply (the default is the host's [`HostGemm`]).
    pub fn with_gemm(mut self, gemm: Box<dyn Gemm + Send>) -> Self {
        self.gemm = gemm;
        self
    }

    /// The model's options.
    pub fn config(&self) -> &Config {
        match &self.weights {
            Storage::F32(w) => &w.config,
            Storage::F16(w) => &w.config,
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

    /// Context states a nowcast needs (`c`).
    pub fn ctx(&self) -> usize {
        self.config().ctx
    }

    /// Predicts the parameters `k` context spacings ahead from `history` (`[c][P]`, oldest first) into `out`.
    pub fn nowcast(&mut self, history: &[f32], k: usize, out: &mut [f32]) -> Result<(), NowcastError> {
        let (g, lpe, scratch, gemm) = (&self.graph, &self.lpe, &mut self.scratch, &*self.gemm);
        match &self.weights {
            Storage::F32(w) => nowcast::nowcast(gemm, &w.bind()?, g, history, lpe, k, scratch, out)?,
            Storage::F16(w) => nowcast::nowcast(gemm, &w.bind()?, g, history, lpe, k, scratch, out)?,
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
