//! What an experiment reports: per-run results, `table.md` (medians over the seeds, each seed's value, and
//! every configuration against Adam), and the medians it is built from.

use crate::training::metrics::{EvalRow, FineEval, Summary, eval_schedule};
use serde::Serialize;
use std::fmt::Write as _;
use std::path::PathBuf;

/// One run's results as kept in `results.json`; `rows` feed the plots.
#[derive(Clone, Debug, Serialize)]
pub struct SeedResult {
    /// Seed.
    pub seed: u64,
    /// Optimizer + whole-NiNo-hook seconds up to the target (`None`: not reached).
    pub seconds_to_target: Option<f64>,
    /// The run's metrics CSV.
    pub metrics_csv: PathBuf,
    /// The run's summary JSON.
    pub summary_json: PathBuf,
    /// The run summary.
    pub summary: Summary,
    /// Every evaluation (in the CSV; not repeated in `results.json`).
    #[serde(skip)]
    pub rows: Vec<EvalRow>,
}

/// All seeds of one configuration.
#[derive(Clone, Debug, Serialize)]
pub struct ConfigResult {
    /// The arm's spelling in a run list.
    pub name: String,
    /// Table and legend label.
    pub label: String,
    /// One entry per finished seed.
    pub runs: Vec<SeedResult>,
}

/// What the table's header line states.
#[derive(Clone, Debug, Serialize)]
pub struct Setup {
    /// The command line that produced the results.
    pub command: String,
    /// Data directory.
    pub dataset: String,
    /// Training / test examples used.
    pub examples: (usize, usize),
    /// Task name or `custom`.
    pub task: String,
    /// Arch spec.
    pub arch: String,
    /// Steps between evaluations.
    pub eval_every: u64,
    /// Denser evaluations near the target.
    pub eval_fine: Option<FineEval>,
    /// Step limit.
    pub steps: u64,
    /// Step limit of `adam` runs when it differs from `steps` (they run on to their target while NiNo's
    /// runs keep the schedule `steps` plans).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub adam_steps: Option<u64>,
    /// Target accuracy (fraction).
    pub target: Option<f32>,
    /// Seeds.
    pub seeds: Vec<u64>,
    /// The seeds of `seeds` kept for confirmation: never used to choose a setting. Empty when the
    /// experiment names no roles.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub confirm_seeds: Vec<u64>,
}

impl Setup {
    /// The step limit of configuration `c`'s runs.
    pub fn step_limit(&self, c: &ConfigResult) -> u64 {
        match self.adam_steps {
            Some(a) if c.name == "adam" => a,
            _ => self.steps,
        }
    }
}

/// The whole `table.md`: [`render_table`] over every seed when the experiment names no seed roles, else
/// one section per role (tuning seeds, then confirmation seeds), each followed by the paired comparison
/// of every two configurations on that role's seeds.
pub fn render_document(title: &str, setup: &Setup, configs: &[ConfigResult]) -> String {
    use crate::experiment::paired::{ArmSteps, render_pairs};
    let roles: Vec<(&str, &str, Vec<u64>)> = if setup.confirm_seeds.is_empty() {
        vec![("Paired comparison", "the experiment's seeds", setup.seeds.clone())]
    } else {
        let tuning: Vec<u64> = setup.seeds.iter().copied().filter(|s| !setup.confirm_seeds.contains(s)).collect();
        vec![
            ("Tuning seeds: paired comparison", "tuning seeds: used to choose settings", tuning),
            (
                "Confirmation seeds: paired comparison",
                "confirmation seeds: run once, never used to choose a setting",
                setup.confirm_seeds.clone(),
            ),
        ]
    };
    let mut out = String::new();
    for (heading, role, seeds) in roles {
        if seeds.is_empty() {
            continue;
        }
        let only: Vec<ConfigResult> = configs
            .iter()
            .map(|c| ConfigResult {
                runs: c.runs.iter().filter(|r| seeds.contains(&r.seed)).cloned().collect(),
                ..c.clone()
            })
            .collect();
        let section = Setup { seeds: seeds.clone(), confirm_seeds: Vec::new(), ..setup.clone() };
        let head = if setup.confirm_seeds.is_empty() { title.to_string() } else { format!("{title}: {role}") };
        out.push_str(&render_table(&head, &section, &only));
        // Pairs only over seeds every configuration has finished, so each difference is paired.
        let done: Vec<u64> =
            seeds.iter().copied().filter(|s| only.iter().all(|c| c.runs.iter().any(|r| r.seed == *s))).collect();
        let arms: Vec<ArmSteps> = only
            .iter()
            .map(|c| ArmSteps {
                label: c.label.clone(),
                steps: done
                    .iter()
                    .map(|s| c.runs.iter().find(|r| r.seed == *s).and_then(|r| r.summary.steps_to_target))
                    .collect(),
            })
            .collect();
        let pairs = render_pairs(heading, role, &done, &arms);
        if !pairs.is_empty() {
            out.push('\n');
            out.push_str(&pairs);
        }
        out.push('\n');
    }
    out
}

