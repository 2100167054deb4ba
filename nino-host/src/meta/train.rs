//! Meta-training driver: samples windows from collected trajectories (spec 7.2), runs the core's trainable
//! NiNo ([`nino_core::nowcast::meta`]) over them in parallel, and optimises it with AdamW, a cosine learning
//! rate and gradient clipping (spec 7.3). Models and checkpoints are safetensors files written atomically.

use crate::io::collection::{CollectionError, Manifest, Trajectory};
use crate::io::model_file::{MetaModel, ModelFileError, model_args_json};
use crate::io::one_line;
use crate::io::tensor_file::{f32_tensors_to_bytes, f32s};
use crate::io::weights::WeightSet;
use nino_core::adam::{AdamConfig, adam_step};
use nino_core::nowcast::meta::{self, Layout, Sample, window};
use nino_core::nowcast::{Config, Head};
use nino_core::rng::SplitMix64;
use nino_core::{Arch, ArchError, InputShape, NeuralGraph};
use rayon::prelude::*;
use safetensors::{Dtype, SafeTensors};
use std::collections::HashMap;
use std::path::Path;

/// Why meta-training could not start, go on or resume.
#[derive(Debug, thiserror::Error)]
pub enum MetaTrainError {
    /// The core refused a computation (a window, a spectral feature, the optimizer step).
    #[error(transparent)]
    Core(#[from] nino_core::Error),
    /// The model has no layout, or its file is unusable.
    #[error(transparent)]
    ModelFile(#[from] ModelFileError),
    /// The collection could not be read.
    #[error(transparent)]
    Collection(#[from] CollectionError),
    /// The collection has no trajectory.
    #[error("{}: the collection has no finished trajectory yet (run `nino collect` first)", dir.display())]
    NoTrajectory {
        /// The collection folder.
        dir: std::path::PathBuf,
    },
    /// A trajectory's arch spec does not parse.
    #[error("{spec}: {error}")]
    Arch {
        /// The spec.
        spec: String,
        /// What is wrong.
        error: ArchError,
    },
    /// A trajectory's network has wider kernels than the model reads.
    #[error("{spec}: kernels wider than the model's {slots} slots")]
    TooWide {
        /// The spec.
        spec: String,
        /// The model's feature slots.
        slots: usize,
    },
    /// A trajectory is too short for the windows asked for.
    #[error(
        "trajectory {index} has {states} states; windows of spacing {spacing} need more than {need} (collect longer \
         runs or lower the spacing)"
    )]
    TooShort {
        /// The trajectory.
        index: usize,
        /// Its states.
        states: usize,
        /// Optimizer steps between context states.
        spacing: u64,
        /// States a window spans.
        need: usize,
    },
    /// A sampled trajectory is too short (checked up front by [`MetaData::check_lengths`]).
    #[error("trajectory {index} has {states} states, windows need more than {need}")]
    WindowTooShort {
        /// The trajectory.
        index: usize,
        /// Its states.
        states: usize,
        /// States a window spans.
        need: usize,
    },
    /// The forward loss is NaN or infinite.
    #[error("meta-training loss is not finite")]
    NonFiniteLoss,
    /// Every target of a batch is masked.
    #[error("a batch had no target to learn (every target masked)")]
    NoTarget,
    /// The gradient is NaN or infinite.
    #[error("update {0}: the gradient is not finite")]
    NonFiniteGradient(u64),
    /// A checkpoint is unreadable or of another run.
    #[error("{0}")]
    Checkpoint(CheckpointProblem),
    /// Collections read together store states at different intervals.
    #[error(
        "{} stores a state every {every} steps, an earlier folder every {earlier}: collections read together must agree",
        dir.display()
    )]
    EveryMismatch {
        /// The folder that disagrees.
        dir: std::path::PathBuf,
        /// Its interval.
        every: u64,
        /// The interval of the folders before it.
        earlier: u64,
    },
    /// There is nothing to train on.
    #[error("no trajectory to train on")]
    Empty,
    /// A thread of the batch panicked while holding the buffer pool.
    #[error("a meta-training thread panicked")]
    Poisoned,
}

