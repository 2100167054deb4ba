//! `nino collect` end to end on the `fixtures/fashion-mnist-mini` subset: the shards hold what the trainer
//! produces, a rerun changes nothing, a run killed with SIGKILL resumes to the uninterrupted result with no
//! trajectory lost or duplicated, and a folder of other settings is refused without a change.

mod common;
use common::wait_for_line;
use nino_core::{Arch, InputShape, Task};
use nino_host::io::collection::{MANIFEST, Manifest, Trajectory, TrajectoryEntry};
use nino_host::io::data::load_data;
use nino_host::training::engine::{AdamConfig, Engine, init_params};
use nino_host::training::trainer::{NoHook, TrainConfig, train};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn mini() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/fashion-mnist-mini")
}

/// `nino collect --task debug --data MINI --out DIR --no-progress EXTRA...` as arguments.
fn args(out: &Path, extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = ["collect", "--task", "debug", "--no-progress", "--data"].map(String::from).into();
    a.push(mini().display().to_string());
    a.push("--out".into());
    a.push(out.display().to_string());
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

fn nino(args: &[String]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nino")).args(args).output().expect("run the nino binary")
}

fn ok(out: Output) -> Output {
    assert!(out.status.success(), "nino failed: {}", String::from_utf8_lossy(&out.stderr));
    out
}

/// Every file of `dir` with its bytes (the lock file included: it must not change either).
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).unwrap())
        })
        .collect()
}

/// Loads every listed trajectory through the reader API (size and CRC checked), keyed by index.
fn load_all(dir: &Path) -> (Manifest, Vec<Trajectory>) {
    let m = Manifest::load(dir).unwrap();
    let t = m.trajectories.iter().map(|e| m.load_trajectory(dir, e).unwrap()).collect();
    (m, t)
}

/// The manifest entries without their wall times (which differ between runs).
fn entries(m: &Manifest) -> Vec<TrajectoryEntry> {
    m.trajectories.iter().cloned().map(|e| TrajectoryEntry { seconds: 0.0, ..e }).collect()
}

/// 2 archs (the reference `Net` family and an MLP) x 2 seeds, 30 steps, a state every 5; batch 32 keeps the
/// unoptimised test build's conv steps short.
const SMALL: [&str; 12] =
    ["--arch", "conv:4,6,6;mlp:16", "--seeds", "1-2", "--steps", "30", "--every", "5", "--lr", "0.01", "--batch", "32"];

#[test]
fn collection_holds_the_trainers_states_and_a_rerun_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (d32, d16) = (tmp.path().join("f32"), tmp.path().join("f16"));
    let mut a32 = args(&d32, &SMALL);
    a32.push("--f32".into());
    ok(nino(&a32));
    ok(nino(&args(&d16, &SMALL)));

    let (m, trajs) = load_all(&d32);
    assert_eq!(m.trajectories.len(), 4);
    let order: Vec<(&str, u64)> = m.trajectories.iter().map(|e| (e.arch.as_str(), e.seed)).collect();
    assert_eq!(order, [("conv:4,6,6", 1), ("conv:4,6,6", 2), ("mlp:16", 1), ("mlp:16", 2)]);
    let data = load_data(Some(Task::Debug), &mini()).unwrap();
    for (e, t) in m.trajectories.iter().zip(&trajs) {
        let arch = Arch::parse(&e.arch, InputShape::FASHION_MNIST, 10).unwrap();
        assert_eq!((t.n_states, t.params, e.n_states), (30 / 5 + 1, arch.param_count(), 7));
        assert_eq!(t.state(0), init_params(&arch, e.seed), "state 0 is the initial parameters, exactly");
        assert_ne!(t.state(6), t.state(0));
        for j in 0..t.n_states {
            assert_eq!(t.step(j), 5 * j as u64);
            assert!(t.train_loss(j).is_finite() && t.train_loss(j) > 0.0);
        }
        // The last state is where `nino train`'s loop (its own batch sampler and step loop) ends.
        let adam = AdamConfig { lr: 0.01, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0 };
        let mut engine = Engine::new(arch.clone(), init_params(&arch, e.seed), adam, 32).unwrap();
        let cfg = TrainConfig {
            max_steps: 30,
            eval_every: 30,
            target: None,
            fine_eval: None,
            batch: 32,
            seed: e.seed,
            progress: false,
        };
        train(&mut engine, &data.train, &data.test, &cfg, &mut NoHook, None).unwrap();
        assert_eq!(t.state(6), engine.params(), "{}: last state != the trainer's parameters", e.arch);
        assert!(e.test_acc > 0.0 && e.final_train_loss == t.train_loss(6));
    }

    // f16 shards hold the f32 states rounded to nearest, the same metrics, and take less room.
    let (m16, t16) = load_all(&d16);
    for ((a, b), (ea, eb)) in trajs.iter().zip(&t16).zip(m.trajectories.iter().zip(&m16.trajectories)) {
        let rounded: Vec<f32> = a.states.iter().map(|&v| half::f16::from_f32(v).to_f32()).collect();
        assert_eq!(rounded, b.states);
        assert_eq!(a.metrics, b.metrics);
        assert!(eb.bytes < ea.bytes);
    }

    // The same command again: nothing is trained, no file changes.
    let before = snapshot(&d16);
    let out = ok(nino(&args(&d16, &SMALL)));
    assert!(String::from_utf8_lossy(&out.stdout).contains("4 trajectories (0 new, 4 already there)"));
    assert_eq!(snapshot(&d16), before);
}

