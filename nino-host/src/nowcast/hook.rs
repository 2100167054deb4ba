//! NiNo inside the training loop: records context states on the core [`Timeline`], nowcasts, writes the
//! prediction into the model, and rolls back a nowcast that hurts training.
//!
//! Costs when nothing goes wrong: one nowcast plus, with rollback on, one probe loss (a forward pass on a
//! fixed probe batch) and one copy of the parameters. The baseline the probe loss is judged against is
//! the mean training loss since the last recorded state, which the loop computes anyway.

use crate::nowcast::nowcaster::{NowcastError, Nowcaster};
use crate::training::engine::Engine;
use crate::training::metrics::NowcastRecord;
use crate::training::trainer::{Batch, HookAction, HookError, StepHook};
use nino_core::period::{Action, Horizon, Period, Timeline};
use nino_core::rollback::{Patience, Rule, Snapshot, StateSnapshot, Verdict};
use std::fmt;
use std::str::FromStr;

/// How often to nowcast, as chosen on the command line (`--period`): a core [`Period`] that parses from
/// and prints as the flag's text.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PeriodChoice(pub Period<'static>);

impl PeriodChoice {
    /// NiNo++'s default dynamic rule ([`Period::DYNAMIC`]).
    pub const DYNAMIC: PeriodChoice = PeriodChoice(Period::DYNAMIC);
    /// The public fork's periods 200, 200, 400, 400, ..., 1000.
    pub const FORK: PeriodChoice = PeriodChoice(Period::FORK);
    /// The progress rule's defaults ([`Period::PROGRESS`]).
    pub const PROGRESS: PeriodChoice = PeriodChoice(Period::PROGRESS);
    /// The reference's static period 1000.
    pub const REFERENCE: PeriodChoice = PeriodChoice(Period::REFERENCE);

    /// A static period of `steps`.
    pub const fn fixed(steps: usize) -> PeriodChoice {
        PeriodChoice(Period::Static(steps))
    }

    /// Whether the rule reads the held-out loss at each nowcast.
    pub const fn reads_progress(&self) -> bool {
        self.0.reads_loss()
    }

    /// The horizon rule: `asked`, or the period's default ([`Period::default_horizon`]).
    pub fn horizon(&self, asked: Option<Horizon>) -> Horizon {
        asked.unwrap_or(self.0.default_horizon())
    }

    /// The core period it stands for.
    pub const fn period(&self) -> Period<'static> {
        self.0
    }
}

impl fmt::Display for PeriodChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Period::Static(p) => write!(f, "{p}"),
            _ if *self == PeriodChoice::FORK => f.write_str("fork"),
            Period::List(l) => write!(f, "list {l:?}"),
            Period::Geometric { first, growth, max } if *self == PeriodChoice::DYNAMIC => {
                write!(f, "dynamic (geometric {first}x{growth} up to {max})")
            }
            Period::Geometric { first, growth, max } => write!(f, "geometric:{first}/{growth}/{max}"),
            Period::Progress { first, growth, cap, max } => write!(f, "progress:{first}/{growth}/{cap}/{max}"),
        }
    }
}

impl FromStr for PeriodChoice {
    type Err = String;

    /// Parses `1000`, `dynamic`, `fork`, `progress`, `geometric:FIRST,GROWTH,MAX` or
    /// `progress:FIRST,GROWTH,CAP,MAX` (`/` also separates, which fits in a comma-separated `--runs` list).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let bad = || {
            format!(
                "bad period `{s}`: expected a number of steps, `dynamic`, `fork`, `progress`, \
                 `geometric:FIRST,GROWTH,MAX` or `progress:FIRST,GROWTH,CAP,MAX`"
            )
        };
        match s {
            "dynamic" => return Ok(PeriodChoice::DYNAMIC),
            "fork" => return Ok(PeriodChoice::FORK),
            "progress" => return Ok(PeriodChoice::PROGRESS),
            _ => {}
        }
        let fields = |rest: &str, n: usize| -> Result<Vec<f64>, String> {
            let parts: Vec<f64> =
                rest.split([',', '/']).map(|p| p.trim().parse().map_err(|_| bad())).collect::<Result<_, _>>()?;
            if parts.len() != n || parts.iter().enumerate().any(|(i, v)| i != 1 && (v.fract() != 0.0 || *v < 0.0)) {
                return Err(bad());
            }
            Ok(parts)
        };
        if let Some(rest) = s.strip_prefix("geometric:") {
            let f = fields(rest, 3)?;
            return Ok(PeriodChoice(Period::Geometric {
                first: f[0] as usize,
                growth: f[1] as f32,
                max: f[2] as usize,
            }));
        }
        if let Some(rest) = s.strip_prefix("progress:") {
            let f = fields(rest, 4)?;
            let (first, growth, cap, max) = (f[0] as usize, f[1] as f32, f[2] as usize, f[3] as usize);
            return Ok(PeriodChoice(Period::Progress { first, growth, cap, max }));
        }
        s.parse().map(PeriodChoice::fixed).map_err(|_| bad())
    }
}