/// What is wrong with a meta-training checkpoint.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointProblem {
    /// Not safetensors.
    #[error("not a checkpoint ({})", one_line(.0))]
    NotSafetensors(safetensors::SafeTensorError),
    /// No metadata.
    #[error("not a meta-training checkpoint (no metadata)")]
    NoMetadata,
    /// Another format.
    #[error("not a meta-training checkpoint (format is not {CHECKPOINT_FORMAT})")]
    Format,
    /// `model_args` does not parse.
    #[error("checkpoint model_args: {0}")]
    ModelArgs(nino_core::Error),
    /// The checkpoint's model is another.
    #[error("the checkpoint is of another model ({}), not {here}", one_line(saved))]
    OtherModel {
        /// The checkpoint's `model_args`.
        saved: String,
        /// This run's.
        here: String,
    },
    /// The `state` entry is not JSON.
    #[error("{}", one_line(.0))]
    State(serde_json::Error),
    /// A setting differs from this run's.
    #[error("{key} is {saved} in the checkpoint but {here} here")]
    Setting {
        /// The setting (as the state names it, `weight_decay`).
        key: &'static str,
        /// The checkpoint's value.
        saved: serde_json::Value,
        /// This run's.
        here: serde_json::Value,
    },
    /// The model has no layout.
    #[error("model: {0}")]
    Layout(nino_core::Error),
    /// The tensors are unreadable.
    #[error("corrupt checkpoint ({})", one_line(.0))]
    Corrupt(safetensors::SafeTensorError),
    /// A tensor is absent.
    #[error("checkpoint has no `{0}`")]
    NoTensor(&'static str),
    /// A tensor has another dtype or shape.
    #[error("checkpoint `{name}` is {dtype:?} {shape:?}, expected F32 [{len}]")]
    Shape {
        /// The tensor.
        name: &'static str,
        /// Its dtype.
        dtype: Dtype,
        /// Its shape.
        shape: Vec<usize>,
        /// The model's parameter count.
        len: usize,
    },
    /// A tensor holds NaN or infinity.
    #[error("checkpoint `{0}` holds NaN or infinite values")]
    NonFinite(&'static str),
    /// A counter is absent.
    #[error("checkpoint state lacks `{0}`")]
    NoCounter(&'static str),
}

/// A head name that is not `mlp`, `gru` or `lstm`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown head `{0}` (mlp, gru or lstm)")]
pub struct UnknownHead(pub String);

/// Format tag of meta-training checkpoints.
pub const CHECKPOINT_FORMAT: &str = "nino-meta-checkpoint/1";

/// A standard normal deviate (Box-Muller) from two uniforms of `rng`.
fn normal(rng: &mut SplitMix64) -> f32 {
    let u1 = ((rng.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    let u2 = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
}

impl MetaModel {
    /// The reference initialisation (spec 4.2): weights and embeddings from N(0, 0.02^2), biases 0.
    pub fn init(cfg: &Config, seed: u64) -> Result<MetaModel, ModelFileError> {
        let layout = Layout::new(cfg).map_err(ModelFileError::Layout)?;
        let mut params = vec![0.0; layout.len];
        let mut rng = SplitMix64::new(seed);
        Layout::visit(cfg, &mut |t| {
            if t.cols > 0 {
                params[t.offset..t.offset + t.len()].iter_mut().for_each(|p| *p = 0.02 * normal(&mut rng));
            }
            Ok(())
        })
        .map_err(ModelFileError::Layout)?;
        Ok(MetaModel { layout, params })
    }

    /// [`MetaModel::init`], then every tensor `init` has with the same key and shape copied over. Two
    /// adaptations: a smaller LPE count takes the first columns of `node_proj`, and a recurrent head's
    /// output layer `edge_out.fc` starts from the MLP head's `edge_out.fc.2`. A `cent_proj` the checkpoint lacks
    /// starts at zero. Returns the keys copied.
    pub fn init_from(
        cfg: &Config,
        seed: u64,
        init: &WeightSet<f32>,
    ) -> Result<(MetaModel, Vec<String>), ModelFileError> {
        let mut m = MetaModel::init(cfg, seed)?;
        let mut copied = Vec::new();
        let slots = m.slots()?;
        for t in &slots {
            let src_key = match t.key.as_str() {
                "edge_out.fc.weight" => "edge_out.fc.2.weight",
                "edge_out.fc.bias" => "edge_out.fc.2.bias",
                k => k,
            };
            let Some((shape, data)) = init.tensor(src_key) else { continue };
            let dst = &mut m.params[t.offset..t.offset + t.len()];
            let (want, nd) = t.shape();
            if *shape == want[..nd] {
                dst.copy_from_slice(data);
            } else if nd == 2 && shape.len() == 2 && shape[0] == want[0] && shape[1] > want[1] {
                for (r, row) in dst.chunks_exact_mut(want[1]).enumerate() {
                    row.copy_from_slice(&data[r * shape[1]..r * shape[1] + want[1]]);
                }
            } else {
                continue;
            }
            copied.push(t.key.to_string());
        }
        // A centrality the checkpoint never saw starts switched off, so the model starts as the checkpoint's
        // function and training decides how much centrality to use.
        if !copied.iter().any(|k| k.starts_with("cent_proj")) {
            for t in slots.iter().filter(|t| t.key.starts_with("cent_proj")) {
                m.params[t.offset..t.offset + t.len()].fill(0.0);
            }
        }
        Ok((m, copied))
    }

    /// The parameter ranges of the tensors whose keys are not in `copied` (what [`MetaModel::init_from`]
    /// left as freshly initialised), in order (slots come in offset order) and merged where adjacent.
    pub fn fresh_ranges(&self, copied: &[String]) -> Result<Vec<(usize, usize)>, ModelFileError> {
        let mut out: Vec<(usize, usize)> = Vec::new();
        for t in self.slots()?.iter().filter(|t| !copied.iter().any(|k| k.as_str() == t.key.as_str())) {
            let (a, b) = (t.offset, t.offset + t.len());
            match out.last_mut() {
                Some(last) if last.1 == a => last.1 = b,
                _ => out.push((a, b)),
            }
        }
        Ok(out)
    }
}

/// Optimisation settings (spec 7.3 unless changed on the command line).
#[derive(Clone, Debug, PartialEq)]
pub struct MetaTrainConfig {
    /// Steps (updates).
    pub steps: u64,
    /// Examples per batch; each gives `windows` graphs.
    pub batch: usize,
    /// Overlapping windows per example (`samples_per_traj`).
    pub windows: usize,
    /// Peak learning rate of the cosine schedule (it ends at 1e-6).
    pub lr: f32,
    /// AdamW's decoupled weight decay.
    pub weight_decay: f32,
    /// Global gradient-norm clip.
    pub clip: f32,
    /// Optimizer steps between context states (the reference: 200); the smallest one when
    /// `spacing_max` is larger.
    pub spacing: u64,
    /// Largest spacing: each example draws its spacing uniformly from `spacing..=spacing_max` in multiples
    /// of the collection's `every`, so the model meets the spacings a dynamic period nowcasts with.
    pub spacing_max: u64,
    /// Seed of the sampler.
    pub seed: u64,
    /// How far into a trajectory a window may start.
    pub starts: WindowStarts,
    /// Peak learning rate of the `fresh` parameters (same cosine schedule); `None`: `lr` for all.
    pub fresh_lr: Option<f32>,
    /// Parameter ranges `start..end` a checkpoint did not supply (see [`MetaModel::fresh_ranges`]): new
    /// cells and projections that must learn from scratch while the copied ones are only fine-tuned.
    pub fresh: Vec<(usize, usize)>,
    /// Precision of the training passes' products (validation and fixed-sample figures are f32 always).
    pub precision: Precision,
}

impl Default for MetaTrainConfig {
    fn default() -> Self {
        MetaTrainConfig {
            steps: 20_000,
            batch: 4,
            windows: 4,
            lr: 3e-3,
            weight_decay: 1e-2,
            clip: 5.0,
            spacing: 200,
            spacing_max: 200,
            seed: 0,
            starts: WindowStarts::Widest,
            fresh_lr: None,
            fresh: Vec::new(),
            precision: Precision::F32,
        }
    }
}

/// The precision of meta-training's matrix products. The reference trains with fp16 autocast on a GPU;
/// `Bf16` is this port's counterpart on CPUs with bf16 dot products (AVX-512 BF16), where it doubles the
/// multiply-adds per instruction. Inputs that carry the parameter history stay f32 either way
/// ([`meta::Compute`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precision {
    /// Every product in f32.
    F32,
    /// Products of hidden activations and their gradients on bf16 operands, sums in f32.
    Bf16,
}

impl Precision {
    /// The name used on the command line and in checkpoints.
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
        }
    }

    /// The host kernels of a training pass at this precision.
    pub fn compute(self) -> meta::Compute<'static> {
        match self {
            Precision::F32 => crate::kernels::meta::host_compute(),
            Precision::Bf16 => crate::kernels::meta::host_compute_bf16(),
        }
    }
}

impl std::str::FromStr for Precision {
    type Err = String;

    /// Reads [`Precision::name`].
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "f32" => Ok(Precision::F32),
            "bf16" => Ok(Precision::Bf16),
            _ => Err(format!("`{s}`: expected `f32` or `bf16`")),
        }
    }
}

/// Where a window may start, as a bound on its first state: the trajectory's length less a window's span
/// (context, `min(S, 2 ctx)` horizons and the overlapping windows, in strides).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WindowStarts {
    /// The span at the widest spacing, for every example (the reference's rule, which has one spacing):
    /// with `--spacing 100-300` on 8,000-step trajectories windows start in the first 29%.
    Widest,
    /// The span at the spacing the example drew, so short spacings also start later in a trajectory (up
    /// to 76% of it at 100 steps there) and later training is seen.
    Drawn,
}

impl WindowStarts {
    /// The name used on the command line and in checkpoints.
    pub fn name(self) -> &'static str {
        match self {
            WindowStarts::Widest => "widest",
            WindowStarts::Drawn => "drawn",
        }
    }
}

impl std::str::FromStr for WindowStarts {
    type Err = String;

    /// Reads [`WindowStarts::name`].
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "widest" => Ok(WindowStarts::Widest),
            "drawn" => Ok(WindowStarts::Drawn),
            _ => Err(format!("`{s}`: expected `widest` or `drawn`")),
        }
    }
}

/// A synthetic trajectory for tests and benchmarks, whose cost does not depend on the values: `n_states`
/// states 20 steps apart, a random walk (steps of at most 5e-4) from `arch`'s initial weights for `seed`.
pub fn random_walk(arch: &Arch, spec: &str, n_states: usize, seed: u64) -> Trajectory {
    let p = arch.param_count();
    let mut x = crate::training::engine::init_params(arch, seed);
    let mut rng = SplitMix64::new(seed);
    let mut states = Vec::with_capacity(n_states * p);
    for _ in 0..n_states {
        states.extend_from_slice(&x);
        x.iter_mut().for_each(|v| *v += 1e-3 * (rng.unit() - 0.5));
    }
    let input = arch.input;
    let meta = crate::io::collection::ShardMeta {
        format: crate::io::collection::FORMAT.into(),
        index: 0,
        arch: spec.into(),
        input: [input.channels, input.height, input.width],
        classes: arch.classes,
        params: p,
        seed,
        lr: 0.006,
        batch: 128,
        every: 20,
        steps: 20 * n_states.saturating_sub(1) as u64,
        dtype: crate::io::collection::StateDtype::F32,
        task: None,
        data: "synthetic".into(),
        norm_mean: vec![0.0],
        norm_std: vec![1.0],
    };
    Trajectory { meta, n_states, params: p, states, metrics: vec![0.0; 2 * n_states] }
}

/// The learning rate at update `t` of `total`: cosine from `lr` to 1e-6 (spec 7.3).
pub fn cosine_lr(lr: f32, t: u64, total: u64) -> f32 {
    let x = std::f64::consts::PI * t as f64 / total.max(1) as f64;
    (1e-6 + (f64::from(lr) - 1e-6) * (1.0 + x.cos()) / 2.0) as f32
}

/// A trajectory ready for sampling, with its graph's node features.
pub struct Source {
    arch_spec: String,
    graph: NeuralGraph,
    lpe: Vec<f32>,
    centrality: Vec<f32>,
    traj: Trajectory,
}

