//! The NiNo GNN at inference with consecutive Linears folded into precomputed products (spec 4.3, the
//! same math in another rounding).
//!
//! Per edge the forward pass is a chain of Linears with nothing between some of them: `edge_proj` feeds
//! layer 0's `edge_encoder` and `lin_e` directly, each edge update's `lin1` feeds the next layer's
//! `edge_encoder`/`lin_e` (or the head's hidden layer). [`fold_gnn`] multiplies those pairs once per model
//! load (in f64, stored as f32, whatever the weights' storage), and [`folded_forward`] runs one edge
//! product per layer (`[scale | lin_e]`, `2H` wide; the shift's mean over a node's edges is taken on the
//! edge inputs and multiplied once per node) and one for the head: about half the work of
//! [`super::model::gnn_forward`]. `edge_proj`'s bias and the edge-type embedding become a per-type bias
//! table of layer 0. Node-side pairs fold too: `post` then `lin` (no activation between), `pre`'s halves
//! and `lin_s`/`lin_t` side by side. Weights are stored transposed (`[in, out]`), so products need no
//! packing. Layer `L-1` is skipped (quirk Q1).
//!
//! Observers see `NodeProj`, `Conv(l)` and `Delta`; the edge features themselves (`GnnInput`,
//! `EdgeUpdate`) never exist here, which is the point. The unfused path checks them.

use super::features::{for_each_edge, for_each_edge_in};
use super::model::{Observer, Stage, add_residual, head_rows};
use super::weights::{Config, GnnWeights, Lin, WeightElem};
use crate::error::{Error, check_len};
use crate::graph::NeuralGraph;
use crate::ops::MatRef;

use super::linear::Backend;

/// Offsets of one folded model's tensors inside its buffer (all derived from the config).
#[derive(Clone, Copy, Debug)]
struct Layout {
    h: usize,
    /// Message-passing layers evaluated (`layers - 1`).
    nl: usize,
    /// `Fm * c`: input width of the first edge product.
    fmc: usize,
    /// Rows of the per-type bias table (`edge_types`, at least 1).
    types: usize,
    /// Whether the first product's bias depends on the edge type (the model has an embedding).
    typed: bool,
    /// Output rows of the head (`Fm * S`).
    head_rows: usize,
    lpe: usize,
}

impl Layout {
    fn new(cfg: &Config) -> Self {
        Layout {
            h: cfg.hid,
            nl: cfg.layers - 1,
            fmc: cfg.max_feat_size * cfg.ctx,
            types: cfg.edge_types.max(1),
            typed: cfg.edge_types > 0,
            head_rows: cfg.max_feat_size * cfg.seq_len,
            lpe: if cfg.has_node_proj() { cfg.lpe } else { 0 },
        }
    }

    /// Floats of node projection: weight `[lpe, H]` and bias `[H]`.
    fn node_len(&self) -> usize {
        self.lpe * self.h + self.h
    }

    /// Floats of one layer's node tensors: pre `[H, 2H]` + `2H`, post `[2H, H]` + `H`, lin_s|lin_t `[H, 2H]` + `2H`.
    fn layer_node_len(&self) -> usize {
        let h = self.h;
        2 * h * h + 2 * h + 2 * h * h + h + 2 * h * h + 2 * h
    }

    /// `(input width, output width, bias rows)` of edge product `j` (`j = nl` is the head's hidden layer).
    fn edge_shape(&self, j: usize) -> (usize, usize, usize) {
        let inp = if j == 0 { self.fmc } else { self.h };
        let out = if j < self.nl { 3 * self.h } else { self.h };
        let rows = if j == 0 { self.types } else { 1 };
        (inp, out, rows)
    }

    fn edge_len(&self, j: usize) -> usize {
        let (i, o, r) = self.edge_shape(j);
        i * o + r * o
    }

