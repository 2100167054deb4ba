//! Spectral node features of the neural graph (Laplacian eigenvectors, eigenvector centrality), tables made at build time.
//!
//! The core allocates nothing and so runs no eigensolver: `build.rs` computes, for every built-in task (the
//! Fashion-MNIST and CIFAR nets, each on its own dataset's input shape and classes) and for the MLP 784-32-10, the LPE (docs/spec.md §2.8, 8 columns, canonical signs), the full Laplacian
//! spectrum and the eigenvector centrality (9.2), and bakes them into `static` tables. Other architectures
//! get theirs from the host (`nino_host::spectral`), which runs the very same solver.

use crate::arch::{Arch, InputShape};
use crate::error::{Error, check_len};

/// LPE columns stored per table (the reference `lpe=8`); a smaller count is a prefix of them.
pub const LPE_COLS: usize = 8;

/// Precomputed spectral features of one built-in architecture's neural graph.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SpectralTable {
    /// Number of nodes `N`.
    pub nodes: usize,
    /// LPE, `[N, LPE_COLS]` row-major: eigenvectors 2..=9 of `L`, ascending, largest entry positive.
    pub lpe: &'static [f32],
    /// All `N` eigenvalues of `L = I - D^-1/2 A D^-1/2`, ascending.
    pub eigenvalues: &'static [f32],
    /// Eigenvector centrality `[N]`: the Perron vector of `A`, non-negative, unit L2 norm.
    pub centrality: &'static [f32],
}

impl SpectralTable {
    /// Copies the first `k` LPE columns into `out` (`[N, k]` row-major), the node features of a `k`-LPE model.
    pub fn lpe_columns(&self, k: usize, out: &mut [f32]) -> Result<(), Error> {
        if k > LPE_COLS {
            return Err(Error::InvalidArgument("LPE count above the 8 columns of a built-in table"));
        }
        check_len("lpe", out.len(), self.nodes * k)?;
        for (dst, src) in out.chunks_exact_mut(k.max(1)).zip(self.lpe.chunks_exact(LPE_COLS)) {
            dst.copy_from_slice(&src[..k]);
        }
        Ok(())
    }

    /// Eigenvalues of the LPE columns (the 2nd to `(k+1)`-th smallest), for checks and feature scaling.
    pub fn lpe_eigenvalues(&self) -> &'static [f32] {
        self.eigenvalues.get(1..=LPE_COLS).unwrap_or(&[])
    }
}

/// Most eigenvalues [`lpe_elbow`] looks at: the smallest ones, where positional information lives; counts
/// beyond it are never worth their cost (the published model uses 8).
pub const ELBOW_WINDOW: usize = 32;

/// The LPE count at the elbow of the spectrum (`eigenvalues` ascending, the trivial 0 first), the rule that
/// picks NiNo++'s count: Kneedle on the non-trivial eigenvalues `l_1..l_M`, `M = min(N - 1, ELBOW_WINDOW)`.
/// Both axes are scaled to `[0, 1]` (`x_j = (j-1)/(M-1)`, `y_j = (l_j - l_1)/(l_M - l_1)`) and the elbow is the
/// first `j` that maximises `y_j - x_j`, the point farthest above the chord: past it, more eigenvectors add
/// little new spectrum. The answer is that `j`, the number of eigenvectors up to and including the elbow.
pub fn lpe_elbow(eigenvalues: &[f32]) -> Result<usize, Error> {
    if eigenvalues.iter().any(|v| !v.is_finite()) {
        return Err(Error::NonFinite("eigenvalues"));
    }
    if eigenvalues.windows(2).any(|w| w[1] < w[0]) {
        return Err(Error::InvalidArgument("eigenvalues must be ascending"));
    }
    let m = eigenvalues.len().saturating_sub(1).min(ELBOW_WINDOW);
    if m < 3 {
        return Ok(m);
    }
    let l = &eigenvalues[1..=m];
    let span = l[m - 1] - l[0];
    if span <= 0.0 {
        return Ok(1);
    }
    let mut best = (f32::NEG_INFINITY, 1);
    for (j, &v) in l.iter().enumerate() {
        let d = (v - l[0]) / span - j as f32 / (m - 1) as f32;
        if d > best.0 {
            best = (d, j + 1);
        }
    }
    Ok(best.1)
}

