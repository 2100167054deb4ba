//! The CIFAR tasks (c10-16, c10-32, c100-32) on small files in the official binary formats that these tests
//! write themselves (no CIFAR copy is needed): the readers' record layout, label choice and normalisation
//! against hand-computed values, every bad-input path, a training run that learns, a nowcast on each new
//! graph, an experiment and a collection end to end, and each task's memory plan.

mod common;
use common::assert_one_line_error_all;

use nino_core::{InputShape, NeuralGraph, Task};
use nino_host::io::cifar::{CIFAR_URL, Cifar, CifarParseError};
use nino_host::io::data::{DEFAULT_FASHION_MNIST_DIR, DataError, load_data};
use nino_host::io::weights::WeightSet;
use nino_host::kernels::spectral::Spectrum;
use nino_host::nowcast::nowcaster::Nowcaster;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const PIXELS: usize = 3072;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn weights() -> PathBuf {
    root().join("fixtures/weights/nino_no_posw.safetensors")
}

fn nino(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nino")).args(args).output().expect("run the nino binary")
}

fn ok(out: Output) -> Output {
    assert!(out.status.success(), "nino failed: {}", String::from_utf8_lossy(&out.stderr));
    out
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// A small deterministic generator (not the sampler's), for pixel noise.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u32 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) as u32
    }
}

/// The learnable pattern: class `c` of 10 is a colour on a circle in RGB space (every class an extreme point,
/// so the global average of a colour separates them), with uniform noise of +-24 on every pixel.
fn pattern_record(class: u8, rng: &mut Lcg) -> Vec<u8> {
    let a = std::f32::consts::TAU * f32::from(class % 10) / 10.0;
    let colour = [128.0 + 90.0 * a.cos(), 128.0 + 90.0 * a.sin(), 128.0 - 90.0 * a.cos()];
    let mut px = Vec::with_capacity(PIXELS);
    for c in colour {
        for _ in 0..1024 {
            let noise = (rng.next() % 49) as f32 - 24.0;
            px.push((c + noise).clamp(0.0, 255.0) as u8);
        }
    }
    px
}

/// `n` CIFAR records of the pattern, labels cycling from `first`; CIFAR-100 records get coarse label fine/5.
fn pattern_file(format: Cifar, n: usize, first: usize, seed: u64) -> Vec<u8> {
    let mut rng = Lcg(seed);
    let mut out = Vec::new();
    for i in 0..n {
        let label = ((first + i) % format.classes()) as u8;
        if format == Cifar::Hundred {
            out.push(label / 5);
        }
        out.push(label);
        out.extend(pattern_record(label, &mut rng));
    }
    out
}

/// Writes a CIFAR-10 copy of `per_batch` records per training batch and `test` test records into `dir`.
fn write_cifar10(dir: &Path, per_batch: usize, test: usize) {
    std::fs::create_dir_all(dir).unwrap();
    for b in 0..5 {
        let bytes = pattern_file(Cifar::Ten, per_batch, b * 3, 100 + b as u64);
        std::fs::write(dir.join(format!("data_batch_{}.bin", b + 1)), bytes).unwrap();
    }
    std::fs::write(dir.join("test_batch.bin"), pattern_file(Cifar::Ten, test, 0, 7)).unwrap();
}

/// Writes a CIFAR-100 copy (`train.bin`, `test.bin`) into `dir`.
fn write_cifar100(dir: &Path, train: usize, test: usize) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("train.bin"), pattern_file(Cifar::Hundred, train, 0, 1)).unwrap();
    std::fs::write(dir.join("test.bin"), pattern_file(Cifar::Hundred, test, 0, 2)).unwrap();
}

fn close(got: f32, want: f32) -> bool {
    // False for a NaN on either side.
    (got - want).abs() <= 1e-5
}

