//! The horizon schedule of the NiNo wrapper (spec 5.3): long horizons early, `k = 1` at the end.

use crate::error::Error;

/// Horizons `k_j = roundeven((linspace(S^(1/p), 1, n)[j])^p)` for `n = max(1, max_steps / period)`.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Schedule {
    n: usize,
    seq_len: usize,
    p: f64,
}

impl Schedule {
    /// The reference schedule: `seq_len` horizons (`S`), exponent `p` (2 by default).
    pub fn new(max_train_steps: usize, period: usize, seq_len: usize, p: f64) -> Result<Schedule, Error> {
        if period == 0 || seq_len == 0 {
            return Err(Error::InvalidArgument("schedule: period and seq_len must be positive"));
        }
        if !(p.is_finite() && p > 0.0) {
            return Err(Error::InvalidArgument("schedule: p must be finite and positive"));
        }
        Ok(Schedule { n: (max_train_steps / period).max(1), seq_len, p })
    }

    /// Number of nowcasts the schedule covers.
    pub const fn len(&self) -> usize {
        self.n
    }

    /// Always false: a schedule has at least one entry.
    pub const fn is_empty(&self) -> bool {
        false
    }

    /// Horizon of nowcast `j` (0-based); past the end it stays at the last entry, as the reference clamps.
    pub fn k(&self, j: usize) -> usize {
        let s = self.seq_len as f64;
        if self.n == 1 {
            return self.seq_len;
        }
        let j = j.min(self.n - 1);
        let a = if self.p == 2.0 { libm::sqrt(s) } else { libm::pow(s, 1.0 / self.p) };
        // numpy linspace: start + j * ((stop - start) / (n - 1)), with the endpoint set exactly.
        let x = if j == self.n - 1 { 1.0 } else { a + j as f64 * ((1.0 - a) / (self.n - 1) as f64) };
        let y = if self.p == 2.0 { x * x } else { libm::pow(x, self.p) };
        (libm::roundeven(y) as usize).clamp(1, self.seq_len)
    }

    /// Horizon at training fraction `f` (0 at the start, 1 at the step limit): the same curve read
    /// continuously, so that the horizon depends on how far training is rather than on how many
    /// nowcasts were made (dynamic periods make many more of them early).
    pub fn k_at_fraction(&self, f: f64) -> usize {
        let s = self.seq_len as f64;
        let f = if f.is_finite() { f.clamp(0.0, 1.0) } else { 1.0 };
        let a = if self.p == 2.0 { libm::sqrt(s) } else { libm::pow(s, 1.0 / self.p) };
        let x = a + (1.0 - a) * f;
        let y = if self.p == 2.0 { x * x } else { libm::pow(x, self.p) };
        (libm::roundeven(y) as usize).clamp(1, self.seq_len)
    }

    /// Horizon of the nowcast made at 0-based step `step_idx` (`j = step_idx / period`).
    pub fn k_at_step(&self, step_idx: usize, period: usize) -> usize {
        self.k(step_idx / period.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_schedules() {
        // Rows of the table in docs/spec.md §5.3, produced by the reference (numpy) code.
        let rows: [(usize, &[usize]); 4] = [
            (10000, &[40, 33, 26, 21, 16, 11, 8, 5, 3, 1]),
            (15000, &[40, 35, 31, 27, 23, 20, 16, 13, 11, 8, 6, 5, 3, 2, 1]),
            (20000, &[40, 37, 33, 30, 27, 24, 22, 19, 17, 14, 12, 11, 9, 7, 6, 4, 3, 2, 2, 1]),
            (5000, &[40, 25, 13, 5, 1]),
        ];
        for (steps, want) in rows {
            let s = Schedule::new(steps, 1000, 40, 2.0).unwrap();
            assert_eq!(s.len(), want.len());
            for (j, &k) in want.iter().enumerate() {
                assert_eq!(s.k(j), k, "max_train_steps {steps}, j {j}");
            }
        }
        let one = Schedule::new(999, 1000, 40, 2.0).unwrap();
        assert_eq!((one.len(), one.k(0), one.k(5)), (1, 40, 40));
        assert!(Schedule::new(1000, 0, 40, 2.0).is_err());
    }

    #[test]
    fn fraction_reads_the_same_curve() {
        let s = Schedule::new(10_000, 1000, 40, 2.0).unwrap();
        assert_eq!((s.k_at_fraction(0.0), s.k_at_fraction(1.0), s.k_at_fraction(7.0)), (40, 1, 1));
        // (sqrt(40) - 0.5 * (sqrt(40) - 1))^2 = 13.40 rounds to 13.
        assert_eq!(s.k_at_fraction(0.5), 13);
        assert_eq!(s.k_at_fraction(f64::NAN), 1);
        let ks: [usize; 11] = core::array::from_fn(|i| s.k_at_fraction(i as f64 / 10.0));
        assert!(ks.windows(2).all(|w| w[0] >= w[1]), "{ks:?}");
    }
}
