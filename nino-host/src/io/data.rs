//! Image datasets: IDX files (Fashion-MNIST and friends), the CIFAR binaries (format in [`super::cifar`]),
//! normalisation, the protocol's splits and seeded batching.
//!
//! A dataset directory holds the four files of the Debian `dataset-fashion-mnist` package
//! (`train-images-idx3-ubyte.gz`, `train-labels-idx1-ubyte.gz`, `t10k-images-idx3-ubyte.gz`,
//! `t10k-labels-idx1-ubyte.gz`); the un-gzipped names are accepted too. Whether a file is gzipped is
//! decided by its magic bytes, not its name. Images are `u8` IDX (`0x00000803`, `[n, rows, cols]`, one
//! channel); labels are `u8` IDX (`0x00000801`, `[n]`).
//!
//! The vision protocol (docs/spec.md §6) trains on the first `n - n/12` training examples in
//! stored order and tests on the complete test split.

use super::cifar::{
    CIFAR_URL, Cifar, CifarParseError, CifarRecords, RECORD_PIXELS, existing, find_folder, parse_records,
};
use nino_core::{Arch, ArchError, InputShape, Task};
use std::io::Read;
use std::path::{Path, PathBuf};

/// Where Debian's `dataset-fashion-mnist` package installs Fashion-MNIST; the default `--data`.
pub const DEFAULT_FASHION_MNIST_DIR: &str = "/usr/share/datasets/fashion-mnist/";

/// Base names (without `.gz`) of the training images, training labels, test images and test labels.
pub const IDX_FILES: [&str; 4] =
    ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"];

const IDX_IMAGES_MAGIC: u32 = 0x0000_0803;
const IDX_LABELS_MAGIC: u32 = 0x0000_0801;
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Why a dataset could not be loaded; every message fits one line and names the file.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The default Fashion-MNIST directory is absent.
    #[error(
        "Fashion-MNIST not found in {dir}: install it with: apt-get install dataset-fashion-mnist, or use another data directory"
    )]
    DefaultDirMissing {
        /// The directory looked at.
        dir: PathBuf,
    },
    /// A user-given data directory does not exist.
    #[error("data directory {dir} does not exist (it needs {needs})")]
    DirMissing {
        /// The directory looked at.
        dir: PathBuf,
        /// What it should hold (`the four IDX files`, `CIFAR-10's binary files`).
        needs: &'static str,
    },
    /// A CIFAR task was given the default (Fashion-MNIST) directory: CIFAR has no default place.
    #[error("{} has no default directory: use a data directory holding {} (download {} from {CIFAR_URL} and extract it)", .format.name(), .format.folder(), .format.archive())]
    CifarNoDefault {
        /// The format the task reads.
        format: Cifar,
    },
    /// Neither the directory nor its official subfolder holds the first CIFAR training file.
    #[error("{} not found in {dir}: expected {} (or .gz) in it or in its {} subfolder; download the binary version ({}) from {CIFAR_URL} and extract it there", .format.name(), .format.train_files()[0], .format.folder(), .format.archive())]
    CifarMissing {
        /// The directory looked at.
        dir: PathBuf,
        /// The format looked for.
        format: Cifar,
    },
    /// The official archive is there but not extracted.
    #[error("{} not extracted in {dir}: run tar xzf {} there (it makes {})", .format.name(), .format.archive(), .format.folder())]
    CifarArchive {
        /// The directory holding the archive.
        dir: PathBuf,
        /// The format.
        format: Cifar,
    },
    /// The CIFAR folder was found but one of its files is absent.
    #[error("missing {} file {path} (or {path}.gz): the binary version has {} and {}; get it from {CIFAR_URL}", .format.name(), .format.train_files().join(", "), .format.test_file())]
    CifarFileMissing {
        /// The path looked for, without `.gz`.
        path: PathBuf,
        /// The format.
        format: Cifar,
    },
    /// A CIFAR file's bytes are not records of its format (empty, truncated, wrongly sized, bad labels).
    #[error("{path}: {error}; expected {}'s binary records ({} label byte(s) + 3072 pixel bytes, {} records in the official file) from {CIFAR_URL}", .format.name(), .format.label_bytes(), .expected_records)]
    CifarBadFile {
        /// The file.
        path: PathBuf,
        /// The format expected.
        format: Cifar,
        /// What is wrong.
        error: CifarParseError,
        /// Records of the official file of that name.
        expected_records: usize,
    },
    /// One of the four IDX files is in neither its gzipped nor its raw form.
    #[error("missing IDX file {path}.gz (or un-gzipped {path})")]
    FileMissing {
        /// The path without `.gz`.
        path: PathBuf,
    },
    /// The file could not be read (permissions, I/O error, corrupt gzip stream).
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file does not start with the expected IDX magic number.
    #[error("{path}: bad IDX magic 0x{found:08x}, expected 0x{expected:08x} ({what})")]
    BadMagic {
        /// The file.
        path: PathBuf,
        /// What was found.
        found: u32,
        /// What was expected.
        expected: u32,
        /// `u8 images [n, rows, cols]` or `u8 labels [n]`.
        what: &'static str,
    },
    /// The file is shorter than its header says.
    #[error("{path}: truncated IDX file: {got} bytes, header needs {expected}")]
    Truncated {
        /// The file.
        path: PathBuf,
        /// Bytes the header promises (header included).
        expected: usize,
        /// Bytes present.
        got: usize,
    },
    /// An images file and its labels file disagree on the number of examples.
    #[error("{images} has {n_images} images but {labels} has {n_labels} labels")]
    CountMismatch {
        /// Images file.
        images: PathBuf,
        /// Labels file.
        labels: PathBuf,
        /// Image count.
        n_images: usize,
        /// Label count.
        n_labels: usize,
    },
    /// Training and test images have different sizes.
    #[error("training images are {train:?} but test images are {test:?} (rows, cols)")]
    ShapeMismatch {
        /// Training `(rows, cols)`.
        train: (usize, usize),
        /// Test `(rows, cols)`.
        test: (usize, usize),
    },
    /// A split has no example, or images have no pixel.
    #[error("{path}: empty dataset (no examples or zero-sized images)")]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// A built-in task's network cannot read these images (another shape, more classes).
    #[error(
        "task {} needs {}x{}x{} images (channels x height x width) with labels below {}, but {} has {channels}x{height}x{width} images and {classes} classes",
        task.name(),
        task.dataset().input().channels,
        task.dataset().input().height,
        task.dataset().input().width,
        task.dataset().classes(),
        dir.display()
    )]
    TaskMismatch {
        /// The task.
        task: Task,
        /// The data directory.
        dir: PathBuf,
        /// Image channels.
        channels: usize,
        /// Image height.
        height: usize,
        /// Image width.
        width: usize,
        /// Classes in the data.
        classes: usize,
    },
}

