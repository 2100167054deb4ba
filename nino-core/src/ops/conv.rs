//! 2-D convolution (square kernel, stride, symmetric zero padding) as im2col plus one tall [`Gemm`].
//!
//! Rows of the im2col matrix are output pixels (`n * oh * ow` of them) and its columns are kernel taps in
//! `(ky, kx, ci)` order, so a channels-last input is copied in contiguous runs of `n_in` values. The GEMM
//! then wants the weight as `[kh*kw*n_in, n_out]` ("packed"): [`pack_weight`] and [`unpack_grad_add`]
//! convert from and to PyTorch's `[out, in, kh, kw]`. Outputs are channels-last (`[n, oh, ow, n_out]`),
//! which is what the next conv reads fastest; inputs may be NCHW or channels-last.

use crate::arch::{Layer, LayerKind};
use crate::error::{Error, check_len};
use crate::ops::gemm::{Gemm, MatRef};

/// Memory order of a 4-D activation tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ActivationOrder {
    /// `[n, c, h, w]`, PyTorch's order and the order of network inputs.
    Nchw,
    /// `[n, h, w, c]` (channels-last), the order of every conv output here.
    Nhwc,
}

/// Geometry of one conv layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Conv2d {
    /// Input channels.
    pub n_in: usize,
    /// Output channels.
    pub n_out: usize,
    /// Kernel side.
    pub kernel: usize,
    /// Stride in both directions.
    pub stride: usize,
    /// Zero padding on each side.
    pub pad: usize,
    /// Input `(h, w)`.
    pub in_hw: (usize, usize),
    /// Output `(h, w)`.
    pub out_hw: (usize, usize),
}

impl Conv2d {
    /// Builds the geometry, computing the output size; errors on zero sizes or a kernel wider than the
    /// padded input.
    pub fn new(
        n_in: usize,
        n_out: usize,
        kernel: usize,
        stride: usize,
        pad: usize,
        in_hw: (usize, usize),
    ) -> Result<Conv2d, Error> {
        if n_in == 0 || n_out == 0 || kernel == 0 || stride == 0 || in_hw.0 == 0 || in_hw.1 == 0 {
            return Err(Error::InvalidArgument("conv2d: zero size"));
        }
        let (ph, pw) = (in_hw.0 + 2 * pad, in_hw.1 + 2 * pad);
        if kernel > ph || kernel > pw {
            return Err(Error::InvalidArgument("conv2d: kernel larger than padded input"));
        }
        let out_hw = ((ph - kernel) / stride + 1, (pw - kernel) / stride + 1);
        Ok(Conv2d { n_in, n_out, kernel, stride, pad, in_hw, out_hw })
    }

    /// The geometry of a conv [`Layer`], `None` for a linear one.
    pub fn from_layer(l: &Layer) -> Option<Conv2d> {
        match l.kind {
            LayerKind::Conv { kernel, stride, pad } => Conv2d::new(l.n_in, l.n_out, kernel, stride, pad, l.in_hw).ok(),
            LayerKind::Linear => None,
        }
    }

    /// GEMM depth: taps times input channels.
    pub const fn depth(&self) -> usize {
        self.kernel * self.kernel * self.n_in
    }

    /// Output pixels per example.
    pub const fn out_pixels(&self) -> usize {
        self.out_hw.0 * self.out_hw.1
    }

    /// Input values per example.
    pub const fn in_len(&self) -> usize {
        self.n_in * self.in_hw.0 * self.in_hw.1
    }

    /// Output values per example.
    pub const fn out_len(&self) -> usize {
        self.n_out * self.out_pixels()
    }

    /// Values of the packed weight (`[kh*kw*n_in, n_out]`), same as PyTorch's.
    pub const fn weight_len(&self) -> usize {
        self.depth() * self.n_out
    }

    /// im2col scratch needed for `n` examples.
    pub const fn col_len(&self, n: usize) -> usize {
        n * self.out_pixels() * self.depth()
    }

    /// Element strides `(batch, channel, y, x)` of an input in `layout`.
    const fn strides(&self, layout: ActivationOrder) -> (usize, usize, usize, usize) {
        let (h, w, c) = (self.in_hw.0, self.in_hw.1, self.n_in);
        match layout {
            ActivationOrder::Nchw => (c * h * w, h * w, w, 1),
            ActivationOrder::Nhwc => (c * h * w, 1, w * c, c),
        }
    }

    /// First input column of output column `ox` if its whole kernel row lies inside the input (no padding).
    #[inline]
    fn row_inside(&self, ox: usize) -> Option<usize> {
        (ox * self.stride).checked_sub(self.pad).filter(|&ix| ix + self.kernel <= self.in_hw.1)
    }

