//! Spectral node features of the neural graph (Laplacian eigenvectors, eigenvector centrality), tables made at build time.
//!
//! The core allocates nothing and so runs no eigensolver: `build.rs` computes, for every built-in task and
//! for the MLP 784-32-10, the LPE (NINO_REFERENCE.md 2.8, 8 columns, canonical signs), the full Laplacian
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

/// One baked table with the architecture it belongs to.
struct Builtin {
    spec: &'static str,
    input: InputShape,
    classes: usize,
    table: SpectralTable,
}

include!(concat!(env!("OUT_DIR"), "/spectral_tables.rs"));

/// The baked table of `arch` if it is built in (the three tasks and `mlp:32`, on 28x28x1, 10 classes).
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