/// The collected trajectories of a dataset folder, loaded and prepared once.
pub struct MetaData {
    sources: Vec<Source>,
    /// Stored states between optimizer steps (the collection's `every`).
    pub every: u64,
}

impl MetaData {
    /// Loads every trajectory of the collection in `dir` and computes its graph's features for `cfg`.
    pub fn load(dir: &Path, cfg: &Config) -> Result<MetaData, MetaTrainError> {
        MetaData::load_dirs(&[dir.to_path_buf()], cfg)
    }

    /// Loads every trajectory of several collections (they must store states equally often).
    pub fn load_dirs(dirs: &[std::path::PathBuf], cfg: &Config) -> Result<MetaData, MetaTrainError> {
        let mut trajs = Vec::new();
        let mut every = None;
        for dir in dirs {
            let manifest = Manifest::load(dir)?;
            if manifest.trajectories.is_empty() {
                return Err(MetaTrainError::NoTrajectory { dir: dir.to_path_buf() });
            }
            match every {
                Some(earlier) if earlier != manifest.config.every => {
                    return Err(MetaTrainError::EveryMismatch {
                        dir: dir.to_path_buf(),
                        every: manifest.config.every,
                        earlier,
                    });
                }
                _ => every = Some(manifest.config.every),
            }
            for entry in &manifest.trajectories {
                trajs.push(manifest.load_trajectory(dir, entry)?);
            }
        }
        MetaData::from_trajectories(trajs, every.unwrap_or(1), cfg)
    }

    /// Prepares trajectories already in memory (states every `every` steps) for a model of `cfg`.
    pub fn from_trajectories(trajs: Vec<Trajectory>, every: u64, cfg: &Config) -> Result<MetaData, MetaTrainError> {
        let mut feats: HashMap<String, (Vec<f32>, Vec<f32>)> = HashMap::new();
        let mut sources = Vec::new();
        for traj in trajs {
            let m = &traj.meta;
            let input = InputShape { channels: m.input[0], height: m.input[1], width: m.input[2] };
            let arch = Arch::parse(&m.arch, input, m.classes)
                .map_err(|error| MetaTrainError::Arch { spec: m.arch.clone(), error })?;
            let graph = NeuralGraph::new(&arch);
            if graph.feat_slots() > cfg.max_feat_size {
                return Err(MetaTrainError::TooWide { spec: m.arch.clone(), slots: cfg.max_feat_size });
            }
            let (lpe, centrality) = match feats.get(&m.arch) {
                Some(f) => f.clone(),
                None => {
                    let lpe = crate::kernels::spectral::lpe(&arch, cfg.lpe)?;
                    let mut cent = Vec::new();
                    if cfg.centrality {
                        let raw = crate::kernels::spectral::centrality(&arch);
                        cent = vec![0.0; raw.len()];
                        meta::centrality_feature(&raw, &mut cent)?;
                    }
                    feats.insert(m.arch.clone(), (lpe.clone(), cent.clone()));
                    (lpe, cent)
                }
            };
            sources.push(Source { arch_spec: m.arch.clone(), graph, lpe, centrality, traj });
        }
        if sources.is_empty() {
            return Err(MetaTrainError::Empty);
        }
        Ok(MetaData { sources, every })
    }

    /// Forward and backward FLOPs of one graph of trajectory `source` for `layout` (every matrix product
    /// counted as `2 m n k`; the elementwise work, a few percent, is not counted).
    pub fn graph_flops(&self, layout: &Layout, source: usize) -> Result<u64, MetaTrainError> {
        let w = Window {
            source,
            states: (0..layout.cfg.ctx + layout.cfg.seq_len).collect(),
            len: layout.cfg.seq_len,
            signs: vec![1.0; layout.cfg.lpe.max(nino_core::spectral::LPE_COLS)],
        };
        let counter = FlopCounter::default();
        let params = vec![0.01; layout.len];
        let mut b = WindowBuffers::default();
        let mut grad = vec![0.0; layout.len];
        let cx = meta::Compute { gemm: &counter, lo: &counter, kernels: meta::Kernels::PORTABLE };
        window_loss_with(cx, layout, &params, self, &w, &mut b, &mut grad, true)?;
        Ok(counter.flops.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Number of trajectories.
    pub fn len(&self) -> usize {
        self.sources.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }

    /// Checks that every trajectory is long enough for the windows `mc` asks for (spec 7.2 step 3).
    pub fn check_lengths(&self, cfg: &Config, mc: &MetaTrainConfig) -> Result<(), MetaTrainError> {
        let need = window_span(cfg, mc, self.every);
        if let Some((i, s)) = self.sources.iter().enumerate().find(|(_, s)| s.traj.n_states <= need) {
            return Err(MetaTrainError::TooShort { index: i, states: s.traj.n_states, spacing: mc.spacing, need });
        }
        Ok(())
    }

    /// Stored states of trajectory `source` (0 past the last one).
    pub fn n_states(&self, source: usize) -> usize {
        self.sources.get(source).map_or(0, |s| s.traj.n_states)
    }

    /// The distinct architectures, for messages.
    pub fn archs(&self) -> Vec<String> {
        let mut v: Vec<String> = self.sources.iter().map(|s| s.arch_spec.clone()).collect();
        v.sort();
        v.dedup();
        v
    }
}

/// One graph to train on: a window of one trajectory.
pub(super) struct Window {
    pub(super) source: usize,
    /// Stored-state indices, oldest first: `c` inputs then `len` targets.
    pub(super) states: Vec<usize>,
    pub(super) len: usize,
    /// Sign of each LPE column for this example.
    pub(super) signs: Vec<f32>,
}

/// Stored states an example spans before its start can be drawn: `(c + min(S, 2c) + windows) * stride`,
/// at the largest stride.
fn window_span(cfg: &Config, mc: &MetaTrainConfig, every: u64) -> usize {
    span_at(cfg, mc, strides(mc, every).1)
}

/// States a window spans at `stride`: the context, `min(S, 2 ctx)` horizons and the overlapping windows.
fn span_at(cfg: &Config, mc: &MetaTrainConfig, stride: usize) -> usize {
    (cfg.ctx + cfg.seq_len.min(2 * cfg.ctx) + mc.windows) * stride
}

/// The smallest and largest stride, in stored states, of the spacings `mc` asks for.
fn strides(mc: &MetaTrainConfig, every: u64) -> (usize, usize) {
    let lo = (mc.spacing / every).max(1) as usize;
    (lo, ((mc.spacing_max / every) as usize).max(lo))
}

/// Draws one batch: `batch` examples of `windows` overlapping windows each (spec 7.2).
fn sample_batch(
    data: &MetaData,
    cfg: &Config,
    mc: &MetaTrainConfig,
    rng: &mut SplitMix64,
) -> Result<Vec<Window>, MetaTrainError> {
    let (c, s) = (cfg.ctx, cfg.seq_len);
    let (lo, hi) = strides(mc, data.every);
    let mut out = Vec::new();
    for _ in 0..mc.batch {
        let source = rng.below(data.sources.len() as u64) as usize;
        // A fixed spacing draws nothing here, so such runs sample exactly as before spacing ranges existed.
        let stride = if hi > lo { lo + rng.below((hi - lo + 1) as u64) as usize } else { lo };
        let n_states = data.sources[source].traj.n_states;
        let need = match mc.starts {
            WindowStarts::Widest => window_span(cfg, mc, data.every),
            WindowStarts::Drawn => span_at(cfg, mc, stride),
        };
        if n_states <= need {
            return Err(MetaTrainError::WindowTooShort { index: source, states: n_states, need });
        }
        let start = rng.below((n_states - need) as u64) as usize;
        let idx: Vec<usize> = (0..s + c).map(|i| start + i * stride).take_while(|&j| j < n_states).collect();
        // At least 8 signs are drawn whatever the LPE count, so models with 5 and 8 columns see the same windows.
        let signs: Vec<f32> = (0..cfg.lpe.max(nino_core::spectral::LPE_COLS))
            .map(|_| if rng.next_u64() & 1 == 0 { 1.0 } else { -1.0 })
            .collect();
        for shift in 0..mc.windows {
            let states: Vec<usize> = idx[shift..].to_vec();
            let len = (states.len() - c).min(s);
            out.push(Window { source, states: states[..c + len].to_vec(), len, signs: signs.clone() });
        }
    }
    Ok(out)
}

/// One thread's buffers for the windows it processes, grown to the largest graph seen and then reused
/// across updates.
#[derive(Default)]
pub(super) struct WindowBuffers {
    states: Vec<f32>,
    window: Vec<f32>,
    pub(super) attr: Vec<f32>,
    pub(super) target: Vec<f32>,
    pub(super) mask: Vec<u8>,
    lpe: Vec<f32>,
    scratch: Vec<f32>,
    pub(super) out: Vec<f32>,
}

/// A [`nino_core::ops::Gemm`] that multiplies with the portable kernel and counts `2 m n k` per product.
#[derive(Default)]
struct FlopCounter {
    flops: std::sync::atomic::AtomicU64,
}

impl nino_core::ops::Gemm for FlopCounter {
    fn gemm(
        &self,
        a: nino_core::ops::MatRef<'_>,
        b: nino_core::ops::MatRef<'_>,
        c: &mut [f32],
        ldc: usize,
        beta: f32,
    ) -> Result<(), nino_core::Error> {
        let n = 2 * (a.rows * a.cols * b.cols) as u64;
        self.flops.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        nino_core::ops::Portable.gemm(a, b, c, ldc, beta)
    }
}

/// Partial sums a batch is split into. Fixed, so the pooled gradient is the same whatever the number of
/// threads; eight parts of a 16-graph batch keep two cores busy when graph sizes differ.
const PARTS: usize = 8;

/// Buffers kept between updates (allocating them per window cost as much as the elementwise math: every
/// large vector is fresh pages from the kernel): one partial gradient per part, and one set of window
/// buffers per thread that is working (taken from the pool and given back).
#[derive(Default)]
pub struct Workspace {
    grads: Vec<Vec<f32>>,
    pool: std::sync::Mutex<Vec<WindowBuffers>>,
}

impl Workspace {
    /// The summed gradient left by the last [`batch_loss`] with gradients.
    fn grad_mut(&mut self) -> &mut [f32] {
        &mut self.grads[0]
    }
}

/// Sizes `v` to `n` values, reusing its allocation (the contents are overwritten by the caller).
fn sized<T: Copy + Default>(v: &mut Vec<T>, n: usize) -> &mut [T] {
    v.resize(n, T::default());
    &mut v[..n]
}

/// Loss and count of one window on the kernels `cx`, adding its gradient to `grad` when `with_grad`.
#[allow(clippy::too_many_arguments)]
fn window_loss_with(
    cx: meta::Compute<'_>,
    lay: &Layout,
    params: &[f32],
    data: &MetaData,
    w: &Window,
    b: &mut WindowBuffers,
    grad: &mut [f32],
    with_grad: bool,
) -> Result<(f64, usize), MetaTrainError> {
    if !with_grad {
        predict_window(cx, lay, params, data, w, b)?;
        let (loss, count) = meta::masked_l1(&b.out, &b.target, &b.mask, None);
        if !loss.is_finite() {
            return Err(MetaTrainError::NonFiniteLoss);
        }
        return Ok((f64::from(loss), count));
    }
    let p = prepare_window(lay, data, w, b)?;
    let (loss, count) = meta::loss_and_grad(cx, lay, params, &p.sample, p.target, p.mask, p.scratch, grad)?;
    Ok((f64::from(loss), count))
}

/// Window `w` built in its buffers, split into what one model call reads and what it writes.
struct Prepared<'a> {
    sample: Sample<'a>,
    target: &'a [f32],
    mask: &'a [u8],
    /// Sized for the window's graph.
    scratch: &'a mut [f32],
    out: &'a mut Vec<f32>,
}

/// Builds window `w` in `b` ([`build_window`]) and splits `b` for one call of the model.
fn prepare_window<'a>(
    lay: &Layout,
    data: &'a MetaData,
    w: &Window,
    b: &'a mut WindowBuffers,
) -> Result<Prepared<'a>, MetaTrainError> {
    build_window(&lay.cfg, data, w, b)?;
    let src = &data.sources[w.source];
    let WindowBuffers { attr, lpe, target, mask, scratch, out, .. } = b;
    let sample = Sample { graph: &src.graph, attr, lpe, centrality: &src.centrality };
    let scratch = sized(scratch, meta::scratch_len(&lay.cfg, &src.graph));
    Ok(Prepared { sample, target, mask, scratch, out })
}

