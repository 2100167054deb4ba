//! The `nino` command-line tool.

use clap::error::ErrorKind;
use clap::{Parser, Subcommand};
use nino_host::cmd;

/// Neural-network nowcasting: train networks with Adam and let NiNo predict their parameters ahead.
#[derive(Debug, Parser)]
#[command(name = "nino", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Train a target network (a built-in task or any IDX dataset), with or without NiNo nowcasts.
    Train(cmd::train::TrainArgs),
    /// Predict future parameters from a history of states recorded by another training loop.
    Nowcast(cmd::nowcast::NowcastArgs),
    /// Compare training configurations (Adam, NiNo periods, rollback, WNN+) over seeds: table, JSON, PNG plots.
    Experiment(cmd::experiment::ExperimentArgs),
    /// Print the memory a nowcaster and a training loop need for a network (f16 and f32 weights).
    Plan(cmd::plan::PlanArgs),
    /// Plot the Laplacian spectrum of a network's neural graph and print the LPE count its elbow picks.
    Spectrum(cmd::spectrum::SpectrumArgs),
    /// Record Adam trajectories of many networks (archs x lrs x seeds) as a dataset for meta-training NiNo.
    Collect(cmd::collect::CollectArgs),
    /// Meta-train a NiNo (reference or NiNo++: GRU/LSTM head, centrality, LPE count) on collected trajectories.
    MetaTrain(cmd::meta_train::MetaTrainArgs),
    /// Score NiNo models (published or meta-trained) by masked L1 on the same fixed windows of a collection.
    MetaEval(cmd::meta_eval::MetaEvalArgs),
}

fn main() -> std::process::ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        // Help and version go to stdout with exit 0; usage errors become one line on stderr.
        Err(e) if !e.use_stderr() || e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => e.exit(),
        Err(e) => {
            let text = e.to_string();
            let head: Vec<&str> = text.lines().take_while(|l| !l.trim().is_empty()).map(str::trim).collect();
            eprintln!("{} (see --help)", head.join(" "));
            return std::process::ExitCode::from(2);
        }
    };
    let result = match &cli.command {
        Command::Train(a) => cmd::train::run(a),
        Command::Nowcast(a) => cmd::nowcast::run(a),
        Command::Experiment(a) => cmd::experiment::run(a),
        Command::Plan(a) => cmd::plan::run(a),
        Command::Spectrum(a) => cmd::spectrum::run(a),
        Command::Collect(a) => cmd::collect::run(a),
        Command::MetaTrain(a) => cmd::meta_train::run(a),
        Command::MetaEval(a) => cmd::meta_eval::run(a),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One line whatever a cause quotes from a file (a newline inside a bad name, say).
            eprintln!("error: {}", nino_host::io::one_line(format!("{e:#}")));
            std::process::ExitCode::FAILURE
        }
    }
}
