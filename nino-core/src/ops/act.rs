//! ReLU forward and backward, in place, so a layer's output buffer doubles as its mask.

use crate::error::{Error, check_len};

/// Applies `max(x, 0)` in place (NaN stays NaN, as in PyTorch).
pub fn relu_forward(x: &mut [f32]) {
    // A select with an unconditional store, so the loop vectorises (a conditional store does not).
    for v in x.iter_mut() {
        *v = if *v < 0.0 { 0.0 } else { *v };
    }
}

/// Zeroes `grad` where the ReLU output `y` is not positive (PyTorch's gradient at 0 is 0).
pub fn relu_backward(y: &[f32], grad: &mut [f32]) -> Result<(), Error> {
    check_len("relu grad", grad.len(), y.len())?;
    for (g, &v) in grad.iter_mut().zip(y) {
        *g = if v <= 0.0 { 0.0 } else { *g };
    }
    Ok(())
}

/// Flatten is the identity on contiguous NCHW data: `[n, c, h, w]` is already `[n, c*h*w]` row-major.
pub fn flatten(x: &[f32]) -> &[f32] {
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relu_and_mask() {
        let mut x = [-1.0, 0.0, 2.0, -0.5];
        relu_forward(&mut x);
        assert_eq!(x, [0.0, 0.0, 2.0, 0.0]);
        let mut g = [1.0, 1.0, 1.0, 1.0];
        relu_backward(&x, &mut g).unwrap();
        assert_eq!(g, [0.0, 0.0, 1.0, 0.0]);
        assert!(relu_backward(&x, &mut g[..3]).is_err());
        // Finite differences away from the kink: slope 1 above 0, 0 below.
        let h = 1e-3f32;
        for x0 in [-0.7f32, 0.4] {
            let (mut a, mut b) = ([x0 + h], [x0 - h]);
            relu_forward(&mut a);
            relu_forward(&mut b);
            let fd = (a[0] - b[0]) / (2.0 * h);
            let mut y = [x0];
            relu_forward(&mut y);
            let mut g = [1.0];
            relu_backward(&y, &mut g).unwrap();
            assert!((fd - g[0]).abs() < 1e-3);
        }
    }
}
