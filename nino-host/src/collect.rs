//! Adam trajectories of many target networks, recorded as a dataset for meta-training NiNo (`nino collect`).
//!
//! A collection folder holds one safetensors shard per trajectory and a `manifest.json`:
//!
//! - `traj-XXXXX.safetensors` (`XXXXX`: the trajectory's index in the cross product archs x lrs x seeds, in
//!   that nesting order): tensor `states [n_states, P]` (f16 or f32; row 0 is the initial parameters, row
//!   `j` the parameters after `j * every` Adam steps, in the flat PyTorch order of NINO_REFERENCE.md 1.3),
//!   tensor `metrics [n_states, 2]` f32 (column 0: the mean training loss of the `every` steps that led to
//!   the state, for row 0 the loss of the first batch at the initial parameters; column 1: the step), and
//!   one metadata entry `nino`, a JSON [`ShardMeta`];
//! - `manifest.json`: a JSON [`Manifest`]: the format, the collection's [`CollectConfig`] and the finished
//!   trajectories, each with its shard's byte length and CRC-32.
//!
//! Every file is written atomically (temporary file, fsync, rename), a shard before the manifest that lists
//! it, so after a kill the manifest lists only complete shards; a new run with the same settings skips
//! them and redoes only the trajectory that was in progress (its half-written temporary file is deleted,
//! a shard written but not yet listed is overwritten with the same bytes).

use crate::data::{BatchSampler, Splits};
use crate::engine::{AdamConfig, Engine, init_params};
use crate::fsutil::write_atomic;
use anyhow::{Context, anyhow, bail};
use half::f16;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use nino_core::{Arch, Task};
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The `format` of the manifests and shards this version writes and reads.
pub const FORMAT: &str = "nino-collect/1";

/// The manifest's file name inside a collection folder.
pub const MANIFEST: &str = "manifest.json";

/// Held locked while a collector writes the folder, so two collectors never write the same trajectories.
const LOCK: &str = ".nino-collect.lock";

/// Prefix of [`write_atomic`]'s temporary files (left behind only by a killed run).
const TMP_PREFIX: &str = ".nino-tmp-";

/// Adam's settings besides the learning rate: the reference protocol's.
const ADAM_BETAS: [f32; 2] = [0.9, 0.999];
const ADAM_EPS: f32 = 1e-8;

/// How states are stored: f16 as in the reference's meta-dataset (half the size), or f32 (exact).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StateDtype {
    /// IEEE half precision, rounded to nearest even.
    F16,
    /// The trainer's own f32 values, bit for bit.
    F32,
}

impl StateDtype {
    /// Bytes per stored parameter.
    pub fn size(self) -> usize {
        match self {
            StateDtype::F16 => 2,
            StateDtype::F32 => 4,
        }
    }

    fn safetensors(self) -> Dtype {
        match self {
            StateDtype::F16 => Dtype::F16,
            StateDtype::F32 => Dtype::F32,
        }
    }

    fn name(self) -> &'static str {
        match self {
            StateDtype::F16 => "f16",
            StateDtype::F32 => "f32",
        }
    }
}

/// The settings that decide a collection's contents; a continued collection must have the same ones.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CollectConfig {
    /// Built-in task (`fm16`, ...) whose normalisation is used, or `None` for the data's own.
    pub task: Option<String>,
    /// The dataset folder, canonicalised.
    pub data: String,
    /// Training images used (the protocol's first `n - n/12`).
    pub train_images: usize,
    /// Test images (the final test accuracy of each trajectory).
    pub test_images: usize,
    /// Input shape `[channels, height, width]`.
    pub input: [usize; 3],
    /// Classes of the classifier head.
    pub classes: usize,
    /// Input normalisation `(pixel/255 - mean) / std`: mean.
    pub norm_mean: f32,
    /// Input normalisation: std.
    pub norm_std: f32,
    /// Canonical arch specs (`conv:16,32,32`, `mlp:32`), outermost loop of the cross product.
    pub archs: Vec<String>,
    /// Adam learning rates, middle loop.
    pub lrs: Vec<f32>,
    /// Seeds of the initial weights and the batch order, innermost loop.
    pub seeds: Vec<u64>,
    /// Adam steps per trajectory.
    pub steps: u64,
    /// Steps between stored states.
    pub every: u64,
    /// Batch size.
    pub batch: usize,
    /// Storage of the states.
    pub dtype: StateDtype,
    /// Adam's beta1 and beta2.
    pub adam_betas: [f32; 2],
    /// Adam's epsilon.
    pub adam_eps: f32,
}

