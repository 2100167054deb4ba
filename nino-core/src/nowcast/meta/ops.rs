//! The building blocks of the trainable NiNo with their backward passes: Linear (or a column block of one)
//! over the flat parameter vector, and the elementwise kernels (SiLU, the GRU and LSTM cells).
//!
//! The elementwise kernels are written branch-free over contiguous rows, with [`exp`] in place of libm's,
//! so that their loops vectorise; a host can compile the very same functions for a wider instruction set
//! ([`Kernels`]) and get bit-identical results, because Rust never contracts `a * b + c` into a fused
//! multiply-add on its own.

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

/// `e^x`, branch-free so that loops over it vectorise: `2^n * p(r)` with `x = n ln 2 + r`, `|r| <= ln2/2`,
/// and Cephes' degree-7 polynomial for `p`, within 2 ulp of the correctly rounded value on `[-87, 88]`
/// (clamped outside, so no overflow to infinity or denormal results; NaN stays NaN).
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    // 1.5 * 2^23: adding it rounds to an integer that sits in the low mantissa bits.
    const MAGIC: f32 = 12_582_912.0;
    let xc = x.clamp(-87.0, 88.0);
    let t = xc * core::f32::consts::LOG2_E + MAGIC;
    let n = t - MAGIC;
    // ln 2 split in a part exact in f32 and a correction, so that r carries no rounding of n ln 2.
    let r = n * 2.121_944_4e-4 + (n * -0.693_359_4 + xc);
    let mut p = 1.987_569_1e-4;
    for c in [1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 1.666_666_5e-1, 0.5] {
        p = p * r + c;
    }
    let y = p * (r * r) + (r + 1.0);
    let scale = (t.to_bits() as i32).wrapping_sub(MAGIC.to_bits() as i32) << 23;
    let e = f32::from_bits((y.to_bits() as i32).wrapping_add(scale) as u32);
    if x.is_nan() { x } else { e }
}

/// The logistic function `1 / (1 + e^-x)`.
#[inline(always)]
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

/// `tanh(x) = 1 - 2 / (e^(2x) + 1)`: within about 1e-7 of libm's (absolute), saturating exactly at +-1.
#[inline(always)]
pub fn tanh(x: f32) -> f32 {
    1.0 - 2.0 / (exp(2.0 * x) + 1.0)
}

/// `y = SiLU(x)` elementwise.
#[inline(always)]
pub fn silu_fwd(x: &[f32], y: &mut [f32]) {
    y.iter_mut().zip(x).for_each(|(y, &x)| *y = x * sigmoid(x));
}

/// `dx = dy * SiLU'(x)` elementwise, in place in `dy`.
#[inline(always)]
pub fn silu_bwd(x: &[f32], dy: &mut [f32]) {
    for (d, &x) in dy.iter_mut().zip(x) {
        let s = sigmoid(x);
        *d *= s * (1.0 + x * (1.0 - s));
    }
}

/// One LSTM step over every edge (PyTorch's gates i, f, g, o): `gates` `[E, 4H]` holds the summed
/// pre-activations and is overwritten with the activated gates (backward reads them); `c_prev = None`
/// means zeros; writes `c_next` and `h_next` (`[E, H]`).
#[inline(always)]
pub fn lstm_cells(gates: &mut [f32], c_prev: Option<&[f32]>, c_next: &mut [f32], h_next: &mut [f32], h: usize) {
    let rows = gates.chunks_exact_mut(4 * h).zip(c_next.chunks_exact_mut(h)).zip(h_next.chunks_exact_mut(h));
    for (ei, ((gt, cn), hn)) in rows.enumerate() {
        let (gi, rest) = gt.split_at_mut(h);
        let (gf, rest) = rest.split_at_mut(h);
        let (gg, go) = rest.split_at_mut(h);
        // One pass per gate: plain maps over contiguous rows are what the vectoriser handles.
        for gate in [&mut *gi, &mut *gf, &mut *go] {
            for v in gate.iter_mut() {
                *v = sigmoid(*v);
            }
        }
        for v in gg.iter_mut() {
            *v = tanh(*v);
        }
        match c_prev {
            Some(c) => {
                let cp = &c[ei * h..ei * h + h];
                for (((c, &cp), &f), (&i, &g)) in cn.iter_mut().zip(cp).zip(gf.iter()).zip(gi.iter().zip(gg.iter())) {
                    *c = f * cp + i * g;
                }
            }
            None => {
                for (c, (&i, &g)) in cn.iter_mut().zip(gi.iter().zip(gg.iter())) {
                    *c = 0.0 + i * g;
                }
            }
        }
        for ((hv, &c), &o) in hn.iter_mut().zip(cn.iter()).zip(go.iter()) {
            *hv = o * tanh(c);
        }
    }
}

