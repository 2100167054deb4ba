//! Whole-network forward, backward and evaluation of an `Arch` over caller-provided buffers.
//!
//! Conv weights are used in the "packed" order of [`crate::ops::conv`] (`[kh*kw*in, out]`), so the
//! functions come in two levels: `*_packed` ones take a parameter vector already converted by [`pack`]
//! (same length and offsets as the PyTorch vector, conv weight blocks permuted) and accumulate gradients
//! in that order (convert back with [`unpack_grad`]); the plain ones ([`forward`], [`loss_and_grad`],
//! [`evaluate`]) take PyTorch-ordered vectors and pack into their scratch. Hosts that process a batch in
//! chunks or on several threads use the packed level to pack once per step.
//!
//! Every buffer length is a function of the arch and the number of examples `n`; a buffer sized for a
//! capacity larger than `n` is fine (only its front is used), so the last partial batch needs nothing new.

use crate::arch::{Arch, Layer, LayerKind};
use crate::error::{Error, check_len};
use crate::ops::act::{relu_backward, relu_forward};
use crate::ops::conv::{
    ActivationOrder, Conv2d, conv2d_backward, conv2d_backward_from_cols, conv2d_forward, pack_weight, transpose_packed,
    unpack_grad_add,
};
use crate::ops::gemm::Gemm;
use crate::ops::linear::{linear_backward, linear_forward};
use crate::ops::loss::{count_correct, cross_entropy_sum};
use crate::ops::pool::{gap_backward, gap_forward};

fn conv_of(l: &Layer) -> Result<Conv2d, Error> {
    match l.kind {
        LayerKind::Conv { kernel, stride, pad } => Conv2d::new(l.n_in, l.n_out, kernel, stride, pad, l.in_hw),
        LayerKind::Linear => Err(Error::InvalidArgument("net: not a conv layer")),
    }
}

/// Values per example a layer stores: its pooled input (if pooling precedes it) and its output.
fn layer_act(l: &Layer) -> usize {
    let pooled = if l.gap_before { l.n_in } else { 0 };
    pooled + l.out_len()
}

/// f32 values of the activation buffer for `batch` examples (every layer's output, kept for backward).
pub fn activation_len(arch: &Arch, batch: usize) -> usize {
    batch * arch.layers().iter().map(layer_act).sum::<usize>()
}

/// f32 values of the work buffer the `*_packed` functions need for `batch` examples
/// (im2col scratch and two gradient buffers).
pub fn work_len(arch: &Arch, batch: usize) -> usize {
    cols_len(arch, batch, false) + 2 * grads_len(arch, batch)
}

/// f32 values of a work buffer in which [`accumulate_grad_packed`] keeps every conv layer's im2col
/// columns from the forward pass for its backward pass instead of building them twice: faster, for the
/// memory of all conv layers' columns instead of the largest one's. Any length from [`work_len`] works.
pub fn work_len_kept(arch: &Arch, batch: usize) -> usize {
    cols_len(arch, batch, true) + 2 * grads_len(arch, batch)
}

/// The im2col part of the work buffer: the largest conv layer's columns, or with `kept` all of them.
fn cols_len(arch: &Arch, batch: usize, kept: bool) -> usize {
    cols_of(arch.layers(), batch, kept)
}

fn cols_of(layers: &[Layer], batch: usize, kept: bool) -> usize {
    let cols = layers.iter().filter_map(|l| conv_of(l).ok()).map(|c| c.col_len(batch));
    if kept { cols.sum() } else { cols.max().unwrap_or(0) }
}

/// Whether `work` has the room to keep every conv layer's columns, and the part of it used.
fn work_of<'a>(arch: &Arch, n: usize, work: &'a mut [f32]) -> Result<(bool, &'a mut [f32]), Error> {
    let kept = work.len() >= work_len_kept(arch, n);
    Ok((kept, at_least("work", work, if kept { work_len_kept(arch, n) } else { work_len(arch, n) })?))
}

/// Where conv layer `i`'s columns start in the work buffer.
fn col_offset(arch: &Arch, batch: usize, i: usize, kept: bool) -> usize {
    if kept { cols_of(&arch.layers()[..i], batch, true) } else { 0 }
}

