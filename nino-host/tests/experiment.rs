//! `nino experiment` end to end on the `fixtures/fashion-mnist-mini` subset: two configurations, two seeds,
//! every output file written and readable.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn mini() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/fashion-mnist-mini")
}

fn nino(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nino")).args(args).output().expect("run the nino binary")
}

/// Checks a PNG file: signature, IHDR chunk, a non-trivial image size and file size.
fn assert_png(path: &Path) {
    let b = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(b.len() > 1024, "{} is only {} bytes", path.display(), b.len());
    assert_eq!(&b[..8], b"\x89PNG\r\n\x1a\n", "{} is not a PNG", path.display());
    assert_eq!(&b[12..16], b"IHDR");
    let w = u32::from_be_bytes(b[16..20].try_into().unwrap());
    let h = u32::from_be_bytes(b[20..24].try_into().unwrap());
    assert!(w >= 640 && h >= 400, "{w}x{h}");
    assert_eq!(&b[b.len() - 8..b.len() - 4], b"IEND", "{} is truncated", path.display());
}

#[test]
fn experiment_on_the_mini_dataset_writes_table_json_and_plots() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("exp");
    let m = mini();
    let res = nino(&[
        "experiment",
        "--task",
        "debug",
        "--data",
        m.to_str().unwrap(),
        "--steps",
        "600",
        "--seeds",
        "1,2",
        "--runs",
        "adam,nino:dynamic",
        "--out",
        out.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&res.stderr);
    assert!(res.status.success(), "experiment failed: {err}");

    let table = std::fs::read_to_string(out.join("table.md")).unwrap();
    assert_eq!(String::from_utf8_lossy(&res.stdout).lines().next(), table.lines().next(), "table printed");
    assert!(table.contains("evaluation every 100 steps; at most 600 steps; target 70.00%; seeds 1, 2"), "{table}");
    assert!(table.contains("--runs adam,nino:dynamic"), "the command is in the header: {table}");
    // The summary table comes first; the paired comparison (one row: Adam against NiNo) after it.
    let (summary, paired) = table.split_once("## Paired comparison").unwrap_or_else(|| panic!("{table}"));
    let rows: Vec<&str> = summary.lines().filter(|l| l.starts_with("| Adam")).collect();
    assert_eq!(rows.len(), 2, "{table}");
    assert_eq!(paired.lines().filter(|l| l.starts_with("| Adam | Adam+NiNo (dynamic) |")).count(), 1, "{table}");
    assert!(rows[0].starts_with("| Adam |") && rows[1].starts_with("| Adam+NiNo (dynamic) |"), "{table}");
    // The dynamic schedule starts with a 500-step period and grows it, so a 600-step run nowcasts once.
    assert_eq!(rows[1].split('|').nth(6).map(str::trim), Some("1"), "{table}");

    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    let configs = json["configurations"].as_array().unwrap();
    assert_eq!(configs.len(), 2);
    for c in configs {
        let runs = c["runs"].as_array().unwrap();
        assert_eq!(runs.iter().map(|r| r["seed"].as_u64().unwrap()).collect::<Vec<_>>(), [1, 2]);
        for r in runs {
            assert_eq!(r["summary"]["steps_run"].as_u64(), r["summary"]["steps_to_target"].as_u64().or(Some(600)));
            let csv = std::fs::read_to_string(r["metrics_csv"].as_str().unwrap()).unwrap();
            assert!(csv.lines().count() >= 2, "{csv}");
            let s: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(r["summary_json"].as_str().unwrap()).unwrap()).unwrap();
            assert_eq!(s, r["summary"]);
        }
    }
    assert_eq!(json["setup"]["seeds"], serde_json::json!([1, 2]));

    assert_png(&out.join("accuracy_vs_steps.png"));
    assert_png(&out.join("accuracy_vs_wall.png"));
    let stray: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".nino-tmp"))
        .collect();
    assert!(stray.is_empty(), "temporary files left: {stray:?}");
}

