//! The repository's helper scripts against the loaders that read what they write.

use nino_host::io::weights::WeightSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs `scripts/set-upd-scale.py` with `args` (CI installs python3; a missing one fails the test).
fn set_upd_scale(args: &[&Path]) -> Output {
    Command::new("python3")
        .arg(root().join("scripts/set-upd-scale.py"))
        .args(args)
        .output()
        .expect("python3 runs scripts/set-upd-scale.py")
}

/// The tensor bytes of a safetensors file: everything after its header.
fn tensor_bytes(path: &Path) -> Vec<u8> {
    let b = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(b[..8].try_into().unwrap()) as usize;
    b[8 + n..].to_vec()
}

#[test]
fn set_upd_scale_changes_the_scale_and_nothing_else() {
    let src = root().join("fixtures/weights/nino_no_posw.safetensors");
    let dir = tempfile::tempdir().unwrap();
    let dst = dir.path().join("scaled.safetensors");
    let out = set_upd_scale(&[&src, &dst, Path::new("1.5")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let (a, b) = (WeightSet::load(&src).unwrap(), WeightSet::load(&dst).unwrap());
    assert_eq!(a.config.upd_scale, 1.0);
    assert_eq!(b.config.upd_scale, 1.5);
    let mut same = b.config;
    same.upd_scale = a.config.upd_scale;
    assert_eq!(same, a.config, "options other than upd_scale changed");
    assert!(tensor_bytes(&src) == tensor_bytes(&dst), "the tensors changed");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "a temporary file was left behind");
}

#[test]
fn set_upd_scale_without_its_three_arguments_prints_usage() {
    let src = root().join("fixtures/weights/nino_no_posw.safetensors");
    let out = set_upd_scale(&[&src]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Usage: scripts/set-upd-scale.py SRC DST SCALE"));
}

/// Runs `scripts/confirm-model.sh` with a stand-in `nino` that records each call's `--seeds` and `--runs`,
/// and returns those calls in order.
fn confirm_model_calls(by_seed: bool, seeds: &str) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let (fake, calls, model) = (dir.path().join("nino"), dir.path().join("calls"), dir.path().join("m.safetensors"));
    let record = "#!/bin/sh\nwhile [ $# -gt 0 ]; do case $1 in --seeds) s=$2;; --runs) r=$2;; esac; shift; done\n";
    std::fs::write(&fake, format!("{record}echo \"$s $r\" >> {}\n", calls.display())).unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::write(&model, b"").unwrap();
    let out = Command::new("bash")
        .arg(root().join("scripts/confirm-model.sh"))
        .args([model.as_path(), &dir.path().join("out"), Path::new(seeds)])
        .env("NINO", &fake)
        .env("TASKS", "fm32")
        .env("BY_SEED", if by_seed { "1" } else { "0" })
        .output()
        .expect("bash runs scripts/confirm-model.sh");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::read_to_string(&calls).unwrap().lines().map(str::to_owned).collect()
}

#[test]
fn confirm_model_runs_the_baseline_before_the_candidate_over_all_seeds() {
    let base = "nino:1000,nino:dynamic+rollback";
    let both = format!("{base},nino:1000@pp,nino:dynamic+rollback@pp");
    assert_eq!(confirm_model_calls(false, "306-307"), [format!("306-307 {base}"), format!("306-307 {both}")]);
}

#[test]
fn confirm_model_by_seed_pairs_each_seed_then_rebuilds_the_table_over_all() {
    let base = "nino:1000,nino:dynamic+rollback";
    let both = format!("{base},nino:1000@pp,nino:dynamic+rollback@pp");
    let want: Vec<String> = ["306", "307", "309", "306-307,309"]
        .iter()
        .flat_map(|s| [format!("{s} {base}"), format!("{s} {both}")])
        .collect();
    assert_eq!(confirm_model_calls(true, "306-307,309"), want);
}

/// Runs `scripts/nino-pp.sh` on a meta-dataset of empty manifests with a stand-in `nino` that records
/// each call's arguments, and returns the calls.
fn nino_pp_calls(variants: Option<&str>) -> Vec<String> {
    nino_pp_calls_with(variants, &[])
}

/// [`nino_pp_calls`] with more variables of the script's environment set.
fn nino_pp_calls_with(variants: Option<&str>, env: &[(&str, &str)]) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let mut env = env.to_vec();
    if let Some(v) = variants {
        env.push(("VARIANTS", v));
    }
    run_nino_pp(dir.path(), &root().join("scripts/nino-pp.sh"), &env, "")
}

