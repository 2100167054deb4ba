//! Meta-training: the trainable NiNo (training-mode forward, spec 4.5) with its backward pass, over a flat
//! f32 parameter vector laid out by [`Layout`], for the reference model and the NiNo++ variants (centrality
//! node feature `V0*`, GRU and LSTM heads; spec 9.2, 9.3).
//!
//! One call of [`loss_and_grad`] handles one graph (one window of one trajectory): it runs the forward pass
//! keeping what backward needs in caller scratch ([`scratch_len`]), computes the masked L1 loss against the
//! targets of every horizon, and adds the gradient of the summed loss to `grad`. A batch is several calls;
//! dividing by the total count gives the reference's pooled mean (spec 7.3). The last message-passing
//! layer's node output is unused at inference and in training alike (quirk Q1), so it is skipped and its
//! weights get a zero gradient. The shift half of each edge encoder is linear in the edge features and
//! only reaches the nodes through a mean, so it is applied once per node to the mean of the incoming edge
//! features (`mean(E W^T + b) = mean(E) W^T + b`), the fold the inference path (`folded`) already makes:
//! the same function, 15% fewer FLOPs per graph with the MLP head and 6% with a recurrent one. And every
//! reader of an edge-feature matrix is composed with the linear that makes it (module `fold`), so no `E_l` but
//! a recurrent head's first state is ever built: a third fewer FLOPs again with the MLP head.

mod fold;
pub mod layout;
pub mod ops;
pub mod window;

use fold::Source;
pub use layout::{Layout, LinSlot, TensorSlot};

use crate::error::{Error, check_len};
use crate::graph::NeuralGraph;
use crate::nowcast::features::for_each_edge;
use crate::nowcast::model::{add_node_terms, scale_by_in_degree};
use crate::nowcast::weights::{Config, Head};
use crate::ops::{Gemm, MatRef};
pub use ops::{Compute, Kernels};
use ops::{lin_bwd, lin_fwd};

/// One training (or prediction) graph: the scaled history of one window and what the model reads with it.
#[derive(Clone, Copy, Debug)]
pub struct Sample<'a> {
    /// The target network's neural graph.
    pub graph: &'a NeuralGraph,
    /// Scaled history `[E, F*c]`, column `f*c + t`, oldest state first (`history_to_edge_attr`).
    pub attr: &'a [f32],
    /// LPE node features `[N, lpe]` (sign-flipped per example in meta-training, spec 7.2).
    pub lpe: &'a [f32],
    /// Eigenvector centrality `[N]` when the model has `cent_proj`, else empty.
    pub centrality: &'a [f32],
}

/// The centrality node feature the NiNo++ model reads: the unit-norm Perron vector times `sqrt(N)`, so its
/// entries are of order one whatever the graph's size (spec 9.2 leaves the scale to the port; meta-training
/// and inference both use this one).
pub fn centrality_feature(raw: &[f32], out: &mut [f32]) -> Result<(), Error> {
    check_len("centrality", out.len(), raw.len())?;
    let scale = libm::sqrtf(raw.len() as f32);
    out.iter_mut().zip(raw).for_each(|(o, r)| *o = r * scale);
    Ok(())
}

/// Float sizes of every buffer one forward/backward needs; [`scratch_len`] is their sum.
struct Sizes {
    nh: usize,
    eh: usize,
    layers: usize,
    per_layer: usize,
    folds: usize,
    fold: usize,
    head: usize,
    out: usize,
    work: usize,
    sel: usize,
}

fn sizes(cfg: &Config, e: usize, n: usize, f: usize) -> Sizes {
    let h = cfg.hid;
    let (nh, eh) = (n * h, e * h);
    let layers = cfg.layers - 1;
    // The widest input an edge-feature matrix is made from (`attr` or an edge update's activations), and
    // the rows of a composed reader's bias table.
    let kz = h.max(f * cfg.ctx);
    let types = cfg.edge_types.max(1);
    // sc, z (eh each); u, v, agg, y1, xt, s, t, ebar (nh each); zbar (n * kz).
    let per_layer = 2 * eh + 8 * nh + n * kz;
    // Per processed layer the encoder's scale half and `lin_e`, and the MLP head's hidden layer.
    let fold = fold::fold_len(h, kz, types);
    let folds = 2 * layers + 1;
    let g = cfg.head.gates() * h;
    let head = match cfg.head {
        Head::Mlp => 2 * eh,
        // E_L = h_0, h_1..h_c, gates per step, and gh_n (GRU) or c_1..c_c (LSTM) per step.
        Head::Gru | Head::Lstm => (cfg.ctx + 1) * eh + cfg.ctx * e * g + cfg.ctx * eh,
    };
    let out = e * f * cfg.seq_len;
    // dE, dA, dA2, dSC (eh each), dX, dX2, dU, dV, dAGG, dY1, dEBAR (nh each), dZBAR (n * kz), the folds'
    // work, dD [E, F*S], and for the recurrent heads dh, dc (eh) plus dGI, dGH (e*g each) and one input
    // step [E, F].
    let work = 4 * eh + 7 * nh + n * kz + fold::work_len(h, kz, types, h) + out + 2 * eh + 2 * e * g + e * f;
    // The head's output rows of the horizons a window reaches, and their gradient (`gather_head_rows`).
    let sel = 2 * f * cfg.seq_len * (h + 1);
    Sizes { nh, eh, layers, per_layer, folds, fold, head, out, work, sel }
}

