//! Crash safety of `nino train`: a run stopped or killed after a checkpoint and continued with `--resume`
//! ends with the same parameters (bit for bit), metrics rows and steps to target as an uninterrupted run;
//! a killed run leaves intact files; a bad resume is one error line and changes no file.

mod common;
use common::wait_for_line;
use nino_host::run::checkpoint::Checkpoint;
use safetensors::SafeTensors;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn mini() -> String {
    root().join("fixtures/fashion-mnist-mini").display().to_string()
}

fn weights() -> String {
    root().join("fixtures/weights/nino_no_posw.safetensors").display().to_string()
}

fn nino(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nino")).args(args).output().expect("run the nino binary")
}

fn ok(args: &[&str]) -> Output {
    let out = nino(args);
    assert!(out.status.success(), "nino {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    out
}

/// `nino train` on the debug task, small batches so each run takes a second or two.
fn base(steps: &str) -> Vec<String> {
    ["train", "--task", "debug", "--data", &mini(), "--batch", "32", "--eval-every", "10", "--steps", steps]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

fn with(base: &[String], extra: &[&str]) -> Vec<String> {
    base.iter().cloned().chain(extra.iter().map(|s| s.to_string())).collect()
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn path(dir: &Path, name: &str) -> String {
    dir.join(name).display().to_string()
}

/// The `params` tensor of a `--save-params` file, as raw bytes.
fn params(file: &str) -> Vec<u8> {
    let bytes = std::fs::read(file).unwrap();
    SafeTensors::deserialize(&bytes).unwrap().tensor("params").unwrap().data().to_vec()
}

/// The metrics CSV without its timing columns (step, train loss, test loss, test accuracy).
fn rows(file: &str) -> Vec<String> {
    let csv = std::fs::read_to_string(file).unwrap();
    assert!(csv.ends_with('\n'), "metrics file ends mid-line: {csv}");
    let mut lines = csv.lines();
    assert_eq!(lines.next().unwrap().split(',').count(), 7);
    lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            assert_eq!(f.len(), 7, "incomplete row `{l}`");
            f[..4].join(",")
        })
        .collect()
}

/// The summary JSON without timings.
fn summary(file: &str) -> BTreeMap<String, serde_json::Value> {
    let v: BTreeMap<String, serde_json::Value> = serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    v.into_iter().filter(|(k, _)| !k.ends_with("_seconds")).collect()
}

/// Runs `args` uninterrupted, then stopped after each of `stops` and resumed, in `dir`; checks that each
/// stop left its checkpoint at the step in `saved` and that both runs end the same. Returns the
/// uninterrupted summary and metrics rows.
fn check_equivalence(
    args: &[String],
    stops: &[u64],
    saved: &[u64],
    ck_every: &str,
) -> (BTreeMap<String, serde_json::Value>, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (ma, pa, sa) = (path(d, "a.csv"), path(d, "a.params"), path(d, "a.json"));
    ok(&strs(&with(args, &["--metrics", &ma, "--save-params", &pa, "--summary-json", &sa])));

    let (mb, pb, sb, ck) = (path(d, "b.csv"), path(d, "b.params"), path(d, "b.json"), path(d, "b.ckpt"));
    let files = with(args, &["--metrics", &mb, "--save-params", &pb, "--summary-json", &sb]);
    let mut steps_at = Vec::new();
    for (i, stop) in stops.iter().enumerate() {
        let s = stop.to_string();
        let flag = if i == 0 { "--checkpoint" } else { "--resume" };
        let out = ok(&strs(&with(&files, &[flag, &ck, "--checkpoint-every", ck_every, "--stop-after", &s])));
        assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("stopped after step {stop}")));
        assert!(!Path::new(&pb).exists() && !Path::new(&sb).exists(), "a stopped run writes no final files");
        let c = Checkpoint::read(Path::new(&ck)).unwrap();
        steps_at.push(c.state.step);
        // The metrics file holds exactly the checkpoint's rows, or, when the checkpoint waited for a
        // deferred verdict, also the evaluations since (the resumed run rewrites it from the checkpoint).
        if c.state.step == *stop {
            assert_eq!(rows(&mb).len(), c.state.rows.len());
        } else {
            assert!(rows(&mb).len() > c.state.rows.len());
        }
    }
    assert_eq!(steps_at, saved);
    let out = ok(&strs(&with(&files, &["--resume", &ck, "--checkpoint-every", ck_every])));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("resuming from {ck} after step {}", saved[saved.len() - 1])), "{err}");

    assert_eq!(params(&pa), params(&pb), "final parameters differ");
    assert_eq!(std::fs::read(&pa).unwrap(), std::fs::read(&pb).unwrap(), "parameter files differ");
    let (ra, rb) = (rows(&ma), rows(&mb));
    assert_eq!(ra, rb, "metrics rows differ");
    let (a, b) = (summary(&sa), summary(&sb));
    assert_eq!(a, b, "summaries differ");
    // The last checkpoint is the end of the run.
    let c = Checkpoint::read(Path::new(&ck)).unwrap();
    assert_eq!(c.state.step, a["steps_run"].as_u64().unwrap());
    assert_eq!(c.state.rows.len(), ra.len());
    (a, ra)
}

