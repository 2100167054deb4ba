//! When to record context states and when to nowcast: the reference's static period and NiNo++'s
//! dynamic periods that nowcast often early in training and rarely near convergence.
//!
//! Every window `j` (the stretch of training that ends in nowcast `j`) has a period `P_j`, a multiple of
//! the context length `c`. Recording `i` (1-based) of window `j` happens `i * P_j / c` steps after the
//! previous nowcast (or the start); the `c`-th recording is the nowcast itself: that step records the
//! current parameters as the newest state and replaces its Adam update by the nowcast (the reference's
//! in-loop timeline, docs/spec.md §5.2 and 9.1). With a static period this is exactly the reference.
//!
//! The progress rule also reads a measurement: the caller reports the held-out loss at each nowcast
//! ([`Timeline::report`]), and the cap on the period widens only when that loss set no new low.

use crate::error::Error;
use crate::nowcast::schedule::Schedule;

/// How the period grows from one nowcast to the next.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Period<'a> {
    /// The reference: every window lasts `period` steps.
    Static(usize),
    /// Explicit periods for windows 0, 1, ...; the last one repeats.
    List(&'a [usize]),
    /// `P_j = min(max, first * growth^j)`: frequent nowcasts early, rare ones later.
    Geometric {
        /// Period of the first window.
        first: usize,
        /// Growth factor per nowcast (>= 1).
        growth: f32,
        /// Largest period.
        max: usize,
    },
    /// The geometric rule capped at `cap` while the held-out loss keeps falling: every window whose
    /// reported loss sets no new low multiplies the cap by `growth`, up to `max`. Nowcasts stay frequent
    /// while training still gains and become rare once it has stalled, whatever the step count.
    Progress {
        /// Period of the first window.
        first: usize,
        /// Growth factor per nowcast, and of the cap per stalled window (>= 1).
        growth: f32,
        /// Largest period while the loss keeps falling.
        cap: usize,
        /// Largest period after any number of stalls.
        max: usize,
    },
}

/// The periods of the public `dynamic_period` fork of the reference, a baseline to beat.
pub const FORK_DYNAMIC: [usize; 9] = [200, 200, 400, 400, 600, 600, 800, 800, 1000];

impl Period<'static> {
    /// The reference's static period.
    pub const REFERENCE: Period<'static> = Period::Static(1000);
    /// NiNo++'s dynamic rule: 500 steps growing x1.075 per nowcast up to 1500 (docs/results/dynamic-period.md's five-seed
    /// tables; until this rule, `dynamic` was 200 growing x1.5 up to 2000).
    pub const DYNAMIC: Period<'static> = Period::Geometric { first: 500, growth: 1.075, max: 1500 };
    /// The public fork's periods ([`FORK_DYNAMIC`]).
    pub const FORK: Period<'static> = Period::List(&FORK_DYNAMIC);
    /// The progress rule's defaults: 200 steps growing x1.5, capped at the reference's 1000 while the
    /// held-out loss falls, the cap widening up to 4000 with each window where it did not.
    pub const PROGRESS: Period<'static> = Period::Progress { first: 200, growth: 1.5, cap: 1000, max: 4000 };
}