/// Scratch floats [`loss_and_grad`] and [`predict`] need for `graph` with a model of `cfg`.
pub fn scratch_len(cfg: &Config, graph: &NeuralGraph) -> usize {
    let z = sizes(cfg, graph.num_edges(), graph.num_nodes(), graph.feat_slots());
    (z.layers + 1) * z.nh
        + z.layers * z.eh
        + z.layers * z.per_layer
        + z.folds * z.fold
        + z.head
        + z.out
        + z.work
        + z.sel
}

/// Splits `n` values off the front of `buf`.
fn take<'a>(buf: &mut &'a mut [f32], n: usize) -> &'a mut [f32] {
    let (head, tail) = core::mem::take(buf).split_at_mut(n);
    *buf = tail;
    head
}

/// What the forward pass keeps for backward.
struct Tape<'a> {
    /// `X_0..X_L` (`L` = processed layers), `[N, H]` each.
    xs: &'a mut [f32],
    /// The edge updates' activations `a_0..a_{L-1}`, `[E, H]` each: `E_{l+1} = a_l W_1^T + b_1`.
    acts: &'a mut [f32],
    /// Per processed layer: sc, z, u, v, agg, y1, xt, s, t, ebar, zbar.
    layers: &'a mut [f32],
    /// The composed readers (`fold`): per processed layer the encoder's scale half and `lin_e`, then the
    /// MLP head's hidden layer.
    folds: &'a mut [f32],
    /// Head activations (see `sizes`).
    head: &'a mut [f32],
    /// Predictions `[E, F*S]` (column `f*S + j`), scaled, residual included.
    out: &'a mut [f32],
    /// Backward work space.
    work: &'a mut [f32],
    /// The head's output rows of the reached horizons and their gradient.
    sel: &'a mut [f32],
}

fn tape<'a>(cfg: &Config, graph: &NeuralGraph, scratch: &'a mut [f32]) -> Result<Tape<'a>, Error> {
    check_len("meta scratch", scratch.len(), scratch_len(cfg, graph))?;
    let z = sizes(cfg, graph.num_edges(), graph.num_nodes(), graph.feat_slots());
    let mut buf = scratch;
    Ok(Tape {
        xs: take(&mut buf, (z.layers + 1) * z.nh),
        acts: take(&mut buf, z.layers * z.eh),
        layers: take(&mut buf, z.layers * z.per_layer),
        folds: take(&mut buf, z.folds * z.fold),
        head: take(&mut buf, z.head),
        out: take(&mut buf, z.out),
        work: take(&mut buf, z.work),
        sel: take(&mut buf, z.sel),
    })
}

/// One processed layer's slices of the tape.
struct LayerTape<'a> {
    sc: &'a mut [f32],
    z: &'a mut [f32],
    u: &'a mut [f32],
    v: &'a mut [f32],
    agg: &'a mut [f32],
    y1: &'a mut [f32],
    xt: &'a mut [f32],
    s: &'a mut [f32],
    t: &'a mut [f32],
    ebar: &'a mut [f32],
    zbar: &'a mut [f32],
}

fn layer_tape(buf: &mut [f32], nh: usize, eh: usize) -> LayerTape<'_> {
    let mut b = buf;
    LayerTape {
        sc: take(&mut b, eh),
        z: take(&mut b, eh),
        u: take(&mut b, nh),
        v: take(&mut b, nh),
        agg: take(&mut b, nh),
        y1: take(&mut b, nh),
        xt: take(&mut b, nh),
        s: take(&mut b, nh),
        t: take(&mut b, nh),
        ebar: take(&mut b, nh),
        zbar: b,
    }
}

/// The input `Z` that edge-feature matrix `E_l` is made from: `attr` for `l == 0`, else `a_{l-1}`.
fn source_input<'a>(s: &Sample<'a>, acts: &'a [f32], l: usize, h: usize) -> MatRef<'a> {
    let (e, fc) = (s.graph.num_edges(), s.attr.len() / s.graph.num_edges().max(1));
    match l {
        0 => MatRef::row_major(s.attr, e, fc),
        _ => MatRef::row_major(&acts[(l - 1) * e * h..l * e * h], e, h),
    }
}

fn check_sample(lay: &Layout, p: &[f32], s: &Sample<'_>) -> Result<(), Error> {
    let cfg = &lay.cfg;
    let (e, n, f) = (s.graph.num_edges(), s.graph.num_nodes(), s.graph.feat_slots());
    check_len("meta params", p.len(), lay.len)?;
    if f > cfg.max_feat_size {
        return Err(Error::InvalidArgument("graph has more feature slots than the model (kernel > 3x3)"));
    }
    check_len("edge_attr_in", s.attr.len(), e * f * cfg.ctx)?;
    check_len("lpe", s.lpe.len(), n * cfg.lpe)?;
    check_len("centrality", s.centrality.len(), if cfg.centrality { n } else { 0 })?;
    if let Some(emb) = &lay.embed {
        let mut inside = true;
        for_each_edge(s.graph, |_, _, _, kind| inside &= kind.id() < emb.rows);
        if !inside {
            return Err(Error::InvalidArgument("edge type outside the model's embedding"));
        }
    }
    Ok(())
}

