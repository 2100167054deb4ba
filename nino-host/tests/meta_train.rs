//! `nino meta-train` end to end on trajectories collected from the bundled subset: a tiny run lowers the
//! loss on a fixed sample of windows, its model drives `nino train --nino`, and a stopped run resumes to
//! the same parameters.

use nino_host::io::model_file::MetaModel;
use nino_host::io::weights::WeightSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn nino(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nino")).args(args).output().unwrap()
}

fn ok(args: &[&str]) -> String {
    let out = nino(args);
    assert!(out.status.success(), "nino {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// Two trajectories of the debug net, 240 steps, a state every 4: collected once per test binary.
fn collection() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap().keep().join("traj");
        let mini = root().join("fixtures/fashion-mnist-mini");
        ok(&[
            "collect",
            "--out",
            dir.to_str().unwrap(),
            "--task",
            "debug",
            "--data",
            mini.to_str().unwrap(),
            "--seeds",
            "1-2",
            "--steps",
            "240",
            "--every",
            "4",
            "--no-progress",
        ]);
        dir
    })
}

/// A small NiNo++ (LSTM head, centrality, 4 LPE columns, H = 16, 8 horizons of 16 steps).
fn meta_args<'a>(out: &'a str, data: &'a str, steps: &'a str) -> Vec<&'a str> {
    vec![
        "meta-train",
        "--data",
        data,
        "--out",
        out,
        "--head",
        "lstm",
        "--centrality",
        "--lpe",
        "4",
        "--hid",
        "16",
        "--ctx",
        "3",
        "--hor",
        "8",
        "--spacing",
        "16",
        "--steps",
        steps,
        "--checkpoint-every",
        "5",
        "--no-progress",
    ]
}

fn params(path: &Path) -> Vec<f32> {
    MetaModel::from_weights(&WeightSet::load(path).unwrap()).unwrap().params
}

#[test]
fn a_tiny_run_lowers_the_loss_and_its_model_nowcasts() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m.safetensors");
    let data = collection().to_str().unwrap().to_string();
    let text = ok(&meta_args(out.to_str().unwrap(), &data, "40"));
    // "loss on a fixed sample of windows: B before this session, A after; ..."
    let num = |tag: &str| -> f64 {
        let i = text.find(tag).unwrap_or_else(|| panic!("{text}"));
        text[..i].split_whitespace().last().unwrap().trim_end_matches(',').parse().unwrap()
    };
    let (before, after) = (num(" before"), num(" after"));
    assert!(after < 0.97 * before, "40 updates must lower the loss by 3%: {before} -> {after}");
    let csv = std::fs::read_to_string(dir.path().join("m.loss.csv")).unwrap();
    assert_eq!(csv.lines().count(), 41, "a header and one row per update");
    assert!(dir.path().join("m.loss.png").exists());
    assert!(!dir.path().join("m.loss.val.png").exists(), "no validation, no validation plot");

    // The model is a NiNo++ file the trainer loads and nowcasts with.
    let w = WeightSet::load(&out).unwrap();
    assert!(w.is_meta() && w.config.centrality && w.config.lpe == 4);
    let summary = dir.path().join("s.json");
    let mini = root().join("fixtures/fashion-mnist-mini");
    ok(&[
        "train",
        "--task",
        "debug",
        "--data",
        mini.to_str().unwrap(),
        "--nino",
        out.to_str().unwrap(),
        "--period",
        "48",
        "--steps",
        "150",
        "--summary-json",
        summary.to_str().unwrap(),
        "--no-progress",
    ]);
    let s: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    assert!(s["nowcasts"].as_u64().unwrap() >= 3, "{s}");
}

