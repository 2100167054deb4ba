//! Shared building blocks of the models: `Linear` layers through the `Gemm` trait, SiLU, bias rows.

use super::weights::{Lin, WeightElem};
use crate::error::Error;
use crate::ops::{Gemm, MatRef};

/// SiLU through `libm`, as the reference activation `x * sigmoid(x)`.
#[inline]
pub fn silu(x: f32) -> f32 {
    x / (1.0 + libm::expf(-x))
}

/// Applies SiLU to every value in place.
pub fn silu_in_place(x: &mut [f32]) {
    x.iter_mut().for_each(|v| *v = silu(*v));
}

/// The compute kernels a model runs on: a matrix multiply and the SiLU, both replaceable by a host.
#[derive(Clone, Copy)]
pub struct Backend<'a> {
    /// Every heavy product goes through it.
    pub gemm: &'a dyn Gemm,
    /// SiLU over a slice in place; [`silu_in_place`] (libm) unless a host plugs in a vectorised one.
    pub silu: fn(&mut [f32]),
}

impl<'a> Backend<'a> {
    /// `gemm` with the core's libm SiLU.
    pub fn new(gemm: &'a dyn Gemm) -> Self {
        Backend { gemm, silu: silu_in_place }
    }
}

impl core::fmt::Debug for Backend<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Backend")
    }
}

/// The weight as f32: the storage itself for f32, else converted into `stage`.
pub fn as_f32<'s, W: WeightElem>(w: &'s [W], stage: &'s mut [f32]) -> Result<&'s [f32], Error> {
    if let Some(s) = W::as_f32_slice(w) {
        return Ok(s);
    }
    let st = stage.get_mut(..w.len()).ok_or(Error::BufferSize { what: "weight stage", expected: w.len(), got: 0 })?;
    for (d, s) in st.iter_mut().zip(w) {
        *d = s.to_f32();
    }
    Ok(st)
}

/// Sets the first `b.len()` values of each of `rows` rows (stride `ldc`) to the bias.
pub fn fill_bias<W: WeightElem>(out: &mut [f32], rows: usize, ldc: usize, b: &[W]) {
    if let Some(b) = W::as_f32_slice(b) {
        for r in 0..rows {
            out[r * ldc..r * ldc + b.len()].copy_from_slice(b);
        }
        return;
    }
    for r in 0..rows {
        for (o, v) in out[r * ldc..r * ldc + b.len()].iter_mut().zip(b) {
            *o = v.to_f32();
        }
    }
}

/// `out[r, :rows] (+)= x · W[:, col_off..col_off + x.cols]^T (+ b)`: a Linear, or a column block of one.
pub fn linear<W: WeightElem>(
    gemm: &dyn Gemm,
    x: MatRef<'_>,
    lin: &Lin<'_, W>,
    col_off: usize,
    out: &mut [f32],
    ldc: usize,
    bias: bool,
    accumulate: bool,
    stage: &mut [f32],
) -> Result<(), Error> {
    if col_off + x.cols > lin.cols {
        return Err(Error::InvalidArgument("linear: column block outside the weight"));
    }
    let need = if x.rows == 0 { 0 } else { (x.rows - 1) * ldc + lin.rows };
    if ldc < lin.rows || out.len() < need {
        return Err(Error::BufferSize { what: "linear output", expected: need, got: out.len() });
    }
    if bias && accumulate {
        for r in 0..x.rows {
            for (o, v) in out[r * ldc..r * ldc + lin.rows].iter_mut().zip(lin.b) {
                *o += v.to_f32();
            }
        }
    } else if bias {
        fill_bias(out, x.rows, ldc, lin.b);
    }
    let beta = if bias || accumulate { 1.0 } else { 0.0 };
    let w = as_f32(lin.w, stage)?;
    let wt = MatRef { data: &w[col_off..], rows: x.cols, cols: lin.rows, rs: 1, cs: lin.cols };
    gemm.gemm(x, wt, out, ldc, beta)
}
