//! Per-tensor standardisation of the parameter history (spec 3, method `std`).

use crate::arch::{Arch, MAX_LAYERS};
use crate::error::{Error, check_len};

/// Added to the standard deviation when scaling (never when unscaling: quirk Q2).
pub const SCALE_EPS: f32 = 1e-6;

/// Most parameter tensors an arch has (a weight and a bias per layer), so stats fit on the stack.
pub const MAX_TENSORS: usize = 2 * MAX_LAYERS;

/// Mean and unbiased standard deviation of one parameter tensor over all context states.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct TensorScale {
    /// Mean over the tensor's values in every state.
    pub mean: f32,
    /// Unbiased standard deviation (divisor `n*c - 1`), not clamped.
    pub sd: f32,
}

fn check_history(arch: &Arch, history: &[f32], c: usize) -> Result<usize, Error> {
    if c == 0 {
        return Err(Error::InvalidArgument("history needs at least one state"));
    }
    let p = arch.param_count();
    check_len("history", history.len(), c * p)?;
    Ok(p)
}

/// Computes one `(mean, sd)` per tensor of `arch` from `history` (`[c][P]`, oldest first) into `out`
/// (length `arch.tensor_count()`), so that scaling and unscaling use the same pairs.
pub fn tensor_scales(arch: &Arch, history: &[f32], c: usize, out: &mut [TensorScale]) -> Result<(), Error> {
    let p = check_history(arch, history, c)?;
    check_len("scales", out.len(), arch.tensor_count())?;
    for (t, s) in arch.tensors().zip(out.iter_mut()) {
        let n = (t.len * c) as f64;
        // f64 accumulation: the reference sums in f32, so ours is at least as accurate.
        let mut sum = 0.0f64;
        for st in 0..c {
            sum += history[st * p + t.offset..st * p + t.offset + t.len].iter().map(|&x| x as f64).sum::<f64>();
        }
        let mean = sum / n;
        let mut ss = 0.0f64;
        for st in 0..c {
            for &x in &history[st * p + t.offset..st * p + t.offset + t.len] {
                let d = x as f64 - mean;
                ss += d * d;
            }
        }
        let var = if n > 1.0 { ss / (n - 1.0) } else { f64::NAN };
        *s = TensorScale { mean: mean as f32, sd: libm::sqrt(var) as f32 };
    }
    Ok(())
}

/// Writes `(x - mean) / (sd + eps)` of every history value into `out` (`[c][P]`, the history's layout).
pub fn scale_history(
    arch: &Arch,
    history: &[f32],
    c: usize,
    scales: &[TensorScale],
    out: &mut [f32],
) -> Result<(), Error> {
    let p = check_history(arch, history, c)?;
    check_len("scales", scales.len(), arch.tensor_count())?;
    check_len("scaled", out.len(), c * p)?;
    for st in 0..c {
        for (t, s) in arch.tensors().zip(scales) {
            let r = st * p + t.offset..st * p + t.offset + t.len;
            let div = s.sd + SCALE_EPS;
            for (o, &x) in out[r.clone()].iter_mut().zip(&history[r]) {
                *o = (x - s.mean) / div;
            }
        }
    }
    Ok(())
}

/// Maps a scaled parameter vector (`[P]`) back in place with `y * sd + mean` (no epsilon: quirk Q2).
pub fn unscale_params(arch: &Arch, scales: &[TensorScale], params: &mut [f32]) -> Result<(), Error> {
    check_len("scales", scales.len(), arch.tensor_count())?;
    check_len("params", params.len(), arch.param_count())?;
    for (t, s) in arch.tensors().zip(scales) {
        for y in &mut params[t.offset..t.offset + t.len] {
            *y = *y * s.sd + s.mean;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::Task;

    #[test]
    fn scale_then_unscale_round_trips_up_to_eps() {
        let a = Task::Debug.arch();
        let p = a.param_count();
        let h: [f32; 2 * 662] = core::array::from_fn(|i| ((i * 37 % 101) as f32 - 50.0) * 0.01);
        let mut s = [TensorScale::default(); 8];
        tensor_scales(&a, &h, 2, &mut s).unwrap();
        let mut out = [0.0; 2 * 662];
        scale_history(&a, &h, 2, &s, &mut out).unwrap();
        // Every tensor has zero mean and unit unbiased variance after scaling (up to the 1e-6 epsilon).
        for t in a.tensors() {
            let vals = || (0..2).flat_map(|st| out[st * p + t.offset..st * p + t.offset + t.len].iter());
            let n = (2 * t.len) as f32;
            let m: f32 = vals().sum::<f32>() / n;
            let v: f32 = vals().map(|x| (x - m) * (x - m)).sum::<f32>() / (n - 1.0);
            assert!(m.abs() < 1e-5 && (v - 1.0).abs() < 1e-4, "{m} {v}");
        }
        let mut last: [f32; 662] = core::array::from_fn(|i| out[p + i]);
        unscale_params(&a, &s, &mut last).unwrap();
        for i in 0..p {
            assert!((last[i] - h[p + i]).abs() < 1e-5);
        }
        assert!(tensor_scales(&a, &h[1..], 2, &mut s).is_err());
        assert!(tensor_scales(&a, &h, 0, &mut s).is_err());
    }
}
