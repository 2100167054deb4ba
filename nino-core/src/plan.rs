//! Memory plans: every buffer a nowcaster or a training loop needs, counted before anything is allocated,
//! so an embedded caller can size static memory and a host can print what a run will take.
//!
//! Counts are in values (f32 unless stated); [`NowcastPlan::bytes`] and [`TrainPlan::bytes`] turn them into
//! bytes. The counts are the same functions the kernels check their buffers against, so a buffer sized by a
//! plan is never refused as too small.

use crate::arch::Arch;
use crate::graph::NeuralGraph;
use crate::nowcast::{self, Config, model};
use crate::{net, rollback};

/// How the nowcaster's weights are stored; the math is f32 either way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum WeightStorage {
    /// IEEE half precision, 2 bytes a value, widened to f32 one matrix at a time.
    F16,
    /// f32, 4 bytes a value.
    F32,
}

impl WeightStorage {
    /// Bytes of one stored weight.
    pub const fn bytes_per_value(self) -> usize {
        match self {
            WeightStorage::F16 => 2,
            WeightStorage::F32 => 4,
        }
    }
}

const F32_BYTES: usize = 4;

/// Values of the model tensors that [`nowcast::NinoWeights::bind`] reads for `cfg`; of the word positional
/// table only row 0 is counted, the one row a vision graph uses.
pub fn weight_values(cfg: &Config) -> usize {
    let h = cfg.hid;
    let lin = |rows: usize, cols: usize| rows * cols + rows;
    let embed = cfg.edge_types * h;
    if !cfg.gnn {
        return embed + lin(h, cfg.ctx) + 3 * lin(h, h) + lin(cfg.seq_len, h);
    }
    let pos_row = if cfg.wte_pos_enc { h } else { 0 };
    let node_proj = if cfg.has_node_proj() { lin(h, cfg.lpe) } else { 0 };
    let conv = lin(2 * h, h) + 2 * lin(h, 2 * h) + lin(h, h);
    let edge_update = 4 * lin(h, h);
    embed
        + pos_row
        + node_proj
        + lin(h, cfg.max_feat_size * cfg.ctx)
        + cfg.layers * conv
        + cfg.layers.saturating_sub(1) * edge_update
        + lin(h, h)
        + lin(cfg.max_feat_size * cfg.seq_len, h)
}

/// The buffers one nowcaster needs for one target network, in values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct NowcastPlan {
    /// Model weights ([`weight_values`]), stored as f16 or f32.
    pub weights: usize,
    /// The context history: `c` parameter vectors.
    pub history: usize,
    /// Node features (`[N, lpe]`); 0 for WNN+.
    pub node_features: usize,
    /// Edge features, edge outputs and the model's hidden states during one prediction.
    pub activations: usize,
    /// The scaled history and the f32 staging of one weight matrix.
    pub scratch: usize,
    /// The rollback snapshot ([`rollback::snapshot_len`]).
    pub rollback: usize,
    /// The deferred verdict's snapshot ([`rollback::state_snapshot_len`]: the parameters and Adam's
    /// moments), held instead of `rollback` when that verdict is on; the totals count `rollback`.
    pub rollback_deferred: usize,
    /// f32 values of the folded GNN ([`nowcast::folded_len`]), the host's faster path; 0 for WNN+.
    pub folded_weights: usize,
    /// Scratch of the folded path ([`nowcast::folded_scratch_len`]); 0 for WNN+.
    pub folded_scratch: usize,
}

