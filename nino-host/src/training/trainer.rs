//! The training loop: batches, Adam steps, evaluation, stopping at the target.
//!
//! [`train`] follows the vision protocol (docs/spec.md §6) except for one stated deviation: the
//! test set is evaluated every `eval_every` steps (and after the last step) instead of after every step,
//! so steps to target are multiples of `eval_every` unless training ends in between. [`FineEval`] narrows
//! that gap where it matters: it evaluates more often once the accuracy nears the target.
//!
//! NiNo plugs in through [`StepHook`]: before every step the hook sees the step number, the batch drawn
//! for it and the model, and either lets the optimizer step or replaces the parameters itself (a
//! nowcast, which counts as a step, as in the reference wrapper).
//!
//! [`train_resumable`] also hands the loop's state to a checkpoint writer every few steps ([`Checkpointing`])
//! and continues from such a state ([`LoopState`]) exactly where it stopped.

use crate::io::data::{BatchSampler, Dataset};
use crate::training::engine::Engine;
use crate::training::metrics::{EvalRow, Evaluation, FineEval, MetricsError, MetricsLog};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::time::{Duration, Instant};

/// What the loop needs from a trainable network; [`Engine`] is the real one, tests use fakes.
pub trait Model {
    /// One optimizer step on a batch; returns the batch loss before the update (may be NaN).
    fn train_step(&mut self, x: &[f32], y: &[u32]) -> Result<f32, nino_core::Error>;
    /// Loss and accuracy on a whole labelled set, parameters unchanged.
    fn evaluate(&mut self, x: &[f32], y: &[u32]) -> Result<Evaluation, nino_core::Error>;
}

impl Model for Engine {
    fn train_step(&mut self, x: &[f32], y: &[u32]) -> Result<f32, nino_core::Error> {
        Engine::train_step(self, x, y)
    }

    fn evaluate(&mut self, x: &[f32], y: &[u32]) -> Result<Evaluation, nino_core::Error> {
        Engine::evaluate(self, x, y)
    }
}

/// The batch drawn for a step, shown to a [`StepHook`].
#[derive(Clone, Copy, Debug)]
pub struct Batch<'a> {
    /// Inputs `[b, C, H, W]`, normalised.
    pub x: &'a [f32],
    /// Labels `[b]`.
    pub y: &'a [u32],
}

/// What a [`StepHook`] decided for the current step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HookAction {
    /// Run the ordinary optimizer step on the batch.
    Step,
    /// The hook undid an earlier nowcast (restored the training state saved at it, discarding the steps
    /// since: the deferred verdict); then the optimizer steps as usual. Counts as a rollback.
    StepAfterUndo,
    /// The hook replaced the parameters itself (a NiNo nowcast): the step counts, no optimizer update
    /// runs, its time goes to `nowcast_seconds`; `rolled_back` says the hook then undid the nowcast.
    Nowcast {
        /// Whether the nowcast was rejected and the previous parameters restored.
        rolled_back: bool,
    },
}

/// Error type a hook returns; boxed so hooks keep their own error enums.
pub type HookError = Box<dyn std::error::Error + Send + Sync>;