/// Training-mode forward into the tape; `tape.out` ends up holding the predictions of horizons `1..=hz`
/// (the later ones are left at the newest state: no change predicted, nothing computed).
fn forward(
    cx: Compute<'_>,
    lay: &Layout,
    p: &[f32],
    s: &Sample<'_>,
    hz: usize,
    tp: &mut Tape<'_>,
) -> Result<(), Error> {
    let (g, k) = (cx.gemm, &cx.kernels);
    let cfg = &lay.cfg;
    let graph = s.graph;
    let (e, n, f, c, h, sl) = (graph.num_edges(), graph.num_nodes(), graph.feat_slots(), cfg.ctx, cfg.hid, cfg.seq_len);
    let (nh, eh) = (n * h, e * h);
    let nl = cfg.layers - 1;
    let z = sizes(cfg, e, n, f);

    // X0 = lpe W_np^T + b_np (+ cent W_cp^T + b_cp).
    let x0 = &mut tp.xs[..nh];
    lin_fwd(g, p, &lay.node_proj, MatRef::row_major(s.lpe, n, cfg.lpe), 0, x0, true, false)?;
    if let Some(cp) = &lay.cent_proj {
        lin_fwd(g, p, cp, MatRef::row_major(s.centrality, n, 1), 0, x0, true, true)?;
    }

    for l in 0..nl {
        let conv = &lay.convs[l];
        let upd = &lay.edge_updates[l];
        let src = Source::of(lay, l, f * c);
        let (done, rest) = tp.acts.split_at_mut(l * eh);
        let zin = source_input(s, done, l, h);
        let (x_in, x_out) = tp.xs[l * nh..(l + 2) * nh].split_at_mut(nh);
        let lt = layer_tape(&mut tp.layers[l * z.per_layer..(l + 1) * z.per_layer], nh, eh);
        let (f_sc, f_e) = tp.folds[2 * l * z.fold..(2 * l + 2) * z.fold].split_at_mut(z.fold);
        let xm = MatRef::row_major(x_in, n, h);
        let (enc_sc, enc_sh) = encoder_halves(&conv.encoder, h);
        fold::compose(g, p, &enc_sc, &src, f_sc, tp.work)?;
        // Products that read E_0's source (the raw history) stay at full precision.
        let gz = cx.for_source(l);
        fold::apply(gz, graph, &src, h, f_sc, zin, lt.sc)?;
        lin_fwd(cx.lo, p, &conv.pre, xm, 0, lt.u, true, false)?;
        lin_fwd(cx.lo, p, &conv.pre, xm, h, lt.v, false, false)?;
        aggregate_scaled(graph, lt.sc, lt.u, lt.v, lt.agg, h);
        fold::mean_fwd(g, graph, p, &src, zin.data, lt.zbar, lt.ebar)?;
        lin_fwd(g, p, &enc_sh, MatRef::row_major(lt.ebar, n, h), 0, lt.agg, true, true)?;
        lin_fwd(cx.lo, p, &conv.post, xm, 0, lt.y1, true, false)?;
        lin_fwd(cx.lo, p, &conv.post, MatRef::row_major(lt.agg, n, h), h, lt.y1, false, true)?;
        lin_fwd(cx.lo, p, &conv.lin, MatRef::row_major(lt.y1, n, h), 0, lt.xt, true, false)?;
        (k.silu_fwd)(lt.xt, x_out);

        let xm = MatRef::row_major(x_out, n, h);
        lin_fwd(cx.lo, p, &upd.lin_s, xm, 0, lt.s, true, false)?;
        lin_fwd(cx.lo, p, &upd.lin_t, xm, 0, lt.t, true, false)?;
        fold::compose(g, p, &upd.lin_e, &src, f_e, tp.work)?;
        fold::apply(gz, graph, &src, h, f_e, zin, lt.z)?;
        add_node_terms(graph, lt.s, lt.t, lt.z, h);
        (k.silu_fwd)(lt.z, &mut rest[..eh]);
    }

    // The head reads E_L, made from `a_{L-1}` by the last edge update's `lin1` (or from the input).
    let src = Source::of(lay, nl, f * c);
    let zin = source_input(s, tp.acts, nl, h);
    let out_rows = LinSlot { rows: f * sl, ..lay.head_out };
    let gz = cx.for_source(nl);
    match (cfg.head, &lay.head_hidden, &lay.cell) {
        (Head::Mlp, Some(hidden), _) => {
            let (hp, hs) = tp.head.split_at_mut(eh);
            let fh = &mut tp.folds[2 * nl * z.fold..(2 * nl + 1) * z.fold];
            fold::compose(g, p, hidden, &src, fh, tp.work)?;
            fold::apply(gz, graph, &src, h, fh, zin, hp)?;
            (k.silu_fwd)(hp, hs);
            head_out_fwd(cx.lo, p, &out_rows, MatRef::row_major(hs, e, h), f, hz, tp.sel, tp.out)?;
        }
        (Head::Gru | Head::Lstm, _, Some(cell)) => {
            let gw = cfg.head.gates() * h;
            let mut buf = &mut tp.head[..];
            let hs = take(&mut buf, (c + 1) * eh);
            let gates = take(&mut buf, c * e * gw);
            let extra = take(&mut buf, c * eh);
            let (xin, wrest) = tp.work.split_at_mut(e * f);
            fold::source_fwd(gz, graph, p, &src, zin, &mut hs[..eh])?;
            for t in 0..c {
                step_input(s.attr, e, f, c, t, xin);
                let (hprev, hnext) = hs[t * eh..(t + 2) * eh].split_at_mut(eh);
                let gt = &mut gates[t * e * gw..(t + 1) * e * gw];
                match cfg.head {
                    Head::Gru => {
                        let ghn = &mut extra[t * eh..(t + 1) * eh];
                        gru_fwd(cx, p, cell, xin, e, f, h, hprev, gt, ghn, hnext, wrest)?;
                    }
                    _ => {
                        let (cprev, cnext) = if t == 0 {
                            (None, &mut extra[..eh])
                        } else {
                            let (a, b) = extra[(t - 1) * eh..(t + 1) * eh].split_at_mut(eh);
                            (Some(&*a), b)
                        };
                        lstm_fwd(cx, p, cell, xin, e, f, h, hprev, cprev, gt, cnext, hnext)?;
                    }
                }
            }
            head_out_fwd(cx.lo, p, &out_rows, MatRef::row_major(&hs[c * eh..], e, h), f, hz, tp.sel, tp.out)?;
        }
        _ => return Err(Error::InvalidArgument("layout and head disagree")),
    }
    // Residual: pred[e, f*S + j] = last[e, f] + upd_scale * delta.
    for (ei, row) in tp.out.chunks_exact_mut(f * sl).enumerate() {
        for (fi, hrow) in row.chunks_exact_mut(sl).enumerate() {
            let last = s.attr[ei * f * c + fi * c + c - 1];
            hrow.iter_mut().for_each(|d| *d = last + cfg.upd_scale * *d);
        }
    }
    Ok(())
}

