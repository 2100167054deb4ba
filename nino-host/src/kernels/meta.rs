//! The trainable model's elementwise kernels (`nino_core::nowcast::meta::ops`) compiled for this CPU.
//!
//! The core builds for the baseline x86-64 (SSE2); the same functions compiled with AVX2 run their loops
//! eight floats wide, with AVX-512 sixteen. They are the core's functions, inlined into wrappers with a wider target, so the
//! results are bit-identical (tested): Rust never fuses `a * b + c` on its own.

use super::gemm::{HostBf16Gemm, HostGemm};
use nino_core::nowcast::meta::{Compute, Kernels};

/// Safe wrappers of core functions compiled with the target features `$tf`, each listed once: name,
/// arguments, the core function.
macro_rules! wide {
    ($tf:literal; $($f:ident($($a:ident: $t:ty),*) $(-> $r:ty)? = $core:path;)*) => {$(
        pub(super) fn $f($($a: $t),*) $(-> $r)? {
            #[target_feature(enable = $tf)]
            unsafe fn inner($($a: $t),*) $(-> $r)? {
                $core($($a),*)
            }
            // SAFETY: handed out by `super::host_kernels_for` only when `Isa::clamp` (CPU detection) allows
            // the module's target features.
            unsafe { inner($($a),*) }
        }
    )*};
}

/// A module of the seven elementwise kernels built with the target features `$tf`, and their table.
macro_rules! kernels_for {
    ($name:ident, $tf:literal) => {
        #[cfg(target_arch = "x86_64")]
        mod $name {
            use nino_core::nowcast::meta::{masked_l1 as l1, ops};

            wide! { $tf;
                silu_fwd(x: &[f32], y: &mut [f32]) = ops::silu_fwd;
                silu_bwd(x: &[f32], dy: &mut [f32]) = ops::silu_bwd;
                lstm(g: &mut [f32], cp: Option<&[f32]>, cn: &mut [f32], hn: &mut [f32], h: usize) = ops::lstm_cells;
                lstm_bwd(g: &[f32], cp: Option<&[f32]>, c: &[f32], dh: &mut [f32], dc: &mut [f32], dg: &mut [f32], h: usize) = ops::lstm_cells_bwd;
                gru(gi: &mut [f32], gh: &[f32], hp: &[f32], ghn: &mut [f32], hn: &mut [f32], h: usize) = ops::gru_cells;
                gru_bwd(g: &[f32], ghn: &[f32], hp: &[f32], dh: &mut [f32], dgi: &mut [f32], dgh: &mut [f32], h: usize) = ops::gru_cells_bwd;
                masked_l1(p: &[f32], y: &[f32], m: &[u8], d: Option<&mut [f32]>) -> (f32, usize) = l1;
            }

            /// The seven kernels as the core's table.
            pub(super) const KERNELS: nino_core::nowcast::meta::Kernels =
                nino_core::nowcast::meta::Kernels { silu_fwd, silu_bwd, lstm, lstm_bwd, gru, gru_bwd, masked_l1 };
        }
    };
}

kernels_for!(avx2, "avx2,fma");
kernels_for!(avx512, "avx512f,avx2,fma");

use super::Isa;
/// The environment variable that forces the portable kernels (`NINO_KERNELS=portable`), so tests and
/// benchmarks can run the fallback on any CPU (it caps every host kernel: [`super::Isa`]).
pub use super::KERNELS_ENV;

static FORCE_PORTABLE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Makes [`host_kernels`] hand out the core's baseline kernels (benchmarks compare both in one run).
pub fn force_portable(on: bool) {
    FORCE_PORTABLE.store(on, std::sync::atomic::Ordering::Relaxed);
}

/// Whether the baseline kernels are forced, by [`force_portable`] or `NINO_KERNELS=portable`.
pub fn portable_forced() -> bool {
    FORCE_PORTABLE.load(std::sync::atomic::Ordering::Relaxed) || Isa::selected() == Isa::Scalar
}

/// The fastest elementwise kernels this CPU runs: AVX2 when present (and not forced off), else the core's.
pub fn host_kernels() -> Kernels {
    if portable_forced() { Kernels::PORTABLE } else { host_kernels_for(Isa::selected()) }
}

/// The elementwise kernels of level `isa` (lowered to what the CPU runs): AVX-512 or AVX2 builds of the
/// core's functions, else the core's own.
pub fn host_kernels_for(isa: Isa) -> Kernels {
    #[cfg(target_arch = "x86_64")]
    match isa.clamp() {
        Isa::Avx512 => return avx512::KERNELS,
        Isa::Avx2 => return avx2::KERNELS,
        Isa::Scalar => {}
    }
    Kernels::PORTABLE
}

static HOST_GEMM: HostGemm = HostGemm;
static HOST_BF16: HostBf16Gemm = HostBf16Gemm;