#[test]
fn cifar10_records_are_read_in_file_order_with_per_channel_normalisation() {
    let dir = tempfile::tempdir().unwrap();
    // Batch b holds 3 records with labels 3b, 3b+1, 3b+2 (mod 10); each record's planes are constant except
    // for marked pixels, so the layout (label byte, then R, G, B planes, each row-major) is checked by value.
    for b in 0..5u8 {
        let mut bytes = Vec::new();
        for r in 0..3u8 {
            bytes.push((3 * b + r) % 10);
            let mut px = [vec![255u8; 1024], vec![0u8; 1024], vec![128u8; 1024]].concat();
            px[1024 + 32 + 5] = 200; // green plane, row 1, column 5
            px[2048 + 1023] = 51; // blue plane, last pixel
            px[0] = 10 * b + r; // red plane, first pixel: which record this is
            bytes.extend(px);
        }
        std::fs::write(dir.path().join(format!("data_batch_{}.bin", b + 1)), bytes).unwrap();
    }
    let mut test = vec![9u8];
    test.extend([vec![0u8; 1024], vec![0u8; 1024], vec![0u8; 1024]].concat());
    std::fs::write(dir.path().join("test_batch.bin"), test).unwrap();

    let s = load_data(Some(Task::C10_16), dir.path()).unwrap();
    // 15 records: the protocol trains on the first 15 - 15/12 = 14 and holds the last one out.
    assert_eq!((s.train_total, s.train.len(), s.heldout.len(), s.test.len()), (15, 14, 1, 1));
    assert_eq!((s.train.shape, s.classes), (InputShape::CIFAR, 10));
    assert_eq!(s.train.images.len(), 14 * PIXELS);
    let labels: Vec<u32> = (0..14).map(|i| i % 10).collect();
    assert_eq!(s.train.labels, labels, "batches concatenated in order, one label byte per record");
    assert_eq!(s.heldout.labels, [4]);
    assert_eq!(s.test.labels, [9]);
    // Hand-computed (pixel/255 - mean_c) / std_c with the reference's constants (docs/spec.md §1.2).
    let (red_255, green_0, blue_128) = (2.058841, -1.980238, 0.211897);
    let (green_200, blue_51, red_0) = (1.240961, -0.942442, -1.989212);
    for (i, want) in [
        (1, red_255),
        (1023, red_255),
        (1024, green_0),
        (1024 + 32 + 5, green_200),
        (1024 + 32 + 6, green_0),
        (2048, blue_128),
        (2048 + 1023, blue_51),
    ] {
        let got = s.train.images[PIXELS + i];
        assert!(close(got, want), "record 1, value {i}: {got} vs {want}");
    }
    // The first red pixel names its record: record 4 is batch 2's second (10*1 + 1 = 11).
    let red_11 = (11.0 / 255.0 - 0.491_399_68) / 0.247_032_33;
    assert!(close(s.train.images[4 * PIXELS], red_11), "{}", s.train.images[4 * PIXELS]);
    assert!(close(s.test.images[0], red_0) && close(s.test.images[2 * 1024], (0.0 - 0.446_531_24) / 0.261_587_68));
    let n = &s.norm;
    assert_eq!(n.len(), 3);
    assert_eq!((n[0].mean, n[1].mean, n[2].mean), (0.491_399_68, 0.482_158_27, 0.446_531_24));
    assert_eq!((n[0].std, n[1].std, n[2].std), (0.247_032_33, 0.243_485_05, 0.261_587_68));
}

#[test]
fn cifar100_takes_the_fine_label_and_has_100_classes() {
    let dir = tempfile::tempdir().unwrap();
    let record = |coarse: u8, fine: u8, v: u8| [vec![coarse, fine], vec![v; PIXELS]].concat();
    let train = [record(19, 0, 1), record(0, 99, 2), record(3, 42, 3)].concat();
    std::fs::write(dir.path().join("train.bin"), train).unwrap();
    std::fs::write(dir.path().join("test.bin"), record(7, 35, 255)).unwrap();
    let s = load_data(Some(Task::C100_32), dir.path()).unwrap();
    assert_eq!((s.train.labels.as_slice(), s.test.labels.as_slice()), (&[0, 99, 42][..], &[35][..]));
    assert_eq!((s.classes, s.train.shape), (100, InputShape::CIFAR));
    // The pixels start after both label bytes.
    assert!(close(s.train.images[PIXELS], (2.0 / 255.0 - 0.491_399_68) / 0.247_032_33));
    assert!(close(s.test.images[PIXELS - 1], (1.0 - 0.446_531_24) / 0.261_587_68));
}

#[test]
fn the_extracted_folder_and_gzipped_files_are_found() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("cifar-10-batches-bin");
    write_cifar10(&sub, 4, 3);
    // Gzip two of the files, under the .gz name.
    for name in ["data_batch_2.bin", "test_batch.bin"] {
        let raw = std::fs::read(sub.join(name)).unwrap();
        std::fs::write(sub.join(format!("{name}.gz")), gz(&raw)).unwrap();
        std::fs::remove_file(sub.join(name)).unwrap();
    }
    let s = load_data(Some(Task::C10_32), dir.path()).unwrap();
    assert_eq!((s.train_total, s.test.len()), (20, 3));
    let plain = tempfile::tempdir().unwrap();
    write_cifar10(plain.path(), 4, 3);
    let p = load_data(Some(Task::C10_32), plain.path()).unwrap();
    assert_eq!((s.train.images == p.train.images, s.test.labels == p.test.labels), (true, true));
    // CIFAR-100's folder name.
    let d100 = tempfile::tempdir().unwrap();
    write_cifar100(&d100.path().join("cifar-100-binary"), 24, 5);
    let s = load_data(Some(Task::C100_32), d100.path()).unwrap();
    assert_eq!((s.train.len(), s.heldout.len(), s.test.len()), (22, 2, 5));
}

