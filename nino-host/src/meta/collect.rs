//! `nino collect`'s driver: Adam trajectories of many target networks, recorded as a dataset for
//! meta-training NiNo. The files and their format are [`crate::io::collection`]'s.
//!
//! Every file is written atomically (temporary file, fsync, rename), a shard before the manifest that lists
//! it, so after a kill the manifest lists only complete shards; a new run with the same settings skips
//! them and redoes only the trajectory that was in progress (its half-written temporary file is deleted,
//! a shard written but not yet listed is overwritten with the same bytes).

use crate::io::atomic::write_atomic;
use crate::io::collection::{
    CollectConfig, CollectionError, FORMAT, MANIFEST, Manifest, ShardError, ShardMeta, StateDtype, TrajectoryEntry,
    crc32, shard_bytes,
};
use crate::io::data::{BadArch, DataError};
use crate::io::data::{BatchSampler, Splits};
use crate::training::engine::{AdamConfig, Engine, init_params};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use nino_core::{Arch, Task};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Held locked while a collector writes the folder, so two collectors never write the same trajectories.
const LOCK: &str = ".nino-collect.lock";

/// Prefix of [`write_atomic`]'s temporary files (left behind only by a killed run).
const TMP_PREFIX: &str = ".nino-tmp-";

/// Adam's settings besides the learning rate: the reference protocol's.
pub(super) const ADAM_BETAS: [f32; 2] = [0.9, 0.999];
pub(super) const ADAM_EPS: f32 = 1e-8;

/// A setting of a collection, as errors name it: [`Setting::plain`] in the library, by its flag on the
/// command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Setting {
    /// States every N steps.
    Every,
    /// Adam steps per trajectory.
    Steps,
    /// Batch size.
    Batch,
    /// Learning rates.
    Lr,
    /// Arch specs.
    Arch,
    /// Seeds.
    Seeds,
    /// The collection folder.
    Out,
}

impl Setting {
    /// The setting's plain name.
    pub fn plain(self) -> &'static str {
        match self {
            Setting::Every => "every",
            Setting::Steps => "steps",
            Setting::Batch => "batch size",
            Setting::Lr => "learning rates",
            Setting::Arch => "arch list",
            Setting::Seeds => "seed list",
            Setting::Out => "folder",
        }
    }
}

/// A collection's settings that cannot work, whatever the data.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{}", self.describe(Setting::plain))]
pub enum SettingsError {
    /// `every` of 0.
    EveryZero,
    /// `steps` is not a positive multiple of `every`.
    StepsNotMultiple {
        /// Steps between states.
        every: u64,
        /// Steps.
        steps: u64,
    },
    /// `steps` beyond what f32 stores exactly.
    TooManySteps,
    /// Batch size 0.
    BatchZero,
    /// A learning rate that is not a positive number.
    BadLr(f32),
    /// An empty list.
    Empty(Setting),
    /// A learning rate given twice.
    LrTwice,
    /// A seed given twice.
    SeedTwice,
    /// An arch given twice (canonical spec).
    ArchTwice(String),
}

impl SettingsError {
    /// The message with every setting named by `name`.
    pub fn describe(&self, name: fn(Setting) -> &'static str) -> String {
        use Setting::*;
        match self {
            SettingsError::EveryZero => format!("{} must be at least 1", name(Every)),
            SettingsError::StepsNotMultiple { every, steps } => {
                format!("{} must be a positive multiple of {} ({every}), got {steps}", name(Steps), name(Every))
            }
            SettingsError::TooManySteps => {
                format!("{} must be below 16,777,216 (steps are stored as f32)", name(Steps))
            }
            SettingsError::BatchZero => format!("{} must be at least 1", name(Batch)),
            SettingsError::BadLr(lr) => format!("{} must be positive numbers, got {lr}", name(Lr)),
            SettingsError::Empty(what) => format!("{} needs at least one value", name(*what)),
            SettingsError::LrTwice => format!("{} lists a learning rate twice", name(Lr)),
            SettingsError::SeedTwice => format!("{} lists a seed twice", name(Seeds)),
            SettingsError::ArchTwice(canon) => format!("{} lists {canon} twice", name(Arch)),
        }
    }
}

