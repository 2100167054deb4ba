//! The NiNo nowcaster: scaling, edge features, the GNN and WNN+ models, and the horizon schedule.
//!
//! [`nowcast`] runs one whole prediction: history `[c][P]` (oldest first) and node features `[N, lpe]` to
//! the parameters `k` context spacings ahead, in caller buffers sized by [`scratch_len`].

pub mod features;
pub mod file;
pub mod folded;
pub mod linear;
pub mod meta;
pub mod model;
pub mod scale;
pub mod schedule;
pub mod weights;
pub mod wnn;

pub use folded::{FoldedGnn, LayerOffsets, fold_gnn, folded_len};
pub use linear::{Backend, EdgeKernels, Parallel, Sequential};
pub use model::{Observer, Stage};
pub use scale::{MAX_TENSORS, TensorScale};
pub use schedule::Schedule;
pub use weights::{Config, Head, ModelWeights, NinoWeights, WeightElem};

use crate::error::{Error, check_len};
use crate::graph::{EdgeType, NeuralGraph};

/// Checks that a model of `cfg` can nowcast the network of `graph`, before any buffer is sized for it: the
/// graph's feature slots fit the model's, and the highest edge type the core lays out (the self-loop) has a
/// row in the model's embedding.
pub fn check_fits(graph: &NeuralGraph, cfg: &Config) -> Result<(), Error> {
    if graph.feat_slots() > cfg.max_feat_size {
        return Err(Error::InvalidArgument("graph has more feature slots than the model (kernel > 3x3)"));
    }
    if cfg.edge_types > 0 && EdgeType::SelfLoop.id() >= cfg.edge_types {
        return Err(Error::InvalidArgument("edge type outside the model's embedding"));
    }
    Ok(())
}

/// Scratch floats the model alone needs ([`model_forward`]).
pub fn model_scratch_len(graph: &NeuralGraph, cfg: &Config) -> usize {
    if cfg.gnn { model::gnn_scratch_len(cfg, graph.num_edges(), graph.num_nodes()) } else { wnn::wnn_scratch_len(cfg) }
}

/// Scratch floats of [`nowcast`]: scaled states, edge features, edge outputs and the model's scratch.
pub fn scratch_len(graph: &NeuralGraph, cfg: &Config) -> usize {
    pipeline_len(graph, cfg) + model_scratch_len(graph, cfg)
}

/// Runs the model on ready edge features `attr` (`[E, F*c]`), writing `out` (`[E, F]`, scaled). `lpe` is
/// ignored by WNN+ (pass `&[]`).
pub fn model_forward<W: WeightElem>(
    be: Backend<'_>,
    weights: &NinoWeights<'_, W>,
    graph: &NeuralGraph,
    attr: &[f32],
    lpe: &[f32],
    k: usize,
    scratch: &mut [f32],
    out: &mut [f32],
    obs: Observer<'_>,
) -> Result<(), Error> {
    let cfg = &weights.config;
    match &weights.model {
        ModelWeights::Gnn(w) => model::gnn_forward(be, w, cfg, graph, attr, lpe, k, scratch, out, obs),
        ModelWeights::Wnn(w) => wnn::wnn_forward(be, w, cfg, graph, attr, k, scratch, out, obs),
    }
}

/// One nowcast: `history` (`[c][P]`, oldest first) to new parameters `out` (`[P]`) at horizon `k`;
/// `out` is written only on success.
pub fn nowcast<W: WeightElem>(
    be: Backend<'_>,
    weights: &NinoWeights<'_, W>,
    graph: &NeuralGraph,
    history: &[f32],
    lpe: &[f32],
    k: usize,
    scratch: &mut [f32],
    out: &mut [f32],
) -> Result<(), Error> {
    nowcast_observed(be, weights, graph, history, lpe, k, scratch, out, &mut |_, _| {})
}

/// [`nowcast`] that also shows the model's intermediate values to `obs`.
pub fn nowcast_observed<W: WeightElem>(
    be: Backend<'_>,
    weights: &NinoWeights<'_, W>,
    graph: &NeuralGraph,
    history: &[f32],
    lpe: &[f32],
    k: usize,
    scratch: &mut [f32],
    out: &mut [f32],
    obs: Observer<'_>,
) -> Result<(), Error> {
    let cfg = &weights.config;
    check_len("scratch", scratch.len(), scratch_len(graph, cfg))?;
    pipeline(cfg, graph, history, lpe, scratch, out, |attr, rest, edges| {
        model_forward(be, weights, graph, attr, lpe, k, rest, edges, obs)
    })
}

/// Scratch floats of [`nowcast_folded`].
pub fn folded_scratch_len(graph: &NeuralGraph, cfg: &Config) -> usize {
    pipeline_len(graph, cfg) + folded::folded_scratch_len(cfg, graph.num_edges(), graph.num_nodes())
}

