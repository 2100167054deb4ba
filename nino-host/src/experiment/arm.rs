//! The run grammar of an experiment: an arm is `adam`, `nino:PERIOD` or `wnn:PERIOD`, optionally followed
//! by `+rollback`, `+rollback:RATIO` and `+deferred`, and by `@MODEL` for NiNo weights other than the
//! experiment's default (named with `--model MODEL=FILE`); a run list is a comma list of arms.

use crate::nowcast::hook::PeriodChoice;
use crate::run::settings::VerdictTiming;
use nino_core::period::Period;
use serde::Serialize;
use std::fmt::Write as _;

/// Rollback ratio of a bare `+rollback` (the `nino train --rollback` default).
pub const DEFAULT_ROLLBACK: f32 = nino_core::rollback::DEFAULT_MAX_RATIO;

/// Why a run list does not parse; every message is one line.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ArmError {
    /// One arm is malformed.
    #[error("bad run `{item}`: {why}")]
    Bad {
        /// The arm as written.
        item: String,
        /// What is wrong.
        why: String,
    },
    /// The list holds no arm.
    #[error("the run list is empty")]
    Empty,
    /// The list holds an arm twice.
    #[error("the run list names `{0}` twice")]
    Twice(String),
}

/// Which nowcaster a configuration uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Plain Adam.
    Adam,
    /// Adam with NiNo nowcasts (`--nino` weights).
    Nino,
    /// Adam with WNN+ nowcasts (`--wnn` weights).
    Wnn,
}

/// One arm of an experiment (a configuration every seed runs): `adam`, `nino:PERIOD` or `wnn:PERIOD`,
/// optionally `+rollback[:R]` and `+deferred`.
#[derive(Clone, Debug, PartialEq)]
pub struct Arm {
    /// The nowcaster.
    pub method: Method,
    /// Nowcast period (`None` for Adam).
    pub period: Option<PeriodChoice>,
    /// Rollback ratio, if rollback is on.
    pub rollback: Option<f32>,
    /// This run's rollback also takes the deferred verdict, whatever `--verdict` says: the guard that
    /// keeps short static periods from wrecking training.
    pub deferred: bool,
    /// Named weights instead of the experiment's default (`@MODEL`), so two models run side by side.
    pub model: Option<String>,
}

impl Arm {
    fn period_name(&self) -> String {
        match &self.period {
            Some(p) if *p == PeriodChoice::DYNAMIC => "dynamic".into(),
            Some(p) if *p == PeriodChoice::PROGRESS => "progress".into(),
            Some(p) => p.to_string(),
            None => String::new(),
        }
    }

    /// The canonical spelling in a run list (`nino:dynamic+rollback`, `nino:100+deferred`).
    pub fn name(&self) -> String {
        let mut s = match self.method {
            Method::Adam => "adam".to_string(),
            Method::Nino => format!("nino:{}", self.period_name()),
            Method::Wnn => format!("wnn:{}", self.period_name()),
        };
        match self.rollback {
            Some(r) if r == DEFAULT_ROLLBACK && self.deferred => {}
            Some(r) if r == DEFAULT_ROLLBACK => s.push_str("+rollback"),
            Some(r) => {
                let _ = write!(s, "+rollback:{r}");
            }
            None => {}
        }
        if self.deferred {
            s.push_str("+deferred");
        }
        if let Some(m) = &self.model {
            let _ = write!(s, "@{m}");
        }
        s
    }

    /// How this run's rollback judges a nowcast, given the experiment's verdict for `+rollback` runs.
    pub fn verdict(&self, default: VerdictTiming) -> VerdictTiming {
        match self.rollback {
            Some(_) if self.deferred => VerdictTiming::Deferred,
            Some(_) => default,
            None => VerdictTiming::Immediate,
        }
    }

    /// A name safe in file names (`nino-dynamic-rollback`).
    pub fn file_stem(&self) -> String {
        self.name().chars().map(|c| if c.is_ascii_alphanumeric() || c == '.' { c } else { '-' }).collect()
    }

    /// The label in tables and legends (`Adam+NiNo (dynamic, rollback)`).
    pub fn label(&self) -> String {
        let head = match self.method {
            Method::Adam => return "Adam".into(),
            Method::Nino => "Adam+NiNo",
            Method::Wnn => "Adam+WNN+",
        };
        let period = match &self.period {
            Some(PeriodChoice(Period::Static(p))) => format!("static {p}"),
            _ => self.period_name(),
        };
        let deferred = if self.deferred { ", deferred verdict" } else { "" };
        let model = self.model.as_ref().map_or(String::new(), |m| format!(" [{m}]"));
        match self.rollback {
            Some(r) if r == DEFAULT_ROLLBACK => format!("{head} ({period}, rollback{deferred}){model}"),
            Some(r) => format!("{head} ({period}, rollback {r}{deferred}){model}"),
            None => format!("{head} ({period}){model}"),
        }
    }
}

