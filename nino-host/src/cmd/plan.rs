//! `nino plan`: the memory a nowcaster and a training loop need for one network, from the core's own
//! size functions, before anything is allocated.

use super::net_spec::NetSpecArgs;
use crate::io::weights::WeightSet;
use anyhow::bail;
use nino_core::plan::{NowcastPlan, TrainPlan, WeightStorage};
use nino_core::{Arch, NeuralGraph};
use std::fmt::Write;
use std::path::PathBuf;

const AFTER_HELP: &str = "\
Every figure comes from nino-core's size functions (nino_core::plan), the same ones its kernels check
their buffers against: a buffer of the planned size is never refused, and nothing else is allocated.

Nowcaster rows: weights (f16 or f32 storage; the math is f32 either way), the context history (c
parameter vectors), node features (LPE), activations (edge features, edge outputs, the model's hidden
states), scratch (the scaled history and one weight matrix widened to f32) and the rollback snapshot (one
parameter vector; with `--verdict deferred` the parameters and Adam's two moments instead, 3 vectors). The direct path is what an embedded caller runs (nowcast::nowcast); the folded path is
the host's faster one (weights folded once into f32, about half the work).

Examples:
  nino plan --task fm16
  nino plan --arch mlp:64,32 --weights fixtures/weights/nino_mlp.safetensors --json";

/// Arguments of `nino plan`.
#[derive(Debug, clap::Args)]
#[command(after_help = AFTER_HELP)]
pub struct PlanArgs {
    /// The network.
    #[command(flatten)]
    pub net: NetSpecArgs,
    /// NiNo weights whose model the plan is for.
    #[arg(long, value_name = "FILE", default_value = "fixtures/weights/nino_no_posw.safetensors")]
    pub weights: PathBuf,
    /// Batch size of the training rows.
    #[arg(long, default_value_t = 128)]
    pub batch: usize,
    /// Print the plan as one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Runs `nino plan`.
pub fn run(args: &PlanArgs) -> anyhow::Result<()> {
    let (arch, name) = args.net.resolve()?;
    if args.batch == 0 {
        bail!("--batch must be at least 1");
    }
    let weights = WeightSet::load(&args.weights)?;
    let graph = NeuralGraph::new(&arch);
    let nowcast = NowcastPlan::new(&graph, &weights.config);
    let train = TrainPlan::new(&arch, args.batch);
    let text = if args.json { to_json(&nowcast, &train) } else { table(&name, &arch, &graph, args, &nowcast, &train) };
    print!("{text}");
    Ok(())
}

fn to_json(n: &NowcastPlan, t: &TrainPlan) -> String {
    let v = serde_json::json!({
        "nowcast_values": {
            "weights": n.weights, "history": n.history, "node_features": n.node_features,
            "activations": n.activations, "scratch": n.scratch, "rollback": n.rollback,
            "rollback_deferred": n.rollback_deferred,
            "folded_weights": n.folded_weights, "folded_scratch": n.folded_scratch,
        },
        "nowcast_bytes": {
            "direct_f16": n.bytes(WeightStorage::F16), "direct_f32": n.bytes(WeightStorage::F32),
            "folded_f16": n.folded_bytes(WeightStorage::F16), "folded_f32": n.folded_bytes(WeightStorage::F32),
        },
        "train_values": {
            "params": t.params, "grads": t.grads, "adam": t.adam, "inputs": t.inputs, "labels": t.labels,
            "activations": t.activations, "scratch": t.scratch,
        },
        "train_bytes": t.bytes(),
    });
    format!("{v:#}\n")
}

/// `n` with thousands separators.
fn group(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn kib(bytes: usize) -> String {
    format!("{:.1} KiB", bytes as f64 / 1024.0)
}

fn table(name: &str, arch: &Arch, g: &NeuralGraph, a: &PlanArgs, n: &NowcastPlan, t: &TrainPlan) -> String {
    let mut s = String::new();
    let p = arch.param_count();
    let _ = writeln!(
        s,
        "Memory plan for {name}: {} parameters, {} nodes, {} edges; NiNo weights {}\n",
        group(p),
        group(g.num_nodes()),
        group(g.num_edges()),
        a.weights.display()
    );
    let _ = writeln!(s, "{:<34} {:>12} {:>14} {:>14}", "nowcaster", "values", "f16 weights", "f32 weights");
    let f32_row = |s: &mut String, label: &str, v: usize| {
        let _ = writeln!(s, "{label:<34} {:>12} {:>14} {:>14}", group(v), kib(4 * v), kib(4 * v));
    };
    let _ =
        writeln!(s, "{:<34} {:>12} {:>14} {:>14}", "weights", group(n.weights), kib(2 * n.weights), kib(4 * n.weights));
    f32_row(&mut s, "context history", n.history);
    f32_row(&mut s, "node features (LPE)", n.node_features);
    f32_row(&mut s, "activations", n.activations);
    f32_row(&mut s, "scratch", n.scratch);
    f32_row(&mut s, "rollback snapshot", n.rollback);
    f32_row(&mut s, "(deferred verdict: instead)", n.rollback_deferred);
    let _ = writeln!(
        s,
        "{:<34} {:>12} {:>14} {:>14}",
        "total, direct path",
        "",
        kib(n.bytes(WeightStorage::F16)),
        kib(n.bytes(WeightStorage::F32))
    );
    if n.folded_weights > 0 {
        f32_row(&mut s, "folded weights (host path, f32)", n.folded_weights);
        f32_row(&mut s, "folded scratch (host path)", n.folded_scratch);
        let _ = writeln!(
            s,
            "{:<34} {:>12} {:>14} {:>14}",
            "total, folded path",
            "",
            kib(n.folded_bytes(WeightStorage::F16)),
            kib(n.folded_bytes(WeightStorage::F32))
        );
    }
    let _ = writeln!(s, "\n{:<34} {:>12} {:>14}", format!("training (Adam, batch {})", a.batch), "values", "bytes");
    for (label, v) in [
        ("parameters", t.params),
        ("gradient", t.grads),
        ("Adam moments", t.adam),
        ("input batch", t.inputs),
        ("labels (u32)", t.labels),
        ("activations", t.activations),
        ("scratch", t.scratch),
    ] {
        let _ = writeln!(s, "{label:<34} {:>12} {:>14}", group(v), kib(4 * v));
    }
    let _ = writeln!(s, "{:<34} {:>12} {:>14}", "total", "", kib(t.bytes()));
    s
}