/// Decoded contents of an IDX images file: `n` images of `rows x cols` bytes, row-major.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdxImages {
    /// Number of images.
    pub n: usize,
    /// Rows per image.
    pub rows: usize,
    /// Columns per image.
    pub cols: usize,
    /// `n * rows * cols` pixels.
    pub pixels: Vec<u8>,
}

/// Where parsing IDX bytes failed, before a path is attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdxParseError {
    /// Wrong magic number (found).
    BadMagic(u32),
    /// Fewer bytes than the header needs (expected, got).
    Truncated(usize, usize),
}

impl IdxParseError {
    fn at(self, path: &Path, expected_magic: u32) -> DataError {
        match self {
            IdxParseError::BadMagic(found) => DataError::BadMagic {
                path: path.to_path_buf(),
                found,
                expected: expected_magic,
                what: if expected_magic == IDX_IMAGES_MAGIC { "u8 images [n, rows, cols]" } else { "u8 labels [n]" },
            },
            IdxParseError::Truncated(expected, got) => DataError::Truncated { path: path.to_path_buf(), expected, got },
        }
    }
}

fn be_u32(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4).map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

fn header(bytes: &[u8], magic: u32, dims: usize) -> Result<Vec<usize>, IdxParseError> {
    let head = 4 + 4 * dims;
    let found = be_u32(bytes, 0).ok_or(IdxParseError::Truncated(head, bytes.len()))?;
    if found != magic {
        return Err(IdxParseError::BadMagic(found));
    }
    let d: Vec<usize> = (0..dims).filter_map(|i| be_u32(bytes, 4 + 4 * i)).map(|v| v as usize).collect();
    if d.len() != dims {
        return Err(IdxParseError::Truncated(head, bytes.len()));
    }
    let body = d.iter().try_fold(1usize, |acc, &x| acc.checked_mul(x)).unwrap_or(usize::MAX);
    let total = head.saturating_add(body);
    if bytes.len() < total {
        return Err(IdxParseError::Truncated(total, bytes.len()));
    }
    Ok(d)
}

