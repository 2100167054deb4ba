//! The collection format: what `nino collect` writes and meta-training reads.
//!
//! A collection folder holds one safetensors shard per trajectory and a `manifest.json`:
//!
//! - `traj-XXXXX.safetensors` (`XXXXX`: the trajectory's index in the cross product archs x lrs x seeds, in
//!   that nesting order): tensor `states [n_states, P]` (f16 or f32; row 0 is the initial parameters, row
//!   `j` the parameters after `j * every` Adam steps, in the flat PyTorch order of docs/spec.md §1.3),
//!   tensor `metrics [n_states, 2]` f32 (column 0: the mean training loss of the `every` steps that led to
//!   the state, for row 0 the loss of the first batch at the initial parameters; column 1: the step), and
//!   one metadata entry `nino`, a JSON [`ShardMeta`];
//! - `manifest.json`: a JSON [`Manifest`]: the format, the collection's [`CollectConfig`] and the finished
//!   trajectories, each with its shard's byte length and CRC-32.

use super::atomic::write_atomic;
use super::tensor_file::{f16s_as_f32, f32_bytes, f32s};
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensorError, SafeTensors};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Why a shard's bytes are not a trajectory.
#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    /// Not safetensors at all, or truncated.
    #[error("not a safetensors file ({})", super::one_line(.0))]
    NotSafetensors(SafeTensorError),
    /// The `nino` metadata entry is absent.
    #[error("no `nino` metadata")]
    NoMetadata,
    /// The `nino` metadata entry is not a [`ShardMeta`].
    #[error("bad `nino` metadata ({})", super::one_line(.0))]
    BadMetadata(serde_json::Error),
    /// Another format version.
    #[error("format `{0}`, expected `{FORMAT}`")]
    Format(String),
    /// `every` of 0 would divide by zero.
    #[error("`every` is 0 in its metadata")]
    ZeroEvery,
    /// `steps / every + 1` does not fit in memory's index type.
    #[error("`steps` / `every` in its metadata is too large")]
    TooManyStates,
    /// A tensor is absent.
    #[error("no `{name}` tensor ({error})")]
    NoTensor {
        /// `states` or `metrics`.
        name: &'static str,
        /// What safetensors said.
        error: SafeTensorError,
    },
    /// A tensor disagrees with the metadata.
    #[error("`{name}` is {dtype:?} {shape:?}, expected {expected_dtype:?} {expected:?}")]
    Shape {
        /// `states` or `metrics`.
        name: &'static str,
        /// Its dtype.
        dtype: Dtype,
        /// Its shape.
        shape: Vec<usize>,
        /// The dtype the metadata implies.
        expected_dtype: Dtype,
        /// The shape the metadata implies.
        expected: Vec<usize>,
    },
    /// The shard could not be serialised.
    #[error(transparent)]
    Serialize(#[from] SafeTensorError),
    /// The metadata could not be serialised.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
}

/// Why a collection file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum CollectionError {
    /// A file could not be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// A file could not be written.
    #[error("cannot write {}", path.display())]
    Write {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// A shard's bytes are not a trajectory.
    #[error("{}: {error}", path.display())]
    Shard {
        /// File.
        path: PathBuf,
        /// What is wrong.
        error: ShardError,
    },
    /// `manifest.json` is not a manifest.
    #[error("{} is not a nino collection manifest ({})", path.display(), super::one_line(error))]
    NotManifest {
        /// File.
        path: PathBuf,
        /// What the JSON parser said.
        error: serde_json::Error,
    },
    /// The manifest is of another format version.
    #[error("{}: format `{format}`, expected `{FORMAT}`", path.display())]
    ManifestFormat {
        /// File.
        path: PathBuf,
        /// The format it states.
        format: String,
    },
    /// A shard's size or CRC-32 differs from the manifest's.
    #[error(
        "{} is damaged: {bytes} bytes with CRC-32 {crc32:08x}, the manifest says {expected_bytes} bytes with {expected_crc32:08x}",
        path.display()
    )]
    Damaged {
        /// File.
        path: PathBuf,
        /// Its size.
        bytes: usize,
        /// Its CRC-32.
        crc32: u32,
        /// The manifest's size.
        expected_bytes: u64,
        /// The manifest's CRC-32.
        expected_crc32: u32,
    },
    /// A shard's metadata differs from its manifest entry.
    #[error("{}: its metadata does not match its manifest entry", path.display())]
    EntryMismatch {
        /// File.
        path: PathBuf,
    },
    /// The manifest could not be serialised.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
}