#[test]
fn missing_weights_and_bad_runs_are_one_line_errors() {
    let m = mini();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x");
    let base = ["experiment", "--task", "debug", "--data", m.to_str().unwrap(), "--out", out.to_str().unwrap()];
    for (extra, needle) in [
        (&["--nino", "/nonexistent/w.safetensors"][..], "NiNo weights /nonexistent/w.safetensors not found"),
        (&["--runs", "adam,sgd"], "bad run `sgd`"),
        (&["--seeds", "1,1"], "seed 1 is listed twice"),
    ] {
        let res = nino(&[&base[..], extra].concat());
        let err = String::from_utf8_lossy(&res.stderr);
        assert!(!res.status.success() && !err.contains("panicked"), "{extra:?}: {err}");
        assert_eq!(err.lines().filter(|l| !l.trim().is_empty()).count(), 1, "{err}");
        assert!(err.contains(needle), "`{needle}` not in {err}");
    }
    assert!(!out.exists(), "a failed check must not create the output directory");
}

#[test]
fn a_deferred_run_is_nino_train_with_the_deferred_verdict_and_the_heldout_probe() {
    let dir = tempfile::tempdir().unwrap();
    let m = mini();
    let (data, out) = (m.to_str().unwrap(), dir.path().join("exp"));
    let common = ["--task", "debug", "--data", data, "--steps", "300"];
    let res = nino(
        &[&["experiment", "--runs", "nino:50+deferred", "--seeds", "1", "--out", out.to_str().unwrap()][..], &common]
            .concat(),
    );
    assert!(res.status.success(), "experiment failed: {}", String::from_utf8_lossy(&res.stderr));
    let exp: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("runs/nino-50-deferred-seed1.json")).unwrap()).unwrap();

    let summary = dir.path().join("train.json");
    let weights = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/weights/nino_no_posw.safetensors");
    let res = nino(
        &[
            &["train", "--nino", weights.to_str().unwrap(), "--period", "50", "--rollback", "--seed", "1"][..],
            &["--verdict", "deferred", "--probe", "heldout", "--summary-json", summary.to_str().unwrap()],
            &common,
        ]
        .concat(),
    );
    assert!(res.status.success(), "train failed: {}", String::from_utf8_lossy(&res.stderr));
    let train: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();

    let events = exp["events"].as_array().unwrap();
    assert!(events.len() >= 2, "{exp}");
    assert!(events.iter().any(|e| e["later"].is_number()), "no deferred verdict was taken: {exp}");
    assert_eq!(exp["events"], train["events"], "the same nowcasts, losses and verdicts");
    assert_eq!(exp["steps_run"], train["steps_run"]);
    assert_eq!(exp["final_accuracy"], train["final_accuracy"]);
}

#[test]
fn adam_runs_on_to_its_own_step_limit_and_the_table_sets_nino_against_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("exp");
    let m = mini();
    let common = ["--task", "debug", "--data", m.to_str().unwrap(), "--seeds", "1", "--runs", "adam,nino:dynamic"];
    let limits = ["--steps", "200", "--adam-steps", "300", "--target", "99", "--out", out.to_str().unwrap()];
    let res = nino(&[&["experiment"][..], &common, &limits].concat());
    assert!(res.status.success(), "experiment failed: {}", String::from_utf8_lossy(&res.stderr));
    let summary = |name: &str| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(out.join("runs").join(name)).unwrap()).unwrap()
    };
    // A target of 99% is out of reach: each run stops at its own limit, Adam's the longer one.
    assert_eq!(summary("adam-seed1.json")["steps_run"], 300);
    assert_eq!(summary("nino-dynamic-seed1.json")["steps_run"], 200);
    let table = std::fs::read_to_string(out.join("table.md")).unwrap();
    assert!(table.contains("at most 200 steps (Adam: 300); target 99.00%"), "{table}");
    assert!(table.contains("| Adam | >300 | >300 |"), "{table}");
    assert!(table.contains("Against Adam (medians over the seeds;"), "{table}");
    assert!(table.contains("- Adam+NiNo (dynamic): steps to target >200 (not reached) vs Adam's >300;"), "{table}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    assert_eq!(json["setup"]["adam_steps"], 300);
    // Without --adam-steps, Adam's limit is --steps and results.json has no `adam_steps`.
    let out2 = dir.path().join("exp2");
    let same = ["--steps", "200", "--target", "99", "--out", out2.to_str().unwrap()];
    let res = nino(&[&["experiment"][..], &common, &same].concat());
    assert!(res.status.success(), "experiment failed: {}", String::from_utf8_lossy(&res.stderr));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out2.join("results.json")).unwrap()).unwrap();
    assert!(json["setup"].get("adam_steps").is_none(), "{json}");
}