/// Builds window `w` in `b` and writes the model's predictions for it into `b.out` (forward only), beside
/// the window's `b.target` and `b.mask`.
pub(super) fn predict_window(
    cx: meta::Compute<'_>,
    lay: &Layout,
    params: &[f32],
    data: &MetaData,
    w: &Window,
    b: &mut WindowBuffers,
) -> Result<(), MetaTrainError> {
    let p = prepare_window(lay, data, w, b)?;
    let out = sized(p.out, p.target.len());
    meta::predict(cx, lay, params, &p.sample, p.scratch, out)?;
    Ok(())
}

/// Builds window `w`'s context, target and mask in `b` (its `attr`, `target`, `mask` and signed `lpe`: the
/// model's [`Sample`] reads `attr` and `lpe`).
pub(super) fn build_window(
    cfg: &Config,
    data: &MetaData,
    w: &Window,
    b: &mut WindowBuffers,
) -> Result<(), MetaTrainError> {
    let src = &data.sources[w.source];
    let g = &src.graph;
    let (e, f, s) = (g.num_edges(), g.feat_slots(), cfg.seq_len);
    b.states.clear();
    for &j in &w.states {
        b.states.extend_from_slice(src.traj.state(j));
    }
    let (attr, target, mask) =
        (sized(&mut b.attr, e * f * cfg.ctx), sized(&mut b.target, e * f * s), sized(&mut b.mask, e * f * s));
    window::build(cfg, g, &b.states, w.len, sized(&mut b.window, window::scratch_len(cfg, g)), attr, target, mask)?;
    b.lpe.clear();
    b.lpe.extend(src.lpe.iter().enumerate().map(|(i, v)| v * w.signs[i % cfg.lpe]));
    Ok(())
}

/// Pooled loss and count of the batch `windows` and, when `with_grad`, its summed gradient (left in `work`),
/// over rayon's threads, on the kernels `cx`; without the gradient only the forward runs.
#[allow(clippy::too_many_arguments)]
fn batch_loss(
    cx: meta::Compute<'_>,
    lay: &Layout,
    params: &[f32],
    data: &MetaData,
    windows: &[Window],
    with_grad: bool,
    work: &mut Workspace,
) -> Result<(f64, usize), MetaTrainError> {
    work.grads.resize_with(PARTS, Vec::new);
    let per = windows.len().div_ceil(PARTS).max(1);
    let pool = &work.pool;
    // Part i sums windows [i*per, (i+1)*per) in order, and the parts are summed in order: the result does
    // not depend on how rayon schedules them.
    let parts: Vec<Result<(f64, usize), MetaTrainError>> = work
        .grads
        .par_iter_mut()
        .enumerate()
        .map(|(i, grad)| {
            if with_grad {
                grad.clear();
                grad.resize(lay.len, 0.0);
            }
            let mut b = pool.lock().map_err(|_| MetaTrainError::Poisoned)?.pop().unwrap_or_default();
            let mut total = Ok((0.0, 0));
            for w in windows.iter().skip(i * per).take(per) {
                total = total.and_then(|(l0, n0)| {
                    let (l, n) = window_loss_with(cx, lay, params, data, w, &mut b, grad, with_grad)?;
                    Ok((l0 + l, n0 + n))
                });
            }
            pool.lock().map_err(|_| MetaTrainError::Poisoned)?.push(b);
            total
        })
        .collect();
    let mut total = (0.0, 0);
    for part in parts {
        let (l, n) = part?;
        total = (total.0 + l, total.1 + n);
    }
    if with_grad {
        let (first, rest) = work.grads.split_at_mut(1);
        for g in rest {
            first[0].iter_mut().zip(g.iter()).for_each(|(a, v)| *a += v);
        }
    }
    Ok(total)
}