/// Loads `dir` for `task` and returns the error and its message (checked to be one line).
fn error_of(task: Task, dir: &Path) -> (DataError, String) {
    let e = match load_data(Some(task), dir) {
        Ok(s) => panic!("{task:?}: {} loaded ({} training images), expected an error", dir.display(), s.train_total),
        Err(e) => e,
    };
    let msg = e.to_string();
    assert!(!msg.contains('\n'), "{msg}");
    (e, msg)
}

#[test]
fn every_bad_input_is_a_one_line_error_that_says_what_and_where() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    let (e, m) = error_of(Task::C10_16, &d.join("nope"));
    assert!(matches!(e, DataError::DirMissing { .. }) && m.contains("CIFAR-10's binary files"), "{m}");
    let (e, m) = error_of(Task::C10_16, Path::new(DEFAULT_FASHION_MNIST_DIR));
    assert!(matches!(e, DataError::CifarNoDefault { format: Cifar::Ten }), "{m}");
    assert!(m.contains("CIFAR-10 has no default directory") && m.contains(CIFAR_URL), "{m}");

    // Nothing there; then the archive not extracted.
    let (e, m) = error_of(Task::C10_16, d);
    assert!(matches!(e, DataError::CifarMissing { format: Cifar::Ten, .. }), "{m}");
    for needle in ["data_batch_1.bin", "cifar-10-batches-bin", "cifar-10-binary.tar.gz", CIFAR_URL] {
        assert!(m.contains(needle), "`{needle}` not in: {m}");
    }
    std::fs::write(d.join("cifar-100-binary.tar.gz"), b"not really").unwrap();
    let (e, m) = error_of(Task::C100_32, d);
    assert!(matches!(e, DataError::CifarArchive { format: Cifar::Hundred, .. }), "{m}");
    assert!(m.contains("tar xzf cifar-100-binary.tar.gz"), "{m}");
    std::fs::remove_file(d.join("cifar-100-binary.tar.gz")).unwrap();

    // One batch missing.
    write_cifar10(d, 2, 2);
    std::fs::remove_file(d.join("data_batch_3.bin")).unwrap();
    let (e, m) = error_of(Task::C10_16, d);
    assert!(matches!(&e, DataError::CifarFileMissing { path, .. } if path.ends_with("data_batch_3.bin")), "{m}");
    assert!(m.contains("data_batch_5.bin") && m.contains("test_batch.bin") && m.contains(CIFAR_URL), "{m}");
    write_cifar10(d, 2, 2);

    // Truncated: the last record is cut short.
    let mut t = std::fs::read(d.join("test_batch.bin")).unwrap();
    t.truncate(t.len() - 100);
    std::fs::write(d.join("test_batch.bin"), &t).unwrap();
    let (e, m) = error_of(Task::C10_16, d);
    let partial = CifarParseError::Partial { len: 2 * 3073 - 100, record: 3073 };
    assert!(matches!(&e, DataError::CifarBadFile { error, .. } if *error == partial), "{m}");
    for needle in
        ["test_batch.bin", "6046 bytes is not a whole number of 3073-byte records", "10000 records", CIFAR_URL]
    {
        assert!(m.contains(needle), "`{needle}` not in: {m}");
    }
    // Empty.
    std::fs::write(d.join("test_batch.bin"), []).unwrap();
    let (e, m) = error_of(Task::C10_16, d);
    assert!(matches!(e, DataError::CifarBadFile { error: CifarParseError::Empty, .. }), "{m}");
    // Wrongly sized: a CIFAR-100 file (3074-byte records) where a CIFAR-10 batch belongs.
    std::fs::write(d.join("test_batch.bin"), pattern_file(Cifar::Hundred, 3, 0, 1)).unwrap();
    let (e, m) = error_of(Task::C10_16, d);
    assert!(matches!(e, DataError::CifarBadFile { error: CifarParseError::Partial { len: 9222, .. }, .. }), "{m}");
    // A label out of range.
    let mut bad = pattern_file(Cifar::Ten, 2, 0, 1);
    bad[3073] = 10;
    std::fs::write(d.join("test_batch.bin"), gz(&bad)).unwrap();
    let (e, m) = error_of(Task::C10_16, d);
    assert!(
        matches!(e, DataError::CifarBadFile { error: CifarParseError::BadLabel { record: 1, label: 10, .. }, .. }),
        "{m}"
    );
    // A broken gzip stream.
    std::fs::write(d.join("test_batch.bin"), &gz(&pattern_file(Cifar::Ten, 2, 0, 1))[..200]).unwrap();
    let (e, m) = error_of(Task::C10_16, d);
    assert!(matches!(e, DataError::Io { .. }) && m.contains("test_batch.bin"), "{m}");

    // CIFAR-100: fine labels past 99 and coarse past 19.
    let d100 = tempfile::tempdir().unwrap();
    write_cifar100(d100.path(), 4, 2);
    let mut train = std::fs::read(d100.path().join("train.bin")).unwrap();
    train[3074 + 1] = 100;
    std::fs::write(d100.path().join("train.bin"), &train).unwrap();
    let (e, m) = error_of(Task::C100_32, d100.path());
    assert!(matches!(e, DataError::CifarBadFile { error: CifarParseError::BadLabel { which: "fine", .. }, .. }), "{m}");
    assert!(m.contains("CIFAR-100's binary records (2 label byte(s) + 3072 pixel bytes, 50000 records"), "{m}");
}