/// The paired protocol: two arms that run the same weights under two names on tuning and confirmation
/// seeds are reported in two sections with every difference 0; `--resume` keeps every finished run and
/// rebuilds the same table, and with `--report-only` leaves out a seed an arm has not finished; a run of
/// other settings, or one with no settings record, is refused unless adopted.
#[test]
fn paired_seeds_resume_and_models_side_by_side() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("pair");
    let (m, o) = (mini(), out.to_str().unwrap().to_string());
    let weights = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/weights/nino_no_posw.safetensors");
    let model = format!("same={}", weights.display());
    let args = |extra: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = [
            "experiment",
            "--task",
            "debug",
            "--data",
            m.to_str().unwrap(),
            "--steps",
            "600",
            "--runs",
            "nino:200,nino:200@same",
            "--model",
            &model,
            "--seeds",
            "1",
            "--confirm-seeds",
            "2-3",
            "--out",
            &o,
            "--no-progress",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let run = |a: Vec<String>| nino(&a.iter().map(String::as_str).collect::<Vec<_>>());
    let first = run(args(&[]));
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let table = std::fs::read_to_string(out.join("table.md")).unwrap();
    let tuning = table.find("tuning seeds: used to choose settings").unwrap_or_else(|| panic!("{table}"));
    let confirm = table.find("confirmation seeds: run once, never used").unwrap_or_else(|| panic!("{table}"));
    assert!(tuning < confirm, "{table}");
    // Same weights under two names: every paired difference is 0, every seed a tie.
    let pairs: Vec<&str> = table.lines().filter(|l| l.starts_with("| Adam+NiNo (static 200) | Adam+NiNo")).collect();
    assert_eq!(pairs.len(), 2, "{table}");
    assert!(pairs[0].contains("| +0 | +0.0% | 0 | 0 | 1 | 1.000 | 1: +0 |"), "{table}");
    assert!(pairs[1].contains("| +0 | +0.0% | 0 | 0 | 2 | 1.000 | 2: +0; 3: +0 |"), "{table}");
    assert!(out.join("runs/nino-200-same-seed2.settings.json").is_file());

    // --resume runs nothing and writes the same table.
    let again = run(args(&["--resume"]));
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(again.status.success() && err.matches("kept from").count() == 6, "{err}");
    let table2 = std::fs::read_to_string(out.join("table.md")).unwrap();
    let body = |t: &str| t.lines().filter(|l| !l.starts_with("Command:")).collect::<Vec<_>>().join("\n");
    assert_eq!(body(&table2), body(&table));

    // --report-only runs nothing: a seed that one arm has not finished is left out of the tables.
    let held = dir.path().join("held.json");
    std::fs::rename(out.join("runs/nino-200-same-seed3.json"), &held).unwrap();
    let rep = run(args(&["--resume", "--report-only"]));
    let err = String::from_utf8_lossy(&rep.stderr);
    assert!(rep.status.success() && err.contains("seed 3 left out: not finished by nino:200@same"), "{err}");
    assert!(!out.join("runs/nino-200-same-seed3.json").exists(), "--report-only ran a run");
    let partial = std::fs::read_to_string(out.join("table.md")).unwrap();
    assert!(partial.contains("| +0 | +0.0% | 0 | 0 | 1 | 1.000 | 2: +0 |"), "{partial}");
    std::fs::rename(&held, out.join("runs/nino-200-same-seed3.json")).unwrap();
    let again = run(args(&["--resume"]));
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));

    // Other settings are refused in one line, naming the setting; nothing is rewritten.
    let bad = run(args(&["--resume", "--lr", "0.01"]));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success() && err.contains("--lr") && err.lines().count() == 1, "{err}");
    assert_eq!(std::fs::read_to_string(out.join("table.md")).unwrap(), table2);

    // A run without a settings record is kept only with --adopt.
    std::fs::remove_file(out.join("runs/nino-200-seed1.settings.json")).unwrap();
    let bad = run(args(&["--resume"]));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success() && err.contains("--adopt") && err.lines().count() == 1, "{err}");
    let adopted = run(args(&["--resume", "--adopt"]));
    assert!(adopted.status.success(), "{}", String::from_utf8_lossy(&adopted.stderr));
    assert!(out.join("runs/nino-200-seed1.settings.json").is_file());

    // An arm naming a model no --model gives, and a seed listed twice, are one-line errors.
    for extra in [&["--runs", "nino:200@other"][..], &["--confirm-seeds", "1"]] {
        let r = run(args(extra));
        let err = String::from_utf8_lossy(&r.stderr);
        assert!(!r.status.success() && err.lines().count() == 1, "{extra:?}: {err}");
    }
}
