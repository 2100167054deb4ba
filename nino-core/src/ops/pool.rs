//! Global average pooling (`AdaptiveAvgPool2d(1)` then flatten) over channels-last activations.

use crate::error::{Error, check_len};

/// `out[b, c] = mean over pixels of x[b, p, c]` for channels-last `x` (`[n, pixels, channels]`).
pub fn gap_forward(x: &[f32], n: usize, pixels: usize, channels: usize, out: &mut [f32]) -> Result<(), Error> {
    check_len("gap input", x.len(), n * pixels * channels)?;
    check_len("gap output", out.len(), n * channels)?;
    if pixels == 0 {
        return Err(Error::InvalidArgument("gap: zero pixels"));
    }
    let inv = pixels as f32;
    for (xb, ob) in x.chunks_exact(pixels * channels).zip(out.chunks_exact_mut(channels)) {
        ob.fill(0.0);
        for row in xb.chunks_exact(channels) {
            for (o, v) in ob.iter_mut().zip(row) {
                *o += v;
            }
        }
        for o in ob.iter_mut() {
            *o /= inv;
        }
    }
    Ok(())
}

/// Backward of [`gap_forward`]: overwrites `dx[b, p, c] = dout[b, c] / pixels`.
pub fn gap_backward(dout: &[f32], n: usize, pixels: usize, channels: usize, dx: &mut [f32]) -> Result<(), Error> {
    check_len("gap output grad", dout.len(), n * channels)?;
    check_len("gap input grad", dx.len(), n * pixels * channels)?;
    if pixels == 0 {
        return Err(Error::InvalidArgument("gap: zero pixels"));
    }
    let inv = pixels as f32;
    for (db, dxb) in dout.chunks_exact(channels).zip(dx.chunks_exact_mut(pixels * channels)) {
        for row in dxb.chunks_exact_mut(channels) {
            for (d, g) in row.iter_mut().zip(db) {
                *d = g / inv;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_and_finite_differences() {
        let x: [f32; 12] = core::array::from_fn(|i| i as f32);
        let mut o = [0f32; 4];
        gap_forward(&x, 2, 3, 2, &mut o).unwrap();
        assert_eq!(o, [2.0, 3.0, 8.0, 9.0]);
        let r = [0.5f32, -1.0, 2.0, 0.25];
        let mut dx = [0f32; 12];
        gap_backward(&r, 2, 3, 2, &mut dx).unwrap();
        // L = sum(o * r) is linear in x: a central difference with h = 0.5 is exact in f32 for these values.
        let h = 0.5f32;
        for i in 0..12 {
            let (mut a, mut b) = (x, x);
            a[i] += h;
            b[i] -= h;
            let (mut oa, mut ob) = ([0f32; 4], [0f32; 4]);
            gap_forward(&a, 2, 3, 2, &mut oa).unwrap();
            gap_forward(&b, 2, 3, 2, &mut ob).unwrap();
            let l = |o: &[f32; 4]| o.iter().zip(&r).map(|(p, q)| p * q).sum::<f32>();
            let g = (l(&oa) - l(&ob)) / (2.0 * h);
            assert!((g - dx[i]).abs() < 1e-5, "dx[{i}] {g} vs {}", dx[i]);
        }
        assert!(gap_forward(&x, 2, 3, 2, &mut o[..3]).is_err());
    }
}