/// One gradient buffer: the most values held at once (a layer's output, its input, a pooled input).
fn grads_len(arch: &Arch, batch: usize) -> usize {
    let mut grad = 0;
    let mut prev_out = arch.input.len();
    for l in arch.layers() {
        grad = grad.max(batch * l.out_len()).max(batch * prev_out).max(batch * l.n_in);
        prev_out = l.out_len();
    }
    grad
}

/// f32 values of the scratch buffer of [`forward`], [`loss_and_grad`] and [`evaluate`] for `batch` examples
/// (the packed parameters, a packed gradient, plus [`work_len`]).
pub fn scratch_len(arch: &Arch, batch: usize) -> usize {
    packed_len(arch) + arch.param_count() + work_len(arch, batch)
}

/// [`scratch_len`] with [`work_len_kept`]: [`loss_and_grad`] then builds each conv layer's im2col columns
/// once per call instead of twice.
pub fn scratch_len_kept(arch: &Arch, batch: usize) -> usize {
    packed_len(arch) + arch.param_count() + work_len_kept(arch, batch)
}

/// f32 values of the packed parameters: the parameters with conv weights as `[kh*kw*in, out]`, then
/// each conv weight again as `[out, kh*kw*in]` for the input-gradient product, so backward reads it
/// row-major instead of transposing it once per call.
pub fn packed_len(arch: &Arch) -> usize {
    transposed_offset(arch, arch.layers().len())
}

/// Offset in the packed parameters of conv layer `index`'s `[out, kh*kw*in]` copy (the end of the
/// copies for `index` = the layer count).
fn transposed_offset(arch: &Arch, index: usize) -> usize {
    let before = &arch.layers()[..index];
    arch.param_count() + before.iter().filter(|l| conv_of(l).is_ok()).map(Layer::weight_len).sum::<usize>()
}

/// Length of the gradient: one value per parameter.
pub const fn grad_len(arch: &Arch) -> usize {
    arch.param_count()
}

/// Converts a PyTorch-ordered parameter vector into the packed order ([`packed_len`] values: conv
/// weights permuted, plus their transposes).
pub fn pack(arch: &Arch, params: &[f32], packed: &mut [f32]) -> Result<(), Error> {
    let p = arch.param_count();
    check_len("params", params.len(), p)?;
    check_len("packed params", packed.len(), packed_len(arch))?;
    let (head, tail) = packed.split_at_mut(p);
    head.copy_from_slice(params);
    for (i, l) in arch.layers().iter().enumerate() {
        if let Ok(c) = conv_of(l) {
            let r = l.weight_offset..l.weight_offset + l.weight_len();
            pack_weight(&c, &params[r.clone()], &mut head[r.clone()])?;
            let t = transposed_offset(arch, i) - p;
            transpose_packed(&c, &head[r], &mut tail[t..t + l.weight_len()])?;
        }
    }
    Ok(())
}

/// Adds a packed-order gradient into a PyTorch-ordered one.
pub fn unpack_grad(arch: &Arch, packed: &[f32], grad: &mut [f32]) -> Result<(), Error> {
    let p = arch.param_count();
    check_len("packed grad", packed.len(), p)?;
    check_len("grad", grad.len(), p)?;
    for l in arch.layers() {
        let w = l.weight_offset..l.weight_offset + l.weight_len();
        let b = l.bias_offset..l.bias_offset + l.n_out;
        match conv_of(l) {
            Ok(c) => unpack_grad_add(&c, &packed[w.clone()], &mut grad[w])?,
            Err(_) => grad[w.clone()].iter_mut().zip(&packed[w]).for_each(|(g, p)| *g += p),
        }
        grad[b.clone()].iter_mut().zip(&packed[b]).for_each(|(g, p)| *g += p);
    }
    Ok(())
}