/// Pooled loss of `model` on `batches` batches drawn with a fixed `seed`: the same windows for every model,
/// so two models (before and after training) compare on equal terms. Forward only.
pub fn fixed_sample_loss(
    model: &MetaModel,
    data: &MetaData,
    mc: &MetaTrainConfig,
    seed: u64,
    batches: usize,
) -> Result<f64, MetaTrainError> {
    let mut rng = SplitMix64::new(seed);
    let (mut loss, mut count) = (0.0, 0);
    let mut work = Workspace::default();
    for _ in 0..batches {
        let windows = sample_batch(data, &model.layout.cfg, mc, &mut rng)?;
        let cx = crate::kernels::meta::host_compute();
        let (l, n) = batch_loss(cx, &model.layout, &model.params, data, &windows, false, &mut work)?;
        (loss, count) = (loss + l, count + n);
    }
    Ok(loss / count.max(1) as f64)
}

/// Masked L1 terms pooled per horizon: slot `k - 1` holds horizon `k`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HorizonL1 {
    /// Sum of `|pred - target|` over the terms that reached each horizon.
    pub sums: Vec<f64>,
    /// Terms that reached each horizon.
    pub counts: Vec<u64>,
}

impl HorizonL1 {
    /// The mean L1 at each horizon; `None` where no term reached it.
    pub fn means(&self) -> Vec<Option<f64>> {
        self.sums.iter().zip(&self.counts).map(|(s, &n)| (n > 0).then(|| s / n as f64)).collect()
    }

    /// The mean of the per-horizon means at horizons `ks` (1-based), each weighted equally; `None` if one
    /// is out of range or reached by no term.
    pub fn mean_at(&self, ks: &[usize]) -> Option<f64> {
        let means = self.means();
        let mut sum = 0.0;
        for &k in ks {
            sum += means.get(k.checked_sub(1)?).copied().flatten()?;
        }
        (!ks.is_empty()).then(|| sum / ks.len() as f64)
    }

    /// Adds `other`'s terms horizon by horizon (pooling windows or runs).
    pub fn add(&mut self, other: &HorizonL1) {
        self.sums.iter_mut().zip(&other.sums).for_each(|(a, v)| *a += v);
        self.counts.iter_mut().zip(&other.counts).for_each(|(a, v)| *a += v);
    }
}

/// [`fixed_sample_loss`]'s windows scored horizon by horizon: the masked L1 sum and count at each of the
/// model's `S` horizons, pooled over the windows. A nowcast reads one horizon (the schedule's `k`), so this
/// says which horizons a lower pooled loss came from. Forward only, windows in parallel, summed in order.
pub fn fixed_sample_by_horizon(
    model: &MetaModel,
    data: &MetaData,
    mc: &MetaTrainConfig,
    seed: u64,
    batches: usize,
) -> Result<HorizonL1, MetaTrainError> {
    let (lay, s) = (&model.layout, model.layout.cfg.seq_len);
    let mut rng = SplitMix64::new(seed);
    let mut windows = Vec::new();
    for _ in 0..batches {
        windows.extend(sample_batch(data, &lay.cfg, mc, &mut rng)?);
    }
    let cx = crate::kernels::meta::host_compute();
    let per_window: Vec<Result<HorizonL1, MetaTrainError>> = windows
        .par_iter()
        .map_init(WindowBuffers::default, |b, w| {
            predict_window(cx, lay, &model.params, data, w, b)?;
            let mut h = HorizonL1 { sums: vec![0.0; s], counts: vec![0; s] };
            meta::masked_l1_by_horizon(&b.out, &b.target, &b.mask, &mut h.sums, &mut h.counts)?;
            if h.sums.iter().any(|v| !v.is_finite()) {
                return Err(MetaTrainError::NonFiniteLoss);
            }
            Ok(h)
        })
        .collect();
    let mut total = HorizonL1 { sums: vec![0.0; s], counts: vec![0; s] };
    for h in per_window {
        total.add(&h?);
    }
    Ok(total)
}

/// One row of the loss curve.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LossRow {
    /// Update number (1-based).
    pub step: u64,
    /// Pooled masked L1 loss of the batch, before the update.
    pub loss: f64,
    /// Learning rate used.
    pub lr: f32,
    /// Gradient norm before clipping.
    pub grad_norm: f32,
    /// Seconds since the start of the run (resumed runs continue the count).
    pub seconds: f64,
    /// Masked L1 on the validation windows after this update, where it was measured.
    #[serde(default)]
    pub val_loss: Option<f64>,
}

/// The optimizer state of a meta-training run, saved and restored whole.
pub struct MetaTrainer {
    /// The model being trained.
    pub model: MetaModel,
    /// AdamW's first moments.
    pub m: Vec<f32>,
    /// AdamW's second moments.
    pub v: Vec<f32>,
    /// Updates made.
    pub step: u64,
    /// Adam's step counter.
    pub t: u64,
    /// The sampler's generator.
    pub rng: SplitMix64,
    /// The loss curve so far.
    pub rows: Vec<LossRow>,
    /// Settings.
    pub cfg: MetaTrainConfig,
    /// Buffers reused from one update to the next (not part of the saved state).
    work: Workspace,
}

impl MetaTrainer {
    /// A fresh run.
    pub fn new(model: MetaModel, cfg: MetaTrainConfig) -> MetaTrainer {
        let n = model.params.len();
        MetaTrainer {
            model,
            m: vec![0.0; n],
            v: vec![0.0; n],
            step: 0,
            t: 0,
            rng: SplitMix64::new(cfg.seed),
            rows: Vec::new(),
            cfg,
            work: Workspace::default(),
        }
    }

    /// One update: sample a batch, pooled loss and gradient, clip, AdamW with the cosine rate.
    pub fn update(
        &mut self,
        data: &MetaData,
        seconds_before: f64,
        started: std::time::Instant,
    ) -> Result<&LossRow, MetaTrainError> {
        let lay = self.model.layout;
        let windows = sample_batch(data, &lay.cfg, &self.cfg, &mut self.rng)?;
        let cx = self.cfg.precision.compute();
        let (loss, count) = batch_loss(cx, &lay, &self.model.params, data, &windows, true, &mut self.work)?;
        let grad = self.work.grad_mut();
        if count == 0 {
            return Err(MetaTrainError::NoTarget);
        }
        let inv = 1.0 / count as f32;
        grad.iter_mut().for_each(|g| *g *= inv);
        let norm = grad.iter().map(|g| f64::from(*g) * f64::from(*g)).sum::<f64>().sqrt() as f32;
        if !norm.is_finite() {
            return Err(MetaTrainError::NonFiniteGradient(self.step + 1));
        }
        if norm > self.cfg.clip {
            let k = self.cfg.clip / norm;
            grad.iter_mut().for_each(|g| *g *= k);
        }
        let lr = cosine_lr(self.cfg.lr, self.step, self.cfg.steps);
        let fresh_lr = self.cfg.fresh_lr.map_or(lr, |f| cosine_lr(f, self.step, self.cfg.steps));
        // One AdamW step, run range by range so the fresh tensors take their own rate; every range sees the
        // same step counter. Ranges are clamped, so a configuration out of order or bounds cannot panic.
        let n = self.model.params.len();
        let mut cuts = Vec::with_capacity(2 * self.cfg.fresh.len() + 1);
        let mut at = 0;
        for &(a, b) in &self.cfg.fresh {
            let (a, b) = (a.clamp(at, n), b.min(n));
            if b > a {
                cuts.extend([(at, a, lr), (a, b, fresh_lr)]);
                at = b;
            }
        }
        cuts.push((at, n, lr));
        let t0 = self.t;
        for (a, b, rate) in cuts.into_iter().filter(|c| c.1 > c.0) {
            let adam = AdamConfig { lr: rate, weight_decay: self.cfg.weight_decay, ..AdamConfig::new(rate) };
            self.t = t0;
            adam_step(
                &adam,
                &mut self.model.params[a..b],
                &grad[a..b],
                &mut self.m[a..b],
                &mut self.v[a..b],
                &mut self.t,
            )?;
        }
        self.step += 1;
        let seconds = seconds_before + started.elapsed().as_secs_f64();
        self.rows.push(LossRow {
            step: self.step,
            loss: loss / count as f64,
            lr,
            grad_norm: norm,
            seconds,
            val_loss: None,
        });
        Ok(self.rows.last().expect("just pushed"))
    }

