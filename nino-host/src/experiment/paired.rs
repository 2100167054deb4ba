//! Paired comparison of two configurations run on the same seeds: per-seed differences in steps to
//! target, their median, who wins each seed, and an exact two-sided sign test. Steps to target vary about
//! 2x from seed to seed, so only paired differences separate two rules that differ by 10%.

/// One configuration's result on one seed: steps to target, or `None` when the target was not reached.
pub type SeedSteps = Option<u64>;

/// `b` against `a` on one seed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeedOutcome {
    /// Both reached the target: `b`'s steps minus `a`'s (negative: `b` is faster).
    Diff(i64),
    /// Only `b` reached it: `b` wins.
    OnlyB,
    /// Only `a` reached it: `a` wins.
    OnlyA,
    /// Neither reached it: a tie.
    Neither,
}

impl SeedOutcome {
    /// Compares `b` with `a` on one seed.
    pub fn of(a: SeedSteps, b: SeedSteps) -> SeedOutcome {
        match (a, b) {
            (Some(x), Some(y)) => SeedOutcome::Diff(y as i64 - x as i64),
            (None, Some(_)) => SeedOutcome::OnlyB,
            (Some(_), None) => SeedOutcome::OnlyA,
            (None, None) => SeedOutcome::Neither,
        }
    }

    /// The cell of a table (`-340`, `+120`, `B only`, `A only`, `neither`).
    pub fn cell(self) -> String {
        match self {
            SeedOutcome::Diff(d) => format!("{d:+}"),
            SeedOutcome::OnlyB => "B only".into(),
            SeedOutcome::OnlyA => "A only".into(),
            SeedOutcome::Neither => "neither".into(),
        }
    }
}

/// The paired statistics of `b` against `a` over the seeds both ran.
#[derive(Clone, Debug, PartialEq)]
pub struct Paired {
    /// One outcome per seed, in the seeds' order.
    pub outcomes: Vec<SeedOutcome>,
    /// Median of the differences where both reached the target (`None`: no such seed).
    pub median_diff: Option<f64>,
    /// Median of `b / a - 1` where both reached the target.
    pub median_rel: Option<f64>,
    /// Seeds where `b` needed fewer steps (or reached the target alone).
    pub b_wins: usize,
    /// Seeds where `a` needed fewer steps (or reached the target alone).
    pub a_wins: usize,
    /// Seeds with equal steps, or neither reaching the target.
    pub ties: usize,
    /// Exact two-sided sign test over the seeds that were not ties (1.0 when all tie).
    pub sign_p: f64,
}

/// Compares `b` with `a`; the two slices hold the same seeds in the same order.
pub fn paired(a: &[SeedSteps], b: &[SeedSteps]) -> Paired {
    let outcomes: Vec<SeedOutcome> = a.iter().zip(b).map(|(&x, &y)| SeedOutcome::of(x, y)).collect();
    let (mut b_wins, mut a_wins, mut ties) = (0, 0, 0);
    let (mut diffs, mut rels) = (Vec::new(), Vec::new());
    for (o, (&x, _)) in outcomes.iter().zip(a.iter().zip(b)) {
        match *o {
            SeedOutcome::Diff(d) => {
                diffs.push(d as f64);
                if let Some(x) = x.filter(|&x| x > 0) {
                    rels.push(d as f64 / x as f64);
                }
                match d.signum() {
                    -1 => b_wins += 1,
                    1 => a_wins += 1,
                    _ => ties += 1,
                }
            }
            SeedOutcome::OnlyB => b_wins += 1,
            SeedOutcome::OnlyA => a_wins += 1,
            SeedOutcome::Neither => ties += 1,
        }
    }
    Paired {
        outcomes,
        median_diff: median(&mut diffs),
        median_rel: median(&mut rels),
        b_wins,
        a_wins,
        ties,
        sign_p: sign_test(b_wins, a_wins),
    }
}

fn median(v: &mut [f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 })
}

/// Exact two-sided sign test: the probability, under "each seed is a fair coin", of a split at least as
/// uneven as `wins` against `losses`.
pub fn sign_test(wins: usize, losses: usize) -> f64 {
    let n = wins + losses;
    if n == 0 {
        return 1.0;
    }
    let k = wins.min(losses);
    // sum_{i <= k} C(n, i) / 2^n, in f64 (exact enough for any seed count a table holds).
    let (mut term, mut tail) = (0.5f64.powi(n as i32), 0.0);
    for i in 0..=k {
        tail += term;
        term = term * (n - i) as f64 / (i + 1) as f64;
    }
    (2.0 * tail).min(1.0)
}

/// One configuration's steps to target on each seed of a comparison, in the seeds' order.
#[derive(Clone, Debug, PartialEq)]
pub struct ArmSteps {
    /// The label of tables.
    pub label: String,
    /// Steps to target per seed (`None`: not reached).
    pub steps: Vec<SeedSteps>,
}