    fn total(&self) -> usize {
        self.node_len()
            + self.nl * self.layer_node_len()
            + (0..=self.nl).map(|j| self.edge_len(j)).sum::<usize>()
            + self.head_rows * self.h
            + self.head_rows
    }
}

/// Floats [`fold_gnn`] writes for a GNN of `cfg` (about 0.3 M for `nino_no_posw`).
pub fn folded_len(cfg: &Config) -> usize {
    Layout::new(cfg).total()
}

/// Node-side tensors of one folded layer (transposed weights, `[in, out]`).
#[derive(Clone, Copy, Debug)]
struct LayerNode<'a> {
    /// `[H, 2H]`: `[U | V] = X · pre`, the target and source halves of the message network.
    pre: &'a [f32],
    /// `[2H]`: `b_pre` then zeros.
    pre_b: &'a [f32],
    /// `[2H, H]`: `[X | agg] · post` is `X~` (`post_nns` then `lin`).
    post: &'a [f32],
    /// `[H]`.
    post_b: &'a [f32],
    /// `[H, 2H]`: `[lin_s(X) | lin_t(X)]`.
    st: &'a [f32],
    /// `[2H]`.
    st_b: &'a [f32],
}

/// Offsets (in floats) of one folded layer's node tensors: `pre` `[H, 2H]`, `pre_b` `[2H]`, `post`
/// `[2H, H]`, `post_b` `[H]`, `st` `[H, 2H]`, `st_b` `[2H]` (what [`fold_gnn`] writes, in that order).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LayerOffsets {
    /// `[U | V] = X · pre`.
    pub pre: usize,
    /// `b_pre` then zeros.
    pub pre_b: usize,
    /// `X~ = [X | agg] · post`.
    pub post: usize,
    /// Bias of `X~`.
    pub post_b: usize,
    /// `[lin_s(X) | lin_t(X)] = X · st`.
    pub st: usize,
    /// Bias of `st`.
    pub st_b: usize,
}

/// One folded per-edge product: weight `[in, out]` and a bias table `[rows, out]` (indexed by edge type
/// for the first product, a single row after).
#[derive(Clone, Copy, Debug)]
struct EdgeLin<'a> {
    w: &'a [f32],
    b: &'a [f32],
}

/// A folded GNN borrowed from the buffer [`fold_gnn`] wrote.
#[derive(Clone, Debug)]
pub struct FoldedGnn<'a> {
    cfg: Config,
    lay: Layout,
    node_w: &'a [f32],
    node_b: &'a [f32],
    buf: &'a [f32],
    head_out: Lin<'a, f32>,
}

fn take<'a>(buf: &mut &'a [f32], n: usize) -> &'a [f32] {
    let (a, b) = buf.split_at(n);
    *buf = b;
    a
}

fn take_mut<'a>(buf: &mut &'a mut [f32], n: usize) -> &'a mut [f32] {
    let (a, b) = core::mem::take(buf).split_at_mut(n);
    *buf = b;
    a
}

impl<'a> FoldedGnn<'a> {
    /// Views `buf` (written by [`fold_gnn`] for `cfg`) as a folded model.
    pub fn new(cfg: &Config, buf: &'a [f32]) -> Result<Self, Error> {
        cfg.validate()?;
        if !cfg.gnn {
            return Err(Error::InvalidArgument("folding: only the GNN model folds"));
        }
        let lay = Layout::new(cfg);
        check_len("folded weights", buf.len(), lay.total())?;
        let mut rest = buf;
        let node_w = take(&mut rest, lay.lpe * lay.h);
        let node_b = take(&mut rest, lay.h);
        let hr = lay.head_rows;
        let head_w = &buf[buf.len() - hr * lay.h - hr..buf.len() - hr];
        let head_b = &buf[buf.len() - hr..];
        let head_out = Lin { w: head_w, b: head_b, rows: hr, cols: lay.h };
        Ok(FoldedGnn { cfg: *cfg, lay, node_w, node_b, buf, head_out })
    }