impl CollectConfig {
    /// Number of trajectories (archs x lrs x seeds).
    pub fn len(&self) -> usize {
        self.archs.len() * self.lrs.len() * self.seeds.len()
    }

    /// True when the cross product is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// States per trajectory: the initial one and one every `every` steps.
    pub fn n_states(&self) -> usize {
        (self.steps / self.every.max(1)) as usize + 1
    }

    /// Arch spec, lr and seed of trajectory `index` (archs outermost, seeds innermost).
    pub fn item(&self, index: usize) -> Option<(&str, f32, u64)> {
        if index >= self.len() {
            return None;
        }
        let (s, l) = (self.seeds.len(), self.lrs.len());
        Some((&self.archs[index / (s * l)], self.lrs[index / s % l], self.seeds[index % s]))
    }

    /// The first setting in which `self` (a manifest's) and `other` (this command's) differ, as
    /// `(name, self's value, other's value)`.
    fn difference(&self, other: &CollectConfig) -> Option<(&'static str, String, String)> {
        let fields: [(&str, Getter); 14] = [
            ("--task", |c| c.task.clone().unwrap_or_else(|| "none".into())),
            ("--data", |c| c.data.clone()),
            ("training images", |c| c.train_images.to_string()),
            ("test images", |c| c.test_images.to_string()),
            ("image shape", |c| format!("{:?}", c.input)),
            ("classes", |c| c.classes.to_string()),
            ("normalisation", |c| format!("mean {} std {}", c.norm_mean, c.norm_std)),
            ("--arch", |c| c.archs.join(";")),
            ("--lr", |c| c.lrs.iter().map(f32::to_string).collect::<Vec<_>>().join(",")),
            ("--seeds", |c| format_seeds(&c.seeds)),
            ("--steps", |c| c.steps.to_string()),
            ("--every", |c| c.every.to_string()),
            ("--batch", |c| c.batch.to_string()),
            ("state dtype (--f32)", |c| c.dtype.name().to_string()),
        ];
        for (name, get) in fields {
            let (a, b) = (get(self), get(other));
            if a != b {
                return Some((name, a, b));
            }
        }
        if (self.adam_betas, self.adam_eps) != (other.adam_betas, other.adam_eps) {
            return Some((
                "Adam settings",
                format!("{:?} {}", self.adam_betas, self.adam_eps),
                format!("{:?} {}", other.adam_betas, other.adam_eps),
            ));
        }
        None
    }
}

/// Reads one setting of a [`CollectConfig`] as text, for messages.
type Getter = fn(&CollectConfig) -> String;

/// One finished trajectory as the manifest lists it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrajectoryEntry {
    /// Position in the cross product archs x lrs x seeds.
    pub index: usize,
    /// Shard file name inside the collection folder.
    pub file: String,
    /// Canonical arch spec.
    pub arch: String,
    /// Parameters per state (`P`).
    pub params: usize,
    /// Seed of the initial weights and the batch order.
    pub seed: u64,
    /// Adam learning rate.
    pub lr: f32,
    /// Stored states.
    pub n_states: usize,
    /// Shard size in bytes.
    pub bytes: u64,
    /// CRC-32 of the whole shard file.
    pub crc32: u32,
    /// Mean training loss of the last `every` steps.
    pub final_train_loss: f32,
    /// Test accuracy of the last state (fraction).
    pub test_acc: f32,
    /// Wall time of the trajectory (training, evaluation, writing), seconds.
    pub seconds: f64,
}

/// The JSON index of a collection folder: what the meta-training driver reads first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`FORMAT`].
    pub format: String,
    /// The settings of the collection.
    pub config: CollectConfig,
    /// Finished trajectories, by index.
    pub trajectories: Vec<TrajectoryEntry>,
}