/// [`nowcast`] through a folded GNN ([`fold_gnn`]): the same prediction up to rounding, about half the
/// work; `out` is written only on success.
pub fn nowcast_folded(
    be: Backend<'_>,
    model: &FoldedGnn<'_>,
    graph: &NeuralGraph,
    history: &[f32],
    lpe: &[f32],
    k: usize,
    scratch: &mut [f32],
    out: &mut [f32],
    obs: Observer<'_>,
) -> Result<(), Error> {
    let cfg = model.config();
    check_len("scratch", scratch.len(), folded_scratch_len(graph, cfg))?;
    pipeline(cfg, graph, history, lpe, scratch, out, |attr, rest, edges| {
        folded::folded_forward(be, model, graph, attr, lpe, k, rest, edges, obs)
    })
}

/// Scratch floats of [`nowcast_meta`].
pub fn meta_scratch_len(graph: &NeuralGraph, cfg: &Config) -> usize {
    let e = graph.num_edges() * graph.feat_slots();
    pipeline_len(graph, cfg) + meta::scratch_len(cfg, graph) + e * cfg.seq_len
}

/// [`nowcast`] for a trainable model in the flat layout of [`meta::Layout`], the path of the NiNo++
/// variants (GRU/LSTM heads, centrality): all horizons are predicted and horizon `k` is kept. `centrality`
/// is [`meta::centrality_feature`] of the graph (empty without `cent_proj`); `out` is written only on
/// success.
pub fn nowcast_meta(
    cx: meta::Compute<'_>,
    layout: &meta::Layout,
    params: &[f32],
    graph: &NeuralGraph,
    history: &[f32],
    lpe: &[f32],
    centrality: &[f32],
    k: usize,
    scratch: &mut [f32],
    out: &mut [f32],
) -> Result<(), Error> {
    let cfg = &layout.cfg;
    model::check_horizon(cfg, k)?;
    check_len("scratch", scratch.len(), meta_scratch_len(graph, cfg))?;
    if centrality.iter().any(|x| !x.is_finite()) {
        return Err(Error::NonFinite("node features (centrality)"));
    }
    pipeline(cfg, graph, history, lpe, scratch, out, |attr, rest, edges| {
        let (mscratch, preds) = rest.split_at_mut(meta::scratch_len(cfg, graph));
        let sample = meta::Sample { graph, attr, lpe, centrality };
        meta::predict(cx, layout, params, &sample, mscratch, preds)?;
        let s = cfg.seq_len;
        for (o, row) in edges.iter_mut().zip(preds.chunks_exact(s)) {
            *o = row[k - 1];
        }
        Ok(())
    })
}

/// Scratch floats of [`pipeline`] itself: scaled states, edge features and edge outputs.
fn pipeline_len(graph: &NeuralGraph, cfg: &Config) -> usize {
    cfg.ctx * graph.arch().param_count() + features::edge_attr_len(graph, cfg.ctx) + features::edge_out_len(graph)
}

/// Scaling, edge features, `forward(attr, model scratch, edge outputs)`, gather and unscaling.
fn pipeline(
    cfg: &Config,
    graph: &NeuralGraph,
    history: &[f32],
    lpe: &[f32],
    scratch: &mut [f32],
    out: &mut [f32],
    forward: impl FnOnce(&[f32], &mut [f32], &mut [f32]) -> Result<(), Error>,
) -> Result<(), Error> {
    let arch = graph.arch();
    let (c, p) = (cfg.ctx, arch.param_count());
    check_len("history", history.len(), c * p)?;
    check_len("params", out.len(), p)?;
    if history.iter().any(|x| !x.is_finite()) {
        return Err(Error::NonFinite("parameter history"));
    }
    if cfg.gnn && lpe.iter().any(|x| !x.is_finite()) {
        return Err(Error::NonFinite("node features (lpe)"));
    }
    let mut scales = [TensorScale::default(); MAX_TENSORS];
    let scales = &mut scales[..arch.tensor_count()];
    scale::tensor_scales(arch, history, c, scales)?;
    if scales.iter().any(|s| !(s.mean.is_finite() && s.sd.is_finite())) {
        return Err(Error::NonFinite("per-tensor scales"));
    }
    let (scaled, rest) = scratch.split_at_mut(c * p);
    let (attr, rest) = rest.split_at_mut(features::edge_attr_len(graph, c));
    let (edges, rest) = rest.split_at_mut(features::edge_out_len(graph));
    scale::scale_history(arch, history, c, scales, scaled)?;
    features::history_to_edge_attr(graph, scaled, c, attr)?;
    forward(attr, rest, edges)?;
    // Gather and unscale in scratch, so `out` (often the live parameters) is untouched on failure.
    let pred = &mut scaled[..p];
    features::edges_to_params(graph, edges, pred)?;
    if pred.iter().any(|x| !x.is_finite()) {
        return Err(Error::NonFinite("predicted parameters"));
    }
    scale::unscale_params(arch, scales, pred)?;
    if pred.iter().any(|x| !x.is_finite()) {
        return Err(Error::NonFinite("predicted parameters"));
    }
    out.copy_from_slice(pred);
    Ok(())
}