    /// The model's options.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The whole folded buffer, for code that indexes it itself through the offsets below (GPU kernels).
    pub fn as_slice(&self) -> &'a [f32] {
        self.buf
    }

    /// Message-passing layers the folded model evaluates (`layers - 1`, quirk Q1).
    pub fn evaluated_layers(&self) -> usize {
        self.lay.nl
    }

    /// Where the node projection's weight `[lpe, H]` and bias `[H]` start in [`Self::as_slice`].
    pub fn node_offsets(&self) -> (usize, usize) {
        (0, self.lay.lpe * self.lay.h)
    }

    /// Where layer `l`'s node tensors start in [`Self::as_slice`] (`l < evaluated_layers()`).
    pub fn layer_offsets(&self, l: usize) -> LayerOffsets {
        let (h, lay) = (self.lay.h, &self.lay);
        let pre = lay.node_len() + l * lay.layer_node_len();
        let pre_b = pre + 2 * h * h;
        let post = pre_b + 2 * h;
        let post_b = post + 2 * h * h;
        let st = post_b + h;
        LayerOffsets { pre, pre_b, post, post_b, st, st_b: st + 2 * h * h }
    }

    /// Where edge product `j`'s weight `[in, out]` and bias table `[rows, out]` start in
    /// [`Self::as_slice`] (`j == evaluated_layers()` is the head's hidden layer; shapes as [`fold_gnn`]).
    pub fn edge_offsets(&self, j: usize) -> (usize, usize) {
        let lay = &self.lay;
        let w = lay.node_len() + lay.nl * lay.layer_node_len() + (0..j).map(|i| lay.edge_len(i)).sum::<usize>();
        let (i, o, _) = lay.edge_shape(j);
        (w, w + i * o)
    }

    /// Where the head's output layer (weight `[Fm * S, H]`, bias `[Fm * S]`) starts in [`Self::as_slice`].
    pub fn head_offsets(&self) -> (usize, usize) {
        let hr = self.lay.head_rows;
        let end = self.buf.len();
        (end - hr * self.lay.h - hr, end - hr)
    }

    fn layer_node(&self, l: usize) -> LayerNode<'a> {
        let (h, lay) = (self.lay.h, &self.lay);
        let mut r = &self.buf[lay.node_len() + l * lay.layer_node_len()..];
        LayerNode {
            pre: take(&mut r, 2 * h * h),
            pre_b: take(&mut r, 2 * h),
            post: take(&mut r, 2 * h * h),
            post_b: take(&mut r, h),
            st: take(&mut r, 2 * h * h),
            st_b: take(&mut r, 2 * h),
        }
    }

    fn edge_lin(&self, j: usize) -> EdgeLin<'a> {
        let lay = &self.lay;
        let off = lay.node_len() + lay.nl * lay.layer_node_len() + (0..j).map(|i| lay.edge_len(i)).sum::<usize>();
        let (i, o, rows) = lay.edge_shape(j);
        let mut r = &self.buf[off..];
        EdgeLin { w: take(&mut r, i * o), b: take(&mut r, rows * o) }
    }
}

/// `out[i*R + o] = Σ_k B[o, k] W[k, i]` for `i < inp`, `o < R`: the folded `(B·W)^T`, accumulated in f64.
/// `brow(o)` is row `o` of `B` (`[H]`), `W` is `[H, inp]` row-major.
fn fold_weight<'w, W: WeightElem>(brow: &dyn Fn(usize) -> &'w [W], r: usize, w: &[W], inp: usize, out: &mut [f32]) {
    for o in 0..r {
        let b = brow(o);
        for i in 0..inp {
            let mut acc = 0.0f64;
            for (k, bv) in b.iter().enumerate() {
                acc += bv.to_f32() as f64 * w[k * inp + i].to_f32() as f64;
            }
            out[i * r + o] = acc as f32;
        }
    }
}

