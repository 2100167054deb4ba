//! The NiNo GNN forward pass at inference (spec 4.3), in its cheaper per-node factoring.
//!
//! `W_pre` is split into target and source halves applied once per node; `lin_s`/`lin_t` are per node;
//! layer `L-1` is skipped (quirk Q1: nothing reads it); the DMS head only evaluates the `F` rows of horizon
//! `k`. Heavy products go through [`Gemm`], so a host can plug in a faster one.

use super::features::for_each_edge;
use super::linear::{Backend, as_f32, linear};
use super::weights::{Config, GnnWeights, Lin, WeightElem};
use crate::error::{Error, check_len};
use crate::graph::NeuralGraph;
use crate::ops::{Gemm, MatRef};

/// A point of the forward pass whose values an observer may inspect (names of the golden fixtures).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Stage {
    /// `X0 [N, H]`: node features from the LPE projection (`node_proj_x`).
    NodeProj,
    /// `E0 [E, H]`: edge features entering message passing (`gnn_in_e`).
    GnnInput,
    /// `X~ [N, H]` of layer `l`, before its SiLU (`conv{l}_x`).
    Conv(usize),
    /// `Ee [E, H]` after edge update `m` (`edge_update{m}_e`; the last one is `gnn_out_e`).
    EdgeUpdate(usize),
    /// The head's output `[E, F]` before the residual (`raw_out_k{k}`).
    Delta,
}

/// Receives intermediate values of a forward pass (for tests and debugging); `&mut |_, _| {}` ignores them.
pub type Observer<'o> = &'o mut dyn FnMut(Stage, &[f32]);

/// Floats needed to hold any weight matrix converted to f32 (f16 storage only; 0 would do for f32).
pub fn stage_len(cfg: &Config) -> usize {
    let h = cfg.hid;
    let widest_in = cfg.lpe.max(cfg.max_feat_size * cfg.ctx).max(2 * h);
    (h * widest_in).max(cfg.max_feat_size * cfg.seq_len * h).max(2 * h * h)
}

/// Scratch floats of [`gnn_forward`] for a graph of `e` edges and `n` nodes.
pub fn gnn_scratch_len(cfg: &Config, e: usize, n: usize) -> usize {
    let h = cfg.hid;
    5 * n * h + 3 * e * h + stage_len(cfg)
}

pub(crate) fn check_common(
    cfg: &Config,
    graph: &NeuralGraph,
    attr: &[f32],
    k: usize,
    out: &[f32],
) -> Result<(), Error> {
    let (e, f, c) = (graph.num_edges(), graph.feat_slots(), cfg.ctx);
    super::check_fits(graph, cfg)?;
    check_horizon(cfg, k)?;
    check_len("edge_attr_in", attr.len(), e * f * c)?;
    check_len("edge outputs", out.len(), e * f)
}

/// Refuses a horizon the model does not emit.
pub(crate) fn check_horizon(cfg: &Config, k: usize) -> Result<(), Error> {
    if k == 0 || k > cfg.seq_len {
        return Err(Error::InvalidArgument("horizon k must be in 1..=seq_len"));
    }
    Ok(())
}

/// Adds the output residual: `out[e, f] = last[e, f] + upd_scale * out[e, f]`, `last` the newest state.
pub(crate) fn add_residual(out: &mut [f32], attr: &[f32], f: usize, c: usize, upd_scale: f32) {
    for (r, o) in out.iter_mut().enumerate() {
        let (e, s) = (r / f, r % f);
        *o = attr[e * f * c + s * c + c - 1] + upd_scale * *o;
    }
}