/// Writes at `fake` a stand-in `nino` that appends each call's arguments to `calls`, then runs the shell
/// line `also`.
fn recording_nino(fake: &Path, calls: &Path, also: &str) {
    std::fs::write(fake, format!("#!/bin/sh\necho \"$*\" >> {}\n{also}\n", calls.display())).unwrap();
    std::fs::set_permissions(fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
}

/// Runs `script` (a `nino-pp.sh`) in `dir` on a meta-dataset of one empty manifest, with a stand-in `nino`
/// that records each call's arguments and then runs the shell line `also`; asserts success and returns
/// the calls.
fn run_nino_pp(dir: &Path, script: &Path, env: &[(&str, &str)], also: &str) -> Vec<String> {
    let (fake, calls, meta) = (dir.join("nino"), dir.join("calls"), dir.join("meta"));
    std::fs::create_dir_all(meta.join("fm16-a")).unwrap();
    std::fs::write(meta.join("fm16-a/manifest.json"), b"{}").unwrap();
    recording_nino(&fake, &calls, also);
    let mut cmd = Command::new("bash");
    cmd.current_dir(root()).arg(script).args([&meta, &dir.join("out")]).env("NINO", &fake);
    cmd.envs(env.iter().copied());
    let out = cmd.output().expect("bash runs nino-pp.sh");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::read_to_string(&calls).unwrap().lines().map(str::to_owned).collect()
}

#[test]
fn nino_pp_runs_the_fourth_candidate_only_when_named_and_scores_its_figure() {
    let all = nino_pp_calls(None);
    let trained: Vec<&String> = all.iter().filter(|c| c.starts_with("meta-train")).collect();
    assert_eq!(trained.len(), 12, "{all:#?}");
    assert!(!trained.iter().any(|c| c.contains("pp4")), "a candidate ran in the ablation: {all:#?}");

    let pp4 = nino_pp_calls(Some("pp4a pp4b"));
    let trained: Vec<&String> = pp4.iter().filter(|c| c.starts_with("meta-train")).collect();
    assert_eq!(trained.len(), 2, "{pp4:#?}");
    for (c, lr) in trained.iter().zip(["--lr 1e-4", "--lr 3e-4"]) {
        for flag in [lr, "--centrality", "--fresh-lr 3e-3", "--window-starts drawn", "--init", "--spacing 100-300"] {
            assert!(c.contains(flag), "{flag} missing from {c}");
        }
    }
    let figure = pp4.iter().find(|c| c.contains("--horizons")).expect("the selection figure");
    assert!(figure.contains("--window-starts drawn --horizons 40,33,26,21,16"), "{figure}");
    assert!(figure.contains("nino_no_posw") && figure.contains("pp4a") && figure.contains("pp4b"), "{figure}");
}

#[test]
fn nino_pp_trains_a_row_per_seed_and_scores_them_all() {
    let calls = nino_pp_calls_with(Some("mlp-v0-lpe8 lstm-v0-lpe8-ctx10"), &[("SEEDS", "0 1 2")]);
    let trained: Vec<&String> = calls.iter().filter(|c| c.starts_with("meta-train")).collect();
    assert_eq!(trained.len(), 6, "{calls:#?}");
    for (c, (name, seed)) in trained.iter().zip([
        ("mlp-v0-lpe8.", 0),
        ("mlp-v0-lpe8-s1.", 1),
        ("mlp-v0-lpe8-s2.", 2),
        ("lstm-v0-lpe8-ctx10.", 0),
        ("lstm-v0-lpe8-ctx10-s1.", 1),
        ("lstm-v0-lpe8-ctx10-s2.", 2),
    ]) {
        assert!(c.contains(&format!("/{name}safetensors")) && c.contains(&format!("--seed {seed} ")), "{c}");
    }
    assert!(trained[0].contains("--spacing 100-300") && trained[3].contains("--spacing 60-150"), "{calls:#?}");
    assert!(!trained[3].contains("--spacing 100-300"), "{}", trained[3]);
    let evals: Vec<&String> = calls.iter().filter(|c| c.starts_with("meta-eval")).collect();
    assert_eq!(evals.len(), 3, "{calls:#?}");
    for s in ["mlp-v0-lpe8.", "mlp-v0-lpe8-s1.", "mlp-v0-lpe8-s2."] {
        assert!(evals[0].contains(s) && evals[1].contains(s), "{s} not scored: {calls:#?}");
    }
    for s in ["ctx10.", "ctx10-s1.", "ctx10-s2."] {
        assert!(evals[2].contains(s) && !evals[0].contains(s), "{s} scored on the wrong windows: {calls:#?}");
    }
}

#[test]
fn nino_pp_scratch_rows_start_fresh_at_the_scratch_rate_with_their_one_feature() {
    let calls = nino_pp_calls(Some("mlp-v0-lpe8-scratch mlp-v0s-lpe8-scratch mlp-v0-lpe4-scratch"));
    let trained: Vec<&String> = calls.iter().filter(|c| c.starts_with("meta-train")).collect();
    assert_eq!(trained.len(), 3, "{calls:#?}");
    for (c, (centrality, lpe4)) in trained.iter().zip([(false, false), (true, false), (false, true)]) {
        assert!(c.contains("--head mlp --lr 3e-3 ") && !c.contains("--init"), "{c}");
        assert_eq!(c.contains("--centrality"), centrality, "{c}");
        assert_eq!(c.contains("--lpe 4"), lpe4, "{c}");
    }
}

#[test]
fn nino_pp_starts_sets_the_window_rule_of_every_variant_without_its_own() {
    let calls = nino_pp_calls_with(Some("mlp-v0-lpe8 gru-v0-lpe8-fresh pp4b"), &[("STARTS", "drawn")]);
    let trained: Vec<&String> = calls.iter().filter(|c| c.starts_with("meta-train")).collect();
    assert_eq!(trained.len(), 3, "{calls:#?}");
    for c in &trained {
        assert_eq!(c.matches("--window-starts drawn").count(), 1, "{c}");
    }
    let plain = nino_pp_calls(Some("mlp-v0-lpe8"));
    assert!(!plain.iter().any(|c| c.starts_with("meta-train") && c.contains("--window-starts")), "{plain:#?}");
}

#[test]
fn nino_pp_trains_on_the_folders_named_and_validates_on_val() {
    let dir = tempfile::tempdir().unwrap();
    for d in ["long-a", "long-b", "val-long"] {
        std::fs::create_dir_all(dir.path().join("meta").join(d)).unwrap();
        std::fs::write(dir.path().join("meta").join(d).join("manifest.json"), b"{}").unwrap();
    }
    let env =
        [("FOLDERS", "long-a long-b missing"), ("VAL", "val-long"), ("SPACING", "200"), ("VARIANTS", "pp5a pp5b")];
    let calls = run_nino_pp(dir.path(), &root().join("scripts/nino-pp.sh"), &env, "");
    let meta = dir.path().join("meta");
    let data = format!("--data {0}/long-a,{0}/long-b --val {0}/val-long ", meta.display());
    let trained: Vec<&String> = calls.iter().filter(|c| c.starts_with("meta-train")).collect();
    assert_eq!(trained.len(), 2, "{calls:#?}");
    for (c, lr) in trained.iter().zip(["--lr 3e-4", "--lr 1e-4"]) {
        for flag in [&data[..], lr, "--window-starts drawn", "--init", "--spacing 200"] {
            assert!(c.contains(flag), "{flag} missing from {c}");
        }
        assert!(!c.contains("fm16-a") && !c.contains("--centrality"), "{c}");
    }
    let evals: Vec<&String> = calls.iter().filter(|c| c.starts_with("meta-eval")).collect();
    assert_eq!(evals.len(), 2, "{calls:#?}");
    for e in evals {
        assert!(e.contains(&format!("--data {}/val-long ", meta.display())) && e.contains("--spacing 200"), "{e}");
    }
    let all = nino_pp_calls(None);
    assert!(!all.iter().any(|c| c.contains("pp5")), "a candidate ran in the ablation: {all:#?}");
}

/// Runs `scripts/meta-dataset.sh` (one lane) with a stand-in `nino` and `env`; returns its exit status and
/// the `nino collect` calls, in order.
fn meta_dataset_calls(env: &[(&str, &str)]) -> (bool, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let (fake, calls) = (dir.path().join("nino"), dir.path().join("calls"));
    recording_nino(&fake, &calls, "");
    let out = Command::new("bash")
        .current_dir(root())
        .arg("scripts/meta-dataset.sh")
        .arg(dir.path().join("meta"))
        .env("NINO", &fake)
        .env("LANES", "1")
        .envs(env.iter().copied())
        .output()
        .expect("bash runs meta-dataset.sh");
    let calls = std::fs::read_to_string(&calls).unwrap_or_default().lines().map(str::to_owned).collect();
    (out.status.success(), calls)
}

#[test]
fn meta_dataset_collects_each_recipe_and_refuses_an_unknown_one() {
    let folder = |c: &String| c.split_whitespace().nth(2).unwrap().rsplit('/').next().unwrap().to_owned();
    let (ok, base) = meta_dataset_calls(&[]);
    assert!(ok && base.iter().all(|c| c.starts_with("collect --out") && c.contains("--steps 8000")), "{base:#?}");
    let names: Vec<String> = base.iter().map(folder).collect();
    assert_eq!(names.len(), 10, "{names:?}");
    assert_eq!((names[0].as_str(), names[9].as_str()), ("val", "mlp"), "validation first, the MLPs last: {names:?}");
    let (ok, long) = meta_dataset_calls(&[("RECIPE", "long")]);
    assert!(ok, "{long:#?}");
    assert_eq!(long.iter().map(folder).collect::<Vec<_>>(), ["val-long", "long-a", "long-b"]);
    for (c, seeds) in long.iter().zip(["--seeds 9005-9008", "--seeds 173-186", "--seeds 187-199"]) {
        assert!(c.contains("--steps 12000") && c.contains(seeds) && !c.contains("--steps 8000"), "{c}");
    }
    let (ok, scale) = meta_dataset_calls(&[("RECIPE", "scale")]);
    assert!(ok, "{scale:#?}");
    assert_eq!(scale.iter().map(folder).collect::<Vec<_>>(), ["val-long-2", "scale-a", "val-long-3", "scale-b"]);
    let seeds = ["--seeds 9009-9012", "--seeds 10001-10150", "--seeds 9013-9016", "--seeds 10151-10300"];
    for (c, seeds) in scale.iter().zip(seeds) {
        assert!(c.contains("--steps 12000") && c.contains(seeds) && c.contains("--task fm16"), "{c}");
    }
    let (ok, val32) = meta_dataset_calls(&[("RECIPE", "val32")]);
    assert!(ok, "{val32:#?}");
    assert_eq!(val32.iter().map(folder).collect::<Vec<_>>(), ["val-fm32-a", "val-fm32-b"]);
    for (c, seeds) in val32.iter().zip(["--seeds 9017", "--seeds 9018"]) {
        assert!(c.contains("--steps 12000") && c.contains(seeds) && c.contains("--task fm32"), "{c}");
        assert!(!c.contains("fm16"), "{c}");
    }
    let (ok, none) = meta_dataset_calls(&[("RECIPE", "longer")]);
    assert!(!ok && none.is_empty(), "{none:#?}");
}

/// The long-running scripts are read whole before they run: a copy of `scripts/nino-pp.sh` whose file is
/// rewritten (same inode, 600 bytes longer at the top) during its first `nino` call still runs every call
/// it would have run. Bash reads an unguarded script as it goes, and would resume at the old offset.
#[test]
fn nino_pp_survives_its_file_being_edited_while_it_runs() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("nino-pp.sh");
    std::fs::copy(root().join("scripts/nino-pp.sh"), &script).unwrap();
    let pad = format!("# {}\n", "x".repeat(600));
    let edit = format!(
        "if [ ! -f {m} ]; then touch {m}; {{ printf '{pad}'; cat {s}; }} > {t}; cat {t} > {s}; fi",
        m = dir.path().join("edited").display(),
        s = script.display(),
        t = dir.path().join("edited.sh").display(),
    );
    let calls = run_nino_pp(dir.path(), &script, &[("VARIANTS", "pp4a pp4b")], &edit);
    assert!(dir.path().join("edited").exists(), "the stand-in never edited the script");
    let kinds: Vec<&str> = calls.iter().map(|c| c.split(' ').next().unwrap_or("")).collect();
    assert_eq!(kinds, ["meta-train", "meta-train", "meta-eval", "meta-eval"], "{calls:#?}");
}