/// The edge encoder's scale rows and shift rows as two linears of `H` outputs each.
fn encoder_halves(enc: &LinSlot, h: usize) -> (LinSlot, LinSlot) {
    let sc = LinSlot { rows: h, ..*enc };
    (sc, LinSlot { w: enc.w + h * enc.cols, b: enc.b + h, ..sc })
}

/// Rows `f*S + j` (`j < hz`, `f < F`) of the head's output linear `s` (`[F*S, H]`) and their biases, gathered
/// into `buf` as one linear of `F*hz` rows (weight at 0, bias after it): a window whose trajectory ends
/// before horizon `S` needs only these (on 8,000-step trajectories, 29 of the 40 on average).
fn gather_head_rows(p: &[f32], s: &LinSlot, f: usize, hz: usize, buf: &mut [f32]) -> LinSlot {
    let (h, sl, rows) = (s.cols, s.rows / f.max(1), f * hz);
    for fi in 0..f {
        for j in 0..hz {
            let (src, dst) = ((fi * sl + j) * h, (fi * hz + j) * h);
            buf[dst..dst + h].copy_from_slice(&p[s.w + src..s.w + src + h]);
            buf[rows * h + fi * hz + j] = p[s.b + fi * sl + j];
        }
    }
    LinSlot { w: 0, b: rows * h, rows, cols: h }
}

/// The head's output linear `s` (`[F*S, H]`) over horizons `1..=hz` only: `y [E, F*S]`, zero past `hz`.
#[allow(clippy::too_many_arguments)]
fn head_out_fwd(
    g: &dyn Gemm,
    p: &[f32],
    s: &LinSlot,
    x: MatRef<'_>,
    f: usize,
    hz: usize,
    sel: &mut [f32],
    y: &mut [f32],
) -> Result<(), Error> {
    let sl = s.rows / f.max(1);
    if hz >= sl {
        return lin_fwd(g, p, s, x, 0, y, true, false);
    }
    let w = &mut sel[..f * hz * (s.cols + 1)];
    let slot = gather_head_rows(p, s, f, hz, w);
    lin_fwd(g, w, &slot, x, 0, y, true, false)?;
    // Row r's hz values move from r*hz to r*sl, last row first: no source is overwritten before it moves.
    for r in (0..x.rows * f).rev() {
        y.copy_within(r * hz..r * hz + hz, r * sl);
        y[r * sl + hz..r * sl + sl].fill(0.0);
    }
    Ok(())
}

/// Backward of [`head_out_fwd`], which must have run with the same `hz` and `sel` (its gathered rows are
/// read back): `dy [E, F*S]` (overwritten: its first `E*F*hz` values become the reached horizons' rows)
/// into the gradient of `s` and `dx`, as [`lin_bwd`] does for the whole linear.
#[allow(clippy::too_many_arguments)]
fn head_out_bwd(
    g: &dyn Gemm,
    p: &[f32],
    gr: &mut [f32],
    s: &LinSlot,
    x: MatRef<'_>,
    f: usize,
    hz: usize,
    sel: &mut [f32],
    dy: &mut [f32],
    dx: Option<(&mut [f32], bool)>,
) -> Result<(), Error> {
    let (h, sl) = (s.cols, s.rows / f.max(1));
    if hz >= sl {
        return lin_bwd(g, p, gr, s, x, 0, dy, true, dx);
    }
    // Row r's first hz values move from r*sl to r*hz, first row first (the inverse of the forward move).
    for r in 0..x.rows * f {
        dy.copy_within(r * sl..r * sl + hz, r * hz);
    }
    let n = f * hz * (h + 1);
    let (w, rest) = sel.split_at_mut(n);
    let gw = &mut rest[..n];
    // `w` still holds the rows [`head_out_fwd`] gathered for this `hz`.
    let slot = LinSlot { w: 0, b: f * hz * h, rows: f * hz, cols: h };
    gw.fill(0.0);
    lin_bwd(g, w, gw, &slot, x, 0, dy, true, dx)?;
    for fi in 0..f {
        for j in 0..hz {
            let (dst, src) = ((fi * sl + j) * h, (fi * hz + j) * h);
            gr[s.w + dst..s.w + dst + h].iter_mut().zip(&gw[src..src + h]).for_each(|(a, b)| *a += b);
            gr[s.b + fi * sl + j] += gw[slot.b + fi * hz + j];
        }
    }
    Ok(())
}

