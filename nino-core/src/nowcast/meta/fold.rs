//! Linears composed through the edge features. Every edge-feature matrix `E_l` of the trainable model is
//! affine in a narrower or equally wide input `Z` (`E_0 = attr W_ep^T + b_ep + embed[type]`, and
//! `E_{l+1} = a_l W_1^T + b_1` from the edge update's activations), and everything that reads it is linear
//! in it too: the edge encoder's scale half, the edge update's `lin_e`, the mean that feeds the shift half,
//! and the MLP head's hidden layer. So each reader `W` is applied as one product `Z (W A)^T + (W beta + b)`
//! with `C = W A` formed once per graph (`H x H x k` FLOPs, not per edge), and `E_l` itself is never built:
//! one per-edge GEMM where there were two, forward and backward. The same function; the finite-difference
//! tests of every variant check the chain rule through the products.

use super::layout::{Layout, LinSlot};
use super::ops::{lin_bwd, lin_fwd};
use crate::error::Error;
use crate::graph::NeuralGraph;
use crate::nowcast::features::for_each_edge;
use crate::nowcast::model::scale_by_in_degree;
use crate::ops::{Gemm, MatRef};

/// Where an edge-feature matrix comes from: `E = Z A^T + beta + embed[type]` (`A` the first `k` columns
/// of `lin`'s weight, `beta` its bias; the type embedding only for the model's input projection).
#[derive(Clone, Copy, Debug)]
pub(super) struct Source {
    /// The Linear `A`, `beta`.
    pub lin: LinSlot,
    /// Columns of `Z` (and of `A` that are read).
    pub k: usize,
    /// `layer_embed` (rows are edge types), for `E_0` only.
    pub embed: Option<LinSlot>,
}

impl Source {
    /// The source of `E_l`: the input projection for `l == 0`, else edge update `l - 1`'s `lin1`.
    pub fn of(lay: &Layout, l: usize, input_cols: usize) -> Source {
        match l {
            0 => Source { lin: lay.edge_proj, k: input_cols, embed: lay.embed },
            _ => Source { lin: lay.edge_updates[l - 1].lin1, k: lay.cfg.hid, embed: None },
        }
    }

    /// Rows of the bias table: one per edge type, or a single row without the embedding.
    pub fn types(&self) -> usize {
        self.embed.map_or(1, |e| e.rows.max(1))
    }
}

/// Floats of one composed reader of `rows` outputs: `C [rows, k]` then the bias table `[types, rows]`.
pub(super) const fn fold_len(rows: usize, k: usize, types: usize) -> usize {
    rows * k + types * rows
}

/// Work floats [`compose`] and [`apply_bwd`] need: `dC`, the per-type sums, `beta` per type and its gradient.
pub(super) const fn work_len(rows: usize, k: usize, types: usize, mid: usize) -> usize {
    rows * k + types * rows + 2 * types * mid
}

/// `beta_t = b_A + embed[t]` for every type `t`, `[types, mid]`, into `out`.
fn betas(p: &[f32], src: &Source, out: &mut [f32]) {
    let mid = src.lin.rows;
    for (t, row) in out.chunks_exact_mut(mid).take(src.types()).enumerate() {
        row.copy_from_slice(&p[src.lin.b..src.lin.b + mid]);
        if let Some(emb) = &src.embed {
            row.iter_mut().zip(&p[emb.w + t * mid..][..mid]).for_each(|(a, b)| *a += b);
        }
    }
}

/// `W`'s rows as the right operand of `x W^T`: `[cols, rows]`.
fn wt<'a>(p: &'a [f32], w: &LinSlot) -> MatRef<'a> {
    MatRef { data: &p[w.w..], rows: w.cols, cols: w.rows, rs: 1, cs: w.cols }
}

/// Composes `reader` (`[rows, mid]`) with `src` into `fold`: `C = W A` and the bias table `W beta_t + b`.
pub(super) fn compose(
    g: &dyn Gemm,
    p: &[f32],
    reader: &LinSlot,
    src: &Source,
    fold: &mut [f32],
    work: &mut [f32],
) -> Result<(), Error> {
    let (rows, mid, k, types) = (reader.rows, src.lin.rows, src.k, src.types());
    if reader.cols != mid || k > src.lin.cols {
        return Err(Error::InvalidArgument("fold: reader and source do not chain"));
    }
    let (c, bias) = fold[..fold_len(rows, k, types)].split_at_mut(rows * k);
    let w = MatRef { data: &p[reader.w..], rows, cols: mid, rs: reader.cols, cs: 1 };
    let a = MatRef { data: &p[src.lin.w..], rows: mid, cols: k, rs: src.lin.cols, cs: 1 };
    g.gemm(w, a, c, k, 0.0)?;
    let beta = &mut work[..types * mid];
    betas(p, src, beta);
    g.gemm(MatRef::row_major(beta, types, mid), wt(p, reader), bias, rows, 0.0)?;
    for row in bias.chunks_exact_mut(rows) {
        row.iter_mut().zip(&p[reader.b..reader.b + rows]).for_each(|(o, b)| *o += b);
    }
    Ok(())
}