/// Checks the input and returns `n`, the number of examples in `x`.
fn examples(arch: &Arch, x: &[f32]) -> Result<usize, Error> {
    let per = arch.input.len();
    if per == 0 || !x.len().is_multiple_of(per) {
        return Err(Error::InvalidArgument("net: input length is not a multiple of the example size"));
    }
    let n = x.len() / per;
    if n == 0 {
        return Err(Error::InvalidArgument("net: empty batch"));
    }
    Ok(n)
}

fn at_least<'a>(what: &'static str, buf: &'a mut [f32], need: usize) -> Result<&'a mut [f32], Error> {
    if buf.len() < need {
        return Err(Error::BufferSize { what, expected: need, got: buf.len() });
    }
    Ok(&mut buf[..need])
}

/// Offsets in the activation buffer of layer `i`: (pooled input start, output start, output end).
fn act_span(arch: &Arch, n: usize, i: usize) -> (usize, usize, usize) {
    let start: usize = n * arch.layers()[..i].iter().map(layer_act).sum::<usize>();
    let l = &arch.layers()[i];
    let pooled = if l.gap_before { n * l.n_in } else { 0 };
    (start, start + pooled, start + pooled + n * l.out_len())
}

/// Forward pass of the examples in `x` (`[n, C, H, W]`) with packed parameters; fills `acts` and
/// returns the logits (`[n, classes]`, a view into `acts`). With a work buffer of [`work_len_kept`] it
/// leaves every conv layer's im2col columns in it, for [`accumulate_grad_packed`].
pub fn forward_packed<'a>(
    arch: &Arch,
    packed: &[f32],
    x: &[f32],
    acts: &'a mut [f32],
    work: &mut [f32],
    gemm: &dyn Gemm,
) -> Result<&'a [f32], Error> {
    check_len("packed params", packed.len(), packed_len(arch))?;
    let n = examples(arch, x)?;
    let acts = at_least("activations", acts, activation_len(arch, n))?;
    let (kept, work) = work_of(arch, n, work)?;
    let layers = arch.layers();
    for (i, l) in layers.iter().enumerate() {
        let (ps, os, oe) = act_span(arch, n, i);
        let (before, rest) = acts.split_at_mut(ps);
        let (pooled, rest) = rest.split_at_mut(os - ps);
        let out = &mut rest[..oe - os];
        // The input of layer i: x for the first layer, else the previous layer's output.
        let prev: &[f32] = if i == 0 {
            x
        } else {
            let (_, pos, poe) = act_span(arch, n, i - 1);
            &before[pos..poe]
        };
        let w = &packed[l.weight_offset..l.weight_offset + l.weight_len()];
        let b = &packed[l.bias_offset..l.bias_offset + l.n_out];
        match l.kind {
            LayerKind::Conv { .. } => {
                let c = conv_of(l)?;
                let layout = if i == 0 { ActivationOrder::Nchw } else { ActivationOrder::Nhwc };
                let at = col_offset(arch, n, i, kept);
                conv2d_forward(&c, prev, layout, n, w, b, out, &mut work[at..at + c.col_len(n)], gemm)?;
            }
            LayerKind::Linear => {
                let input: &[f32] = if l.gap_before {
                    let pixels = prev.len() / (n * l.n_in).max(1);
                    gap_forward(prev, n, pixels, l.n_in, pooled)?;
                    pooled
                } else {
                    prev
                };
                linear_forward(input, n, l.n_in, w, b, l.n_out, out, gemm)?;
            }
        }
        if l.relu {
            relu_forward(out);
        }
    }
    let (_, os, oe) = act_span(arch, n, layers.len() - 1);
    Ok(&acts[os..oe])
}

