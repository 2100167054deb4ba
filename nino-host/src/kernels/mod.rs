//! Layer 2, host compute: the fast kernels the core's math runs on here.
//!
//! Matrix products ([`gemm`]: AVX-512 tiles, the `gemm` crate, rows split over threads), vectorised SiLU
//! and per-edge loops ([`simd`]), the trainable model's elementwise kernels ([`meta`]), the nowcast backend that bundles them ([`backend`]), and the spectral
//! features of a neural graph ([`spectral`]: LPE, eigenvector centrality). Uses no other layer.

pub mod backend;
pub mod gemm;
pub mod meta;
pub mod simd;
pub mod spectral;

/// The instruction sets the host kernels are built for, lowest first: every dispatch in this layer picks
/// one, so tests can force each fallback on any CPU ([`Isa::runnable`]) instead of depending on the machine.
///
/// | level | GEMM ([`gemm`]) | SiLU and per-edge loops ([`simd`]) | meta kernels ([`meta`]) |
/// |---|---|---|---|
/// | `Avx512` | AVX-512 tiles when the output width is a multiple of 16, else the `gemm` crate | AVX-512 | AVX-512 |
/// | `Avx2` | the `gemm` crate | AVX2 SiLU, the core's loops | AVX2 |
/// | `Scalar` | the `gemm` crate | scalar SiLU, the core's loops | the core's |
///
/// (The `gemm` crate chooses its own instructions inside.)
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Isa {
    /// Plain Rust, compiled for the baseline CPU.
    Scalar,
    /// AVX2 and FMA.
    Avx2,
    /// AVX-512F (with AVX2 and FMA).
    Avx512,
}

/// The environment variable that caps the kernels' instruction set: `portable` (or `scalar`) runs the
/// baseline fallbacks everywhere, `avx2` at most AVX2; unset or any other value: the CPU's best.
pub const KERNELS_ENV: &str = "NINO_KERNELS";

impl Isa {
    /// Every level, lowest first.
    pub const ALL: [Isa; 3] = [Isa::Scalar, Isa::Avx2, Isa::Avx512];

    /// The best level this CPU runs.
    pub fn cpu() -> Isa {
        #[cfg(target_arch = "x86_64")]
        {
            let avx2 = std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma");
            if avx2 && std::arch::is_x86_feature_detected!("avx512f") {
                return Isa::Avx512;
            }
            if avx2 {
                return Isa::Avx2;
            }
        }
        Isa::Scalar
    }

    /// The cap a value of [`KERNELS_ENV`] sets (none for unset or unknown values).
    pub fn cap(value: Option<&std::ffi::OsStr>) -> Isa {
        match value.and_then(|v| v.to_str()) {
            Some("portable" | "scalar") => Isa::Scalar,
            Some("avx2") => Isa::Avx2,
            _ => Isa::Avx512,
        }
    }

    /// The level the host kernels use: the CPU's best, capped by [`KERNELS_ENV`] (read once).
    pub fn selected() -> Isa {
        static SELECTED: std::sync::OnceLock<Isa> = std::sync::OnceLock::new();
        *SELECTED.get_or_init(|| Isa::cpu().min(Isa::cap(std::env::var_os(KERNELS_ENV).as_deref())))
    }

    /// The levels this CPU can run, lowest first (what tests force one by one).
    pub fn runnable() -> Vec<Isa> {
        Isa::ALL.into_iter().filter(|&l| l <= Isa::cpu()).collect()
    }

    /// `self`, lowered to what this CPU runs: every dispatch goes through this, so forcing a level the CPU
    /// lacks runs the best one it has instead of an illegal instruction.
    pub fn clamp(self) -> Isa {
        self.min(Isa::cpu())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_environment_caps_the_level() {
        use std::ffi::OsStr;
        assert_eq!(Isa::cap(None), Isa::Avx512);
        assert_eq!(Isa::cap(Some(OsStr::new("portable"))), Isa::Scalar);
        assert_eq!(Isa::cap(Some(OsStr::new("scalar"))), Isa::Scalar);
        assert_eq!(Isa::cap(Some(OsStr::new("avx2"))), Isa::Avx2);
        assert_eq!(Isa::cap(Some(OsStr::new("fast"))), Isa::Avx512);
        // Forcing never goes above the CPU, and the lowest level always runs.
        assert!(Isa::Avx512.clamp() == Isa::cpu() && Isa::Scalar.clamp() == Isa::Scalar);
        assert_eq!(Isa::runnable()[0], Isa::Scalar);
        assert!(Isa::selected() <= Isa::cpu());
        eprintln!("this CPU runs {:?}", Isa::runnable());
    }
}