/// Runs the GNN on `attr` (`[E, F*c]`) and `lpe` (`[N, lpe]`) for horizon `k`, writing `out` (`[E, F]`,
/// scaled, residual included).
pub fn gnn_forward<W: WeightElem>(
    be: Backend<'_>,
    w: &GnnWeights<'_, W>,
    cfg: &Config,
    graph: &NeuralGraph,
    attr: &[f32],
    lpe: &[f32],
    k: usize,
    scratch: &mut [f32],
    out: &mut [f32],
    obs: Observer<'_>,
) -> Result<(), Error> {
    check_common(cfg, graph, attr, k, out)?;
    let (e, n, h, f, c) = (graph.num_edges(), graph.num_nodes(), cfg.hid, graph.feat_slots(), cfg.ctx);
    if cfg.has_node_proj() {
        check_len("lpe", lpe.len(), n * cfg.lpe)?;
    }
    check_len("scratch", scratch.len(), gnn_scratch_len(cfg, e, n))?;
    let (x, rest) = scratch.split_at_mut(n * h);
    let (u, rest) = rest.split_at_mut(n * h);
    let (v, rest) = rest.split_at_mut(n * h);
    let (agg, rest) = rest.split_at_mut(n * h);
    let (xt, rest) = rest.split_at_mut(n * h);
    let (ee, rest) = rest.split_at_mut(e * h);
    let (big, stage) = rest.split_at_mut(2 * e * h);

    // Node features X0.
    match &w.node_proj {
        Some(np) => linear(be.gemm, MatRef::row_major(lpe, n, cfg.lpe), np, 0, x, h, true, false, stage)?,
        None => x.fill(0.0),
    }
    if let Some(row) = w.wte_row0 {
        for xr in x.chunks_exact_mut(h) {
            xr.iter_mut().zip(row).for_each(|(a, b)| *a += b.to_f32());
        }
    }
    obs(Stage::NodeProj, x);

    // Edge features E0: only the first F*c columns of edge_proj (quirk Q3, without mutating anything).
    fill_bias(ee, h, w.edge_proj.b);
    if let Some(emb) = w.layer_embed {
        let mut res = Ok(());
        for_each_edge(graph, |ei, _, _, kind| {
            let Some(row) = emb.get(kind.id() * h..kind.id() * h + h) else {
                res = Err(Error::InvalidArgument("edge type outside the model's embedding"));
                return;
            };
            ee[ei * h..ei * h + h].iter_mut().zip(row).for_each(|(a, b)| *a += b.to_f32());
        });
        res?;
    }
    linear(be.gemm, MatRef::row_major(attr, e, f * c), &w.edge_proj, 0, ee, h, false, true, stage)?;
    obs(Stage::GnnInput, ee);

    for l in 0..cfg.layers - 1 {
        let conv = &w.convs[l];
        // (scale | shift) per edge.
        linear(be.gemm, MatRef::row_major(ee, e, h), &conv.edge_encoder, 0, big, 2 * h, true, false, stage)?;
        // Target and source halves of the message network, once per node; b_pre folded into the target half.
        let xm = MatRef::row_major(x, n, h);
        linear(be.gemm, xm, &conv.pre, 0, u, h, true, false, stage)?;
        linear(be.gemm, xm, &conv.pre, h, v, h, false, false, stage)?;
        aggregate_messages(graph, big, u, v, agg, h);
        // X~ = ([X | agg] W_post^T + b_post) W_lin^T + b_lin.
        linear(be.gemm, xm, &conv.post, 0, xt, h, true, false, stage)?;
        linear(be.gemm, MatRef::row_major(agg, n, h), &conv.post, h, xt, h, false, true, stage)?;
        linear(be.gemm, MatRef::row_major(xt, n, h), &conv.lin, 0, u, h, true, false, stage)?;
        obs(Stage::Conv(l), u);
        x.copy_from_slice(u);
        (be.silu)(x);

        // Edge update with the new X and the old Ee.
        let upd = &w.edge_updates[l];
        let xm = MatRef::row_major(x, n, h);
        linear(be.gemm, xm, &upd.lin_s, 0, v, h, true, false, stage)?;
        linear(be.gemm, xm, &upd.lin_t, 0, agg, h, true, false, stage)?;
        let tmp = &mut big[..e * h];
        linear(be.gemm, MatRef::row_major(ee, e, h), &upd.lin_e, 0, tmp, h, true, false, stage)?;
        add_node_terms(graph, v, agg, tmp, h);
        (be.silu)(tmp);
        linear(be.gemm, MatRef::row_major(tmp, e, h), &upd.lin1, 0, ee, h, true, false, stage)?;
        obs(Stage::EdgeUpdate(l), ee);
    }

    // DMS head: hidden layer on every edge, then only rows f*S + k-1 of the output layer.
    let hid = &mut big[..e * h];
    linear(be.gemm, MatRef::row_major(ee, e, h), &w.head_hidden, 0, hid, h, true, false, stage)?;
    (be.silu)(hid);
    head_rows(be.gemm, &w.head_out, cfg.seq_len, k, f, MatRef::row_major(hid, e, h), out, stage)?;
    obs(Stage::Delta, out);
    add_residual(out, attr, f, c, cfg.upd_scale);
    Ok(())
}