/// The metadata a shard carries about itself (JSON in the safetensors metadata entry `nino`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShardMeta {
    /// [`FORMAT`].
    pub format: String,
    /// Position in the collection's cross product.
    pub index: usize,
    /// Canonical arch spec.
    pub arch: String,
    /// Input shape `[channels, height, width]`.
    pub input: [usize; 3],
    /// Classes of the classifier head.
    pub classes: usize,
    /// Parameters per state (`P`).
    pub params: usize,
    /// Seed of the initial weights and the batch order.
    pub seed: u64,
    /// Adam learning rate.
    pub lr: f32,
    /// Batch size.
    pub batch: usize,
    /// Steps between stored states.
    pub every: u64,
    /// Adam steps in the trajectory.
    pub steps: u64,
    /// Storage of `states`.
    pub dtype: StateDtype,
    /// Built-in task whose normalisation was used, if any.
    pub task: Option<String>,
    /// The dataset folder.
    pub data: String,
    /// Input normalisation mean.
    pub norm_mean: f32,
    /// Input normalisation std.
    pub norm_std: f32,
}

/// One trajectory read back, states widened to f32.
#[derive(Clone, Debug)]
pub struct Trajectory {
    /// What the shard says about itself.
    pub meta: ShardMeta,
    /// Stored states.
    pub n_states: usize,
    /// Parameters per state.
    pub params: usize,
    /// `n_states * params` values, state after state.
    pub states: Vec<f32>,
    /// `n_states * 2` values: (mean training loss, step) per state.
    pub metrics: Vec<f32>,
}

impl Trajectory {
    /// Reads and checks a shard (format, dtypes and shapes against its metadata).
    pub fn load(path: &Path) -> anyhow::Result<Trajectory> {
        let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        Trajectory::from_bytes(&bytes).map_err(|e| anyhow!("{}: {e}", path.display()))
    }

    /// Parses a shard's bytes.
    pub fn from_bytes(bytes: &[u8]) -> anyhow::Result<Trajectory> {
        let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| anyhow!("not a safetensors file ({e})"))?;
        let json =
            header.metadata().as_ref().and_then(|m| m.get("nino")).ok_or_else(|| anyhow!("no `nino` metadata"))?;
        let meta: ShardMeta = serde_json::from_str(json).map_err(|e| anyhow!("bad `nino` metadata ({e})"))?;
        if meta.format != FORMAT {
            bail!("format `{}`, expected `{FORMAT}`", meta.format);
        }
        if meta.every == 0 {
            bail!("`every` is 0 in its metadata");
        }
        let st = SafeTensors::deserialize(bytes).map_err(|e| anyhow!("not a safetensors file ({e})"))?;
        let n_states = (meta.steps / meta.every) as usize + 1;
        let s = st.tensor("states").map_err(|e| anyhow!("no `states` tensor ({e})"))?;
        if s.dtype() != meta.dtype.safetensors() || s.shape() != [n_states, meta.params] {
            bail!(
                "`states` is {:?} {:?}, expected {:?} [{n_states}, {}]",
                s.dtype(),
                s.shape(),
                meta.dtype.safetensors(),
                meta.params
            );
        }
        let states = match meta.dtype {
            StateDtype::F16 => s.data().chunks_exact(2).map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
            StateDtype::F32 => f32s(s.data()),
        };
        let m = st.tensor("metrics").map_err(|e| anyhow!("no `metrics` tensor ({e})"))?;
        if m.dtype() != Dtype::F32 || m.shape() != [n_states, 2] {
            bail!("`metrics` is {:?} {:?}, expected F32 [{n_states}, 2]", m.dtype(), m.shape());
        }
        Ok(Trajectory { n_states, params: meta.params, states, metrics: f32s(m.data()), meta })
    }

    /// State `j` (parameters after `j * every` steps).
    pub fn state(&self, j: usize) -> &[f32] {
        &self.states[j * self.params..(j + 1) * self.params]
    }

    /// Mean training loss of the steps that led to state `j` (state 0: the first batch's loss).
    pub fn train_loss(&self, j: usize) -> f32 {
        self.metrics[2 * j]
    }

    /// The step of state `j`.
    pub fn step(&self, j: usize) -> u64 {
        self.metrics[2 * j + 1] as u64
    }
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut c = flate2::Crc::new();
    c.update(bytes);
    c.sum()
}

