#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

// The layers, bottom-up: each uses only the layers listed before it (checked by scripts/module-graph.py).

/// The `nino` command line: clap flags resolved into the settings above; the only user of `anyhow`.
pub mod cmd;
/// Experiments: arms over seeds, presets, tables against Adam, plots.
pub mod experiment;
/// Files: atomic writes, IDX and CIFAR data, safetensors tensors, NiNo weights and model files, the collection format, plots.
pub mod io;
/// Host compute: GEMM, vectorised SiLU and edge loops, the nowcast backend, spectral features.
pub mod kernels;
/// Meta-training: trajectory collection and the NiNo meta-trainer.
pub mod meta;
/// NiNo on the host: the nowcaster and the training-loop hook that applies it every period.
pub mod nowcast;
/// One training run: checked settings, checkpoints that resume bit for bit, the run itself.
pub mod run;
/// Adam training: the engine, the loop with its hooks, evaluation rows, metrics files and summaries.
pub mod training;

pub use experiment::seed_loop::{ExperimentPlan, run_experiment};
pub use io::data::{Splits, load_data};
pub use io::weights::WeightSet;
pub use nowcast::hook::NinoHook;
pub use nowcast::nowcaster::Nowcaster;
pub use run::runner::{RunOutcome, run_training};
pub use run::settings::{NinoSpec, RunSpec};
pub use training::engine::Engine;
