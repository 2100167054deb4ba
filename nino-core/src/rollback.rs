//! Undoing a nowcast that hurts training: one snapshot of the state a nowcast changes, and the rule
//! that decides whether to restore it.
//!
//! Two verdicts:
//! - **immediate**, right after the nowcast. A nowcast overwrites the parameters and nothing else: Adam's
//!   moments and step counter are left as they were (docs/spec.md §5.2, quirk Q8). So restoring the
//!   parameters restores the whole training state exactly, and [`Snapshot`] needs `P` floats.
//! - **deferred**, once Adam has run on from the nowcast to the next recorded state. A useful nowcast
//!   first raises the loss and pays off a few dozen steps later, so only then can a rule tell a slightly
//!   harmful nowcast from a useful one. Undoing it also undoes Adam's steps since, so [`StateSnapshot`]
//!   keeps the parameters and both of Adam's moments (`3P` floats) and the step counter.

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

    /// Wraps a buffer that still holds the snapshot saved into it earlier (`saved`), for a caller that keeps
    /// the snapshot in its own memory across calls (the C ABI); with `saved` false it is [`Snapshot::new`].
    pub fn reopen(buf: &'a mut [f32], saved: bool) -> Snapshot<'a> {
        Snapshot { buf, valid: saved }
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

/// Floats of caller memory a [`StateSnapshot`] of a `params`-parameter network holds.
pub const fn state_snapshot_len(params: usize) -> usize {
    3 * params
}

/// The training state saved by a [`StateSnapshot`], borrowed from it.
#[derive(Clone, Copy, Debug)]
pub struct SavedState<'s> {
    /// Parameters.
    pub params: &'s [f32],
    /// Adam's first moments.
    pub m: &'s [f32],
    /// Adam's second moments.
    pub v: &'s [f32],
    /// Adam's step counter.
    pub t: u64,
}

/// One saved training state (parameters, Adam's moments and step counter) for the deferred verdict,
/// over any caller-owned buffer of [`state_snapshot_len`] floats (`&mut [f32]`, a `Vec`, an array).
#[derive(Debug)]
pub struct StateSnapshot<B> {
    buf: B,
    params: usize,
    t: u64,
    valid: bool,
}

impl<B: AsRef<[f32]> + AsMut<[f32]>> StateSnapshot<B> {
    /// Wraps `buf`, which must hold [`state_snapshot_len`]`(params)` floats.
    pub fn new(buf: B, params: usize) -> Result<StateSnapshot<B>, Error> {
        check_len("state snapshot buffer", buf.as_ref().len(), state_snapshot_len(params))?;
        Ok(StateSnapshot { buf, params, t: 0, valid: false })
    }

    /// Saves the state (replacing any earlier snapshot).
    pub fn save(&mut self, params: &[f32], m: &[f32], v: &[f32], t: u64) -> Result<(), Error> {
        let n = self.params;
        check_len("state snapshot params", params.len(), n)?;
        check_len("state snapshot m", m.len(), n)?;
        check_len("state snapshot v", v.len(), n)?;
        let buf = self.buf.as_mut();
        buf[..n].copy_from_slice(params);
        buf[n..2 * n].copy_from_slice(m);
        buf[2 * n..3 * n].copy_from_slice(v);
        self.t = t;
        self.valid = true;
        Ok(())
    }

    /// The saved state, if one is held.
    pub fn saved(&self) -> Option<SavedState<'_>> {
        let n = self.params;
        let buf = self.buf.as_ref();
        self.valid.then(|| SavedState { params: &buf[..n], m: &buf[n..2 * n], v: &buf[2 * n..3 * n], t: self.t })
    }

    /// Whether a snapshot is held.
    pub const fn is_saved(&self) -> bool {
        self.valid
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
    /// Kept at first, but the probe loss at the next recorded state was worse than before the nowcast
    /// (the deferred verdict): the nowcast and Adam's steps since were undone.
    WorseLater,
    /// Not made: the deferred verdict undid the last [`Patience`] nowcasts in a row, so nowcasting stopped.
    Retired,
}

impl Verdict {
    /// True when the nowcast was undone.
    pub const fn rolls_back(self) -> bool {
        matches!(self, Verdict::NonFinite | Verdict::LossRose | Verdict::WorseLater)
    }

    /// Stable kebab-case name, for metrics and logs.
    pub const fn name(self) -> &'static str {
        match self {
            Verdict::Keep => "keep",
            Verdict::NonFinite => "non-finite",
            Verdict::LossRose => "loss-rose",
            Verdict::WorseLater => "worse-later",
            Verdict::Retired => "retired",
        }
    }
}

/// Default [`Rule`] of the deferred verdict: undo a nowcast when the probe loss at the next recorded state
/// is more than 5% above its value just before the nowcast, that is, when Adam has not recovered the
/// nowcast's cost. With 1.0, FM-16 (dynamic period, held-out probe, seed 1000) undid a nowcast whose loss
/// was 0.4% above and needed 5,400 steps instead of 4,100.
pub const DEFAULT_LATER: Rule = Rule { max_ratio: 1.05, max_increase: 0.0 };

