//! Vectorised kernels of a nowcast: SiLU with a branch-free exp, and the core's per-edge loops compiled for
//! AVX-512, chosen at run time by CPU feature detection (capped by `NINO_KERNELS`, or forced per call:
//! [`silu_for`], [`edge_kernels_for`]).

use super::Isa;
use nino_core::nowcast;

/// `a * b + c`, fused where the caller is compiled with FMA (`F`), else as two operations (a fused
/// multiply-add without hardware support is a slow library call).
#[inline(always)]
fn madd<const F: bool>(a: f32, b: f32, c: f32) -> f32 {
    if F { a.mul_add(b, c) } else { a * b + c }
}

/// `exp(x)` for `x` in about `[-87, 88]` (clamped outside), Cephes-style: `2^n * poly(r)`, about 1 ulp, and
/// branch-free so the compiler vectorises it.
#[inline(always)]
fn exp_vec<const F: bool>(x: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0; // 1.5 * 2^23: adding it rounds to an integer held in the low bits.
    let x = x.clamp(-87.0, 88.0);
    let t = madd::<F>(x, std::f32::consts::LOG2_E, MAGIC);
    let n = t - MAGIC;
    let r = madd::<F>(n, 2.121_944_4e-4, madd::<F>(n, -0.693_359_4, x));
    let mut p = 1.987_569_1e-4;
    for c in [1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 1.666_666_5e-1, 0.5] {
        p = madd::<F>(p, r, c);
    }
    let y = madd::<F>(p, r * r, r + 1.0);
    let scale = (t.to_bits() as i32).wrapping_sub(MAGIC.to_bits() as i32) << 23;
    f32::from_bits((y.to_bits() as i32).wrapping_add(scale) as u32)
}