/// Called before every step; the seam where NiNo nowcasts plug into the loop.
///
/// `step` is 1-based (the reference's `step_idx + 1`). The hook may read or overwrite the model's
/// parameters; returning [`HookAction::Step`] lets the optimizer step as usual.
pub trait StepHook<M: ?Sized = Engine> {
    /// Decides the fate of step `step` (1-based), possibly changing `model`.
    fn before_step(&mut self, step: u64, batch: Batch<'_>, model: &mut M) -> Result<HookAction, HookError>;

    /// Sees the finite training loss of an ordinary step (a nowcast's rollback baseline); default: ignore.
    fn after_step(&mut self, _step: u64, _loss: f32) {}

    /// Whether a checkpoint now would let a resumed run continue exactly; false while the hook holds
    /// state it does not save (a nowcast awaiting its deferred verdict), and the loop then saves later.
    fn checkpoint_ready(&self) -> bool {
        true
    }
}

/// The hook of plain Adam training: always steps.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoHook;

impl<M: ?Sized> StepHook<M> for NoHook {
    fn before_step(&mut self, _step: u64, _batch: Batch<'_>, _model: &mut M) -> Result<HookAction, HookError> {
        Ok(HookAction::Step)
    }
}

/// Settings of one training run.
#[derive(Clone, Debug)]
pub struct TrainConfig {
    /// Most steps to run (nowcasts counted).
    pub max_steps: u64,
    /// Evaluate the test set every this many steps (and after the last one); at least 1.
    pub eval_every: u64,
    /// Stop at the first evaluation whose accuracy is at least this fraction.
    pub target: Option<f32>,
    /// Evaluate more often once near `target` (needs a target; `None`: every `eval_every` steps only).
    pub fine_eval: Option<FineEval>,
    /// Batch size.
    pub batch: usize,
    /// Seed of the batch order (epoch `e` is shuffled with `seed + e`).
    pub seed: u64,
    /// Draw a progress bar on stderr (it hides itself anyway when stderr is not a terminal).
    pub progress: bool,
}

/// Why training stopped with an error; every message fits one line and names the step.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The batch loss became NaN or infinite.
    #[error("training diverged: loss is {loss} at step {step} (try a lower --lr)")]
    NonFiniteLoss {
        /// 1-based step.
        step: u64,
        /// The loss seen.
        loss: f32,
    },
    /// The test loss became NaN or infinite.
    #[error("training diverged: test loss is {loss} at step {step} (try a lower --lr)")]
    NonFiniteTestLoss {
        /// Steps done at that evaluation.
        step: u64,
        /// The loss seen.
        loss: f32,
    },
    /// The engine refused its inputs.
    #[error("engine error at step {step}: {source}")]
    Engine {
        /// 1-based step (0 for the initial evaluation).
        step: u64,
        /// The core error.
        source: nino_core::Error,
    },
    /// The step hook failed.
    #[error("step hook failed at step {step}: {source}")]
    Hook {
        /// 1-based step.
        step: u64,
        /// The hook's error.
        source: HookError,
    },
    /// The metrics file could not be written.
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    /// The checkpoint could not be written.
    #[error("cannot write the checkpoint after step {step}: {source}")]
    Checkpoint {
        /// Steps done.
        step: u64,
        /// Why.
        source: HookError,
    },
    /// The configuration cannot run (zero batch, zero eval interval, empty split).
    #[error("invalid training setup: {0}")]
    Config(&'static str),
}

/// What a finished run produced.
#[derive(Clone, Debug, Default)]
pub struct TrainReport {
    /// One row per evaluation.
    pub rows: Vec<EvalRow>,
    /// Steps done (nowcasts counted).
    pub steps_run: u64,
    /// Step of the first evaluation at or above the target.
    pub steps_to_target: Option<u64>,
    /// Time in optimizer steps (batch gathering included).
    pub train_seconds: f64,
    /// Time in evaluations.
    pub eval_seconds: f64,
    /// Time in nowcasts.
    pub nowcast_seconds: f64,
    /// Whole loop.
    pub wall_seconds: f64,
    /// Nowcasts done.
    pub nowcasts: u64,
    /// Nowcasts undone.
    pub rollbacks: u64,
    /// Training stopped at [`Checkpointing::stop_after`], before its end (a test's stand-in for a crash).
    pub interrupted: bool,
}

impl TrainReport {
    /// Accuracy of the last evaluation.
    pub fn final_accuracy(&self) -> f32 {
        self.rows.last().map_or(0.0, |r| r.test_accuracy)
    }

    /// Best accuracy of any evaluation.
    pub fn best_accuracy(&self) -> f32 {
        self.rows.iter().map(|r| r.test_accuracy).fold(0.0, f32::max)
    }
}

/// Where the loop stands after a step: everything a checkpoint needs besides the model and the hook.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LoopState {
    /// Steps done (nowcasts counted).
    pub step: u64,
    /// Every evaluation so far.
    pub rows: Vec<EvalRow>,
    /// Sum of the training losses since the last evaluation (the next row's `train_loss`).
    pub loss_sum: f64,
    /// Number of losses in `loss_sum`.
    pub loss_n: u64,
    /// Epoch of the batch sampler (a check: the sampler is restored by drawing `step` batches again).
    pub sampler_epoch: u64,
    /// Nowcasts done.
    pub nowcasts: u64,
    /// Nowcasts undone.
    pub rollbacks: u64,
    /// Step at which the target was reached (training is over then).
    pub steps_to_target: Option<u64>,
    /// Time in optimizer steps so far.
    pub train_seconds: f64,
    /// Time in evaluations so far.
    pub eval_seconds: f64,
    /// Time in nowcasts so far.
    pub nowcast_seconds: f64,
    /// Wall time of the loop so far.
    pub wall_seconds: f64,
}