    /// Input index `(y, x)` of kernel tap `k` at output position `o` (along one axis), if not padding.
    #[inline]
    fn src(&self, o: usize, k: usize, size: usize) -> Option<usize> {
        (o * self.stride + k).checked_sub(self.pad).filter(|&i| i < size)
    }
}

/// Converts a PyTorch weight `[out, in, kh, kw]` into the packed `[kh*kw*in, out]` the GEMM reads.
pub fn pack_weight(c: &Conv2d, w: &[f32], packed: &mut [f32]) -> Result<(), Error> {
    check_len("conv weight", w.len(), c.weight_len())?;
    check_len("packed conv weight", packed.len(), c.weight_len())?;
    let (k, ci_n, co_n) = (c.kernel, c.n_in, c.n_out);
    for co in 0..co_n {
        for ci in 0..ci_n {
            for t in 0..k * k {
                packed[(t * ci_n + ci) * co_n + co] = w[(co * ci_n + ci) * k * k + t];
            }
        }
    }
    Ok(())
}

/// Transposes a packed weight `[kh*kw*in, out]` into `[out, kh*kw*in]`, the row-major right operand of
/// the input-gradient product in [`conv2d_backward`].
pub fn transpose_packed(c: &Conv2d, wp: &[f32], wt: &mut [f32]) -> Result<(), Error> {
    check_len("packed conv weight", wp.len(), c.weight_len())?;
    check_len("transposed conv weight", wt.len(), c.weight_len())?;
    let depth = c.depth();
    for (d, row) in wp.chunks_exact(c.n_out).enumerate() {
        for (o, v) in row.iter().enumerate() {
            wt[o * depth + d] = *v;
        }
    }
    Ok(())
}

/// Adds a packed weight gradient `[kh*kw*in, out]` into a PyTorch-ordered gradient `[out, in, kh, kw]`.
pub fn unpack_grad_add(c: &Conv2d, packed: &[f32], grad: &mut [f32]) -> Result<(), Error> {
    check_len("conv weight grad", grad.len(), c.weight_len())?;
    check_len("packed conv weight grad", packed.len(), c.weight_len())?;
    let (k, ci_n, co_n) = (c.kernel, c.n_in, c.n_out);
    for co in 0..co_n {
        for ci in 0..ci_n {
            for t in 0..k * k {
                grad[(co * ci_n + ci) * k * k + t] += packed[(t * ci_n + ci) * co_n + co];
            }
        }
    }
    Ok(())
}

/// Copies a run of taps; the 3-wide run of a single-channel 3x3 kernel gets a fixed-size move instead
/// of a `memcpy` call (the first conv of every reference net).
#[inline]
fn copy_run(dst: &mut [f32], src: &[f32]) {
    if let (Ok(d), Ok(s)) = (<&mut [f32; 3]>::try_from(&mut *dst), <&[f32; 3]>::try_from(src)) {
        *d = *s;
    } else {
        dst.copy_from_slice(src);
    }
}

/// Adds `b` to every row of `y` (rows of `b.len()` values).
#[inline]
pub(crate) fn add_bias_rows(y: &mut [f32], b: &[f32]) {
    for row in y.chunks_exact_mut(b.len()) {
        for (v, bb) in row.iter_mut().zip(b) {
            *v += bb;
        }
    }
}

