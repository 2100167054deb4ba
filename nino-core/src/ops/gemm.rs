//! Matrix multiply: the one primitive every heavy op reduces to, behind a trait so hosts can plug in
//! a faster (vectorised, multi-threaded) implementation while the math stays defined here.

use crate::error::Error;

/// A strided, read-only matrix operand: element `(r, c)` is `data[r * rs + c * cs]`.
#[derive(Clone, Copy, Debug)]
pub struct MatRef<'a> {
    /// Backing values.
    pub data: &'a [f32],
    /// Rows.
    pub rows: usize,
    /// Columns.
    pub cols: usize,
    /// Row stride.
    pub rs: usize,
    /// Column stride.
    pub cs: usize,
}

impl<'a> MatRef<'a> {
    /// A row-major `rows x cols` matrix.
    pub const fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Self {
        MatRef { data, rows, cols, rs: cols, cs: 1 }
    }

    /// The transpose of a row-major `rows x cols` matrix (so `cols x rows`), without copying.
    pub const fn transposed(data: &'a [f32], rows: usize, cols: usize) -> Self {
        MatRef { data, rows: cols, cols: rows, rs: 1, cs: cols }
    }

    /// Index one past the last element this view touches (0 for an empty view).
    pub const fn extent(&self) -> usize {
        if self.rows == 0 || self.cols == 0 { 0 } else { (self.rows - 1) * self.rs + (self.cols - 1) * self.cs + 1 }
    }
}

/// Checks that `c = beta*c + a*b` is well formed for a row-major `c` with row stride `ldc`.
pub fn check_gemm(a: &MatRef<'_>, b: &MatRef<'_>, c: &[f32], ldc: usize) -> Result<(), Error> {
    if a.cols != b.rows {
        return Err(Error::InvalidArgument("gemm: inner dimensions differ"));
    }
    if a.extent() > a.data.len() || b.extent() > b.data.len() {
        return Err(Error::InvalidArgument("gemm: operand view exceeds its slice"));
    }
    let need = if a.rows == 0 || b.cols == 0 { 0 } else { (a.rows - 1) * ldc + b.cols };
    if ldc < b.cols || need > c.len() {
        return Err(Error::InvalidArgument("gemm: output too small"));
    }
    Ok(())
}

/// `c[m x n] (row stride ldc) = beta * c + a[m x k] * b[k x n]`.
pub trait Gemm: Sync {
    /// Computes the product; errors if the shapes or slices do not fit (see [`check_gemm`]).
    fn gemm(&self, a: MatRef<'_>, b: MatRef<'_>, c: &mut [f32], ldc: usize, beta: f32) -> Result<(), Error>;
}

/// The reference implementation: portable, single-threaded, auto-vectorised loops.
#[derive(Clone, Copy, Debug, Default)]
pub struct Portable;

impl Gemm for Portable {
    fn gemm(&self, a: MatRef<'_>, b: MatRef<'_>, c: &mut [f32], ldc: usize, beta: f32) -> Result<(), Error> {
        portable(a, b, c, ldc, beta, |x| x)
    }
}

/// `x` rounded to the nearest bfloat16 (ties to even) and widened back: 8 significant bits in f32's range,
/// the precision of a product's operands in mixed-precision meta-training. NaN stays NaN.
pub fn round_bf16(x: f32) -> f32 {
    half::bf16::from_f32(x).to_f32()
}

/// The products of mixed-precision meta-training, defined: both operands rounded by [`round_bf16`], the
/// products and their sums in f32 (what a bf16 dot-product instruction or a GPU's bf16 autocast does).
/// Half the memory traffic and, on CPUs with bf16 dot products, twice the multiply-adds of f32; a host's
/// kernel is tested against this one.
#[derive(Clone, Copy, Debug, Default)]
pub struct PortableBf16;

impl Gemm for PortableBf16 {
    fn gemm(&self, a: MatRef<'_>, b: MatRef<'_>, c: &mut [f32], ldc: usize, beta: f32) -> Result<(), Error> {
        portable(a, b, c, ldc, beta, round_bf16)
    }
}