#[test]
fn a_stopped_run_resumes_to_the_same_parameters() {
    let dir = tempfile::tempdir().unwrap();
    let data = collection().to_str().unwrap().to_string();
    let whole = dir.path().join("whole.safetensors");
    ok(&meta_args(whole.to_str().unwrap(), &data, "12"));

    let part = dir.path().join("part.safetensors");
    let mut args = meta_args(part.to_str().unwrap(), &data, "12");
    args.extend(["--stop-after", "7"]);
    let stopped = nino(&args);
    assert!(!stopped.status.success() && !part.exists());
    let mut args = meta_args(part.to_str().unwrap(), &data, "12");
    args.push("--resume");
    ok(&args);
    assert_eq!(params(&part), params(&whole));

    // Other settings than the checkpoint's: one line, nothing written.
    let ckpt = dir.path().join("part.ckpt.safetensors");
    let before = std::fs::read(&ckpt).unwrap();
    let mut args = meta_args(part.to_str().unwrap(), &data, "12");
    args.extend(["--resume", "--lr", "0.01"]);
    let bad = nino(&args);
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success() && err.contains("--lr") && err.lines().count() == 1, "{err}");
    assert_eq!(std::fs::read(&ckpt).unwrap(), before);
    let mut args = meta_args(part.to_str().unwrap(), &data, "12");
    args.extend(["--resume", "--precision", "bf16"]);
    let bad = nino(&args);
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success() && err.contains("--precision is \"f32\"") && err.lines().count() == 1, "{err}");

    // Mixed precision trains too, to other parameters than f32's (its products round their operands), and
    // resumes to its own.
    let mixed = dir.path().join("mixed.safetensors");
    let mut args = meta_args(mixed.to_str().unwrap(), &data, "12");
    args.extend(["--precision", "bf16", "--stop-after", "7"]);
    assert!(!nino(&args).status.success());
    let mut args = meta_args(mixed.to_str().unwrap(), &data, "12");
    args.extend(["--precision", "bf16", "--resume"]);
    ok(&args);
    let (m, w) = (params(&mixed), params(&whole));
    assert!(m.iter().all(|x| x.is_finite()) && m != w);
    let rel = m.iter().zip(&w).map(|(a, b)| (a - b).abs()).sum::<f32>() / w.iter().map(|b| b.abs()).sum::<f32>();
    assert!(rel < 0.05, "bf16 training drifted {rel} from f32's in 12 updates");

    // A damaged checkpoint (cut short, garbage, NaN in a moment): one line, the checkpoint kept, no model
    // written.
    let model = dir.path().join("damaged.safetensors");
    let damaged = dir.path().join("damaged.ckpt.safetensors");
    let mut nan = before.clone();
    // adam.m is the first tensor's data (tensors are laid out in name order); its first value becomes NaN.
    let (_, header) = safetensors::SafeTensors::read_metadata(&before).unwrap();
    let start = 8 + u64::from_le_bytes(before[..8].try_into().unwrap()) as usize;
    let offsets = header.tensors()["adam.m"].data_offsets;
    nan[start + offsets.0..start + offsets.0 + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    for (bytes, needle) in [
        (&before[..before.len() / 3], "not a checkpoint (incomplete metadata"),
        (&b"garbage, not a checkpoint"[..], "not a checkpoint"),
        (&nan[..], "checkpoint `adam.m` holds NaN or infinite values"),
    ] {
        std::fs::write(&damaged, bytes).unwrap();
        let mut args = meta_args(model.to_str().unwrap(), &data, "12");
        args.push("--resume");
        let r = nino(&args);
        let err = String::from_utf8_lossy(&r.stderr);
        assert!(!r.status.success() && err.contains(needle) && err.lines().count() == 1, "{needle}: {err}");
        assert_eq!(std::fs::read(&damaged).unwrap(), bytes, "the refused checkpoint changed");
        assert!(!model.exists());
    }
}

#[test]
fn bad_setups_are_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m.safetensors");
    let o = out.to_str().unwrap();
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    for args in [
        vec!["meta-train", "--data", empty.to_str().unwrap(), "--out", o],
        vec!["meta-train", "--data", collection().to_str().unwrap(), "--out", o, "--head", "transformer"],
        vec!["meta-train", "--data", collection().to_str().unwrap(), "--out", o, "--spacing", "400"],
    ] {
        let r = nino(&args);
        let err = String::from_utf8_lossy(&r.stderr);
        assert!(!r.status.success() && err.lines().count() == 1, "{args:?}: {err}");
    }
    // A fresh rate needs --init (which says what is fresh) and must be a positive number.
    let data = collection().to_str().unwrap();
    for (rate, init, says) in
        [("1e-3", None, "--init"), ("-1e-3", Some(o), "--fresh-lr"), ("NaN", Some(o), "--fresh-lr")]
    {
        let rate = format!("--fresh-lr={rate}");
        let mut args = vec!["meta-train", "--data", data, "--out", o, &rate];
        args.extend(init.map(|i| ["--init", i]).into_iter().flatten());
        let r = nino(&args);
        let err = String::from_utf8_lossy(&r.stderr);
        assert!(!r.status.success() && err.lines().count() == 1 && err.contains(says), "{args:?}: {err}");
    }
}

/// The same two trajectories in a second folder (a copy), for multi-folder and validation runs.
fn second_collection() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap().keep().join("traj2");
        std::fs::create_dir_all(&dir).unwrap();
        for f in std::fs::read_dir(collection()).unwrap() {
            let f = f.unwrap().path();
            if f.extension().is_some_and(|e| e == "json" || e == "safetensors") {
                std::fs::copy(&f, dir.join(f.file_name().unwrap())).unwrap();
            }
        }
        dir
    })
}