    /// The whole state as safetensors bytes: the model, the moments, and the counters as JSON metadata.
    pub fn checkpoint_bytes(&self, data_dir: &str) -> Result<Vec<u8>, safetensors::SafeTensorError> {
        let n = self.model.params.len();
        let tensors: [(&str, Vec<usize>, &[f32]); 3] =
            [("params", vec![n], &self.model.params), ("adam.m", vec![n], &self.m), ("adam.v", vec![n], &self.v)];
        let state = serde_json::json!({
            "step": self.step, "t": self.t, "rng": self.rng.state(), "rows": self.rows,
            "steps": self.cfg.steps, "batch": self.cfg.batch, "windows": self.cfg.windows, "lr": self.cfg.lr,
            "weight_decay": self.cfg.weight_decay, "clip": self.cfg.clip, "spacing": self.cfg.spacing,
            "spacing_max": self.cfg.spacing_max, "fresh_lr": self.cfg.fresh_lr, "fresh": self.cfg.fresh,
            "seed": self.cfg.seed, "starts": self.cfg.starts.name(), "data": data_dir,
            "precision": self.cfg.precision.name(),
        });
        let meta: HashMap<String, String> = [
            ("format".to_string(), CHECKPOINT_FORMAT.to_string()),
            ("model_args".to_string(), model_args_json(&self.model.layout.cfg)),
            ("state".to_string(), state.to_string()),
        ]
        .into();
        f32_tensors_to_bytes(&tensors, Some(meta))
    }

    /// Restores a run from [`MetaTrainer::checkpoint_bytes`]; `cfg` and `data_dir` must be the saved ones.
    pub fn from_checkpoint(
        bytes: &[u8],
        cfg: &Config,
        mc: &MetaTrainConfig,
        data_dir: &str,
    ) -> Result<MetaTrainer, CheckpointProblem> {
        use CheckpointProblem as P;
        let (_, header) = SafeTensors::read_metadata(bytes).map_err(P::NotSafetensors)?;
        let meta = header.metadata().as_ref().ok_or(P::NoMetadata)?;
        if meta.get("format").map(String::as_str) != Some(CHECKPOINT_FORMAT) {
            return Err(P::Format);
        }
        let saved_cfg = Config::from_json(meta.get("model_args").map_or("", String::as_str)).map_err(P::ModelArgs)?;
        if saved_cfg != *cfg {
            return Err(P::OtherModel { saved: model_args_json(&saved_cfg), here: model_args_json(cfg) });
        }
        let mut state: serde_json::Value =
            serde_json::from_str(meta.get("state").map_or("", String::as_str)).map_err(P::State)?;
        // Older checkpoints: before spacing ranges there was one spacing, and before fresh learning rates
        // every tensor trained at one rate.
        if let Some(o) = state.as_object_mut() {
            let spacing = o.get("spacing").cloned().unwrap_or_default();
            o.entry("spacing_max").or_insert(spacing);
            o.entry("fresh_lr").or_insert(serde_json::Value::Null);
            o.entry("fresh").or_insert(serde_json::json!([]));
            o.entry("starts").or_insert(serde_json::json!(WindowStarts::Widest.name()));
            o.entry("precision").or_insert(serde_json::json!(Precision::F32.name()));
        }
        // Rates are f32: compared as f32, since serde_json's parser may miss an f64's last digit.
        let same = |k: &str, v: serde_json::Value| match (state.get(k), v.as_f64()) {
            (Some(saved), Some(x)) if v.is_f64() => saved.as_f64().map(|y| y as f32) == Some(x as f32),
            (saved, _) => saved == Some(&v),
        };
        let checks = [
            ("steps", serde_json::json!(mc.steps)),
            ("batch", serde_json::json!(mc.batch)),
            ("windows", serde_json::json!(mc.windows)),
            ("lr", serde_json::json!(mc.lr)),
            ("weight_decay", serde_json::json!(mc.weight_decay)),
            ("clip", serde_json::json!(mc.clip)),
            ("spacing", serde_json::json!(mc.spacing)),
            ("spacing_max", serde_json::json!(mc.spacing_max)),
            ("fresh_lr", serde_json::json!(mc.fresh_lr)),
            ("fresh", serde_json::json!(mc.fresh)),
            ("seed", serde_json::json!(mc.seed)),
            ("starts", serde_json::json!(mc.starts.name())),
            ("precision", serde_json::json!(mc.precision.name())),
            ("data", serde_json::json!(data_dir)),
        ];
        for (k, v) in checks {
            if !same(k, v.clone()) {
                let saved = state.get(k).cloned().unwrap_or(serde_json::Value::Null);
                return Err(P::Setting { key: k, saved, here: v });
            }
        }
        let st = SafeTensors::deserialize(bytes).map_err(P::Corrupt)?;
        let layout = Layout::new(cfg).map_err(P::Layout)?;
        let read = |name: &'static str| -> Result<Vec<f32>, CheckpointProblem> {
            let t = st.tensor(name).map_err(|_| P::NoTensor(name))?;
            if t.dtype() != Dtype::F32 || t.shape() != [layout.len] {
                return Err(P::Shape { name, dtype: t.dtype(), shape: t.shape().to_vec(), len: layout.len });
            }
            let v = f32s(t.data());
            if v.iter().any(|x| !x.is_finite()) {
                return Err(P::NonFinite(name));
            }
            Ok(v)
        };
        let num = |k: &'static str| state.get(k).and_then(serde_json::Value::as_u64).ok_or(P::NoCounter(k));
        let rows: Vec<LossRow> =
            serde_json::from_value(state.get("rows").cloned().unwrap_or_default()).map_err(P::State)?;
        Ok(MetaTrainer {
            model: MetaModel { layout, params: read("params")? },
            m: read("adam.m")?,
            v: read("adam.v")?,
            step: num("step")?,
            t: num("t")?,
            rng: SplitMix64::new(num("rng")?),
            rows,
            cfg: mc.clone(),
            work: Workspace::default(),
        })
    }
}