impl Period<'_> {
    /// Whether the rule needs the held-out loss reported at each nowcast ([`Timeline::report`]).
    pub const fn reads_loss(&self) -> bool {
        matches!(self, Period::Progress { .. })
    }

    /// The horizon rule a period takes unless told otherwise: the reference's counter for a static period
    /// (its exact timeline), the training fraction for the rules that nowcast more often early.
    pub const fn default_horizon(&self) -> Horizon {
        match self {
            Period::Static(_) => Horizon::Counter,
            _ => Horizon::Fraction,
        }
    }

    /// Checks the parameters (positive periods, growth >= 1, at least `ctx` steps per window).
    pub fn validate(&self, ctx: usize) -> Result<(), Error> {
        let ok = match *self {
            Period::Static(p) => p >= ctx,
            Period::List(l) => !l.is_empty() && l.iter().all(|&p| p >= ctx),
            Period::Geometric { first, growth, max } => {
                first >= ctx && max >= first && growth.is_finite() && growth >= 1.0
            }
            Period::Progress { first, growth, cap, max } => {
                first >= ctx && cap >= first && max >= cap && growth.is_finite() && growth >= 1.0
            }
        };
        if ctx == 0 || !ok {
            return Err(Error::InvalidArgument("period: every period must be at least ctx steps, growth >= 1"));
        }
        Ok(())
    }

    /// Period of window `j`, rounded down to a multiple of `ctx` so that states are evenly spaced; for
    /// the progress rule, the period while the loss keeps falling.
    pub fn period(&self, j: usize, ctx: usize) -> usize {
        self.period_after(j, 0, ctx)
    }

    /// Period of window `j` after `stalls` windows in which the reported loss set no new low (only the
    /// progress rule reads `stalls`).
    pub fn period_after(&self, j: usize, stalls: usize, ctx: usize) -> usize {
        let raw = match *self {
            Period::Static(p) => p,
            Period::List(l) => l.get(j).or(l.last()).copied().unwrap_or(ctx),
            Period::Geometric { first, growth, max } => geometric(first, growth, j, max),
            Period::Progress { first, growth, cap, max } => {
                geometric(first, growth, j, geometric(cap, growth, stalls, max))
            }
        };
        let ctx = ctx.max(1);
        (raw / ctx).max(1) * ctx
    }

    /// Number of nowcasts planned within `max_steps`, which sizes the horizon schedule.
    ///
    /// The static period keeps the reference's `max(1, max_steps / period)`; others count the windows
    /// that end within `max_steps`.
    pub fn planned_nowcasts(&self, max_steps: usize, ctx: usize) -> usize {
        if let Period::Static(p) = *self {
            return (max_steps / p.max(1)).max(1);
        }
        let (mut end, mut n) = (0usize, 0usize);
        loop {
            end = end.saturating_add(self.period(n, ctx));
            if end > max_steps || n >= max_steps {
                return n.max(1);
            }
            n += 1;
        }
    }
}

/// `min(max, first * growth^j)`, saturating instead of overflowing.
fn geometric(first: usize, growth: f32, j: usize, max: usize) -> usize {
    let g = libm::powf(growth, j.min(4096) as f32) * first as f32;
    if g.is_finite() && g < max as f32 { g as usize } else { max }
}

/// Which horizon `k` a nowcast uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Horizon {
    /// The reference: the schedule indexed by the nowcast counter and sized by the planned nowcasts.
    #[default]
    Counter,
    /// The reference curve read at the training fraction `step / max_steps`, so that a period rule that
    /// nowcasts often early still uses the horizons the reference would use at that point of training.
    Fraction,
}

/// What the training loop does at one step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Action {
    /// An ordinary optimizer step.
    Adam,
    /// Record the current parameters as a context state, then take an optimizer step.
    Record,
    /// Record the current parameters as the newest state, then nowcast instead of the optimizer step.
    Nowcast {
        /// 0-based nowcast counter.
        index: usize,
        /// Horizon, in context spacings.
        k: usize,
    },
}

/// The state machine that turns step numbers into [`Action`]s.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Timeline<'a> {
    period: Period<'a>,
    ctx: usize,
    horizons: Schedule,
    horizon: Horizon,
    max_steps: usize,
    window_start: u64,
    recorded: usize,
    nowcasts: usize,
    best: f32,
    stalls: usize,
}