/// Writes checkpoints for [`train_resumable`]: after every `every`-th step and after the last one.
pub struct Checkpointing<'a, M: ?Sized, H: ?Sized> {
    /// Steps between checkpoints (at least 1).
    pub every: u64,
    /// Stop after this step, right after its checkpoint, as if the process had been killed (tests).
    pub stop_after: Option<u64>,
    /// Saves the loop state with the model and the hook (e.g. to a file, atomically).
    pub save: &'a mut dyn FnMut(&LoopState, &M, &H) -> Result<(), HookError>,
}

fn duration(secs: f64) -> Duration {
    Duration::try_from_secs_f64(secs).unwrap_or(Duration::ZERO)
}

fn progress_bar(cfg: &TrainConfig) -> ProgressBar {
    if !cfg.progress {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::with_draw_target(Some(cfg.max_steps), ProgressDrawTarget::stderr());
    if let Ok(style) =
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] step {pos}/{len} {msg} ({per_sec}, eta {eta})")
    {
        pb.set_style(style.progress_chars("=> "));
    }
    pb
}

/// Running state of one call of [`train`].
struct Run<'m> {
    rep: TrainReport,
    start: Instant,
    /// Wall time of the loop before a resume.
    wall_before: f64,
    t_train: Duration,
    t_eval: Duration,
    t_nowcast: Duration,
    loss_sum: f64,
    loss_n: u64,
    metrics: Option<&'m mut MetricsLog>,
}