#[test]
fn a_killed_collection_resumes_to_the_uninterrupted_result() {
    let tmp = tempfile::tempdir().unwrap();
    let (killed, whole) = (tmp.path().join("killed"), tmp.path().join("whole"));
    // MLPs: the unoptimised test build trains them fast enough for 12 trajectories of 100 steps.
    let work = ["--arch", "mlp:8;mlp:16", "--seeds", "1-3", "--steps", "100", "--every", "4", "--lr", "0.006,0.003"];
    let total = 12;

    // The collector holds (waits forever) right after the manifest lists 5 trajectories and says so on
    // stderr: the kill lands there whatever the machine's speed.
    let mut child = Command::new(env!("CARGO_BIN_EXE_nino"))
        .args(args(&killed, &work))
        .env("NINO_TEST_HOLD_AFTER_TRAJECTORIES", "5")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_line(child.stderr.take().unwrap(), "holding after NINO_TEST_HOLD_AFTER_TRAJECTORIES=5");
    child.kill().unwrap();
    child.wait().unwrap();
    let at_kill = Manifest::load(&killed).unwrap().trajectories.len();
    assert_eq!(at_kill, 5, "the manifest the collector held after");

    let out = ok(nino(&args(&killed, &work)));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("{total} trajectories ({} new, {at_kill} already there)", total - at_kill)),
        "{stdout}"
    );
    ok(nino(&args(&whole, &work)));

    let (mk, tk) = load_all(&killed);
    let (mw, tw) = load_all(&whole);
    let indices: Vec<usize> = mk.trajectories.iter().map(|e| e.index).collect();
    assert_eq!(indices, (0..total).collect::<Vec<_>>(), "each trajectory listed once");
    assert_eq!(entries(&mk), entries(&mw), "same sizes and CRC-32s");
    for (a, b) in tk.iter().zip(&tw) {
        assert_eq!(a.states, b.states);
        assert_eq!(a.metrics, b.metrics);
    }
    let mut names: Vec<String> = snapshot(&killed).into_keys().filter(|n| !n.starts_with(".nino-collect")).collect();
    names.sort();
    let mut expected: Vec<String> = mw.trajectories.iter().map(|e| e.file.clone()).collect();
    expected.push(MANIFEST.to_string());
    expected.sort();
    assert_eq!(names, expected, "no temporary file or stray shard is left");
}

/// Asserts a failed run with one `error:` line on stderr containing `needle`.
fn one_line_error(out: &Output, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "expected failure: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line expected: {err}");
    assert!(lines[0].starts_with("error: ") && lines[0].contains(needle), "`{needle}` not in: {err}");
}

#[test]
fn other_settings_and_damaged_shards_are_refused_without_a_change() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("c");
    let base = ["--arch", "mlp:8", "--seeds", "1-2", "--steps", "20", "--every", "5"];
    ok(nino(&args(&dir, &base)));
    let before = snapshot(&dir);
    for (extra, needle) in [
        (
            &["--arch", "mlp:8", "--seeds", "1-3", "--steps", "20", "--every", "5"][..],
            "collected with --seeds 1-2, this command has --seeds 1-3",
        ),
        (
            &["--arch", "mlp:8", "--seeds", "1-2", "--steps", "20", "--every", "4"],
            "collected with --every 5, this command has --every 4",
        ),
        (&["--arch", "mlp:8", "--seeds", "1-2", "--steps", "20", "--every", "5", "--f32"], "state dtype (--f32) f16"),
        (
            &["--arch", "mlp:8", "--seeds", "1-2", "--steps", "20", "--every", "5", "--lr", "0.01"],
            "--lr 0.006, this command has --lr 0.01",
        ),
        (
            &["--arch", "mlp:8;mlp:16", "--seeds", "1-2", "--steps", "20", "--every", "5"],
            "--arch mlp:8, this command has --arch mlp:8;mlp:16",
        ),
        (
            &["--arch", "mlp:8", "--seeds", "1-2", "--steps", "20", "--every", "5", "--batch", "64"],
            "--batch 128, this command has --batch 64",
        ),
    ] {
        one_line_error(&nino(&args(&dir, extra)), needle);
        assert_eq!(snapshot(&dir), before, "{extra:?} changed the folder");
    }

    // A truncated shard is refused with what to do, and so is a missing one.
    let shard = dir.join("traj-00001.safetensors");
    let bytes = std::fs::read(&shard).unwrap();
    std::fs::write(&shard, &bytes[..bytes.len() - 1]).unwrap();
    one_line_error(&nino(&args(&dir, &base)), "the collection is damaged");
    let m = Manifest::load(&dir).unwrap();
    assert!(m.load_trajectory(&dir, &m.trajectories[1]).unwrap_err().to_string().contains("damaged"));
    // A flipped byte keeps the size; the reader's CRC-32 catches it.
    let mut flipped = bytes.clone();
    *flipped.last_mut().unwrap() ^= 1;
    std::fs::write(&shard, &flipped).unwrap();
    assert!(m.load_trajectory(&dir, &m.trajectories[1]).unwrap_err().to_string().contains("damaged"));
    std::fs::remove_file(&shard).unwrap();
    one_line_error(&nino(&args(&dir, &base)), "missing");
    assert_eq!(std::fs::read(dir.join(MANIFEST)).unwrap(), before[MANIFEST]);

    // A folder with other files and no manifest is not taken over.
    let other = tmp.path().join("other");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("notes.txt"), b"mine").unwrap();
    one_line_error(&nino(&args(&other, &base)), "no manifest.json");
    assert_eq!(snapshot(&other).len(), 1);

    // Bad flags fail before any data is read or any folder created.
    let fresh = tmp.path().join("fresh");
    one_line_error(&nino(&args(&fresh, &["--steps", "10", "--every", "4"])), "multiple of --every");
    one_line_error(&nino(&args(&fresh, &["--seeds", "3-1"])), "bad seed range");
    one_line_error(&nino(&args(&fresh, &["--seeds", "1,1"])), "a seed twice");
    assert!(!fresh.exists());
}

