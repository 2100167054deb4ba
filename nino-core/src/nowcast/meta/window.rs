//! One meta-training window (spec 7.2 step 6): `c` input states and up to `S` target states of a
//! trajectory, scaled with the inputs' per-tensor statistics and laid out on the neural graph's edges,
//! with the mask of the targets that count.

use crate::error::{Error, check_len};
use crate::graph::NeuralGraph;
use crate::nowcast::features::history_to_edge_attr;
use crate::nowcast::scale::{MAX_TENSORS, TensorScale, scale_history, tensor_scales};
use crate::nowcast::weights::Config;

/// Floats of scratch [`build`] needs: the scaled states (`(c + S) * P`) and one `[E, F]` slot map.
pub fn scratch_len(cfg: &Config, graph: &NeuralGraph) -> usize {
    (cfg.ctx + cfg.seq_len) * graph.arch().param_count() + graph.num_edges() * graph.feat_slots()
}

/// Builds a window from `states` (`[c + len][P]`, oldest first, `1 <= len <= S`): the inputs `attr`
/// (`[E, F*c]`), the targets `target` (`[E, F*S]`, column `f*S + j`, zero past `len`) scaled with the
/// inputs' `(mean, sd)`, and `mask` (`[E, F*S]`): 1 for the real parameter slots of horizons `j < len`,
/// 0 for padded slots, horizons past the trajectory, and self-loops.
pub fn build(
    cfg: &Config,
    graph: &NeuralGraph,
    states: &[f32],
    len: usize,
    scratch: &mut [f32],
    attr: &mut [f32],
    target: &mut [f32],
    mask: &mut [u8],
) -> Result<(), Error> {
    let arch = graph.arch();
    let (p, c, s) = (arch.param_count(), cfg.ctx, cfg.seq_len);
    let (e, f) = (graph.num_edges(), graph.feat_slots());
    if len == 0 || len > s {
        return Err(Error::InvalidArgument("window: the target length must be in 1..=seq_len"));
    }
    check_len("window states", states.len(), (c + len) * p)?;
    check_len("window scratch", scratch.len(), scratch_len(cfg, graph))?;
    check_len("window targets", target.len(), e * f * s)?;
    check_len("window mask", mask.len(), e * f * s)?;
    if states.iter().any(|v| !v.is_finite()) {
        return Err(Error::NonFinite("trajectory states"));
    }
    let mut scales = [TensorScale::default(); MAX_TENSORS];
    let scales = &mut scales[..arch.tensor_count()];
    let (x, y) = states.split_at(c * p);
    tensor_scales(arch, x, c, scales)?;
    if scales.iter().any(|t| !(t.mean.is_finite() && t.sd.is_finite())) {
        return Err(Error::NonFinite("per-tensor scales"));
    }
    let (scaled, slots) = scratch.split_at_mut((c + s) * p);
    let (sx, sy) = scaled.split_at_mut(c * p);
    scale_history(arch, x, c, scales, sx)?;
    history_to_edge_attr(graph, sx, c, attr)?;
    scale_history(arch, y, len, scales, &mut sy[..len * p])?;
    sy[len * p..].fill(0.0);
    history_to_edge_attr(graph, sy, s, target)?;
    // Which slots are parameters: a state of ones maps to 1 there, 0 on padding, 2 on self-loops.
    let ones = &mut sx[..p];
    ones.fill(1.0);
    history_to_edge_attr(graph, ones, 1, slots)?;
    for (row, &slot) in mask.chunks_exact_mut(s).zip(slots.iter()) {
        let real = slot == 1.0;
        for (j, m) in row.iter_mut().enumerate() {
            *m = u8::from(real && j < len);
        }
    }
    Ok(())
}
