//! Named experiments: each stands for a run list, one per table of the project's results.

/// A named set of configurations, one per table of the project's issues.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preset {
    /// Adam vs Adam+NiNo with the default period, the reference's static 1000 (the main job).
    Main,
    /// NiNo with static period 1000 vs the dynamic period, and the fork's periods.
    StaticVsDynamic,
    /// Adam, NiNo static 1000 and NiNo dynamic: wall time to target with every NiNo cost counted.
    WallTime,
    /// NiNo with static periods 100, 500 (both guarded by the deferred verdict), 1000 vs the dynamic period.
    Periods,
    /// Adam, Adam+NiNo (static 1000) and Adam+WNN+ (static 1000).
    NinoVsWnn,
}

impl Preset {
    /// Every preset, in the order the help lists them.
    pub const ALL: [Preset; 5] =
        [Preset::Main, Preset::StaticVsDynamic, Preset::WallTime, Preset::Periods, Preset::NinoVsWnn];

    /// The run list the preset stands for.
    pub fn runs(self) -> &'static str {
        match self {
            Preset::Main => "adam,nino:1000",
            Preset::StaticVsDynamic => "nino:1000,nino:dynamic,nino:fork",
            Preset::WallTime => "adam,nino:1000,nino:dynamic",
            Preset::Periods => "nino:100+deferred,nino:500+deferred,nino:1000,nino:dynamic+rollback",
            Preset::NinoVsWnn => "adam,nino:1000,wnn:1000",
        }
    }

    /// The name used on the command line and in the default output directory.
    pub fn name(self) -> &'static str {
        match self {
            Preset::Main => "main",
            Preset::StaticVsDynamic => "static-vs-dynamic",
            Preset::WallTime => "wall-time",
            Preset::Periods => "periods",
            Preset::NinoVsWnn => "nino-vs-wnn",
        }
    }
}
