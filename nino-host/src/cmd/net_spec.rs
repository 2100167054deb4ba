//! The `--task` / `--arch --input --classes` choice of a network, shared by commands that need only its
//! architecture (no data).

use super::nowcast::parse_input;
use super::train::TaskName;
use anyhow::{Context, bail};
use nino_core::Arch;

/// Which network a data-free command is about.
#[derive(Debug, clap::Args)]
pub struct NetSpecArgs {
    /// Built-in task.
    #[arg(long, value_enum, conflicts_with = "arch", required_unless_present = "arch")]
    pub task: Option<TaskName>,
    /// Target network instead of a task: `conv:W1,W2,...` or `mlp:W1,...`.
    #[arg(long, value_name = "SPEC")]
    pub arch: Option<String>,
    /// Input image shape for --arch, `CxHxW`.
    #[arg(long, value_name = "CxHxW", default_value = "1x28x28")]
    pub input: String,
    /// Classes for --arch.
    #[arg(long, default_value_t = 10)]
    pub classes: usize,
}

impl NetSpecArgs {
    /// The architecture and a name for it (the task's name or the spec).
    pub fn resolve(&self) -> anyhow::Result<(Arch, String)> {
        match (self.task, &self.arch) {
            (Some(t), _) => Ok((t.task().arch(), t.task().name().to_string())),
            (None, Some(spec)) => {
                let arch = Arch::parse(spec, parse_input(&self.input)?, self.classes)
                    .with_context(|| format!("--arch `{spec}`"))?;
                Ok((arch, spec.clone()))
            }
            (None, None) => bail!("give --task or --arch"),
        }
    }
}
