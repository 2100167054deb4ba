//! `nino spectrum`: the Laplacian spectrum of a network's neural graph, plotted, with the LPE count the
//! elbow rule picks.

use super::net_spec::NetSpecArgs;
use crate::io::plot::{LinePlot, Series, write_png};
use anyhow::bail;
use nino_core::NeuralGraph;
use nino_core::spectral::{ELBOW_WINDOW, lpe_elbow};
use std::path::PathBuf;

const AFTER_HELP: &str = "\
The spectrum is that of L = I - D^-1/2 A D^-1/2 on the undirected, unweighted graph without self-loops,
the graph whose eigenvectors are the LPE node features (docs/spec.md §2.8). The elbow rule
(nino_core::spectral::lpe_elbow) runs Kneedle on the smallest non-trivial eigenvalues (at most 32): with
both axes scaled to [0, 1], the elbow is the eigenvalue farthest above the chord, and the LPE count is the
number of eigenvectors up to it. NiNo++ chose 5 for its CIFAR-10 graph this way; the published NiNo uses 8.

Examples:
  nino spectrum --task fm16
  nino spectrum --arch mlp:64,32 --out mlp.png";

/// Arguments of `nino spectrum`.
#[derive(Debug, clap::Args)]
#[command(after_help = AFTER_HELP)]
pub struct SpectrumArgs {
    /// The network.
    #[command(flatten)]
    pub net: NetSpecArgs,
    /// PNG to write (atomically) [default: spectrum-TASK.png, or spectrum.png for --arch].
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Smallest eigenvalues to plot.
    #[arg(long, default_value_t = 40)]
    pub show: usize,
}

/// Runs `nino spectrum`.
pub fn run(args: &SpectrumArgs) -> anyhow::Result<()> {
    let (arch, name) = args.net.resolve()?;
    if args.show < 2 {
        bail!("--show must be at least 2");
    }
    let nodes = NeuralGraph::new(&arch).num_nodes();
    if nodes > 4000 {
        bail!("{name}: {nodes} nodes; the dense eigensolver is O(N^3) and stops at 4,000 nodes");
    }
    let values = crate::kernels::spectral::eigenvalues(&arch);
    let as_f32: Vec<f32> = values.iter().map(|&v| v as f32).collect();
    let k = lpe_elbow(&as_f32)?;
    let out = args.out.clone().unwrap_or_else(|| {
        PathBuf::from(if args.net.task.is_some() { format!("spectrum-{name}.png") } else { "spectrum.png".into() })
    });
    let shown = args.show.min(values.len());
    let plot = LinePlot {
        title: format!("{name}: Laplacian spectrum of the neural graph ({nodes} nodes)"),
        x_label: "eigenvalue index (0: the trivial one)".into(),
        y_label: "eigenvalue".into(),
        series: vec![Series {
            label: "eigenvalues, ascending".into(),
            main: values[..shown].iter().enumerate().map(|(i, &v)| (i as f64, v)).collect(),
            faint: vec![],
        }],
        target: None,
        marker: Some((k as f64, format!("elbow: LPE count {k}"))),
    };
    write_png(&out, &plot)?;
    // The trivial eigenvalue comes out of the solver as +-1e-16: print it as the 0 it is.
    let head: Vec<String> =
        values.iter().take(k + 3).map(|&v| format!("{:.4}", if v.abs() < 5e-5 { 0.0 } else { v })).collect();
    println!("{name}: {nodes} nodes; smallest eigenvalues {}", head.join(", "));
    println!(
        "elbow rule (Kneedle on the {} smallest non-trivial eigenvalues): LPE count {k}",
        (values.len().saturating_sub(1)).min(ELBOW_WINDOW)
    );
    println!("plot: {}", out.display());
    Ok(())
}