/// A deliberate fault, for the failure-injection tests: what to do to the nowcast's output.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Fault {
    /// Multiply every predicted parameter by this factor (e.g. 100).
    Scale(f32),
    /// Replace the prediction by NaN.
    Nan,
}

/// One nowcast as it happened.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NowcastEvent {
    /// 1-based step of the nowcast.
    pub step: u64,
    /// Horizon used (the retry's, if one was made).
    pub k: usize,
    /// The rollback baseline: the window's mean training loss, or the probe loss before the nowcast
    /// ([`Baseline::ProbeBefore`]).
    pub baseline: f32,
    /// Probe loss after it (NaN when rollback is off).
    pub probe: f32,
    /// Probe loss at the deferred verdict, at the next recorded state (NaN when none was taken).
    pub later: f32,
    /// What the rollback rule said.
    pub verdict: Verdict,
    /// Whether a retry with a shorter horizon was made.
    pub retried: bool,
}

impl NowcastEvent {
    /// The event as the run summary reports it (non-finite losses become `null`).
    pub fn record(&self) -> NowcastRecord {
        let finite = |x: f32| x.is_finite().then_some(x);
        NowcastRecord {
            step: self.step,
            k: self.k,
            baseline: finite(self.baseline),
            probe: finite(self.probe),
            ratio: finite(self.probe / self.baseline),
            later: finite(self.later),
            verdict: self.verdict.name(),
            retried: self.retried,
        }
    }
}

/// What the rollback rule compares the probe loss after a nowcast with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Baseline {
    /// The mean training loss of the window before the nowcast: free, since the loop computes it.
    WindowLoss,
    /// The same probe batch's loss just before the nowcast: one more probe loss per nowcast, and the
    /// only fair comparison when the probe is held-out data, whose loss sits above the training loss.
    ProbeBefore,
}

impl fmt::Display for Baseline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Baseline::WindowLoss => "the window's training loss",
            Baseline::ProbeBefore => "the probe's loss before the nowcast",
        })
    }
}

/// Settings of the hook.
#[derive(Clone, Debug)]
pub struct NinoHookConfig {
    /// The period rule.
    pub period: PeriodChoice,
    /// Horizon rule; `None` takes the period's default ([`PeriodChoice::horizon`]).
    pub horizon: Option<Horizon>,
    /// Step limit of the run (sizes the horizon schedule, as the reference's `max_train_steps`).
    pub max_steps: u64,
    /// Rollback rule; `None` keeps every nowcast, as the reference does (a NaN still aborts the nowcast).
    pub rollback: Option<Rule>,
    /// What the rule's baseline is.
    pub baseline: Baseline,
    /// After a rollback, retry once with a quarter of the horizon.
    pub retry: bool,
    /// The deferred verdict's rule, judged at the next recorded state against the probe loss just before
    /// the nowcast; `None` judges only right after the nowcast.
    pub later: Option<Rule>,
    /// Nowcasts in a row the deferred verdict may undo before nowcasting stops.
    pub patience: Patience,
    /// A fault injected into nowcasts (tests only).
    pub fault: Option<Fault>,
}

impl NinoHookConfig {
    /// The timeline these settings give a model with `ctx` states and `seq_len` horizons.
    fn timeline(&self, ctx: usize, seq_len: usize) -> Result<Timeline<'static>, nino_core::Error> {
        let t = Timeline::new(self.period.period(), ctx, self.max_steps as usize, seq_len)?;
        Ok(t.with_horizon(self.period.horizon(self.horizon)))
    }
}

