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

/// `a += (s + b) * (u + v)` over slices `(a, s, b, u, v)`.
pub type MessageFn = fn(&mut [f32], &[f32], &[f32], &[f32], &[f32]);

/// `g = SiLU(g + b + s + t)` over slices `(g, b, s, t)`.
pub type UpdateFn = fn(&mut [f32], &[f32], &[f32], &[f32]);

/// The folded model's per-edge vector kernels, which a host may replace by SIMD versions of the same math.
#[derive(Clone, Copy)]
pub struct EdgeKernels {
    /// One edge's message added into its target's sum.
    pub message: MessageFn,
    /// One edge's update.
    pub update: UpdateFn,
    /// `a += x`.
    pub add: fn(a: &mut [f32], x: &[f32]),
}

impl EdgeKernels {
    /// Plain loops with the libm SiLU.
    pub const PORTABLE: EdgeKernels =
        EdgeKernels { message: message_portable, update: update_portable, add: add_portable };
}

/// [`EdgeKernels::message`] as plain loops.
#[inline(always)]
pub fn message_portable(a: &mut [f32], s: &[f32], b: &[f32], u: &[f32], v: &[f32]) {
    for (((a, s), b), (u, v)) in a.iter_mut().zip(s).zip(b).zip(u.iter().zip(v)) {
        *a += (s + b) * (u + v);
    }
}

/// The sum of [`EdgeKernels::update`] before its SiLU, as a plain loop.
#[inline(always)]
pub fn update_sum(g: &mut [f32], b: &[f32], s: &[f32], t: &[f32]) {
    for ((g, b), (s, t)) in g.iter_mut().zip(b).zip(s.iter().zip(t)) {
        *g += b + s + t;
    }
}

fn update_portable(g: &mut [f32], b: &[f32], s: &[f32], t: &[f32]) {
    update_sum(g, b, s, t);
    silu_in_place(g);
}

/// [`EdgeKernels::add`] as a plain loop.
#[inline(always)]
pub fn add_portable(a: &mut [f32], x: &[f32]) {
    a.iter_mut().zip(x).for_each(|(a, x)| *a += x);
}

/// Runs independent pieces of work, possibly at the same time: how a host lends its threads to the core,
/// which has none. The tasks touch disjoint memory, so any order gives the same result.
pub trait Parallel: Sync {
    /// Runs every task once and returns when all have finished.
    fn run(&self, tasks: &mut [&mut (dyn FnMut() + Send)]);
}

/// Runs the tasks one after the other: the core's default, for a single core.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sequential;

impl Parallel for Sequential {
    fn run(&self, tasks: &mut [&mut (dyn FnMut() + Send)]) {
        tasks.iter_mut().for_each(|t| t());
    }
}

/// The compute kernels a model runs on: a matrix multiply, the SiLU and a way to run work in parallel,
/// each replaceable by a host.
#[derive(Clone, Copy)]
pub struct Backend<'a> {
    /// Every heavy product goes through it.
    pub gemm: &'a dyn Gemm,
    /// SiLU over a slice in place; [`silu_in_place`] (libm) unless a host plugs in a vectorised one.
    pub silu: fn(&mut [f32]),
    /// Runs the per-edge halves of the folded model; [`Sequential`] unless a host has threads.
    pub par: &'a dyn Parallel,
    /// The folded model's per-edge loops.
    pub edge: EdgeKernels,
}

impl<'a> Backend<'a> {
    /// `gemm` with the core's libm SiLU, run sequentially.
    pub fn new(gemm: &'a dyn Gemm) -> Self {
        Backend { gemm, silu: silu_in_place, par: &Sequential, edge: EdgeKernels::PORTABLE }
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