#[test]
fn garbage_manifests_and_lock_files_are_one_line_errors_that_change_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("c");
    let base = ["--arch", "mlp:8", "--seeds", "1", "--steps", "10", "--every", "5"];
    ok(nino(&args(&dir, &base)));
    let good = std::fs::read(dir.join(MANIFEST)).unwrap();

    // A manifest that is not one (garbage, cut short, valid JSON of another shape, another format): the
    // collector and the meta-trainer refuse it in one line, and nothing in the folder changes.
    let cut = &good[..good.len() / 2];
    let other_format = String::from_utf8(good.clone()).unwrap().replace("nino-collect/1", "nino-collect/0\\nx");
    for (bytes, needle) in [
        (&b"\x00\xffgarbage{"[..], "stream did not contain valid UTF-8"),
        (&b"garbage{"[..], "is not a nino collection manifest"),
        (cut, "is not a nino collection manifest"),
        (&b"{\"format\": 1}"[..], "is not a nino collection manifest"),
        (other_format.as_bytes(), "nino-collect/0\\nx"),
    ] {
        std::fs::write(dir.join(MANIFEST), bytes).unwrap();
        let before = snapshot(&dir);
        one_line_error(&nino(&args(&dir, &base)), needle);
        let meta = ["meta-train", "--data", dir.to_str().unwrap(), "--out"].map(String::from);
        let out = tmp.path().join("m.safetensors");
        let meta: Vec<String> = meta.into_iter().chain([out.display().to_string()]).collect();
        one_line_error(&nino(&meta), needle);
        assert!(!out.exists());
        assert_eq!(snapshot(&dir), before, "a refused manifest changed the folder");
    }
    std::fs::write(dir.join(MANIFEST), &good).unwrap();

    // A lock file left by a killed collector (the lock itself died with it), whatever it holds, is taken over.
    let lock = dir.join(".nino-collect.lock");
    std::fs::write(&lock, b"stale \x00\xff garbage").unwrap();
    let out = ok(nino(&args(&dir, &base)));
    assert!(String::from_utf8_lossy(&out.stdout).contains("0 new, 1 already there"), "{out:?}");
    // A lock another process holds, on a folder with work left (a fresh one): one line, nothing written.
    let busy = tmp.path().join("busy");
    std::fs::create_dir(&busy).unwrap();
    let held = std::fs::File::create(busy.join(".nino-collect.lock")).unwrap();
    held.try_lock().unwrap();
    let before = snapshot(&busy);
    one_line_error(&nino(&args(&busy, &base)), "another `nino collect` is writing");
    assert_eq!(snapshot(&busy), before, "a busy folder changed");
    drop(held);
    ok(nino(&args(&busy, &base)));
    // A lock path that is not a file: one line.
    std::fs::remove_file(&lock).unwrap();
    std::fs::create_dir(&lock).unwrap();
    one_line_error(&nino(&args(&dir, &base)), ".nino-collect.lock");
    assert_eq!(std::fs::read(dir.join(MANIFEST)).unwrap(), good);
}

#[test]
fn help_explains_itself() {
    let out = ok(nino(&["collect".into(), "--help".into()]));
    let s = String::from_utf8_lossy(&out.stdout);
    for needle in ["--out", "--arch", "--seeds", "--every", "--f32", "manifest.json", "Killed?", "Examples:"] {
        assert!(s.contains(needle), "`{needle}` missing from help:\n{s}");
    }
}