/// The `format` of the manifests and shards this version writes and reads.
pub const FORMAT: &str = "nino-collect/1";

/// The manifest's file name inside a collection folder.
pub const MANIFEST: &str = "manifest.json";

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

    /// Appends `params` to `out` as stored states' little-endian bytes.
    pub fn append(self, out: &mut Vec<u8>, params: &[f32]) {
        match self {
            StateDtype::F16 => out.extend(params.iter().flat_map(|&v| half::f16::from_f32(v).to_le_bytes())),
            StateDtype::F32 => out.extend(f32_bytes(params)),
        }
    }

    /// The safetensors dtype of stored states.
    pub fn safetensors(self) -> Dtype {
        match self {
            StateDtype::F16 => Dtype::F16,
            StateDtype::F32 => Dtype::F32,
        }
    }

    /// `f16` or `f32`, for messages.
    pub fn name(self) -> &'static str {
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
    /// Input normalisation `(pixel/255 - mean) / std`: the mean of each channel (one number in the file
    /// for one channel, as before the CIFAR tasks; a list for more).
    #[serde(with = "per_channel")]
    pub norm_mean: Vec<f32>,
    /// Input normalisation: the std of each channel, stored like `norm_mean`.
    #[serde(with = "per_channel")]
    pub norm_std: Vec<f32>,
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
        // Saturating: a manifest's counts come from a file (a real one is far below usize::MAX).
        usize::try_from(self.steps / self.every.max(1)).unwrap_or(usize::MAX).saturating_add(1)
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
    pub fn difference(&self, other: &CollectConfig) -> Option<(&'static str, String, String)> {
        let fields: [(&str, Getter); 14] = [
            ("--task", |c| c.task.clone().unwrap_or_else(|| "none".into())),
            ("--data", |c| c.data.clone()),
            ("training images", |c| c.train_images.to_string()),
            ("test images", |c| c.test_images.to_string()),
            ("image shape", |c| format!("{:?}", c.input)),
            ("classes", |c| c.classes.to_string()),
            ("normalisation", |c| format!("mean {:?} std {:?}", c.norm_mean, c.norm_std)),
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
    /// Input normalisation mean of each channel (stored as in [`CollectConfig`]).
    #[serde(with = "per_channel")]
    pub norm_mean: Vec<f32>,
    /// Input normalisation std of each channel.
    #[serde(with = "per_channel")]
    pub norm_std: Vec<f32>,
}

/// Per-channel values in JSON: one number for a single channel (so one-channel collections keep the format
/// they had before multi-channel data), a list otherwise; both read back as a list.
mod per_channel {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(f32),
        Many(Vec<f32>),
    }

    pub fn serialize<S: Serializer>(v: &[f32], s: S) -> Result<S::Ok, S::Error> {
        match v {
            [x] => x.serialize(s),
            _ => v.serialize(s),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f32>, D::Error> {
        Ok(match OneOrMany::deserialize(d)? {
            OneOrMany::One(x) => vec![x],
            OneOrMany::Many(v) => v,
        })
    }
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
    pub fn load(path: &Path) -> Result<Trajectory, CollectionError> {
        let bytes = std::fs::read(path).map_err(|source| CollectionError::Read { path: path.into(), source })?;
        Trajectory::from_bytes(&bytes).map_err(|error| CollectionError::Shard { path: path.into(), error })
    }

    /// Parses a shard's bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Trajectory, ShardError> {
        let (_, header) = SafeTensors::read_metadata(bytes).map_err(ShardError::NotSafetensors)?;
        let json = header.metadata().as_ref().and_then(|m| m.get("nino")).ok_or(ShardError::NoMetadata)?;
        let meta: ShardMeta = serde_json::from_str(json).map_err(ShardError::BadMetadata)?;
        if meta.format != FORMAT {
            // From the file: escaped, so the message stays one line.
            return Err(ShardError::Format(meta.format.escape_debug().to_string()));
        }
        if meta.every == 0 {
            return Err(ShardError::ZeroEvery);
        }
        let st = SafeTensors::deserialize(bytes).map_err(ShardError::NotSafetensors)?;
        // Checked: the counts come from the file; the shapes below must then match the data present.
        let n_states = usize::try_from(meta.steps / meta.every)
            .ok()
            .and_then(|n| n.checked_add(1))
            .ok_or(ShardError::TooManyStates)?;
        let s = st.tensor("states").map_err(|error| ShardError::NoTensor { name: "states", error })?;
        if s.dtype() != meta.dtype.safetensors() || s.shape() != [n_states, meta.params] {
            return Err(ShardError::Shape {
                name: "states",
                dtype: s.dtype(),
                shape: s.shape().to_vec(),
                expected_dtype: meta.dtype.safetensors(),
                expected: vec![n_states, meta.params],
            });
        }
        let states = match meta.dtype {
            StateDtype::F16 => f16s_as_f32(s.data()),
            StateDtype::F32 => f32s(s.data()),
        };
        let m = st.tensor("metrics").map_err(|error| ShardError::NoTensor { name: "metrics", error })?;
        if m.dtype() != Dtype::F32 || m.shape() != [n_states, 2] {
            return Err(ShardError::Shape {
                name: "metrics",
                dtype: m.dtype(),
                shape: m.shape().to_vec(),
                expected_dtype: Dtype::F32,
                expected: vec![n_states, 2],
            });
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

/// CRC-32 of a whole shard file, as the manifest records it.
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut c = flate2::Crc::new();
    c.update(bytes);
    c.sum()
}

impl Manifest {
    /// Reads `dir/manifest.json`.
    pub fn load(dir: &Path) -> Result<Manifest, CollectionError> {
        let path = dir.join(MANIFEST);
        let text =
            std::fs::read_to_string(&path).map_err(|source| CollectionError::Read { path: path.clone(), source })?;
        Manifest::parse(&text, &path)
    }

    /// Parses a manifest's text; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Manifest, CollectionError> {
        let m: Manifest =
            serde_json::from_str(text).map_err(|error| CollectionError::NotManifest { path: path.into(), error })?;
        if m.format != FORMAT {
            let format = m.format.escape_debug().to_string();
            return Err(CollectionError::ManifestFormat { path: path.into(), format });
        }
        Ok(m)
    }

    /// Reads the shard of `entry` from `dir`, checking its size and CRC-32 against the manifest and its
    /// metadata against the entry.
    pub fn load_trajectory(&self, dir: &Path, entry: &TrajectoryEntry) -> Result<Trajectory, CollectionError> {
        let path = dir.join(&entry.file);
        let bytes = std::fs::read(&path).map_err(|source| CollectionError::Read { path: path.clone(), source })?;
        if bytes.len() as u64 != entry.bytes || crc32(&bytes) != entry.crc32 {
            return Err(CollectionError::Damaged {
                path,
                bytes: bytes.len(),
                crc32: crc32(&bytes),
                expected_bytes: entry.bytes,
                expected_crc32: entry.crc32,
            });
        }
        let t = Trajectory::from_bytes(&bytes).map_err(|error| CollectionError::Shard { path: path.clone(), error })?;
        let m = &t.meta;
        if (m.index, m.arch.as_str(), m.seed, m.lr, m.params, t.n_states)
            != (entry.index, entry.arch.as_str(), entry.seed, entry.lr, entry.params, entry.n_states)
        {
            return Err(CollectionError::EntryMismatch { path });
        }
        Ok(t)
    }

    /// Writes `dir/manifest.json` atomically.
    pub fn write(&self, dir: &Path) -> Result<(), CollectionError> {
        let path = dir.join(MANIFEST);
        let mut text = serde_json::to_string_pretty(self)?;
        text.push('\n');
        write_atomic(&path, text.as_bytes()).map_err(|source| CollectionError::Write { path, source })
    }
}

/// `1-8,10`: seeds as comma-separated values and inclusive ranges (the syntax [`parse_seeds`] reads).
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

/// Why a seed list does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SeedListError {
    /// An item is not a number.
    #[error("bad seed `{token}` in `{list}` (expected e.g. 1-8,100)")]
    Seed {
        /// The item.
        token: String,
        /// The whole list.
        list: String,
    },
    /// A range is reversed or too long.
    #[error("bad seed range `{range}`: A-B needs A <= B and at most a million seeds")]
    Range {
        /// The range.
        range: String,
    },
}

/// Parses a seed list: comma-separated seeds and inclusive ranges `A-B` (`1-8,100`).
pub fn parse_seeds(s: &str) -> Result<Vec<u64>, SeedListError> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim) {
        let num = |t: &str| {
            t.trim().parse::<u64>().map_err(|_| SeedListError::Seed { token: t.to_string(), list: s.to_string() })
        };
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (num(a)?, num(b)?);
                if b < a || b - a >= 1_000_000 {
                    return Err(SeedListError::Range { range: part.to_string() });
                }
                out.extend(a..=b);
            }
            None => out.push(num(part)?),
        }
    }
    Ok(out)
}

