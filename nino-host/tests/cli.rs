//! The `nino` binary end to end: help, one-line errors with a non-zero exit, and a short real run on the
//! `fixtures/fashion-mnist-mini` subset of Fashion-MNIST.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn mini() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/fashion-mnist-mini")
}

fn nino(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nino")).args(args).output().expect("run the nino binary")
}

/// Asserts a failed run: non-zero exit, no panic, exactly one stderr line starting `error:` and
/// containing `needle`.
fn assert_one_line_error(out: &Output, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "expected failure, stderr: {err}");
    assert!(!err.contains("panicked"), "panic: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line expected: {err}");
    assert!(lines[0].starts_with("error: "), "{err}");
    assert!(lines[0].contains(needle), "`{needle}` not in: {err}");
}

#[test]
fn train_help_explains_itself() {
    let out = nino(&["train", "--help"]);
    assert!(out.status.success());
    let s = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "--task",
        "fm16",
        "--arch",
        "--data",
        "--eval-every",
        "every step",
        "[default: 1000]",
        "[default: dynamic]",
        "Examples:",
    ] {
        assert!(s.contains(needle), "`{needle}` missing from help:\n{s}");
    }
}

#[test]
fn bad_arch_spec_is_a_one_line_error() {
    let out = nino(&["train", "--arch", "conv:16,x", "--data", mini().to_str().unwrap()]);
    assert_one_line_error(&out, "bad --arch `conv:16,x`");
}

#[test]
fn zero_batch_is_a_one_line_error() {
    assert_one_line_error(&nino(&["train", "--task", "debug", "--batch", "0"]), "--batch must be at least 1");
}

#[test]
fn missing_data_dir_is_a_one_line_error() {
    let out = nino(&["train", "--task", "debug", "--data", "/nonexistent/nino-data"]);
    assert_one_line_error(&out, "/nonexistent/nino-data does not exist");
}

#[test]
fn usage_errors_are_one_line() {
    assert_one_line_error(&nino(&["train", "--task", "c100"]), "c100");
    assert_one_line_error(&nino(&["train", "--task", "fm16", "--arch", "mlp:32"]), "cannot be used with");
}

fn gunzip(path: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap()).read_to_end(&mut out).unwrap();
    out
}

/// The mini fixture un-gzipped into a temporary directory, so tests can damage single files.
fn raw_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for base in
        ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
    {
        std::fs::write(dir.path().join(base), gunzip(&mini().join(format!("{base}.gz")))).unwrap();
    }
    dir
}

#[test]
fn damaged_idx_files_are_one_line_errors() {
    let dir = raw_copy();
    let d = dir.path().to_str().unwrap();
    let images = dir.path().join("t10k-images-idx3-ubyte");
    let bytes = std::fs::read(&images).unwrap();
    std::fs::write(&images, &bytes[..bytes.len() / 2]).unwrap();
    assert_one_line_error(&nino(&["train", "--task", "debug", "--data", d]), "truncated IDX file");
    std::fs::write(&images, &bytes).unwrap();

    let labels = dir.path().join("train-labels-idx1-ubyte");
    std::fs::write(&labels, &bytes[..100]).unwrap();
    assert_one_line_error(&nino(&["train", "--task", "debug", "--data", d]), "bad IDX magic");
    std::fs::remove_file(&labels).unwrap();
    assert_one_line_error(&nino(&["train", "--task", "debug", "--data", d]), "missing IDX file");
}

#[test]
fn short_run_on_the_mini_dataset_learns_and_writes_its_files() {
    let out_dir = tempfile::tempdir().unwrap();
    let metrics = out_dir.path().join("m.csv");
    let summary = out_dir.path().join("s.json");
    let out = nino(&[
        "train",
        "--data",
        mini().to_str().unwrap(),
        "--arch",
        "conv:4,6,6",
        "--steps",
        "200",
        "--eval-every",
        "50",
        "--metrics",
        metrics.to_str().unwrap(),
        "--summary-json",
        summary.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "run failed: {err}");

    let s: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    assert!(s["task"].is_null());
    assert_eq!(s["arch"], "conv:4,6,6");
    assert_eq!(s["seed"], 1000);
    assert_eq!(s["eval_every"], 50);
    assert!(s["target"].is_null() && s["steps_to_target"].is_null());
    assert_eq!(s["steps_run"], 200);
    assert_eq!((s["nowcasts"].as_u64(), s["rollbacks"].as_u64()), (Some(0), Some(0)));
    let acc = s["final_accuracy"].as_f64().unwrap();
    // Chance is 10%; 200 Adam steps of a 662-parameter conv net reach well above 50% on this subset.
    assert!(acc > 0.5, "final accuracy {acc}");
    assert!(s["best_accuracy"].as_f64().unwrap() >= acc);
    assert!(s["train_seconds"].as_f64().unwrap() > 0.0 && s["eval_seconds"].as_f64().unwrap() > 0.0);

    let csv = std::fs::read_to_string(&metrics).unwrap();
    let rows: Vec<Vec<&str>> = csv.lines().skip(1).map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.iter().map(|r| r[0]).collect::<Vec<_>>(), ["50", "100", "150", "200"]);
    let loss = |r: &Vec<&str>| r[1].parse::<f64>().unwrap();
    assert!(loss(&rows[3]) < loss(&rows[0]), "train loss should fall: {csv}");
    let last_acc: f64 = rows[3][3].parse().unwrap();
    assert!((last_acc - acc).abs() < 1e-6);
}

#[test]
fn runs_are_reproducible_for_a_seed() {
    let run = |seed: &str| {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.jsonl");
        let m = mini();
        let args = [
            "train",
            "--task",
            "debug",
            "--data",
            m.to_str().unwrap(),
            "--steps",
            "30",
            "--eval-every",
            "10",
            "--seed",
            seed,
        ];
        let out = nino(&[&args[..], &["--metrics", p.to_str().unwrap()]].concat());
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        std::fs::read_to_string(&p)
            .unwrap()
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                (v["train_loss"].to_string(), v["test_loss"].to_string(), v["test_accuracy"].to_string())
            })
            .collect::<Vec<_>>()
    };
    let a = run("7");
    assert_eq!(a.len(), 3);
    assert_eq!(a, run("7"));
    assert_ne!(a, run("8"));
}

#[test]
fn lpe_of_another_graph_is_one_error_line() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let weights = root.join("fixtures/weights/nino_no_posw.safetensors");
    let lpe = format!("{}:lpe8", root.join("fixtures/golden/fm16.safetensors").display());
    let out = nino(&[
        "train",
        "--task",
        "debug",
        "--data",
        mini().to_str().unwrap(),
        "--nino",
        weights.to_str().unwrap(),
        "--lpe",
        &lpe,
    ]);
    // The run announces itself first; the failure is the one `error:` line that follows.
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && !err.contains("panicked"), "{err}");
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(errors.len(), 1, "{err}");
    assert!(errors[0].contains("expected 248 (31 nodes x 8)"), "{err}");
}