/// `out[o] = Σ_k B[o, k] v(k) + c[o]`: a producer's bias pushed through a consumer.
fn fold_bias<'w, W: WeightElem>(
    brow: &dyn Fn(usize) -> &'w [W],
    bias: &dyn Fn(usize) -> f32,
    r: usize,
    v: &dyn Fn(usize) -> f64,
    out: &mut [f32],
) {
    for (o, d) in out.iter_mut().enumerate().take(r) {
        let acc: f64 = brow(o).iter().enumerate().map(|(k, b)| b.to_f32() as f64 * v(k)).sum();
        *d = (acc + bias(o) as f64) as f32;
    }
}

/// Writes `lin`'s weight columns `[c0, c0 + inp)` transposed (`[inp, rows]`) into `out`.
fn transpose_into<W: WeightElem>(lin: &Lin<'_, W>, c0: usize, inp: usize, out: &mut [f32], ldo: usize, o0: usize) {
    for o in 0..lin.rows {
        for i in 0..inp {
            out[i * ldo + o0 + o] = lin.w[o * lin.cols + c0 + i].to_f32();
        }
    }
}

/// Precomputes the folded model of `w` into `out` ([`folded_len`] floats); done once per model load.
pub fn fold_gnn<W: WeightElem>(w: &GnnWeights<'_, W>, cfg: &Config, out: &mut [f32]) -> Result<(), Error> {
    cfg.validate()?;
    if !cfg.gnn {
        return Err(Error::InvalidArgument("folding: only the GNN model folds"));
    }
    let lay = Layout::new(cfg);
    check_len("folded weights", out.len(), lay.total())?;
    let (h, nl) = (lay.h, lay.nl);
    if w.convs.len() < cfg.layers || w.edge_updates.len() < nl {
        return Err(Error::InvalidArgument("folding: weights hold fewer layers than the config"));
    }
    let mut rest = &mut *out;
    // Node projection, with the word-position row folded into its bias.
    let nw = take_mut(&mut rest, lay.lpe * h);
    let nb = take_mut(&mut rest, h);
    match &w.node_proj {
        Some(np) if lay.lpe > 0 => {
            transpose_into(np, 0, lay.lpe, nw, h, 0);
            nb.iter_mut().zip(np.b).for_each(|(d, b)| *d = b.to_f32());
        }
        Some(np) => nb.iter_mut().zip(np.b).for_each(|(d, b)| *d = b.to_f32()),
        None => nb.fill(0.0),
    }
    if let Some(row) = w.wte_row0 {
        nb.iter_mut().zip(row).for_each(|(d, b)| *d += b.to_f32());
    }
    for l in 0..nl {
        let (conv, upd) = (&w.convs[l], &w.edge_updates[l]);
        let pre = take_mut(&mut rest, 2 * h * h);
        transpose_into(&conv.pre, 0, h, pre, 2 * h, 0);
        transpose_into(&conv.pre, h, h, pre, 2 * h, h);
        let pre_b = take_mut(&mut rest, 2 * h);
        pre_b.iter_mut().zip(conv.pre.b).for_each(|(d, b)| *d = b.to_f32());
        pre_b[h..].fill(0.0);
        // X~ = [X | agg] · (W_lin W_post)^T + (W_lin b_post + b_lin).
        let post = take_mut(&mut rest, 2 * h * h);
        let lin_row = |o: usize| &conv.lin.w[o * h..o * h + h];
        fold_weight(&lin_row, h, conv.post.w, 2 * h, post);
        let post_b = take_mut(&mut rest, h);
        fold_bias(&lin_row, &|o| conv.lin.b[o].to_f32(), h, &|k| conv.post.b[k].to_f32() as f64, post_b);
        let st = take_mut(&mut rest, 2 * h * h);
        transpose_into(&upd.lin_s, 0, h, st, 2 * h, 0);
        transpose_into(&upd.lin_t, 0, h, st, 2 * h, h);
        let st_b = take_mut(&mut rest, 2 * h);
        for (o, d) in st_b.iter_mut().enumerate() {
            *d = if o < h { upd.lin_s.b[o] } else { upd.lin_t.b[o - h] }.to_f32();
        }
    }
    for j in 0..=nl {
        let (inp, r, rows) = lay.edge_shape(j);
        // Consumer rows: layer j's [scale ; lin_e ; shift] (edge_encoder's halves around lin_e, so the
        // per-edge product is the first 2H columns), or the head's hidden layer.
        let brow = |o: usize| -> &[W] {
            if j == nl {
                &w.head_hidden.w[o * h..o * h + h]
            } else if o < h {
                &w.convs[j].edge_encoder.w[o * h..o * h + h]
            } else if o < 2 * h {
                &w.edge_updates[j].lin_e.w[(o - h) * h..(o - h) * h + h]
            } else {
                &w.convs[j].edge_encoder.w[(o - h) * h..(o - h) * h + h]
            }
        };
        let cb = |o: usize| {
            if j == nl {
                w.head_hidden.b[o]
            } else if o < h {
                w.convs[j].edge_encoder.b[o]
            } else if o < 2 * h {
                w.edge_updates[j].lin_e.b[o - h]
            } else {
                w.convs[j].edge_encoder.b[o - h]
            }
            .to_f32()
        };
        let mw = take_mut(&mut rest, inp * r);
        let mb = take_mut(&mut rest, rows * r);
        if j == 0 {
            // Producer: edge_proj (all Fm*c columns; a graph with F < Fm uses the first F*c rows).
            fold_weight(&brow, r, w.edge_proj.w, inp, mw);
            for (t, row) in mb.chunks_exact_mut(r).enumerate() {
                let emb = w.layer_embed.and_then(|e| e.get(t * h..t * h + h));
                let v = |k: usize| w.edge_proj.b[k].to_f32() as f64 + emb.map_or(0.0, |e| e[k].to_f32() as f64);
                fold_bias(&brow, &cb, r, &v, row);
            }
        } else {
            // Producer: the previous edge update's lin1.
            let lin1 = &w.edge_updates[j - 1].lin1;
            fold_weight(&brow, r, lin1.w, h, mw);
            fold_bias(&brow, &cb, r, &|k| lin1.b[k].to_f32() as f64, mb);
        }
    }
    let (hw, hb) = rest.split_at_mut(lay.head_rows * h);
    hw.iter_mut().zip(w.head_out.w).for_each(|(d, s)| *d = s.to_f32());
    hb.iter_mut().zip(w.head_out.b).for_each(|(d, s)| *d = s.to_f32());
    Ok(())
}