/// Why a collection could not be planned, continued or written.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    /// Settings that cannot work.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// The data does not fit the task.
    #[error(transparent)]
    Data(#[from] DataError),
    /// An arch spec does not parse or does not fit the images.
    #[error(transparent)]
    Arch(#[from] BadArch),
    /// A parsed network could not be written as a spec (never happens).
    #[error("formatting the arch spec")]
    ArchSpec,
    /// The folder holds files that are not a collection's.
    #[error("{} holds {name} but no {MANIFEST}: pick a new or empty folder for a collection", dir.display())]
    NotACollection {
        /// The folder.
        dir: PathBuf,
        /// A file that is not ours.
        name: String,
    },
    /// The folder's manifest is of other settings.
    #[error("{}", self.describe(Setting::plain))]
    OtherSettings {
        /// The manifest.
        path: PathBuf,
        /// The setting that differs, as the manifest comparison names it.
        name: &'static str,
        /// The manifest's value.
        theirs: String,
        /// This collection's value.
        ours: String,
    },
    /// A manifest entry does not fit the collection's settings.
    #[error("{}: entry for trajectory {index} does not match the collection's settings", path.display())]
    Entry {
        /// The manifest.
        path: PathBuf,
        /// The entry's trajectory.
        index: usize,
    },
    /// A listed shard has another size than the manifest says.
    #[error(
        "{} has {size} bytes but {} lists {listed} bytes: the collection is damaged (restore the file, or remove \
         its entry from the manifest to redo it)",
        shard.display(),
        manifest.display()
    )]
    ShardSize {
        /// The shard.
        shard: PathBuf,
        /// The manifest.
        manifest: PathBuf,
        /// Its size.
        size: u64,
        /// The listed size.
        listed: u64,
    },
    /// A listed shard is missing.
    #[error(
        "{} is listed in {} but missing: the collection is damaged (restore the file, or remove its entry from \
         the manifest to redo it)",
        shard.display(),
        manifest.display()
    )]
    ShardMissing {
        /// The shard.
        shard: PathBuf,
        /// The manifest.
        manifest: PathBuf,
    },
    /// Another collector holds the folder.
    #[error("another `nino collect` is writing {}", dir.display())]
    Busy {
        /// The folder.
        dir: PathBuf,
    },
    /// A file operation failed.
    #[error("cannot {what} {}", path.display())]
    Io {
        /// `read`, `create`, `remove`, `lock` or `write`.
        what: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The manifest or a shard could not be read or written.
    #[error(transparent)]
    Collection(#[from] CollectionError),
    /// A shard could not be serialised.
    #[error(transparent)]
    Shard(#[from] ShardError),
    /// Training one trajectory failed.
    #[error("trajectory {index} ({arch}, lr {lr}, seed {seed})")]
    Trajectory {
        /// Its index.
        index: usize,
        /// Its arch spec.
        arch: String,
        /// Its learning rate.
        lr: f32,
        /// Its seed.
        seed: u64,
        /// Why.
        source: TrajectoryError,
    },
}

impl CollectError {
    /// The message with every setting named by `name` (the library's own: [`Setting::plain`]).
    pub fn describe(&self, name: fn(Setting) -> &'static str) -> String {
        match self {
            CollectError::Settings(e) => e.describe(name),
            CollectError::Arch(BadArch { spec, height, width, error }) => {
                format!("bad {} `{spec}` for {height}x{width} images: {error}", name(Setting::Arch))
            }
            CollectError::OtherSettings { path, name: setting, theirs, ours } => format!(
                "{} was collected with {setting} {theirs}, this command has {setting} {ours}: continue it with its \
                 own settings, or pick another {}",
                path.display(),
                name(Setting::Out)
            ),
            e => e.to_string(),
        }
    }
}

/// Why training one trajectory failed.
#[derive(Debug, thiserror::Error)]
pub enum TrajectoryError {
    /// The engine refused the network or the batch size.
    #[error("building the training engine")]
    Engine(#[source] nino_core::Error),
    /// The data has no training image.
    #[error("no training images")]
    NoImages,
    /// A step failed.
    #[error("step {step}: {error}")]
    Step {
        /// The step.
        step: u64,
        /// What the engine said.
        error: nino_core::Error,
    },
    /// The loss became NaN or infinite.
    #[error("the training loss became {loss} at step {step} (try a smaller learning rate)")]
    Diverged {
        /// The loss.
        loss: f32,
        /// The step.
        step: u64,
    },
    /// The final evaluation failed.
    #[error("evaluating the test set")]
    Evaluate(#[source] nino_core::Error),
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
pub fn check(spec: &CollectSpec) -> Result<(), SettingsError> {
    if spec.every == 0 {
        return Err(SettingsError::EveryZero);
    }
    if spec.steps == 0 || !spec.steps.is_multiple_of(spec.every) {
        return Err(SettingsError::StepsNotMultiple { every: spec.every, steps: spec.steps });
    }
    if spec.steps >= 1 << 24 {
        return Err(SettingsError::TooManySteps);
    }
    if spec.batch == 0 {
        return Err(SettingsError::BatchZero);
    }
    if let Some(lr) = spec.lrs.iter().find(|l| !(l.is_finite() && **l > 0.0)) {
        return Err(SettingsError::BadLr(*lr));
    }
    for (what, n) in
        [(Setting::Arch, spec.archs.len()), (Setting::Lr, spec.lrs.len()), (Setting::Seeds, spec.seeds.len())]
    {
        if n == 0 {
            return Err(SettingsError::Empty(what));
        }
    }
    if spec.lrs.iter().enumerate().any(|(i, l)| spec.lrs[..i].contains(l)) {
        return Err(SettingsError::LrTwice);
    }
    if spec.seeds.iter().collect::<HashSet<_>>().len() != spec.seeds.len() {
        return Err(SettingsError::SeedTwice);
    }
    Ok(())
}

/// Checks `spec` against the data and builds the collection's settings and its networks (one per arch).
pub fn plan(spec: &CollectSpec, data: &Splits) -> Result<(CollectConfig, Vec<Arch>), CollectError> {
    check(spec)?;
    let shape = data.train.shape;
    if let Some(t) = spec.task {
        crate::io::data::check_task_data(t, data, &spec.data_dir)?;
    }
    let mut archs = Vec::new();
    let mut specs: Vec<String> = Vec::new();
    for s in &spec.archs {
        let arch = data.arch(s)?;
        let mut canon = String::new();
        arch.write_spec(&mut canon).map_err(|_| CollectError::ArchSpec)?;
        if specs.contains(&canon) {
            return Err(SettingsError::ArchTwice(canon).into());
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
        norm_mean: data.norm.iter().map(|n| n.mean).collect(),
        norm_std: data.norm.iter().map(|n| n.std).collect(),
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
fn check_existing(dir: &Path, m: &Manifest, config: &CollectConfig) -> Result<(), CollectError> {
    let path = dir.join(MANIFEST);
    if let Some((name, theirs, ours)) = m.config.difference(config) {
        return Err(CollectError::OtherSettings { path, name, theirs, ours });
    }
    let mut seen = HashSet::new();
    for e in &m.trajectories {
        let expected = config.item(e.index);
        if !seen.insert(e.index)
            || expected != Some((e.arch.as_str(), e.lr, e.seed))
            || e.file != shard_name(e.index)
            || e.n_states != config.n_states()
        {
            return Err(CollectError::Entry { path, index: e.index });
        }
        let shard = dir.join(&e.file);
        let size = std::fs::metadata(&shard).map(|md| md.len());
        match size {
            Ok(n) if n == e.bytes => {}
            Ok(size) => return Err(CollectError::ShardSize { shard, manifest: path, size, listed: e.bytes }),
            Err(_) => return Err(CollectError::ShardMissing { shard, manifest: path }),
        }
    }
    Ok(())
}

/// Locks `dir` for this process (released when the returned file is dropped or the process dies).
fn lock(dir: &Path) -> Result<std::fs::File, CollectError> {
    let path = dir.join(LOCK);
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| CollectError::Io { what: "create", path: path.clone(), source })?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(std::fs::TryLockError::WouldBlock) => Err(CollectError::Busy { dir: dir.to_path_buf() }),
        Err(std::fs::TryLockError::Error(source)) => Err(CollectError::Io { what: "lock", path, source }),
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
pub fn collect(spec: &CollectSpec, data: &Splits) -> Result<CollectReport, CollectError> {
    let (config, archs) = plan(spec, data)?;
    let dir = &spec.out;
    let manifest_path = dir.join(MANIFEST);
    if dir.exists() && !manifest_path.exists() {
        let read = |source| CollectError::Io { what: "read", path: dir.clone(), source };
        for e in std::fs::read_dir(dir).map_err(read)? {
            let name = e.map_err(read)?.file_name();
            if !is_ours(&name.to_string_lossy()) {
                return Err(CollectError::NotACollection {
                    dir: dir.clone(),
                    name: name.to_string_lossy().into_owned(),
                });
            }
        }
    }
    std::fs::create_dir_all(dir).map_err(|source| CollectError::Io { what: "create", path: dir.clone(), source })?;
    let _lock = lock(dir)?;
    let mut manifest = if manifest_path.exists() {
        let m = Manifest::load(dir)?;
        check_existing(dir, &m, &config)?;
        m
    } else {
        Manifest { format: FORMAT.to_string(), config: config.clone(), trajectories: Vec::new() }
    };
    // Only a killed write leaves these; the lock says no other collector is writing one now.
    let read = |source| CollectError::Io { what: "read", path: dir.clone(), source };
    for e in std::fs::read_dir(dir).map_err(read)? {
        let e = e.map_err(read)?;
        if e.file_name().to_string_lossy().starts_with(TMP_PREFIX) {
            std::fs::remove_file(e.path()).map_err(|source| CollectError::Io {
                what: "remove",
                path: e.path(),
                source,
            })?;
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
        let shard = train_one(arch, lr, seed, &config, data, &step_pb).map_err(|source| CollectError::Trajectory {
            index,
            arch: arch_spec.to_string(),
            lr,
            seed,
            source,
        })?;
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
            norm_mean: config.norm_mean.clone(),
            norm_std: config.norm_std.clone(),
        };
        let bytes = shard.serialize(&meta, config.n_states())?;
        let file = shard_name(index);
        let path = dir.join(&file);
        write_atomic(&path, &bytes).map_err(|source| CollectError::Io { what: "write", path: path.clone(), source })?;
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
        crate::io::atomic::hold_for_kill("NINO_TEST_HOLD_AFTER_TRAJECTORIES", manifest.trajectories.len() as u64);
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

    fn serialize(&self, meta: &ShardMeta, n_states: usize) -> Result<Vec<u8>, ShardError> {
        shard_bytes(meta, n_states, &self.states, &self.metrics)
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
) -> Result<Shard, TrajectoryError> {
    let n_states = c.n_states();
    let mut states = Vec::with_capacity(n_states * arch.param_count() * c.dtype.size());
    let mut metrics = Vec::with_capacity(2 * n_states);
    let params = init_params(arch, seed);
    c.dtype.append(&mut states, &params);
    metrics.extend([f32::NAN, 0.0]);
    let adam = AdamConfig { lr, beta1: c.adam_betas[0], beta2: c.adam_betas[1], eps: c.adam_eps, weight_decay: 0.0 };
    let mut engine = Engine::new(arch.clone(), params, adam, c.batch).map_err(TrajectoryError::Engine)?;
    let mut sampler = BatchSampler::new(data.train.len(), c.batch, seed).ok_or(TrajectoryError::NoImages)?;
    let mut sum = 0.0f64;
    adam_steps(&mut engine, &mut sampler, data, 1..=c.steps, |step, loss, engine| {
        if step == 1 {
            metrics[0] = loss;
        }
        sum += f64::from(loss);
        if step.is_multiple_of(c.every) {
            c.dtype.append(&mut states, engine.params());
            metrics.extend([(sum / c.every as f64) as f32, step as f32]);
            sum = 0.0;
        }
        pb.inc(1);
    })?;
    let eval = engine.evaluate(&data.test.images, &data.test.labels).map_err(TrajectoryError::Evaluate)?;
    Ok(Shard { states, metrics, test_acc: eval.correct as f32 / eval.total as f32 })
}

/// Adam steps `steps` (numbered as the run counts them) on `sampler`'s batches, refusing a non-finite loss;
/// `after` sees each step's number, loss and the engine after it.
pub(super) fn adam_steps(
    engine: &mut Engine,
    sampler: &mut BatchSampler,
    data: &Splits,
    steps: std::ops::RangeInclusive<u64>,
    mut after: impl FnMut(u64, f32, &Engine),
) -> Result<(), TrajectoryError> {
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for step in steps {
        data.train.gather(sampler.next_batch(), &mut x, &mut y);
        let loss = engine.train_step(&x, &y).map_err(|error| TrajectoryError::Step { step, error })?;
        if !loss.is_finite() {
            return Err(TrajectoryError::Diverged { loss, step });
        }
        after(step, loss, engine);
    }
    Ok(())
}
