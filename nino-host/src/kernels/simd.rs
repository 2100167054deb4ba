//! Vectorised kernels of a nowcast: SiLU with a branch-free exp, and the core's per-edge loops compiled for
//! AVX-512, chosen at run time by CPU feature detection.

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
/// matrix products of a nowcast. Agrees with it to a few ulp (tested).
pub fn fast_silu(x: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU feature the function is compiled for was just detected.
        unsafe { silu_avx512(x) };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU features the function is compiled for were just detected.
        unsafe { silu_avx2(x) };
        return;
    }
    silu_vec_body::<false>(x)
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

    // SAFETY (all three): handed out by `super::fast_edge_kernels` only after detecting AVX-512F, AVX2 and FMA.
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

fn update_fast_silu(g: &mut [f32], b: &[f32], s: &[f32], t: &[f32]) {
    nowcast::linear::update_sum(g, b, s, t);
    fast_silu(g)
}

/// The folded model's per-edge loops for this CPU: AVX-512 when present, else plain loops with [`fast_silu`].
pub fn fast_edge_kernels() -> nowcast::EdgeKernels {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx2")
        && std::arch::is_x86_feature_detected!("fma")
    {
        return nowcast::EdgeKernels {
            message: edge_avx512::message,
            update: edge_avx512::update,
            add: edge_avx512::add,
        };
    }
    nowcast::EdgeKernels { update: update_fast_silu, ..nowcast::EdgeKernels::PORTABLE }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_silu_agrees_with_libm() {
        let mut x: Vec<f32> = (-20_000..20_000).map(|i| i as f32 * 5e-3).collect();
        x.extend([-100.0, -88.5, 90.0, 1e-30, -1e-30, 0.0]);
        let mut y = x.clone();
        fast_silu(&mut y);
        for (&a, &b) in x.iter().zip(&y) {
            let want = nino_core::nowcast::linear::silu(a);
            // A few ulp relative, or absolute for the tiny tails where SiLU underflows towards 0.
            assert!((b - want).abs() <= 4.0 * f32::EPSILON * want.abs() + 1e-35, "silu({a}) = {b}, libm {want}");
        }
        let mut nan = [f32::NAN];
        fast_silu(&mut nan);
        assert!(nan[0].is_nan());
    }
}
