//! `nino train`: train a target network with Adam, optionally with NiNo nowcasts.

/// Arguments of `nino train`.
#[derive(Debug, clap::Args)]
pub struct TrainArgs {}

/// Runs `nino train`.
pub fn run(_args: &TrainArgs) -> anyhow::Result<()> {
    anyhow::bail!("`nino train` is not available in this build yet")
}