#[test]
fn bad_data_is_a_one_line_error_from_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let out = dir.path().join("out");
    let out = out.to_str().unwrap();
    let expect = ["CIFAR-10 not found in", "data_batch_1.bin", CIFAR_URL];
    assert_one_line_error_all(&nino(&["train", "--task", "c10-16", "--data", d]), &expect);
    assert_one_line_error_all(
        &nino(&["experiment", "--task", "c10-32", "--data", d, "--out", out, "--seeds", "1"]),
        &expect,
    );
    let collect = nino(&["collect", "--task", "c100-32", "--data", d, "--out", out, "--steps", "10", "--every", "5"]);
    assert_one_line_error_all(&collect, &["CIFAR-100 not found in", "train.bin", "cifar-100-binary"]);
    // No --data: the default directory is Fashion-MNIST's, and the message names the flag.
    assert_one_line_error_all(
        &nino(&["train", "--task", "c10-16"]),
        &["CIFAR-10 has no default directory: pass --data DIR"],
    );
    // The Fashion-MNIST subset is no CIFAR copy.
    let mini = root().join("fixtures/fashion-mnist-mini");
    assert_one_line_error_all(
        &nino(&["train", "--task", "c10-16", "--data", mini.to_str().unwrap()]),
        &["CIFAR-10 not found"],
    );
}