/// Adds `scale * d(sum of cross-entropies)/d(params)` into the packed gradient `gpacked` and returns the
/// sum of the per-example cross-entropies. Use `scale = 1/B` with `B` the full batch when the batch is
/// processed in several calls (chunks or threads) whose gradients are summed.
pub fn accumulate_grad_packed(
    arch: &Arch,
    packed: &[f32],
    x: &[f32],
    y: &[u32],
    scale: f32,
    acts: &mut [f32],
    work: &mut [f32],
    gpacked: &mut [f32],
    gemm: &dyn Gemm,
) -> Result<f32, Error> {
    check_len("packed grad", gpacked.len(), arch.param_count())?;
    let n = examples(arch, x)?;
    check_len("labels", y.len(), n)?;
    forward_packed(arch, packed, x, acts, work, gemm)?;
    let acts = &acts[..activation_len(arch, n)];
    let (kept, work) = work_of(arch, n, work)?;
    let layers = arch.layers();
    let (col, rest) = work.split_at_mut(cols_len(arch, n, kept));
    let half = rest.len() / 2;
    let (mut ga, mut gb) = rest.split_at_mut(half);
    let last = layers.len() - 1;
    let (_, los, loe) = act_span(arch, n, last);
    let loss = cross_entropy_sum(&acts[los..loe], y, arch.classes, scale, Some(&mut ga[..n * arch.classes]))?;
    for i in (0..layers.len()).rev() {
        let l = &layers[i];
        let (ps, os, oe) = act_span(arch, n, i);
        let dy = &ga[..oe - os];
        let input: &[f32] = if l.gap_before {
            &acts[ps..os]
        } else if i == 0 {
            x
        } else {
            let (_, pos, poe) = act_span(arch, n, i - 1);
            &acts[pos..poe]
        };
        let (gw, gbias) = split_wb(gpacked, l)?;
        let w = &packed[l.weight_offset..l.weight_offset + l.weight_len()];
        let need_dx = i > 0;
        let dx_len = n * if l.gap_before { l.n_in } else { l.in_len() };
        match l.kind {
            LayerKind::Conv { .. } => {
                let c = conv_of(l)?;
                let layout = if i == 0 { ActivationOrder::Nchw } else { ActivationOrder::Nhwc };
                let dx = if need_dx { Some(&mut gb[..dx_len]) } else { None };
                let to = transposed_offset(arch, i);
                let wt = &packed[to..to + l.weight_len()];
                let at = col_offset(arch, n, i, kept);
                let col = &mut col[at..at + c.col_len(n)];
                if kept {
                    conv2d_backward_from_cols(&c, layout, n, wt, dy, gw, gbias, dx, col, gemm)?;
                } else {
                    conv2d_backward(&c, input, layout, n, w, wt, dy, gw, gbias, dx, col, gemm)?;
                }
            }
            LayerKind::Linear => {
                let dx = if need_dx || l.gap_before { Some(&mut gb[..dx_len]) } else { None };
                linear_backward(input, n, l.n_in, w, l.n_out, dy, gw, gbias, dx, gemm)?;
            }
        }
        if !need_dx {
            break;
        }
        let (_, pos, poe) = act_span(arch, n, i - 1);
        let prev_out = &acts[pos..poe];
        if l.gap_before {
            // gb holds d(pooled); spread it over the previous layer's pixels into ga.
            let pixels = prev_out.len() / (n * l.n_in);
            gap_backward(&gb[..dx_len], n, pixels, l.n_in, &mut ga[..prev_out.len()])?;
            core::mem::swap(&mut ga, &mut gb);
        }
        let g = &mut gb[..prev_out.len()];
        if layers[i - 1].relu {
            relu_backward(prev_out, g)?;
        }
        core::mem::swap(&mut ga, &mut gb);
    }
    Ok(loss)
}

fn split_wb<'a>(g: &'a mut [f32], l: &Layer) -> Result<(&'a mut [f32], &'a mut [f32]), Error> {
    if l.bias_offset < l.weight_offset + l.weight_len() || l.bias_offset + l.n_out > g.len() {
        return Err(Error::InvalidArgument("net: parameter layout"));
    }
    let (a, b) = g.split_at_mut(l.bias_offset);
    Ok((&mut a[l.weight_offset..l.weight_offset + l.weight_len()], &mut b[..l.n_out]))
}