/// Head names for the command line.
pub fn parse_head(s: &str) -> Result<Head, UnknownHead> {
    match s {
        "mlp" => Ok(Head::Mlp),
        "gru" => Ok(Head::Gru),
        "lstm" => Ok(Head::Lstm),
        _ => Err(UnknownHead(s.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn published() -> WeightSet<f32> {
        WeightSet::load(concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/weights/nino_no_posw.safetensors")).unwrap()
    }

    fn slice<'a>(m: &'a MetaModel, key: &str) -> &'a [f32] {
        let t = m.slots().unwrap().into_iter().find(|t| t.key == key).unwrap();
        &m.params[t.offset..t.offset + t.len()]
    }

    #[test]
    fn init_from_copies_what_fits_and_adapts_lpe_and_head() {
        let w = published();
        let cfg = Config { wte_pos_enc: false, lpe: 5, head: Head::Lstm, centrality: true, ..Config::default() };
        let (m, copied) = MetaModel::init_from(&cfg, 1, &w).unwrap();
        let (_, np) = w.tensor("node_proj.fc.0.weight").unwrap();
        let ours = slice(&m, "node_proj.fc.0.weight");
        for r in 0..128 {
            assert_eq!(ours[r * 5..r * 5 + 5], np[r * 8..r * 8 + 5]);
        }
        assert_eq!(slice(&m, "edge_out.fc.weight"), w.tensor("edge_out.fc.2.weight").unwrap().1);
        assert_eq!(slice(&m, "gnn.convs.1.lin.weight"), w.tensor("gnn.convs.1.lin.weight").unwrap().1);
        assert!(!copied.iter().any(|k| k.starts_with("cent_proj") || k.starts_with("edge_out.rnn")));
        // Fresh tensors follow the reference's initialisation: N(0, 0.02^2) weights, zero biases.
        let cw = slice(&m, "edge_out.rnn.weight_hh_l0");
        let sd = (cw.iter().map(|v| v * v).sum::<f32>() / cw.len() as f32).sqrt();
        assert!((sd - 0.02).abs() < 0.002, "{sd}");
        assert!(slice(&m, "cent_proj.fc.0.bias").iter().all(|&b| b == 0.0));
    }

    /// A random walk of `spec` on Fashion-MNIST-shaped inputs.
    fn walk(spec: &str, n_states: usize) -> Trajectory {
        let arch = Arch::parse(spec, InputShape { channels: 1, height: 28, width: 28 }, 10).unwrap();
        random_walk(&arch, spec, n_states, 5)
    }

    /// Centrality added to a published model leaves its predictions as they were until training moves it.
    #[test]
    fn centrality_added_to_a_checkpoint_starts_switched_off() {
        let w = published();
        let mc = MetaTrainConfig { batch: 1, windows: 2, spacing: 40, spacing_max: 40, ..Default::default() };
        let loss = |centrality| {
            let cfg = Config { wte_pos_enc: false, centrality, ..Config::default() };
            let (m, _) = MetaModel::init_from(&cfg, 1, &w).unwrap();
            let data = MetaData::from_trajectories(vec![walk("conv:4,8", 80)], 20, &cfg).unwrap();
            fixed_sample_loss(&m, &data, &mc, 7, 1).unwrap()
        };
        let (without, with) = (loss(false), loss(true));
        assert!(without.is_finite() && without > 0.0, "{without}");
        assert_eq!(with, without);
    }

    /// Horizon by horizon, the windows add up to the pooled loss; windows short of the last horizons
    /// leave them with fewer terms.
    #[test]
    fn by_horizon_adds_up_to_the_pooled_loss() {
        let cfg = Config { wte_pos_enc: false, hid: 8, ..Config::default() };
        let m = MetaModel::init(&cfg, 3).unwrap();
        // 80 states 20 steps apart at spacing 60 (every third state): a window holds at most 27 of them, 5
        // for the context, so it reaches at most 22 of the 40 horizons.
        let mc = MetaTrainConfig { batch: 2, windows: 2, spacing: 60, spacing_max: 60, ..Default::default() };
        let data = MetaData::from_trajectories(vec![walk("conv:4,8", 80)], 20, &cfg).unwrap();
        let pooled = fixed_sample_loss(&m, &data, &mc, 7, 2).unwrap();
        let HorizonL1 { sums, counts } = fixed_sample_by_horizon(&m, &data, &mc, 7, 2).unwrap();
        assert_eq!(sums.len(), cfg.seq_len);
        let n: u64 = counts.iter().sum();
        let by_horizon = sums.iter().sum::<f64>() / n as f64;
        assert!(pooled.is_finite() && (by_horizon - pooled).abs() <= 1e-6 * pooled, "{by_horizon} vs {pooled}");
        assert!(counts[0] > 0 && counts[22..].iter().all(|&c| c == 0), "{counts:?}");
        assert!(counts.windows(2).all(|c| c[0] >= c[1]), "a window reaches horizons 1..=k: {counts:?}");
        let h = HorizonL1 { sums, counts };
        let m = h.means();
        assert_eq!(h.mean_at(&[1, 3]), Some((m[0].unwrap() + m[2].unwrap()) / 2.0));
        for bad in [&[0][..], &[23], &[41], &[]] {
            assert_eq!(h.mean_at(bad), None, "{bad:?}");
        }
    }

    /// A window's predictions through the meta-training path (trajectory states, the window's scaling, its
    /// signed LPE, [`predict_window`]) equal the nowcaster's on the same input states ([`nowcast_meta`],
    /// golden-tested against the reference), horizon by horizon once mapped back to parameters; and the
    /// window's targets map back to the states they came from. Both paths run the same kernels on the same
    /// values, so they agree to f32 rounding (1e-6 of the largest value); a window built from wrongly scaled
    /// states or unsigned, dropped or shifted LPE columns moves the predictions by far more.
    ///
    /// [`nowcast_meta`]: nino_core::nowcast::nowcast_meta
    #[test]
    fn window_predictions_match_the_nowcaster() {
        use nino_core::nowcast::{features, scale};
        let published_mlp = MetaModel::init_from(&Config { wte_pos_enc: false, ..Config::default() }, 1, &published());
        // A small LSTM model with centrality and 5 LPE columns, its weights 25x the reference's initial
        // scale so that node features reach the output well above rounding.
        let lstm =
            Config { wte_pos_enc: false, hid: 8, lpe: 5, head: Head::Lstm, centrality: true, ..Config::default() };
        let mut lstm = MetaModel::init(&lstm, 4).unwrap();
        lstm.params.iter_mut().for_each(|p| *p *= 25.0);
        for model in [published_mlp.unwrap().0, lstm] {
            let cfg = &model.layout.cfg;
            let data = MetaData::from_trajectories(vec![walk("conv:4,8", 60)], 20, cfg).unwrap();
            // Every horizon, from a later state than the first, with both signs on the LPE columns.
            let (c, s) = (cfg.ctx, cfg.seq_len);
            let signs = vec![1.0, -1.0, -1.0, 1.0, -1.0, 1.0, 1.0, -1.0];
            let w = Window { source: 0, states: (7..7 + c + s).collect(), len: s, signs };
            let mut b = WindowBuffers::default();
            predict_window(crate::kernels::meta::host_compute(), &model.layout, &model.params, &data, &w, &mut b)
                .unwrap();
            let src = &data.sources[w.source];
            let (g, arch) = (&src.graph, src.graph.arch());
            let p = arch.param_count();
            let history: Vec<f32> = w.states[..c].iter().flat_map(|&j| src.traj.state(j).to_vec()).collect();
            let lpe: Vec<f32> = src.lpe.iter().enumerate().map(|(i, v)| v * w.signs[i % cfg.lpe]).collect();
            let mut scales = vec![scale::TensorScale::default(); arch.tensor_count()];
            scale::tensor_scales(arch, &history, c, &mut scales).unwrap();
            let mut scratch = vec![0.0; nino_core::nowcast::meta_scratch_len(g, cfg)];
            let (mut want, mut ours, mut column) =
                (vec![0.0; p], vec![0.0; p], vec![0.0; g.num_edges() * g.feat_slots()]);
            let to_params = |m: &[f32], j: usize, column: &mut [f32], out: &mut [f32]| {
                column.iter_mut().zip(m.chunks_exact(s)).for_each(|(o, row)| *o = row[j]);
                features::edges_to_params(g, column, out).unwrap();
                scale::unscale_params(arch, &scales, out).unwrap();
            };
            let close = |a: &[f32], b: &[f32], rel: f32, what: &str| {
                let top = b.iter().fold(0f32, |m, v| m.max(v.abs()));
                // NaN when any difference is NaN, so the bound fails on it.
                let worst = crate::kernels::gemm::tests::max_diff(a, b);
                assert!(top > 0.0 && worst <= rel * top, "{what}: off by {worst} of {top}");
            };
            for k in 1..=s {
                let cx = crate::kernels::meta::host_compute();
                nino_core::nowcast::nowcast_meta(
                    cx,
                    &model.layout,
                    &model.params,
                    g,
                    &history,
                    &lpe,
                    &src.centrality,
                    k,
                    &mut scratch,
                    &mut want,
                )
                .unwrap();
                to_params(&b.out, k - 1, &mut column, &mut ours);
                close(&ours, &want, 1e-6, &format!("{} prediction k={k}", cfg.head.name()));
                to_params(&b.target, k - 1, &mut column, &mut ours);
                close(&ours, src.traj.state(w.states[c + k - 1]), 2e-5, &format!("target k={k}"));
                let counted = b.mask.chunks_exact(s).filter(|row| row[k - 1] == 1).count();
                assert_eq!(counted, p, "mask k={k}: every parameter counts once");
            }
        }
    }

    /// `drawn` lets short spacings start where `widest` never does, and every window still fits.
    #[test]
    fn drawn_window_starts_reach_later_states() {
        let cfg = Config { wte_pos_enc: false, hid: 8, ..Config::default() };
        let data = MetaData::from_trajectories(vec![walk("conv:4,8", 200)], 20, &cfg).unwrap();
        // Strides 1..=3 states; a window spans (5 + 10 + 2) strides: 17 states at stride 1, 51 at stride 3.
        let mc = MetaTrainConfig { batch: 4, windows: 2, spacing: 20, spacing_max: 60, ..Default::default() };
        let starts = |starts| {
            let mc = MetaTrainConfig { starts, ..mc.clone() };
            let mut rng = SplitMix64::new(5);
            let mut v = Vec::new();
            for _ in 0..50 {
                // An example's first window: the others start a stride later each.
                for w in sample_batch(&data, &cfg, &mc, &mut rng).unwrap().iter().step_by(mc.windows) {
                    let stride = w.states[1] - w.states[0];
                    v.push((w.states[0], stride, *w.states.last().unwrap()));
                }
            }
            v
        };
        let widest = starts(WindowStarts::Widest);
        assert!(widest.iter().all(|&(s, _, _)| s < 200 - 51), "{widest:?}");
        let drawn = starts(WindowStarts::Drawn);
        assert!(drawn.iter().all(|&(s, stride, last)| s < 200 - 17 * stride && last < 200), "{drawn:?}");
        assert!(drawn.iter().any(|&(s, stride, _)| stride == 1 && s >= 200 - 51), "none started late: {drawn:?}");
    }

    #[test]
    fn window_starts_are_part_of_the_checkpoint() {
        let cfg = tiny();
        let mc = MetaTrainConfig { steps: 4, batch: 1, windows: 2, spacing: 20, spacing_max: 20, ..Default::default() };
        let drawn = MetaTrainConfig { starts: WindowStarts::Drawn, ..mc.clone() };
        let bytes = MetaTrainer::new(MetaModel::init(&cfg, 3).unwrap(), drawn.clone()).checkpoint_bytes("d").unwrap();
        MetaTrainer::from_checkpoint(&bytes, &cfg, &drawn, "d").unwrap_or_else(|e| panic!("{e}"));
        let e = MetaTrainer::from_checkpoint(&bytes, &cfg, &mc, "d").err().unwrap();
        assert!(matches!(e, CheckpointProblem::Setting { key: "starts", .. }), "{e}");
        for w in [WindowStarts::Widest, WindowStarts::Drawn] {
            assert_eq!(w.name().parse::<WindowStarts>(), Ok(w));
        }
        assert!("late".parse::<WindowStarts>().is_err());
    }

    #[test]
    fn saved_models_load_back_exactly() {
        let cfg = Config { wte_pos_enc: false, hid: 8, lpe: 5, head: Head::Gru, centrality: true, ..Config::default() };
        let m = MetaModel::init(&cfg, 3).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.safetensors");
        m.save(&p, &[]).unwrap();
        let w = WeightSet::load(&p).unwrap();
        assert_eq!(w.config, cfg);
        assert_eq!(MetaModel::from_weights(&w).unwrap().params, m.params);
    }

    /// The smallest model the `meta_checkpoint` fuzz target's seed holds (a few hundred parameters).
    fn tiny() -> Config {
        Config { hid: 4, ctx: 2, lpe: 2, seq_len: 2, wte_pos_enc: false, head: Head::Gru, ..Config::default() }
    }

    /// The `meta_checkpoint` fuzz target's seed (tests/fuzz/seeds) is a checkpoint this version resumes;
    /// `NINO_WRITE_FUZZ_SEEDS=1` rewrites it. The target takes the model and settings from the bytes, as
    /// this test does.
    #[test]
    fn fuzz_seed_is_a_resumable_checkpoint() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fuzz/seeds/meta_checkpoint/gru.safetensors");
        let mc = MetaTrainConfig { steps: 10, batch: 2, windows: 2, spacing: 4, spacing_max: 8, ..Default::default() };
        if std::env::var_os("NINO_WRITE_FUZZ_SEEDS").is_some_and(|v| v == "1") {
            let mut t = MetaTrainer::new(MetaModel::init(&tiny(), 3).unwrap(), mc.clone());
            (t.step, t.t) = (2, 2);
            t.m.iter_mut().enumerate().for_each(|(i, m)| *m = i as f32 * 1e-3);
            t.v.iter_mut().enumerate().for_each(|(i, v)| *v = i as f32 * 1e-6);
            let row = LossRow { step: 1, loss: 0.5, lr: 1e-3, grad_norm: 0.25, seconds: 1.0, val_loss: Some(0.75) };
            t.rows = vec![row.clone(), LossRow { step: 2, val_loss: None, ..row }];
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, t.checkpoint_bytes("d").unwrap()).unwrap();
        }
        let bytes = std::fs::read(&path).unwrap();
        let t = MetaTrainer::from_checkpoint(&bytes, &tiny(), &mc, "d")
            .unwrap_or_else(|e| panic!("{e} (rewrite: NINO_WRITE_FUZZ_SEEDS=1)"));
        assert_eq!((t.step, t.rows.len(), t.m.len()), (2, 2, t.model.params.len()));
        // Garbage, a cut and NaN moments are one-line refusals.
        for bad in [&b"garbage"[..], &bytes[..bytes.len() / 2]] {
            let e = MetaTrainer::from_checkpoint(bad, &tiny(), &mc, "d").err().unwrap().to_string();
            assert!(!e.contains('\n'), "{e}");
        }
        let mut nan = t;
        nan.v[1] = f32::NAN;
        let e = MetaTrainer::from_checkpoint(&nan.checkpoint_bytes("d").unwrap(), &tiny(), &mc, "d").err().unwrap();
        assert!(matches!(e, CheckpointProblem::NonFinite("adam.v")), "{e}");
    }

    /// The fresh ranges are exactly the tensors `init_from` did not copy.
    #[test]
    fn fresh_ranges_are_the_tensors_not_copied() {
        let cfg = Config { wte_pos_enc: false, head: Head::Lstm, centrality: true, ..Config::default() };
        let (m, copied) = MetaModel::init_from(&cfg, 1, &published()).unwrap();
        let fresh = m.fresh_ranges(&copied).unwrap();
        for t in m.slots().unwrap() {
            let inside = fresh.iter().any(|&(a, b)| a <= t.offset && t.offset + t.len() <= b);
            let new = t.key.starts_with("cent_proj") || t.key.starts_with("edge_out.rnn");
            assert_eq!(inside, new, "{}", t.key.as_str());
        }
    }

    /// With a fresh learning rate, the other parameters take exactly the update they take without one, the
    /// fresh ones their own; the setting is part of the checkpoint.
    #[test]
    fn fresh_tensors_learn_at_their_own_rate() {
        let cfg = tiny();
        let data = MetaData::from_trajectories(vec![walk("conv:4,8", 40)], 20, &cfg).unwrap();
        let base = MetaTrainConfig {
            steps: 4,
            batch: 1,
            windows: 2,
            lr: 1e-3,
            spacing: 20,
            spacing_max: 20,
            ..Default::default()
        };
        let model = MetaModel::init(&cfg, 3).unwrap();
        let n = model.params.len();
        let fresh = vec![(n / 4, n / 2)];
        let run = |mc: MetaTrainConfig| {
            let mut t = MetaTrainer::new(MetaModel::init(&cfg, 3).unwrap(), mc);
            t.update(&data, 0.0, std::time::Instant::now()).unwrap();
            t
        };
        let one_rate = run(base.clone());
        let mc = MetaTrainConfig { fresh_lr: Some(1e-9), fresh: fresh.clone(), ..base };
        let split = run(mc.clone());
        let (a, b) = fresh[0];
        assert_eq!(split.model.params[..a], one_rate.model.params[..a]);
        assert_eq!(split.model.params[b..], one_rate.model.params[b..]);
        assert_eq!(split.t, one_rate.t);
        let moved = |t: &MetaTrainer, r: std::ops::Range<usize>| {
            crate::kernels::gemm::tests::max_diff(&t.model.params[r.clone()], &model.params[r])
        };
        assert!(moved(&one_rate, a..b) > 1e-4, "{}", moved(&one_rate, a..b));
        assert!(moved(&split, a..b) < 1e-7, "{}", moved(&split, a..b));
        assert!(moved(&split, 0..a).max(moved(&split, b..n)) > 1e-4);
        let bytes = split.checkpoint_bytes("d").unwrap();
        MetaTrainer::from_checkpoint(&bytes, &cfg, &mc, "d").unwrap_or_else(|e| panic!("{e}"));
        let other = MetaTrainConfig { fresh: vec![(0, 1)], ..mc };
        let e = MetaTrainer::from_checkpoint(&bytes, &cfg, &other, "d").err().unwrap();
        assert!(matches!(e, CheckpointProblem::Setting { key: "fresh", .. }), "{e}");
    }

    #[test]
    fn cosine_schedule_ends_at_its_floor() {
        assert_eq!(cosine_lr(3e-3, 0, 100), 3e-3);
        assert!((cosine_lr(3e-3, 100, 100) - 1e-6).abs() < 1e-9);
        assert!((cosine_lr(3e-3, 50, 100) - (1e-6 + (3e-3 - 1e-6) / 2.0)).abs() < 1e-7);
    }
}
