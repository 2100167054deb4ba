//! The one dense spectral solver of nino (docs/spec.md §2.8 and 9.2), in f64 with nalgebra.
//!
//! Not part of `nino-core`'s module tree: `nino-core/build.rs` includes it to bake the tables of the
//! built-in architectures, and `nino-host/src/spectral.rs` includes it for any other architecture, so the
//! math is written once and both sides produce the same numbers. It depends only on `std` and `nalgebra`.

use nalgebra::{DMatrix, SymmetricEigen};

/// Relative tolerance under which two entries of a column count as equally large for the sign rule, so the
/// rule does not hinge on the last bits of a solver's rounding.
pub const SIGN_TIE_TOL: f64 = 1e-9;

/// Undirected, unweighted adjacency without self-loops of `n` nodes: an edge in either direction sets both
/// `A[u][v]` and `A[v][u]` to 1. Edges that reach past `n` are ignored.
pub fn adjacency(n: usize, edges: impl IntoIterator<Item = (usize, usize)>) -> DMatrix<f64> {
    let mut a = DMatrix::<f64>::zeros(n, n);
    for (u, v) in edges {
        if u != v && u < n && v < n {
            a[(u, v)] = 1.0;
            a[(v, u)] = 1.0;
        }
    }
    a
}

/// Symmetric normalised Laplacian `L = I - D^-1/2 A D^-1/2`; an isolated node gets `D^-1/2 = 0`.
pub fn normalized_laplacian(a: &DMatrix<f64>) -> DMatrix<f64> {
    let n = a.nrows();
    let inv_sqrt: Vec<f64> = (0..n)
        .map(|i| {
            let d: f64 = a.row(i).iter().sum();
            if d > 0.0 { 1.0 / d.sqrt() } else { 0.0 }
        })
        .collect();
    DMatrix::from_fn(n, n, |i, j| {
        let id = if i == j { 1.0 } else { 0.0 };
        id - inv_sqrt[i] * a[(i, j)] * inv_sqrt[j]
    })
}

/// Flips `v` so that its largest-magnitude entry is positive; among entries within [`SIGN_TIE_TOL`]
/// (relative) of the largest magnitude, the first index decides.
pub fn canonical_sign(v: &mut [f64]) {
    let m = v.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    if m == 0.0 {
        return;
    }
    let lead = v.iter().position(|x| x.abs() >= m * (1.0 - SIGN_TIE_TOL)).unwrap_or(0);
    if v[lead] < 0.0 {
        v.iter_mut().for_each(|x| *x = -*x);
    }
}

/// All eigenpairs of a symmetric matrix, ascending.
pub struct Eigen {
    /// Eigenvalues, ascending; exact ties keep the solver's order (stable sort).
    pub values: Vec<f64>,
    /// Unit eigenvectors as columns, in the order of `values`, each with the canonical sign.
    pub vectors: DMatrix<f64>,
}

/// Dense symmetric eigendecomposition, sorted ascending (stable), each column with the canonical sign.
pub fn sorted_eigen(m: DMatrix<f64>) -> Eigen {
    let n = m.nrows();
    let eig = SymmetricEigen::new(m);
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&i, &j| eig.eigenvalues[i].total_cmp(&eig.eigenvalues[j]));
    let values = order.iter().map(|&i| eig.eigenvalues[i]).collect();
    let mut vectors = DMatrix::<f64>::zeros(n, n);
    for (c, &i) in order.iter().enumerate() {
        let mut col: Vec<f64> = eig.eigenvectors.column(i).iter().copied().collect();
        canonical_sign(&mut col);
        vectors.column_mut(c).copy_from_slice(&col);
    }
    Eigen { values, vectors }
}

/// The full spectrum of the normalised Laplacian of the graph with adjacency `a`.
pub fn laplacian_eigen(a: &DMatrix<f64>) -> Eigen {
    sorted_eigen(normalized_laplacian(a))
}

/// Row-major `[N, k]` LPE: eigenvector columns 1..=k of a sorted Laplacian decomposition (column 0, the
/// eigenvalue-0 vector, is dropped). `None` when `k > N - 1`.
pub fn lpe_from(eig: &Eigen, k: usize) -> Option<Vec<f64>> {
    let n = eig.vectors.nrows();
    if k + 1 > n {
        return None;
    }
    let mut out = vec![0.0; n * k];
    for r in 0..n {
        for c in 0..k {
            out[r * k + c] = eig.vectors[(r, c + 1)];
        }
    }
    Some(out)
}

/// Eigenvector centrality: the Perron vector of `a` (largest algebraic eigenvalue), unit L2 norm,
/// non-negative. A symmetric solver is used because a bipartite graph also has `-lambda_max`.
pub fn centrality(a: &DMatrix<f64>) -> Vec<f64> {
    let n = a.nrows();
    if n == 0 {
        return Vec::new();
    }
    let eig = sorted_eigen(a.clone());
    let mut v: Vec<f64> = eig.vectors.column(n - 1).iter().copied().collect();
    let sum: f64 = v.iter().sum();
    if sum < 0.0 {
        v.iter_mut().for_each(|x| *x = -*x);
    }
    // The Perron vector of a connected graph is positive; what is below zero is rounding.
    v.iter_mut().for_each(|x| *x = x.max(0.0));
    let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
    v
}
