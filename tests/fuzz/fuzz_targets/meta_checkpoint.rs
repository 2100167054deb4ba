//! `nino meta-train --resume`'s reader: `MetaTrainer::from_checkpoint`. The model (`model_args`) and the
//! settings (`state`) it must match are taken from the bytes themselves where they parse, so the reader
//! gets past its comparisons to the tensors and counters. A checkpoint read back holds the model's
//! parameter count of finite values in each tensor; a refusal is one line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nino_core::nowcast::Config;
use nino_core::nowcast::meta::Layout;
use nino_host::meta::train::{MetaTrainConfig, MetaTrainer, Precision, WindowStarts};
use safetensors::SafeTensors;
use serde_json::Value;

/// The smallest model (what the seed holds) when the bytes name none that is small.
fn tiny() -> Config {
    Config { hid: 4, ctx: 2, lpe: 2, seq_len: 2, wte_pos_enc: false, ..Config::default() }
}

fuzz_target!(|data: &[u8]| {
    let meta = SafeTensors::read_metadata(data).ok().and_then(|(_, h)| h.metadata().clone()).unwrap_or_default();
    let cfg = meta
        .get("model_args")
        .and_then(|j| Config::from_json(j).ok())
        // Bounded, so one input cannot ask for gigabytes of parameters.
        .filter(|c| Layout::new(c).is_ok_and(|l| l.len <= 1 << 20))
        .unwrap_or_else(tiny);
    let state: Value = meta.get("state").and_then(|s| serde_json::from_str(s).ok()).unwrap_or_default();
    let u = |k: &str, d: u64| state.get(k).and_then(Value::as_u64).unwrap_or(d);
    let f = |k: &str, d: f32| state.get(k).and_then(Value::as_f64).map_or(d, |v| v as f32);
    let d = MetaTrainConfig::default();
    let mc = MetaTrainConfig {
        steps: u("steps", d.steps),
        batch: u("batch", d.batch as u64) as usize,
        windows: u("windows", d.windows as u64) as usize,
        lr: f("lr", d.lr),
        weight_decay: f("weight_decay", d.weight_decay),
        clip: f("clip", d.clip),
        spacing: u("spacing", d.spacing),
        spacing_max: u("spacing_max", d.spacing_max),
        seed: u("seed", d.seed),
        starts: match state.get("starts").and_then(Value::as_str) {
            Some("drawn") => WindowStarts::Drawn,
            _ => WindowStarts::Widest,
        },
        fresh_lr: state.get("fresh_lr").and_then(Value::as_f64).map(|v| v as f32),
        fresh: state.get("fresh").and_then(|v| serde_json::from_value(v.clone()).ok()).unwrap_or_default(),
        precision: match state.get("precision").and_then(Value::as_str) {
            Some("bf16") => Precision::Bf16,
            _ => Precision::F32,
        },
    };
    let dir = state.get("data").and_then(Value::as_str).unwrap_or("d");
    match MetaTrainer::from_checkpoint(data, &cfg, &mc, dir) {
        Ok(t) => {
            let n = Layout::new(&cfg).expect("checked above").len;
            assert!(t.model.params.len() == n && t.m.len() == n && t.v.len() == n, "tensors of another size");
            let finite = |v: &[f32]| v.iter().all(|x| x.is_finite());
            assert!(finite(&t.model.params) && finite(&t.m) && finite(&t.v), "a non-finite state was read");
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(!msg.contains('\n'), "a refusal of more than one line: {msg:?}");
        }
    }
});