#[inline(always)]
fn silu_vec_body<const F: bool>(x: &mut [f32]) {
    // Fixed blocks of 64 unroll into several independent vectors, which hides the exp's latency chain.
    let mut blocks = x.chunks_exact_mut(64);
    for block in &mut blocks {
        for v in block {
            *v /= 1.0 + exp_vec::<F>(-*v);
        }
    }
    for v in blocks.into_remainder() {
        *v /= 1.0 + exp_vec::<F>(-*v);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn silu_avx2(x: &mut [f32]) {
    silu_vec_body::<true>(x)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn silu_avx512(x: &mut [f32]) {
    silu_vec_body::<true>(x)
}

/// SiLU over a slice with a vectorised exp (AVX-512 or AVX2 when present): the core's libm SiLU costs as much as the
/// matrix products of a nowcast. Agrees with it to a few ulp (tested at every level).
pub fn fast_silu(x: &mut [f32]) {
    silu_for(Isa::selected())(x)
}

/// [`fast_silu`] at level `isa`, lowered to what this CPU runs (tests force each fallback with it).
pub fn silu_for(isa: Isa) -> fn(&mut [f32]) {
    match isa.clamp() {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => silu_avx512_checked,
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => silu_avx2_checked,
        _ => silu_scalar,
    }
}

/// The scalar fallback of [`fast_silu`].
fn silu_scalar(x: &mut [f32]) {
    silu_vec_body::<false>(x)
}

// SAFETY (both): handed out by `silu_for` only when `Isa::clamp` (CPU detection) allows the level.
#[cfg(target_arch = "x86_64")]
fn silu_avx512_checked(x: &mut [f32]) {
    unsafe { silu_avx512(x) }
}

#[cfg(target_arch = "x86_64")]
fn silu_avx2_checked(x: &mut [f32]) {
    unsafe { silu_avx2(x) }
}

#[cfg(target_arch = "x86_64")]
mod edge_avx512 {
    //! The core's per-edge loops compiled for AVX-512 (the core itself is built for the baseline CPU).
    use nino_core::nowcast::linear::{add_portable, message_portable, update_sum};

    #[target_feature(enable = "avx512f,avx2,fma")]
    unsafe fn message_tf(a: &mut [f32], s: &[f32], b: &[f32], u: &[f32], v: &[f32]) {
        message_portable(a, s, b, u, v)
    }

    #[target_feature(enable = "avx512f,avx2,fma")]
    unsafe fn update_tf(g: &mut [f32], b: &[f32], s: &[f32], t: &[f32]) {
        update_sum(g, b, s, t);
        super::silu_vec_body::<true>(g)
    }

    #[target_feature(enable = "avx512f,avx2,fma")]
    unsafe fn add_tf(a: &mut [f32], x: &[f32]) {
        add_portable(a, x)
    }

    // SAFETY (all three): handed out by `super::edge_kernels_for` only when `Isa::clamp` (CPU detection) allows
    // AVX-512F, AVX2 and FMA.
    pub(super) fn message(a: &mut [f32], s: &[f32], b: &[f32], u: &[f32], v: &[f32]) {
        unsafe { message_tf(a, s, b, u, v) }
    }

    pub(super) fn update(g: &mut [f32], b: &[f32], s: &[f32], t: &[f32]) {
        unsafe { update_tf(g, b, s, t) }
    }

    pub(super) fn add(a: &mut [f32], x: &[f32]) {
        unsafe { add_tf(a, x) }
    }
}

fn update_avx2_silu(g: &mut [f32], b: &[f32], s: &[f32], t: &[f32]) {
    nowcast::linear::update_sum(g, b, s, t);
    silu_for(Isa::Avx2)(g)
}

fn update_scalar_silu(g: &mut [f32], b: &[f32], s: &[f32], t: &[f32]) {
    nowcast::linear::update_sum(g, b, s, t);
    silu_scalar(g)
}

/// The folded model's per-edge loops for this CPU: AVX-512 when present, else plain loops with [`fast_silu`].
pub fn fast_edge_kernels() -> nowcast::EdgeKernels {
    edge_kernels_for(Isa::selected())
}

/// The per-edge loops at level `isa`, lowered to what this CPU runs: AVX-512 loops, or the core's loops with
/// the SiLU of the level.
pub fn edge_kernels_for(isa: Isa) -> nowcast::EdgeKernels {
    match isa.clamp() {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => {
            nowcast::EdgeKernels { message: edge_avx512::message, update: edge_avx512::update, add: edge_avx512::add }
        }
        Isa::Avx2 => nowcast::EdgeKernels { update: update_avx2_silu, ..nowcast::EdgeKernels::PORTABLE },
        _ => nowcast::EdgeKernels { update: update_scalar_silu, ..nowcast::EdgeKernels::PORTABLE },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_silu_agrees_with_libm_at_every_level() {
        let mut x: Vec<f32> = (-20_000..20_000).map(|i| i as f32 * 5e-3).collect();
        x.extend([-100.0, -88.5, 90.0, 1e-30, -1e-30, 0.0]);
        // Every level this CPU runs, forced one by one: the scalar fallback runs here on any CPU.
        for isa in Isa::runnable() {
            let silu = silu_for(isa);
            let mut y = x.clone();
            silu(&mut y);
            for (&a, &b) in x.iter().zip(&y) {
                let want = nino_core::nowcast::linear::silu(a);
                // A few ulp relative, or absolute for the tiny tails where SiLU underflows towards 0.
                assert!(
                    (b - want).abs() <= 4.0 * f32::EPSILON * want.abs() + 1e-35,
                    "{isa:?}: silu({a}) = {b}, libm {want}"
                );
            }
            let mut nan = [f32::NAN];
            silu(&mut nan);
            assert!(nan[0].is_nan(), "{isa:?}");
        }
    }

    #[test]
    fn edge_kernels_agree_with_the_core_at_every_level() {
        use nino_core::nowcast::linear::{add_portable, message_portable, update_sum};
        let vals = |n: usize, seed: usize| -> Vec<f32> {
            (0..n).map(|i| ((i * 7919 + seed * 104_729) % 2001) as f32 / 400.0 - 2.5).collect()
        };
        // Lengths off every vector width (tails of 1 to 15 floats).
        for n in [1, 7, 16, 37, 200] {
            let (s, b, u, v) = (vals(n, 1), vals(n, 2), vals(n, 3), vals(n, 4));
            let (mut ma, mut ua, mut aa) = (vals(n, 5), vals(n, 6), vals(n, 7));
            message_portable(&mut ma, &s, &b, &u, &v);
            update_sum(&mut ua, &b, &s, &u);
            ua.iter_mut().for_each(|g| *g = nino_core::nowcast::linear::silu(*g));
            add_portable(&mut aa, &s);
            for isa in Isa::runnable() {
                let k = edge_kernels_for(isa);
                let (mut mb, mut ub, mut ab) = (vals(n, 5), vals(n, 6), vals(n, 7));
                (k.message)(&mut mb, &s, &b, &u, &v);
                (k.update)(&mut ub, &b, &s, &u);
                (k.add)(&mut ab, &s);
                // Sums of a few products of size <= 6 (a fused multiply-add rounds once, not twice): 1e-5
                // relative to the largest; SiLU a few ulp.
                let close = |x: &[f32], y: &[f32], what: &str| {
                    let scale = y.iter().fold(1.0f32, |m, v| m.max(v.abs()));
                    for (i, (p, q)) in x.iter().zip(y).enumerate() {
                        assert!((p - q).abs() <= 1e-5 * scale, "{isa:?} {what} n {n} at {i}: {p} vs {q}");
                    }
                };
                close(&mb, &ma, "message");
                close(&ub, &ua, "update");
                close(&ab, &aa, "add");
            }
        }
    }
}