impl Manifest {
    /// Reads `dir/manifest.json`.
    pub fn load(dir: &Path) -> anyhow::Result<Manifest> {
        let path = dir.join(MANIFEST);
        let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let m: Manifest = serde_json::from_str(&text)
            .map_err(|e| anyhow!("{} is not a nino collection manifest ({e})", path.display()))?;
        if m.format != FORMAT {
            bail!("{}: format `{}`, expected `{FORMAT}`", path.display(), m.format);
        }
        Ok(m)
    }

    /// Reads the shard of `entry` from `dir`, checking its size and CRC-32 against the manifest and its
    /// metadata against the entry.
    pub fn load_trajectory(&self, dir: &Path, entry: &TrajectoryEntry) -> anyhow::Result<Trajectory> {
        let path = dir.join(&entry.file);
        let bytes = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        if bytes.len() as u64 != entry.bytes || crc32(&bytes) != entry.crc32 {
            bail!(
                "{} is damaged: {} bytes with CRC-32 {:08x}, the manifest says {} bytes with {:08x}",
                path.display(),
                bytes.len(),
                crc32(&bytes),
                entry.bytes,
                entry.crc32
            );
        }
        let t = Trajectory::from_bytes(&bytes).map_err(|e| anyhow!("{}: {e}", path.display()))?;
        let m = &t.meta;
        if (m.index, m.arch.as_str(), m.seed, m.lr, m.params, t.n_states)
            != (entry.index, entry.arch.as_str(), entry.seed, entry.lr, entry.params, entry.n_states)
        {
            bail!("{}: its metadata does not match its manifest entry", path.display());
        }
        Ok(t)
    }

    fn write(&self, dir: &Path) -> anyhow::Result<()> {
        let path = dir.join(MANIFEST);
        let mut text = serde_json::to_string_pretty(self)?;
        text.push('\n');
        write_atomic(&path, text.as_bytes()).with_context(|| format!("cannot write {}", path.display()))
    }
}

/// `1-8,10`: seeds as comma-separated values and inclusive ranges (the `--seeds` syntax).
pub fn format_seeds(seeds: &[u64]) -> String {
    let mut parts = Vec::new();
    let mut i = 0;
    while i < seeds.len() {
        let mut j = i;
        while j + 1 < seeds.len() && seeds[j].checked_add(1) == Some(seeds[j + 1]) {
            j += 1;
        }
        parts.push(if j > i { format!("{}-{}", seeds[i], seeds[j]) } else { seeds[i].to_string() });
        i = j + 1;
    }
    parts.join(",")
}

/// Parses `--seeds`: comma-separated seeds and inclusive ranges `A-B` (`1-8,100`).
pub fn parse_seeds(s: &str) -> Result<Vec<u64>, String> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim) {
        let num =
            |t: &str| t.trim().parse::<u64>().map_err(|_| format!("bad seed `{t}` in `{s}` (expected e.g. 1-8,100)"));
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (num(a)?, num(b)?);
                if b < a || b - a >= 1_000_000 {
                    return Err(format!("bad seed range `{part}`: A-B needs A <= B and at most a million seeds"));
                }
                out.extend(a..=b);
            }
            None => out.push(num(part)?),
        }
    }
    Ok(out)
}

/// What to collect and where.
#[derive(Clone, Debug)]
pub struct CollectSpec {
    /// The collection folder (created if missing; an existing collection there is continued).
    pub out: PathBuf,
    /// Built-in task whose normalisation and shape check apply, or `None` for the data's own.
    pub task: Option<Task>,
    /// The dataset folder the data was loaded from.
    pub data_dir: PathBuf,
    /// Arch specs.
    pub archs: Vec<String>,
    /// Adam learning rates.
    pub lrs: Vec<f32>,
    /// Seeds.
    pub seeds: Vec<u64>,
    /// Adam steps per trajectory.
    pub steps: u64,
    /// Steps between stored states.
    pub every: u64,
    /// Batch size.
    pub batch: usize,
    /// Storage of the states.
    pub dtype: StateDtype,
    /// Draw progress bars on stderr.
    pub progress: bool,
    /// Print a line per trajectory on stderr.
    pub log: bool,
}

