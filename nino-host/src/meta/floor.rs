//! How much better than a given model any nowcaster could be: Adam runs that share one state and then differ
//! only in their batch order.
//!
//! A nowcast from the states up to step `T` guesses where training will be at `T + k * spacing`; the batches
//! drawn after `T` are not in its input, so no model beats the best guess over them. [`branches`] trains one
//! run to `T` and continues it several times, each with its own batch order; [`floor_by_horizon`] scores a
//! model on those continuations beside two predictors that read the continuations themselves, in the
//! model's own units (the window's scaling, spec 7.2):
//! - the element-wise median of the *other* branches: a predictor that never sees the branch it is scored
//!   on, so its expected L1 is at least the best possible one (an upper bound on the floor);
//! - the median of *all* branches, the scored one included: for each element it minimises the summed L1
//!   over the branches, so its expected L1 is at most the best possible one (a lower bound).

use super::collect::{ADAM_BETAS, ADAM_EPS, TrajectoryError, adam_steps};
use super::train::{HorizonL1, MetaData, MetaTrainError, Window, WindowBuffers, build_window, predict_window};
use crate::io::collection::{FORMAT, ShardMeta, StateDtype, Trajectory};
use crate::io::data::{BatchSampler, Splits};
use crate::io::model_file::MetaModel;
use crate::training::engine::{Engine, init_params};
use nino_core::Arch;
use nino_core::adam::AdamConfig;
use nino_core::nowcast::Config;
use nino_core::nowcast::meta;
use nino_core::rng::SplitMix64;

/// What [`branches`] trains: one Adam run of `seed` to `start`, then `branches` continuations.
#[derive(Clone, Debug)]
pub struct BranchSpec {
    /// Adam's learning rate.
    pub lr: f32,
    /// Batch size.
    pub batch: usize,
    /// Seed of the initial weights and of the batch order up to `start` (that of `nino train --seed`).
    pub seed: u64,
    /// The step whose state the branches share: the last context state.
    pub start: u64,
    /// Steps between two stored states (a nowcast's context spacing).
    pub spacing: u64,
    /// Context states, the last one at `start`.
    pub ctx: usize,
    /// States stored after `start` in each branch (horizons 1 to `horizons`).
    pub horizons: usize,
    /// Continuations.
    pub branches: usize,
}

impl BranchSpec {
    /// Adam steps [`branches`] runs: the shared run plus every continuation.
    pub fn total_steps(&self) -> u64 {
        self.start + (self.branches * self.horizons) as u64 * self.spacing
    }

    /// The first context state's step; `None` when the context would start before step 0.
    fn first_context_step(&self) -> Option<u64> {
        self.start.checked_sub(self.ctx.checked_sub(1)? as u64 * self.spacing)
    }
}