/// Default [`Patience`]: stop nowcasting after this many nowcasts in a row undone by the deferred verdict.
pub const DEFAULT_PATIENCE: usize = 2;

/// How many nowcasts in a row the deferred verdict may undo before nowcasting stops for the run (0: never
/// stops). Each undone nowcast throws away the steps since it, so a model that no longer helps must stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Patience(pub usize);

impl Default for Patience {
    fn default() -> Self {
        Patience(DEFAULT_PATIENCE)
    }
}

impl Patience {
    /// Whether nowcasting has stopped, given every verdict so far in order.
    pub fn retired<I>(self, verdicts: I) -> bool
    where
        I: IntoIterator<Item = Verdict>,
        I::IntoIter: DoubleEndedIterator,
    {
        if self.0 == 0 {
            return false;
        }
        let mut run = 0;
        for v in verdicts.into_iter().rev() {
            match v {
                Verdict::Retired => return true,
                Verdict::WorseLater => run += 1,
                _ => break,
            }
            if run >= self.0 {
                return true;
            }
        }
        false
    }
}

/// Default [`Rule::max_ratio`]. A useful nowcast raises the loss right after it landed, before Adam
/// recovers below where it was, most after the first, long-horizon nowcast: 3.3x on the debug task and
/// 5.7x on FM-32 (seed 3000), both runs that the nowcast sped up. 10 keeps those and undoes what is
/// broken: a nowcast scaled by 1.5 (15x on the debug task) or 100, a divergence.
pub const DEFAULT_MAX_RATIO: f32 = 10.0;

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

    /// The deferred verdict: judges the probe loss `after` (at the next recorded state) against `before`
    /// (just before the nowcast, same probe batch).
    pub fn judge_later(&self, before: f32, after: f32) -> Verdict {
        if !after.is_finite() || (before.is_finite() && after > self.max_ratio * before + self.max_increase) {
            return Verdict::WorseLater;
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
        assert_eq!(mem, [1.0, 2.0, 3.0]);
        let mut p = [0.0; 3];
        assert!(Snapshot::reopen(&mut mem, false).restore(&mut p).is_err());
        Snapshot::reopen(&mut mem, true).restore(&mut p).unwrap();
        assert_eq!(p, [1.0, 2.0, 3.0]);
    }

    #[test]
    fn rule_verdicts() {
        let r = Rule { max_ratio: 1.5, max_increase: 0.1 };
        assert_eq!(r.judge(0.5, 0.8, &[1.0]), Verdict::Keep);
        assert_eq!(r.judge(0.5, 0.9, &[1.0]), Verdict::LossRose);
        assert_eq!(r.judge(0.5, 0.4, &[f32::INFINITY]), Verdict::NonFinite);
        assert_eq!(r.judge(0.5, f32::NAN, &[1.0]), Verdict::NonFinite);
        assert!(!Verdict::Keep.rolls_back() && Verdict::LossRose.rolls_back());
        assert!(Verdict::WorseLater.rolls_back() && !Verdict::Retired.rolls_back());
    }

    #[test]
    fn deferred_rule_judges_against_the_loss_before() {
        assert_eq!(DEFAULT_LATER.judge_later(0.5, 0.52), Verdict::Keep);
        assert_eq!(DEFAULT_LATER.judge_later(0.5, 0.53), Verdict::WorseLater);
        assert_eq!(DEFAULT_LATER.judge_later(0.5, f32::NAN), Verdict::WorseLater);
        let strict = Rule { max_ratio: 1.0, max_increase: 0.0 };
        assert_eq!(strict.judge_later(0.5, 0.51), Verdict::WorseLater);
        assert_eq!(Rule { max_ratio: 1.0, max_increase: 0.05 }.judge_later(0.5, 0.54), Verdict::Keep);
    }

    #[test]
    fn state_snapshot_round_trip_and_errors() {
        let mut mem = [0.0f32; state_snapshot_len(2)];
        assert!(StateSnapshot::new(&mut mem[..5], 2).is_err());
        let mut s = StateSnapshot::new(&mut mem[..], 2).unwrap();
        assert!(s.saved().is_none());
        assert!(s.save(&[1.0], &[2.0, 2.0], &[3.0, 3.0], 7).is_err());
        s.save(&[1.0, 1.5], &[2.0, 2.5], &[3.0, 3.5], 7).unwrap();
        let got = s.saved().unwrap();
        assert_eq!((got.params, got.m, got.v, got.t), (&[1.0, 1.5][..], &[2.0, 2.5][..], &[3.0, 3.5][..], 7));
        s.clear();
        assert!(!s.is_saved());
    }

    #[test]
    fn patience_stops_after_undone_nowcasts_in_a_row() {
        use Verdict::*;
        let p = Patience(2);
        assert!(!p.retired([Keep, WorseLater]));
        assert!(!p.retired([WorseLater, Keep, WorseLater]));
        assert!(p.retired([Keep, WorseLater, WorseLater]));
        assert!(p.retired([WorseLater, WorseLater, Retired]));
        // An immediate rollback is not a deferred verdict: it ends the run of them.
        assert!(!p.retired([WorseLater, LossRose]));
        assert!(!Patience(0).retired([WorseLater, WorseLater, WorseLater]));
    }
}