/// The per-edge work runs in this many fixed halves (edge rows `[0, E/2)` and `[E/2, E)`), each with its own
/// node partial sums, so the result is the same whether a host runs them on one thread or two.
const PARTS: usize = 2;

/// Scratch floats of [`folded_forward`] for a graph of `e` edges and `n` nodes.
pub fn folded_scratch_len(cfg: &Config, e: usize, n: usize) -> usize {
    let h = cfg.hid;
    let wide = (cfg.max_feat_size * cfg.ctx).max(h);
    5 * n * h + n * wide + (PARTS - 1) * n * (h + wide) + 4 * e * h
}

/// Edge rows of part `p` of `PARTS`.
fn part_rows(e: usize, p: usize) -> core::ops::Range<usize> {
    e * p / PARTS..e * (p + 1) / PARTS
}

/// Runs the two halves' tasks through `par` and returns the first error.
fn run_halves(
    par: &dyn super::linear::Parallel,
    mut first: impl FnMut() -> Result<(), Error> + Send,
    mut second: impl FnMut() -> Result<(), Error> + Send,
) -> Result<(), Error> {
    let (mut r0, mut r1) = (Ok(()), Ok(()));
    par.run(&mut [&mut || r0 = first(), &mut || r1 = second()]);
    r0.and(r1)
}

