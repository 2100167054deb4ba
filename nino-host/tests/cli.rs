//! The `nino` binary end to end: help, one-line errors with a non-zero exit, and a short real run on the
//! `fixtures/fashion-mnist-mini` subset of Fashion-MNIST.

mod common;
use common::assert_one_line_error;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn mini() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/fashion-mnist-mini")
}

fn nino(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nino")).args(args).output().expect("run the nino binary")
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
        "(1000, the default",
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

/// `(step, test accuracy)` of every row of a metrics CSV, and the summary JSON.
fn run_rows(extra: &[&str]) -> (Vec<(u64, String)>, serde_json::Value) {
    let dir = tempfile::tempdir().unwrap();
    let (m, s) = (dir.path().join("m.csv"), dir.path().join("s.json"));
    let data = mini();
    let args = ["train", "--task", "debug", "--data", data.to_str().unwrap(), "--steps", "600", "--eval-every", "50"];
    let out =
        nino(&[&args[..], extra, &["--metrics", m.to_str().unwrap(), "--summary-json", s.to_str().unwrap()]].concat());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rows = std::fs::read_to_string(&m)
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[0].parse().unwrap(), f[3].to_string())
        })
        .collect();
    (rows, serde_json::from_str(&std::fs::read_to_string(&s).unwrap()).unwrap())
}

#[test]
fn fine_evaluation_adds_evaluations_near_the_target_and_changes_nothing_else() {
    // The debug task's target is 70%; with a margin of 5 points the dense evaluations start at 65%.
    let (coarse, cs) = run_rows(&[]);
    let (fine, fs) = run_rows(&["--eval-fine", "5", "--eval-fine-margin", "5"]);
    assert_eq!(fs["eval_fine"]["every"], 5);
    let acc = |a: &str| a.parse::<f64>().unwrap();
    let switch = fine.iter().position(|(_, a)| acc(a) >= 0.65).expect("the run comes within 5 points");
    let reached = fine.iter().position(|(_, a)| acc(a) >= 0.70).expect("the run reaches 70%");
    assert!(switch < reached && reached + 1 == fine.len(), "training stops at the first row at the target");
    // Up to the switch every 50 steps, then every 5: more evaluations than the coarse run made there.
    assert!(fine[..=switch].iter().all(|(s, _)| s % 50 == 0));
    assert!(fine[switch..].windows(2).all(|w| w[1].0 == w[0].0 + 5), "{fine:?}");
    assert!(reached > switch + 1, "the test needs dense evaluations before the target: {fine:?}");
    // Evaluating does not change training: the coarse rows are among the fine ones, value for value.
    for row in coarse.iter().filter(|(s, _)| *s <= fine[reached].0) {
        assert!(fine.contains(row), "{row:?} of the coarse run is not in the fine run");
    }
    let (c, f) = (cs["steps_to_target"].as_u64().unwrap(), fs["steps_to_target"].as_u64().unwrap());
    assert!(f <= c, "fine {f}, coarse {c}");
    assert_one_line_error(&nino(&["train", "--task", "debug", "--eval-fine", "0"]), "--eval-fine must be at least 1");
    let m = mini();
    assert_one_line_error(
        &nino(&["train", "--arch", "mlp:8", "--data", m.to_str().unwrap(), "--eval-fine", "5"]),
        "this run has none: give --target",
    );
    assert_one_line_error(
        &nino(&["train", "--task", "debug", "--eval-fine", "5", "--eval-fine-margin", "150"]),
        "--eval-fine-margin must be between 0 and 100 points",
    );
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

/// `--device cuda` where there is no GPU: one line saying so, non-zero exit, for both commands (a machine
/// with a usable GPU runs them instead: `scripts/gpu-check.sh`).
#[test]
fn device_cuda_without_a_gpu_is_a_one_line_error() {
    if nino_cuda::probe().is_available() {
        eprintln!("SKIP: a GPU is present; --device cuda runs instead of failing");
        return;
    }
    let data = mini();
    let out = nino(&["train", "--task", "debug", "--data", data.to_str().unwrap(), "--steps", "2", "--device", "cuda"]);
    assert_one_line_error(&out, "--device cuda: no usable CUDA GPU");
    let fx = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures");
    let weights = fx.join("weights/nino_no_posw.safetensors");
    let history = fx.join("golden/debug.safetensors");
    let out = nino(&[
        "nowcast",
        "--weights",
        weights.to_str().unwrap(),
        "--arch",
        "conv:4,6,6",
        "--history",
        history.to_str().unwrap(),
        "--k",
        "1",
        "--out",
        "/nonexistent/out.safetensors",
        "--device",
        "cuda",
    ]);
    assert_one_line_error(&out, "--device cuda: no usable CUDA GPU");
}