impl NowcastPlan {
    /// The plan for nowcasting the network of `graph` with a model of `cfg`.
    ///
    /// ```
    /// use nino_core::nowcast::Config;
    /// use nino_core::plan::{NowcastPlan, WeightStorage};
    /// use nino_core::{NeuralGraph, Task};
    /// // The published GNN (`nino_no_posw`) on FM-16: 5.5 MiB with f16 weights, as `nino plan` prints.
    /// let cfg = Config::from_json(r#"{"wte_pos_enc": false}"#).unwrap();
    /// let plan = NowcastPlan::new(&NeuralGraph::new(&Task::Fm16.arch()), &cfg);
    /// assert_eq!(plan.weights, 549_992);
    /// assert_eq!(plan.bytes(WeightStorage::F16), 5_767_040);
    /// ```
    pub fn new(graph: &NeuralGraph, cfg: &Config) -> NowcastPlan {
        let p = graph.arch().param_count();
        let n = graph.num_nodes();
        let stage = model::stage_len(cfg);
        let hidden = nowcast::model_scratch_len(graph, cfg) - stage;
        let edge_io = nowcast::features::edge_attr_len(graph, cfg.ctx) + nowcast::features::edge_out_len(graph);
        let gnn = cfg.gnn;
        NowcastPlan {
            weights: weight_values(cfg),
            history: cfg.ctx * p,
            node_features: if gnn && cfg.has_node_proj() { n * cfg.lpe } else { 0 },
            activations: edge_io + hidden,
            scratch: cfg.ctx * p + stage,
            rollback: rollback::snapshot_len(p),
            rollback_deferred: rollback::state_snapshot_len(p),
            folded_weights: if gnn { nowcast::folded_len(cfg) } else { 0 },
            folded_scratch: if gnn { nowcast::folded_scratch_len(graph, cfg) } else { 0 },
        }
    }

    /// Values of the `scratch` buffer [`nowcast::nowcast`] takes: activations plus scratch.
    pub const fn nowcast_scratch(&self) -> usize {
        self.activations + self.scratch
    }

    /// Bytes of the direct path ([`nowcast::nowcast`]) with weights stored as `storage`, rollback included.
    pub const fn bytes(&self, storage: WeightStorage) -> usize {
        self.weights * storage.bytes_per_value()
            + F32_BYTES * (self.history + self.node_features + self.activations + self.scratch + self.rollback)
    }

    /// Bytes of the folded path ([`nowcast::nowcast_folded`]): weights stored as `storage` and folded into
    /// f32, rollback included.
    pub const fn folded_bytes(&self, storage: WeightStorage) -> usize {
        self.weights * storage.bytes_per_value()
            + F32_BYTES
                * (self.folded_weights + self.history + self.node_features + self.folded_scratch + self.rollback)
    }
}

/// The buffers one training step of Adam needs, in values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct TrainPlan {
    /// Parameters.
    pub params: usize,
    /// Their gradient.
    pub grads: usize,
    /// Adam's two moment vectors.
    pub adam: usize,
    /// One batch of inputs, f32 (labels are [`TrainPlan::labels`] u32s).
    pub inputs: usize,
    /// One batch of labels (u32).
    pub labels: usize,
    /// Layer outputs kept for backward ([`net::activation_len`]).
    pub activations: usize,
    /// Packed parameters, gradient and im2col work ([`net::scratch_len`]).
    pub scratch: usize,
}

impl TrainPlan {
    /// The plan for training `arch` with batches of `batch` examples.
    pub fn new(arch: &Arch, batch: usize) -> TrainPlan {
        let p = arch.param_count();
        TrainPlan {
            params: p,
            grads: net::grad_len(arch),
            adam: 2 * p,
            inputs: batch * arch.input.len(),
            labels: batch,
            activations: net::activation_len(arch, batch),
            scratch: net::scratch_len(arch, batch),
        }
    }

    /// Bytes of all of it (labels are 4-byte u32s, everything else f32).
    pub const fn bytes(&self) -> usize {
        F32_BYTES * (self.params + self.grads + self.adam + self.inputs + self.labels + self.activations + self.scratch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Task;

    #[test]
    fn plan_adds_up_to_what_the_kernels_ask_for() {
        for task in Task::ALL {
            let arch = task.arch();
            let graph = NeuralGraph::new(&arch);
            for cfg in [Config { wte_pos_enc: false, ..Config::default() }, Config { gnn: false, ..Config::default() }]
            {
                let plan = NowcastPlan::new(&graph, &cfg);
                assert_eq!(plan.nowcast_scratch(), nowcast::scratch_len(&graph, &cfg));
                assert_eq!(plan.history, 5 * arch.param_count());
                assert_eq!(plan.bytes(WeightStorage::F32) - plan.bytes(WeightStorage::F16), 2 * plan.weights);
            }
        }
    }

    #[test]
    fn weight_values_of_a_tiny_wnn_by_hand() {
        // hid 2, ctx 5, seq_len 40, 15 edge types: 30 + (10+2) + 3*(4+2) + (80+40).
        let cfg = Config { gnn: false, hid: 2, ..Config::default() };
        assert_eq!(weight_values(&cfg), 30 + 12 + 18 + 120);
    }
}