/// A shard's bytes: `states` (already in `meta.dtype`'s little-endian bytes), `metrics` (mean training loss
/// and step per state) and the metadata entry `nino`.
pub fn shard_bytes(meta: &ShardMeta, n_states: usize, states: &[u8], metrics: &[f32]) -> Result<Vec<u8>, ShardError> {
    let states = TensorView::new(meta.dtype.safetensors(), vec![n_states, meta.params], states)?;
    let mb = f32_bytes(metrics);
    let metrics = TensorView::new(Dtype::F32, vec![n_states, 2], &mb)?;
    // One metadata entry, so a trajectory always gives the same bytes (a map's order is random).
    let md = HashMap::from([("nino".to_string(), serde_json::to_string(meta)?)]);
    Ok(safetensors::serialize([("states", states), ("metrics", metrics)], Some(md))?)
}
#[cfg(test)]
mod tests {
    use super::*;

    /// The fuzz targets' seeds for this module (tests/fuzz/seeds/collection_shard, collection_manifest) are
    /// a shard and a manifest this version reads; `NINO_WRITE_FUZZ_SEEDS=1` rewrites them.
    #[test]
    fn fuzz_seeds_are_readable() {
        let seeds = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fuzz/seeds");
        let write = std::env::var_os("NINO_WRITE_FUZZ_SEEDS").is_some_and(|v| v == "1");
        let meta = |dtype| ShardMeta {
            format: FORMAT.to_string(),
            index: 1,
            arch: "mlp:".to_string(),
            input: [1, 2, 2],
            classes: 2,
            params: 10,
            seed: 7,
            lr: 0.01,
            batch: 4,
            every: 2,
            steps: 4,
            dtype,
            task: None,
            data: "d".to_string(),
            norm_mean: vec![0.5],
            norm_std: vec![0.25],
        };
        for (name, dtype) in [("f16.safetensors", StateDtype::F16), ("f32.safetensors", StateDtype::F32)] {
            let path = seeds.join("collection_shard").join(name);
            if write {
                let m = meta(dtype);
                let mut states = Vec::new();
                for j in 0..3 {
                    dtype.append(&mut states, &(0..10).map(|i| (i + j) as f32 / 8.0).collect::<Vec<_>>());
                }
                let metrics = [2.3, 0.0, 2.1, 2.0, 1.9, 4.0];
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(&path, shard_bytes(&m, 3, &states, &metrics).unwrap()).unwrap();
            }
            let t = Trajectory::load(&path).unwrap_or_else(|e| panic!("{e} (rewrite: NINO_WRITE_FUZZ_SEEDS=1)"));
            assert_eq!((t.n_states, t.params, t.step(2)), (3, 10, 4));
        }
        let dir = seeds.join("collection_manifest");
        if write {
            let config = CollectConfig {
                task: Some("debug".into()),
                data: "d".into(),
                train_images: 11,
                test_images: 5,
                input: [1, 2, 2],
                classes: 2,
                norm_mean: vec![0.5],
                norm_std: vec![0.25],
                archs: vec!["mlp:".into(), "mlp:3".into()],
                lrs: vec![0.01],
                seeds: vec![7, 8],
                steps: 4,
                every: 2,
                batch: 4,
                dtype: StateDtype::F16,
                adam_betas: [0.9, 0.999],
                adam_eps: 1e-8,
            };
            let entry = TrajectoryEntry {
                index: 1,
                file: "traj-00001.safetensors".into(),
                arch: "mlp:".into(),
                params: 10,
                seed: 8,
                lr: 0.01,
                n_states: 3,
                bytes: 300,
                crc32: 0xdead_beef,
                final_train_loss: 1.9,
                test_acc: 0.6,
                seconds: 0.5,
            };
            std::fs::create_dir_all(&dir).unwrap();
            Manifest { format: FORMAT.into(), config, trajectories: vec![entry] }.write(&dir).unwrap();
        }
        let m = Manifest::load(&dir).unwrap_or_else(|e| panic!("{e} (rewrite: NINO_WRITE_FUZZ_SEEDS=1)"));
        assert_eq!((m.config.len(), m.config.n_states(), m.trajectories.len()), (4, 3, 1));
    }