/// What a checkpoint keeps of a [`NinoHook`] to continue it exactly: the context states recorded in the
/// current window, the rollback baseline being summed, and the nowcasts so far. The timeline's position
/// is not stored but replayed (it is a function of the step), and checked against these counters. The
/// immediate rollback's snapshot lives only within a nowcast step, and the loop saves no checkpoint while a
/// deferred verdict is pending ([`StepHook::checkpoint_ready`]), so a checkpoint never needs a snapshot.
#[derive(Clone, Debug, PartialEq)]
pub struct NinoState {
    /// Context length `c` (rows of `history`).
    pub ctx: usize,
    /// `[c, P]` parameter states, the first `recorded` rows valid.
    pub history: Vec<f32>,
    /// States recorded in the current window.
    pub recorded: usize,
    /// Sum of the finite training losses since the last recorded state (the rollback baseline).
    pub loss_sum: f64,
    /// Number of losses in `loss_sum`.
    pub loss_n: u64,
    /// Every nowcast made.
    pub events: Vec<NowcastEvent>,
}

/// Why a checkpoint's NiNo state does not continue this run.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The saved history has another size than this run's.
    #[error("NiNo history of {values} values in {states} states, expected {expected_values} in {expected_states}")]
    History {
        /// Values saved.
        values: usize,
        /// States saved.
        states: usize,
        /// Values this run keeps.
        expected_values: usize,
        /// States this run keeps.
        expected_states: usize,
    },
    /// This run's schedule cannot be built.
    #[error("{0}")]
    Schedule(nino_core::Error),
    /// The saved counters are not where this run's schedule is after the saved step.
    #[error(
        "NiNo state ({recorded} states recorded, {nowcasts} nowcasts) does not fit the schedule, which is at \
         {expected_recorded} and {expected_nowcasts} after step {step}"
    )]
    Counters {
        /// States recorded, saved.
        recorded: usize,
        /// Nowcasts, saved.
        nowcasts: usize,
        /// States recorded by this run's schedule.
        expected_recorded: usize,
        /// Nowcasts by this run's schedule.
        expected_nowcasts: usize,
        /// The saved step.
        step: u64,
    },
}

/// The [`StepHook`] that nowcasts with NiNo.
pub struct NinoHook {
    nowcaster: Nowcaster,
    timeline: Timeline<'static>,
    cfg: NinoHookConfig,
    params: usize,
    history: Vec<f32>,
    recorded: usize,
    out: Vec<f32>,
    snapshot: Vec<f32>,
    state_snapshot: Option<StateSnapshot<Vec<f32>>>,
    /// The probe loss before the last nowcast, while its deferred verdict is pending.
    pending: Option<f32>,
    probe: (Vec<f32>, Vec<u32>),
    loss_sum: f64,
    loss_n: u64,
    /// Every nowcast made, in order.
    pub events: Vec<NowcastEvent>,
}

impl fmt::Debug for NinoHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NinoHook").field("period", &self.cfg.period).field("events", &self.events.len()).finish()
    }
}

impl NinoHook {
    /// Wraps a ready [`Nowcaster`]; `probe` is a fixed batch `(x, y)` for the rollback's probe loss.
    pub fn new(nowcaster: Nowcaster, cfg: NinoHookConfig, probe: (Vec<f32>, Vec<u32>)) -> Result<Self, NowcastError> {
        let params = nowcaster.graph().arch().param_count();
        let ctx = nowcaster.ctx();
        let seq_len = nowcaster.config().seq_len;
        let timeline = cfg.timeline(ctx, seq_len)?;
        let invalid = |msg| Err(NowcastError::Core(nino_core::Error::InvalidArgument(msg)));
        if (cfg.rollback.is_some() || cfg.later.is_some()) && probe.1.is_empty() {
            return invalid("rollback needs a probe batch");
        }
        if cfg.later.is_some() && ctx < 2 {
            return invalid("the deferred verdict needs a model with at least 2 context states");
        }
        if cfg.period.reads_progress() && (probe.1.is_empty() || cfg.baseline != Baseline::ProbeBefore) {
            return invalid("the progress period needs a held-out probe batch, whose loss it reads at each nowcast");
        }
        let state_snapshot = match cfg.later {
            Some(_) => Some(StateSnapshot::new(vec![0.0; nino_core::rollback::state_snapshot_len(params)], params)?),
            None => None,
        };
        let immediate_only = cfg.rollback.is_some() && cfg.later.is_none();
        Ok(NinoHook {
            nowcaster,
            timeline,
            history: vec![0.0; ctx * params],
            recorded: 0,
            out: vec![0.0; params],
            snapshot: vec![0.0; if immediate_only { nino_core::rollback::snapshot_len(params) } else { 0 }],
            state_snapshot,
            pending: None,
            cfg,
            params,
            probe,
            loss_sum: 0.0,
            loss_n: 0,
            events: Vec::new(),
        })
    }