/// The horizons a mask `[rows, S]` reaches: one past the last horizon any row counts (at least 1).
fn reached_horizons(mask: &[u8], sl: usize) -> usize {
    let last = |r: &[u8]| r.iter().rposition(|&m| m != 0).map_or(0, |i| i + 1);
    mask.chunks_exact(sl.max(1)).map(last).max().unwrap_or(0).max(1)
}

/// `agg[t] = mean over the edges into t of sc ⊙ (U[t] + V[s])`: the scaled half of the messages.
fn aggregate_scaled(graph: &NeuralGraph, sc: &[f32], u: &[f32], v: &[f32], agg: &mut [f32], h: usize) {
    agg.fill(0.0);
    for_each_edge(graph, |ei, s, t, _| {
        let (sc, ut, vs) = (&sc[ei * h..ei * h + h], &u[t * h..t * h + h], &v[s * h..s * h + h]);
        for (((a, sc), ut), vs) in agg[t * h..t * h + h].iter_mut().zip(sc).zip(ut).zip(vs) {
            *a += sc * (ut + vs);
        }
    });
    scale_by_in_degree(graph, agg, h);
}

/// The recurrent head's input at step `t`: the `F` slot values of every edge, `[E, F]`.
fn step_input(attr: &[f32], e: usize, f: usize, c: usize, t: usize, out: &mut [f32]) {
    for ei in 0..e {
        for fi in 0..f {
            out[ei * f + fi] = attr[ei * f * c + fi * c + t];
        }
    }
}

/// One GRU step (PyTorch's gates r, z, n): keeps the activated gates and `gh_n` for backward.
#[allow(clippy::too_many_arguments)]
fn gru_fwd(
    cx: Compute<'_>,
    p: &[f32],
    cell: &layout::CellSlots,
    xin: &[f32],
    e: usize,
    f: usize,
    h: usize,
    hprev: &[f32],
    gates: &mut [f32],
    ghn: &mut [f32],
    hnext: &mut [f32],
    work: &mut [f32],
) -> Result<(), Error> {
    let gh = &mut work[..e * 3 * h];
    lin_fwd(cx.gemm, p, &cell.ih, MatRef::row_major(xin, e, f), 0, gates, true, false)?;
    lin_fwd(cx.lo, p, &cell.hh, MatRef::row_major(hprev, e, h), 0, gh, true, false)?;
    (cx.kernels.gru)(&mut gates[..e * 3 * h], gh, hprev, ghn, hnext, h);
    Ok(())
}

/// One LSTM step (PyTorch's gates i, f, g, o), `c_prev = None` meaning zeros: keeps the activated gates.
#[allow(clippy::too_many_arguments)]
fn lstm_fwd(
    cx: Compute<'_>,
    p: &[f32],
    cell: &layout::CellSlots,
    xin: &[f32],
    e: usize,
    f: usize,
    h: usize,
    hprev: &[f32],
    cprev: Option<&[f32]>,
    gates: &mut [f32],
    cnext: &mut [f32],
    hnext: &mut [f32],
) -> Result<(), Error> {
    lin_fwd(cx.gemm, p, &cell.ih, MatRef::row_major(xin, e, f), 0, gates, true, false)?;
    lin_fwd(cx.lo, p, &cell.hh, MatRef::row_major(hprev, e, h), 0, gates, true, true)?;
    (cx.kernels.lstm)(&mut gates[..e * 4 * h], cprev, cnext, hnext, h);
    Ok(())
}

/// Predictions of every horizon, `out [E, F*S]` (column `f*S + j` is slot `f` at horizon `j + 1`), scaled,
/// residual included.
pub fn predict(
    cx: Compute<'_>,
    lay: &Layout,
    params: &[f32],
    sample: &Sample<'_>,
    scratch: &mut [f32],
    out: &mut [f32],
) -> Result<(), Error> {
    check_sample(lay, params, sample)?;
    let graph = sample.graph;
    check_len("predictions", out.len(), graph.num_edges() * graph.feat_slots() * lay.cfg.seq_len)?;
    let mut tp = tape(&lay.cfg, graph, scratch)?;
    forward(cx, lay, params, sample, lay.cfg.seq_len, &mut tp)?;
    out.copy_from_slice(tp.out);
    Ok(())
}