impl std::str::FromStr for Arm {
    type Err = ArmError;

    /// Parses one item of a run list.
    fn from_str(item: &str) -> Result<Self, Self::Err> {
        let whole = item.trim();
        let bad = |why: &str| ArmError::Bad { item: whole.to_string(), why: why.to_string() };
        let (item, model) = match whole.split_once('@') {
            Some((a, m)) if !m.is_empty() && m.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c)) => {
                (a, Some(m.to_string()))
            }
            Some(_) => return Err(bad("`@MODEL` names a model of `--model MODEL=FILE` (letters, digits, _ - .)")),
            None => (whole, None),
        };
        let mut parts = item.split('+');
        let base = parts.next().unwrap_or_default();
        let (mut rollback, mut deferred) = (None, false);
        for suffix in parts {
            let ratio = match suffix {
                "deferred" if deferred => return Err(bad("`+deferred` is given twice")),
                "deferred" => {
                    deferred = true;
                    continue;
                }
                "rollback" => DEFAULT_ROLLBACK,
                r => match r.strip_prefix("rollback:").map(str::parse::<f32>) {
                    Some(Ok(x)) if x.is_finite() && x >= 1.0 => x,
                    Some(_) => return Err(bad("the rollback ratio must be a number of at least 1")),
                    None => return Err(bad("the suffixes are `+rollback`, `+rollback:RATIO` and `+deferred`")),
                },
            };
            if rollback.replace(ratio).is_some() {
                return Err(bad("`+rollback` is given twice"));
            }
        }
        if deferred {
            rollback = rollback.or(Some(DEFAULT_ROLLBACK));
        }
        let (method, period) = match base.split_once(':') {
            None if base == "adam" => (Method::Adam, None),
            Some(("nino", p)) => (Method::Nino, Some(p)),
            Some(("wnn", p)) => (Method::Wnn, Some(p)),
            _ => return Err(bad("expected `adam`, `nino:PERIOD` or `wnn:PERIOD`")),
        };
        if method == Method::Adam && rollback.is_some() {
            return Err(bad("plain Adam has no nowcast to roll back"));
        }
        if method == Method::Adam && model.is_some() {
            return Err(bad("plain Adam has no NiNo weights to choose"));
        }
        let period = period.map(|p| p.parse::<PeriodChoice>().map_err(|e| bad(&e))).transpose()?;
        if let Some(PeriodChoice(Period::Static(0))) = period {
            return Err(bad("the period must be at least 1 step"));
        }
        Ok(Arm { method, period, rollback, deferred, model })
    }
}