/// The median with `None` ordered after every value ("not reached" is slower than any time); `None` if
/// the median falls on a run that did not reach the target, or there is nothing.
pub fn median(values: &[Option<f64>]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().map(|x| x.unwrap_or(f64::INFINITY)).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let m = if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 };
    m.is_finite().then_some(m)
}

fn median_f32(values: impl Iterator<Item = f32>) -> f32 {
    let v: Vec<Option<f64>> = values.map(|x| Some(f64::from(x))).collect();
    median(&v).unwrap_or(0.0) as f32
}

/// `a, b, c`, or one value when all seeds agree.
fn per_seed(values: &[String]) -> String {
    if values.windows(2).all(|w| w[0] == w[1]) {
        values.first().cloned().unwrap_or_default()
    } else {
        values.join(", ")
    }
}

/// Renders `table.md`.
pub fn render_table(title: &str, setup: &Setup, configs: &[ConfigResult]) -> String {
    let pct = |a: f32| format!("{:.2}%", 100.0 * a);
    let mut s = String::new();
    let _ = writeln!(s, "# {title}\n");
    let _ = writeln!(
        s,
        "Dataset `{}` (task {}, `{}`; {} training / {} test images); evaluation {}; at most {} \
         steps{}; target {}; seeds {}.",
        setup.dataset,
        setup.task,
        setup.arch,
        setup.examples.0,
        setup.examples.1,
        eval_schedule(setup.eval_every, setup.eval_fine),
        setup.steps,
        setup.adam_steps.map_or(String::new(), |a| format!(" (Adam: {a})")),
        setup.target.map_or("none".into(), pct),
        setup.seeds.iter().map(u64::to_string).collect::<Vec<_>>().join(", "),
    );
    let _ = writeln!(s, "Command: `{}`\n", setup.command);
    s.push_str(
        "| configuration | steps to target (median) | per seed | wall s to target (median) | per seed | \
         nowcasts | rollbacks | final acc (median) | best acc (median) | eval s (median) |\n",
    );
    s.push_str("|---|---:|---|---:|---|---:|---:|---:|---:|---:|\n");
    for c in configs {
        let runs = &c.runs;
        let steps: Vec<Option<f64>> = runs.iter().map(|r| r.summary.steps_to_target.map(|x| x as f64)).collect();
        let steps_med = match median(&steps) {
            Some(m) => format!("{m:.0}"),
            None if runs.is_empty() => "-".into(),
            None => format!(">{}", setup.step_limit(c)),
        };
        let steps_seed: Vec<String> = runs
            .iter()
            .map(|r| r.summary.steps_to_target.map_or(format!(">{}", r.summary.steps_run), |x| x.to_string()))
            .collect();
        let wall: Vec<Option<f64>> = runs.iter().map(|r| r.seconds_to_target).collect();
        let wall_med = match median(&wall) {
            Some(m) => format!("{m:.2}"),
            None if runs.is_empty() => "-".into(),
            None => "not reached".into(),
        };
        let wall_seed: Vec<String> = runs
            .iter()
            .map(|r| match r.seconds_to_target {
                Some(w) => format!("{w:.2}"),
                None => format!(">{:.2}", r.summary.train_seconds + r.summary.nowcast_seconds),
            })
            .collect();
        let nowcasts: Vec<String> = runs.iter().map(|r| r.summary.nowcasts.to_string()).collect();
        let rollbacks: Vec<String> = runs.iter().map(|r| r.summary.rollbacks.to_string()).collect();
        let eval: Vec<Option<f64>> = runs.iter().map(|r| Some(r.summary.eval_seconds)).collect();
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            c.label,
            steps_med,
            steps_seed.join(", "),
            wall_med,
            wall_seed.join(", "),
            per_seed(&nowcasts),
            per_seed(&rollbacks),
            pct(median_f32(runs.iter().map(|r| r.summary.final_accuracy))),
            pct(median_f32(runs.iter().map(|r| r.summary.best_accuracy))),
            median(&eval).map_or("-".into(), |e| format!("{e:.2}")),
        );
    }
    let resolution = match setup.eval_fine {
        None => "Steps to target are multiples of the evaluation interval.".to_string(),
        Some(f) => {
            let grid = if f.every == 1 { "exact".to_string() } else { format!("multiples of {}", f.every) };
            format!("Steps to target are {grid} once an evaluation was within the margin of the target.")
        }
    };
    let _ = writeln!(
        s,
        "\n`>N`: the target was not reached in N steps (or, for wall time, in that many seconds). A run that \
         did not reach the target counts as slower than any that did, so a median of `>N` means at least half \
         the seeds did not reach it. {resolution} Wall time to target counts the optimizer steps and the whole \
         NiNo hook (nowcasts, state recording, rollback probes); evaluation is excluded and shown apart (eval s)."
    );
    s.push_str(&against_adam(configs));
    s
}