/// Parses IDX `u8` images (`0x00000803`, `[n, rows, cols]`) from decompressed bytes.
pub fn parse_idx_images(bytes: &[u8]) -> Result<IdxImages, IdxParseError> {
    let d = header(bytes, IDX_IMAGES_MAGIC, 3)?;
    let (n, rows, cols) = (d[0], d[1], d[2]);
    let pixels = bytes[16..16 + n * rows * cols].to_vec();
    Ok(IdxImages { n, rows, cols, pixels })
}

/// Parses IDX `u8` labels (`0x00000801`, `[n]`) from decompressed bytes.
pub fn parse_idx_labels(bytes: &[u8]) -> Result<Vec<u8>, IdxParseError> {
    let d = header(bytes, IDX_LABELS_MAGIC, 1)?;
    Ok(bytes[8..8 + d[0]].to_vec())
}

/// Gunzips `raw` when it starts with the gzip magic, else returns it unchanged.
pub fn maybe_gunzip(raw: Vec<u8>) -> std::io::Result<Vec<u8>> {
    if raw.starts_with(&GZIP_MAGIC) {
        let mut out = Vec::with_capacity(raw.len() * 4);
        flate2::read::GzDecoder::new(raw.as_slice()).read_to_end(&mut out)?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

/// Finds `dir/base.gz` or `dir/base` and returns its decompressed bytes and the path used.
pub fn read_idx_file(dir: &Path, base: &str) -> Result<(Vec<u8>, PathBuf), DataError> {
    let plain = dir.join(base);
    let gz = dir.join(format!("{base}.gz"));
    let path = if gz.is_file() {
        gz
    } else if plain.is_file() {
        plain
    } else {
        return Err(DataError::FileMissing { path: plain });
    };
    let io = |source| DataError::Io { path: path.clone(), source };
    let raw = std::fs::read(&path).map_err(io)?;
    let bytes = maybe_gunzip(raw).map_err(io)?;
    Ok((bytes, path))
}

/// Affine input normalisation `(pixel/255 - mean) / std`, the reference's `ToTensor` + `Normalize`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Normalization {
    /// Mean subtracted from pixels scaled to [0, 1].
    pub mean: f32,
    /// Standard deviation divided by.
    pub std: f32,
}

impl Normalization {
    /// The reference's Fashion-MNIST constants (docs/spec.md §1.2; they are MNIST's values).
    pub const FASHION_MNIST: Normalization = Normalization { mean: 0.1307, std: 0.3081 };

    /// The reference's CIFAR constants, red, green and blue (docs/spec.md §1.2; CIFAR-10 and CIFAR-100 alike).
    pub const CIFAR: [Normalization; 3] = [
        Normalization { mean: 0.491_399_68, std: 0.247_032_33 },
        Normalization { mean: 0.482_158_27, std: 0.243_485_05 },
        Normalization { mean: 0.446_531_24, std: 0.261_587_68 },
    ];

    /// Mean and (population) standard deviation of `pixels / 255`, for datasets without reference
    /// constants; a constant image set gets std 1 so nothing divides by zero.
    pub fn from_pixels(pixels: &[u8]) -> Normalization {
        let mut hist = [0u64; 256];
        for &p in pixels {
            hist[p as usize] += 1;
        }
        let n = pixels.len().max(1) as f64;
        let mean = hist.iter().enumerate().map(|(v, &c)| v as f64 / 255.0 * c as f64).sum::<f64>() / n;
        let var = hist.iter().enumerate().map(|(v, &c)| (v as f64 / 255.0 - mean).powi(2) * c as f64).sum::<f64>() / n;
        let std = var.sqrt();
        Normalization { mean: mean as f32, std: if std > 1e-12 { std as f32 } else { 1.0 } }
    }

    /// Maps a raw pixel to its normalised value.
    #[inline]
    pub fn apply(&self, p: u8) -> f32 {
        (p as f32 / 255.0 - self.mean) / self.std
    }
}

/// One split: normalised `f32` images `[n, C, H, W]` and their labels.
#[derive(Clone, Debug)]
pub struct Dataset {
    /// Shape of one example.
    pub shape: InputShape,
    /// `len() * shape.len()` normalised values.
    pub images: Vec<f32>,
    /// One class index per example.
    pub labels: Vec<u32>,
}

impl Dataset {
    /// Normalises raw IDX images and labels into a dataset.
    pub fn from_idx(images: &IdxImages, labels: &[u8], norm: Normalization) -> Dataset {
        Dataset {
            shape: InputShape { channels: 1, height: images.rows, width: images.cols },
            images: images.pixels.iter().map(|&p| norm.apply(p)).collect(),
            labels: labels.iter().map(|&l| u32::from(l)).collect(),
        }
    }

    /// Normalises CIFAR records (`[C, H, W]` per image) into a dataset, each channel with its own constants.
    pub fn from_cifar(records: &CifarRecords, norms: &[Normalization; 3]) -> Dataset {
        let plane = RECORD_PIXELS / 3;
        let images = records
            .pixels
            .chunks_exact(plane)
            .enumerate()
            .flat_map(|(i, p)| {
                let n = norms[i % 3];
                p.iter().map(move |&v| n.apply(v))
            })
            .collect();
        Dataset { shape: InputShape::CIFAR, images, labels: records.labels.iter().map(|&l| u32::from(l)).collect() }
    }

    /// Number of examples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when the split holds no example.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Keeps the first `n` examples and returns the rest (empty when `n >= len()`).
    pub fn split_off(&mut self, n: usize) -> Dataset {
        let n = n.min(self.labels.len());
        Dataset {
            shape: self.shape,
            images: self.images.split_off(n * self.shape.len()),
            labels: self.labels.split_off(n),
        }
    }

    /// Largest label + 1 (0 when empty).
    pub fn classes(&self) -> usize {
        self.labels.iter().max().map_or(0, |&m| m as usize + 1)
    }

    /// Copies the examples at `indices` into `x` (`[b, C, H, W]`) and `y`, reusing their capacity.
    pub fn gather(&self, indices: &[u32], x: &mut Vec<f32>, y: &mut Vec<u32>) {
        let d = self.shape.len();
        x.clear();
        y.clear();
        for &i in indices {
            let i = i as usize;
            x.extend_from_slice(&self.images[i * d..(i + 1) * d]);
            y.push(self.labels[i]);
        }
    }
}

/// Size of the protocol's training subset: the first `n - n/12` examples (55,000 of 60,000).
pub const fn protocol_train_len(n: usize) -> usize {
    n - n / 12
}

/// Training and test splits of one dataset, ready for the vision protocol.
#[derive(Clone, Debug)]
pub struct Splits {
    /// The training subset (already cut to [`protocol_train_len`]).
    pub train: Dataset,
    /// The complete test split.
    pub test: Dataset,
    /// The training examples past the protocol's cut (5,000 of Fashion-MNIST's 60,000): never trained
    /// on, so a rollback can judge a nowcast by how it generalises (`--probe heldout`).
    pub heldout: Dataset,
    /// Normalisation applied to every split, one entry per channel.
    pub norm: Vec<Normalization>,
    /// Number of classes: largest label of either split + 1, at least 10 (the reference's heads).
    pub classes: usize,
    /// Training examples in the files, before the cut.
    pub train_total: usize,
}

fn load_pair(dir: &Path, images: &str, labels: &str) -> Result<(IdxImages, Vec<u8>, PathBuf), DataError> {
    let (ib, ip) = read_idx_file(dir, images)?;
    let im = parse_idx_images(&ib).map_err(|e| e.at(&ip, IDX_IMAGES_MAGIC))?;
    drop(ib);
    let (lb, lp) = read_idx_file(dir, labels)?;
    let lab = parse_idx_labels(&lb).map_err(|e| e.at(&lp, IDX_LABELS_MAGIC))?;
    if im.n != lab.len() {
        return Err(DataError::CountMismatch { images: ip, labels: lp, n_images: im.n, n_labels: lab.len() });
    }
    if im.n == 0 || im.rows == 0 || im.cols == 0 {
        return Err(DataError::Empty { path: ip });
    }
    Ok((im, lab, ip))
}

/// Loads `dir` under the vision protocol; `norm = None` computes mean/std from the training subset.
pub fn load_splits(dir: &Path, norm: Option<Normalization>) -> Result<Splits, DataError> {
    if !dir.is_dir() {
        return Err(if is_default_dir(dir) {
            DataError::DefaultDirMissing { dir: dir.to_path_buf() }
        } else {
            DataError::DirMissing { dir: dir.to_path_buf(), needs: "the four IDX files" }
        });
    }
    let (train_im, train_lab, _) = load_pair(dir, IDX_FILES[0], IDX_FILES[1])?;
    let (test_im, test_lab, _) = load_pair(dir, IDX_FILES[2], IDX_FILES[3])?;
    if (train_im.rows, train_im.cols) != (test_im.rows, test_im.cols) {
        return Err(DataError::ShapeMismatch {
            train: (train_im.rows, train_im.cols),
            test: (test_im.rows, test_im.cols),
        });
    }
    let train_total = train_im.n;
    let keep = protocol_train_len(train_total);
    let norm =
        norm.unwrap_or_else(|| Normalization::from_pixels(&train_im.pixels[..keep * train_im.rows * train_im.cols]));
    let mut train = Dataset::from_idx(&train_im, &train_lab, norm);
    let heldout = train.split_off(keep);
    let test = Dataset::from_idx(&test_im, &test_lab, norm);
    let classes = train.classes().max(test.classes()).max(10);
    Ok(Splits { train, test, heldout, norm: vec![norm], classes, train_total })
}

/// Reads and parses one CIFAR file of `folder`.
fn read_cifar_file(folder: &Path, name: &str, format: Cifar) -> Result<CifarRecords, DataError> {
    let path = existing(folder, name).ok_or_else(|| DataError::CifarFileMissing { path: folder.join(name), format })?;
    let io = |source| DataError::Io { path: path.clone(), source };
    let bytes = maybe_gunzip(std::fs::read(&path).map_err(io)?).map_err(io)?;
    parse_records(format, &bytes).map_err(|error| DataError::CifarBadFile {
        path: path.clone(),
        format,
        error,
        expected_records: format.official_records(name),
    })
}

/// Loads a CIFAR-10 or CIFAR-100 binary copy under the vision protocol: the training files concatenated in
/// order, cut to the first `n - n/12` records (45,834 of 50,000), the test file complete, the reference's
/// per-channel normalisation, and the format's class count (10, or CIFAR-100's 100 fine classes).
///
/// `dir` may hold the files or the folder the official archive extracts to (`cifar-10-batches-bin`,
/// `cifar-100-binary`); each file may be gzipped.
pub fn load_cifar(dir: &Path, format: Cifar) -> Result<Splits, DataError> {
    if is_default_dir(dir) {
        return Err(DataError::CifarNoDefault { format });
    }
    let needs = match format {
        Cifar::Ten => "CIFAR-10's binary files",
        Cifar::Hundred => "CIFAR-100's binary files",
    };
    if !dir.is_dir() {
        return Err(DataError::DirMissing { dir: dir.to_path_buf(), needs });
    }
    let Some(folder) = find_folder(dir, format) else {
        if dir.join(format.archive()).is_file() {
            return Err(DataError::CifarArchive { dir: dir.to_path_buf(), format });
        }
        return Err(DataError::CifarMissing { dir: dir.to_path_buf(), format });
    };
    let mut train = CifarRecords { pixels: Vec::new(), labels: Vec::new() };
    for name in format.train_files() {
        let part = read_cifar_file(&folder, name, format)?;
        train.pixels.extend_from_slice(&part.pixels);
        train.labels.extend_from_slice(&part.labels);
    }
    let test = read_cifar_file(&folder, format.test_file(), format)?;
    let train_total = train.len();
    let mut train = Dataset::from_cifar(&train, &Normalization::CIFAR);
    let heldout = train.split_off(protocol_train_len(train_total));
    let test = Dataset::from_cifar(&test, &Normalization::CIFAR);
    Ok(Splits { train, test, heldout, norm: Normalization::CIFAR.to_vec(), classes: format.classes(), train_total })
}

/// The normalisation in words: `mean 0.1307 std 0.3081`, or one value per channel joined by `/`.
pub fn describe_norm(norm: &[Normalization]) -> String {
    let join = |f: fn(&Normalization) -> f32| norm.iter().map(|n| format!("{:.4}", f(n))).collect::<Vec<_>>().join("/");
    format!("mean {} std {}", join(|n| n.mean), join(|n| n.std))
}

/// An arch spec that does not parse, or does not fit the data's images.
#[derive(Debug, thiserror::Error)]
#[error("bad arch `{spec}` for {height}x{width} images: {error}")]
pub struct BadArch {
    /// The spec.
    pub spec: String,
    /// Image height.
    pub height: usize,
    /// Image width.
    pub width: usize,
    /// What is wrong.
    pub error: ArchError,
}

impl Splits {
    /// The network `spec` describes for these images and classes.
    pub fn arch(&self, spec: &str) -> Result<Arch, BadArch> {
        let shape = self.train.shape;
        Arch::parse(spec, shape, self.classes).map_err(|error| BadArch {
            spec: spec.to_string(),
            height: shape.height,
            width: shape.width,
            error,
        })
    }
}

/// Loads the data for `task` (its dataset's files and reference normalisation) or for an arch run (IDX
/// files, normalised with the training images' own mean and std).
pub fn load_data(task: Option<Task>, dir: &Path) -> Result<Splits, DataError> {
    match task {
        None => load_splits(dir, None),
        Some(t) => match Cifar::of(t.dataset()) {
            Some(format) => load_cifar(dir, format),
            None => load_splits(dir, Some(Normalization::FASHION_MNIST)),
        },
    }
}

/// Refuses data a built-in task's network cannot read (another image shape, more classes).
pub fn check_task_data(task: Task, splits: &Splits, dir: &Path) -> Result<(), DataError> {
    let (shape, arch) = (splits.train.shape, task.arch());
    if shape != arch.input || splits.classes > arch.classes {
        return Err(DataError::TaskMismatch {
            task,
            dir: dir.to_path_buf(),
            channels: shape.channels,
            height: shape.height,
            width: shape.width,
            classes: splits.classes,
        });
    }
    Ok(())
}

fn is_default_dir(dir: &Path) -> bool {
    dir.components().eq(Path::new(DEFAULT_FASHION_MNIST_DIR).components())
}

/// The sampler's own RNG (not PyTorch's), shared with the core's initialisation.
pub use nino_core::rng::SplitMix64;

/// Seeded epoch shuffler: before epoch `e` (0-based) the order is a fresh Fisher-Yates shuffle seeded by
/// `seed + e`, as the reference reseeds per epoch; batches of `batch`, the last partial batch kept.
///
/// The permutations come from our own RNG, so the batches are reproducible here but are not the ones
/// PyTorch's `DataLoader` draws for the same seed.
#[derive(Clone, Debug)]
pub struct BatchSampler {
    n: usize,
    batch: usize,
    seed: u64,
    epoch: u64,
    order: Vec<u32>,
    pos: usize,
}

impl BatchSampler {
    /// A sampler over `n` examples; `None` when `n` or `batch` is zero or `n` exceeds `u32`.
    pub fn new(n: usize, batch: usize, seed: u64) -> Option<BatchSampler> {
        if n == 0 || batch == 0 || u32::try_from(n).is_err() {
            return None;
        }
        let mut s = BatchSampler { n, batch, seed, epoch: 0, order: (0..n as u32).collect(), pos: 0 };
        s.shuffle();
        Some(s)
    }

    fn shuffle(&mut self) {
        let mut rng = SplitMix64::new(self.seed.wrapping_add(self.epoch));
        for i in (1..self.n).rev() {
            let j = rng.below(i as u64 + 1) as usize;
            self.order.swap(i, j);
        }
    }

    /// Batches per epoch (`ceil(n / batch)`: 430 for 55,000 at 128).
    pub fn batches_per_epoch(&self) -> usize {
        self.n.div_ceil(self.batch)
    }

    /// The epoch the next batch comes from (0-based).
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Indices of the next batch; starts a new, reshuffled epoch when the current one is used up.
    pub fn next_batch(&mut self) -> &[u32] {
        if self.pos >= self.n {
            self.epoch += 1;
            self.order.iter_mut().enumerate().for_each(|(i, v)| *v = i as u32);
            self.shuffle();
            self.pos = 0;
        }
        let start = self.pos;
        self.pos = (start + self.batch).min(self.n);
        &self.order[start..self.pos]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn idx_images(n: u32, rows: u32, cols: u32) -> Vec<u8> {
        let mut b = Vec::new();
        for v in [IDX_IMAGES_MAGIC, n, rows, cols] {
            b.extend_from_slice(&v.to_be_bytes());
        }
        b.extend((0..n * rows * cols).map(|i| (i % 256) as u8));
        b
    }

    fn idx_labels(labels: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&IDX_LABELS_MAGIC.to_be_bytes());
        b.extend_from_slice(&(labels.len() as u32).to_be_bytes());
        b.extend_from_slice(labels);
        b
    }

    fn gz(bytes: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn parses_good_images_and_labels() {
        let im = parse_idx_images(&idx_images(3, 2, 4)).unwrap();
        assert_eq!((im.n, im.rows, im.cols), (3, 2, 4));
        assert_eq!(im.pixels.len(), 24);
        assert_eq!(im.pixels[23], 23);
        assert_eq!(parse_idx_labels(&idx_labels(&[1, 9, 0])).unwrap(), vec![1, 9, 0]);
    }

    #[test]
    fn truncated_and_bad_magic_are_errors() {
        let good = idx_images(3, 2, 4);
        assert_eq!(parse_idx_images(&good[..good.len() - 1]), Err(IdxParseError::Truncated(16 + 24, 39)));
        assert_eq!(parse_idx_images(&good[..10]), Err(IdxParseError::Truncated(16, 10)));
        assert_eq!(parse_idx_images(&[]), Err(IdxParseError::Truncated(16, 0)));
        assert_eq!(parse_idx_images(&idx_labels(&[1])), Err(IdxParseError::BadMagic(IDX_LABELS_MAGIC)));
        assert_eq!(parse_idx_labels(&good), Err(IdxParseError::BadMagic(IDX_IMAGES_MAGIC)));
        let lab = idx_labels(&[1, 2, 3]);
        assert_eq!(parse_idx_labels(&lab[..9]), Err(IdxParseError::Truncated(11, 9)));
        // A header promising an absurd size must not overflow.
        let mut huge = Vec::new();
        for v in [IDX_IMAGES_MAGIC, u32::MAX, u32::MAX, u32::MAX] {
            huge.extend_from_slice(&v.to_be_bytes());
        }
        assert!(matches!(parse_idx_images(&huge), Err(IdxParseError::Truncated(_, 16))));
    }

    #[test]
    fn gzip_is_detected_by_magic_not_name() {
        let raw = idx_images(2, 3, 3);
        assert_eq!(maybe_gunzip(gz(&raw)).unwrap(), raw);
        assert_eq!(maybe_gunzip(raw.clone()).unwrap(), raw);
        let z = gz(&raw);
        assert!(maybe_gunzip(z[..z.len() / 2].to_vec()).is_err(), "truncated gzip stream");
    }

    fn write_dir(dir: &Path, files: [(&str, Vec<u8>); 4]) {
        for (name, bytes) in files {
            std::fs::write(dir.join(name), bytes).unwrap();
        }
    }

    #[test]
    fn loads_a_directory_gz_and_raw_mixed() {
        let dir = tempfile::tempdir().unwrap();
        write_dir(
            dir.path(),
            [
                ("train-images-idx3-ubyte.gz", gz(&idx_images(24, 4, 4))),
                ("train-labels-idx1-ubyte", idx_labels(&[3; 24])),
                ("t10k-images-idx3-ubyte", idx_images(5, 4, 4)),
                ("t10k-labels-idx1-ubyte.gz", gz(&idx_labels(&[11, 0, 1, 2, 3]))),
            ],
        );
        let s = load_splits(dir.path(), Some(Normalization { mean: 0.0, std: 1.0 })).unwrap();
        assert_eq!(s.train_total, 24);
        assert_eq!(s.train.len(), 22);
        assert_eq!(s.train.images.len(), 22 * 16);
        // The two examples past the cut are held out, in file order.
        assert_eq!(s.heldout.len(), 2);
        assert_eq!(s.heldout.images.len(), 2 * 16);
        assert_eq!(s.heldout.images[0], ((22 * 16) % 256) as f32 / 255.0);
        assert_eq!(s.test.len(), 5);
        assert_eq!(s.classes, 12);
        assert_eq!(s.train.shape, InputShape { channels: 1, height: 4, width: 4 });
        assert_eq!(s.test.images[17], 17.0 / 255.0);
        let computed = load_splits(dir.path(), None).unwrap().norm;
        let expect = Normalization::from_pixels(&idx_images(22, 4, 4)[16..]);
        assert_eq!(computed, [expect]);
    }

    #[test]
    fn directory_errors_name_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let e = load_splits(&dir.path().join("nope"), None).unwrap_err();
        assert!(matches!(e, DataError::DirMissing { .. }), "{e}");
        let e = load_splits(dir.path(), None).unwrap_err().to_string();
        assert!(e.contains("missing IDX file") && e.contains("train-images-idx3-ubyte"), "{e}");
        write_dir(
            dir.path(),
            [
                ("train-images-idx3-ubyte", idx_images(24, 4, 4)),
                ("train-labels-idx1-ubyte", idx_labels(&[3; 23])),
                ("t10k-images-idx3-ubyte", idx_images(5, 4, 4)),
                ("t10k-labels-idx1-ubyte", idx_labels(&[0; 5])),
            ],
        );
        let e = load_splits(dir.path(), None).unwrap_err();
        assert!(matches!(e, DataError::CountMismatch { n_images: 24, n_labels: 23, .. }), "{e}");
        std::fs::write(dir.path().join("train-labels-idx1-ubyte"), idx_labels(&[3; 24])).unwrap();
        let mut t = idx_images(5, 4, 4);
        t.truncate(50);
        std::fs::write(dir.path().join("t10k-images-idx3-ubyte"), t).unwrap();
        let e = load_splits(dir.path(), None).unwrap_err();
        assert!(matches!(e, DataError::Truncated { expected: 96, got: 50, .. }), "{e}");
        assert!(!e.to_string().contains('\n'));
    }

    #[test]
    fn default_dir_error_says_how_to_install() {
        let e = DataError::DefaultDirMissing { dir: DEFAULT_FASHION_MNIST_DIR.into() }.to_string();
        // The command line names the flag for another directory (`cmd::data_error`, tested there).
        assert!(e.contains("apt-get install dataset-fashion-mnist") && e.contains("another data directory"), "{e}");
        assert!(is_default_dir(Path::new("/usr/share/datasets/fashion-mnist")));
    }

    #[test]
    fn normalization_from_pixels() {
        let n = Normalization::from_pixels(&[0, 255]);
        assert!((n.mean - 0.5).abs() < 1e-6 && (n.std - 0.5).abs() < 1e-6);
        assert_eq!(Normalization::from_pixels(&[7, 7, 7]).std, 1.0);
        assert!((Normalization::FASHION_MNIST.apply(255) - (1.0 - 0.1307) / 0.3081).abs() < 1e-6);
    }

    #[test]
    fn sampler_protocol_sizes() {
        let mut s = BatchSampler::new(55_000, 128, 1000).unwrap();
        assert_eq!(s.batches_per_epoch(), 430);
        for _ in 0..429 {
            assert_eq!(s.next_batch().len(), 128);
        }
        assert_eq!(s.next_batch().len(), 88);
        assert_eq!(s.epoch(), 0);
        assert_eq!(s.next_batch().len(), 128);
        assert_eq!(s.epoch(), 1);
        assert!(BatchSampler::new(0, 128, 1).is_none());
        assert!(BatchSampler::new(10, 0, 1).is_none());
    }

    #[test]
    fn sampler_covers_every_example_once_per_epoch_and_reshuffles() {
        let mut s = BatchSampler::new(1000, 64, 7).unwrap();
        let mut epochs = Vec::new();
        for _ in 0..3 {
            let mut seen: Vec<u32> = Vec::new();
            for _ in 0..s.batches_per_epoch() {
                seen.extend_from_slice(s.next_batch());
            }
            let mut sorted = seen.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, (0..1000).collect::<Vec<u32>>());
            epochs.push(seen);
        }
        assert_ne!(epochs[0], epochs[1]);
        assert_ne!(epochs[1], epochs[2]);
        assert_ne!(epochs[0], (0..1000).collect::<Vec<u32>>(), "epoch 0 is shuffled");
    }

    #[test]
    fn sampler_is_deterministic_and_epoch_seeded() {
        let draw = |seed, batches| {
            let mut s = BatchSampler::new(300, 32, seed).unwrap();
            (0..batches).flat_map(|_| s.next_batch().to_vec()).collect::<Vec<u32>>()
        };
        assert_eq!(draw(1000, 25), draw(1000, 25));
        assert_ne!(draw(1000, 10), draw(2000, 10));
        // Epoch e is seeded by seed + e: epoch 1 of seed 1000 is epoch 0 of seed 1001.
        assert_eq!(draw(1000, 20)[300..600], draw(1001, 10)[..]);
    }

    #[test]
    fn rng_below_is_in_range_and_spread() {
        let mut r = SplitMix64::new(3);
        let mut hits = [0u32; 6];
        for _ in 0..6000 {
            hits[r.below(6) as usize] += 1;
        }
        assert!(hits.iter().all(|&h| (800..1200).contains(&h)), "{hits:?}");
    }
}