/// `agg[t] = mean over edges e into t of sc_e * (U[t] + V[s]) + sh_e`, `ss` holding `[sc | sh]` per edge
/// (spec 4.3 step 4); a node without incoming edges gets 0.
pub(crate) fn aggregate_messages(graph: &NeuralGraph, ss: &[f32], u: &[f32], v: &[f32], agg: &mut [f32], h: usize) {
    agg.fill(0.0);
    for_each_edge(graph, |ei, s, t, _| {
        let (sc, sh) = ss[ei * 2 * h..ei * 2 * h + 2 * h].split_at(h);
        let (ut, vs) = (&u[t * h..t * h + h], &v[s * h..s * h + h]);
        for ((((a, sc), sh), ut), vs) in agg[t * h..t * h + h].iter_mut().zip(sc).zip(sh).zip(ut).zip(vs) {
            *a += sc * (ut + vs) + sh;
        }
    });
    scale_by_in_degree(graph, agg, h);
}

/// Divides each node's row of `rows` (`[N, h]`) by its in-degree: a sum over incoming edges becomes a mean.
pub(crate) fn scale_by_in_degree(graph: &NeuralGraph, rows: &mut [f32], h: usize) {
    for node in 0..graph.num_nodes() {
        let d = graph.in_degree(node);
        if d > 0 {
            let inv = 1.0 / d as f32;
            rows[node * h..node * h + h].iter_mut().for_each(|a| *a *= inv);
        }
    }
}

/// `z[e] += src_term[s(e)] + dst_term[t(e)]`: the per-node halves of an edge update.
pub(crate) fn add_node_terms(graph: &NeuralGraph, src_term: &[f32], dst_term: &[f32], z: &mut [f32], h: usize) {
    for_each_edge(graph, |ei, s, t, _| {
        let (ls, lt) = (&src_term[s * h..s * h + h], &dst_term[t * h..t * h + h]);
        for ((a, s), t) in z[ei * h..ei * h + h].iter_mut().zip(ls).zip(lt) {
            *a += s + t;
        }
    });
}

fn fill_bias<W: WeightElem>(out: &mut [f32], h: usize, b: &[W]) {
    super::linear::fill_bias(out, out.len() / h, h, b)
}

/// `out[e, f] = hid[e] · W[f*S + k-1] + b[f*S + k-1]` for `f < F`: the DMS rows of horizon `k` only.
pub(crate) fn head_rows<W: WeightElem>(
    gemm: &dyn Gemm,
    lin: &Lin<'_, W>,
    s: usize,
    k: usize,
    f: usize,
    hid: MatRef<'_>,
    out: &mut [f32],
    stage: &mut [f32],
) -> Result<(), Error> {
    let h = lin.cols;
    for row in out.chunks_exact_mut(f) {
        for (j, o) in row.iter_mut().enumerate() {
            *o = lin.b[j * s + k - 1].to_f32();
        }
    }
    let w = as_f32(lin.w, stage)?;
    let wt = MatRef { data: &w[(k - 1) * h..], rows: h, cols: f, rs: 1, cs: s * h };
    gemm.gemm(hid, wt, out, f, 1.0)
}