/// A median to target over the seeds of `runs`: `(value, reached)`. When the median run did not reach
/// the target, the value is the median of what the runs reached or spent (a lower bound).
fn median_to_target(
    runs: &[SeedResult],
    reached: fn(&SeedResult) -> Option<f64>,
    spent: fn(&SeedResult) -> f64,
) -> Option<(f64, bool)> {
    if runs.is_empty() {
        return None;
    }
    let values: Vec<Option<f64>> = runs.iter().map(reached).collect();
    if let Some(m) = median(&values) {
        return Some((m, true));
    }
    let bounds: Vec<Option<f64>> = runs.iter().map(|r| Some(reached(r).unwrap_or_else(|| spent(r)))).collect();
    median(&bounds).map(|m| (m, false))
}

/// One comparison with Adam: `A vs Adam's B, ratio R` (a lower bound where Adam did not reach the
/// target; no ratio where this configuration did not).
fn compare(ours: Option<(f64, bool)>, adam: (f64, bool), unit: &str, digits: usize) -> String {
    let show = |(v, reached): (f64, bool)| {
        let n = format!("{v:.digits$}{unit}");
        if reached { n } else { format!(">{n}") }
    };
    match ours {
        None => format!("no run (Adam: {})", show(adam)),
        Some(o) if !o.1 => format!("{} (not reached) vs Adam's {}", show(o), show(adam)),
        Some(o) if adam.1 => format!("{} vs Adam's {}, ratio {:.2}", show(o), show(adam), adam.0 / o.0),
        Some(o) => format!("{} vs Adam's {}, ratio at least {:.2}", show(o), show(adam), adam.0 / o.0),
    }
}