/// Backward of one [`lstm_cells`] step: from the activated `gates`, `c_prev` (`None`: zeros), `c` (this
/// step's cell state), `dh` (dL/dh, consumed: zeroed, for the recurrent product to accumulate into) and
/// `dc` (dL/dc in, dL/dc_prev out), writes the pre-activation gradient of the gates into `dgates`
/// (`[E, 4H]`; the input and the recurrent product share it).
#[inline(always)]
pub fn lstm_cells_bwd(
    gates: &[f32],
    c_prev: Option<&[f32]>,
    c: &[f32],
    dh: &mut [f32],
    dc: &mut [f32],
    dgates: &mut [f32],
    h: usize,
) {
    let rows = gates.chunks_exact(4 * h).zip(dgates.chunks_exact_mut(4 * h));
    for (ei, (gt, dg)) in rows.enumerate() {
        let (gi, rest) = gt.split_at(h);
        let (gf, rest) = rest.split_at(h);
        let (gg, go) = rest.split_at(h);
        let (dgi, rest) = dg.split_at_mut(h);
        let (dgf, rest) = rest.split_at_mut(h);
        let (dgg, dgo) = rest.split_at_mut(h);
        let (cn, dh, dc) = (&c[ei * h..ei * h + h], &mut dh[ei * h..ei * h + h], &mut dc[ei * h..ei * h + h]);
        let cp = c_prev.map(|c| &c[ei * h..ei * h + h]);
        for j in 0..h {
            let (i, f, g, o) = (gi[j], gf[j], gg[j], go[j]);
            let tc = tanh(cn[j]);
            let d_o = dh[j] * tc;
            let dcc = dc[j] + dh[j] * o * (1.0 - tc * tc);
            let (di, df, dgv) = (dcc * g, dcc * cp.map_or(0.0, |cp| cp[j]), dcc * i);
            dc[j] = dcc * f;
            dgi[j] = di * i * (1.0 - i);
            dgf[j] = df * f * (1.0 - f);
            dgg[j] = dgv * (1.0 - g * g);
            dgo[j] = d_o * o * (1.0 - o);
            dh[j] = 0.0;
        }
    }
}

/// One GRU step over every edge (PyTorch's gates r, z, n): `gi` `[E, 3H]` (input product, bias included)
/// is overwritten with the activated gates, `gh` `[E, 3H]` is the recurrent product; keeps its `n` block in
/// `gh_n` (`[E, H]`, backward needs it) and writes `h_next`.
#[inline(always)]
pub fn gru_cells(gi: &mut [f32], gh: &[f32], h_prev: &[f32], gh_n: &mut [f32], h_next: &mut [f32], h: usize) {
    let rows = gi.chunks_exact_mut(3 * h).zip(gh.chunks_exact(3 * h));
    for (ei, (gt, ghr)) in rows.enumerate() {
        let (gr, rest) = gt.split_at_mut(h);
        let (gz, gn) = rest.split_at_mut(h);
        let (hr, rest) = ghr.split_at(h);
        let (hz, hn) = rest.split_at(h);
        let span = ei * h..ei * h + h;
        let (hp, ghn, hx) = (&h_prev[span.clone()], &mut gh_n[span.clone()], &mut h_next[span]);
        // One pass per quantity: plain zipped maps are what the vectoriser handles.
        for (g, &x) in gr.iter_mut().zip(hr) {
            *g = sigmoid(*g + x);
        }
        for (g, &x) in gz.iter_mut().zip(hz) {
            *g = sigmoid(*g + x);
        }
        for ((g, &r), (&x, keep)) in gn.iter_mut().zip(gr.iter()).zip(hn.iter().zip(ghn.iter_mut())) {
            *g = tanh(*g + r * x);
            *keep = x;
        }
        for ((o, &z), (&n, &p)) in hx.iter_mut().zip(gz.iter()).zip(gn.iter().zip(hp)) {
            *o = (1.0 - z) * n + z * p;
        }
    }
}