/// Forward pass on PyTorch-ordered `params`; returns the logits `[n, classes]` (a view into `acts`).
pub fn forward<'a>(
    arch: &Arch,
    params: &[f32],
    x: &[f32],
    acts: &'a mut [f32],
    scratch: &mut [f32],
    gemm: &dyn Gemm,
) -> Result<&'a [f32], Error> {
    let p = arch.param_count();
    let n = examples(arch, x)?;
    let scratch = at_least("scratch", scratch, scratch_len(arch, n))?;
    let (packed, rest) = scratch.split_at_mut(packed_len(arch) + p);
    let packed = &mut packed[..packed_len(arch)];
    pack(arch, params, packed)?;
    forward_packed(arch, packed, x, acts, rest, gemm)
}

/// Mean cross-entropy of the batch and its gradient (overwritten into `grad`, PyTorch order).
pub fn loss_and_grad(
    arch: &Arch,
    params: &[f32],
    x: &[f32],
    y: &[u32],
    acts: &mut [f32],
    scratch: &mut [f32],
    grad: &mut [f32],
    gemm: &dyn Gemm,
) -> Result<f32, Error> {
    let p = arch.param_count();
    check_len("grad", grad.len(), p)?;
    let n = examples(arch, x)?;
    // Not cut to scratch_len: a longer scratch lends its work part the room to keep the im2col columns.
    at_least("scratch", scratch, scratch_len(arch, n))?;
    let (packed, rest) = scratch.split_at_mut(packed_len(arch));
    let (gpacked, work) = rest.split_at_mut(p);
    pack(arch, params, packed)?;
    gpacked.fill(0.0);
    let loss = accumulate_grad_packed(arch, packed, x, y, 1.0 / n as f32, acts, work, gpacked, gemm)?;
    grad.fill(0.0);
    unpack_grad(arch, gpacked, grad)?;
    Ok(loss / n as f32)
}

/// Sum of cross-entropies and number of correct top-1 predictions on the examples of `x`.
pub fn evaluate(
    arch: &Arch,
    params: &[f32],
    x: &[f32],
    y: &[u32],
    acts: &mut [f32],
    scratch: &mut [f32],
    gemm: &dyn Gemm,
) -> Result<(f32, usize), Error> {
    let n = examples(arch, x)?;
    check_len("labels", y.len(), n)?;
    let logits = forward(arch, params, x, acts, scratch, gemm)?;
    let loss = cross_entropy_sum(logits, y, arch.classes, 1.0, None)?;
    Ok((loss, count_correct(logits, y, arch.classes)?))
}

