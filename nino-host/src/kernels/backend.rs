//! The host's backend for the core's nowcast: threaded products, vectorised SiLU and edge loops, and
//! rayon for the core's parallel halves.

use super::gemm::ThreadedGemm;
use super::simd::{fast_edge_kernels, fast_silu};
use nino_core::nowcast::{self, Backend};

/// Runs the core's parallel tasks on rayon's pool (the halves of a nowcast's per-edge work).
#[derive(Clone, Copy, Debug, Default)]
pub struct RayonParallel;

impl nowcast::Parallel for RayonParallel {
    fn run(&self, tasks: &mut [&mut (dyn FnMut() + Send)]) {
        match tasks {
            [] => {}
            [t] => t(),
            _ => {
                let (a, b) = tasks.split_at_mut(tasks.len() / 2);
                rayon::join(|| self.run(a), || self.run(b));
            }
        }
    }
}

static THREADED: ThreadedGemm = ThreadedGemm;

/// The fastest kernels this host offers: threaded `gemm`-crate products and the vectorised SiLU.
pub fn host_backend() -> Backend<'static> {
    Backend { gemm: &THREADED, silu: fast_silu, par: &RayonParallel, edge: fast_edge_kernels() }
}