/// What [`collect`] did.
#[derive(Clone, Debug, PartialEq)]
pub struct CollectReport {
    /// Trajectories in the collection.
    pub total: usize,
    /// Trajectories that were already there.
    pub already: usize,
    /// Trajectories trained by this call.
    pub new: usize,
    /// Bytes of all listed shards.
    pub bytes: u64,
}

/// Checks the settings of `spec` that need no data (so a typo fails before the data is loaded).
pub fn check(spec: &CollectSpec) -> anyhow::Result<()> {
    if spec.every == 0 {
        bail!("--every must be at least 1");
    }
    if spec.steps == 0 || !spec.steps.is_multiple_of(spec.every) {
        bail!("--steps must be a positive multiple of --every ({}), got {}", spec.every, spec.steps);
    }
    if spec.steps >= 1 << 24 {
        bail!("--steps must be below 16,777,216 (steps are stored as f32)");
    }
    if spec.batch == 0 {
        bail!("--batch must be at least 1");
    }
    if let Some(lr) = spec.lrs.iter().find(|l| !(l.is_finite() && **l > 0.0)) {
        bail!("--lr must be positive numbers, got {lr}");
    }
    for (what, n) in [("--arch", spec.archs.len()), ("--lr", spec.lrs.len()), ("--seeds", spec.seeds.len())] {
        if n == 0 {
            bail!("{what} needs at least one value");
        }
    }
    if spec.lrs.iter().enumerate().any(|(i, l)| spec.lrs[..i].contains(l)) {
        bail!("--lr lists a learning rate twice");
    }
    if spec.seeds.iter().collect::<HashSet<_>>().len() != spec.seeds.len() {
        bail!("--seeds lists a seed twice");
    }
    Ok(())
}

/// Checks `spec` against the data and builds the collection's settings and its networks (one per arch).
pub fn plan(spec: &CollectSpec, data: &Splits) -> anyhow::Result<(CollectConfig, Vec<Arch>)> {
    check(spec)?;
    let shape = data.train.shape;
    if let Some(t) = spec.task {
        crate::run::check_task_data(t, data, &spec.data_dir)?;
    }
    let mut archs = Vec::new();
    let mut specs: Vec<String> = Vec::new();
    for s in &spec.archs {
        let arch = Arch::parse(s, shape, data.classes)
            .map_err(|e| anyhow!("bad --arch `{s}` for {}x{} images: {e}", shape.height, shape.width))?;
        let mut canon = String::new();
        arch.write_spec(&mut canon).map_err(|_| anyhow!("formatting the arch spec"))?;
        if specs.contains(&canon) {
            bail!("--arch lists {canon} twice");
        }
        specs.push(canon);
        archs.push(arch);
    }
    let data_dir = std::fs::canonicalize(&spec.data_dir).unwrap_or_else(|_| spec.data_dir.clone());
    let config = CollectConfig {
        task: spec.task.map(|t| t.name().to_string()),
        data: data_dir.display().to_string(),
        train_images: data.train.len(),
        test_images: data.test.len(),
        input: [shape.channels, shape.height, shape.width],
        classes: data.classes,
        norm_mean: data.norm.mean,
        norm_std: data.norm.std,
        archs: specs,
        lrs: spec.lrs.clone(),
        seeds: spec.seeds.clone(),
        steps: spec.steps,
        every: spec.every,
        batch: spec.batch,
        dtype: spec.dtype,
        adam_betas: ADAM_BETAS,
        adam_eps: ADAM_EPS,
    };
    Ok((config, archs))
}

/// The shard file name of trajectory `index`.
pub fn shard_name(index: usize) -> String {
    format!("traj-{index:05}.safetensors")
}

/// A file a collection folder may hold besides the manifest (a killed run can leave any of them).
fn is_ours(name: &str) -> bool {
    name == LOCK || name.starts_with(TMP_PREFIX) || (name.starts_with("traj-") && name.ends_with(".safetensors"))
}

