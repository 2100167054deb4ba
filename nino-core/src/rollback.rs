//! Undoing a nowcast that hurts training: one snapshot of the state a nowcast changes, and the rule
//! that decides whether to restore it.
//!
//! A nowcast overwrites the parameters and nothing else: Adam's moments and step counter are left as
//! they were (NINO_REFERENCE.md 5.2, quirk Q8). So restoring the parameters restores the whole training
//! state exactly, and the snapshot needs `P` floats, not the `3P` a copy of the optimizer would take.

use crate::error::{Error, check_len};

/// Floats of caller memory a [`Snapshot`] of a `params`-parameter network holds.
pub const fn snapshot_len(params: usize) -> usize {
    params
}

/// One saved parameter vector in caller-owned memory.
#[derive(Debug)]
pub struct Snapshot<'a> {
    buf: &'a mut [f32],
    valid: bool,
}

impl<'a> Snapshot<'a> {
    /// Wraps a buffer of [`snapshot_len`] floats.
    pub fn new(buf: &'a mut [f32]) -> Snapshot<'a> {
        Snapshot { buf, valid: false }
    }

    /// Saves `params` (replacing any earlier snapshot).
    pub fn save(&mut self, params: &[f32]) -> Result<(), Error> {
        check_len("snapshot params", params.len(), self.buf.len())?;
        self.buf.copy_from_slice(params);
        self.valid = true;
        Ok(())
    }

    /// Whether a snapshot is held.
    pub const fn is_saved(&self) -> bool {
        self.valid
    }

    /// Writes the saved parameters back into `params`.
    pub fn restore(&self, params: &mut [f32]) -> Result<(), Error> {
        if !self.valid {
            return Err(Error::InvalidArgument("rollback: no snapshot saved"));
        }
        check_len("snapshot params", params.len(), self.buf.len())?;
        params.copy_from_slice(self.buf);
        Ok(())
    }

    /// Forgets the snapshot.
    pub fn clear(&mut self) {
        self.valid = false;
    }
}

/// What the rule decided about a nowcast.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Verdict {
    /// The nowcast stays.
    Keep,
    /// A parameter or the probe loss is NaN or infinite.
    NonFinite,
    /// The probe loss rose beyond the tolerance.
    LossRose,
}

impl Verdict {
    /// True when the nowcast must be undone.
    pub const fn rolls_back(self) -> bool {
        !matches!(self, Verdict::Keep)
    }
}

/// Default [`Rule::max_ratio`]. A useful nowcast raises the loss right after it landed, before Adam
/// recovers below where it was: FM-16 with the dynamic period measured 1.45 to 2.63 times the window's
/// training loss, so the rule keeps those and undoes what is broken (a x100 nowcast, a divergence).
pub const DEFAULT_MAX_RATIO: f32 = 3.0;

/// Default [`Rule::max_increase`]: keeps a nowcast whose probe loss is tiny in absolute terms.
pub const DEFAULT_MAX_INCREASE: f32 = 0.1;

/// When a nowcast is undone: `probe > max_ratio * baseline + max_increase`, or anything non-finite.
///
/// `baseline` is a loss the loop already has (the running training loss of the window before the
/// nowcast), so the check costs one probe loss when nothing goes wrong.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Rule {
    /// Largest accepted ratio of probe loss to baseline.
    pub max_ratio: f32,
    /// Absolute slack added to the threshold.
    pub max_increase: f32,
}

impl Default for Rule {
    fn default() -> Self {
        Rule { max_ratio: DEFAULT_MAX_RATIO, max_increase: DEFAULT_MAX_INCREASE }
    }
}

impl Rule {
    /// Judges a nowcast from the probe loss after it, the baseline before it, and the new parameters.
    pub fn judge(&self, baseline: f32, probe: f32, params: &[f32]) -> Verdict {
        if !probe.is_finite() || params.iter().any(|p| !p.is_finite()) {
            return Verdict::NonFinite;
        }
        if baseline.is_finite() && probe > self.max_ratio * baseline + self.max_increase {
            return Verdict::LossRose;
        }
        Verdict::Keep
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_round_trip_and_errors() {
        let mut mem = [0.0f32; snapshot_len(3)];
        let mut s = Snapshot::new(&mut mem);
        let mut p = [1.0, 2.0, 3.0];
        assert!(s.restore(&mut p).is_err());
        s.save(&p).unwrap();
        p = [f32::NAN, 9.0, 9.0];
        s.restore(&mut p).unwrap();
        assert_eq!(p, [1.0, 2.0, 3.0]);
        assert!(s.save(&[1.0]).is_err());
    }

    #[test]
    fn rule_verdicts() {
        let r = Rule { max_ratio: 1.5, max_increase: 0.1 };
        assert_eq!(r.judge(0.5, 0.8, &[1.0]), Verdict::Keep);
        assert_eq!(r.judge(0.5, 0.9, &[1.0]), Verdict::LossRose);
        assert_eq!(r.judge(0.5, 0.4, &[f32::INFINITY]), Verdict::NonFinite);
        assert_eq!(r.judge(0.5, f32::NAN, &[1.0]), Verdict::NonFinite);
        assert!(!Verdict::Keep.rolls_back() && Verdict::LossRose.rolls_back());
    }
}