/// One baked table with the architecture it belongs to.
struct Builtin {
    spec: &'static str,
    input: InputShape,
    classes: usize,
    table: SpectralTable,
}

include!(concat!(env!("OUT_DIR"), "/spectral_tables.rs"));

/// The baked table of `arch` if it is built in (every [`crate::Task`]'s net on its dataset, and `mlp:32` on
/// 28x28x1 with 10 classes).
pub fn builtin(arch: &Arch) -> Option<SpectralTable> {
    BUILTINS.iter().find(|b| matches!(Arch::parse(b.spec, b.input, b.classes), Ok(a) if a == *arch)).map(|b| b.table)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::Task;
    use crate::graph::NeuralGraph;

    #[test]
    fn every_builtin_task_has_a_consistent_table() {
        for t in Task::ALL {
            let tab = builtin(&t.arch()).expect("built-in table");
            let n = NeuralGraph::new(&t.arch()).num_nodes();
            assert_eq!(tab.nodes, n);
            assert_eq!((tab.lpe.len(), tab.eigenvalues.len(), tab.centrality.len()), (n * LPE_COLS, n, n));
        }
        let mlp = Arch::parse("mlp:32", InputShape::FASHION_MNIST, 10).unwrap();
        assert_eq!(builtin(&mlp).map(|t| t.nodes), Some(828));
        let other = Arch::parse("mlp:64", InputShape::FASHION_MNIST, 10).unwrap();
        assert!(builtin(&other).is_none());
        // The CIFAR nets' tables belong to their own input shapes and classes, not to the same widths elsewhere.
        let c100 = builtin(&Task::C100_32.arch()).unwrap();
        assert_eq!(c100.nodes, 267);
        assert_ne!(builtin(&Task::C10_32.arch()).unwrap().lpe, c100.lpe);
        let fm_like = Arch::parse("conv:32,64,64", InputShape::CIFAR, 7).unwrap();
        assert!(builtin(&fm_like).is_none());
    }

    #[test]
    fn elbow_of_hand_made_spectra() {
        // A fast rise to a plateau: y = [0, 7/8, 1, 1, 1], x = [0, 1/4, 1/2, 3/4, 1]; y - x peaks at 5/8, j = 2.
        assert_eq!(lpe_elbow(&[0.0, 0.2, 0.9, 1.0, 1.0, 1.0]), Ok(2));
        // A straight line has no elbow above the chord: the first eigenvector.
        assert_eq!(lpe_elbow(&[0.0, 0.1, 0.2, 0.3, 0.4]), Ok(1));
        // Too few eigenvalues to have an elbow: all of them.
        assert_eq!(lpe_elbow(&[0.0, 0.5, 1.0]), Ok(2));
        assert_eq!(lpe_elbow(&[0.0]), Ok(0));
        assert!(lpe_elbow(&[0.0, 1.0, 0.5, 2.0]).is_err());
        assert!(lpe_elbow(&[0.0, f32::NAN, 1.0, 2.0]).is_err());
    }

    #[test]
    fn lpe_columns_is_a_prefix_and_checks_its_arguments() {
        let tab = builtin(&Task::Debug.arch()).unwrap();
        let mut five = [0.0f32; 31 * 5];
        tab.lpe_columns(5, &mut five).unwrap();
        for r in 0..31 {
            assert_eq!(five[r * 5..r * 5 + 5], tab.lpe[r * 8..r * 8 + 5]);
        }
        assert_eq!(
            tab.lpe_columns(9, &mut [0.0; 31 * 9]),
            Err(Error::InvalidArgument("LPE count above the 8 columns of a built-in table"))
        );
        assert!(matches!(tab.lpe_columns(5, &mut [0.0; 10]), Err(Error::BufferSize { .. })));
        assert_eq!(tab.lpe_columns(0, &mut []), Ok(()));
    }
}