/// The section of `table.md` that sets every configuration against Adam, when the experiment has an
/// `adam` arm: medians of steps and wall time to target side by side, and their ratios (Adam's divided by
/// the configuration's, so above 1 is faster than Adam).
pub fn against_adam(configs: &[ConfigResult]) -> String {
    let Some(adam) = configs.iter().find(|c| c.name == "adam" && !c.runs.is_empty()) else { return String::new() };
    let others: Vec<&ConfigResult> = configs.iter().filter(|c| c.name != "adam").collect();
    if others.is_empty() {
        return String::new();
    }
    let steps = |r: &SeedResult| r.summary.steps_to_target.map(|x| x as f64);
    let steps_run = |r: &SeedResult| r.summary.steps_run as f64;
    let wall = |r: &SeedResult| r.seconds_to_target;
    let wall_spent = |r: &SeedResult| r.summary.train_seconds + r.summary.nowcast_seconds;
    let (Some(adam_steps), Some(adam_wall)) =
        (median_to_target(&adam.runs, steps, steps_run), median_to_target(&adam.runs, wall, wall_spent))
    else {
        return String::new();
    };
    let mut s = String::new();
    let _ = writeln!(
        s,
        "\nAgainst Adam (medians over the seeds; a ratio is Adam's value divided by the configuration's, so \
         above 1 is faster than Adam; `>` marks a target not reached, for Adam a lower bound of its value):\n"
    );
    for c in others {
        let _ = writeln!(
            s,
            "- {}: steps to target {}; wall time to target {}.",
            c.label,
            compare(median_to_target(&c.runs, steps, steps_run), adam_steps, "", 0),
            compare(median_to_target(&c.runs, wall, wall_spent), adam_wall, " s", 2),
        );
    }
    s
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn median_orders_not_reached_last() {
        assert_eq!(median(&[Some(3.0), Some(1.0), Some(2.0)]), Some(2.0));
        assert_eq!(median(&[Some(3.0), None, Some(1.0)]), Some(3.0));
        assert_eq!(median(&[None, None, Some(1.0)]), None);
        assert_eq!(median(&[Some(1.0), Some(2.0)]), Some(1.5));
        assert_eq!(median(&[Some(1.0), None]), None);
        assert_eq!(median(&[]), None);
    }

    pub(crate) fn seed_result(seed: u64, steps_to_target: Option<u64>, nowcasts: u64) -> SeedResult {
        let summary = Summary {
            task: Some("debug".into()),
            arch: "conv:4,6,6".into(),
            seed,
            lr: 0.006,
            batch: 128,
            eval_every: 100,
            eval_fine: None,
            target: Some(0.7),
            steps_to_target,
            final_accuracy: 0.7125,
            best_accuracy: 0.72,
            steps_run: steps_to_target.unwrap_or(1000),
            train_seconds: 4.0,
            eval_seconds: 0.5,
            wall_seconds: 5.0,
            nowcasts,
            nowcast_seconds: 0.25,
            rollbacks: 0,
            events: vec![],
        };
        SeedResult {
            seed,
            seconds_to_target: steps_to_target.map(|_| 4.25),
            metrics_csv: PathBuf::from("m.csv"),
            summary_json: PathBuf::from("s.json"),
            summary,
            rows: Vec::new(),
        }
    }

    fn setup() -> Setup {
        Setup {
            command: "nino experiment --task debug".into(),
            dataset: "fixtures/fashion-mnist-mini".into(),
            examples: (5500, 1000),
            task: "debug".into(),
            arch: "conv:4,6,6".into(),
            eval_every: 100,
            eval_fine: None,
            steps: 1000,
            adam_steps: None,
            target: Some(0.7),
            seeds: vec![1, 2, 3],
            confirm_seeds: Vec::new(),
        }
    }

    #[test]
    fn table_shows_medians_seeds_and_not_reached_honestly() {
        let configs = vec![
            ConfigResult {
                name: "adam".into(),
                label: "Adam".into(),
                runs: vec![seed_result(1, Some(600), 0), seed_result(2, None, 0), seed_result(3, Some(400), 0)],
            },
            ConfigResult {
                name: "nino:1000".into(),
                label: "Adam+NiNo (static 1000)".into(),
                runs: vec![seed_result(1, None, 1), seed_result(2, None, 1), seed_result(3, Some(300), 2)],
            },
        ];
        let t = render_table("t", &setup(), &configs);
        let lines: Vec<&str> = t.lines().collect();
        assert!(t.contains("evaluation every 100 steps; at most 1000 steps; target 70.00%; seeds 1, 2, 3"), "{t}");
        assert!(t.contains("Command: `nino experiment --task debug`"), "{t}");
        assert!(t.contains("multiples of the evaluation interval"), "{t}");
        let fine = Setup { eval_fine: Some(FineEval { every: 10, margin: 0.005 }), ..setup() };
        let t = render_table("t", &fine, &configs);
        assert!(
            t.contains("evaluation every 100 steps; every 10 steps within 0.50 points of the target; at most"),
            "{t}"
        );
        assert!(t.contains("multiples of 10 once an evaluation was within the margin of the target."), "{t}");
        let exact = Setup { eval_fine: Some(FineEval { every: 1, margin: 0.005 }), ..setup() };
        let t = render_table("t", &exact, &configs);
        assert!(t.contains("evaluation every 100 steps; every step within 0.50 points of the target; at"), "{t}");
        assert!(t.contains("Steps to target are exact once an evaluation was within the margin"), "{t}");
        let adam = lines.iter().find(|l| l.starts_with("| Adam |")).unwrap();
        let cells: Vec<&str> = adam.split('|').map(str::trim).collect();
        assert_eq!(&cells[1..8], ["Adam", "600", "600, >1000, 400", "4.25", "4.25, >4.25, 4.25", "0", "0"]);
        assert_eq!(&cells[8..11], ["71.25%", "72.00%", "0.50"]);
        let nino = lines.iter().find(|l| l.starts_with("| Adam+NiNo")).unwrap();
        let cells: Vec<&str> = nino.split('|').map(str::trim).collect();
        assert_eq!(&cells[2..7], [">1000", ">1000, >1000, 300", "not reached", ">4.25, >4.25, 4.25", "1, 1, 2"]);
        assert_eq!(lines.iter().filter(|l| l.starts_with("| ")).count(), 3, "header and two rows: {t}");
    }

    #[test]
    fn adam_comparison_puts_steps_wall_time_and_ratios_side_by_side() {
        let timed =
            |seed, steps, secs: f64| SeedResult { seconds_to_target: Some(secs), ..seed_result(seed, steps, 1) };
        let adam = ConfigResult {
            name: "adam".into(),
            label: "Adam".into(),
            runs: vec![timed(1, Some(600), 6.0), timed(2, Some(800), 8.0), timed(3, Some(700), 7.0)],
        };
        let nino = ConfigResult {
            name: "nino:dynamic+rollback".into(),
            label: "Adam+NiNo (dynamic, rollback)".into(),
            runs: vec![timed(1, Some(300), 3.5), timed(2, Some(400), 4.0), timed(3, Some(350), 2.0)],
        };
        let lost = ConfigResult {
            name: "nino:1000".into(),
            label: "Adam+NiNo (static 1000)".into(),
            runs: vec![seed_result(1, None, 1), seed_result(2, None, 1), seed_result(3, None, 1)],
        };
        let t = render_table("t", &setup(), &[adam.clone(), nino.clone(), lost]);
        assert!(t.contains("Against Adam (medians over the seeds;"), "{t}");
        assert!(
            t.contains(
                "- Adam+NiNo (dynamic, rollback): steps to target 350 vs Adam's 700, ratio 2.00; wall time to \
                 target 3.50 s vs Adam's 7.00 s, ratio 2.00."
            ),
            "{t}"
        );
        assert!(t.contains("- Adam+NiNo (static 1000): steps to target >1000 (not reached) vs Adam's 700;"), "{t}");
        // Adam short of its target: the ratio is a lower bound, from Adam's step limit.
        let slow = ConfigResult { runs: vec![seed_result(1, None, 0)], ..adam };
        let t = render_table("t", &Setup { adam_steps: Some(2000), ..setup() }, &[slow, nino.clone()]);
        assert!(t.contains("at most 1000 steps (Adam: 2000); target"), "{t}");
        assert!(t.contains("| Adam | >2000 | >1000 |"), "{t}");
        assert!(t.contains("steps to target 350 vs Adam's >1000, ratio at least 2.86;"), "{t}");
        // No comparison without an Adam arm.
        assert!(!render_table("t", &setup(), &[nino]).contains("Against Adam"));
    }
}