/// Backward of one [`gru_cells`] step: from the activated gates, `gh_n` and `h_prev`, turns `dh` (dL/dh_next)
/// into its direct part dL/dh_prev (`z * dh`; the recurrent product adds the rest) and writes the
/// pre-activation gradients of the input product (`dgi`) and of the recurrent product (`dgh`).
#[inline(always)]
pub fn gru_cells_bwd(
    gates: &[f32],
    gh_n: &[f32],
    h_prev: &[f32],
    dh: &mut [f32],
    dgi: &mut [f32],
    dgh: &mut [f32],
    h: usize,
) {
    let rows = gates.chunks_exact(3 * h).zip(dgi.chunks_exact_mut(3 * h)).zip(dgh.chunks_exact_mut(3 * h));
    for (ei, ((gt, di), dhh)) in rows.enumerate() {
        let (gr, rest) = gt.split_at(h);
        let (gz, gn) = rest.split_at(h);
        let (dir, rest) = di.split_at_mut(h);
        let (diz, din) = rest.split_at_mut(h);
        let (dhr, rest) = dhh.split_at_mut(h);
        let (dhz, dhn) = rest.split_at_mut(h);
        let span = ei * h..ei * h + h;
        let (ghn, hp, dh) = (&gh_n[span.clone()], &h_prev[span.clone()], &mut dh[span]);
        for j in 0..h {
            let (r, z, n) = (gr[j], gz[j], gn[j]);
            let dn = dh[j] * (1.0 - z);
            let dz = dh[j] * (hp[j] - n);
            let dan = dn * (1.0 - n * n);
            let dar = dan * ghn[j] * r * (1.0 - r);
            let daz = dz * z * (1.0 - z);
            (dir[j], diz[j], din[j]) = (dar, daz, dan);
            (dhr[j], dhz[j], dhn[j]) = (dar, daz, dan * r);
            dh[j] *= z;
        }
    }
}

/// [`lstm_cells`]'s signature.
pub type LstmFn = fn(&mut [f32], Option<&[f32]>, &mut [f32], &mut [f32], usize);
/// [`lstm_cells_bwd`]'s signature.
pub type LstmBwdFn = fn(&[f32], Option<&[f32]>, &[f32], &mut [f32], &mut [f32], &mut [f32], usize);
/// [`gru_cells`]'s signature.
pub type GruFn = fn(&mut [f32], &[f32], &[f32], &mut [f32], &mut [f32], usize);
/// [`gru_cells_bwd`]'s signature.
pub type GruBwdFn = fn(&[f32], &[f32], &[f32], &mut [f32], &mut [f32], &mut [f32], usize);
/// Signature of [`super::masked_l1`].
pub type L1Fn = fn(&[f32], &[f32], &[u8], Option<&mut [f32]>) -> (f32, usize);