/// Class predicted for each example (first largest logit), written into `out` (one per example).
pub fn predict(
    arch: &Arch,
    params: &[f32],
    x: &[f32],
    acts: &mut [f32],
    scratch: &mut [f32],
    out: &mut [u32],
    gemm: &dyn Gemm,
) -> Result<(), Error> {
    let n = examples(arch, x)?;
    check_len("predictions", out.len(), n)?;
    let logits = forward(arch, params, x, acts, scratch, gemm)?;
    for (o, row) in out.iter_mut().zip(logits.chunks_exact(arch.classes)) {
        let mut best = 0;
        for (j, &z) in row.iter().enumerate() {
            if z > row[best] {
                best = j;
            }
        }
        *o = best as u32;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::InputShape;
    use crate::ops::gemm::Portable;

    extern crate std;
    use std::vec;
    use std::vec::Vec;

    fn rand(v: &mut [f32], seed: u64, amp: f32) {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        for x in v.iter_mut() {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            *x = amp * ((s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0);
        }
    }

    fn loss64(arch: &Arch, params: &[f32], x: &[f32], y: &[u32]) -> f64 {
        let n = y.len();
        let mut acts = vec![0f32; activation_len(arch, n)];
        let mut scratch = vec![0f32; scratch_len(arch, n)];
        let logits = forward(arch, params, x, &mut acts, &mut scratch, &Portable).unwrap();
        let mut s = 0.0;
        for (row, &c) in logits.chunks(arch.classes).zip(y) {
            let lse = row.iter().map(|&v| (v as f64).exp()).sum::<f64>().ln();
            s += lse - row[c as usize] as f64;
        }
        s / n as f64
    }

    #[test]
    fn whole_net_gradient_matches_finite_differences() {
        let input = InputShape { channels: 2, height: 7, width: 6 };
        for spec in ["conv:3,4", "conv:3,4,2", "mlp:5", "mlp:"] {
            let arch = Arch::parse(spec, input, 3).unwrap();
            let p = arch.param_count();
            let mut params = vec![0f32; p];
            rand(&mut params, 1, 0.5);
            let n = 3;
            let mut x = vec![0f32; n * input.len()];
            rand(&mut x, 2, 1.0);
            let y = [0u32, 2, 1];
            // Buffers sized for a larger capacity than the batch, as for a last partial batch; the
            // scratch once with room for one layer's im2col columns and once for every layer's (kept).
            let mut acts = vec![0f32; activation_len(&arch, n + 2)];
            if spec.starts_with("conv") {
                assert!(scratch_len(&arch, n) < scratch_len_kept(&arch, n), "{spec}: both ways run");
            }
            let mut grads = [scratch_len(&arch, n + 2), scratch_len(&arch, n), scratch_len_kept(&arch, n)].map(|len| {
                let mut scratch = vec![0f32; len];
                let mut grad = vec![0f32; p];
                let l = loss_and_grad(&arch, &params, &x, &y, &mut acts, &mut scratch, &mut grad, &Portable);
                assert!((l.unwrap() as f64 - loss64(&arch, &params, &x, &y)).abs() < 1e-5);
                grad
            });
            // Same operations on the same values either way: bit for bit.
            for plain in &grads[..2] {
                let first = plain.iter().zip(&grads[2]).position(|(a, b)| a.to_bits() != b.to_bits());
                assert_eq!(first, None, "{spec}: kept columns change the gradient (first differing index)");
            }
            let grad = core::mem::take(&mut grads[2]);
            // Central differences of the f32 forward (logits to loss in f64). h = 1e-3 keeps ReLU kinks from
            // being crossed (h = 1e-2 crosses several in nets this small); the f32 rounding of the logits
            // (~1e-7) divided by 2h gives ~1e-4 noise, so 5e-4 absolute (grads are ~1e-2) leaves margin
            // while a wrong term (errors of 1e-3 and more) fails.
            let h = 1e-3f32;
            let mut worst = 0f64;
            for i in 0..p {
                let (mut a, mut b) = (params.clone(), params.clone());
                a[i] += h;
                b[i] -= h;
                let g = (loss64(&arch, &a, &x, &y) - loss64(&arch, &b, &x, &y)) / (2.0 * h as f64);
                let d = (g - grad[i] as f64).abs();
                worst = if d.is_nan() || worst.is_nan() { f64::NAN } else { worst.max(d) };
            }
            assert!(worst < 5e-4, "{spec}: worst |fd - grad| = {worst}");
        }
    }

    #[test]
    fn evaluation_counts_and_errors() {
        let arch = Arch::parse("conv:2", InputShape { channels: 1, height: 5, width: 5 }, 2).unwrap();
        let params: Vec<f32> = (0..arch.param_count()).map(|i| (i as f32 * 0.3).sin()).collect();
        let x: Vec<f32> = (0..50).map(|i| (i as f32 * 0.1).cos()).collect();
        let mut acts = vec![0f32; activation_len(&arch, 2)];
        let mut scratch = vec![0f32; scratch_len(&arch, 2)];
        let (loss, correct) = evaluate(&arch, &params, &x, &[0, 1], &mut acts, &mut scratch, &Portable).unwrap();
        let mut pred = [0u32; 2];
        predict(&arch, &params, &x, &mut acts, &mut scratch, &mut pred, &Portable).unwrap();
        assert_eq!(correct, usize::from(pred[0] == 0) + usize::from(pred[1] == 1));
        assert!(loss.is_finite());
        let r = evaluate(&arch, &params, &x[..49], &[0, 1], &mut acts, &mut scratch, &Portable);
        assert!(r.is_err());
        let r = evaluate(&arch, &params, &x, &[0, 2], &mut acts, &mut scratch, &Portable);
        assert!(r.is_err());
        let r = evaluate(&arch, &params, &x, &[0, 1], &mut acts[..3], &mut scratch, &Portable);
        assert!(matches!(r, Err(Error::BufferSize { .. })));
    }
}
