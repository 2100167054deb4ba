//! WNN+ (`nino_mlp`, spec 4.6): the same edge features through a per-(edge, slot) MLP, no graph learning.

use super::linear::{Backend, as_f32, linear};
use super::model::{Observer, Stage, add_residual, stage_len};
use super::weights::{Config, WeightElem, WnnWeights};
use crate::error::{Error, check_len};
use crate::graph::NeuralGraph;
use crate::ops::MatRef;

/// Rows (edge, slot pairs) processed per block, bounding scratch independently of the graph size.
pub const WNN_BLOCK: usize = 512;

/// Scratch floats of [`wnn_forward`].
pub fn wnn_scratch_len(cfg: &Config) -> usize {
    2 * WNN_BLOCK * cfg.hid + stage_len(cfg)
}

/// Runs WNN+ on `attr` (`[E, F*c]`) for horizon `k`, writing `out` (`[E, F]`, scaled, residual included).
/// Padded slots and self-loops are computed too (the reference does), then dropped by the gather.
pub fn wnn_forward<W: WeightElem>(
    be: Backend<'_>,
    w: &WnnWeights<'_, W>,
    cfg: &Config,
    graph: &NeuralGraph,
    attr: &[f32],
    k: usize,
    scratch: &mut [f32],
    out: &mut [f32],
    obs: Observer<'_>,
) -> Result<(), Error> {
    super::model::check_common(cfg, graph, attr, k, out)?;
    let (e, f, c, h) = (graph.num_edges(), graph.feat_slots(), cfg.ctx, cfg.hid);
    check_len("scratch", scratch.len(), wnn_scratch_len(cfg))?;
    let (a, rest) = scratch.split_at_mut(WNN_BLOCK * h);
    let (b, stage) = rest.split_at_mut(WNN_BLOCK * h);
    let rows = e * f;
    let mut r0 = 0;
    while r0 < rows {
        let m = WNN_BLOCK.min(rows - r0);
        let (a, b) = (&mut a[..m * h], &mut b[..m * h]);
        // edge_proj bias + type embedding, then the c history values of the slot (rows are contiguous).
        for (i, row) in a.chunks_exact_mut(h).enumerate() {
            for (o, bv) in row.iter_mut().zip(w.edge_proj.b) {
                *o = bv.to_f32();
            }
            if let Some(emb) = w.layer_embed {
                let kind = graph.edge((r0 + i) / f).ok_or(Error::InvalidArgument("edge index"))?.kind.id();
                let er =
                    emb.get(kind * h..kind * h + h).ok_or(Error::InvalidArgument("edge type outside embedding"))?;
                row.iter_mut().zip(er).for_each(|(o, v)| *o += v.to_f32());
            }
        }
        let x = MatRef::row_major(&attr[r0 * c..(r0 + m) * c], m, c);
        linear(be.gemm, x, &w.edge_proj, 0, a, h, false, true, stage)?;
        linear(be.gemm, MatRef::row_major(a, m, h), &w.hidden[0], 0, b, h, true, false, stage)?;
        (be.silu)(b);
        linear(be.gemm, MatRef::row_major(b, m, h), &w.hidden[1], 0, a, h, true, false, stage)?;
        (be.silu)(a);
        linear(be.gemm, MatRef::row_major(a, m, h), &w.hidden[2], 0, b, h, true, false, stage)?;
        (be.silu)(b);
        // Output row k-1 only: the horizon selects one of the S outputs.
        let o = &mut out[r0..r0 + m];
        o.fill(w.out.b[k - 1].to_f32());
        let w6 = as_f32(w.out.w, stage)?;
        let wt = MatRef { data: &w6[(k - 1) * h..k * h], rows: h, cols: 1, rs: 1, cs: 1 };
        be.gemm.gemm(MatRef::row_major(b, m, h), wt, o, 1, 1.0)?;
        r0 += m;
    }
    obs(Stage::Delta, out);
    add_residual(out, attr, f, c, cfg.upd_scale);
    Ok(())
}
