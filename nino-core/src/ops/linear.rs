//! Fully connected layer `y = x W^T + b` (PyTorch `nn.Linear`, weight `[out, in]`) and its backward.

use crate::error::{Error, check_len};
use crate::ops::gemm::{Gemm, MatRef};

/// `y[n, out] = x[n, in] W^T + b`.
pub fn linear_forward(
    x: &[f32],
    n: usize,
    n_in: usize,
    w: &[f32],
    b: &[f32],
    n_out: usize,
    y: &mut [f32],
    gemm: &dyn Gemm,
) -> Result<(), Error> {
    check_len("linear input", x.len(), n * n_in)?;
    check_len("linear weight", w.len(), n_out * n_in)?;
    check_len("linear bias", b.len(), n_out)?;
    check_len("linear output", y.len(), n * n_out)?;
    gemm.gemm(MatRef::row_major(x, n, n_in), MatRef::transposed(w, n_out, n_in), y, n_out, 0.0)?;
    crate::ops::conv::add_bias_rows(y, b);
    Ok(())
}

/// Backward of [`linear_forward`]: adds to `dw` and `db`, overwrites `dx` if given.
pub fn linear_backward(
    x: &[f32],
    n: usize,
    n_in: usize,
    w: &[f32],
    n_out: usize,
    dy: &[f32],
    dw: &mut [f32],
    db: &mut [f32],
    dx: Option<&mut [f32]>,
    gemm: &dyn Gemm,
) -> Result<(), Error> {
    check_len("linear input", x.len(), n * n_in)?;
    check_len("linear weight", w.len(), n_out * n_in)?;
    check_len("linear output grad", dy.len(), n * n_out)?;
    check_len("linear weight grad", dw.len(), n_out * n_in)?;
    check_len("linear bias grad", db.len(), n_out)?;
    gemm.gemm(MatRef::transposed(dy, n, n_out), MatRef::row_major(x, n, n_in), dw, n_in, 1.0)?;
    for row in dy.chunks_exact(n_out) {
        for (d, g) in db.iter_mut().zip(row) {
            *d += g;
        }
    }
    if let Some(dx) = dx {
        check_len("linear input grad", dx.len(), n * n_in)?;
        gemm.gemm(MatRef::row_major(dy, n, n_out), MatRef::row_major(w, n_out, n_in), dx, n_in, 0.0)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::gemm::Portable;

    #[test]
    fn forward_and_finite_difference_gradients() {
        let (n, ni, no) = (3, 4, 2);
        let x: [f32; 12] = core::array::from_fn(|i| (i as f32 * 0.37).sin());
        let w: [f32; 8] = core::array::from_fn(|i| (i as f32 * 0.71 + 0.2).cos());
        let b = [0.3f32, -0.1];
        let r: [f32; 6] = core::array::from_fn(|i| (i as f32 * 1.3).sin());
        let f = |x: &[f32], w: &[f32], b: &[f32]| -> f64 {
            let mut s = 0.0;
            for i in 0..n {
                for o in 0..no {
                    let mut y = b[o] as f64;
                    for k in 0..ni {
                        y += x[i * ni + k] as f64 * w[o * ni + k] as f64;
                    }
                    s += y * r[i * no + o] as f64;
                }
            }
            s
        };
        let mut y = [0f32; 6];
        linear_forward(&x, n, ni, &w, &b, no, &mut y, &Portable).unwrap();
        let ys: f64 = y.iter().zip(&r).map(|(a, b)| *a as f64 * *b as f64).sum();
        // Twelve f32 products of magnitude <= 1: rounding well under 1e-5.
        assert!((ys - f(&x, &w, &b)).abs() < 1e-5);
        let (mut dw, mut db, mut dx) = ([0f32; 8], [0f32; 2], [0f32; 12]);
        linear_backward(&x, n, ni, &w, no, &r, &mut dw, &mut db, Some(&mut dx), &Portable).unwrap();
        // The loss is linear in each argument, so f64 central differences are exact up to rounding.
        let h = 1e-2f32;
        for i in 0..8 {
            let (mut a, mut c) = (w, w);
            a[i] += h;
            c[i] -= h;
            let g = (f(&x, &a, &b) - f(&x, &c, &b)) / (2.0 * h as f64);
            assert!((g - dw[i] as f64).abs() < 1e-4, "dw[{i}]");
        }
        for i in 0..2 {
            let (mut a, mut c) = (b, b);
            a[i] += h;
            c[i] -= h;
            let g = (f(&x, &w, &a) - f(&x, &w, &c)) / (2.0 * h as f64);
            assert!((g - db[i] as f64).abs() < 1e-4, "db[{i}]");
        }
        for i in 0..12 {
            let (mut a, mut c) = (x, x);
            a[i] += h;
            c[i] -= h;
            let g = (f(&a, &w, &b) - f(&c, &w, &b)) / (2.0 * h as f64);
            assert!((g - dx[i] as f64).abs() < 1e-4, "dx[{i}]");
        }
        assert!(linear_forward(&x, n, ni, &w, &b, no, &mut y[..5], &Portable).is_err());
    }
}