/// `out [E, rows] = Z C^T + bias[type(e)]`: the reader applied to the `E` that `src` makes of `z`.
pub(super) fn apply(
    g: &dyn Gemm,
    graph: &NeuralGraph,
    src: &Source,
    rows: usize,
    fold: &[f32],
    z: MatRef<'_>,
    out: &mut [f32],
) -> Result<(), Error> {
    let (k, types) = (src.k, src.types());
    let (c, bias) = fold[..fold_len(rows, k, types)].split_at(rows * k);
    let out = &mut out[..z.rows * rows];
    if src.embed.is_some() {
        for_each_edge(graph, |ei, _, _, kind| {
            out[ei * rows..][..rows].copy_from_slice(&bias[kind.id() * rows..][..rows]);
        });
    } else {
        out.chunks_exact_mut(rows).for_each(|r| r.copy_from_slice(bias));
    }
    g.gemm(z, MatRef::transposed(c, rows, k), out, rows, 1.0)
}

/// Backward of [`apply`]: the gradients of the reader, of `A`, `beta` and the embedding rows into `gr`, and
/// `dz (=|+=) dout C` when asked (`accumulate` picks `+=`).
#[allow(clippy::too_many_arguments)]
pub(super) fn apply_bwd(
    g: &dyn Gemm,
    graph: &NeuralGraph,
    p: &[f32],
    gr: &mut [f32],
    reader: &LinSlot,
    src: &Source,
    fold: &[f32],
    z: MatRef<'_>,
    dout: &[f32],
    work: &mut [f32],
    dz: Option<(&mut [f32], bool)>,
) -> Result<(), Error> {
    let (rows, mid, k, types, e) = (reader.rows, src.lin.rows, src.k, src.types(), z.rows);
    let dout = &dout[..e * rows];
    let mut w = &mut work[..work_len(rows, k, types, mid)];
    let dc = super::take(&mut w, rows * k);
    let sums = super::take(&mut w, types * rows);
    let beta = super::take(&mut w, types * mid);
    let dbeta = w;
    // dC = dout^T Z, then dW += dC A^T and dA += W^T dC.
    g.gemm(MatRef::transposed(dout, e, rows), z, dc, k, 0.0)?;
    let a_t = MatRef { data: &p[src.lin.w..], rows: k, cols: mid, rs: 1, cs: src.lin.cols };
    g.gemm(MatRef::row_major(dc, rows, k), a_t, &mut gr[reader.w..], reader.cols, 1.0)?;
    let w_t = MatRef { data: &p[reader.w..], rows: mid, cols: rows, rs: 1, cs: reader.cols };
    g.gemm(w_t, MatRef::row_major(dc, rows, k), &mut gr[src.lin.w..], src.lin.cols, 1.0)?;
    if let Some((dz, accumulate)) = dz {
        let c = MatRef::row_major(&fold[..rows * k], rows, k);
        g.gemm(MatRef::row_major(dout, e, rows), c, &mut dz[..e * k], k, if accumulate { 1.0 } else { 0.0 })?;
    }
    // The bias table `W beta_t + b`: per-type sums of dout give db, dW += sums^T beta, dbeta_t = W^T sums_t.
    sums.fill(0.0);
    if src.embed.is_some() {
        for_each_edge(graph, |ei, _, _, kind| {
            let s = &mut sums[kind.id() * rows..][..rows];
            s.iter_mut().zip(&dout[ei * rows..][..rows]).for_each(|(a, b)| *a += b);
        });
    } else {
        for row in dout.chunks_exact(rows) {
            sums.iter_mut().zip(row).for_each(|(a, b)| *a += b);
        }
    }
    betas(p, src, beta);
    let sums = &*sums;
    g.gemm(
        MatRef::transposed(sums, types, rows),
        MatRef::row_major(beta, types, mid),
        &mut gr[reader.w..],
        reader.cols,
        1.0,
    )?;
    let w = MatRef { data: &p[reader.w..], rows, cols: mid, rs: reader.cols, cs: 1 };
    g.gemm(MatRef::row_major(sums, types, rows), w, dbeta, mid, 0.0)?;
    for (t, (s, db)) in sums.chunks_exact(rows).zip(dbeta.chunks_exact(mid)).enumerate() {
        gr[reader.b..reader.b + rows].iter_mut().zip(s).for_each(|(a, b)| *a += b);
        gr[src.lin.b..src.lin.b + mid].iter_mut().zip(db).for_each(|(a, b)| *a += b);
        if let Some(emb) = &src.embed {
            gr[emb.w + t * mid..][..mid].iter_mut().zip(db).for_each(|(a, b)| *a += b);
        }
    }
    Ok(())
}