/// The host's GEMM and elementwise kernels for a trainable-model pass (one thread; callers parallelise
/// across graphs), every product in f32.
pub fn host_compute() -> Compute<'static> {
    Compute { gemm: &HOST_GEMM, lo: &HOST_GEMM, kernels: host_kernels() }
}

/// [`host_compute`] with the products of hidden activations on bf16 operands ([`HostBf16Gemm`]): mixed
/// precision, about twice the multiply-adds per instruction on CPUs with AVX-512 BF16.
pub fn host_compute_bf16() -> Compute<'static> {
    Compute { gemm: &HOST_GEMM, lo: &HOST_BF16, kernels: host_kernels() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| ((i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) % 20_001) as f32 / 1000.0 - 10.0)
            .collect()
    }

    /// Every host kernel gives the core's bits (the fallback is the core itself).
    #[test]
    fn host_kernels_are_bit_identical_to_the_core() {
        // Every level this CPU runs, forced one by one (the CPU's own choice is one of them).
        for isa in Isa::runnable() {
            eprintln!("meta kernels at {isa:?}");
            check_against_the_core(host_kernels_for(isa));
        }
    }

    fn check_against_the_core(k: Kernels) {
        let p = Kernels::PORTABLE;
        let (e, h) = (7, 24);
        let x = values(e * h, 1);
        let (mut a, mut b) = (vec![0.0; e * h], vec![0.0; e * h]);
        (k.silu_fwd)(&x, &mut a);
        (p.silu_fwd)(&x, &mut b);
        assert_eq!(a, b);
        let (mut a, mut b) = (values(e * h, 2), values(e * h, 2));
        (k.silu_bwd)(&x, &mut a);
        (p.silu_bwd)(&x, &mut b);
        assert_eq!(a, b);

        let cp = values(e * h, 3);
        let mut ga = values(e * 4 * h, 4);
        let mut gb = ga.clone();
        let (mut ca, mut cb, mut ha, mut hb) = (vec![0.0; e * h], vec![0.0; e * h], vec![0.0; e * h], vec![0.0; e * h]);
        (k.lstm)(&mut ga, Some(&cp), &mut ca, &mut ha, h);
        (p.lstm)(&mut gb, Some(&cp), &mut cb, &mut hb, h);
        assert_eq!((&ga, &ca, &ha), (&gb, &cb, &hb));
        let (mut dha, mut dca, mut dga) = (values(e * h, 5), values(e * h, 6), vec![0.0; e * 4 * h]);
        let (mut dhb, mut dcb, mut dgb) = (dha.clone(), dca.clone(), dga.clone());
        (k.lstm_bwd)(&ga, Some(&cp), &ca, &mut dha, &mut dca, &mut dga, h);
        (p.lstm_bwd)(&gb, Some(&cp), &cb, &mut dhb, &mut dcb, &mut dgb, h);
        assert_eq!((&dha, &dca, &dga), (&dhb, &dcb, &dgb));

        let gh = values(e * 3 * h, 7);
        let mut gia = values(e * 3 * h, 8);
        let mut gib = gia.clone();
        let (mut na, mut nb, mut ha, mut hb) = (vec![0.0; e * h], vec![0.0; e * h], vec![0.0; e * h], vec![0.0; e * h]);
        (k.gru)(&mut gia, &gh, &cp, &mut na, &mut ha, h);
        (p.gru)(&mut gib, &gh, &cp, &mut nb, &mut hb, h);
        assert_eq!((&gia, &na, &ha), (&gib, &nb, &hb));
        let (mut dha, mut dia, mut dqa) = (values(e * h, 9), vec![0.0; e * 3 * h], vec![0.0; e * 3 * h]);
        let (mut dhb, mut dib, mut dqb) = (dha.clone(), dia.clone(), dqa.clone());
        (k.gru_bwd)(&gia, &na, &cp, &mut dha, &mut dia, &mut dqa, h);
        (p.gru_bwd)(&gib, &nb, &cp, &mut dhb, &mut dib, &mut dqb, h);
        assert_eq!((&dha, &dia, &dqa), (&dhb, &dib, &dqb));
        // The loss sums in lanes: the same lanes, the same bits.
        let (pr, y) = (values(1003, 10), values(1003, 11));
        let m: Vec<u8> = (0..1003).map(|i| u8::from(i % 7 != 3)).collect();
        let (mut da, mut db) = (vec![0.0; 1003], vec![0.0; 1003]);
        let la = (k.masked_l1)(&pr, &y, &m, Some(&mut da));
        let lb = (p.masked_l1)(&pr, &y, &m, Some(&mut db));
        assert_eq!((la, &da), (lb, &db));
        assert!(la.1 > 800 && la.0 > 0.0);
        // The values are finite and the cells did something (a kernel that wrote nothing would pass above).
        assert!(ha.iter().chain(&dga).all(|v| v.is_finite()) && ha.iter().any(|&v| v != 0.0));
    }
}