impl Run<'_> {
    /// Evaluates the test set after `step` steps, records the row, returns the accuracy.
    fn evaluate<M: Model + ?Sized>(&mut self, model: &mut M, test: &Dataset, step: u64) -> Result<f32, TrainError> {
        let t0 = Instant::now();
        let e = model.evaluate(&test.images, &test.labels).map_err(|source| TrainError::Engine { step, source })?;
        self.t_eval += t0.elapsed();
        if !e.loss.is_finite() {
            return Err(TrainError::NonFiniteTestLoss { step, loss: e.loss });
        }
        let row = EvalRow {
            step,
            train_loss: (self.loss_n > 0).then(|| (self.loss_sum / self.loss_n as f64) as f32),
            test_loss: e.loss,
            test_accuracy: e.accuracy(),
            train_seconds: self.t_train.as_secs_f64(),
            eval_seconds: self.t_eval.as_secs_f64(),
            wall_seconds: self.wall(),
        };
        (self.loss_sum, self.loss_n) = (0.0, 0);
        if let Some(m) = self.metrics.as_deref_mut() {
            m.push(row.clone())?;
        }
        self.rep.rows.push(row);
        Ok(e.accuracy())
    }

    /// Wall time of the loop, resumed runs included.
    fn wall(&self) -> f64 {
        self.wall_before + self.start.elapsed().as_secs_f64()
    }

    /// The state a checkpoint after `step` holds.
    fn state(&self, step: u64, sampler: &BatchSampler) -> LoopState {
        LoopState {
            step,
            rows: self.rep.rows.clone(),
            loss_sum: self.loss_sum,
            loss_n: self.loss_n,
            sampler_epoch: sampler.epoch(),
            nowcasts: self.rep.nowcasts,
            rollbacks: self.rep.rollbacks,
            steps_to_target: self.rep.steps_to_target,
            train_seconds: self.t_train.as_secs_f64(),
            eval_seconds: self.t_eval.as_secs_f64(),
            nowcast_seconds: self.t_nowcast.as_secs_f64(),
            wall_seconds: self.wall(),
        }
    }

    /// Runs the step loop from step `first`; `train` keeps the progress bar's bookkeeping apart.
    #[allow(clippy::too_many_arguments)]
    fn steps<M: Model + ?Sized, H: StepHook<M> + ?Sized>(
        &mut self,
        model: &mut M,
        data: (&Dataset, &Dataset),
        cfg: &TrainConfig,
        hook: &mut H,
        sampler: &mut BatchSampler,
        first: u64,
        mut checkpoints: Option<Checkpointing<'_, M, H>>,
        pb: &ProgressBar,
    ) -> Result<(), TrainError> {
        let (train, test) = data;
        let (mut x, mut y) = (Vec::new(), Vec::new());
        let mut last_loss = f32::NAN;
        let mut last_acc: Option<f32> = None;
        let mut checkpoint_due = false;
        // The fine interval, once an evaluation has come near the target (found again in the rows on resume).
        let fine_after = |acc: f32| match (cfg.fine_eval, cfg.target) {
            (Some(f), Some(t)) if f.near(acc, t) => Some(f.every),
            _ => None,
        };
        let mut fine_every = self.rep.rows.iter().find_map(|r| fine_after(r.test_accuracy));
        for step in first..=cfg.max_steps {
            let t0 = Instant::now();
            train.gather(sampler.next_batch(), &mut x, &mut y);
            let gather = t0.elapsed();
            let t1 = Instant::now();
            let action = hook
                .before_step(step, Batch { x: &x, y: &y }, model)
                .map_err(|source| TrainError::Hook { step, source })?;
            match action {
                HookAction::Step | HookAction::StepAfterUndo => {
                    self.rep.rollbacks += u64::from(action == HookAction::StepAfterUndo);
                    let loss = model.train_step(&x, &y).map_err(|source| TrainError::Engine { step, source })?;
                    self.t_train += gather + t1.elapsed();
                    if !loss.is_finite() {
                        return Err(TrainError::NonFiniteLoss { step, loss });
                    }
                    hook.after_step(step, loss);
                    self.loss_sum += f64::from(loss);
                    self.loss_n += 1;
                    last_loss = loss;
                }
                HookAction::Nowcast { rolled_back } => {
                    self.t_train += gather;
                    self.t_nowcast += t1.elapsed();
                    self.rep.nowcasts += 1;
                    self.rep.rollbacks += u64::from(rolled_back);
                }
            }
            self.rep.steps_run = step;
            let evaluated =
                step % cfg.eval_every == 0 || step == cfg.max_steps || fine_every.is_some_and(|n| step % n == 0);
            let mut reached = false;
            if evaluated {
                let acc = self.evaluate(model, test, step)?;
                last_acc = Some(acc);
                fine_every = fine_every.or_else(|| fine_after(acc));
                if cfg.target.is_some_and(|t| acc >= t) {
                    self.rep.steps_to_target = Some(step);
                    reached = true;
                }
            }
            if let Some(ck) = checkpoints.as_mut() {
                checkpoint_due |= step % ck.every == 0 || ck.stop_after == Some(step);
                // The run's end is saved even with a verdict pending: nothing continues from it.
                if reached || step == cfg.max_steps || (checkpoint_due && hook.checkpoint_ready()) {
                    let state = self.state(step, sampler);
                    (ck.save)(&state, model, hook).map_err(|source| TrainError::Checkpoint { step, source })?;
                    checkpoint_due = false;
                }
                if ck.stop_after == Some(step) && !reached && step < cfg.max_steps {
                    self.rep.interrupted = true;
                    reached = true;
                }
            }
            pb.set_position(step);
            if reached {
                return Ok(());
            }
            if !pb.is_hidden() {
                pb.set_message(match last_acc {
                    Some(a) => format!("loss {last_loss:.4}, test acc {:.2}%", 100.0 * a),
                    None => format!("loss {last_loss:.4}"),
                });
            }
        }
        if self.rep.rows.is_empty() {
            // No step ran (max_steps 0): report the initial parameters.
            let acc = self.evaluate(model, test, 0)?;
            if cfg.target.is_some_and(|t| acc >= t) {
                self.rep.steps_to_target = Some(0);
            }
        }
        Ok(())
    }
}

/// Trains `model` on `train` with the hook's say before each step, evaluating on `test`; stops at
/// `cfg.max_steps` or at the target. Rows go to `metrics` (rewritten atomically) as they come.
pub fn train<M: Model + ?Sized>(
    model: &mut M,
    train: &Dataset,
    test: &Dataset,
    cfg: &TrainConfig,
    hook: &mut dyn StepHook<M>,
    metrics: Option<&mut MetricsLog>,
) -> Result<TrainReport, TrainError> {
    train_resumable(model, (train, test), cfg, hook, metrics, None, None)
}