/// `scripts/ablation-table.py` groups `NAME-sS` files into rows and applies the ablation's rule: a row pays
/// only when all its seeds beat all the control's, hurts only when all lose, else is not resolved.
#[test]
fn ablation_table_applies_the_all_seeds_rule() {
    let dir = tempfile::tempdir().unwrap();
    let rows = [
        ("nino_no_posw", [0.586].as_slice()),
        ("ctl", &[0.580, 0.581, 0.582]),
        ("good", &[0.570, 0.579, 0.5799]),
        ("bad", &[0.583, 0.590, 0.600]),
        ("mixed", &[0.579, 0.583, 0.585]),
        // A seed whose figure is NaN (meta-eval writes it as null) must not be ranked.
        ("broken", &[0.570, f64::NAN, 0.571]),
    ];
    let num = |x: f64| if x.is_nan() { "null".to_owned() } else { x.to_string() };
    let (mut fig, mut pooled) = (vec![], vec![]);
    for (name, seeds) in rows {
        for (s, &v) in seeds.iter().enumerate() {
            let file = if s == 0 { format!("/x/{name}.safetensors") } else { format!("/x/{name}-s{s}.safetensors") };
            let (v, half) = (num(v), num(v / 2.0));
            fig.push(format!(r#"{{"horizons": {{"k": [40], "l1": {v}}}, "masked_l1": 0.3, "weights": "{file}"}}"#));
            pooled.push(format!(r#"{{"masked_l1": {half}, "weights": "{file}"}}"#));
        }
    }
    let json = |m: &[String]| format!(r#"{{"models": [{}]}}"#, m.join(","));
    std::fs::write(dir.path().join("val-horizons.json"), json(&fig)).unwrap();
    std::fs::write(dir.path().join("val.json"), json(&pooled)).unwrap();
    let table = |control: &str| {
        Command::new("python3")
            .arg(root().join("scripts/ablation-table.py"))
            .arg(dir.path())
            .arg(control)
            .output()
            .unwrap()
    };
    let out = table("ctl");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let verdict = |row: &str| {
        let line =
            text.lines().find(|l| l.starts_with(&format!("| {row} |"))).unwrap_or_else(|| panic!("{row}: {text}"));
        line.rsplit('|').nth(1).unwrap().trim().to_owned()
    };
    assert_eq!(verdict("good"), "pays", "{text}");
    assert_eq!(verdict("bad"), "hurts", "{text}");
    assert_eq!(verdict("mixed"), "not resolved", "{text}");
    assert_eq!(verdict("broken"), "not finite", "{text}");
    assert!(text.contains("| broken | 3 | 0.57000 / NaN / 0.57100 | NaN | NaN |"), "{text}");
    assert_eq!(verdict("ctl"), "control", "{text}");
    assert_eq!(verdict("nino_no_posw"), "reference", "{text}");
    assert!(text.contains("| good | 3 | 0.57000 / 0.57900 / 0.57990 | 0.57630 | 0.28815 |"), "{text}");

    let missing = table("none");
    assert_eq!(missing.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&missing.stderr).lines().count(), 1, "one-line error");
}

/// `scripts/data-scaling.sh` trains one model per N on the first N trajectories of the pool, in order
/// across folders (a subset collection lists exactly those and links their shards), validates every run on
/// the long validation folders, and scores the kept best models beside `nino_no_posw`.
#[test]
fn data_scaling_trains_on_nested_subsets_in_pool_order() {
    let dir = tempfile::tempdir().unwrap();
    let (fake, calls, meta, out) =
        (dir.path().join("nino"), dir.path().join("calls"), dir.path().join("meta"), dir.path().join("out"));
    // long-a holds trajectories 0-2 (listed out of order), long-b 0-1, the scale recipe's folders 0-2 and
    // 0-1 (read alternately); val-long a manifest.
    for (folder, n) in [("long-a", 3), ("long-b", 2), ("scale-a", 3), ("scale-b", 2), ("val-long", 1), ("fm16-a", 1)] {
        std::fs::create_dir_all(meta.join(folder)).unwrap();
        let trajs: Vec<String> =
            (0..n).rev().map(|i| format!("{{\"index\": {i}, \"file\": \"traj-{i:05}.safetensors\"}}")).collect();
        let manifest = format!("{{\"config\": {{\"seeds\": []}}, \"trajectories\": [{}]}}", trajs.join(","));
        std::fs::write(meta.join(folder).join("manifest.json"), manifest).unwrap();
    }
    // The stand-in keeps a "best model" for each run, as --best does.
    let keep_best = r#"if [ "$1" = meta-train ]; then touch "$(echo "$*" | sed 's/.*--out \([^ ]*\)\.safetensors.*/\1/').best.safetensors"; fi"#;
    recording_nino(&fake, &calls, keep_best);
    // One call of the script with the given environment (on top of the stand-in nino).
    let script = |env: &[(&str, &str)]| {
        Command::new("bash")
            .current_dir(root())
            .arg("scripts/data-scaling.sh")
            .args([&meta, &out])
            .env("NINO", &fake)
            .envs(env.iter().copied())
            .output()
            .expect("bash runs data-scaling.sh")
    };
    let run_with = |sizes: &str, precision: &str, extra: &str| {
        script(&[("SIZES", sizes), ("PRECISION", precision), ("EXTRA", extra)])
    };
    let run = |sizes: &str, precision: &str| run_with(sizes, precision, "");
    let r = run("2 4", "");
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let calls_file = calls;
    // Every call the stand-in recorded so far, in order.
    let read_calls =
        || -> Vec<String> { std::fs::read_to_string(&calls_file).unwrap().lines().map(str::to_owned).collect() };
    let calls = read_calls();
    assert_eq!(calls.len(), 4, "{calls:#?}");
    let sub = |n: usize, f: &str| out.join(format!("subsets/n{n}/{f}"));
    let listed = |n: usize, f: &str| -> Vec<u64> {
        let m: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(sub(n, f).join("manifest.json")).unwrap()).unwrap();
        m["trajectories"].as_array().unwrap().iter().map(|t| t["index"].as_u64().unwrap()).collect()
    };
    assert_eq!(listed(2, "long-a"), [0, 1]);
    assert!(!sub(2, "long-b").exists(), "two trajectories come from the first folder alone");
    assert_eq!((listed(4, "long-a"), listed(4, "long-b")), (vec![0, 1, 2], vec![0]));
    let link = std::fs::read_link(sub(4, "long-b").join("traj-00000.safetensors")).unwrap();
    assert_eq!(link, meta.join("long-b/traj-00000.safetensors"));
    let val = format!("--val {}", meta.join("val-long").display());
    assert!(calls[0].starts_with(&format!("meta-train --data {} ", sub(2, "long-a").display())), "{}", calls[0]);
    let four = format!("--data {},{} ", sub(4, "long-a").display(), sub(4, "long-b").display());
    assert!(calls[1].contains(&four), "{}", calls[1]);
    for c in &calls[..2] {
        assert!(
            c.contains(&val)
                && c.contains("--lr 3e-3")
                && !c.contains("--init")
                && c.contains("--steps 4000")
                && !c.contains("--precision"),
            "{c}"
        );
    }
    for c in &calls[2..] {
        assert!(c.starts_with("meta-eval") && c.contains("nino_no_posw") && c.contains("scratch-n4.best"), "{c}");
    }
    let kept = |n: &str| out.join(format!("scratch-n{n}.best.safetensors")).display().to_string();
    let scored = |c: &str| -> Vec<String> {
        c.split(" --weights ").skip(1).map(|w| w.split(' ').next().unwrap().to_owned()).collect()
    };
    assert!(calls[2].contains("--horizons 40,33,26,21,16"), "{}", calls[2]);
    // Past long-a and long-b the scale folders alternate: 8 = 3 + 2, then scale-a 0, scale-b 0, scale-a 1.
    let r = run("8", "bf16");
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert_eq!((listed(8, "scale-a"), listed(8, "scale-b")), (vec![0, 1], vec![0]));
    assert_eq!(listed(8, "long-b"), [0, 1]);
    let calls = read_calls();
    let eight = format!(
        "--data {},{},{},{} ",
        sub(8, "long-a").display(),
        sub(8, "long-b").display(),
        sub(8, "scale-a").display(),
        sub(8, "scale-b").display()
    );
    assert!(calls[4].contains(&eight) && calls[4].contains("--precision bf16"), "{}", calls[4]);
    // The scores cover every kept model, earlier calls' too, smallest N first.
    assert!(calls[5].starts_with("meta-eval --data") && scored(&calls[5])[0].ends_with("/nino_no_posw.safetensors"));
    assert_eq!(scored(&calls[5])[1..], [kept("2"), kept("4"), kept("8")], "{}", calls[5]);
    // EXTRA folders join every run whole, outside N, under their own model names.
    let r = run_with("2", "", "fm16-a");
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let calls = read_calls();
    let plus = format!("--data {},{} ", sub(2, "long-a").display(), meta.join("fm16-a").display());
    assert!(calls[7].contains(&plus) && calls[7].contains("scratch-n2+fm16-a.safetensors"), "{}", calls[7]);
    assert_eq!(scored(&calls[8])[1..], [kept("2"), kept("2+fm16-a"), kept("4"), kept("8")], "{}", calls[8]);
    let missing = run_with("2", "", "fm16-z");
    assert_eq!(missing.status.code(), Some(2));
    assert_eq!(String::from_utf8_lossy(&missing.stderr).lines().count(), 1, "one-line error");
    // FLAGS reach meta-train under the TAG's model names, and are refused without a TAG.
    let variant = |tag: &str| script(&[("SIZES", "2"), ("FLAGS", "--weight-decay 0.1"), ("TAG", tag)]);
    let r = variant("wd0.1");
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let calls = read_calls();
    assert!(
        calls[10].ends_with("--weight-decay 0.1") && calls[10].contains("scratch-n2-wd0.1.safetensors"),
        "{}",
        calls[10]
    );
    assert!(scored(&calls[11]).contains(&kept("2-wd0.1")), "{}", calls[11]);
    // SEED reaches meta-train and names the models.
    let seeded = script(&[("SIZES", "2"), ("SEED", "1")]);
    assert!(seeded.status.success(), "{}", String::from_utf8_lossy(&seeded.stderr));
    let calls = read_calls();
    assert!(calls[13].contains("--seed 1 ") && calls[13].contains("scratch-n2-s1.safetensors"), "{}", calls[13]);
    assert!(calls[..13].iter().filter(|c| c.starts_with("meta-train")).all(|c| c.contains("--seed 0 ")));
    // LR replaces the peak rate (one --lr: meta-train refuses two) and, like FLAGS, needs a TAG.
    let init =
        |tag: &str| script(&[("SIZES", "2"), ("LR", "1e-3"), ("FLAGS", "--init published.safetensors"), ("TAG", tag)]);
    let r = init("init1e-3");
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let calls = read_calls();
    let c = &calls[16];
    assert!(c.contains("scratch-n2-init1e-3.safetensors") && c.ends_with("--init published.safetensors"), "{c}");
    assert_eq!(c.matches("--lr ").count(), 1, "{c}");
    assert!(c.contains("--lr 1e-3 "), "{c}");
    let lr_alone = script(&[("SIZES", "2"), ("LR", "1e-3")]);
    assert_eq!(lr_alone.status.code(), Some(2), "LR without TAG");
    for bad in ["", "a b"] {
        for refused in [variant(bad), init(bad)] {
            assert_eq!(refused.status.code(), Some(2), "TAG {bad:?}");
            assert_eq!(String::from_utf8_lossy(&refused.stderr).lines().count(), 1, "one-line error");
        }
    }
    // More than the pool holds is refused.
    assert!(!run("11", "").status.success());
}