/// Why [`branches`] could not run.
#[derive(Debug, thiserror::Error)]
pub enum BranchError {
    /// The spec cannot be trained.
    #[error("{0}")]
    Spec(&'static str),
    /// Training failed.
    #[error(transparent)]
    Train(#[from] TrajectoryError),
}

/// The batch-order seed of continuation `b` of the run seeded `seed`: far from every seed a user types, and
/// different for every branch.
fn branch_seed(seed: u64, b: usize) -> u64 {
    let mut rng = SplitMix64::new(seed ^ 0x6272_616e_6368_6573);
    rng.next_u64().wrapping_add(b as u64)
}

/// Trains `s`: Adam from `init_params(arch, seed)` on `nino train`'s batch order to step `start`, then
/// `branches` continuations of `horizons * spacing` steps from that state (parameters and Adam's moments),
/// each on its own batch order. Returns one trajectory per branch, states `spacing` steps apart: the `ctx`
/// shared context states, then the branch's own. `progress` is called with the steps done so far.
pub fn branches(
    arch: &Arch,
    arch_spec: &str,
    s: &BranchSpec,
    data: &Splits,
    mut progress: impl FnMut(u64),
) -> Result<Vec<Trajectory>, BranchError> {
    let first = s.first_context_step().ok_or(BranchError::Spec("the context starts before step 0"))?;
    if s.spacing == 0 || s.horizons == 0 || s.branches < 2 || s.batch == 0 {
        return Err(BranchError::Spec("spacing, horizons and batch must be at least 1, branches at least 2"));
    }
    let adam = AdamConfig { lr: s.lr, beta1: ADAM_BETAS[0], beta2: ADAM_BETAS[1], eps: ADAM_EPS, weight_decay: 0.0 };
    let engine_error = |e| BranchError::Train(TrajectoryError::Engine(e));
    let mut engine = Engine::new(arch.clone(), init_params(arch, s.seed), adam, s.batch).map_err(engine_error)?;
    let sampler = BatchSampler::new(data.train.len(), s.batch, s.seed).ok_or(TrajectoryError::NoImages)?;
    let mut done = 0;
    let mut run = |engine: &mut Engine, sampler: &mut BatchSampler, from: u64, to: u64, out: &mut Vec<f32>| {
        adam_steps(engine, sampler, data, from + 1..=to, |step, _, engine| {
            if step >= first && (step - first).is_multiple_of(s.spacing) {
                out.extend_from_slice(engine.params());
            }
            done += 1;
            progress(done);
        })
    };
    let mut context = Vec::new();
    if first == 0 {
        context.extend_from_slice(engine.params());
    }
    let mut shared = sampler;
    run(&mut engine, &mut shared, 0, s.start, &mut context)?;
    let (m, v) = engine.adam_moments();
    let (m, v, t) = (m.to_vec(), v.to_vec(), engine.adam_step_count());
    let at_start = engine.params().to_vec();
    let p = arch.param_count();
    let mut out = Vec::with_capacity(s.branches);
    for b in 0..s.branches {
        engine.params_mut().copy_from_slice(&at_start);
        engine.set_adam_state(&m, &v, t).map_err(engine_error)?;
        let mut sampler =
            BatchSampler::new(data.train.len(), s.batch, branch_seed(s.seed, b)).ok_or(TrajectoryError::NoImages)?;
        let mut states = context.clone();
        run(&mut engine, &mut sampler, s.start, s.start + s.horizons as u64 * s.spacing, &mut states)?;
        let n_states = states.len() / p;
        let input = arch.input;
        let meta = ShardMeta {
            format: FORMAT.into(),
            index: b,
            arch: arch_spec.into(),
            input: [input.channels, input.height, input.width],
            classes: arch.classes,
            params: p,
            seed: s.seed,
            lr: s.lr,
            batch: s.batch,
            every: s.spacing,
            steps: s.start + s.horizons as u64 * s.spacing,
            dtype: StateDtype::F32,
            task: None,
            data: "branches".into(),
            norm_mean: vec![0.0],
            norm_std: vec![1.0],
        };
        out.push(Trajectory { meta, n_states, params: p, states, metrics: vec![0.0; 2 * n_states] });
    }
    Ok(out)
}

/// A model's L1 on the continuations beside the two bounds on the best any model could do, per horizon.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Floor {
    /// The model's masked L1.
    pub model: HorizonL1,
    /// The median of the other branches: at least the floor.
    pub others: HorizonL1,
    /// The median of all branches: at most the floor.
    pub all: HorizonL1,
    /// The last context state at every horizon (no change): what a nowcaster has to beat.
    pub last: HorizonL1,
    /// The last context step repeated: `x_T + k (x_T - x_{T-1})` at horizon `k`.
    pub linear: HorizonL1,
    /// Per horizon, the cosine between the model's move (prediction minus the last state) and the best
    /// move the branches show (their median minus the last state): is the model's error its direction?
    pub cosine: Vec<Option<f64>>,
    /// The model's move times each factor of [`STRETCH`], scored like the model: is its error the length?
    pub stretched: Vec<(f32, HorizonL1)>,
}

/// Factors [`Floor::stretched`] multiplies the model's move by.
pub const STRETCH: [f32; 4] = [0.5, 1.5, 2.0, 3.0];

/// What the branches say without a model: their scaled targets, the naive nowcasts and the two bounds, for
/// models of one context length and horizon count. Built once per start, then [`Bounds::score`] per model.
pub struct Bounds {
    cfg: Config,
    len: usize,
    mask: Vec<u8>,
    targets: Vec<Vec<f32>>,
    /// The median of all branches: the best move's end point.
    all: Vec<f32>,
    last: Vec<f32>,
    /// The model-free rows of [`Floor`], its `model`, `cosine` and `stretched` left empty.
    rows: Floor,
}

impl Bounds {
    /// Reads the branches in `data` (the trajectories of one [`branches`] call: `ctx` shared states, then
    /// each branch's own) for models of `cfg`'s `ctx` and `seq_len`. Every horizon the branches hold, up to
    /// `seq_len`, is scored.
    pub fn new(cfg: &Config, data: &MetaData) -> Result<Bounds, MetaTrainError> {
        let n = data.len();
        if n < 2 {
            return Err(invalid("the floor needs at least two branches"));
        }
        let states = data.n_states(0);
        if (0..n).any(|i| data.n_states(i) != states) || states <= cfg.ctx {
            return Err(invalid("branches must hold the same number of states, more than the context"));
        }
        let len = (states - cfg.ctx).min(cfg.seq_len);
        let mut b = WindowBuffers::default();
        build_window(cfg, data, &window(cfg, len, 0), &mut b)?;
        let mask = b.mask.clone();
        let (last, linear) = naive(&b.attr, cfg.ctx, cfg.seq_len);
        let mut targets = Vec::with_capacity(n);
        for source in 0..n {
            build_window(cfg, data, &window(cfg, len, source), &mut b)?;
            if b.mask != mask {
                return Err(invalid("branches of different graphs"));
            }
            targets.push(b.target.clone());
        }
        let s = cfg.seq_len;
        let (all, others) = medians(&targets);
        let mut rows = Floor {
            model: blank(s),
            others: blank(s),
            all: blank(s),
            last: blank(s),
            linear: blank(s),
            ..Floor::default()
        };
        for (i, t) in targets.iter().enumerate() {
            meta::masked_l1_by_horizon(&others[i], t, &mask, &mut rows.others.sums, &mut rows.others.counts)?;
            meta::masked_l1_by_horizon(&all, t, &mask, &mut rows.all.sums, &mut rows.all.counts)?;
            meta::masked_l1_by_horizon(&last, t, &mask, &mut rows.last.sums, &mut rows.last.counts)?;
            meta::masked_l1_by_horizon(&linear, t, &mask, &mut rows.linear.sums, &mut rows.linear.counts)?;
        }
        if [&rows.others, &rows.all, &rows.last, &rows.linear].iter().any(|h| h.sums.iter().any(|v| !v.is_finite())) {
            return Err(MetaTrainError::NonFiniteLoss);
        }
        Ok(Bounds { cfg: *cfg, len, mask, targets, all, last, rows })
    }