/// Fills `col` (`[n*oh*ow, kh*kw*n_in]`) with the input patches of `n` examples of `x`.
pub fn im2col(c: &Conv2d, x: &[f32], layout: ActivationOrder, n: usize, col: &mut [f32]) -> Result<(), Error> {
    check_len("conv input", x.len(), n * c.in_len())?;
    check_len("im2col scratch", col.len(), c.col_len(n))?;
    let (sb, sc, sy, sx) = c.strides(layout);
    let (k, cin, depth) = (c.kernel, c.n_in, c.depth());
    let mut rows = col.chunks_exact_mut(depth);
    for b in 0..n {
        let xb = &x[b * sb..(b + 1) * sb];
        for oy in 0..c.out_hw.0 {
            for ox in 0..c.out_hw.1 {
                let Some(row) = rows.next() else { return Err(Error::InvalidArgument("im2col: scratch")) };
                for ky in 0..k {
                    let seg = &mut row[ky * k * cin..(ky + 1) * k * cin];
                    let Some(iy) = c.src(oy, ky, c.in_hw.0) else {
                        seg.fill(0.0);
                        continue;
                    };
                    // Channels-last with every tap of the row inside: one contiguous run of k*cin values.
                    if let Some(ix) = c.row_inside(ox).filter(|_| (sc == 1 || cin == 1) && sx == cin) {
                        let base = iy * sy + ix * sx;
                        copy_run(seg, &xb[base..base + k * cin]);
                        continue;
                    }
                    for kx in 0..k {
                        let dst = &mut seg[kx * cin..(kx + 1) * cin];
                        match c.src(ox, kx, c.in_hw.1) {
                            None => dst.fill(0.0),
                            Some(ix) => {
                                let base = iy * sy + ix * sx;
                                if sc == 1 {
                                    dst.copy_from_slice(&xb[base..base + cin]);
                                } else {
                                    for (ci, d) in dst.iter_mut().enumerate() {
                                        *d = xb[base + ci * sc];
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

/// Overwrites `dx` (the layout of the input) with the scatter-add of the patch gradients in `col`.
pub fn col2im(c: &Conv2d, col: &[f32], n: usize, layout: ActivationOrder, dx: &mut [f32]) -> Result<(), Error> {
    check_len("conv input grad", dx.len(), n * c.in_len())?;
    check_len("col2im scratch", col.len(), c.col_len(n))?;
    dx.fill(0.0);
    let (sb, sc, sy, sx) = c.strides(layout);
    let (k, cin, depth) = (c.kernel, c.n_in, c.depth());
    let mut rows = col.chunks_exact(depth);
    for b in 0..n {
        let db = &mut dx[b * sb..(b + 1) * sb];
        for oy in 0..c.out_hw.0 {
            for ox in 0..c.out_hw.1 {
                let Some(row) = rows.next() else { return Err(Error::InvalidArgument("col2im: scratch")) };
                for ky in 0..k {
                    let Some(iy) = c.src(oy, ky, c.in_hw.0) else { continue };
                    // Channels-last with every tap of the row inside: one contiguous run of k*cin values.
                    if let Some(ix) = c.row_inside(ox).filter(|_| sc == 1 && sx == cin) {
                        let base = iy * sy + ix * sx;
                        let src = &row[ky * k * cin..(ky + 1) * k * cin];
                        for (d, s) in db[base..base + k * cin].iter_mut().zip(src) {
                            *d += s;
                        }
                        continue;
                    }
                    for kx in 0..k {
                        let Some(ix) = c.src(ox, kx, c.in_hw.1) else { continue };
                        let src = &row[(ky * k + kx) * cin..(ky * k + kx + 1) * cin];
                        let base = iy * sy + ix * sx;
                        if sc == 1 {
                            for (d, s) in db[base..base + cin].iter_mut().zip(src) {
                                *d += s;
                            }
                        } else {
                            for (ci, s) in src.iter().enumerate() {
                                db[base + ci * sc] += s;
                            }
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

/// `y = conv(x, w) + b` for `n` examples; `wp` is the packed weight, `y` is channels-last, `col` scratch.
pub fn conv2d_forward(
    c: &Conv2d,
    x: &[f32],
    layout: ActivationOrder,
    n: usize,
    wp: &[f32],
    b: &[f32],
    y: &mut [f32],
    col: &mut [f32],
    gemm: &dyn Gemm,
) -> Result<(), Error> {
    check_len("packed conv weight", wp.len(), c.weight_len())?;
    check_len("conv bias", b.len(), c.n_out)?;
    check_len("conv output", y.len(), n * c.out_len())?;
    im2col(c, x, layout, n, col)?;
    for row in y.chunks_exact_mut(c.n_out) {
        row.copy_from_slice(b);
    }
    let rows = n * c.out_pixels();
    gemm.gemm(MatRef::row_major(col, rows, c.depth()), MatRef::row_major(wp, c.depth(), c.n_out), y, c.n_out, 1.0)
}

/// Backward of [`conv2d_forward`]: adds to `dwp` (packed) and `db`, and overwrites `dx` if given.
///
/// `wt` is the packed weight transposed (`[n_out, kh*kw*n_in]`); `dy` is the channels-last output
/// gradient; `col` is scratch (its forward content is recomputed).
pub fn conv2d_backward(
    c: &Conv2d,
    x: &[f32],
    layout: ActivationOrder,
    n: usize,
    wp: &[f32],
    wt: &[f32],
    dy: &[f32],
    dwp: &mut [f32],
    db: &mut [f32],
    dx: Option<&mut [f32]>,
    col: &mut [f32],
    gemm: &dyn Gemm,
) -> Result<(), Error> {
    check_len("packed conv weight", wp.len(), c.weight_len())?;
    im2col(c, x, layout, n, col)?;
    conv2d_backward_from_cols(c, layout, n, wt, dy, dwp, db, dx, col, gemm)
}

/// [`conv2d_backward`] with `col` already holding the input's im2col columns, as [`conv2d_forward`] left
/// them, so a caller that kept them does not build them twice; `col` is overwritten.
pub fn conv2d_backward_from_cols(
    c: &Conv2d,
    layout: ActivationOrder,
    n: usize,
    wt: &[f32],
    dy: &[f32],
    dwp: &mut [f32],
    db: &mut [f32],
    dx: Option<&mut [f32]>,
    col: &mut [f32],
    gemm: &dyn Gemm,
) -> Result<(), Error> {
    check_len("transposed conv weight", wt.len(), c.weight_len())?;
    check_len("conv output grad", dy.len(), n * c.out_len())?;
    check_len("packed conv weight grad", dwp.len(), c.weight_len())?;
    check_len("conv bias grad", db.len(), c.n_out)?;
    check_len("im2col scratch", col.len(), c.col_len(n))?;
    let rows = n * c.out_pixels();
    gemm.gemm(MatRef::transposed(col, rows, c.depth()), MatRef::row_major(dy, rows, c.n_out), dwp, c.n_out, 1.0)?;
    for row in dy.chunks_exact(c.n_out) {
        for (d, g) in db.iter_mut().zip(row) {
            *d += g;
        }
    }
    if let Some(dx) = dx {
        check_len("conv input grad", dx.len(), n * c.in_len())?;
        gemm.gemm(
            MatRef::row_major(dy, rows, c.n_out),
            MatRef::row_major(wt, c.n_out, c.depth()),
            col,
            c.depth(),
            0.0,
        )?;
        col2im(c, col, n, layout, dx)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::gemm::Portable;

    /// Deterministic values in [-1, 1).
    fn fill(v: &mut [f32], seed: u32) {
        let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(12345);
        for x in v.iter_mut() {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            *x = (s >> 8) as f32 / (1u32 << 23) as f32 - 1.0;
        }
    }

    /// Direct f64 convolution of NCHW `x` with PyTorch-ordered `w`, output NHWC.
    fn direct(c: &Conv2d, x: &[f32], w: &[f32], b: &[f32], n: usize) -> [f64; 512] {
        let mut y = [0f64; 512];
        let (k, (h, wd), (oh, ow)) = (c.kernel, c.in_hw, c.out_hw);
        for bi in 0..n {
            for oy in 0..oh {
                for ox in 0..ow {
                    for co in 0..c.n_out {
                        let mut acc = b[co] as f64;
                        for ci in 0..c.n_in {
                            for ky in 0..k {
                                for kx in 0..k {
                                    let (iy, ix) = (oy * c.stride + ky, ox * c.stride + kx);
                                    if iy < c.pad || ix < c.pad || iy - c.pad >= h || ix - c.pad >= wd {
                                        continue;
                                    }
                                    let xv = x[((bi * c.n_in + ci) * h + iy - c.pad) * wd + ix - c.pad];
                                    acc += xv as f64 * w[((co * c.n_in + ci) * k + ky) * k + kx] as f64;
                                }
                            }
                        }
                        y[((bi * oh + oy) * ow + ox) * c.n_out + co] = acc;
                    }
                }
            }
        }
        y
    }

    fn nchw_to_nhwc(c: &Conv2d, x: &[f32], n: usize, out: &mut [f32]) {
        let (h, w, ch) = (c.in_hw.0, c.in_hw.1, c.n_in);
        for b in 0..n {
            for ci in 0..ch {
                for i in 0..h * w {
                    out[(b * h * w + i) * ch + ci] = x[(b * ch + ci) * h * w + i];
                }
            }
        }
    }

    #[test]
    fn forward_matches_direct_in_both_layouts() {
        for (stride, pad, k) in [(2, 0, 3), (1, 1, 3), (1, 0, 1), (2, 2, 5)] {
            let c = Conv2d::new(3, 4, k, stride, pad, (6, 5)).unwrap();
            let n = 2;
            let (mut x, mut w, mut b) = ([0f32; 180], [0f32; 300], [0f32; 4]);
            let (x, w) = (&mut x[..n * c.in_len()], &mut w[..c.weight_len()]);
            fill(x, 1);
            fill(w, 2);
            fill(&mut b, 3);
            let want = direct(&c, x, w, &b, n);
            let mut wp = [0f32; 300];
            let wp = &mut wp[..c.weight_len()];
            pack_weight(&c, w, wp).unwrap();
            let mut xh = [0f32; 180];
            nchw_to_nhwc(&c, x, n, &mut xh[..n * c.in_len()]);
            for (layout, xin) in [(ActivationOrder::Nchw, &x[..]), (ActivationOrder::Nhwc, &xh[..n * c.in_len()])] {
                let mut y = [0f32; 512];
                let mut col = [0f32; 4096];
                let y = &mut y[..n * c.out_len()];
                conv2d_forward(&c, xin, layout, n, wp, &b, y, &mut col[..c.col_len(n)], &Portable).unwrap();
                for (g, w) in y.iter().zip(&want) {
                    // f32 sums of at most 75 products of values in [-1, 1]: error far below 1e-5.
                    assert!((*g as f64 - w).abs() < 1e-5, "{layout:?} k{k} s{stride} p{pad}: {g} vs {w}");
                }
            }
        }
    }

    #[test]
    fn backward_matches_finite_differences() {
        // L = sum(y * r) for a fixed random r, so dL/dy = r; gradients checked by f64 central differences
        // of the f64 direct convolution (exactly linear, so the difference quotient is exact up to rounding).
        let c = Conv2d::new(2, 3, 3, 1, 1, (4, 5)).unwrap();
        let n = 2;
        let (mut x, mut w, mut b, mut r) = ([0f32; 80], [0f32; 54], [0f32; 3], [0f32; 120]);
        fill(&mut x, 4);
        fill(&mut w, 5);
        fill(&mut b, 6);
        fill(&mut r, 7);
        let loss = |x: &[f32], w: &[f32], b: &[f32]| -> f64 {
            direct(&c, x, w, b, n).iter().zip(&r).map(|(y, r)| y * *r as f64).sum()
        };
        for layout in [ActivationOrder::Nchw, ActivationOrder::Nhwc] {
            let mut xin = x;
            if layout == ActivationOrder::Nhwc {
                nchw_to_nhwc(&c, &x, n, &mut xin);
            }
            let mut wp = [0f32; 54];
            pack_weight(&c, &w, &mut wp).unwrap();
            let mut wt = [0f32; 54];
            transpose_packed(&c, &wp, &mut wt).unwrap();
            let (mut dwp, mut db, mut dx, mut col) = ([0f32; 54], [0f32; 3], [0f32; 80], [0f32; 720]);
            conv2d_backward(&c, &xin, layout, n, &wp, &wt, &r, &mut dwp, &mut db, Some(&mut dx), &mut col, &Portable)
                .unwrap();
            let mut dw = [0f32; 54];
            unpack_grad_add(&c, &dwp, &mut dw).unwrap();
            let h = 1e-2f32;
            let fd = |f: &dyn Fn(f32) -> f64| (f(h) - f(-h)) / (2.0 * h as f64);
            for i in 0..54 {
                let g = fd(&|d| {
                    let mut w2 = w;
                    w2[i] += d;
                    loss(&x, &w2, &b)
                });
                assert!((g - dw[i] as f64).abs() < 1e-4, "dw[{i}]: {g} vs {}", dw[i]);
            }
            for i in 0..3 {
                let g = fd(&|d| {
                    let mut b2 = b;
                    b2[i] += d;
                    loss(&x, &w, &b2)
                });
                assert!((g - db[i] as f64).abs() < 1e-4, "db[{i}]");
            }
            for i in 0..80 {
                let g = fd(&|d| {
                    let mut x2 = x;
                    x2[i] += d;
                    loss(&x2, &w, &b)
                });
                // dx is in the input's layout; map the NCHW index i to it.
                let j = match layout {
                    ActivationOrder::Nchw => i,
                    ActivationOrder::Nhwc => {
                        let (bi, rest) = (i / 40, i % 40);
                        let (ci, p) = (rest / 20, rest % 20);
                        (bi * 20 + p) * 2 + ci
                    }
                };
                assert!((g - dx[j] as f64).abs() < 1e-4, "{layout:?} dx[{i}]: {g} vs {}", dx[j]);
            }
        }
    }

    #[test]
    fn bad_sizes_are_errors() {
        assert!(Conv2d::new(1, 1, 5, 1, 0, (3, 3)).is_err());
        let c = Conv2d::new(1, 2, 3, 1, 1, (4, 4)).unwrap();
        let mut y = [0f32; 32];
        let mut col = [0f32; 144];
        let r = conv2d_forward(
            &c,
            &[0.0; 15],
            ActivationOrder::Nchw,
            1,
            &[0.0; 18],
            &[0.0; 2],
            &mut y,
            &mut col,
            &Portable,
        );
        assert!(matches!(r, Err(Error::BufferSize { .. })));
    }
}