/// The markdown section comparing every pair of `arms` on `seeds` (named `role`, e.g. "confirmation
/// seeds, never used to choose a setting"): one table per pair with the per-seed differences, then a
/// summary row per pair. The first arm is the reference each later arm is compared with first.
pub fn render_pairs(title: &str, role: &str, seeds: &[u64], arms: &[ArmSteps]) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    if arms.len() < 2 || seeds.is_empty() {
        return s;
    }
    let seed_list = seeds.iter().map(u64::to_string).collect::<Vec<_>>().join(", ");
    let _ = writeln!(s, "## {title}\n\nSeeds {seed_list} ({role}). Each row compares B with A on the same seeds: the");
    s.push_str(
        "difference is B's steps to target minus A's (negative: B is faster); a seed where only one reached \
         the target is a win for it; p is the exact two-sided sign test over the seeds that were not ties.\n\n",
    );
    s.push_str(
        "| A | B | median B - A | median B / A - 1 | B wins | A wins | ties | sign test p | per seed (B - A) |\n",
    );
    s.push_str("|---|---|---:|---:|---:|---:|---:|---:|---|\n");
    for i in 0..arms.len() {
        for j in i + 1..arms.len() {
            let (a, b) = (&arms[i], &arms[j]);
            let p = paired(&a.steps, &b.steps);
            let cells: Vec<String> =
                seeds.iter().zip(&p.outcomes).map(|(seed, o)| format!("{seed}: {}", o.cell())).collect();
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} | {:.3} | {} |",
                a.label,
                b.label,
                p.median_diff.map_or("-".into(), |d| format!("{d:+.0}")),
                p.median_rel.map_or("-".into(), |r| format!("{:+.1}%", 100.0 * r)),
                p.b_wins,
                p.a_wins,
                p.ties,
                p.sign_p,
                cells.join("; ")
            );
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_test_matches_the_binomial_tables() {
        // 10 seeds, 9 against 1: 2 * (1 + 10) / 1024 = 0.021484375.
        assert!((sign_test(9, 1) - 0.021_484_375).abs() < 1e-12);
        assert!((sign_test(1, 9) - 0.021_484_375).abs() < 1e-12);
        // 10-0: 2 / 1024.
        assert!((sign_test(10, 0) - 0.001_953_125).abs() < 1e-12);
        // An even split, and nothing to test, are 1.
        assert_eq!(sign_test(5, 5), 1.0);
        assert_eq!(sign_test(0, 0), 1.0);
        // 3 of 4: 2 * (1 + 4) / 16 = 0.625.
        assert!((sign_test(3, 1) - 0.625).abs() < 1e-12);
    }

    #[test]
    fn paired_counts_wins_with_unreached_targets_as_losses() {
        let a = [Some(5000), Some(4000), None, Some(6000), None];
        let b = [Some(4500), Some(4100), Some(7000), None, None];
        let p = paired(&a, &b);
        assert_eq!(
            p.outcomes,
            [
                SeedOutcome::Diff(-500),
                SeedOutcome::Diff(100),
                SeedOutcome::OnlyB,
                SeedOutcome::OnlyA,
                SeedOutcome::Neither
            ]
        );
        assert_eq!((p.b_wins, p.a_wins, p.ties), (2, 2, 1));
        assert_eq!(p.median_diff, Some(-200.0));
        // -500/5000 = -10%, +100/4000 = +2.5%: median -3.75%.
        assert!((p.median_rel.unwrap() + 0.0375).abs() < 1e-12);
        assert_eq!(p.sign_p, 1.0);
        assert_eq!(SeedOutcome::Diff(-500).cell(), "-500");
        assert_eq!(SeedOutcome::Diff(100).cell(), "+100");
    }

    #[test]
    fn the_pair_table_names_its_seeds_role_and_every_pair() {
        let arms = [
            ArmSteps { label: "static 1000".into(), steps: vec![Some(5000), Some(4000), Some(6000)] },
            ArmSteps { label: "dynamic".into(), steps: vec![Some(4000), Some(4100), None] },
            ArmSteps { label: "fork".into(), steps: vec![Some(3000), Some(3000), Some(3000)] },
        ];
        let t = render_pairs("Paired", "confirmation seeds", &[201, 202, 203], &arms);
        assert!(t.contains("Seeds 201, 202, 203 (confirmation seeds)"), "{t}");
        assert_eq!(t.lines().filter(|l| l.starts_with("| static 1000 |") || l.starts_with("| dynamic |")).count(), 3);
        assert!(
            t.contains(
                "| static 1000 | dynamic | -450 | -8.8% | 1 | 2 | 0 | 1.000 | 201: -1000; 202: +100; 203: A only |"
            ),
            "{t}"
        );
        assert!(t.contains("| static 1000 | fork | -2000 | -40.0% | 3 | 0 | 0 | 0.250 |"), "{t}");
        assert_eq!(render_pairs("x", "y", &[1], &arms[..1]), "");
    }
}