#[test]
fn adam_resumed_equals_uninterrupted() {
    // Target 15% (chance is 10%): reached within the 80 steps, so steps to target is compared too.
    let (s, _) = check_equivalence(&with(&base("80"), &["--target", "0.15"]), &[30], &[30], "10");
    assert!(s["steps_to_target"].as_u64().is_some_and(|t| t > 30), "{s:?}");
}

#[test]
fn fine_evaluation_resumed_equals_uninterrupted() {
    // A margin of 100 points makes every evaluation after the first one dense: every 2 steps from step 10.
    let args = with(&base("60"), &["--target", "0.99", "--eval-fine", "2", "--eval-fine-margin", "100"]);
    let (s, rows) = check_equivalence(&args, &[25], &[25], "5");
    assert_eq!((s["eval_fine"]["every"].as_u64(), s["steps_run"].as_u64()), (Some(2), Some(60)));
    let steps: Vec<u64> = rows.iter().map(|r| r.split(',').next().unwrap().parse().unwrap()).collect();
    assert_eq!(steps, (10..=60).step_by(2).collect::<Vec<u64>>(), "dense rows on both sides of the stop at 25");
}

#[test]
fn nino_with_rollback_resumed_twice_equals_uninterrupted() {
    // Period 10: states every 2 steps, a nowcast every 10. Stops at 25 and 43 fall inside windows, with
    // states recorded and the rollback baseline half summed; checkpoints every 5 steps, not at evaluations.
    let args = with(&base("60"), &["--nino", &weights(), "--period", "10", "--rollback"]);
    let (s, _) = check_equivalence(&args, &[25, 43], &[25, 43], "5");
    assert_eq!(s["nowcasts"].as_u64(), Some(6), "{s:?}");
}

#[test]
fn nino_with_deferred_verdict_resumed_equals_uninterrupted() {
    // Nowcasts at 10, 20, ...; each verdict is pending until the next state, 2 steps later, and no
    // checkpoint is written meanwhile: the stop after step 31 (nowcast at 30) leaves the one of step 25,
    // and the run resumed from there still ends exactly as the uninterrupted one.
    let args = with(&base("60"), &["--nino", &weights(), "--period", "10", "--rollback", "--verdict", "deferred"]);
    let (s, _) = check_equivalence(&with(&args, &["--patience", "0"]), &[25, 31, 43], &[25, 25, 43], "5");
    assert_eq!(s["nowcasts"].as_u64(), Some(6), "{s:?}");
}

#[test]
fn nino_with_progress_period_resumed_equals_uninterrupted() {
    // The progress period's windows depend on the held-out losses measured at earlier nowcasts, which the
    // resumed run must replay from the checkpoint. Period 10 while that loss falls: 20 nowcasts in 200
    // steps without a stall; fewer means stalls widened the windows, and the stop at 173 comes after them.
    let args = with(&base("200"), &["--nino", &weights(), "--period", "progress:10/1.5/10/40"]);
    let (s, _) = check_equivalence(&args, &[97, 173], &[97, 173], "5");
    let n = s["nowcasts"].as_u64().unwrap();
    assert!((10..20).contains(&n), "{s:?}");
}

#[test]
fn killed_run_leaves_intact_files_and_resumes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let args = base("120");
    let (ma, pa) = (path(d, "a.csv"), path(d, "a.params"));
    ok(&strs(&with(&args, &["--metrics", &ma, "--save-params", &pa])));

    let run = tempfile::tempdir().unwrap();
    let r = run.path();
    let (mb, pb, ck) = (path(r, "b.csv"), path(r, "b.params"), path(r, "b.ckpt"));
    let files = with(&args, &["--metrics", &mb, "--save-params", &pb]);
    // The run holds (waits forever) right after its checkpoint of step 50 and says so on stderr; the kill
    // lands there whatever the machine's speed (a sleep before the kill let a fast machine finish the run).
    let mut child = Command::new(env!("CARGO_BIN_EXE_nino"))
        .args(strs(&with(&files, &["--checkpoint", &ck])))
        .env("NINO_TEST_HOLD_AFTER_CHECKPOINT", "50")
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for_line(child.stderr.take().unwrap(), "holding after NINO_TEST_HOLD_AFTER_CHECKPOINT=50");
    child.kill().unwrap();
    let status = child.wait().unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(9), "the run must be killed mid-run, not finish: {status:?}");
    }

    // Everything on disk is whole: the checkpoint passes its checksum, the metrics rows are complete and
    // the checkpoint's rows are a prefix of them; no final files; only temporary files may be left over.
    let c = Checkpoint::read(Path::new(&ck)).expect("the checkpoint survives the kill intact");
    assert_eq!(c.state.step, 50, "the checkpoint the run held after");
    let got = rows(&mb);
    let reference = rows(&ma);
    assert!(got.len() >= c.state.rows.len(), "the metrics file is behind the checkpoint");
    assert_eq!(got[..], reference[..got.len()], "rows written before the kill are the uninterrupted run's");
    assert!(!Path::new(&pb).exists());
    for e in std::fs::read_dir(r).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        assert!(["b.csv", "b.ckpt"].contains(&name.as_str()) || name.starts_with(".nino-tmp-"), "stray {name}");
    }

    ok(&strs(&with(&files, &["--resume", &ck])));
    assert_eq!(params(&pa), params(&pb), "final parameters differ from the uninterrupted run's");
    assert_eq!(rows(&ma), rows(&mb), "metrics rows differ from the uninterrupted run's");
}