/// Masked L1 loss of one graph and its gradient: returns `(sum of |pred - target| over the mask, count)`
/// and adds the gradient of that sum to `grad` (divide by the batch's total count for the mean).
/// `target` and `mask` are `[E, F*S]` (column `f*S + j`); self-loops must be masked out by the caller
/// (spec 7.2: `y_mask` false on every edge of type 10 or more).
pub fn loss_and_grad(
    cx: Compute<'_>,
    lay: &Layout,
    params: &[f32],
    sample: &Sample<'_>,
    target: &[f32],
    mask: &[u8],
    scratch: &mut [f32],
    grad: &mut [f32],
) -> Result<(f32, usize), Error> {
    let graph = sample.graph;
    let len = graph.num_edges() * graph.feat_slots() * lay.cfg.seq_len;
    check_len("targets", target.len(), len)?;
    check_len("mask", mask.len(), len)?;
    let mut out = (0.0f32, 0usize);
    let hz = reached_horizons(mask, lay.cfg.seq_len);
    backprop(cx, lay, params, sample, hz, scratch, grad, &mut |pred, dpred| {
        out = (cx.kernels.masked_l1)(pred, target, mask, Some(dpred));
    })?;
    if !out.0.is_finite() {
        return Err(Error::NonFinite("meta-training loss"));
    }
    Ok(out)
}

/// The masked L1 loss of predictions against targets: `(sum of |pred - target| where mask != 0, count)`;
/// with `dpred`, also its derivative (the sign of the residual, 0 off the mask). Slices of equal length
/// (a longer one is read up to the shortest). The sum runs in [`L1_LANES`] interleaved partial sums, so the
/// loop vectorises: half a million terms per FM-16 graph were a scalar, branchy loop. Always inlined, so
/// the host's builds with wider target features compile it with them.
#[inline(always)]
pub fn masked_l1(pred: &[f32], target: &[f32], mask: &[u8], dpred: Option<&mut [f32]>) -> (f32, usize) {
    let mut n = pred.len().min(target.len()).min(mask.len());
    if let Some(dp) = &dpred {
        n = n.min(dp.len());
    }
    let (p, p_tail) = pred[..n].as_chunks::<L1_LANES>();
    let (y, y_tail) = target[..n].as_chunks::<L1_LANES>();
    let (m, m_tail) = mask[..n].as_chunks::<L1_LANES>();
    let mut acc = [0.0f32; L1_LANES];
    match dpred {
        Some(dp) => {
            let (d, d_tail) = dp[..n].as_chunks_mut::<L1_LANES>();
            for (((p, y), m), d) in p.iter().zip(y).zip(m).zip(d) {
                l1_lanes(p, y, m, &mut acc, d);
            }
            l1_tail(p_tail, y_tail, m_tail, &mut acc, d_tail);
        }
        None => {
            let mut d = [0.0f32; L1_LANES];
            for ((p, y), m) in p.iter().zip(y).zip(m) {
                l1_lanes(p, y, m, &mut acc, &mut d);
            }
            l1_tail(p_tail, y_tail, m_tail, &mut acc, &mut d);
        }
    }
    let count = mask[..n].iter().filter(|&&m| m != 0).count();
    (acc.iter().sum(), count)
}

/// [`masked_l1`] split by horizon, added into caller-owned `sums` and `counts` (one slot per horizon, `S` of
/// them; horizon-inner rows as [`predict`] writes them), because a nowcast uses one horizon and the pooled loss
/// hides which ones a model improved. Sums in f64 (a few thousand terms per slot and window).
pub fn masked_l1_by_horizon(
    pred: &[f32],
    target: &[f32],
    mask: &[u8],
    sums: &mut [f64],
    counts: &mut [u64],
) -> Result<(), Error> {
    let s = sums.len();
    check_len("counts", counts.len(), s)?;
    if s == 0 {
        return Err(Error::InvalidArgument("masked_l1_by_horizon needs at least one horizon"));
    }
    check_len("target", target.len(), pred.len())?;
    check_len("mask", mask.len(), pred.len())?;
    if !pred.len().is_multiple_of(s) {
        return Err(Error::InvalidArgument("masked_l1_by_horizon: rows of S horizons"));
    }
    for ((p, y), m) in pred.chunks_exact(s).zip(target.chunks_exact(s)).zip(mask.chunks_exact(s)) {
        for k in 0..s {
            if m[k] != 0 {
                sums[k] += f64::from(libm::fabsf(p[k] - y[k]));
                counts[k] += 1;
            }
        }
    }
    Ok(())
}

/// Partial sums of [`masked_l1`]: eight f32 lanes, one AVX2 register.
const L1_LANES: usize = 8;

/// One lane-wide step of [`masked_l1`], branch-free so that it compiles to vector selects.
#[inline(always)]
fn l1_lanes(
    p: &[f32; L1_LANES],
    y: &[f32; L1_LANES],
    m: &[u8; L1_LANES],
    acc: &mut [f32; L1_LANES],
    d: &mut [f32; L1_LANES],
) {
    for j in 0..L1_LANES {
        let r = p[j] - y[j];
        let on = m[j] != 0;
        acc[j] += if on { libm::fabsf(r) } else { 0.0 };
        let sign = f32::from(u8::from(r > 0.0)) - f32::from(u8::from(r < 0.0));
        d[j] = if on { sign } else { 0.0 };
    }
}

/// The last `n % L1_LANES` terms of [`masked_l1`], into the same lanes.
fn l1_tail(p: &[f32], y: &[f32], m: &[u8], acc: &mut [f32; L1_LANES], d: &mut [f32]) {
    let mut pp = [0.0f32; L1_LANES];
    let mut yy = [0.0f32; L1_LANES];
    let mut mm = [0u8; L1_LANES];
    let mut dd = [0.0f32; L1_LANES];
    let k = p.len().min(L1_LANES);
    pp[..k].copy_from_slice(&p[..k]);
    yy[..k].copy_from_slice(&y[..k]);
    mm[..k].copy_from_slice(&m[..k]);
    l1_lanes(&pp, &yy, &mm, acc, &mut dd);
    let kd = d.len().min(k);
    d[..kd].copy_from_slice(&dd[..kd]);
}

