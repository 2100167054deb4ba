//! A fast host matrix multiply behind the core `Gemm` trait.
//!
//! Products whose output width is a multiple of 16 (every conv GEMM of the reference nets) run on an
//! AVX-512 register-tile kernel with no packing of the tall operand; the rest go to the `gemm` crate.
//! [`IsaGemm`] forces a level ([`Isa`]); `NINO_KERNELS=avx2` or `portable` sends everything to the `gemm` crate.

use super::Isa;
use nino_core::Error;
use nino_core::ops::gemm::{Gemm, MatRef, check_gemm};

/// Single-threaded `gemm`-crate multiply: the engine parallelises across examples instead, which on
/// the thin shapes of these nets beats threading inside one product (docs/results/pytorch-baseline.md, "Matrix products").
#[derive(Clone, Copy, Debug, Default)]
pub struct HostGemm;

impl Gemm for HostGemm {
    fn gemm(&self, a: MatRef<'_>, b: MatRef<'_>, c: &mut [f32], ldc: usize, beta: f32) -> Result<(), Error> {
        IsaGemm(Isa::selected()).gemm(a, b, c, ldc, beta)
    }
}

/// [`HostGemm`] at a given level (lowered to what the CPU runs): [`Isa::Avx512`] uses the AVX-512 tiles where
/// they apply, every lower level the `gemm` crate, so tests run the fallback on an AVX-512 machine too.
#[derive(Clone, Copy, Debug)]
pub struct IsaGemm(pub Isa);

