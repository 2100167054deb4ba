//! The building blocks of the trainable NiNo with their backward passes: Linear (or a column block of one)
//! over the flat parameter vector, SiLU, and the sigmoid/tanh the recurrent cells use.

use super::layout::LinSlot;
use crate::error::Error;
use crate::ops::{Gemm, MatRef};

/// `y[M, rows] (+)= x[M, k] · W[:, col..col+k]^T (+ b)`, `W` and `b` at `slot` in `p`.
pub(crate) fn lin_fwd(
    g: &dyn Gemm,
    p: &[f32],
    s: &LinSlot,
    x: MatRef<'_>,
    col: usize,
    y: &mut [f32],
    bias: bool,
    accumulate: bool,
) -> Result<(), Error> {
    if col + x.cols > s.cols {
        return Err(Error::InvalidArgument("linear: column block outside the weight"));
    }
    let m = x.rows;
    if y.len() < m * s.rows {
        return Err(Error::BufferSize { what: "linear output", expected: m * s.rows, got: y.len() });
    }
    let y = &mut y[..m * s.rows];
    if bias {
        let b = &p[s.b..s.b + s.rows];
        for row in y.chunks_exact_mut(s.rows) {
            if accumulate {
                row.iter_mut().zip(b).for_each(|(o, v)| *o += v);
            } else {
                row.copy_from_slice(b);
            }
        }
    }
    let wt = MatRef { data: &p[s.w + col..], rows: x.cols, cols: s.rows, rs: 1, cs: s.cols };
    g.gemm(x, wt, y, s.rows, if bias || accumulate { 1.0 } else { 0.0 })
}

/// Backward of [`lin_fwd`]: `dW[:, col..col+k] += dy^T x`, `db += colsum(dy)` (when `bias`) into `gr`, and
/// `dx (=|+=) dy · W[:, col..col+k]` when `dx` is given (`accumulate` picks `+=`).
pub(crate) fn lin_bwd(
    g: &dyn Gemm,
    p: &[f32],
    gr: &mut [f32],
    s: &LinSlot,
    x: MatRef<'_>,
    col: usize,
    dy: &[f32],
    bias: bool,
    dx: Option<(&mut [f32], bool)>,
) -> Result<(), Error> {
    let (m, k) = (x.rows, x.cols);
    if col + k > s.cols || dy.len() < m * s.rows {
        return Err(Error::InvalidArgument("linear backward: shapes do not fit"));
    }
    let dy = &dy[..m * s.rows];
    g.gemm(MatRef::transposed(dy, m, s.rows), x, &mut gr[s.w + col..], s.cols, 1.0)?;
    if bias {
        let db = &mut gr[s.b..s.b + s.rows];
        for row in dy.chunks_exact(s.rows) {
            db.iter_mut().zip(row).for_each(|(d, v)| *d += v);
        }
    }
    if let Some((dx, accumulate)) = dx {
        let w = MatRef { data: &p[s.w + col..], rows: s.rows, cols: k, rs: s.cols, cs: 1 };
        g.gemm(MatRef::row_major(dy, m, s.rows), w, &mut dx[..m * k], k, if accumulate { 1.0 } else { 0.0 })?;
    }
    Ok(())
}

/// The logistic function.
#[inline]
pub(crate) fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + libm::expf(-x))
}

/// `y = SiLU(x)` elementwise.
pub(crate) fn silu_fwd(x: &[f32], y: &mut [f32]) {
    y.iter_mut().zip(x).for_each(|(y, &x)| *y = x * sigmoid(x));
}

/// `dx = dy * SiLU'(x)` elementwise, in place in `dy`.
pub(crate) fn silu_bwd(x: &[f32], dy: &mut [f32]) {
    for (d, &x) in dy.iter_mut().zip(x) {
        let s = sigmoid(x);
        *d *= s * (1.0 + x * (1.0 - s));
    }
}