#[test]
fn validation_spacing_ranges_folders_and_meta_eval_agree() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("v.safetensors");
    let (data, val) = (collection().to_str().unwrap(), second_collection().to_str().unwrap());
    let two = format!("{data},{val}");
    let mut args = meta_args(out.to_str().unwrap(), &two, "6");
    let at = args.iter().position(|a| *a == "--spacing").unwrap() + 1;
    args[at] = "8-16"; // --spacing: a range of multiples of the collection's 4 steps
    args.extend(["--val", val, "--val-every", "3", "--val-batches", "2"]);
    // A validation folder that is also a training folder is refused before anything runs.
    let r = nino(&args);
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(!r.status.success() && err.contains("validation") && err.lines().count() == 1, "{err}");
    assert!(!out.exists());
    let pos = args.iter().position(|a| *a == two.as_str()).unwrap();
    args[pos] = data;
    let r = nino(&args);
    let (text, log) = (String::from_utf8_lossy(&r.stdout), String::from_utf8_lossy(&r.stderr));
    assert!(r.status.success() && text.contains("validation masked L1"), "{text}{log}");
    // Without a progress bar (--no-progress) each measurement still reaches the log.
    assert!(log.contains("update 3: validation masked L1") && log.contains("update 6: "), "{log}");
    // The loss curve has the validation column at updates 3 and 6, empty elsewhere.
    let csv = std::fs::read_to_string(dir.path().join("v.loss.csv")).unwrap();
    let val_col: Vec<&str> = csv.lines().skip(1).map(|l| l.rsplit(',').next().unwrap()).collect();
    assert_eq!(val_col.iter().filter(|v| !v.is_empty()).count(), 2, "{csv}");
    assert!(val_col[2].parse::<f64>().unwrap().is_finite() && val_col[5].parse::<f64>().unwrap() > 0.0);
    assert!(dir.path().join("v.loss.png").exists() && dir.path().join("v.loss.val.png").exists());
    // `nino meta-eval` scores on the validation windows: the final figure equals the curve's last one, and
    // the kept best model's equals the curve's lowest.
    let eval = |w: &Path| -> f64 {
        let e =
            ok(&["meta-eval", "--data", val, "--weights", w.to_str().unwrap(), "--batches", "2", "--spacing", "8-16"]);
        e.split("masked L1 ").nth(1).unwrap().split_whitespace().next().unwrap().parse().unwrap()
    };
    let l = eval(&out);
    let (at3, last): (f64, f64) = (val_col[2].parse().unwrap(), val_col[5].parse().unwrap());
    // meta-eval prints five decimals: equal up to that rounding.
    assert!((l - last).abs() <= 5.1e-6, "meta-eval {l} vs curve {last}");
    assert!((at3 - last).abs() > 1e-5, "the two measurements must differ for the best one to be told apart");
    let (best_step, lowest) = if at3 < last { (3, at3) } else { (6, last) };
    let best = dir.path().join("v.best.safetensors");
    let b = eval(&best);
    assert!((b - lowest).abs() <= 5.1e-6, "best model {b} vs the curve's lowest {lowest}");
    assert!(text.contains(&format!("at update {best_step}: ")), "{text}");
    let bytes = std::fs::read(&best).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let meta = header["__metadata__"]["meta_train"].as_str().unwrap();
    assert!(meta.contains(&format!("\"steps\": {best_step},")), "{meta}");
    // --per-horizon: the JSON's horizons pool back to the same figure; later windows (--window-starts drawn)
    // are other windows.
    let json = dir.path().join("e.json");
    let (w, j) = (out.to_str().unwrap(), json.to_str().unwrap());
    let common = ["meta-eval", "--data", val, "--weights", w, "--batches", "2", "--spacing", "8-16", "--json", j];
    let e = ok(&[&common[..], &["--per-horizon"]].concat());
    assert!(e.contains("masked L1 by horizon k\n| k | 1 (v) | terms |\n| 1 | "), "{e}");
    let doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let m = &doc["models"][0];
    let (l1, count) = (m["by_horizon"]["l1"].as_array().unwrap(), m["by_horizon"]["count"].as_array().unwrap());
    let (mut sum, mut n) = (0.0, 0);
    for (v, c) in l1.iter().zip(count) {
        let c = c.as_u64().unwrap();
        sum += v.as_f64().unwrap_or(0.0) * c as f64;
        n += c;
    }
    let pooled = m["masked_l1"].as_f64().unwrap();
    assert!(n > 0 && (sum / n as f64 - pooled).abs() <= 1e-6 * pooled, "{} vs {pooled}", sum / n as f64);
    let e = ok(&[&common[..], &["--horizons", "2,1"]].concat());
    let at: f64 = e.split("at horizons [2, 1]: ").nth(1).unwrap().trim().parse().unwrap();
    let want = (l1[0].as_f64().unwrap() + l1[1].as_f64().unwrap()) / 2.0;
    assert!((at - want).abs() <= 5.1e-6, "{at} vs {want}");
    let r = nino(&[&common[..], &["--horizons", "41"]].concat());
    assert!(!r.status.success() && String::from_utf8_lossy(&r.stderr).lines().count() == 1);
    ok(&[&common[..], &["--window-starts", "drawn"]].concat());
    let drawn: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(drawn["window_starts"], "drawn");
    assert_ne!(drawn["models"][0]["masked_l1"], m["masked_l1"], "the same windows");
    // A bad spacing is one line.
    for bad in ["0", "16-8", "a-b"] {
        let r = nino(&["meta-eval", "--data", val, "--weights", out.to_str().unwrap(), "--spacing", bad]);
        assert!(!r.status.success() && String::from_utf8_lossy(&r.stderr).lines().count() == 1);
    }
}