    /// Floats of the context history (`c` parameter vectors).
    pub fn history_floats(&self) -> usize {
        self.history.len()
    }

    /// Floats held for rollback: one parameter vector for the immediate verdict, the parameters and
    /// Adam's moments for the deferred one (which the immediate verdict then shares), 0 with rollback off.
    pub fn rollback_floats(&self) -> usize {
        let state = nino_core::rollback::state_snapshot_len(self.params);
        self.snapshot.len() + if self.state_snapshot.is_some() { state } else { 0 }
    }

    /// Number of nowcasts that were undone.
    pub fn rollbacks(&self) -> usize {
        self.events.iter().filter(|e| e.verdict.rolls_back()).count()
    }

    /// The state a checkpoint needs to continue this hook exactly.
    pub fn state(&self) -> NinoState {
        NinoState {
            ctx: self.nowcaster.ctx(),
            history: self.history.clone(),
            recorded: self.recorded,
            loss_sum: self.loss_sum,
            loss_n: self.loss_n,
            events: self.events.clone(),
        }
    }

    /// Continues from `state` saved after step `step` of a run with the same settings: replays the
    /// timeline to that step and checks it agrees with the saved counters.
    pub fn restore(&mut self, state: NinoState, step: u64) -> Result<(), RestoreError> {
        if state.ctx != self.nowcaster.ctx() || state.history.len() != self.history.len() {
            return Err(RestoreError::History {
                values: state.history.len(),
                states: state.ctx,
                expected_values: self.history.len(),
                expected_states: self.nowcaster.ctx(),
            });
        }
        let (ctx, seq_len) = (self.nowcaster.ctx(), self.nowcaster.config().seq_len);
        let mut timeline = self.cfg.timeline(ctx, seq_len).map_err(RestoreError::Schedule)?;
        for s in 1..=step {
            if let Action::Nowcast { index, .. } = timeline.next(s) {
                timeline.report(state.events.get(index).map_or(f32::NAN, |e| e.baseline));
            }
        }
        if timeline.recorded() != state.recorded || timeline.nowcasts() != state.events.len() {
            return Err(RestoreError::Counters {
                recorded: state.recorded,
                nowcasts: state.events.len(),
                expected_recorded: timeline.recorded(),
                expected_nowcasts: timeline.nowcasts(),
                step,
            });
        }
        self.timeline = timeline;
        self.history = state.history;
        self.recorded = state.recorded;
        (self.loss_sum, self.loss_n) = (state.loss_sum, state.loss_n);
        self.events = state.events;
        Ok(())
    }

    fn record(&mut self, params: &[f32]) {
        let row = self.recorded.min(self.nowcaster.ctx() - 1);
        self.history[row * self.params..(row + 1) * self.params].copy_from_slice(params);
        self.recorded += 1;
    }

    /// Predicts into `self.out`, applying the injected fault if any.
    fn predict(&mut self, k: usize) -> Result<(), NowcastError> {
        self.nowcaster.nowcast(&self.history, k, &mut self.out)?;
        match self.cfg.fault {
            Some(Fault::Scale(s)) => self.out.iter_mut().for_each(|p| *p *= s),
            Some(Fault::Nan) => self.out.fill(f32::NAN),
            None => {}
        }
        Ok(())
    }

