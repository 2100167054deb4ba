//! `nino nowcast`: one NiNo prediction for a parameter history recorded elsewhere.

/// Arguments of `nino nowcast`.
#[derive(Debug, clap::Args)]
pub struct NowcastArgs {}

/// Runs `nino nowcast`.
pub fn run(_args: &NowcastArgs) -> anyhow::Result<()> {
    anyhow::bail!("`nino nowcast` is not available in this build yet")
}