#[test]
fn c10_16_learns_the_generated_pattern() {
    let dir = tempfile::tempdir().unwrap();
    write_cifar10(dir.path(), 60, 100);
    let summary = dir.path().join("s.json");
    let out = ok(nino(&[
        "train",
        "--task",
        "c10-16",
        "--data",
        dir.path().to_str().unwrap(),
        "--batch",
        "32",
        "--steps",
        "300",
        "--eval-every",
        "20",
        "--target",
        "90",
        "--no-progress",
        "--summary-json",
        summary.to_str().unwrap(),
    ]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("training c10-16 (conv:16,32,32, 14666 params) on 275 of 300 training images"), "{err}");
    assert!(err.contains("lr 0.003") && err.contains("mean 0.4914/0.4822/0.4465 std 0.2470/0.2435/0.2616"), "{err}");
    let s: serde_json::Value = serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();
    let steps = s["steps_to_target"].as_u64();
    assert!(steps.is_some_and(|n| n <= 300), "90% of the generated test images not reached: {s}");
}

/// A history of 5 parameter vectors that drift apart, as Adam's would.
fn history(p: usize) -> Vec<f32> {
    (0..5 * p).map(|i| ((i % p * 37 % 101) as f32 - 50.0) * 1e-3 * (1.0 + 0.1 * (i / p) as f32)).collect()
}

#[test]
fn nowcast_on_each_cifar_graph_with_its_built_in_table() {
    let w = WeightSet::load(weights()).unwrap();
    for (task, nodes) in [(Task::C10_16, 97), (Task::C10_32, 177), (Task::C100_32, 267)] {
        let arch = task.arch();
        assert_eq!(NeuralGraph::new(&arch).num_nodes(), nodes);
        // The table baked at build time is what the solver gives at run time.
        let table = nino_core::spectral::builtin(&arch).unwrap_or_else(|| panic!("no table for {task:?}"));
        let solved = Spectrum::compute(&arch);
        assert_eq!(table.lpe, solved.lpe(8).unwrap().as_slice(), "{task:?}");
        assert_eq!(table.centrality, solved.centrality().as_slice(), "{task:?}");
        let p = arch.param_count();
        let h = history(p);
        let mut nc = Nowcaster::new(w.clone(), &arch, None, false).unwrap();
        assert_eq!(nc.lpe(), table.lpe);
        let mut out = vec![f32::NAN; p];
        nc.nowcast(&h, 40, &mut out).unwrap();
        assert!(out.iter().all(|x| x.is_finite()), "{task:?}");
        let last = &h[4 * p..];
        let moved = out.iter().zip(last).filter(|(a, b)| a != b).count();
        assert!(moved > p / 2, "{task:?}: only {moved} of {p} parameters moved");
    }
}

#[test]
fn experiment_and_collection_run_on_cifar_files() {
    let dir = tempfile::tempdir().unwrap();
    let c10 = dir.path().join("c10");
    write_cifar10(&c10, 12, 20);
    let exp = dir.path().join("exp");
    let w = weights();
    let res = ok(nino(&[
        "experiment",
        "--task",
        "c10-32",
        "--data",
        c10.to_str().unwrap(),
        "--steps",
        "30",
        "--eval-every",
        "10",
        "--batch",
        "8",
        "--seeds",
        "1",
        "--runs",
        "adam,nino:10",
        "--nino",
        w.to_str().unwrap(),
        "--out",
        exp.to_str().unwrap(),
    ]));
    let table = std::fs::read_to_string(exp.join("table.md")).unwrap();
    assert!(table.contains("target 72.50%"), "{table}");
    let err = String::from_utf8_lossy(&res.stderr);
    assert!(table.lines().any(|l| l.starts_with("| Adam |")), "{table}");
    assert!(table.lines().any(|l| l.starts_with("| Adam+NiNo (static 10) |")), "{table}");
    // Three nowcasts in 30 steps at period 10: NiNo ran on the C10-32 graph inside training.
    assert!(err.contains("Adam+NiNo (static 10), seed 1: ") && err.contains("3 nowcasts"), "{err}");

    let c100 = dir.path().join("c100");
    write_cifar100(&c100.join("cifar-100-binary"), 24, 10);
    let traj = dir.path().join("traj");
    ok(nino(&[
        "collect",
        "--task",
        "c100-32",
        "--data",
        c100.to_str().unwrap(),
        "--out",
        traj.to_str().unwrap(),
        "--seeds",
        "1",
        "--steps",
        "10",
        "--every",
        "5",
        "--batch",
        "8",
        "--no-progress",
    ]));
    let m = nino_host::io::collection::Manifest::load(&traj).unwrap();
    assert_eq!((m.config.input, m.config.classes, m.config.task.as_deref()), ([3, 32, 32], 100, Some("c100-32")));
    assert_eq!(m.config.norm_mean, [0.491_399_68, 0.482_158_27, 0.446_531_24]);
    assert_eq!(m.config.lrs, [0.003]);
    let t = m.load_trajectory(&traj, &m.trajectories[0]).unwrap();
    assert_eq!((t.n_states, t.params), (3, 62_820));
    assert_eq!(t.meta.norm_std.len(), 3);
}

#[test]
fn memory_plan_and_spectrum_of_each_cifar_task() {
    let w = weights();
    for (task, params, nodes, edges) in [
        ("c10-16", "14,666", "97", "2,091"),
        ("c10-32", "56,970", "177", "7,227"),
        ("c100-32", "62,820", "267", "13,167"),
    ] {
        let out = ok(nino(&["plan", "--task", task, "--weights", w.to_str().unwrap()]));
        let text = String::from_utf8_lossy(&out.stdout);
        let head = format!("Memory plan for {task}: {params} parameters, {nodes} nodes, {edges} edges");
        assert!(text.starts_with(&head), "{text}");
        let out = ok(nino(&["plan", "--task", task, "--json", "--weights", w.to_str().unwrap()]));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let p: u64 = params.replace(',', "").parse().unwrap();
        assert_eq!(v["train_values"]["inputs"], 128 * 3 * 32 * 32, "{task}");
        assert_eq!(
            (v["train_values"]["params"].as_u64(), v["nowcast_values"]["history"].as_u64()),
            (Some(p), Some(5 * p))
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("s.png");
    let out = ok(nino(&["spectrum", "--task", "c10-16", "--out", png.to_str().unwrap()]));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("c10-16: 97 nodes;"));
    assert!(std::fs::metadata(&png).unwrap().len() > 1000);
}