    /// One attempt: predict, write, judge; restores the parameters if the rule rejects it. With the
    /// deferred verdict on, the state snapshot (saved by the caller) is the one restored.
    fn attempt(&mut self, k: usize, baseline: f32, engine: &mut Engine) -> Result<(Verdict, f32), HookError> {
        match self.predict(k) {
            Ok(()) => {}
            // The core refuses non-finite histories or predictions and leaves the parameters alone.
            Err(NowcastError::Core(nino_core::Error::NonFinite(_))) => return Ok((Verdict::NonFinite, f32::NAN)),
            Err(e) => return Err(e.into()),
        }
        let Some(rule) = self.cfg.rollback else {
            if self.out.iter().any(|p| !p.is_finite()) {
                return Ok((Verdict::NonFinite, f32::NAN));
            }
            engine.params_mut().copy_from_slice(&self.out);
            return Ok((Verdict::Keep, f32::NAN));
        };
        let mut snap = Snapshot::new(&mut self.snapshot);
        if self.state_snapshot.is_none() {
            snap.save(engine.params())?;
        }
        engine.params_mut().copy_from_slice(&self.out);
        let probe = engine.loss(&self.probe.0, &self.probe.1)?;
        let verdict = rule.judge(baseline, probe, engine.params());
        if verdict.rolls_back() {
            match self.state_snapshot.as_ref().and_then(StateSnapshot::saved) {
                Some(saved) => engine.params_mut().copy_from_slice(saved.params),
                None => snap.restore(engine.params_mut())?,
            }
        }
        Ok((verdict, probe))
    }

    /// The deferred verdict on the last nowcast, if one is pending: undoes it (and Adam's steps since)
    /// when the probe loss is now worse than before it. Returns whether it did.
    fn judge_pending(&mut self, engine: &mut Engine) -> Result<bool, HookError> {
        let (Some(before), Some(rule)) = (self.pending.take(), self.cfg.later) else {
            return Ok(false);
        };
        let after = engine.loss(&self.probe.0, &self.probe.1)?;
        let verdict = rule.judge_later(before, after);
        let snap = self.state_snapshot.as_mut().ok_or("deferred verdict without a state snapshot")?;
        if verdict.rolls_back() {
            let saved = snap.saved().ok_or("deferred verdict without a saved state")?;
            engine.params_mut().copy_from_slice(saved.params);
            engine.set_adam_state(saved.m, saved.v, saved.t)?;
        }
        snap.clear();
        if let Some(e) = self.events.last_mut() {
            e.later = after;
            if verdict.rolls_back() {
                e.verdict = verdict;
            }
        }
        Ok(verdict.rolls_back())
    }

    fn nowcast(&mut self, step: u64, k: usize, engine: &mut Engine) -> Result<HookAction, HookError> {
        if self.cfg.later.is_some() && self.cfg.patience.retired(self.events.iter().map(|e| e.verdict)) {
            self.recorded = 0;
            let (baseline, probe, later) = (f32::NAN, f32::NAN, f32::NAN);
            self.events.push(NowcastEvent {
                step,
                k,
                baseline,
                probe,
                later,
                verdict: Verdict::Retired,
                retried: false,
            });
            return Ok(HookAction::Step);
        }
        // The deferred verdict and the held-out baseline both need the probe's loss before the nowcast.
        let wants_before = self.cfg.later.is_some()
            || self.cfg.period.reads_progress()
            || (self.cfg.baseline == Baseline::ProbeBefore && self.cfg.rollback.is_some());
        let probe_before = if wants_before { Some(engine.loss(&self.probe.0, &self.probe.1)?) } else { None };
        let baseline = match (self.cfg.baseline, probe_before) {
            (Baseline::ProbeBefore, Some(b)) => b,
            _ if self.loss_n > 0 => (self.loss_sum / self.loss_n as f64) as f32,
            _ => f32::NAN,
        };
        if let Some(snap) = self.state_snapshot.as_mut() {
            let (m, v) = engine.adam_moments();
            snap.save(engine.params(), m, v, engine.adam_step_count())?;
        }
        let (mut verdict, mut probe) = self.attempt(k, baseline, engine)?;
        let mut used_k = k;
        let mut retried = false;
        if verdict.rolls_back() && self.cfg.retry && k > 1 {
            used_k = (k / 4).max(1);
            retried = true;
            (verdict, probe) = self.attempt(used_k, baseline, engine)?;
        }
        self.recorded = 0;
        self.events.push(NowcastEvent { step, k: used_k, baseline, probe, later: f32::NAN, verdict, retried });
        match (verdict.rolls_back(), self.state_snapshot.as_mut()) {
            (false, Some(_)) => self.pending = probe_before,
            (true, Some(snap)) => snap.clear(),
            _ => {}
        }
        Ok(HookAction::Nowcast { rolled_back: verdict.rolls_back() })
    }
}

