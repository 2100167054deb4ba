//! The PNG plots of an experiment: test accuracy against steps and against wall time, the median seed of
//! each configuration drawn bold and the other seeds faint.

use crate::experiment::table::{ConfigResult, SeedResult, Setup};
use crate::io::plot::{LinePlot, Series};
use crate::training::metrics::EvalRow;

/// The seed whose run is the median by steps to target (ties broken by best accuracy).
pub fn median_index(runs: &[SeedResult]) -> usize {
    let mut idx: Vec<usize> = (0..runs.len()).collect();
    idx.sort_by(|&a, &b| {
        let key = |r: &SeedResult| r.summary.steps_to_target.unwrap_or(u64::MAX);
        key(&runs[a]).cmp(&key(&runs[b])).then(runs[b].summary.best_accuracy.total_cmp(&runs[a].summary.best_accuracy))
    });
    idx.get(runs.len().saturating_sub(1) / 2).copied().unwrap_or(0)
}

/// Accuracy curves against `x` (steps or wall seconds) for every configuration with a finished run.
pub fn accuracy_plot(setup: &Setup, configs: &[ConfigResult], x: fn(&EvalRow) -> f64, x_label: &str) -> LinePlot {
    let curve = |r: &SeedResult| r.rows.iter().map(|row| (x(row), 100.0 * f64::from(row.test_accuracy))).collect();
    let series = configs
        .iter()
        .filter(|c| !c.runs.is_empty())
        .map(|c| {
            let m = median_index(&c.runs);
            let seeds = if c.runs.len() > 1 { format!(", median of {} seeds", c.runs.len()) } else { String::new() };
            Series {
                label: format!("{} (seed {}{seeds})", c.label, c.runs[m].seed),
                main: curve(&c.runs[m]),
                faint: c.runs.iter().enumerate().filter(|(i, _)| *i != m).map(|(_, r)| curve(r)).collect(),
            }
        })
        .collect();
    LinePlot {
        title: format!("{} ({}) test accuracy", setup.task, setup.arch),
        x_label: x_label.into(),
        y_label: "test accuracy (%)".into(),
        series,
        target: setup.target.map(|t| (100.0 * f64::from(t), format!("target {:.2}%", 100.0 * t))),
        marker: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiment::table::tests::seed_result;

    #[test]
    fn median_seed_is_the_middle_run() {
        let runs = vec![seed_result(1, Some(600), 0), seed_result(2, None, 0), seed_result(3, Some(400), 0)];
        assert_eq!(runs[median_index(&runs)].seed, 1);
        assert_eq!(median_index(&runs[..1]), 0);
    }
}