    /// `model` scored on the branches beside the bounds; `data` holds the same branches prepared for the
    /// model's features. LPE signs are all positive, as at inference.
    pub fn score(&self, model: &MetaModel, data: &MetaData) -> Result<Floor, MetaTrainError> {
        let (lay, cfg) = (&model.layout, &model.layout.cfg);
        if (cfg.ctx, cfg.seq_len) != (self.cfg.ctx, self.cfg.seq_len) || data.len() != self.targets.len() {
            return Err(invalid("the model or the branches differ from those the bounds were built for"));
        }
        let mut b = WindowBuffers::default();
        predict_window(
            crate::kernels::meta::host_compute(),
            lay,
            &model.params,
            data,
            &window(cfg, self.len, 0),
            &mut b,
        )?;
        let (pred, s) = (&b.out, cfg.seq_len);
        let mut f = Floor {
            model: blank(s),
            cosine: cosine_by_horizon(pred, &self.all, &self.last, &self.mask, s),
            stretched: STRETCH.iter().map(|&a| (a, blank(s))).collect(),
            ..self.rows.clone()
        };
        let stretched: Vec<Vec<f32>> =
            STRETCH.iter().map(|&a| self.last.iter().zip(pred).map(|(x, p)| x + a * (p - x)).collect()).collect();
        for t in &self.targets {
            meta::masked_l1_by_horizon(pred, t, &self.mask, &mut f.model.sums, &mut f.model.counts)?;
            for (pred, (_, h)) in stretched.iter().zip(&mut f.stretched) {
                meta::masked_l1_by_horizon(pred, t, &self.mask, &mut h.sums, &mut h.counts)?;
            }
        }
        let rows = std::iter::once(&f.model).chain(f.stretched.iter().map(|(_, h)| h));
        if rows.into_iter().any(|h| h.sums.iter().any(|v| !v.is_finite()))
            || f.cosine.iter().flatten().any(|c| !c.is_finite())
        {
            return Err(MetaTrainError::NonFiniteLoss);
        }
        Ok(f)
    }
}

/// Scores `model` on `data`, the trajectories of one [`branches`] call, against the element-wise medians of
/// the branches (module doc): [`Bounds::new`] then [`Bounds::score`], for one model.
pub fn floor_by_horizon(model: &MetaModel, data: &MetaData) -> Result<Floor, MetaTrainError> {
    Bounds::new(&model.layout.cfg, data)?.score(model, data)
}

/// The window every branch is read through: the whole context, then `len` horizons.
fn window(cfg: &Config, len: usize, source: usize) -> Window {
    Window { source, states: (0..cfg.ctx + len).collect(), len, signs: vec![1.0; cfg.lpe] }
}

fn blank(s: usize) -> HorizonL1 {
    HorizonL1 { sums: vec![0.0; s], counts: vec![0; s] }
}

fn invalid(why: &'static str) -> MetaTrainError {
    MetaTrainError::Core(nino_core::Error::InvalidArgument(why))
}

/// Per horizon (`[E, F * S]` layout), the cosine between `a - from` and `b - from` over the masked terms;
/// `None` where a move is zero or no term is masked in.
fn cosine_by_horizon(a: &[f32], b: &[f32], from: &[f32], mask: &[u8], s: usize) -> Vec<Option<f64>> {
    let mut acc = vec![[0.0f64; 3]; s];
    for (i, ((x, y), z)) in a.iter().zip(b).zip(from).enumerate() {
        if mask[i] != 0 {
            let (u, v) = (f64::from(x - z), f64::from(y - z));
            let c = &mut acc[i % s];
            c[0] += u * v;
            c[1] += u * u;
            c[2] += v * v;
        }
    }
    acc.iter().map(|[uv, uu, vv]| (uu * vv > 0.0).then(|| uv / (uu * vv).sqrt())).collect()
}

/// The two naive nowcasts of a window's context `attr` (`[E, F * ctx]`, oldest state first, spec 7.2's
/// layout), in the predictions' `[E, F * S]` layout: the last state at every horizon, and the last step
/// repeated `k` times at horizon `k`.
fn naive(attr: &[f32], ctx: usize, s: usize) -> (Vec<f32>, Vec<f32>) {
    let rows = attr.len() / ctx;
    let (mut last, mut linear) = (vec![0.0; rows * s], vec![0.0; rows * s]);
    for (r, hist) in attr.chunks_exact(ctx).enumerate() {
        let x = hist[ctx - 1];
        let step = if ctx > 1 { x - hist[ctx - 2] } else { 0.0 };
        for j in 0..s {
            last[r * s + j] = x;
            linear[r * s + j] = x + (j + 1) as f32 * step;
        }
    }
    (last, linear)
}

/// Element-wise medians of equally long `rows`: of all of them, and for each row, of all the others (the
/// mean of the two middle values for an even count). A NaN among the values makes their median NaN.
pub fn medians(rows: &[Vec<f32>]) -> (Vec<f32>, Vec<Vec<f32>>) {
    let len = rows.iter().map(Vec::len).min().unwrap_or(0);
    let mut all = vec![0.0; len];
    let mut others = vec![vec![0.0; len]; rows.len()];
    let mut col = Vec::with_capacity(rows.len());
    let mut rest = Vec::with_capacity(rows.len());
    for j in 0..len {
        col.clear();
        col.extend(rows.iter().map(|r| r[j]));
        for (i, o) in others.iter_mut().enumerate() {
            rest.clear();
            rest.extend(col.iter().enumerate().filter(|&(k, _)| k != i).map(|(_, v)| *v));
            o[j] = median(&mut rest);
        }
        all[j] = median(&mut col);
    }
    (all, others)
}

/// The median of `v` (reordered); 0 for an empty slice, NaN if any value is.
fn median(v: &mut [f32]) -> f32 {
    if v.is_empty() {
        return 0.0;
    }
    if v.iter().any(|x| x.is_nan()) {
        return f32::NAN;
    }
    v.sort_by(f32::total_cmp);
    let m = v.len() / 2;
    if v.len().is_multiple_of(2) { (v[m - 1] + v[m]) / 2.0 } else { v[m] }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::model_file::MetaModel;
    use crate::meta::train::random_walk;
    use nino_core::InputShape;
    use nino_core::nowcast::{Config, Head};

    #[test]
    fn medians_of_all_rows_and_of_the_others() {
        let rows = vec![vec![1.0, 0.0], vec![5.0, 4.0], vec![2.0, -1.0]];
        let (all, others) = medians(&rows);
        assert_eq!(all, vec![2.0, 0.0]);
        assert_eq!(others, vec![vec![3.5, 1.5], vec![1.5, -0.5], vec![3.0, 2.0]]);
        let (all, others) = medians(&[vec![1.0], vec![3.0], vec![f32::NAN], vec![2.0]]);
        assert!(all[0].is_nan() && others[2][0] == 2.0 && others[0][0].is_nan(), "{all:?} {others:?}");
    }

    #[test]
    fn cosines_per_horizon_over_the_mask() {
        // Three rows of two horizons, the third masked out: at k = 1 the moves are (1, 0) and (1, 1), at
        // k = 2 they are (2, 0) and (-1, 0).
        let from = [0.0; 6];
        let a = [1.0, 2.0, 0.0, 0.0, 9.0, 9.0];
        let b = [1.0, -1.0, 1.0, 0.0, -9.0, 9.0];
        let c = cosine_by_horizon(&a, &b, &from, &[1, 1, 1, 1, 0, 0], 2);
        assert!((c[0].unwrap() - 0.5f64.sqrt()).abs() < 1e-12 && c[1] == Some(-1.0), "{c:?}");
        assert_eq!(cosine_by_horizon(&a, &b, &from, &[0; 6], 2), vec![None, None]);
    }

    #[test]
    fn naive_nowcasts_hold_the_last_state_and_repeat_the_last_step() {
        // Two rows of three context states, two horizons.
        let (last, linear) = naive(&[0.0, 1.0, 3.0, 5.0, 5.0, 4.0], 3, 2);
        assert_eq!(last, vec![3.0, 3.0, 4.0, 4.0]);
        assert_eq!(linear, vec![5.0, 7.0, 3.0, 2.0]);
    }

    fn tiny_model() -> MetaModel {
        let cfg = Config { wte_pos_enc: false, hid: 8, seq_len: 4, lpe: 2, head: Head::Mlp, ..Config::default() };
        MetaModel::init(&cfg, 3).unwrap()
    }

    /// Branches of a synthetic run: the same 5 context states, then `spread[b]` added to every parameter of
    /// branch `b`'s 4 states after the context.
    fn synthetic(spread: &[f32], cfg: &Config) -> MetaData {
        let arch = Arch::parse("conv:4,6,6", InputShape { channels: 1, height: 28, width: 28 }, 10).unwrap();
        let base = random_walk(&arch, "conv:4,6,6", 9, 7);
        let p = base.params;
        let trajs = spread
            .iter()
            .map(|d| {
                let mut t = random_walk(&arch, "conv:4,6,6", 9, 7);
                t.states[5 * p..].iter_mut().for_each(|v| *v += d);
                t
            })
            .collect();
        MetaData::from_trajectories(trajs, 20, cfg).unwrap()
    }

    #[test]
    fn identical_branches_have_a_floor_of_zero_and_spread_ones_bracket_it() {
        let model = tiny_model();
        let cfg = model.layout.cfg;
        let same = floor_by_horizon(&model, &synthetic(&[0.0, 0.0, 0.0], &cfg)).unwrap();
        for k in 0..4 {
            assert_eq!((same.others.sums[k], same.all.sums[k]), (0.0, 0.0), "k={}", k + 1);
            assert!(same.model.sums[k] > 0.0 && same.model.counts[k] == same.all.counts[k]);
        }
        let spread = floor_by_horizon(&model, &synthetic(&[-0.01, 0.0, 0.02, 0.05], &cfg)).unwrap();
        let (others, all) = (spread.others.means(), spread.all.means());
        for k in 0..4 {
            let (o, a) = (others[k].unwrap(), all[k].unwrap());
            assert!(a > 0.0 && a < o, "k={}: all {a}, others {o}", k + 1);
        }
        // The L1 is convex in the stretch: half the move scores at most the mean of none and all of it, and
        // 1.5x and 2x at most the mean of their neighbours on the line (1x, 2x, 3x).
        let l1 = |h: &HorizonL1, k: usize| h.sums[k] / h.counts[k] as f64;
        let at = |a: f32| &spread.stretched.iter().find(|(f, _)| *f == a).unwrap().1;
        for k in 0..4 {
            let (none, one) = (l1(&spread.last, k), l1(&spread.model, k));
            assert!(l1(at(0.5), k) <= (none + one) / 2.0 + 1e-9, "k={}: half the move", k + 1);
            assert!(l1(at(2.0), k) <= (one + l1(at(3.0), k)) / 2.0 + 1e-9, "k={}: twice the move", k + 1);
            assert!(l1(at(1.5), k) <= (one + l1(at(2.0), k)) / 2.0 + 1e-9, "k={}: 1.5x the move", k + 1);
        }
    }

    #[test]
    fn branches_share_their_context_and_differ_after_it() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/fashion-mnist-mini");
        let data = crate::io::data::load_data(Some(nino_core::Task::Debug), &dir).unwrap();
        let arch = nino_core::Task::Debug.arch();
        let spec = BranchSpec { lr: 0.006, batch: 32, seed: 5, start: 8, spacing: 2, ctx: 5, horizons: 3, branches: 3 };
        let mut last = 0;
        let runs = branches(&arch, "conv:4,6,6", &spec, &data, |n| last = n).unwrap();
        assert_eq!(last, spec.total_steps(), "progress ends at every step trained");
        let p = arch.param_count();
        assert_eq!(runs.len(), 3);
        for r in &runs {
            assert_eq!((r.n_states, r.states.len(), r.meta.every), (8, 8 * p, 2));
            assert_eq!(r.states[..5 * p], runs[0].states[..5 * p], "the context is shared");
        }
        for (i, j) in [(0, 1), (0, 2), (1, 2)] {
            assert_ne!(runs[i].state(5), runs[j].state(5), "branches {i} and {j} drew the same batches");
        }
        assert_ne!(runs[0].state(3), runs[0].state(4), "context states are `spacing` steps apart");
        // Branch 2 by hand: the shared run to `start`, then its own batches, Adam's moments carried over.
        let adam = AdamConfig { lr: 0.006, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0 };
        let mut engine = Engine::new(arch.clone(), init_params(&arch, 5), adam, 32).unwrap();
        let (mut x, mut y) = (Vec::new(), Vec::new());
        let mut sampler = BatchSampler::new(data.train.len(), 32, 5).unwrap();
        for step in 1..=10 {
            if step == 9 {
                sampler = BatchSampler::new(data.train.len(), 32, branch_seed(5, 2)).unwrap();
            }
            data.train.gather(sampler.next_batch(), &mut x, &mut y);
            engine.train_step(&x, &y).unwrap();
        }
        assert_eq!(runs[2].state(5), engine.params(), "branch 2 is not the shared run continued");
        let again = branches(&arch, "conv:4,6,6", &spec, &data, |_| ()).unwrap();
        assert!(runs.iter().zip(&again).all(|(a, b)| a.states == b.states), "not reproducible");
        let early = BranchSpec { start: 7, ..spec.clone() };
        assert!(matches!(branches(&arch, "conv:4,6,6", &early, &data, |_| ()), Err(BranchError::Spec(_))));
        let alone = BranchSpec { branches: 1, ..spec };
        assert!(matches!(branches(&arch, "conv:4,6,6", &alone, &data, |_| ()), Err(BranchError::Spec(_))));
    }

    #[test]
    fn one_branch_is_refused() {
        let model = tiny_model();
        let cfg = model.layout.cfg;
        assert!(floor_by_horizon(&model, &synthetic(&[0.0], &cfg)).is_err());
    }
}
