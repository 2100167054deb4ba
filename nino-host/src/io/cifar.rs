//! CIFAR-10 and CIFAR-100 in their official binary distributions: file names, folders and records.
//!
//! The "binary version" archives of <https://www.cs.toronto.edu/~kriz/cifar.html> extract to
//! `cifar-10-batches-bin/` (`data_batch_1.bin` .. `data_batch_5.bin`, `test_batch.bin`: records of 1 label
//! byte and 3,072 pixel bytes) and `cifar-100-binary/` (`train.bin`, `test.bin`: records of a coarse label
//! byte, a fine label byte and 3,072 pixel bytes). The pixels of a record are the red, then green, then blue
//! 32x32 plane, each row-major: the `[C, H, W]` order the networks read. The tasks use CIFAR-100's fine
//! labels. Files may be gzipped (`data_batch_1.bin.gz`); the loader ([`super::data::load_data`]) decides by
//! the magic bytes, finds the folder with [`find_folder`] and parses each file with [`parse_records`].

use std::path::{Path, PathBuf};

/// Where a user gets the binary CIFAR distributions.
pub const CIFAR_URL: &str = "https://www.cs.toronto.edu/~kriz/cifar.html";

/// Pixel bytes of one record: three 32x32 planes (red, green, blue).
pub const RECORD_PIXELS: usize = 3 * 32 * 32;

/// One of the two CIFAR binary formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cifar {
    /// CIFAR-10: 1 label byte (0..9) per record.
    Ten,
    /// CIFAR-100: a coarse (0..19) and a fine (0..99) label byte per record; the fine one is the class.
    Hundred,
}

impl Cifar {
    /// The format of a built-in task's dataset (`None` for Fashion-MNIST).
    pub fn of(data: nino_core::DatasetKind) -> Option<Cifar> {
        match data {
            nino_core::DatasetKind::Cifar10 => Some(Cifar::Ten),
            nino_core::DatasetKind::Cifar100 => Some(Cifar::Hundred),
            nino_core::DatasetKind::FashionMnist => None,
        }
    }

    /// `CIFAR-10` or `CIFAR-100`.
    pub const fn name(self) -> &'static str {
        match self {
            Cifar::Ten => "CIFAR-10",
            Cifar::Hundred => "CIFAR-100",
        }
    }

    /// Label bytes before the pixels of each record.
    pub const fn label_bytes(self) -> usize {
        match self {
            Cifar::Ten => 1,
            Cifar::Hundred => 2,
        }
    }

    /// Bytes per record: 3,073 or 3,074.
    pub const fn record_len(self) -> usize {
        self.label_bytes() + RECORD_PIXELS
    }

    /// Classes of the label the tasks use (CIFAR-100: fine).
    pub const fn classes(self) -> usize {
        match self {
            Cifar::Ten => 10,
            Cifar::Hundred => 100,
        }
    }

    /// The folder the official archive extracts to.
    pub const fn folder(self) -> &'static str {
        match self {
            Cifar::Ten => "cifar-10-batches-bin",
            Cifar::Hundred => "cifar-100-binary",
        }
    }

    /// The official archive's name.
    pub const fn archive(self) -> &'static str {
        match self {
            Cifar::Ten => "cifar-10-binary.tar.gz",
            Cifar::Hundred => "cifar-100-binary.tar.gz",
        }
    }

    /// Training files, in the order their records are concatenated.
    pub const fn train_files(self) -> &'static [&'static str] {
        match self {
            Cifar::Ten => {
                &["data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin", "data_batch_5.bin"]
            }
            Cifar::Hundred => &["train.bin"],
        }
    }

    /// The test file.
    pub const fn test_file(self) -> &'static str {
        match self {
            Cifar::Ten => "test_batch.bin",
            Cifar::Hundred => "test.bin",
        }
    }

    /// Records of each official file: 10,000 per CIFAR-10 batch; CIFAR-100's training file holds 50,000.
    pub const fn official_records(self, file: &str) -> usize {
        match (self, file.as_bytes()) {
            (Cifar::Hundred, b"train.bin") => 50_000,
            _ => 10_000,
        }
    }
}

/// Why bytes are not CIFAR records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CifarParseError {
    /// No byte at all.
    #[error("empty file")]
    Empty,
    /// The length is not a whole number of records: a truncated download or another file.
    #[error("{len} bytes is not a whole number of {record}-byte records (truncated, or not this format)")]
    Partial {
        /// Bytes present.
        len: usize,
        /// Bytes per record.
        record: usize,
    },
    /// A label byte out of range: another format (CIFAR-100 read as CIFAR-10, say) or a damaged file.
    #[error("record {record} has {which} label {label}, above the largest, {max}")]
    BadLabel {
        /// Index of the record (0-based).
        record: usize,
        /// `class`, `coarse` or `fine`.
        which: &'static str,
        /// The label byte.
        label: u8,
        /// The largest valid label.
        max: u8,
    },
}

