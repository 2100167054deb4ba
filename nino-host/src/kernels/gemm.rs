//! A fast host matrix multiply behind the core `Gemm` trait.
//!
//! Products whose output width is a multiple of 16 (every conv GEMM of the reference nets) run on an
//! AVX-512 register-tile kernel with no packing of the tall operand; the rest go to the `gemm` crate.
//! [`IsaGemm`] forces a level ([`Isa`]); `NINO_KERNELS=avx2` or `portable` sends everything to the `gemm` crate.

use super::Isa;
use nino_core::Error;
use nino_core::ops::gemm::{Gemm, MatRef, check_gemm, round_bf16};

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
            store(&acc, c, ldc, beta, 0xFFFF);
        }
    }

    /// `c[MR x 16*NV] = beta*c + acc`, the last vector's lanes limited by `mask` (the tiles' common end).
    ///
    /// # Safety
    /// AVX-512F must be available; the masked `c[r*ldc + ..]` for `r < MR` must be in bounds.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn store<const MR: usize, const NV: usize>(
        acc: &[[__m512; NV]; MR],
        c: *mut f32,
        ldc: usize,
        beta: f32,
        mask: __mmask16,
    ) {
        let bb = _mm512_set1_ps(beta);
        for r in 0..MR {
            for j in 0..NV {
                let m = if j + 1 == NV { mask } else { 0xFFFF };
                // SAFETY: the caller's contract.
                unsafe {
                    let cp = c.add(r * ldc + 16 * j);
                    let v = if beta == 0.0 {
                        acc[r][j]
                    } else if beta == 1.0 {
                        _mm512_add_ps(_mm512_maskz_loadu_ps(m, cp), acc[r][j])
                    } else {
                        _mm512_fmadd_ps(bb, _mm512_maskz_loadu_ps(m, cp), acc[r][j])
                    };
                    _mm512_mask_storeu_ps(cp, m, v);
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

/// Products with bfloat16 operands and f32 sums, the function [`nino_core::ops::PortableBf16`] defines:
/// AVX-512 BF16 dot products where the CPU has them and the level allows AVX-512 (two multiply-adds per
/// lane and instruction, twice f32's), otherwise the operands rounded into buffers and multiplied by
/// [`IsaGemm`] at the same level. For mixed-precision meta-training (`nino meta-train --precision bf16`).
#[derive(Clone, Copy, Debug)]
pub struct Bf16Gemm(pub Isa);

impl Bf16Gemm {
    /// The level [`Isa::selected`] picks.
    pub fn host() -> Bf16Gemm {
        Bf16Gemm(Isa::selected())
    }

    /// Whether this level runs the bf16 dot-product kernels on this CPU (else the rounded copies).
    pub fn native(&self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            static BF16: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
            let cpu = *BF16.get_or_init(|| {
                use std::arch::is_x86_feature_detected as has;
                has!("avx512bf16") && has!("avx512bw") && has!("avx512vl")
            });
            cpu && self.0.clamp() == Isa::Avx512
        }
        #[cfg(not(target_arch = "x86_64"))]
        false
    }
}

impl Gemm for Bf16Gemm {
    fn gemm(&self, a: MatRef<'_>, b: MatRef<'_>, c: &mut [f32], ldc: usize, beta: f32) -> Result<(), Error> {
        check_gemm(&a, &b, c, ldc)?;
        let (m, k, n) = (a.rows, a.cols, b.cols);
        if m == 0 || n == 0 || k == 0 {
            return IsaGemm(self.0).gemm(a, b, c, ldc, beta);
        }
        #[cfg(target_arch = "x86_64")]
        if self.native() {
            bf16::gemm(a, b, c, ldc, beta);
            return Ok(());
        }
        ROUNDED.with(|cell| {
            let (ra, rb) = &mut *cell.borrow_mut();
            ra.clear();
            ra.extend((0..m * k).map(|i| round_bf16(a.data[i / k * a.rs + i % k * a.cs])));
            rb.clear();
            rb.extend((0..k * n).map(|i| round_bf16(b.data[i / n * b.rs + i % n * b.cs])));
            IsaGemm(self.0).gemm(MatRef::row_major(ra, m, k), MatRef::row_major(rb, k, n), c, ldc, beta)
        })
    }
}

/// [`Bf16Gemm`] at the level [`Isa::selected`] picks, as a value a `static` can hold.
#[derive(Clone, Copy, Debug, Default)]
pub struct HostBf16Gemm;

impl Gemm for HostBf16Gemm {
    fn gemm(&self, a: MatRef<'_>, b: MatRef<'_>, c: &mut [f32], ldc: usize, beta: f32) -> Result<(), Error> {
        Bf16Gemm::host().gemm(a, b, c, ldc, beta)
    }
}

thread_local! {
    /// [`Bf16Gemm`]'s operands rounded to bf16, when the CPU has no bf16 dot product.
    static ROUNDED: std::cell::RefCell<(Vec<f32>, Vec<f32>)> = const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

/// The AVX-512 BF16 path of [`Bf16Gemm`]: both operands packed as pairs of bf16 along the inner dimension
/// (one `u32` holds `x[2q]` in its low half and `x[2q + 1]` in its high half, a zero pads an odd `k`), then
/// register tiles of `vdpbf16ps`, which adds both products of a pair to an f32 lane.
#[cfg(target_arch = "x86_64")]
mod bf16 {
    use nino_core::ops::MatRef;
    use std::arch::x86_64::*;

    thread_local! {
        /// The left operand's pairs and one column panel of the right operand's.
        static PACKED: std::cell::RefCell<(Vec<u32>, Vec<u32>)> = const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
    }

    /// The bf16 bits of `x`, rounded to nearest even (the scalar packing's; the vector one converts with
    /// `vcvtneps2bf16`, which also flushes subnormals to zero).
    fn bits(x: f32) -> u32 {
        u32::from(half::bf16::from_f32(x).to_bits())
    }

    /// Pair `q` of a length-`k` vector read by `at`, packed as bits (`at(2q)` low, `at(2q + 1)` high, zero
    /// past the end): the scalar packings' one rule.
    fn pair(k: usize, q: usize, at: impl Fn(usize) -> f32) -> u32 {
        let half = |p: usize| if p < k { bits(at(p)) } else { 0 };
        half(2 * q) | half(2 * q + 1) << 16
    }

    /// 16 floats from `p` (the first `mask` lanes; zeros when `p` is `None`) as bf16 in the low halves of 16 `u32`s.
    ///
    /// # Safety
    /// AVX-512 BF16 must be available and the masked lanes of `p` in bounds.
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    unsafe fn low_halves(p: Option<*const f32>, mask: __mmask16) -> __m512i {
        // SAFETY: the caller's contract.
        unsafe {
            let v = match p {
                Some(p) => _mm512_maskz_loadu_ps(mask, p),
                None => _mm512_setzero_ps(),
            };
            _mm512_cvtepu16_epi32(std::mem::transmute::<__m256bh, __m256i>(_mm512_cvtneps_pbh(v)))
        }
    }

    /// Pairs `(x[lo + i], x[hi + i])` for `i < 16` (the first `mask` of them), `hi` absent past an odd end.
    ///
    /// # Safety
    /// As for [`low_halves`].
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    unsafe fn pairs(lo: *const f32, hi: Option<*const f32>, mask: __mmask16) -> __m512i {
        // SAFETY: the caller's contract.
        unsafe { _mm512_or_si512(low_halves(Some(lo), mask), _mm512_slli_epi32::<16>(low_halves(hi, mask))) }
    }

    /// Makes `v` at least `len` long without touching what it holds.
    fn grow(v: &mut Vec<u32>, len: usize) {
        if v.len() < len {
            v.resize(len, 0);
        }
    }

    fn tail_mask(left: usize) -> __mmask16 {
        if left >= 16 { 0xFFFF } else { (1u16 << left) - 1 }
    }

    /// Packs `x` (`rows x k`) as pairs along `k`; returns the pairs' strides `(row, pair)` in `u32`s.
    ///
    /// # Safety
    /// AVX-512 BF16 must be available; `x`'s view lies inside its slice (checked by `check_gemm`).
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
    unsafe fn pack_rows(x: MatRef<'_>, out: &mut Vec<u32>) -> (usize, usize) {
        let (m, k, k2) = (x.rows, x.cols, x.cols.div_ceil(2));
        let d = x.data.as_ptr();
        // Every arm writes all `m * k2` pairs, so the buffer only grows (zeroing it each call costs a pass).
        grow(out, m * k2);
        // SAFETY (both vector arms): every masked lane reads x[i, p] with i < m and p < k.
        unsafe {
            if x.rs == 1 && x.cs != 1 {
                // Columns contiguous: 16 rows of one pair per store, laid out pair-major.
                for q in 0..k2 {
                    for i in (0..m).step_by(16) {
                        let mask = tail_mask(m - i);
                        let lo = d.add(2 * q * x.cs + i);
                        let hi = (2 * q + 1 < k).then(|| d.add((2 * q + 1) * x.cs + i));
                        _mm512_mask_storeu_epi32(out.as_mut_ptr().add(q * m + i).cast(), mask, pairs(lo, hi, mask));
                    }
                }
                return (1, m);
            }
            if x.cs == 1 {
                // Rows contiguous: 16 values of a row (8 pairs) per conversion, laid out row-major.
                for i in 0..m {
                    let row = d.add(i * x.rs);
                    for p in (0..k).step_by(16) {
                        let v = _mm512_maskz_loadu_ps(tail_mask(k - p), row.add(p));
                        let h = std::mem::transmute::<__m256bh, __m256i>(_mm512_cvtneps_pbh(v));
                        let dst = out.as_mut_ptr().add(i * k2 + p / 2);
                        let n = (k - p).min(16).div_ceil(2);
                        _mm256_mask_storeu_epi32(dst.cast(), if n >= 8 { 0xFF } else { (1u8 << n) - 1 }, h);
                    }
                }
                return (k2, 1);
            }
        }
        for i in 0..m {
            for q in 0..k2 {
                out[i * k2 + q] = pair(k, q, |p| x.data[i * x.rs + p * x.cs]);
            }
        }
        (k2, 1)
    }

    /// Packs columns `j0..j0 + w` of `b` (`k x n`) as `[k2][w16]` pairs, `w16` the width rounded up to 16
    /// (columns past `w` feed only output lanes the tiles' masked stores drop).
    ///
    /// # Safety
    /// As for [`pack_rows`].
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    unsafe fn pack_panel(b: MatRef<'_>, j0: usize, w: usize, out: &mut Vec<u32>) -> usize {
        let (k, k2, w16) = (b.rows, b.rows.div_ceil(2), w.div_ceil(16) * 16);
        grow(out, k2 * w16);
        if b.cs == 1 {
            let d = b.data.as_ptr();
            // SAFETY: every masked lane reads b[p, j0 + j] with p < k and j < w.
            unsafe {
                for q in 0..k2 {
                    for j in (0..w).step_by(16) {
                        let mask = tail_mask(w - j);
                        let lo = d.add(2 * q * b.rs + j0 + j);
                        let hi = (2 * q + 1 < k).then(|| d.add((2 * q + 1) * b.rs + j0 + j));
                        _mm512_storeu_si512(out.as_mut_ptr().add(q * w16 + j).cast(), pairs(lo, hi, mask));
                    }
                }
            }
        } else if b.rs == 1 {
            // Columns contiguous: 16 values of a column (8 pairs) per conversion, stored one pair per row.
            let d = b.data.as_ptr();
            let mut pairs = [0u32; 8];
            for j in 0..w {
                // SAFETY: every masked lane reads b[p, j0 + j] with p < k.
                unsafe {
                    let col = d.add((j0 + j) * b.cs);
                    for p in (0..k).step_by(16) {
                        let v = _mm512_maskz_loadu_ps(tail_mask(k - p), col.add(p));
                        let h = std::mem::transmute::<__m256bh, __m256i>(_mm512_cvtneps_pbh(v));
                        _mm256_storeu_si256(pairs.as_mut_ptr().cast(), h);
                        for (t, &pair) in pairs.iter().enumerate().take((k - p).min(16).div_ceil(2)) {
                            out[(p / 2 + t) * w16 + j] = pair;
                        }
                    }
                }
            }
        } else {
            for q in 0..k2 {
                for j in 0..w {
                    out[q * w16 + j] = pair(k, q, |p| b.data[p * b.rs + (j0 + j) * b.cs]);
                }
            }
        }
        w16
    }

    /// `c[MR x 16*NV] = beta*c + a b` over `k2` pairs, the last vector's columns limited by `mask`.
    ///
    /// # Safety
    /// AVX-512 BF16 must be available; `a[r*a_rs + p*a_cs]` and `b[p*ldb + 0..16*NV]` for `r < MR`,
    /// `p < k2` and the masked `c[r*ldc + ..]` must be in bounds.
    #[target_feature(enable = "avx512f,avx512bf16")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn tile<const MR: usize, const NV: usize>(
        k2: usize,
        a: *const u32,
        a_rs: usize,
        a_cs: usize,
        b: *const u32,
        ldb: usize,
        c: *mut f32,
        ldc: usize,
        beta: f32,
        mask: __mmask16,
    ) {
        let mut acc = [[_mm512_setzero_ps(); NV]; MR];
        // SAFETY (whole body): bounds are the caller's contract; the transmutes reinterpret 512 bits.
        unsafe {
            for p in 0..k2 {
                let bp = b.add(p * ldb);
                let mut bv = [std::mem::transmute::<__m512i, __m512bh>(_mm512_setzero_si512()); NV];
                for j in 0..NV {
                    bv[j] = std::mem::transmute::<__m512i, __m512bh>(_mm512_loadu_si512(bp.add(16 * j).cast()));
                }
                let ap = a.add(p * a_cs);
                for r in 0..MR {
                    let av = std::mem::transmute::<__m512i, __m512bh>(_mm512_set1_epi32(*ap.add(r * a_rs) as i32));
                    for j in 0..NV {
                        acc[r][j] = _mm512_dpbf16_ps(acc[r][j], av, bv[j]);
                    }
                }
            }
            super::avx512::store(&acc, c, ldc, beta, mask);
        }
    }

    /// One column panel: full `MR`-row tiles, then single rows.
    ///
    /// # Safety
    /// As for [`tile`], for all `m` rows.
    #[target_feature(enable = "avx512f,avx512bf16")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn panel<const MR: usize, const NV: usize>(
        m: usize,
        k2: usize,
        a: (*const u32, usize, usize),
        b: *const u32,
        ldb: usize,
        c: *mut f32,
        ldc: usize,
        beta: f32,
        mask: __mmask16,
    ) {
        let (ap, rs, cs) = a;
        let full = m / MR * MR;
        // SAFETY: forwarded from the caller.
        unsafe {
            for i in (0..full).step_by(MR) {
                tile::<MR, NV>(k2, ap.add(i * rs), rs, cs, b, ldb, c.add(i * ldc), ldc, beta, mask);
            }
            for i in full..m {
                tile::<1, NV>(k2, ap.add(i * rs), rs, cs, b, ldb, c.add(i * ldc), ldc, beta, mask);
            }
        }
    }

    /// `c = beta*c + a b` with bf16 operands; shapes checked, `m, n, k > 0`, AVX-512 BF16 detected.
    pub(super) fn gemm(a: MatRef<'_>, b: MatRef<'_>, c: &mut [f32], ldc: usize, beta: f32) {
        let (m, n) = (a.rows, b.cols);
        let k2 = a.cols.div_ceil(2);
        PACKED.with(|cell| {
            let (pa, pb) = &mut *cell.borrow_mut();
            // SAFETY: AVX-512 BF16 was detected (`Bf16Gemm::native`); check_gemm bounded both views and
            // every row < m, column < n of c.
            unsafe {
                let (rs, cs) = pack_rows(a, pa);
                let mut j0 = 0;
                while j0 < n {
                    let w = (n - j0).min(64);
                    let ldb = pack_panel(b, j0, w, pb);
                    let mask = tail_mask(w - (w - 1) / 16 * 16);
                    let (ap, bp, c0) = ((pa.as_ptr(), rs, cs), pb.as_ptr(), c.as_mut_ptr().add(j0));
                    match w.div_ceil(16) {
                        4 => panel::<6, 4>(m, k2, ap, bp, ldb, c0, ldc, beta, mask),
                        3 => panel::<8, 3>(m, k2, ap, bp, ldb, c0, ldc, beta, mask),
                        2 => panel::<12, 2>(m, k2, ap, bp, ldb, c0, ldc, beta, mask),
                        _ => panel::<16, 1>(m, k2, ap, bp, ldb, c0, ldc, beta, mask),
                    }
                    j0 += w;
                }
            }
        });
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
    fn bf16_products_agree_with_the_cores_definition() {
        use nino_core::ops::PortableBf16;
        // Native where the CPU has AVX-512 BF16, and the rounded-copies fallback at every level below.
        let mut gemms: Vec<Bf16Gemm> = Isa::runnable().into_iter().map(Bf16Gemm).collect();
        gemms.retain(|g| g.0 < Isa::Avx512 || g.native());
        eprintln!("bf16 gemm at {:?}, native: {:?}", gemms, gemms.iter().map(|g| g.native()).collect::<Vec<_>>());
        for g in gemms {
            // Odd and even depths, widths on and off 16, panels of 64 with a masked last vector, row tails.
            for (m, k, n) in
                [(37, 29, 33), (37, 30, 32), (53, 7, 80), (13, 31, 288), (25, 1, 48), (5, 9, 5), (70, 130, 360)]
            {
                let a: Vec<f32> = (0..m * k).map(|i| ((i * 7 % 13) as f32 - 6.0) / 7.3).collect();
                let b: Vec<f32> = (0..k * n).map(|i| ((i * 5 % 11) as f32 - 5.0) / 5.3).collect();
                for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                    let av = if ta { MatRef::transposed(&a, k, m) } else { MatRef::row_major(&a, m, k) };
                    let bv = if tb { MatRef::transposed(&b, n, k) } else { MatRef::row_major(&b, k, n) };
                    for beta in [0.0, 1.0, 0.5] {
                        let mut want: Vec<f32> = (0..m * (n + 3)).map(|i| (i % 5) as f32).collect();
                        let (mut got, mut full) = (want.clone(), want.clone());
                        PortableBf16.gemm(av, bv, &mut want, n + 3, beta).unwrap();
                        g.gemm(av, bv, &mut got, n + 3, beta).unwrap();
                        Portable.gemm(av, bv, &mut full, n + 3, beta).unwrap();
                        // The same exact products summed in another order: 1e-4 on sums of <= 130 terms
                        // below 1. Rounding the operands moves the result by far more (the f32 product
                        // differs by more than 1e-3), so an f32 kernel would not pass.
                        let (d, f) = (max_diff(&want, &got), max_diff(&want, &full));
                        assert!(d < 1e-4, "{g:?} {m}x{k}x{n} ta {ta} tb {tb} beta {beta}: {d}");
                        assert!(f > 1e-3, "{m}x{k}x{n}: bf16 and f32 products agree to {f}");
                        // Columns past n (the row stride's padding) are untouched.
                        assert!(
                            (0..m).all(|i| (n..n + 3).all(|j| got[i * (n + 3) + j] == ((i * (n + 3) + j) % 5) as f32))
                        );
                    }
                }
                // Neither stride 1 (every other value of a wider matrix): the scalar packing.
                let wide = |v: &[f32]| -> Vec<f32> { v.iter().flat_map(|&x| [x, 7.0]).collect() };
                let (a2, b2) = (wide(&a), wide(&b));
                let av = MatRef { data: &a2, rows: m, cols: k, rs: 2 * k, cs: 2 };
                let bv = MatRef { data: &b2, rows: k, cols: n, rs: 2 * n, cs: 2 };
                let (mut want, mut got) = (vec![0.0; m * n], vec![0.0; m * n]);
                PortableBf16.gemm(av, bv, &mut want, n, 0.0).unwrap();
                g.gemm(av, bv, &mut got, n, 0.0).unwrap();
                assert!(max_diff(&want, &got) < 1e-4, "{g:?} {m}x{k}x{n} strided");
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