/// `E` itself, `[E, mid]`, for the one reader that needs it whole (a recurrent head's first state).
pub(super) fn source_fwd(
    g: &dyn Gemm,
    graph: &NeuralGraph,
    p: &[f32],
    src: &Source,
    z: MatRef<'_>,
    out: &mut [f32],
) -> Result<(), Error> {
    lin_fwd(g, p, &src.lin, z, 0, out, true, false)?;
    if let Some(emb) = &src.embed {
        let mid = src.lin.rows;
        for_each_edge(graph, |ei, _, _, kind| {
            let row = &p[emb.w + kind.id() * mid..][..mid];
            out[ei * mid..][..mid].iter_mut().zip(row).for_each(|(a, b)| *a += b);
        });
    }
    Ok(())
}

/// Backward of [`source_fwd`] for `de [E, mid]`.
#[allow(clippy::too_many_arguments)]
pub(super) fn source_bwd(
    g: &dyn Gemm,
    graph: &NeuralGraph,
    p: &[f32],
    gr: &mut [f32],
    src: &Source,
    z: MatRef<'_>,
    de: &[f32],
    dz: Option<(&mut [f32], bool)>,
) -> Result<(), Error> {
    lin_bwd(g, p, gr, &src.lin, z, 0, de, true, dz)?;
    if let Some(emb) = &src.embed {
        let mid = src.lin.rows;
        for_each_edge(graph, |ei, _, _, kind| {
            let row = &mut gr[emb.w + kind.id() * mid..][..mid];
            row.iter_mut().zip(&de[ei * mid..][..mid]).for_each(|(a, b)| *a += b);
        });
    }
    Ok(())
}

/// `out[t] = mean over the edges into t of x[e]`, rows of `w` values. Every node of a neural graph has its
/// self-loop, so every mean is over at least one edge.
pub(super) fn mean_incoming(graph: &NeuralGraph, x: &[f32], out: &mut [f32], w: usize) {
    out.fill(0.0);
    for_each_edge(graph, |ei, _, t, _| {
        out[t * w..][..w].iter_mut().zip(&x[ei * w..][..w]).for_each(|(o, x)| *o += x);
    });
    scale_by_in_degree(graph, out, w);
}

/// The mean of `E` over each node's incoming edges, at node level: `zbar = mean(Z)`, then
/// `ebar = zbar A^T + beta + mean(embed[type])` (`[N, k]` and `[N, mid]`).
pub(super) fn mean_fwd(
    g: &dyn Gemm,
    graph: &NeuralGraph,
    p: &[f32],
    src: &Source,
    z: &[f32],
    zbar: &mut [f32],
    ebar: &mut [f32],
) -> Result<(), Error> {
    let (n, k, mid) = (graph.num_nodes(), src.k, src.lin.rows);
    let zbar = &mut zbar[..n * k];
    mean_incoming(graph, z, zbar, k);
    if let Some(emb) = &src.embed {
        ebar.fill(0.0);
        for_each_edge(graph, |_, _, t, kind| {
            let row = &p[emb.w + kind.id() * mid..][..mid];
            ebar[t * mid..][..mid].iter_mut().zip(row).for_each(|(a, b)| *a += b);
        });
        scale_by_in_degree(graph, ebar, mid);
    }
    lin_fwd(g, p, &src.lin, MatRef::row_major(zbar, n, k), 0, ebar, true, src.embed.is_some())
}

/// Backward of [`mean_fwd`] for `debar [N, mid]` (scaled in place): the gradients of `A`, `beta` and the
/// embedding into `gr`, and `dz[e] += (debar A)[t] / deg(t)` when asked (`dzbar` is work, `[N, k]`).
#[allow(clippy::too_many_arguments)]
pub(super) fn mean_bwd(
    g: &dyn Gemm,
    graph: &NeuralGraph,
    p: &[f32],
    gr: &mut [f32],
    src: &Source,
    zbar: &[f32],
    debar: &mut [f32],
    dzbar: &mut [f32],
    dz: Option<&mut [f32]>,
) -> Result<(), Error> {
    let (n, k, mid) = (graph.num_nodes(), src.k, src.lin.rows);
    let dzbar = &mut dzbar[..n * k];
    let zbar = MatRef::row_major(&zbar[..n * k], n, k);
    lin_bwd(g, p, gr, &src.lin, zbar, 0, debar, true, dz.is_some().then_some((&mut *dzbar, false)))?;
    if let Some(emb) = &src.embed {
        scale_by_in_degree(graph, debar, mid);
        let debar = &*debar;
        for_each_edge(graph, |_, _, t, kind| {
            let row = &mut gr[emb.w + kind.id() * mid..][..mid];
            row.iter_mut().zip(&debar[t * mid..][..mid]).for_each(|(a, b)| *a += b);
        });
    }
    if let Some(dz) = dz {
        scale_by_in_degree(graph, dzbar, k);
        let dzbar = &*dzbar;
        for_each_edge(graph, |ei, _, t, _| {
            dz[ei * k..][..k].iter_mut().zip(&dzbar[t * k..][..k]).for_each(|(a, b)| *a += b);
        });
    }
    Ok(())
}