/// `m`'s rows `r` (a row block of a product's left operand).
fn rows<'a>(m: MatRef<'a>, r: &core::ops::Range<usize>) -> MatRef<'a> {
    let data = if r.start < m.rows { &m.data[r.start * m.rs..] } else { &m.data[m.data.len()..] };
    MatRef { data, rows: r.end - r.start, ..m }
}

/// Runs the folded GNN on `attr` (`[E, F*c]`) and `lpe` (`[N, lpe]`) for horizon `k`, writing `out`
/// (`[E, F]`, scaled, residual included); the result equals [`super::model::gnn_forward`]'s up to rounding.
pub fn folded_forward(
    be: Backend<'_>,
    m: &FoldedGnn<'_>,
    graph: &NeuralGraph,
    attr: &[f32],
    lpe: &[f32],
    k: usize,
    scratch: &mut [f32],
    out: &mut [f32],
    obs: Observer<'_>,
) -> Result<(), Error> {
    let cfg = &m.cfg;
    super::model::check_common(cfg, graph, attr, k, out)?;
    let (e, n, h, f, c) = (graph.num_edges(), graph.num_nodes(), cfg.hid, graph.feat_slots(), cfg.ctx);
    let lay = &m.lay;
    check_len("lpe", lpe.len(), n * lay.lpe)?;
    check_len("scratch", scratch.len(), folded_scratch_len(cfg, e, n))?;
    if lay.typed {
        let mut bad = false;
        for_each_edge(graph, |_, _, _, kind| bad |= kind.id() >= lay.types);
        if bad {
            return Err(Error::InvalidArgument("edge type outside the model's embedding"));
        }
    }
    let mut rest = &mut *scratch;
    let x = take_mut(&mut rest, n * h);
    let uv = take_mut(&mut rest, 2 * n * h);
    let agg = take_mut(&mut rest, PARTS * n * h);
    let xt = take_mut(&mut rest, n * h);
    let wide = lay.fmc.max(h);
    let sx = take_mut(&mut rest, PARTS * n * wide);
    let (mut za, mut zb) = rest.split_at_mut(2 * e * h);

    // X0 = lpe · W_np^T + (b_np + wte row 0).
    fill_rows(x, m.node_b);
    if lay.lpe > 0 {
        be.gemm.gemm(MatRef::row_major(lpe, n, lay.lpe), MatRef::row_major(m.node_w, lay.lpe, h), x, h, 1.0)?;
    }
    obs(Stage::NodeProj, x);

    let fc = f * c;
    for l in 0..lay.nl {
        let el = m.edge_lin(l);
        let nd = m.layer_node(l);
        // Z = [scale | lin_e] per edge (biases added below). The shift is linear in the edge input, so its
        // mean over a node's incoming edges is the mean input times the shift weight: a per-node product.
        let (input, inp) = if l == 0 {
            (MatRef::row_major(attr, e, fc), fc)
        } else {
            (MatRef { data: &zb[h..], rows: e, cols: h, rs: 2 * h, cs: 1 }, h)
        };
        let w_sc_le = MatRef { data: &el.w[..inp * 3 * h], rows: inp, cols: 2 * h, rs: 3 * h, cs: 1 };
        // [U | V] per node, b_pre in U.
        fill_rows(uv, nd.pre_b);
        be.gemm.gemm(MatRef::row_major(x, n, h), MatRef::row_major(nd.pre, h, 2 * h), uv, 2 * h, 1.0)?;
        let (agg, agg1) = agg.split_at_mut(n * h);
        let (sx, sx1) = sx.split_at_mut(n * wide);
        let (sx, sx1) = (&mut sx[..n * inp], &mut sx1[..n * inp]);
        agg.fill(0.0);
        agg1.fill(0.0);
        sx.fill(0.0);
        sx1.fill(0.0);
        let table = el.b;
        let typed = l == 0 && lay.typed;
        let (zin, uvr): (&[f32], &[f32]) = (zb, uv);
        // Each half of the edges: its rows of Z, then its messages summed into its own node partials.
        let (z0, z1) = za.split_at_mut(part_rows(e, 0).len() * 2 * h);
        let part = |r: core::ops::Range<usize>, z: &mut [f32], agg: &mut [f32], sx: &mut [f32]| -> Result<(), Error> {
            let e0 = r.start;
            be.gemm.gemm(rows(input, &r), w_sc_le, z, 2 * h, 0.0)?;
            for_each_edge_in(graph, r, |ei, s, t, kind| {
                let rt = if typed { kind.id() } else { 0 };
                let b = &table[rt * 3 * h..rt * 3 * h + 3 * h];
                let sc = &z[(ei - e0) * 2 * h..(ei - e0) * 2 * h + h];
                let (ut, vs) = (&uvr[t * 2 * h..t * 2 * h + h], &uvr[s * 2 * h + h..s * 2 * h + 2 * h]);
                let a = &mut agg[t * h..t * h + h];
                (be.edge.message)(a, sc, &b[..h], ut, vs);
                if typed {
                    (be.edge.add)(a, &b[2 * h..]);
                }
                let xin = if l == 0 { &attr[ei * fc..ei * fc + fc] } else { &zin[ei * 2 * h + h..ei * 2 * h + 2 * h] };
                (be.edge.add)(&mut sx[t * inp..t * inp + inp], xin);
            });
            Ok(())
        };
        run_halves(be.par, || part(part_rows(e, 0), z0, agg, sx), || part(part_rows(e, 1), z1, agg1, sx1))?;
        agg.iter_mut().zip(&*agg1).for_each(|(a, b)| *a += b);
        sx.iter_mut().zip(&*sx1).for_each(|(a, b)| *a += b);
        let bsh = &table[2 * h..3 * h];
        for node in 0..n {
            let d = graph.in_degree(node);
            if d > 0 {
                let inv = 1.0 / d as f32;
                agg[node * h..node * h + h].iter_mut().for_each(|a| *a *= inv);
                sx[node * inp..node * inp + inp].iter_mut().for_each(|a| *a *= inv);
                if !typed {
                    agg[node * h..node * h + h].iter_mut().zip(bsh).for_each(|(a, b)| *a += b);
                }
            }
        }
        let w_sh = MatRef { data: &el.w[2 * h..inp * 3 * h], rows: inp, cols: h, rs: 3 * h, cs: 1 };
        be.gemm.gemm(MatRef::row_major(sx, n, inp), w_sh, agg, h, 1.0)?;
        // X~ = [X | agg] · post + post_b.
        fill_rows(xt, nd.post_b);
        be.gemm.gemm(MatRef::row_major(x, n, h), MatRef::row_major(&nd.post[..h * h], h, h), xt, h, 1.0)?;
        be.gemm.gemm(MatRef::row_major(agg, n, h), MatRef::row_major(&nd.post[h * h..], h, h), xt, h, 1.0)?;
        obs(Stage::Conv(l), xt);
        x.copy_from_slice(xt);
        (be.silu)(x);
        // Edge update: G = SiLU(lin_e(Ee) + lin_s(X)[s] + lin_t(X)[t]) in Z's second half.
        fill_rows(uv, nd.st_b);
        be.gemm.gemm(MatRef::row_major(x, n, h), MatRef::row_major(nd.st, h, 2 * h), uv, 2 * h, 1.0)?;
        let uvr: &[f32] = uv;
        let update = |r: core::ops::Range<usize>, z: &mut [f32]| -> Result<(), Error> {
            let e0 = r.start;
            for_each_edge_in(graph, r, |ei, s, t, kind| {
                let rt = if typed { kind.id() } else { 0 };
                let b = &table[rt * 3 * h + h..rt * 3 * h + 2 * h];
                let (ls, lt) = (&uvr[s * 2 * h..s * 2 * h + h], &uvr[t * 2 * h + h..t * 2 * h + 2 * h]);
                let g = &mut z[(ei - e0) * 2 * h + h..(ei - e0) * 2 * h + 2 * h];
                (be.edge.update)(g, b, ls, lt);
            });
            Ok(())
        };
        run_halves(be.par, || update(part_rows(e, 0), z0), || update(part_rows(e, 1), z1))?;
        core::mem::swap(&mut za, &mut zb);
    }

    // DMS head: hidden = SiLU(G · M_head + b), then only rows f*S + k-1 of the output layer.
    let el = m.edge_lin(lay.nl);
    let input = if lay.nl == 0 {
        MatRef::row_major(attr, e, fc)
    } else {
        MatRef { data: &zb[h..], rows: e, cols: h, rs: 2 * h, cs: 1 }
    };
    let w_head = MatRef::row_major(&el.w[..input.cols * h], input.cols, h);
    let typed = lay.nl == 0 && lay.typed;
    let head = |r: core::ops::Range<usize>, hid: &mut [f32], out: &mut [f32]| -> Result<(), Error> {
        let e0 = r.start;
        be.gemm.gemm(rows(input, &r), w_head, hid, h, 0.0)?;
        if typed {
            let table = el.b;
            for_each_edge_in(graph, r.clone(), |ei, _, _, kind| {
                let b = &table[kind.id() * h..kind.id() * h + h];
                hid[(ei - e0) * h..(ei - e0) * h + h].iter_mut().zip(b).for_each(|(a, b)| *a += b);
            });
        } else {
            for row in hid.chunks_exact_mut(h) {
                row.iter_mut().zip(el.b).for_each(|(a, b)| *a += b);
            }
        }
        (be.silu)(hid);
        head_rows(be.gemm, &m.head_out, cfg.seq_len, k, f, MatRef::row_major(hid, r.len(), h), out, &mut [])
    };
    let (hid0, hid1) = za[..e * h].split_at_mut(part_rows(e, 0).len() * h);
    let (out0, out1) = out.split_at_mut(part_rows(e, 0).len() * f);
    run_halves(be.par, || head(part_rows(e, 0), hid0, out0), || head(part_rows(e, 1), hid1, out1))?;
    obs(Stage::Delta, out);
    add_residual(out, attr, f, c, cfg.upd_scale);
    Ok(())
}