/// [`train`], continuing from `resume` (the state a checkpoint saved; the caller has restored the model
/// and the hook to that step) and saving checkpoints as `checkpoints` says.
///
/// The batch sampler is restored by drawing the `resume.step` batches again (its order is a function of
/// the seed and the number of batches drawn), so a resumed run sees exactly the batches an uninterrupted
/// one would. `metrics` should already hold `resume.rows`.
pub fn train_resumable<M: Model + ?Sized, H: StepHook<M> + ?Sized>(
    model: &mut M,
    data: (&Dataset, &Dataset),
    cfg: &TrainConfig,
    hook: &mut H,
    metrics: Option<&mut MetricsLog>,
    resume: Option<LoopState>,
    checkpoints: Option<Checkpointing<'_, M, H>>,
) -> Result<TrainReport, TrainError> {
    let (train, test) = data;
    if cfg.eval_every == 0 || cfg.fine_eval.is_some_and(|f| f.every == 0) {
        return Err(TrainError::Config("the evaluation interval must be at least 1"));
    }
    if cfg.fine_eval.is_some_and(|f| f.margin.is_nan() || f.margin < 0.0) {
        return Err(TrainError::Config("the fine evaluation's margin must be a number of at least 0"));
    }
    if checkpoints.as_ref().is_some_and(|c| c.every == 0) {
        return Err(TrainError::Config("the checkpoint interval must be at least 1"));
    }
    if test.is_empty() {
        return Err(TrainError::Config("the test set is empty"));
    }
    let mut sampler = BatchSampler::new(train.len(), cfg.batch, cfg.seed)
        .ok_or(TrainError::Config("the batch size and the training set must be non-empty"))?;
    let state = resume.unwrap_or_default();
    if state.step > cfg.max_steps {
        return Err(TrainError::Config("the checkpoint is past the last step"));
    }
    for _ in 0..state.step {
        sampler.next_batch();
    }
    if state.step > 0 && sampler.epoch() != state.sampler_epoch {
        return Err(TrainError::Config("the checkpoint's batch sampler is at another epoch than this data gives"));
    }
    let pb = progress_bar(cfg);
    pb.set_position(state.step);
    let mut run = Run {
        rep: TrainReport {
            rows: state.rows,
            steps_run: state.step,
            steps_to_target: state.steps_to_target,
            nowcasts: state.nowcasts,
            rollbacks: state.rollbacks,
            ..TrainReport::default()
        },
        start: Instant::now(),
        wall_before: state.wall_seconds,
        t_train: duration(state.train_seconds),
        t_eval: duration(state.eval_seconds),
        t_nowcast: duration(state.nowcast_seconds),
        loss_sum: state.loss_sum,
        loss_n: state.loss_n,
        metrics,
    };
    let result = if state.steps_to_target.is_some() {
        Ok(())
    } else {
        run.steps(model, (train, test), cfg, hook, &mut sampler, state.step + 1, checkpoints, &pb)
    };
    match result {
        Ok(()) => pb.finish_and_clear(),
        Err(e) => {
            pb.abandon();
            return Err(e);
        }
    }
    let wall = run.wall();
    let mut rep = run.rep;
    rep.train_seconds = run.t_train.as_secs_f64();
    rep.eval_seconds = run.t_eval.as_secs_f64();
    rep.nowcast_seconds = run.t_nowcast.as_secs_f64();
    rep.wall_seconds = wall;
    Ok(rep)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nino_core::InputShape;

    /// A fake model whose accuracy rises by `gain` per optimizer step; it records what it was fed.
    struct Fake {
        steps: u64,
        gain: f32,
        nan_at: Option<u64>,
        batch_sizes: Vec<usize>,
        /// First input value of every batch: names its first example (`data` numbers the values).
        firsts: Vec<f32>,
        evals: u32,
    }

    impl Fake {
        fn new(gain: f32) -> Fake {
            Fake { steps: 0, gain, nan_at: None, batch_sizes: Vec::new(), firsts: Vec::new(), evals: 0 }
        }
    }

    impl Model for Fake {
        fn train_step(&mut self, x: &[f32], y: &[u32]) -> Result<f32, nino_core::Error> {
            assert_eq!(x.len(), y.len() * 4);
            self.steps += 1;
            self.batch_sizes.push(y.len());
            self.firsts.push(x[0]);
            Ok(if self.nan_at == Some(self.steps) { f32::NAN } else { 1.0 / self.steps as f32 })
        }

        fn evaluate(&mut self, _x: &[f32], y: &[u32]) -> Result<Evaluation, nino_core::Error> {
            self.evals += 1;
            let acc = (self.steps as f32 * self.gain).min(1.0);
            Ok(Evaluation { loss: 1.0 - acc, correct: (acc * y.len() as f32).round() as usize, total: y.len() })
        }
    }

    fn data(n: usize) -> Dataset {
        Dataset {
            shape: InputShape { channels: 1, height: 2, width: 2 },
            images: (0..n * 4).map(|i| i as f32).collect(),
            labels: (0..n as u32).map(|i| i % 3).collect(),
        }
    }

    fn cfg(max_steps: u64, eval_every: u64, target: Option<f32>) -> TrainConfig {
        TrainConfig { max_steps, eval_every, target, fine_eval: None, batch: 8, seed: 1, progress: false }
    }

    #[test]
    fn evaluates_on_schedule_and_at_the_end() {
        let (tr, te) = (data(20), data(100));
        let mut m = Fake::new(0.001);
        let rep = train(&mut m, &tr, &te, &cfg(25, 10, None), &mut NoHook, None).unwrap();
        let steps: Vec<u64> = rep.rows.iter().map(|r| r.step).collect();
        assert_eq!(steps, vec![10, 20, 25]);
        assert_eq!(rep.steps_run, 25);
        assert_eq!(rep.steps_to_target, None);
        // 20 examples, batch 8: 8, 8, 4 per epoch, partial batch kept.
        assert_eq!(&m.batch_sizes[..6], &[8, 8, 4, 8, 8, 4]);
        // Running mean of the train losses 1/k for k in 21..=25.
        let mean = (21..=25).map(|k| 1.0 / k as f64).sum::<f64>() / 5.0;
        assert!((rep.rows[2].train_loss.unwrap() as f64 - mean).abs() < 1e-6);
        assert!(rep.rows.windows(2).all(|w| w[0].wall_seconds <= w[1].wall_seconds));
    }

    #[test]
    fn stops_at_target() {
        let (tr, te) = (data(20), data(100));
        let mut m = Fake::new(0.01);
        let rep = train(&mut m, &tr, &te, &cfg(1000, 5, Some(0.7)), &mut NoHook, None).unwrap();
        assert_eq!(rep.steps_to_target, Some(70));
        assert_eq!(rep.steps_run, 70);
        assert_eq!(m.steps, 70);
        assert!((rep.final_accuracy() - 0.7).abs() < 1e-6);
        assert!((rep.best_accuracy() - 0.7).abs() < 1e-6);
    }

    #[test]
    fn non_finite_loss_names_the_step() {
        let (tr, te) = (data(20), data(10));
        let mut m = Fake::new(0.01);
        m.nan_at = Some(13);
        let e = train(&mut m, &tr, &te, &cfg(100, 5, None), &mut NoHook, None).unwrap_err();
        assert!(matches!(e, TrainError::NonFiniteLoss { step: 13, .. }), "{e}");
        assert!(e.to_string().contains("step 13"));
    }

    /// Nowcasts every 4th step, undoing every second one.
    struct EveryFourth(u64);

    impl StepHook<Fake> for EveryFourth {
        fn before_step(&mut self, step: u64, batch: Batch<'_>, _m: &mut Fake) -> Result<HookAction, HookError> {
            assert_eq!(batch.x.len(), batch.y.len() * 4);
            if step == 99 {
                return Err("boom".into());
            }
            if step.is_multiple_of(4) {
                self.0 += 1;
                return Ok(HookAction::Nowcast { rolled_back: self.0.is_multiple_of(2) });
            }
            Ok(HookAction::Step)
        }
    }

    #[test]
    fn hook_nowcasts_count_as_steps_without_optimizer_updates() {
        let (tr, te) = (data(20), data(10));
        let mut m = Fake::new(0.0);
        let rep = train(&mut m, &tr, &te, &cfg(40, 40, None), &mut EveryFourth(0), None).unwrap();
        assert_eq!(rep.steps_run, 40);
        assert_eq!(rep.nowcasts, 10);
        assert_eq!(rep.rollbacks, 5);
        assert_eq!(m.steps, 30);
        let e = train(&mut Fake::new(0.0), &tr, &te, &cfg(200, 40, None), &mut EveryFourth(0), None).unwrap_err();
        assert!(matches!(e, TrainError::Hook { step: 99, .. }), "{e}");
    }

    /// Holds a verdict pending from step 5 to step 12, then undoes the nowcast it judged.
    struct Deferred;

    impl StepHook<Fake> for Deferred {
        fn before_step(&mut self, step: u64, _b: Batch<'_>, _m: &mut Fake) -> Result<HookAction, HookError> {
            Ok(match step {
                5 => HookAction::Nowcast { rolled_back: false },
                12 => HookAction::StepAfterUndo,
                _ => HookAction::Step,
            })
        }

        fn checkpoint_ready(&self) -> bool {
            false
        }
    }

    #[test]
    fn deferred_undo_counts_and_checkpoints_wait_for_the_verdict() {
        let (tr, te) = (data(20), data(10));
        let c = cfg(20, 5, None);
        let mut m = Fake::new(0.0);
        let mut saved = Vec::new();
        let mut save = |s: &LoopState, _: &Fake, _: &Deferred| -> Result<(), HookError> {
            saved.push(s.step);
            Ok(())
        };
        let ck = Checkpointing { every: 4, stop_after: None, save: &mut save };
        let rep = train_resumable(&mut m, (&tr, &te), &c, &mut Deferred, None, None, Some(ck)).unwrap();
        assert_eq!((rep.nowcasts, rep.rollbacks, m.steps), (1, 1, 19));
        // A hook that is never ready only gets the run's end saved.
        assert_eq!(saved, [20]);
    }

    #[test]
    fn metrics_file_gets_every_row() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.jsonl");
        let mut log = MetricsLog::new(&p).unwrap();
        let (tr, te) = (data(20), data(10));
        train(&mut Fake::new(0.01), &tr, &te, &cfg(30, 10, None), &mut NoHook, Some(&mut log)).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap().lines().count(), 3);
    }

    /// The rows without their timing columns.
    fn values(rows: &[EvalRow]) -> Vec<(u64, Option<f32>, f32, f32)> {
        rows.iter().map(|r| (r.step, r.train_loss, r.test_loss, r.test_accuracy)).collect()
    }

    #[test]
    fn resuming_a_checkpoint_continues_exactly() {
        let (tr, te) = (data(20), data(100));
        let c = cfg(37, 5, None);
        let mut whole = Fake::new(0.01);
        let full = train(&mut whole, &tr, &te, &c, &mut NoHook, None).unwrap();

        let mut saved = Vec::new();
        let mut first = Fake::new(0.01);
        let mut save = |s: &LoopState, m: &Fake, _: &NoHook| -> Result<(), HookError> {
            saved.push((s.clone(), m.steps));
            Ok(())
        };
        let ck = Checkpointing { every: 7, stop_after: Some(23), save: &mut save };
        let rep = train_resumable(&mut first, (&tr, &te), &c, &mut NoHook, None, None, Some(ck)).unwrap();
        assert!(rep.interrupted && rep.steps_run == 23);
        // Every 7th step, and the step it was told to stop at.
        assert_eq!(saved.iter().map(|s| s.0.step).collect::<Vec<_>>(), [7, 14, 21, 23]);
        let (state, steps) = saved.pop().unwrap();
        assert_eq!((state.loss_n, state.rows.len(), state.sampler_epoch), (3, 4, 7));

        let mut second = Fake::new(0.01);
        second.steps = steps;
        let rep = train_resumable(&mut second, (&tr, &te), &c, &mut NoHook, None, Some(state), None).unwrap();
        assert!(!rep.interrupted);
        assert_eq!(rep.steps_run, 37);
        // Same rows (the train loss at step 25 mixes losses from before and after the stop), same batches.
        assert_eq!(values(&rep.rows), values(&full.rows));
        assert_eq!([&first.firsts[..], &second.firsts[..]].concat(), whole.firsts);
    }

    #[test]
    fn resuming_a_finished_run_only_reports_it() {
        let (tr, te) = (data(20), data(100));
        let c = cfg(1000, 5, Some(0.7));
        let mut last = None;
        let mut save = |s: &LoopState, _: &Fake, _: &NoHook| -> Result<(), HookError> {
            last = Some(s.clone());
            Ok(())
        };
        let ck = Checkpointing { every: 1000, stop_after: None, save: &mut save };
        let rep = train_resumable(&mut Fake::new(0.01), (&tr, &te), &c, &mut NoHook, None, None, Some(ck)).unwrap();
        let state = last.expect("a checkpoint at the target");
        assert_eq!((state.step, state.steps_to_target), (70, Some(70)));
        let mut m = Fake::new(0.01);
        let again = train_resumable(&mut m, (&tr, &te), &c, &mut NoHook, None, Some(state), None).unwrap();
        assert_eq!((m.steps, m.evals), (0, 0));
        assert_eq!((again.steps_to_target, values(&again.rows)), (rep.steps_to_target, values(&rep.rows)));
    }

    fn fine(every: u64, margin: f32) -> Option<FineEval> {
        Some(FineEval { every, margin })
    }

    #[test]
    fn fine_evaluation_starts_near_the_target() {
        let (tr, te) = (data(20), data(100));
        let steps = |rows: &[EvalRow]| rows.iter().map(|r| r.step).collect::<Vec<_>>();
        // Accuracy is steps / 1000: 0.50 at step 500 is within 0.05 of 0.525, so evaluations go every 10 steps.
        let mut c = cfg(1000, 100, Some(0.525));
        let coarse = train(&mut Fake::new(0.001), &tr, &te, &c, &mut NoHook, None).unwrap();
        assert_eq!(coarse.steps_to_target, Some(600));
        c.fine_eval = fine(10, 0.05);
        let rep = train(&mut Fake::new(0.001), &tr, &te, &c, &mut NoHook, None).unwrap();
        assert_eq!(steps(&rep.rows), [100, 200, 300, 400, 500, 510, 520, 530]);
        assert_eq!(rep.steps_to_target, Some(530));
        // A margin that 0.50 misses keeps the coarse schedule until a coarse evaluation gets there.
        c.fine_eval = fine(10, 0.01);
        let rep = train(&mut Fake::new(0.001), &tr, &te, &c, &mut NoHook, None).unwrap();
        assert_eq!(rep.steps_to_target, Some(600));
        // Without a target there is nothing to be near.
        let mut free = cfg(700, 100, None);
        free.fine_eval = fine(10, 1.0);
        let rep = train(&mut Fake::new(0.001), &tr, &te, &free, &mut NoHook, None).unwrap();
        assert_eq!(steps(&rep.rows), [100, 200, 300, 400, 500, 600, 700]);
    }

    #[test]
    fn resuming_keeps_the_fine_evaluation() {
        let (tr, te) = (data(20), data(100));
        let mut c = cfg(1000, 100, Some(0.525));
        c.fine_eval = fine(10, 0.05);
        let full = train(&mut Fake::new(0.001), &tr, &te, &c, &mut NoHook, None).unwrap();
        let mut saved = None;
        let mut save = |s: &LoopState, m: &Fake, _: &NoHook| -> Result<(), HookError> {
            saved = Some((s.clone(), m.steps));
            Ok(())
        };
        let ck = Checkpointing { every: 5, stop_after: Some(505), save: &mut save };
        let rep = train_resumable(&mut Fake::new(0.001), (&tr, &te), &c, &mut NoHook, None, None, Some(ck)).unwrap();
        assert!(rep.interrupted);
        let (state, steps) = saved.unwrap();
        let mut second = Fake::new(0.001);
        second.steps = steps;
        let rep = train_resumable(&mut second, (&tr, &te), &c, &mut NoHook, None, Some(state), None).unwrap();
        assert_eq!(values(&rep.rows), values(&full.rows));
        assert_eq!(rep.steps_to_target, Some(530));
    }

    #[test]
    fn bad_setups_are_errors_not_panics() {
        let (tr, te) = (data(20), data(10));
        let mut c = cfg(10, 0, None);
        assert!(matches!(train(&mut Fake::new(0.0), &tr, &te, &c, &mut NoHook, None), Err(TrainError::Config(_))));
        c.eval_every = 1;
        c.batch = 0;
        assert!(matches!(train(&mut Fake::new(0.0), &tr, &te, &c, &mut NoHook, None), Err(TrainError::Config(_))));
        c.batch = 4;
        assert!(train(&mut Fake::new(0.0), &data(0), &te, &c, &mut NoHook, None).is_err());
        for bad in [fine(0, 0.01), fine(10, f32::NAN), fine(10, -0.01)] {
            let c = TrainConfig { fine_eval: bad, ..c.clone() };
            assert!(matches!(train(&mut Fake::new(0.0), &tr, &te, &c, &mut NoHook, None), Err(TrainError::Config(_))));
        }
        let rep = train(&mut Fake::new(0.0), &tr, &te, &cfg(0, 5, None), &mut NoHook, None).unwrap();
        assert_eq!(rep.rows.len(), 1);
        assert_eq!(rep.rows[0].step, 0);
    }
}