/// Decoded records: `n` images of [`RECORD_PIXELS`] bytes (`[C, H, W]`) and one class label each.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CifarRecords {
    /// `n * RECORD_PIXELS` pixels, record after record.
    pub pixels: Vec<u8>,
    /// One class per record (CIFAR-100: the fine label).
    pub labels: Vec<u8>,
}

impl CifarRecords {
    /// Number of records.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when there is no record.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

/// Parses the decompressed bytes of one `format` file into records, checking every label.
pub fn parse_records(format: Cifar, bytes: &[u8]) -> Result<CifarRecords, CifarParseError> {
    let record = format.record_len();
    if bytes.is_empty() {
        return Err(CifarParseError::Empty);
    }
    if !bytes.len().is_multiple_of(record) {
        return Err(CifarParseError::Partial { len: bytes.len(), record });
    }
    let n = bytes.len() / record;
    let mut out = CifarRecords { pixels: Vec::with_capacity(n * RECORD_PIXELS), labels: Vec::with_capacity(n) };
    for (i, r) in bytes.chunks_exact(record).enumerate() {
        let (head, pixels) = r.split_at(format.label_bytes());
        let label = match format {
            Cifar::Ten => check_label(i, "class", head[0], 9)?,
            Cifar::Hundred => {
                check_label(i, "coarse", head[0], 19)?;
                check_label(i, "fine", head[1], 99)?
            }
        };
        out.labels.push(label);
        out.pixels.extend_from_slice(pixels);
    }
    Ok(out)
}

fn check_label(record: usize, which: &'static str, label: u8, max: u8) -> Result<u8, CifarParseError> {
    if label > max { Err(CifarParseError::BadLabel { record, which, label, max }) } else { Ok(label) }
}

/// `dir/name.gz` or `dir/name`, whichever exists (the gzipped one first).
pub fn existing(dir: &Path, name: &str) -> Option<PathBuf> {
    [dir.join(format!("{name}.gz")), dir.join(name)].into_iter().find(|p| p.is_file())
}

/// The folder holding `format`'s files: `dir` itself or its `cifar-10-batches-bin` / `cifar-100-binary`
/// subfolder, whichever has the first training file; `None` when neither has it.
pub fn find_folder(dir: &Path, format: Cifar) -> Option<PathBuf> {
    let first = format.train_files()[0];
    [dir.to_path_buf(), dir.join(format.folder())].into_iter().find(|d| existing(d, first).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_layout_of_both_formats() {
        // Two CIFAR-10 records: label, then 3072 pixels.
        let mut b = vec![7u8];
        b.extend((0..RECORD_PIXELS).map(|i| (i % 251) as u8));
        b.push(2);
        b.extend(std::iter::repeat_n(9u8, RECORD_PIXELS));
        let r = parse_records(Cifar::Ten, &b).unwrap();
        assert_eq!(r.labels, [7, 2]);
        assert_eq!(r.pixels.len(), 2 * RECORD_PIXELS);
        assert_eq!(
            (r.pixels[0], r.pixels[1024], r.pixels[3071], r.pixels[3072]),
            (0, (1024 % 251) as u8, (3071 % 251) as u8, 9)
        );
        // CIFAR-100: coarse 3, fine 42; the fine label is the class.
        let mut c = vec![3u8, 42];
        c.extend(std::iter::repeat_n(5u8, RECORD_PIXELS));
        let r = parse_records(Cifar::Hundred, &c).unwrap();
        assert_eq!((r.labels.as_slice(), r.pixels.len(), r.pixels[0]), (&[42u8][..], RECORD_PIXELS, 5));
    }

    #[test]
    fn bad_bytes_are_errors() {
        assert_eq!(parse_records(Cifar::Ten, &[]), Err(CifarParseError::Empty));
        let one = vec![0u8; 3073];
        assert_eq!(parse_records(Cifar::Ten, &one[..3072]), Err(CifarParseError::Partial { len: 3072, record: 3073 }));
        // A CIFAR-10 record read as CIFAR-100 is a partial record.
        assert_eq!(parse_records(Cifar::Hundred, &one), Err(CifarParseError::Partial { len: 3073, record: 3074 }));
        let mut bad = vec![0u8; 2 * 3073];
        bad[3073] = 10;
        let e = parse_records(Cifar::Ten, &bad).unwrap_err();
        assert_eq!(e, CifarParseError::BadLabel { record: 1, which: "class", label: 10, max: 9 });
        let mut c = vec![0u8; 3074];
        c[0] = 20;
        assert_eq!(
            parse_records(Cifar::Hundred, &c).unwrap_err(),
            CifarParseError::BadLabel { record: 0, which: "coarse", label: 20, max: 19 }
        );
        c[0] = 19;
        c[1] = 100;
        assert_eq!(
            parse_records(Cifar::Hundred, &c).unwrap_err(),
            CifarParseError::BadLabel { record: 0, which: "fine", label: 100, max: 99 }
        );
        assert!(!e.to_string().contains('\n'));
    }
}