/// Checks an existing manifest against this command's settings and its shards against the manifest
/// (present, with the recorded size; the CRC-32 is checked by whoever reads a shard).
fn check_existing(dir: &Path, m: &Manifest, config: &CollectConfig) -> anyhow::Result<()> {
    let path = dir.join(MANIFEST);
    if let Some((name, theirs, ours)) = m.config.difference(config) {
        bail!(
            "{} was collected with {name} {theirs}, this command has {name} {ours}: continue it with its own \
             settings, or pick another --out",
            path.display()
        );
    }
    let mut seen = HashSet::new();
    for e in &m.trajectories {
        let expected = config.item(e.index);
        if !seen.insert(e.index)
            || expected != Some((e.arch.as_str(), e.lr, e.seed))
            || e.file != shard_name(e.index)
            || e.n_states != config.n_states()
        {
            bail!("{}: entry for trajectory {} does not match the collection's settings", path.display(), e.index);
        }
        let shard = dir.join(&e.file);
        let size = std::fs::metadata(&shard).map(|md| md.len());
        match size {
            Ok(n) if n == e.bytes => {}
            Ok(n) => bail!(
                "{} has {n} bytes but {} lists {} bytes: the collection is damaged (restore the file, or remove \
                 its entry from the manifest to redo it)",
                shard.display(),
                path.display(),
                e.bytes
            ),
            Err(_) => bail!(
                "{} is listed in {} but missing: the collection is damaged (restore the file, or remove its \
                 entry from the manifest to redo it)",
                shard.display(),
                path.display()
            ),
        }
    }
    Ok(())
}

/// Locks `dir` for this process (released when the returned file is dropped or the process dies).
fn lock(dir: &Path) -> anyhow::Result<std::fs::File> {
    let path = dir.join(LOCK);
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(std::fs::TryLockError::WouldBlock) => bail!("another `nino collect` is writing {}", dir.display()),
        Err(std::fs::TryLockError::Error(e)) => Err(e).with_context(|| format!("cannot lock {}", path.display())),
    }
}

fn bar(mp: &MultiProgress, len: u64, template: &str) -> ProgressBar {
    let pb = mp.add(ProgressBar::new(len));
    if let Ok(style) = ProgressStyle::with_template(template) {
        pb.set_style(style.progress_chars("=> "));
    }
    pb
}