/// [`Portable`]'s loops, each operand element passed through `r` as it is read.
fn portable(
    a: MatRef<'_>,
    b: MatRef<'_>,
    c: &mut [f32],
    ldc: usize,
    beta: f32,
    r: impl Fn(f32) -> f32,
) -> Result<(), Error> {
    check_gemm(&a, &b, c, ldc)?;
    let (m, k, n) = (a.rows, a.cols, b.cols);
    for i in 0..m {
        let row = &mut c[i * ldc..i * ldc + n];
        if beta == 0.0 {
            row.fill(0.0);
        } else if beta != 1.0 {
            row.iter_mut().for_each(|v| *v *= beta);
        }
        if b.cs == 1 {
            for p in 0..k {
                let aip = r(a.data[i * a.rs + p * a.cs]);
                if aip == 0.0 {
                    continue;
                }
                let brow = &b.data[p * b.rs..p * b.rs + n];
                for (cv, bv) in row.iter_mut().zip(brow) {
                    *cv += aip * r(*bv);
                }
            }
        } else {
            for (j, cv) in row.iter_mut().enumerate() {
                let mut acc = 0.0f32;
                for p in 0..k {
                    acc += r(a.data[i * a.rs + p * a.cs]) * r(b.data[p * b.rs + j * b.cs]);
                }
                *cv += acc;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_products_with_transposes() {
        let a = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]; // 2x3
        let b = [7.0, 8.0, 9.0, 10.0, 11.0, 12.0]; // 3x2
        let mut c = [0.0; 4];
        Portable.gemm(MatRef::row_major(&a, 2, 3), MatRef::row_major(&b, 3, 2), &mut c, 2, 0.0).unwrap();
        assert_eq!(c, [58.0, 64.0, 139.0, 154.0]);
        // (b^T stored as 2x3) transposed back gives b again.
        let bt = [7.0, 9.0, 11.0, 8.0, 10.0, 12.0];
        let mut c2 = [1.0; 4];
        Portable.gemm(MatRef::row_major(&a, 2, 3), MatRef::transposed(&bt, 2, 3), &mut c2, 2, 1.0).unwrap();
        assert_eq!(c2, [59.0, 65.0, 140.0, 155.0]);
        assert!(Portable.gemm(MatRef::row_major(&a, 2, 3), MatRef::row_major(&b, 2, 3), &mut c, 2, 0.0).is_err());
    }

    #[test]
    fn bf16_products_round_their_operands_to_eight_bits() {
        // 1 + 2^-8 is halfway between bf16 neighbours 1 and 1 + 2^-7: ties go to the even one, 1.
        assert_eq!(round_bf16(1.0 + 1.0 / 256.0), 1.0);
        assert_eq!(round_bf16(1.0 + 3.0 / 256.0), 1.0 + 4.0 / 256.0);
        assert_eq!(round_bf16(-3.0), -3.0);
        assert!(round_bf16(f32::NAN).is_nan() && round_bf16(f32::INFINITY) == f32::INFINITY);
        // (1 + 2^-8)(1 + 3 * 2^-8) in bf16 operands is 1 * (1 + 2^-6); beta keeps half of c.
        let (a, b) = ([1.0 + 1.0 / 256.0, 2.0], [1.0 + 3.0 / 256.0, 0.5]);
        for (ta, tb) in [(false, false), (true, true)] {
            let av = if ta { MatRef::transposed(&a, 2, 1) } else { MatRef::row_major(&a, 1, 2) };
            let bv = if tb { MatRef::transposed(&b, 1, 2) } else { MatRef::row_major(&b, 2, 1) };
            let mut c = [4.0];
            PortableBf16.gemm(av, bv, &mut c, 1, 0.5).unwrap();
            assert_eq!(c, [2.0 + 1.0 + 1.0 / 64.0 + 1.0], "ta {ta} tb {tb}");
        }
    }
}
