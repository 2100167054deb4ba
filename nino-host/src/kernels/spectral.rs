//! Run-time spectral features (LPE, eigenvector centrality) for any architecture.
//!
//! Runs the same dense f64 solver that `nino-core/build.rs` ran for the built-in tables (the file is
//! included, not copied), so for a built-in architecture the result equals `nino_core::spectral::builtin`.
//! Cost: two dense `N x N` symmetric eigendecompositions, `O(N^3)`; a few seconds at `N` ~ 1000.

use nino_core::{Arch, Error, NeuralGraph};

#[allow(dead_code)]
#[path = "../../../nino-core/spectral/solve.rs"]
mod solve;

/// The full spectral decomposition of an architecture's neural graph, computed once and queried many times.
pub struct Spectrum {
    nodes: usize,
    laplacian: solve::Eigen,
    centrality: Vec<f64>,
}

impl Spectrum {
    /// Runs the solver on the undirected, unweighted, self-loop-free graph of `arch` (docs/spec.md §2.8, 9.2).
    pub fn compute(arch: &Arch) -> Spectrum {
        let g = NeuralGraph::new(arch);
        let n = g.num_nodes();
        let a = solve::adjacency(n, g.edges().map(|e| (e.src, e.dst)));
        Spectrum { nodes: n, laplacian: solve::laplacian_eigen(&a), centrality: solve::centrality(&a) }
    }

    /// Number of nodes `N`.
    pub fn nodes(&self) -> usize {
        self.nodes
    }

    /// All eigenvalues of `L = I - D^-1/2 A D^-1/2`, ascending.
    pub fn eigenvalues(&self) -> &[f64] {
        &self.laplacian.values
    }

    /// Unit eigenvector `j` of `L` (of the `j`-th smallest eigenvalue), with its largest entry positive.
    pub fn eigenvector(&self, j: usize) -> Option<Vec<f64>> {
        (j < self.nodes).then(|| self.laplacian.vectors.column(j).iter().copied().collect())
    }

    /// LPE in f64, `[N, k]` row-major: eigenvectors 2..=k+1; `k` must be at most `N - 1`.
    pub fn lpe_f64(&self, k: usize) -> Result<Vec<f64>, Error> {
        solve::lpe_from(&self.laplacian, k).ok_or(Error::InvalidArgument("LPE count above N - 1"))
    }

    /// LPE as the model consumes it, `[N, k]` row-major f32; `k` must be at most `N - 1`.
    pub fn lpe(&self, k: usize) -> Result<Vec<f32>, Error> {
        Ok(self.lpe_f64(k)?.into_iter().map(|x| x as f32).collect())
    }

    /// Eigenvector centrality `[N]` in f64: Perron vector of `A`, non-negative, unit L2 norm.
    pub fn centrality_f64(&self) -> &[f64] {
        &self.centrality
    }

    /// Eigenvector centrality `[N]` as f32, the node feature.
    pub fn centrality(&self) -> Vec<f32> {
        self.centrality.iter().map(|&x| x as f32).collect()
    }
}

/// LPE `[N, k]` (f32, row-major) of `arch`: the baked table when built in and `k <= 8`, else the solver.
/// `k` above `N - 1` is an [`Error::InvalidArgument`].
pub fn lpe(arch: &Arch, k: usize) -> Result<Vec<f32>, Error> {
    if let Some(t) = nino_core::spectral::builtin(arch).filter(|_| k <= nino_core::spectral::LPE_COLS) {
        let mut out = vec![0.0; t.nodes * k];
        t.lpe_columns(k, &mut out)?;
        return Ok(out);
    }
    Spectrum::compute(arch).lpe(k)
}

/// Eigenvector centrality `[N]` (f32) of `arch`: the baked table when built in, else the solver.
pub fn centrality(arch: &Arch) -> Vec<f32> {
    match nino_core::spectral::builtin(arch) {
        Some(t) => t.centrality.to_vec(),
        None => Spectrum::compute(arch).centrality(),
    }
}

/// All Laplacian eigenvalues of `arch`'s graph, ascending, in f64 (always solved: the tables hold f32).
pub fn eigenvalues(arch: &Arch) -> Vec<f64> {
    Spectrum::compute(arch).laplacian.values
}

#[cfg(test)]
mod tests {
    use super::*;
    use nino_core::{InputShape, Task};

    #[test]
    fn lpe_count_above_n_minus_1_is_an_error() {
        let a = Arch::parse("conv:2", InputShape { channels: 1, height: 5, width: 5 }, 2).unwrap();
        let n = NeuralGraph::new(&a).num_nodes();
        assert_eq!(n, 7);
        assert_eq!(lpe(&a, 6).unwrap().len(), 7 * 6);
        assert!(matches!(lpe(&a, 7), Err(Error::InvalidArgument(_))));
        assert_eq!(lpe(&a, 0).unwrap().len(), 0);
    }

    #[test]
    fn builtin_fast_path_and_solver_agree_past_eight_columns() {
        // k = 9 forces the solver; its first 8 columns must be the table's.
        let a = Task::Debug.arch();
        let nine = lpe(&a, 9).unwrap();
        let eight = lpe(&a, 8).unwrap();
        for r in 0..31 {
            assert_eq!(nine[r * 9..r * 9 + 8], eight[r * 8..r * 8 + 8]);
        }
    }
}