/// Parses a comma list of arms (`adam,nino:1000,nino:dynamic+rollback,wnn:1000`).
pub fn parse_arms(list: &str) -> Result<Vec<Arm>, ArmError> {
    let runs: Vec<Arm> = list.split(',').filter(|s| !s.trim().is_empty()).map(str::parse).collect::<Result<_, _>>()?;
    if runs.is_empty() {
        return Err(ArmError::Empty);
    }
    for (i, r) in runs.iter().enumerate() {
        if runs[..i].contains(r) {
            return Err(ArmError::Twice(r.name()));
        }
    }
    Ok(runs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiment::preset::Preset;

    #[test]
    fn run_lists_parse_to_canonical_names() {
        let r = parse_arms("adam, nino:1000,nino:dynamic,nino:fork,wnn:1000,nino:dynamic+rollback,nino:500+rollback:2")
            .unwrap();
        let names: Vec<String> = r.iter().map(Arm::name).collect();
        assert_eq!(
            names,
            [
                "adam",
                "nino:1000",
                "nino:dynamic",
                "nino:fork",
                "wnn:1000",
                "nino:dynamic+rollback",
                "nino:500+rollback:2"
            ]
        );
        assert_eq!(r[0], Arm { method: Method::Adam, period: None, rollback: None, deferred: false, model: None });
        assert_eq!(r[2].period, Some(PeriodChoice::DYNAMIC));
        assert_eq!(r[5].rollback, Some(DEFAULT_ROLLBACK));
        assert_eq!(r[4].method, Method::Wnn);
        assert_eq!(r[5].label(), "Adam+NiNo (dynamic, rollback)");
        assert_eq!(r[1].label(), "Adam+NiNo (static 1000)");
        assert_eq!(r[4].label(), "Adam+WNN+ (static 1000)");
        assert_eq!(r[5].file_stem(), "nino-dynamic-rollback");
        // Every name parses back to the same configuration.
        for c in &r {
            assert_eq!(&c.name().parse::<Arm>().unwrap(), c);
        }
    }

    #[test]
    fn deferred_runs_imply_rollback_and_name_themselves_once() {
        let r = parse_arms("nino:100+deferred,nino:500+rollback:3+deferred,wnn:1000+deferred+rollback").unwrap();
        assert_eq!(r[0].rollback, Some(DEFAULT_ROLLBACK));
        assert!(r.iter().all(|c| c.deferred));
        assert_eq!(r[1].rollback, Some(3.0));
        let names: Vec<String> = r.iter().map(Arm::name).collect();
        assert_eq!(names, ["nino:100+deferred", "nino:500+rollback:3+deferred", "wnn:1000+deferred"]);
        assert_eq!(r[0].label(), "Adam+NiNo (static 100, rollback, deferred verdict)");
        assert_eq!(r[1].label(), "Adam+NiNo (static 500, rollback 3, deferred verdict)");
        assert_eq!(r[0].file_stem(), "nino-100-deferred");
        for c in &r {
            assert_eq!(&c.name().parse::<Arm>().unwrap(), c);
        }
        assert!(r.iter().all(|c| c.verdict(VerdictTiming::Immediate) == VerdictTiming::Deferred));
        let plain = parse_arms("adam,nino:100,nino:100+rollback").unwrap();
        let verdicts: Vec<VerdictTiming> = plain.iter().map(|c| c.verdict(VerdictTiming::Deferred)).collect();
        assert_eq!(verdicts, [VerdictTiming::Immediate, VerdictTiming::Immediate, VerdictTiming::Deferred]);
        // Without `+deferred` a rollback is the plain one, so `+rollback+deferred` and `+rollback` differ.
        assert_ne!(parse_arms("nino:100+rollback").unwrap(), parse_arms("nino:100+rollback+deferred").unwrap());
    }

    #[test]
    fn model_suffixes_name_other_weights() {
        let r = parse_arms("nino:dynamic+rollback,nino:dynamic+rollback@pp,nino:1000@pp").unwrap();
        assert_eq!(r[1].model.as_deref(), Some("pp"));
        assert_eq!(r[1].name(), "nino:dynamic+rollback@pp");
        assert_eq!(r[1].label(), "Adam+NiNo (dynamic, rollback) [pp]");
        assert_eq!(r[2].file_stem(), "nino-1000-pp");
        assert_ne!(r[0], r[1]);
        for c in &r {
            assert_eq!(&c.name().parse::<Arm>().unwrap(), c);
        }
    }

    #[test]
    fn bad_run_lists_are_one_line_errors() {
        for bad in [
            "",
            "sgd",
            "nino",
            "nino:",
            "nino:often",
            "nino:0",
            "adam+rollback",
            "nino:1000+retry",
            "nino:1000+rollback:0.5",
            "nino:1000+deferred+deferred",
            "nino:1000+rollback+rollback:3",
            "adam+deferred",
            "nino:1000+defered",
            "adam,adam",
            "adam@pp",
            "nino:1000@",
            "nino:1000@a/b",
        ] {
            let e = parse_arms(bad).err().unwrap_or_else(|| panic!("`{bad}` accepted"));
            let e = e.to_string();
            assert!(!e.contains('\n') && !e.is_empty(), "{e}");
        }
    }

    #[test]
    fn every_preset_parses() {
        for p in Preset::ALL {
            assert!(parse_arms(p.runs()).is_ok(), "{}", p.name());
        }
        // The main job: Adam against the default period, the reference's static 1000, unguarded.
        let main = parse_arms(Preset::Main.runs()).unwrap();
        assert_eq!((main[1].period, main[1].rollback), (Some(PeriodChoice::REFERENCE), None));
        // Table (c): the short static periods run guarded; static 1000 stays the reference.
        let periods = parse_arms(Preset::Periods.runs()).unwrap();
        let guarded: Vec<bool> = periods.iter().map(|c| c.deferred).collect();
        assert_eq!(guarded, [true, true, false, false]);
        assert_eq!(periods[2].rollback, None);
    }
}
