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
                    let aip = a.data[i * a.rs + p * a.cs];
                    if aip == 0.0 {
                        continue;
                    }
                    let brow = &b.data[p * b.rs..p * b.rs + n];
                    for (cv, bv) in row.iter_mut().zip(brow) {
                        *cv += aip * bv;
                    }
                }
            } else {
                for (j, cv) in row.iter_mut().enumerate() {
                    let mut acc = 0.0f32;
                    for p in 0..k {
                        acc += a.data[i * a.rs + p * a.cs] * b.data[p * b.rs + j * b.cs];
                    }
                    *cv += acc;
                }
            }
        }
        Ok(())
    }
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
}