/// Trains every trajectory of `spec` that `spec.out` does not hold yet and writes it; see the module
/// documentation for the files and why a killed run loses at most the trajectory in progress.
pub fn collect(spec: &CollectSpec, data: &Splits) -> anyhow::Result<CollectReport> {
    let (config, archs) = plan(spec, data)?;
    let dir = &spec.out;
    let manifest_path = dir.join(MANIFEST);
    if dir.exists() && !manifest_path.exists() {
        let entries = std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?;
        for e in entries {
            let name = e?.file_name();
            if !is_ours(&name.to_string_lossy()) {
                bail!(
                    "{} holds {} but no {MANIFEST}: pick a new or empty folder for a collection",
                    dir.display(),
                    name.to_string_lossy()
                );
            }
        }
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let _lock = lock(dir)?;
    let mut manifest = if manifest_path.exists() {
        let m = Manifest::load(dir)?;
        check_existing(dir, &m, &config)?;
        m
    } else {
        Manifest { format: FORMAT.to_string(), config: config.clone(), trajectories: Vec::new() }
    };
    // Only a killed write leaves these; the lock says no other collector is writing one now.
    for e in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let e = e?;
        if e.file_name().to_string_lossy().starts_with(TMP_PREFIX) {
            std::fs::remove_file(e.path()).with_context(|| format!("cannot remove {}", e.path().display()))?;
        }
    }

    let done: HashSet<usize> = manifest.trajectories.iter().map(|e| e.index).collect();
    let total = config.len();
    let already = done.len();
    let mp = MultiProgress::with_draw_target(if spec.progress {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    });
    let say = |line: String| {
        if spec.log {
            if spec.progress {
                let _ = mp.println(line);
            } else {
                eprintln!("{line}")
            }
        }
    };
    say(format!(
        "collecting {total} trajectories ({} archs x {} lrs x {} seeds; {} steps, a state every {}, {}) in {}; {} \
         already there",
        config.archs.len(),
        config.lrs.len(),
        config.seeds.len(),
        config.steps,
        config.every,
        config.dtype.name(),
        dir.display(),
        already
    ));
    let traj_pb = bar(&mp, total as u64, "{elapsed_precise} [{bar:30}] trajectory {pos}/{len} (eta {eta})");
    traj_pb.set_position(already as u64);
    let step_pb = bar(&mp, config.steps, "{msg:>28} [{bar:30}] step {pos}/{len} ({per_sec})");
    let mut new = 0;
    for index in (0..total).filter(|i| !done.contains(i)) {
        let (arch_spec, lr, seed) = config.item(index).expect("index below len");
        let arch = &archs[index / (config.lrs.len() * config.seeds.len())];
        step_pb.reset();
        step_pb.set_message(format!("{arch_spec} lr {lr} seed {seed}"));
        let t0 = Instant::now();
        let shard = train_one(arch, lr, seed, &config, data, &step_pb)
            .with_context(|| format!("trajectory {index} ({arch_spec}, lr {lr}, seed {seed})"))?;
        let meta = ShardMeta {
            format: FORMAT.to_string(),
            index,
            arch: arch_spec.to_string(),
            input: config.input,
            classes: config.classes,
            params: arch.param_count(),
            seed,
            lr,
            batch: config.batch,
            every: config.every,
            steps: config.steps,
            dtype: config.dtype,
            task: config.task.clone(),
            data: config.data.clone(),
            norm_mean: config.norm_mean,
            norm_std: config.norm_std,
        };
        let bytes = shard.serialize(&meta, config.n_states())?;
        let file = shard_name(index);
        let path = dir.join(&file);
        write_atomic(&path, &bytes).with_context(|| format!("cannot write {}", path.display()))?;
        let entry = TrajectoryEntry {
            index,
            file,
            arch: arch_spec.to_string(),
            params: arch.param_count(),
            seed,
            lr,
            n_states: config.n_states(),
            bytes: bytes.len() as u64,
            crc32: crc32(&bytes),
            final_train_loss: shard.final_train_loss(),
            test_acc: shard.test_acc,
            seconds: t0.elapsed().as_secs_f64(),
        };
        say(format!(
            "trajectory {}/{total}: {arch_spec} lr {lr} seed {seed}: final train loss {:.4}, test acc {:.2}%, {:.1} \
             MB, {:.1} s",
            index + 1,
            entry.final_train_loss,
            100.0 * entry.test_acc,
            entry.bytes as f64 / 1e6,
            entry.seconds
        ));
        manifest.trajectories.push(entry);
        manifest.trajectories.sort_by_key(|e| e.index);
        manifest.write(dir)?;
        new += 1;
        traj_pb.inc(1);
    }
    step_pb.finish_and_clear();
    traj_pb.finish_and_clear();
    let bytes = manifest.trajectories.iter().map(|e| e.bytes).sum();
    Ok(CollectReport { total, already, new, bytes })
}

/// One trajectory before it is written.
struct Shard {
    /// Stored states, already in the storage dtype's little-endian bytes.
    states: Vec<u8>,
    /// (mean training loss, step) per state.
    metrics: Vec<f32>,
    test_acc: f32,
}

impl Shard {
    fn final_train_loss(&self) -> f32 {
        self.metrics[self.metrics.len() - 2]
    }

    fn serialize(&self, meta: &ShardMeta, n_states: usize) -> anyhow::Result<Vec<u8>> {
        let states = TensorView::new(meta.dtype.safetensors(), vec![n_states, meta.params], &self.states)?;
        let mb: Vec<u8> = self.metrics.iter().flat_map(|v| v.to_le_bytes()).collect();
        let metrics = TensorView::new(Dtype::F32, vec![n_states, 2], &mb)?;
        // One metadata entry, so a trajectory always gives the same bytes (a map's order is random).
        let md = HashMap::from([("nino".to_string(), serde_json::to_string(meta)?)]);
        Ok(safetensors::serialize([("states", states), ("metrics", metrics)], Some(md))?)
    }
}

