//! Layer 8, the command line: one module per `nino` subcommand, and the only place that knows clap, flag
//! names and `anyhow`.
//!
//! Each subcommand checks its flags, resolves them into the library's settings (a [`crate::run::settings::RunSpec`],
//! an [`crate::experiment::seed_loop::ExperimentPlan`], ...), calls the library, and words the library's
//! typed errors for a user of the command line ([`data_error`], [`run_error`], [`experiment_error`]).

pub mod collect;
pub mod experiment;
pub mod gpu;
pub mod meta_eval;
pub mod meta_train;
pub mod net_spec;
pub mod nowcast;
pub mod plan;
pub mod spectrum;
pub mod train;

use crate::experiment::seed_loop::ExperimentError;
use crate::io::data::{BadArch, DataError};
use crate::run::runner::RunError;

/// A data error as the command line words it: where the directory came from `--data`, the flag.
pub fn data_error(e: DataError) -> anyhow::Error {
    match e {
        DataError::DefaultDirMissing { dir } => anyhow::anyhow!(
            "Fashion-MNIST not found in {}: install it with: apt-get install dataset-fashion-mnist, or pass --data DIR",
            dir.display()
        ),
        DataError::DirMissing { dir, needs } => {
            anyhow::anyhow!("data directory {} does not exist (pass --data DIR with {needs})", dir.display())
        }
        DataError::CifarNoDefault { format } => anyhow::anyhow!(
            "{} has no default directory: pass --data DIR, a folder holding {} (download {} from {} and extract it)",
            format.name(),
            format.folder(),
            format.archive(),
            crate::io::cifar::CIFAR_URL
        ),
        e => e.into(),
    }
}

/// A run error as the command line words it: a setting that came from a flag is named by the flag.
pub fn run_error(e: RunError) -> anyhow::Error {
    match e {
        RunError::Data(d) => data_error(d),
        RunError::Arch(BadArch { spec, height, width, error }) => {
            anyhow::anyhow!("bad --arch `{spec}` for {height}x{width} images: {error}")
        }
        RunError::RollbackRatio(r) => anyhow::anyhow!("--rollback RATIO must be at least 1, got {r}"),
        RunError::RollbackSlack(s) => {
            anyhow::anyhow!("--rollback-slack must be a finite number of at least 0, got {s}")
        }
        RunError::NoHeldout { dir, total } => anyhow::anyhow!(
            "--probe heldout needs training examples past the protocol's cut (so does the progress period, \
             which reads their loss), but {} has only {total} training examples, all used for training",
            dir.display()
        ),
        RunError::DeferredWithoutRollback => anyhow::anyhow!("--verdict deferred needs --rollback"),
        RunError::VerdictRatio(r) => anyhow::anyhow!("--verdict-ratio must be a positive number, got {r}"),
        RunError::NinoMismatch { path } => {
            anyhow::anyhow!("checkpoint {} and this command line disagree on --nino", path.display())
        }
        e => e.into(),
    }
}

/// An experiment error as the command line words it (see [`run_error`]).
pub fn experiment_error(e: ExperimentError) -> anyhow::Error {
    match e {
        ExperimentError::Data(d) => data_error(d),
        ExperimentError::Run { arm, seed, source } => run_error(*source).context(format!("run {arm} seed {seed}")),
        e => e.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn library_errors_come_out_with_the_flags_they_came_from() {
        let heldout = RunError::NoHeldout { dir: PathBuf::from("some/dir"), total: 11 };
        let e = format!("{:#}", run_error(heldout));
        assert!(e.contains("--probe heldout needs training examples past the protocol's cut"), "{e}");
        assert!(e.contains("so does the progress period") && e.contains("some/dir has only 11"), "{e}");
        assert!(format!("{:#}", run_error(RunError::RollbackSlack(f32::NAN))).contains("--rollback-slack"));
        assert!(format!("{:#}", run_error(RunError::RollbackRatio(0.5))).contains("--rollback RATIO"));
        assert!(format!("{:#}", run_error(RunError::DeferredWithoutRollback)).contains("--verdict deferred"));
        let missing = DataError::DirMissing { dir: PathBuf::from("/nonexistent/x"), needs: "the four IDX files" };
        let e = format!("{:#}", data_error(missing));
        assert!(e.contains("/nonexistent/x does not exist (pass --data DIR"), "{e}");
        let default = DataError::DefaultDirMissing { dir: PathBuf::from("/usr/share/datasets/fashion-mnist/") };
        let e = format!("{:#}", data_error(default));
        assert!(e.contains("apt-get install dataset-fashion-mnist") && e.contains("--data DIR"), "{e}");
        let cifar = DataError::CifarNoDefault { format: crate::io::cifar::Cifar::Hundred };
        let e = format!("{:#}", data_error(cifar));
        assert!(
            e.starts_with("CIFAR-100 has no default directory: pass --data DIR, a folder holding cifar-100-binary"),
            "{e}"
        );
        assert!(
            e.contains("cifar-100-binary.tar.gz") && e.contains("https://www.cs.toronto.edu/~kriz/cifar.html"),
            "{e}"
        );
        let run = ExperimentError::Run { arm: "adam".into(), seed: 3, source: Box::new(RunError::RollbackRatio(0.5)) };
        let e = format!("{:#}", experiment_error(run));
        assert!(e.starts_with("run adam seed 3: --rollback RATIO"), "{e}");
    }
}