/// The elementwise kernels of a trainable-model pass, as function pointers so that a host can hand in the
/// same functions compiled for its CPU (see the module docs: the results are bit-identical).
#[derive(Clone, Copy, Debug)]
pub struct Kernels {
    /// [`silu_fwd`].
    pub silu_fwd: fn(&[f32], &mut [f32]),
    /// [`silu_bwd`].
    pub silu_bwd: fn(&[f32], &mut [f32]),
    /// [`lstm_cells`].
    pub lstm: LstmFn,
    /// [`lstm_cells_bwd`].
    pub lstm_bwd: LstmBwdFn,
    /// [`gru_cells`].
    pub gru: GruFn,
    /// [`gru_cells_bwd`].
    pub gru_bwd: GruBwdFn,
    /// [`super::masked_l1`] (the loss and its derivative: half a million terms per FM-16 graph).
    pub masked_l1: L1Fn,
}

impl Kernels {
    /// This crate's functions, compiled for the baseline CPU.
    pub const PORTABLE: Kernels = Kernels {
        silu_fwd,
        silu_bwd,
        lstm: lstm_cells,
        lstm_bwd: lstm_cells_bwd,
        gru: gru_cells,
        gru_bwd: gru_cells_bwd,
        masked_l1: super::masked_l1,
    };
}

/// What a trainable-model pass computes with: matrix products and the elementwise kernels.
#[derive(Clone, Copy)]
pub struct Compute<'a> {
    /// Matrix products that read the raw inputs (the parameter history, LPE, centrality) or the weights
    /// alone: always at full precision, since a snapshot's change is a small difference of large values.
    pub gemm: &'a dyn Gemm,
    /// Matrix products of hidden activations and their gradients, which tolerate low-precision operands:
    /// `gemm` again, or a bf16 product ([`crate::ops::PortableBf16`]) for mixed-precision training.
    pub lo: &'a dyn Gemm,
    /// Activations and recurrent cells.
    pub kernels: Kernels,
}

impl<'a> Compute<'a> {
    /// `gemm` for every product, with this crate's elementwise kernels.
    pub const fn portable(gemm: &'a dyn Gemm) -> Compute<'a> {
        Compute { gemm, lo: gemm, kernels: Kernels::PORTABLE }
    }

    /// The products that read edge-feature source `l`'s input: `gemm` for the raw history (`l == 0`),
    /// `lo` for a layer's activations.
    pub(crate) fn for_source(&self, l: usize) -> &'a dyn Gemm {
        if l == 0 { self.gemm } else { self.lo }
    }
}

impl core::fmt::Debug for Compute<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Compute").field("kernels", &self.kernels).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Relative error against libm's correctly rounded (to within an ulp) functions over a dense grid.
    #[test]
    fn exp_sigmoid_and_tanh_agree_with_libm() {
        // `f32::max` drops NaN, so a NaN output would leave the worst error where it was and pass.
        let worse = |m: f32, d: f32| if m.is_nan() || d.is_nan() { f32::NAN } else { m.max(d) };
        let (mut worst_exp, mut worst_sig, mut worst_tanh) = (0.0f32, 0.0f32, 0.0f32);
        let mut x = -87.0f32;
        while x <= 88.0 {
            let want = libm::expf(x);
            worst_exp = worse(worst_exp, ((exp(x) - want) / want).abs());
            worst_sig = worse(worst_sig, (sigmoid(x) - 1.0 / (1.0 + libm::expf(-x))).abs());
            worst_tanh = worse(worst_tanh, (tanh(x) - libm::tanhf(x)).abs());
            x += 0.001_37;
        }
        // 2 ulp of f32 is 2.4e-7 relative; sigmoid and tanh lie in [-1, 1], so absolute error is the measure.
        assert!(worst_exp <= 2.4e-7, "exp: {worst_exp}");
        assert!(worst_sig <= 2.4e-7, "sigmoid: {worst_sig}");
        assert!(worst_tanh <= 3.6e-7, "tanh: {worst_tanh}");
        assert!(exp(f32::NAN).is_nan() && sigmoid(f32::NAN).is_nan() && tanh(f32::NAN).is_nan());
        assert_eq!((exp(-1e4), tanh(1e4), tanh(-1e4)), (libm::expf(-87.0), 1.0, -1.0));
    }
}
