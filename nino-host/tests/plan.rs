//! The memory plan (`nino_core::plan`, `nino plan`) against the buffers the host actually allocates.

use nino_core::Task;
use nino_core::plan::{NowcastPlan, TrainPlan, WeightStorage, weight_values};
use nino_core::rollback::{Patience, Rule};
use nino_host::io::weights::WeightSet;
use nino_host::nowcast::hook::{NinoHook, NinoHookConfig, PeriodChoice};
use nino_host::nowcast::nowcaster::Nowcaster;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn weights(name: &str) -> WeightSet<f32> {
    WeightSet::load(root().join("fixtures/weights").join(name)).unwrap()
}

#[test]
fn planned_weight_values_match_every_shipped_checkpoint() {
    for name in ["nino_no_posw.safetensors", "nino_mlp.safetensors", "nino_mlp_h32.safetensors"] {
        let w = weights(name);
        assert_eq!(weight_values(&w.config), w.num_values(), "{name}");
    }
}

#[test]
fn planned_buffers_match_what_the_nowcaster_and_hook_allocate() {
    for task in [Task::Debug, Task::Fm16, Task::Fm32] {
        let arch = task.arch();
        for (name, f16) in [("nino_no_posw.safetensors", true), ("nino_mlp.safetensors", false)] {
            let w = weights(name);
            let plan = NowcastPlan::new(&nino_core::NeuralGraph::new(&arch), &w.config);
            let nc = Nowcaster::new(w, &arch, None, f16).unwrap();
            let got = nc.buffers();
            assert_eq!(got.weights, plan.weights, "{name} on {task:?}");
            assert_eq!(got.folded, plan.folded_weights, "{name} on {task:?}");
            assert_eq!(got.node_features, plan.node_features, "{name} on {task:?}");
            let scratch = if plan.folded_weights > 0 { plan.folded_scratch } else { plan.nowcast_scratch() };
            assert_eq!(got.scratch, scratch, "{name} on {task:?}");
            let cfg = NinoHookConfig {
                period: PeriodChoice::REFERENCE,
                horizon: None,
                max_steps: 10_000,
                rollback: Some(Rule::default()),
                baseline: nino_host::nowcast::hook::Baseline::WindowLoss,
                retry: false,
                later: None,
                patience: Patience::default(),
                fault: None,
            };
            let deferred = NinoHookConfig { later: Some(nino_core::rollback::DEFAULT_LATER), ..cfg.clone() };
            let hook = NinoHook::new(nc, cfg, (vec![0.0; 784], vec![0])).unwrap();
            assert_eq!(hook.history_floats(), plan.history, "{name} on {task:?}");
            assert_eq!(hook.rollback_floats(), plan.rollback, "{name} on {task:?}");
            let nc = Nowcaster::new(weights(name), &arch, None, f16).unwrap();
            let hook = NinoHook::new(nc, deferred, (vec![0.0; 784], vec![0])).unwrap();
            assert_eq!(hook.rollback_floats(), plan.rollback_deferred, "{name} on {task:?}");
        }
    }
}

#[test]
fn fm16_totals_add_up() {
    let arch = Task::Fm16.arch();
    let cfg = weights("nino_no_posw.safetensors").config;
    let plan = NowcastPlan::new(&nino_core::NeuralGraph::new(&arch), &cfg);
    let floats = plan.history + plan.node_features + plan.activations + plan.scratch + plan.rollback;
    assert_eq!(plan.bytes(WeightStorage::F16), 2 * plan.weights + 4 * floats);
    assert_eq!(plan.bytes(WeightStorage::F32), 4 * plan.weights + 4 * floats);
    let t = TrainPlan::new(&arch, 128);
    assert_eq!(t.params, 14_378);
    assert_eq!(t.inputs, 128 * 784);
}

#[test]
fn nino_plan_prints_the_core_figures() {
    let w = root().join("fixtures/weights/nino_no_posw.safetensors");
    let out = Command::new(env!("CARGO_BIN_EXE_nino"))
        .args(["plan", "--task", "fm16", "--json", "--weights", w.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let plan =
        NowcastPlan::new(&nino_core::NeuralGraph::new(&Task::Fm16.arch()), &weights("nino_no_posw.safetensors").config);
    assert_eq!(v["nowcast_bytes"]["direct_f16"], plan.bytes(WeightStorage::F16));
    assert_eq!(v["nowcast_bytes"]["direct_f32"], plan.bytes(WeightStorage::F32));
    assert_eq!(v["nowcast_values"]["history"], 5 * 14_378);

    let bad = Command::new(env!("CARGO_BIN_EXE_nino")).args(["plan", "--arch", "conv:0"]).output().unwrap();
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("--arch `conv:0`") && err.lines().count() == 1, "{err}");
}