impl StepHook<Engine> for NinoHook {
    fn before_step(&mut self, step: u64, _batch: Batch<'_>, engine: &mut Engine) -> Result<HookAction, HookError> {
        match self.timeline.next(step) {
            Action::Adam => Ok(HookAction::Step),
            Action::Record => {
                let undone = self.judge_pending(engine)?;
                self.record(engine.params());
                (self.loss_sum, self.loss_n) = (0.0, 0);
                Ok(if undone { HookAction::StepAfterUndo } else { HookAction::Step })
            }
            Action::Nowcast { k, .. } => {
                self.record(engine.params());
                let action = self.nowcast(step, k, engine);
                (self.loss_sum, self.loss_n) = (0.0, 0);
                // `restore` replays the same reports from the events, so a resumed run keeps its periods.
                if let Some(e) = self.events.last() {
                    self.timeline.report(e.baseline);
                }
                action
            }
        }
    }

    fn after_step(&mut self, _step: u64, loss: f32) {
        if loss.is_finite() {
            self.loss_sum += loss as f64;
            self.loss_n += 1;
        }
    }

    fn checkpoint_ready(&self) -> bool {
        self.pending.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn period_choices_parse() {
        assert_eq!("1000".parse::<PeriodChoice>().unwrap(), PeriodChoice::REFERENCE);
        assert_eq!("dynamic".parse::<PeriodChoice>().unwrap(), PeriodChoice::DYNAMIC);
        assert_eq!("fork".parse::<PeriodChoice>().unwrap(), PeriodChoice::FORK);
        assert_eq!(
            "geometric:100,2,800".parse::<PeriodChoice>().unwrap(),
            PeriodChoice(Period::Geometric { first: 100, growth: 2.0, max: 800 })
        );
        assert!("often".parse::<PeriodChoice>().is_err());
        assert!("geometric:100,x,800".parse::<PeriodChoice>().is_err());
        assert!("geometric:1,2".parse::<PeriodChoice>().is_err());
        assert!("geometric:100.5,2,800".parse::<PeriodChoice>().is_err());
        assert_eq!("progress".parse::<PeriodChoice>().unwrap(), PeriodChoice::PROGRESS);
        assert_eq!(
            "progress:100/2/800/1600".parse::<PeriodChoice>().unwrap(),
            PeriodChoice(Period::Progress { first: 100, growth: 2.0, cap: 800, max: 1600 })
        );
        assert!("progress:100/2/800".parse::<PeriodChoice>().is_err());
        let p = PeriodChoice::PROGRESS;
        assert_eq!(p.to_string().parse::<PeriodChoice>().unwrap(), p);
    }

    fn hook(rollback: Option<Rule>, later: bool) -> NinoHook {
        let arch = nino_core::Task::Debug.arch();
        let p = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/weights/nino_mlp_h32.safetensors");
        let nc = Nowcaster::new(crate::io::weights::WeightSet::load(p).unwrap(), &arch, None, false).unwrap();
        let cfg = NinoHookConfig {
            period: PeriodChoice::REFERENCE,
            horizon: None,
            max_steps: 10_000,
            rollback,
            baseline: Baseline::WindowLoss,
            retry: false,
            later: later.then_some(nino_core::rollback::DEFAULT_LATER),
            patience: Patience::default(),
            fault: None,
        };
        NinoHook::new(nc, cfg, (vec![0.0; 784], vec![0])).unwrap()
    }

    #[test]
    fn rollback_holds_one_parameter_snapshot() {
        // The nowcast leaves Adam's state alone, so one copy of the 662 debug parameters is all it keeps.
        assert_eq!(hook(Some(Rule::default()), false).rollback_floats(), 662);
        assert_eq!(hook(None, false).rollback_floats(), 0);
        // The deferred verdict keeps Adam's moments too, and the immediate verdict shares that snapshot.
        assert_eq!(hook(Some(Rule::default()), true).rollback_floats(), 3 * 662);
    }
}
