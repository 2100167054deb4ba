//! The training side of the C ABI: the rollback verdict, and Adam for runtimes that want the core's.

use super::{NINO_E_INVALID_ARGUMENT, check_disjoint, check_ptr, code, read, slice, slice_mut, span, status, write};
use crate::adam::{AdamConfig, adam_step};
use crate::rollback::{DEFAULT_LATER, Rule, Verdict};

/// The nowcast stays.
pub const NINO_VERDICT_KEEP: i32 = 0;
/// A parameter or the probe loss is NaN or infinite: undo the nowcast.
pub const NINO_VERDICT_NON_FINITE: i32 = 1;
/// The probe loss rose beyond the rule: undo the nowcast.
pub const NINO_VERDICT_LOSS_ROSE: i32 = 2;
/// The deferred verdict: the loss at the next recorded state is worse than before the nowcast.
pub const NINO_VERDICT_WORSE_LATER: i32 = 3;
/// Nowcasting has stopped (the core's patience rule; not returned by these functions).
pub const NINO_VERDICT_RETIRED: i32 = 4;

/// When a nowcast is undone: `probe > max_ratio * baseline + max_increase`, or anything non-finite.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct NinoRule {
    /// Largest accepted ratio of the loss after to the loss before (> 0).
    pub max_ratio: f32,
    /// Absolute slack added to the threshold (>= 0).
    pub max_increase: f32,
}

/// Hyper-parameters of Adam / AdamW (PyTorch's semantics; weight decay 0 is Adam).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct NinoAdam {
    /// Learning rate, >= 0 (nino's tasks: 0.006).
    pub lr: f32,
    /// Decay of the first moment, in [0, 1) (PyTorch: 0.9).
    pub beta1: f32,
    /// Decay of the second moment, in [0, 1) (PyTorch: 0.999).
    pub beta2: f32,
    /// Added to the denominator, >= 0 (PyTorch: 1e-8).
    pub eps: f32,
    /// Decoupled weight decay, >= 0 (AdamW; 0 is Adam).
    pub weight_decay: f32,
}

/// The ABI's code of a verdict.
const fn verdict_code(v: Verdict) -> i32 {
    match v {
        Verdict::Keep => NINO_VERDICT_KEEP,
        Verdict::NonFinite => NINO_VERDICT_NON_FINITE,
        Verdict::LossRose => NINO_VERDICT_LOSS_ROSE,
        Verdict::WorseLater => NINO_VERDICT_WORSE_LATER,
        Verdict::Retired => NINO_VERDICT_RETIRED,
    }
}

/// The rule at `rule`, or `default` for null; a rule that cannot judge (non-finite, ratio <= 0, negative
/// slack) is refused.
///
/// # Safety
/// `rule` is null or valid.
unsafe fn rule_or(rule: *const NinoRule, default: Rule) -> Result<Rule, i32> {
    if rule.is_null() {
        return Ok(default);
    }
    // SAFETY: the caller's contract.
    let r = unsafe { read(rule) }?;
    if !(r.max_ratio.is_finite() && r.max_ratio > 0.0 && r.max_increase.is_finite() && r.max_increase >= 0.0) {
        return Err(NINO_E_INVALID_ARGUMENT);
    }
    Ok(Rule { max_ratio: r.max_ratio, max_increase: r.max_increase })
}

/// Judges a nowcast right after it landed: `probe` is the loss at the new parameters `params` (`n`
/// floats), `baseline` the loss before (the window's running training loss); `rule` null is the core's
/// default (ratio 10, slack 0.1). Stores a `NINO_VERDICT_*` in `*verdict`.
///
/// # Safety
/// `rule` and `verdict` are null or valid; `params` is null or valid for `n` floats.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nino_verdict_judge(
    rule: *const NinoRule,
    baseline: f32,
    probe: f32,
    params: *const f32,
    n: usize,
    verdict: *mut i32,
) -> i32 {
    status((|| {
        // SAFETY: the caller's contract.
        let rule = unsafe { rule_or(rule, Rule::default()) }?;
        // SAFETY: the caller's contract.
        let params = unsafe { slice(params, n) }?;
        check_ptr(verdict)?;
        check_disjoint(&[span(params.as_ptr(), n)?, span(verdict, 1)?])?;
        // SAFETY: checked above; writable by the caller's contract.
        unsafe { write(verdict, verdict_code(rule.judge(baseline, probe, params))) };
        Ok(())
    })())
}