impl<'a> Timeline<'a> {
    /// A timeline for `ctx` context states, a run of at most `max_steps` and a model emitting `seq_len`
    /// horizons; horizons follow the reference schedule (exponent `p = 2`) over the planned nowcasts.
    pub fn new(period: Period<'a>, ctx: usize, max_steps: usize, seq_len: usize) -> Result<Timeline<'a>, Error> {
        period.validate(ctx)?;
        let planned = period.planned_nowcasts(max_steps, ctx);
        let horizons = Schedule::new(planned, 1, seq_len, 2.0)?;
        Ok(Timeline {
            period,
            ctx,
            horizons,
            horizon: Horizon::Counter,
            max_steps,
            window_start: 0,
            recorded: 0,
            nowcasts: 0,
            best: f32::INFINITY,
            stalls: 0,
        })
    }

    /// The same timeline with another horizon rule.
    #[must_use]
    pub const fn with_horizon(mut self, horizon: Horizon) -> Self {
        self.horizon = horizon;
        self
    }

    /// The action for 1-based step `step`; call once per step, in order.
    pub fn next(&mut self, step: u64) -> Action {
        let p = self.current_period();
        let spacing = (p / self.ctx) as u64;
        let u = step.saturating_sub(self.window_start);
        if u == 0 || !u.is_multiple_of(spacing) {
            return Action::Adam;
        }
        self.recorded += 1;
        if self.recorded < self.ctx {
            return Action::Record;
        }
        let index = self.nowcasts;
        self.nowcasts += 1;
        self.recorded = 0;
        self.window_start = step;
        let k = match self.horizon {
            Horizon::Counter => self.horizons.k(index),
            Horizon::Fraction => self.horizons.k_at_fraction(step as f64 / self.max_steps.max(1) as f64),
        };
        Action::Nowcast { index, k }
    }

    /// Whether step `step` needs a forward and backward pass (false exactly when it is a nowcast).
    pub fn needs_grads(&self, step: u64) -> bool {
        let spacing = (self.current_period() / self.ctx) as u64;
        let u = step.saturating_sub(self.window_start);
        !(u > 0 && u.is_multiple_of(spacing) && self.recorded + 1 == self.ctx)
    }

    /// Number of context states recorded in the current window.
    pub const fn recorded(&self) -> usize {
        self.recorded
    }

    /// Nowcasts made so far.
    pub const fn nowcasts(&self) -> usize {
        self.nowcasts
    }

    /// Steps between context states in the current window.
    pub fn spacing(&self) -> usize {
        self.current_period() / self.ctx
    }

    /// Reports the held-out loss measured at the nowcast just made (before it was applied), which the
    /// progress rule needs to size the next window; a loss that sets no new low, or a non-finite one,
    /// counts as a stall. Other rules ignore it. Call once per nowcast, after [`Timeline::next`].
    pub fn report(&mut self, loss: f32) {
        if !matches!(self.period, Period::Progress { .. }) {
            return;
        }
        if loss.is_finite() && loss < self.best {
            self.best = loss;
        } else {
            self.stalls += 1;
        }
    }

    /// Windows in which the reported loss set no new low.
    pub const fn stalls(&self) -> usize {
        self.stalls
    }

    fn current_period(&self) -> usize {
        self.period.period_after(self.nowcasts, self.stalls, self.ctx)
    }

    /// Number of nowcasts the horizon schedule was sized for.
    pub fn planned(&self) -> usize {
        self.horizons.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(period: Period<'_>, steps: u64) -> ([u64; 64], usize, [usize; 64]) {
        let mut t = Timeline::new(period, 5, steps as usize, 40).unwrap();
        let (mut at, mut ks, mut n) = ([0u64; 64], [0usize; 64], 0);
        for s in 1..=steps {
            let grads = t.needs_grads(s);
            let a = t.next(s);
            assert_eq!(grads, !matches!(a, Action::Nowcast { .. }), "step {s}");
            if let Action::Nowcast { index, k } = a {
                assert_eq!(index, n);
                at[n] = s;
                ks[n] = k;
                n += 1;
            }
        }
        (at, n, ks)
    }

    #[test]
    fn static_period_is_the_reference_timeline() {
        // docs/spec.md §5.2: records at 200, 400, ..., nowcasts at 1000, 2000, ...; k from 5.3.
        let mut t = Timeline::new(Period::Static(1000), 5, 10_000, 40).unwrap();
        for s in 1..200 {
            assert_eq!(t.next(s), Action::Adam);
        }
        assert_eq!(t.next(200), Action::Record);
        let (at, n, ks) = run(Period::Static(1000), 10_000);
        assert_eq!(n, 10);
        assert_eq!(&at[..3], &[1000, 2000, 3000]);
        assert_eq!(&ks[..10], &[40, 33, 26, 21, 16, 11, 8, 5, 3, 1]);
    }

    #[test]
    fn fork_dynamic_periods() {
        let (at, n, ks) = run(Period::List(&FORK_DYNAMIC), 10_000);
        assert_eq!(&at[..6], &[200, 400, 800, 1200, 1800, 2400]);
        assert_eq!(n, 14);
        assert_eq!((ks[0], ks[n - 1]), (40, 1));
    }

    #[test]
    fn fraction_horizons_follow_training_progress() {
        let mut t = Timeline::new(Period::List(&FORK_DYNAMIC), 5, 10_000, 40).unwrap().with_horizon(Horizon::Fraction);
        let mut ks = [(0u64, 0usize); 16];
        let mut n = 0;
        for s in 1..=10_000 {
            if let Action::Nowcast { k, .. } = t.next(s) {
                ks[n] = (s, k);
                n += 1;
            }
        }
        // Fraction 0.02 at step 200 gives (sqrt(40) - 0.02 (sqrt(40) - 1))^2 = 38.7; at step 5000, 13.4.
        assert_eq!(ks[0], (200, 39));
        assert_eq!(ks[8], (5000, 13));
        assert!(ks[..n].windows(2).all(|w| w[0].1 >= w[1].1));
    }

    #[test]
    fn geometric_periods_grow_and_cap() {
        let g = Period::Geometric { first: 200, growth: 2.0, max: 1000 };
        assert_eq!([g.period(0, 5), g.period(1, 5), g.period(2, 5), g.period(3, 5)], [200, 400, 800, 1000]);
        assert!(Period::Geometric { first: 200, growth: 0.5, max: 1000 }.validate(5).is_err());
        assert!(Period::Static(3).validate(5).is_err());
        assert!(Period::List(&[]).validate(5).is_err());
    }

    #[test]
    fn dynamic_starts_at_500_and_grows_slowly_to_1500() {
        // 500 * 1.075^j rounded down to a multiple of the context 5: 537.5 -> 535, 577.8 -> 575, 621.1 -> 620.
        let d = Period::DYNAMIC;
        assert_eq!([d.period(0, 5), d.period(1, 5), d.period(2, 5), d.period(3, 5)], [500, 535, 575, 620]);
        assert_eq!(d.period(16, 5), 1500);
        let (at, n, _) = run(d, 10_000);
        assert_eq!(&at[..4], &[500, 1035, 1610, 2230]);
        assert_eq!(n, 12);
    }

    #[test]
    fn progress_caps_until_the_loss_stalls() {
        let rule = Period::Progress { first: 200, growth: 1.5, cap: 1000, max: 3000 };
        assert!(Period::Progress { first: 200, growth: 1.5, cap: 100, max: 3000 }.validate(5).is_err());
        assert!(Period::Progress { first: 200, growth: 1.5, cap: 1000, max: 900 }.validate(5).is_err());
        let mut t = Timeline::new(rule, 5, 20_000, 40).unwrap().with_horizon(Horizon::Fraction);
        // Falling losses: 200, 300, 450, 675, then the cap 1000; a repeat and a rise stall it (1500, 2250),
        // a new low leaves it, a NaN stalls it again (3375, held at max 3000).
        let losses = [2.0, 1.5, 1.2, 1.0, 0.9, 0.9, 0.95, 0.8, f32::NAN, 0.7];
        let (mut n, mut periods, mut last) = (0, [0u64; 10], 0u64);
        for s in 1..=20_000u64 {
            let grads = t.needs_grads(s);
            let a = t.next(s);
            assert_eq!(grads, !matches!(a, Action::Nowcast { .. }), "step {s}");
            if let Action::Nowcast { .. } = a {
                periods[n] = s - last;
                last = s;
                t.report(losses[n]);
                n += 1;
                if n == losses.len() {
                    break;
                }
            }
        }
        assert_eq!(periods, [200, 300, 450, 675, 1000, 1000, 1500, 2250, 2250, 3000]);
        assert_eq!(t.stalls(), 3);
        // Other rules ignore the reports.
        let mut s = Timeline::new(Period::Static(1000), 5, 10_000, 40).unwrap();
        s.report(f32::NAN);
        assert_eq!((s.stalls(), s.spacing()), (0, 200));
    }
}