impl Gemm for IsaGemm {
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
        #[cfg(target_arch = "x86_64")]
        if n % 16 == 0 && self.0.clamp() == Isa::Avx512 {
            fast(a, b, c, ldc, beta);
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

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    /// `c[MR x 16*NV] = beta*c + a[MR x k] b[k x 16*NV]`; `b` rows are contiguous with stride `ldb`.
    ///
    /// # Safety
    /// AVX-512F must be available; every `a[r*a_rs + p*a_cs]`, `b[p*ldb + 0..16*NV]` and
    /// `c[r*ldc + 0..16*NV]` for `r < MR`, `p < k` must be in bounds.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn tile<const MR: usize, const NV: usize>(
        k: usize,
        a: *const f32,
        a_rs: usize,
        a_cs: usize,
        b: *const f32,
        ldb: usize,
        c: *mut f32,
        ldc: usize,
        beta: f32,
    ) {
        let mut acc = [[_mm512_setzero_ps(); NV]; MR];
        // SAFETY (whole body): bounds are the caller's contract.
        unsafe {
            for p in 0..k {
                let bp = b.add(p * ldb);
                let mut bv = [_mm512_setzero_ps(); NV];
                for j in 0..NV {
                    bv[j] = _mm512_loadu_ps(bp.add(16 * j));
                }
                let ap = a.add(p * a_cs);
                for r in 0..MR {
                    let av = _mm512_set1_ps(*ap.add(r * a_rs));
                    for j in 0..NV {
                        acc[r][j] = _mm512_fmadd_ps(av, bv[j], acc[r][j]);
                    }
                }
            }
            let bb = _mm512_set1_ps(beta);
            for r in 0..MR {
                for j in 0..NV {
                    let cp = c.add(r * ldc + 16 * j);
                    let v = if beta == 0.0 {
                        acc[r][j]
                    } else if beta == 1.0 {
                        _mm512_add_ps(_mm512_loadu_ps(cp), acc[r][j])
                    } else {
                        _mm512_fmadd_ps(bb, _mm512_loadu_ps(cp), acc[r][j])
                    };
                    _mm512_storeu_ps(cp, v);
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
thread_local! {
    /// One column panel of the right operand copied contiguously (`k x 16*NV`).
    static PANEL: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `c = beta*c + a b` on the AVX-512 tiles; `n` is a multiple of 16 and the shapes were checked.
///
/// Sweeps the output in column panels of up to 64 and row blocks of the kernel's height. A panel is
/// first copied contiguously when `b` is strided (the kernel loads 16 adjacent values), or when `b`'s rows
/// are wider than the panel and many row tiles will reuse it: such rows lie a power-of-two stride apart
/// and would evict one another from the L1 cache.
#[cfg(target_arch = "x86_64")]
fn fast(a: MatRef<'_>, b: MatRef<'_>, c: &mut [f32], ldc: usize, beta: f32) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    let (ap, cp) = (a.data.as_ptr(), c.as_mut_ptr());
    let mut j0 = 0;
    while j0 < n {
        let nv = ((n - j0) / 16).min(4);
        let w = 16 * nv;
        let copy = b.cs != 1 || (b.rs > w && m >= 24);
        PANEL.with(|cell| {
            let mut buf = cell.borrow_mut();
            let (bp, ldp) = if copy {
                buf.clear();
                for p in 0..k {
                    let row = p * b.rs + j0 * b.cs;
                    if b.cs == 1 {
                        buf.extend_from_slice(&b.data[row..row + w]);
                    } else {
                        buf.extend((0..w).map(|j| b.data[row + j * b.cs]));
                    }
                }
                (buf.as_ptr(), w)
            } else {
                // SAFETY: j0 < n and b.cs == 1, so the offset lies within b's first row.
                (unsafe { b.data.as_ptr().add(j0) }, b.rs)
            };
            // SAFETY: AVX-512F was detected (`Isa::clamp`); check_gemm bounded every row < m, column < n and depth < k
            // of a, b (contiguous rows of stride b.rs, or the panel copy: k rows of w) and c.
            unsafe {
                let c0 = cp.add(j0);
                match nv {
                    4 => panel::<6, 4>(m, k, ap, a.rs, a.cs, bp, ldp, c0, ldc, beta),
                    3 => panel::<8, 3>(m, k, ap, a.rs, a.cs, bp, ldp, c0, ldc, beta),
                    2 => panel::<12, 2>(m, k, ap, a.rs, a.cs, bp, ldp, c0, ldc, beta),
                    _ => panel::<16, 1>(m, k, ap, a.rs, a.cs, bp, ldp, c0, ldc, beta),
                }
            }
        });
        j0 += w;
    }
}

/// One column panel `16*NV` wide: full `MR`-row tiles, then single rows.
///
/// # Safety
/// As for [`avx512::tile`], for all `m` rows.
#[cfg(target_arch = "x86_64")]
unsafe fn panel<const MR: usize, const NV: usize>(
    m: usize,
    k: usize,
    a: *const f32,
    a_rs: usize,
    a_cs: usize,
    b: *const f32,
    ldb: usize,
    c: *mut f32,
    ldc: usize,
    beta: f32,
) {
    let full = m / MR * MR;
    // SAFETY: forwarded from the caller.
    unsafe {
        for i in (0..full).step_by(MR) {
            avx512::tile::<MR, NV>(k, a.add(i * a_rs), a_rs, a_cs, b, ldb, c.add(i * ldc), ldc, beta);
        }
        for i in full..m {
            avx512::tile::<1, NV>(k, a.add(i * a_rs), a_rs, a_cs, b, ldb, c.add(i * ldc), ldc, beta);
        }
    }
}

/// [`HostGemm`] with the rows of large products split over rayon's threads (one product at a time is
/// all a nowcast has, unlike the trainer, which parallelises across examples).
#[derive(Clone, Copy, Debug, Default)]
pub struct ThreadedGemm;

/// Multiply-adds below which a product stays on one thread (a split costs a few microseconds).
const THREADED_MIN_WORK: usize = 1 << 20;

impl Gemm for ThreadedGemm {
    fn gemm(&self, a: MatRef<'_>, b: MatRef<'_>, c: &mut [f32], ldc: usize, beta: f32) -> Result<(), nino_core::Error> {
        let (m, k, n) = (a.rows, a.cols, b.cols);
        let parts = rayon::current_num_threads().min(m / 64).max(1);
        if m * k * n < THREADED_MIN_WORK || parts == 1 {
            return HostGemm.gemm(a, b, c, ldc, beta);
        }
        check_gemm(&a, &b, c, ldc)?;
        split_rows(a, b, c, ldc, beta, parts)
    }
}

/// Runs `parts` row blocks of the product on rayon's pool, halving recursively.
fn split_rows(
    a: MatRef<'_>,
    b: MatRef<'_>,
    c: &mut [f32],
    ldc: usize,
    beta: f32,
    parts: usize,
) -> Result<(), nino_core::Error> {
    if parts <= 1 {
        return HostGemm.gemm(a, b, c, ldc, beta);
    }
    let mid = a.rows * (parts / 2) / parts;
    let (c0, c1) = c.split_at_mut(mid * ldc);
    let a0 = MatRef { rows: mid, ..a };
    let a1 = MatRef { data: &a.data[mid * a.rs..], rows: a.rows - mid, ..a };
    let (r0, r1) = rayon::join(
        || split_rows(a0, b, c0, ldc, beta, parts / 2),
        || split_rows(a1, b, c1, ldc, beta, parts - parts / 2),
    );
    r0.and(r1)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use nino_core::ops::gemm::Portable;

    /// `max |x - y|`, NaN when any difference is NaN (`f32::max` would drop it and let a NaN output pass).
    pub(crate) fn max_diff(x: &[f32], y: &[f32]) -> f32 {
        assert_eq!(x.len(), y.len());
        x.iter()
            .zip(y)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, |m, d| if m.is_nan() || d.is_nan() { f32::NAN } else { m.max(d) })
    }

    #[test]
    fn agrees_with_portable_on_strided_operands() {
        // Every level this CPU runs, forced one by one: the `gemm`-crate fallback takes the widths that are
        // multiples of 16 too, which an AVX-512 machine would otherwise never send it.
        for isa in Isa::runnable() {
            eprintln!("gemm at {isa:?}");
            agrees_at(IsaGemm(isa));
        }
        // And the dispatching HostGemm (one of the above).
        agrees_at(HostGemm);
    }

    fn agrees_at(g: impl Gemm) {
        // Widths off and on the AVX-512 path (multiples of 16, with 64-wide panels and row tails).
        for (m, k, n) in [(37, 29, 33), (37, 29, 32), (53, 7, 80), (13, 31, 288), (25, 3, 48), (5, 9, 16)] {
            let a: Vec<f32> = (0..m * k).map(|i| ((i * 7 % 13) as f32 - 6.0) / 7.0).collect();
            let b: Vec<f32> = (0..k * n).map(|i| ((i * 5 % 11) as f32 - 5.0) / 5.0).collect();
            for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                let av = if ta { MatRef::transposed(&a, k, m) } else { MatRef::row_major(&a, m, k) };
                let bv = if tb { MatRef::transposed(&b, n, k) } else { MatRef::row_major(&b, k, n) };
                for beta in [0.0, 1.0, 0.5] {
                    let mut c1: Vec<f32> = (0..m * (n + 3)).map(|i| (i % 5) as f32).collect();
                    let mut c2 = c1.clone();
                    Portable.gemm(av, bv, &mut c1, n + 3, beta).unwrap();
                    g.gemm(av, bv, &mut c2, n + 3, beta).unwrap();
                    // Sums of 29 products of magnitude <= 1 in a different order: 1e-4 is ample.
                    let d = max_diff(&c1, &c2);
                    assert!(d < 1e-4, "{m}x{k}x{n} ta {ta} tb {tb} beta {beta}: {d}");
                }
            }
        }
    }

    #[test]
    fn threaded_gemm_agrees_with_portable() {
        use nino_core::ops::Portable;
        let (m, k, n) = (1037, 128, 272);
        let a: Vec<f32> = (0..m * k).map(|i| ((i * 7 % 13) as f32 - 6.0) / 7.0).collect();
        let b: Vec<f32> = (0..k * n).map(|i| ((i * 5 % 11) as f32 - 5.0) / 5.0).collect();
        for beta in [0.0, 1.0] {
            let mut c1: Vec<f32> = (0..m * n).map(|i| (i % 5) as f32).collect();
            let mut c2 = c1.clone();
            Portable.gemm(MatRef::row_major(&a, m, k), MatRef::transposed(&b, n, k), &mut c1, n, beta).unwrap();
            ThreadedGemm.gemm(MatRef::row_major(&a, m, k), MatRef::transposed(&b, n, k), &mut c2, n, beta).unwrap();
            // Sums of 128 products of magnitude <= 1 in another order: 1e-3 is ample, a wrong row is not.
            let d = max_diff(&c1, &c2);
            assert!(d < 1e-3, "beta {beta}: {d}");
        }
    }
}