/// Asserts a refused resume: non-zero exit, no panic, one `error:` line containing `needle`.
fn assert_refused(out: &Output, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "expected a refusal, stderr: {err}");
    assert!(!err.contains("panicked"), "{err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line expected: {err}");
    assert!(lines[0].starts_with("error: ") && lines[0].contains(needle), "`{needle}` not in: {err}");
}

/// Every file in `dir` with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).unwrap())
        })
        .collect()
}

#[test]
fn bad_resumes_are_refused_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let args = base("40");
    let (m, ck) = (path(d, "m.csv"), path(d, "run.ckpt"));
    ok(&strs(&with(&args, &["--metrics", &m, "--checkpoint", &ck, "--stop-after", "20"])));
    let good = std::fs::read(&ck).unwrap();

    let bad = |name: &str, bytes: &[u8]| {
        let p = path(d, name);
        std::fs::write(&p, bytes).unwrap();
        p
    };
    let truncated = bad("truncated.ckpt", &good[..good.len() * 2 / 3]);
    let garbage: Vec<u8> = (0..5000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8).collect();
    let garbage = bad("garbage.ckpt", &garbage);
    let mut flipped = good.clone();
    let at = flipped.len() - 100;
    flipped[at] ^= 0x01;
    let flipped = bad("flipped.ckpt", &flipped);
    let mut c = Checkpoint::read(Path::new(&ck)).unwrap();
    c.params[3] = f32::NAN;
    let nan = path(d, "nan.ckpt");
    c.write(Path::new(&nan)).unwrap();
    // NaN or infinity in Adam's moments would make every later step NaN: refused like parameters.
    let mut c = Checkpoint::read(Path::new(&ck)).unwrap();
    c.adam_m[5] = f32::NAN;
    let nan_m = path(d, "nan_m.ckpt");
    c.write(Path::new(&nan_m)).unwrap();
    let mut c = Checkpoint::read(Path::new(&ck)).unwrap();
    c.adam_v[0] = f32::INFINITY;
    let inf_v = path(d, "inf_v.ckpt");
    c.write(Path::new(&inf_v)).unwrap();
    let before = snapshot(d);

    let resume =
        |file: &str, extra: &[&str]| nino(&strs(&with(&with(&args, &["--metrics", &m, "--resume", file]), extra)));
    assert_refused(&resume(&ck, &["--lr", "0.01"]), "--lr is 0.006 there but 0.01 here");
    assert_refused(&resume(&ck, &["--seed", "7"]), "--seed is 1000 there but 7 here");
    assert_refused(&nino(&strs(&with(&base("50"), &["--resume", &ck]))), "--steps is 40 there but 50 here");
    assert_refused(&resume(&ck, &["--nino", &weights()]), "--nino is none there");
    assert_refused(&resume(&ck, &["--eval-fine", "2"]), "--eval-fine is unset there but 2 within 0.005 here");
    assert_refused(&resume(&truncated, &[]), "is truncated or corrupt");
    assert_refused(&resume(&garbage, &[]), "is truncated or corrupt");
    assert_refused(&resume(&flipped, &[]), "checksum");
    assert_refused(&resume(&nan, &[]), "non-finite value (NaN) in `params` at index 3");
    assert_refused(&resume(&nan_m, &[]), "non-finite value (NaN) in `adam.m` at index 5");
    assert_refused(&resume(&inf_v, &[]), "non-finite value (inf) in `adam.v` at index 0");
    assert_refused(&resume(&path(d, "missing.ckpt"), &[]), "cannot read checkpoint");
    // A fresh run never overwrites a checkpoint it was not told to resume.
    assert_refused(&nino(&strs(&with(&args, &["--checkpoint", &ck]))), "already exists");
    assert_eq!(snapshot(d), before, "a refused resume changed or left files");

    // The untouched checkpoint still resumes.
    ok(&strs(&with(&args, &["--metrics", &m, "--resume", &ck])));
    assert_eq!(rows(&m).len(), 4);
}

#[test]
fn help_explains_checkpoints() {
    let out = ok(&["train", "--help"]);
    let s = String::from_utf8_lossy(&out.stdout);
    for needle in
        ["--checkpoint <FILE>", "--checkpoint-every <N>", "--resume <FILE>", "--save-params <FILE>", "atomically"]
    {
        assert!(s.contains(needle), "`{needle}` missing from help:\n{s}");
    }
    assert!(!s.contains("--stop-after"), "the test-only flag is hidden");
}