/// The deferred verdict: judges the loss `after` (at the next recorded state) against `before` (just before
/// the nowcast, same probe); `rule` null is the core's deferred default (ratio 1.05, no slack).
///
/// # Safety
/// `rule` and `verdict` are null or valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nino_verdict_judge_later(
    rule: *const NinoRule,
    before: f32,
    after: f32,
    verdict: *mut i32,
) -> i32 {
    status((|| {
        // SAFETY: the caller's contract.
        let rule = unsafe { rule_or(rule, DEFAULT_LATER) }?;
        check_ptr(verdict)?;
        // SAFETY: checked above; writable by the caller's contract.
        unsafe { write(verdict, verdict_code(rule.judge_later(before, after))) };
        Ok(())
    })())
}

/// 1 when `verdict` undoes the nowcast (restore the snapshot), 0 when it keeps it, `NINO_E_INVALID_ARGUMENT`
/// for a value that is no verdict.
#[unsafe(no_mangle)]
pub extern "C" fn nino_verdict_rolls_back(verdict: i32) -> i32 {
    let all = [Verdict::Keep, Verdict::NonFinite, Verdict::LossRose, Verdict::WorseLater, Verdict::Retired];
    all.into_iter().find(|&v| verdict_code(v) == verdict).map_or(NINO_E_INVALID_ARGUMENT, |v| v.rolls_back() as i32)
}

/// One Adam step in place over `n` parameters: `params`, their gradient `grad` and Adam's moments `m`, `v`
/// (zeros for a fresh optimizer) must be distinct buffers; `*t` is the step counter (0 for a fresh
/// optimizer), incremented first as PyTorch does.
///
/// # Safety
/// `adam` and `t` are null or valid; the buffers are null or valid for `n` floats.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nino_adam_step(
    adam: *const NinoAdam,
    params: *mut f32,
    grad: *const f32,
    m: *mut f32,
    v: *mut f32,
    n: usize,
    t: *mut u64,
) -> i32 {
    status((|| {
        // SAFETY: the caller's contract.
        let a = unsafe { read(adam) }?;
        let in_unit = |b: f32| (0.0..1.0).contains(&b);
        let ok = a.lr.is_finite()
            && a.lr >= 0.0
            && in_unit(a.beta1)
            && in_unit(a.beta2)
            && a.eps.is_finite()
            && a.eps >= 0.0
            && a.weight_decay.is_finite()
            && a.weight_decay >= 0.0;
        if !ok {
            return Err(NINO_E_INVALID_ARGUMENT);
        }
        // SAFETY: the caller's contract.
        let mut step = unsafe { read(t) }?;
        let (params_c, grad_c, m_c, v_c) = (params.cast_const(), grad, m.cast_const(), v.cast_const());
        [params_c, grad_c, m_c, v_c].into_iter().try_for_each(check_ptr)?;
        check_disjoint(&[span(params_c, n)?, span(grad, n)?, span(m_c, n)?, span(v_c, n)?, span(t, 1)?])?;
        // SAFETY: the caller's contract; the four buffers are disjoint (checked).
        let (params, grad, m, v) =
            unsafe { (slice_mut(params, n)?, slice(grad, n)?, slice_mut(m, n)?, slice_mut(v, n)?) };
        let cfg = AdamConfig { lr: a.lr, beta1: a.beta1, beta2: a.beta2, eps: a.eps, weight_decay: a.weight_decay };
        adam_step(&cfg, params, grad, m, v, &mut step).map_err(|e| code(e, NINO_E_INVALID_ARGUMENT))?;
        // SAFETY: checked by `read`; writable by the caller's contract.
        unsafe { write(t, step) };
        Ok(())
    })())
}
