//! A fast host matrix multiply behind the core `Gemm` trait.

use nino_core::Error;
use nino_core::ops::gemm::{Gemm, MatRef, check_gemm};

/// Single-threaded `gemm`-crate multiply: the engine parallelises across examples instead, which on
/// the thin shapes of these nets beats threading inside one product (RUST_NOTES.md section 7).
#[derive(Clone, Copy, Debug, Default)]
pub struct HostGemm;

impl Gemm for HostGemm {
    fn gemm(&self, a: MatRef<'_>, b: MatRef<'_>, c: &mut [f32], ldc: usize, beta: f32) -> Result<(), Error> {
        check_gemm(&a, &b, c, ldc)?;
        let (m, k, n) = (a.rows, a.cols, b.cols);
        if m == 0 || n == 0 {
            return Ok(());
        }
        if k == 0 {
            for i in 0..m {
                c[i * ldc..i * ldc + n].iter_mut().for_each(|v| *v *= beta);
            }
            return Ok(());
        }
        // SAFETY: check_gemm proved every index the views and `c` touch lies inside their slices, and `c`
        // is borrowed mutably so it aliases neither operand.
        unsafe {
            gemm::gemm(
                m,
                n,
                k,
                c.as_mut_ptr(),
                1,
                ldc as isize,
                beta != 0.0,
                a.data.as_ptr(),
                a.cs as isize,
                a.rs as isize,
                b.data.as_ptr(),
                b.cs as isize,
                b.rs as isize,
                beta,
                1.0,
                false,
                false,
                false,
                gemm::Parallelism::None,
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nino_core::ops::gemm::Portable;

    #[test]
    fn agrees_with_portable_on_strided_operands() {
        let (m, k, n) = (37, 29, 33);
        let a: Vec<f32> = (0..m * k).map(|i| ((i * 7 % 13) as f32 - 6.0) / 7.0).collect();
        let b: Vec<f32> = (0..k * n).map(|i| ((i * 5 % 11) as f32 - 5.0) / 5.0).collect();
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            let av = if ta { MatRef::transposed(&a, k, m) } else { MatRef::row_major(&a, m, k) };
            let bv = if tb { MatRef::transposed(&b, n, k) } else { MatRef::row_major(&b, k, n) };
            for beta in [0.0, 1.0, 0.5] {
                let mut c1: Vec<f32> = (0..m * (n + 3)).map(|i| (i % 5) as f32).collect();
                let mut c2 = c1.clone();
                Portable.gemm(av, bv, &mut c1, n + 3, beta).unwrap();
                HostGemm.gemm(av, bv, &mut c2, n + 3, beta).unwrap();
                // Sums of 29 products of magnitude <= 1 in a different order: 1e-4 is ample.
                let d = c1.iter().zip(&c2).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max);
                assert!(d < 1e-4, "ta {ta} tb {tb} beta {beta}: {d}");
            }
        }
    }
}
