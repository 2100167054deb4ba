//! Softmax cross-entropy on logits (numerically stable log-sum-exp) and its gradient; top-1 counting.

use crate::error::{Error, check_len};

/// Sum over the `n` rows of `-log softmax(logits)[y]`; if `dlogits` is given it is overwritten with
/// `scale * (softmax - onehot(y))` (use `scale = 1/n` for the gradient of the mean).
///
/// Non-finite logits give a non-finite loss, never an error or a panic. Labels must be `< classes`.
pub fn cross_entropy_sum(
    logits: &[f32],
    y: &[u32],
    classes: usize,
    scale: f32,
    mut dlogits: Option<&mut [f32]>,
) -> Result<f32, Error> {
    let n = y.len();
    if classes == 0 {
        return Err(Error::InvalidArgument("cross entropy: zero classes"));
    }
    check_len("logits", logits.len(), n * classes)?;
    if let Some(d) = dlogits.as_deref() {
        check_len("logits grad", d.len(), n * classes)?;
    }
    if y.iter().any(|&c| c as usize >= classes) {
        return Err(Error::InvalidArgument("cross entropy: label out of range"));
    }
    let mut total = 0.0f32;
    for (i, (row, &label)) in logits.chunks_exact(classes).zip(y).enumerate() {
        let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let m = if m.is_finite() { m } else { row.iter().copied().fold(0.0, |a, b| a + b) };
        let s: f32 = row.iter().map(|&z| libm::expf(z - m)).sum();
        let ls = libm::logf(s);
        total += (m - row[label as usize]) + ls;
        if let Some(d) = dlogits.as_deref_mut() {
            let drow = &mut d[i * classes..(i + 1) * classes];
            for (g, &z) in drow.iter_mut().zip(row) {
                *g = scale * libm::expf((z - m) - ls);
            }
            drow[label as usize] -= scale;
        }
    }
    Ok(total)
}

/// Mean cross-entropy over the rows (PyTorch's default `reduction='mean'`), gradient of that mean.
pub fn cross_entropy_mean(
    logits: &[f32],
    y: &[u32],
    classes: usize,
    dlogits: Option<&mut [f32]>,
) -> Result<f32, Error> {
    if y.is_empty() {
        return Err(Error::InvalidArgument("cross entropy: empty batch"));
    }
    let n = y.len() as f32;
    Ok(cross_entropy_sum(logits, y, classes, 1.0 / n, dlogits)? / n)
}

/// Rows whose first largest logit is at the label (PyTorch `argmax` picks the first maximum).
pub fn count_correct(logits: &[f32], y: &[u32], classes: usize) -> Result<usize, Error> {
    if classes == 0 {
        return Err(Error::InvalidArgument("count correct: zero classes"));
    }
    check_len("logits", logits.len(), y.len() * classes)?;
    let mut correct = 0;
    for (row, &label) in logits.chunks_exact(classes).zip(y) {
        let mut best = 0;
        for (j, &z) in row.iter().enumerate() {
            if z > row[best] {
                best = j;
            }
        }
        correct += usize::from(best == label as usize);
    }
    Ok(correct)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_stability_and_gradient() {
        // Uniform logits: loss is ln(classes) whatever their size (1e4 would overflow a naive exp).
        let l = cross_entropy_mean(&[1e4; 4], &[2], 4, None).unwrap();
        assert!((l - libm::logf(4.0)).abs() < 1e-6);
        let z = [0.3f32, -1.2, 2.0, 0.1, 0.5, 0.5];
        let y = [2u32, 0];
        let mut d = [0f32; 6];
        let l = cross_entropy_mean(&z, &y, 3, Some(&mut d)).unwrap();
        // f64 reference value and f64 central differences of it; the f32 gradient is good to ~1e-7.
        let f = |z: &[f32]| -> f64 {
            let mut s = 0.0;
            for (row, &c) in z.chunks(3).zip(&y) {
                let lse = row.iter().map(|&v| (v as f64).exp()).sum::<f64>().ln();
                s += lse - row[c as usize] as f64;
            }
            s / 2.0
        };
        assert!((l as f64 - f(&z)).abs() < 1e-6);
        for i in 0..6 {
            let h = 1e-3f32;
            let (mut a, mut b) = (z, z);
            a[i] += h;
            b[i] -= h;
            let g = (f(&a) - f(&b)) / (2.0 * h as f64);
            assert!((g - d[i] as f64).abs() < 1e-5, "d[{i}] {g} vs {}", d[i]);
        }
        assert_eq!(count_correct(&z, &y, 3).unwrap(), 1);
        assert!(cross_entropy_mean(&z, &[3, 0], 3, None).is_err());
        assert!(cross_entropy_mean(&[f32::NAN, 0.0], &[0], 2, None).unwrap().is_nan());
    }
}