/// Forward, then `dloss(pred, dpred)` writes dL/dpred, then the gradient of L is added to `grad`. Only
/// horizons `1..=hz` are computed: `dloss` must leave `dpred` zero past them.
#[allow(clippy::type_complexity, clippy::too_many_arguments)]
fn backprop(
    cx: Compute<'_>,
    lay: &Layout,
    params: &[f32],
    sample: &Sample<'_>,
    hz: usize,
    scratch: &mut [f32],
    grad: &mut [f32],
    dloss: &mut dyn FnMut(&[f32], &mut [f32]),
) -> Result<(), Error> {
    check_sample(lay, params, sample)?;
    let cfg = &lay.cfg;
    let graph = sample.graph;
    let (e, n, f, c, h, sl) = (graph.num_edges(), graph.num_nodes(), graph.feat_slots(), cfg.ctx, cfg.hid, cfg.seq_len);
    check_len("meta grad", grad.len(), lay.len)?;
    let mut tp = tape(cfg, graph, scratch)?;
    forward(cx, lay, params, sample, hz, &mut tp)?;
    let (g, k) = (cx.gemm, &cx.kernels);
    let (nh, eh) = (n * h, e * h);
    let nl = cfg.layers - 1;
    let z = sizes(cfg, e, n, f);

    let mut w = &mut tp.work[..];
    let de = take(&mut w, eh);
    let mut da = take(&mut w, eh);
    let mut da2 = take(&mut w, eh);
    let dsc = take(&mut w, eh);
    let dx = take(&mut w, nh);
    let dx2 = take(&mut w, nh);
    let du = take(&mut w, nh);
    let dv = take(&mut w, nh);
    let dagg = take(&mut w, nh);
    let dy1 = take(&mut w, nh);
    let debar = take(&mut w, nh);
    let dzbar = take(&mut w, n * h.max(f * c));
    let fw = take(&mut w, fold::work_len(h, h.max(f * c), cfg.edge_types.max(1), h));
    let dd = take(&mut w, z.out);
    let rec = w;

    // dL/d(delta) = upd_scale * dL/dpred.
    dloss(tp.out, dd);
    dd.iter_mut().for_each(|d| *d *= cfg.upd_scale);

    // Head backward, down to dL/d(a_{L-1}) in `da` (nothing when the head reads the input directly).
    let src = Source::of(lay, nl, f * c);
    let zin = source_input(sample, tp.acts, nl, h);
    let dz_head = (nl > 0).then_some((&mut *da, false));
    let out_rows = LinSlot { rows: f * sl, ..lay.head_out };
    match (cfg.head, &lay.head_hidden, &lay.cell) {
        (Head::Mlp, Some(hidden), _) => {
            let (hp, hs) = tp.head.split_at(eh);
            let x = MatRef::row_major(hs, e, h);
            head_out_bwd(cx.lo, params, grad, &out_rows, x, f, hz, tp.sel, dd, Some((de, false)))?;
            (k.silu_bwd)(hp, de);
            let fh = &tp.folds[2 * nl * z.fold..(2 * nl + 1) * z.fold];
            fold::apply_bwd(cx.for_source(nl), graph, params, grad, hidden, &src, fh, zin, de, fw, dz_head)?;
        }
        (Head::Gru | Head::Lstm, _, Some(cell)) => {
            let gw = cfg.head.gates() * h;
            let hs = &tp.head[..(c + 1) * eh];
            let gates = &tp.head[(c + 1) * eh..(c + 1) * eh + c * e * gw];
            let extra = &tp.head[(c + 1) * eh + c * e * gw..];
            let mut r = rec;
            let dh = take(&mut r, eh);
            let dc = take(&mut r, eh);
            let dgi = take(&mut r, e * gw);
            let dgh = take(&mut r, e * gw);
            let xin = take(&mut r, e * f);
            let x = MatRef::row_major(&hs[c * eh..], e, h);
            head_out_bwd(cx.lo, params, grad, &out_rows, x, f, hz, tp.sel, dd, Some((dh, false)))?;
            dc.fill(0.0);
            for t in (0..c).rev() {
                step_input(sample.attr, e, f, c, t, xin);
                let hprev = &hs[t * eh..(t + 1) * eh];
                let gt = &gates[t * e * gw..(t + 1) * e * gw];
                let dgh = if cfg.head == Head::Gru {
                    (k.gru_bwd)(gt, &extra[t * eh..(t + 1) * eh], hprev, dh, dgi, dgh, h);
                    &*dgh
                } else {
                    let cprev = (t > 0).then(|| &extra[(t - 1) * eh..t * eh]);
                    (k.lstm_bwd)(gt, cprev, &extra[t * eh..(t + 1) * eh], dh, dc, dgi, h);
                    &*dgi
                };
                lin_bwd(g, params, grad, &cell.ih, MatRef::row_major(xin, e, f), 0, dgi, true, None)?;
                lin_bwd(cx.lo, params, grad, &cell.hh, MatRef::row_major(hprev, e, h), 0, dgh, true, Some((dh, true)))?;
            }
            fold::source_bwd(cx.for_source(nl), graph, params, grad, &src, zin, dh, dz_head)?;
        }
        _ => return Err(Error::InvalidArgument("layout and head disagree")),
    }

    // Message-passing layers, last to first; `da` carries dL/d(a_l), `dx` dL/dX_{l+1} (zero for the last:
    // quirk Q1).
    dx.fill(0.0);
    for l in (0..nl).rev() {
        let conv = &lay.convs[l];
        let upd = &lay.edge_updates[l];
        let src = Source::of(lay, l, f * c);
        let zin = source_input(sample, tp.acts, l, h);
        let x_in = &tp.xs[l * nh..(l + 1) * nh];
        let x_out = &tp.xs[(l + 1) * nh..(l + 2) * nh];
        let lt = layer_tape(&mut tp.layers[l * z.per_layer..(l + 1) * z.per_layer], nh, eh);
        let (f_sc, f_e) = tp.folds[2 * l * z.fold..(2 * l + 2) * z.fold].split_at(z.fold);
        // a_l = SiLU(z), z = lin_e(E_l) + lin_s(X_{l+1})[s] + lin_t(X_{l+1})[t]; `da` becomes dL/dz.
        (k.silu_bwd)(lt.z, da);
        du.fill(0.0);
        dv.fill(0.0);
        let dz = &*da;
        for_each_edge(graph, |ei, src, dst, _| {
            let dz = &dz[ei * h..ei * h + h];
            du[src * h..src * h + h].iter_mut().zip(dz).for_each(|(a, b)| *a += b);
            dv[dst * h..dst * h + h].iter_mut().zip(dz).for_each(|(a, b)| *a += b);
        });
        let xm = MatRef::row_major(x_out, n, h);
        lin_bwd(cx.lo, params, grad, &upd.lin_s, xm, 0, du, true, Some((dx, true)))?;
        lin_bwd(cx.lo, params, grad, &upd.lin_t, xm, 0, dv, true, Some((dx, true)))?;
        // X_{l+1} = SiLU(X~), X~ = lin(post([X_l | agg])).
        (k.silu_bwd)(lt.xt, dx);
        lin_bwd(cx.lo, params, grad, &conv.lin, MatRef::row_major(lt.y1, n, h), 0, dx, true, Some((dy1, false)))?;
        let xm = MatRef::row_major(x_in, n, h);
        lin_bwd(cx.lo, params, grad, &conv.post, xm, 0, dy1, true, Some((dx2, false)))?;
        lin_bwd(cx.lo, params, grad, &conv.post, MatRef::row_major(lt.agg, n, h), h, dy1, false, Some((dagg, false)))?;
        // agg[t] = mean over edges into t of sc * (U[t] + V[s]), plus mean(E_l into t) W_sh^T + b_sh.
        let (enc_sc, enc_sh) = encoder_halves(&conv.encoder, h);
        lin_bwd(g, params, grad, &enc_sh, MatRef::row_major(lt.ebar, n, h), 0, dagg, true, Some((debar, false)))?;
        scale_by_in_degree(graph, dagg, h);
        du.fill(0.0);
        dv.fill(0.0);
        let (sc, u, v) = (&*lt.sc, &*lt.u, &*lt.v);
        for_each_edge(graph, |ei, src, dst, _| {
            // Rows cut to `h` up front so the loop runs without bounds checks (and vectorises).
            let (sc, dsc) = (&sc[ei * h..][..h], &mut dsc[ei * h..][..h]);
            let (dm, ut, vs) = (&dagg[dst * h..][..h], &u[dst * h..][..h], &v[src * h..][..h]);
            let (dut, dvs) = (&mut du[dst * h..][..h], &mut dv[src * h..][..h]);
            for j in 0..h {
                dsc[j] = dm[j] * (ut[j] + vs[j]);
                let dp = dm[j] * sc[j];
                dut[j] += dp;
                dvs[j] += dp;
            }
        });
        lin_bwd(cx.lo, params, grad, &conv.pre, xm, 0, du, true, Some((dx2, true)))?;
        lin_bwd(cx.lo, params, grad, &conv.pre, xm, h, dv, false, Some((dx2, true)))?;
        // E_l's three readers (scale half, lin_e, the mean), through its source into dL/d(a_{l-1}).
        let gz = cx.for_source(l);
        fold::apply_bwd(
            gz,
            graph,
            params,
            grad,
            &enc_sc,
            &src,
            f_sc,
            zin,
            dsc,
            fw,
            (l > 0).then_some((&mut *da2, false)),
        )?;
        fold::apply_bwd(
            gz,
            graph,
            params,
            grad,
            &upd.lin_e,
            &src,
            f_e,
            zin,
            da,
            fw,
            (l > 0).then_some((&mut *da2, true)),
        )?;
        fold::mean_bwd(g, graph, params, grad, &src, lt.zbar, debar, dzbar, (l > 0).then_some(&mut *da2))?;
        core::mem::swap(&mut da, &mut da2);
        dx.copy_from_slice(dx2);
    }

    // X_0 = node_proj(lpe) (+ cent_proj(cent)); E_0's parameters got theirs through its readers.
    lin_bwd(g, params, grad, &lay.node_proj, MatRef::row_major(sample.lpe, n, cfg.lpe), 0, dx, true, None)?;
    if let Some(cp) = &lay.cent_proj {
        lin_bwd(g, params, grad, cp, MatRef::row_major(sample.centrality, n, 1), 0, dx, true, None)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
