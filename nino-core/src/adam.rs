//! Adam and AdamW with PyTorch semantics over flat parameter, gradient and moment slices.
//!
//! One step follows `torch.optim.AdamW`'s single-tensor path operation by operation (weight decay 0 is
//! plain Adam): `p *= 1 - lr*wd`; `m += (1-b1)(g - m)`; `v = b2*v + (1-b2)*g*g`;
//! `p += (-lr/bc1) * m / (sqrt(v)/sqrt(bc2) + eps)` with `bc = 1 - beta^t` computed in f64, as Python does.

use crate::error::{Error, check_len};

/// Hyper-parameters of Adam / AdamW.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct AdamConfig {
    /// Learning rate.
    pub lr: f32,
    /// Decay of the first moment.
    pub beta1: f32,
    /// Decay of the second moment.
    pub beta2: f32,
    /// Added to the denominator for stability.
    pub eps: f32,
    /// Decoupled weight decay (AdamW); 0 gives Adam.
    pub weight_decay: f32,
}

impl AdamConfig {
    /// PyTorch's defaults (betas 0.9/0.999, eps 1e-8, no weight decay) at learning rate `lr`.
    pub const fn new(lr: f32) -> AdamConfig {
        AdamConfig { lr, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0 }
    }
}

/// The per-step scalars of [`adam_step`] for step `step` (1-based), rounded to f32 as it uses them: what a
/// device kernel needs to take the same step bit for bit.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamScalars {
    /// `-lr / (1 - beta1^step)`.
    pub neg_step: f32,
    /// `sqrt(1 - beta2^step)`.
    pub bc2_sqrt: f32,
    /// `1 - lr * weight_decay` (applied only when weight decay is not 0).
    pub decay: f32,
    /// `1 - beta1`.
    pub w1: f32,
    /// `beta2`.
    pub b2: f32,
    /// `1 - beta2`.
    pub w2: f32,
    /// `eps`.
    pub eps: f32,
}

impl AdamConfig {
    /// Bias corrections in f64 (as Python computes them), then the f32 factors of step `step` (1-based).
    pub fn scalars(&self, step: u64) -> AdamScalars {
        let (lr, b1, b2) = (self.lr as f64, self.beta1 as f64, self.beta2 as f64);
        let bc1 = 1.0 - libm::pow(b1, step as f64);
        let bc2 = 1.0 - libm::pow(b2, step as f64);
        AdamScalars {
            neg_step: (-(lr / bc1)) as f32,
            bc2_sqrt: libm::sqrt(bc2) as f32,
            decay: (1.0 - lr * self.weight_decay as f64) as f32,
            w1: (1.0 - b1) as f32,
            b2: self.beta2,
            w2: (1.0 - b2) as f32,
            eps: self.eps,
        }
    }
}

/// One Adam step in place: `t` is the step counter before the step (0 for a fresh optimizer) and is
/// incremented first, as PyTorch does, so the first step uses `t = 1`.
pub fn adam_step(
    cfg: &AdamConfig,
    params: &mut [f32],
    grad: &[f32],
    m: &mut [f32],
    v: &mut [f32],
    t: &mut u64,
) -> Result<(), Error> {
    let n = params.len();
    check_len("adam grad", grad.len(), n)?;
    check_len("adam m", m.len(), n)?;
    check_len("adam v", v.len(), n)?;
    let step = t.checked_add(1).ok_or(Error::InvalidArgument("adam: step counter overflow"))?;
    let AdamScalars { neg_step, bc2_sqrt, decay, w1, b2: b2f, w2, eps } = cfg.scalars(step);
    for i in 0..n {
        let g = grad[i];
        let mut p = params[i];
        if cfg.weight_decay != 0.0 {
            p *= decay;
        }
        let mi = m[i] + w1 * (g - m[i]);
        let vi = v[i] * b2f + w2 * g * g;
        let denom = libm::sqrtf(vi) / bc2_sqrt + eps;
        p += neg_step * mi / denom;
        m[i] = mi;
        v[i] = vi;
        params[i] = p;
    }
    *t = step;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_hand_computed_torch_steps() {
        // Two steps on one parameter, computed by hand in f64 from the formulas of torch.optim.Adam.
        let cfg = AdamConfig::new(0.01);
        let (mut p, mut m, mut v, mut t) = ([1.0f32], [0.0f32], [0.0f32], 0u64);
        adam_step(&cfg, &mut p, &[0.5], &mut m, &mut v, &mut t).unwrap();
        // Step 1: m_hat = g, v_hat = g^2, so the update is lr * g / (|g| + eps) ~ lr.
        assert!((p[0] as f64 - (1.0 - 0.01 * 0.5 / (0.5 + 1e-8))).abs() < 1e-7);
        adam_step(&cfg, &mut p, &[-0.25], &mut m, &mut v, &mut t).unwrap();
        let m2 = 0.9 * 0.05 + 0.1 * -0.25f64;
        let v2 = 0.999 * 0.001 * 0.25 + 0.001 * 0.0625f64;
        let (mh, vh) = (m2 / (1.0 - 0.81), v2 / (1.0 - 0.999f64.powi(2)));
        let want = (1.0 - 0.01 * 0.5 / (0.5 + 1e-8)) - 0.01 * mh / (vh.sqrt() + 1e-8);
        // f32 state: agreement to a few ulps of 1.0.
        assert!((p[0] as f64 - want).abs() < 1e-6, "{} vs {want}", p[0]);
        assert_eq!(t, 2);
        // AdamW: with a zero gradient only the decay acts.
        let cfg = AdamConfig { weight_decay: 0.1, ..AdamConfig::new(0.5) };
        let (mut p, mut m, mut v, mut t) = ([2.0f32], [0.0f32], [0.0f32], 0u64);
        adam_step(&cfg, &mut p, &[0.0], &mut m, &mut v, &mut t).unwrap();
        assert!((p[0] - 2.0 * 0.95).abs() < 1e-6);
        assert!(adam_step(&cfg, &mut p, &[0.0, 1.0], &mut m, &mut v, &mut t).is_err());
    }
}