fn push_state(out: &mut Vec<u8>, params: &[f32], dtype: StateDtype) {
    match dtype {
        StateDtype::F16 => out.extend(params.iter().flat_map(|&v| f16::from_f32(v).to_le_bytes())),
        StateDtype::F32 => out.extend(params.iter().flat_map(|v| v.to_le_bytes())),
    }
}

/// Adam from `init_params(arch, seed)` on the seeded batch order of `nino train` (the same batches and
/// so the same parameters as `nino train --seed SEED --lr LR`), recording a state every `every` steps.
fn train_one(
    arch: &Arch,
    lr: f32,
    seed: u64,
    c: &CollectConfig,
    data: &Splits,
    pb: &ProgressBar,
) -> anyhow::Result<Shard> {
    let n_states = c.n_states();
    let mut states = Vec::with_capacity(n_states * arch.param_count() * c.dtype.size());
    let mut metrics = Vec::with_capacity(2 * n_states);
    let params = init_params(arch, seed);
    push_state(&mut states, &params, c.dtype);
    metrics.extend([f32::NAN, 0.0]);
    let adam = AdamConfig { lr, beta1: c.adam_betas[0], beta2: c.adam_betas[1], eps: c.adam_eps, weight_decay: 0.0 };
    let mut engine = Engine::new(arch.clone(), params, adam, c.batch).context("building the training engine")?;
    let mut sampler =
        BatchSampler::new(data.train.len(), c.batch, seed).ok_or_else(|| anyhow!("no training images"))?;
    let (mut x, mut y) = (Vec::new(), Vec::new());
    let mut sum = 0.0f64;
    for step in 1..=c.steps {
        data.train.gather(sampler.next_batch(), &mut x, &mut y);
        let loss = engine.train_step(&x, &y).map_err(|e| anyhow!("step {step}: {e}"))?;
        if !loss.is_finite() {
            bail!("the training loss became {loss} at step {step} (try a smaller --lr)");
        }
        if step == 1 {
            metrics[0] = loss;
        }
        sum += f64::from(loss);
        if step.is_multiple_of(c.every) {
            push_state(&mut states, engine.params(), c.dtype);
            metrics.extend([(sum / c.every as f64) as f32, step as f32]);
            sum = 0.0;
        }
        pb.inc(1);
    }
    let eval = engine.evaluate(&data.test.images, &data.test.labels).context("evaluating the test set")?;
    Ok(Shard { states, metrics, test_acc: eval.correct as f32 / eval.total as f32 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_parse_and_format() {
        assert_eq!(parse_seeds("1-4,10").unwrap(), vec![1, 2, 3, 4, 10]);
        assert_eq!(parse_seeds("7").unwrap(), vec![7]);
        assert_eq!(format_seeds(&[1, 2, 3, 4, 10, 12, 13]), "1-4,10,12-13");
        for bad in ["", "x", "4-1", "1-", "1,,2", "0-2000000"] {
            assert!(parse_seeds(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn items_nest_archs_lrs_seeds() {
        let c = CollectConfig {
            task: None,
            data: String::new(),
            train_images: 1,
            test_images: 1,
            input: [1, 28, 28],
            classes: 10,
            norm_mean: 0.0,
            norm_std: 1.0,
            archs: vec!["a".into(), "b".into()],
            lrs: vec![0.1, 0.2],
            seeds: vec![5, 6, 7],
            steps: 8,
            every: 4,
            batch: 1,
            dtype: StateDtype::F16,
            adam_betas: ADAM_BETAS,
            adam_eps: ADAM_EPS,
        };
        assert_eq!((c.len(), c.n_states()), (12, 3));
        assert_eq!(c.item(0), Some(("a", 0.1, 5)));
        assert_eq!(c.item(4), Some(("a", 0.2, 6)));
        assert_eq!(c.item(11), Some(("b", 0.2, 7)));
        assert_eq!(c.item(12), None);
        let mut d = c.clone();
        d.every = 2;
        assert_eq!(c.difference(&d), Some(("--every", "4".into(), "2".into())));
        assert_eq!(c.difference(&c), None);
    }
}