    #[test]
    fn counts_from_a_file_do_not_overflow() {
        let m: Manifest = serde_json::from_str(
            &std::fs::read_to_string(
                Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fuzz/seeds/collection_manifest/manifest.json"),
            )
            .unwrap(),
        )
        .unwrap();
        let mut c = m.config;
        (c.steps, c.every) = (u64::MAX, 1);
        assert_eq!(c.n_states(), usize::MAX);
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fuzz/seeds/collection_shard/f32.safetensors");
        let bytes = std::fs::read(path).unwrap();
        let (_, header) = SafeTensors::read_metadata(&bytes).unwrap();
        let mut meta: ShardMeta = serde_json::from_str(&header.metadata().as_ref().unwrap()["nino"]).unwrap();
        (meta.steps, meta.every) = (u64::MAX, 1);
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let (s, m) = (st.tensor("states").unwrap(), st.tensor("metrics").unwrap());
        let md = HashMap::from([("nino".to_string(), serde_json::to_string(&meta).unwrap())]);
        let forged = safetensors::serialize([("states", s), ("metrics", m)], Some(md)).unwrap();
        assert!(matches!(Trajectory::from_bytes(&forged), Err(ShardError::TooManyStates)));
    }

    #[test]
    fn a_shard_with_every_zero_is_refused() {
        // The `collection_shard` fuzz target did not reach this in 746,358 inputs (60 s), so its seed holds it.
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fuzz/seeds/collection_shard");
        let f32_seed = std::fs::read(dir.join("f32.safetensors")).unwrap();
        let at = f32_seed.windows(10).position(|w| w == br#"every\":2,"#).expect("the f32 seed says every 2");
        let mut bytes = f32_seed.clone();
        bytes[at + 8] = b'0';
        let path = dir.join("every0.safetensors");
        if std::env::var_os("NINO_WRITE_FUZZ_SEEDS").is_some_and(|v| v == "1") {
            std::fs::write(&path, &bytes).unwrap();
        }
        assert_eq!(std::fs::read(&path).unwrap(), bytes, "{} is the f32 seed with every 0", path.display());
        assert!(matches!(Trajectory::from_bytes(&bytes), Err(ShardError::ZeroEvery)));
    }

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
            norm_mean: vec![0.0],
            norm_std: vec![1.0],
            archs: vec!["a".into(), "b".into()],
            lrs: vec![0.1, 0.2],
            seeds: vec![5, 6, 7],
            steps: 8,
            every: 4,
            batch: 1,
            dtype: StateDtype::F16,
            adam_betas: [0.9, 0.999],
            adam_eps: 1e-8,
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

        // One channel is stored as the number it always was; three as a list; both read back.
        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(
            (json["norm_mean"].clone(), json["norm_std"].clone()),
            (serde_json::json!(0.0), serde_json::json!(1.0))
        );
        assert_eq!(serde_json::from_value::<CollectConfig>(json).unwrap(), c);
        let rgb = CollectConfig { norm_mean: vec![0.25, 0.5, 0.75], norm_std: vec![1.0, 2.0, 4.0], ..c.clone() };
        let json = serde_json::to_value(&rgb).unwrap();
        assert_eq!(json["norm_mean"], serde_json::json!([0.25, 0.5, 0.75]));
        assert_eq!(serde_json::from_value::<CollectConfig>(json).unwrap(), rgb);
        let e = rgb.difference(&c).unwrap();
        assert_eq!(
            (e.0, e.1.as_str(), e.2.as_str()),
            ("normalisation", "mean [0.25, 0.5, 0.75] std [1.0, 2.0, 4.0]", "mean [0.0] std [1.0]")
        );
    }
}