fn fill_rows(out: &mut [f32], row: &[f32]) {
    for r in out.chunks_exact_mut(row.len()) {
        r.copy_from_slice(row);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use std::vec;

    #[test]
    fn offsets_agree_with_the_views_the_forward_pass_reads() {
        let cfg = Config { hid: 4, ..Config::default() };
        let buf = vec![0.0f32; folded_len(&cfg)];
        let m = FoldedGnn::new(&cfg, &buf).unwrap();
        let at = |s: &[f32]| (s.as_ptr() as usize - buf.as_ptr() as usize) / 4;
        assert_eq!(m.node_offsets(), (at(m.node_w), at(m.node_b)));
        for l in 0..m.evaluated_layers() {
            let (o, v) = (m.layer_offsets(l), m.layer_node(l));
            assert_eq!(
                [o.pre, o.pre_b, o.post, o.post_b, o.st, o.st_b],
                [v.pre, v.pre_b, v.post, v.post_b, v.st, v.st_b].map(at)
            );
        }
        for j in 0..=m.evaluated_layers() {
            let e = m.edge_lin(j);
            assert_eq!(m.edge_offsets(j), (at(e.w), at(e.b)));
        }
        assert_eq!(m.head_offsets(), (at(m.head_out.w), at(m.head_out.b)));
        assert_eq!(m.as_slice().len(), buf.len());
    }
}
