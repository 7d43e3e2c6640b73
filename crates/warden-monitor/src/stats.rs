//! Online statistics: exponentially weighted mean and variance, and call rates measured in
//! fixed buckets.

use serde::{Deserialize, Serialize};

/// Exponentially weighted moving mean and variance (West's incremental form).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Ewma {
    pub mean: f64,
    pub var: f64,
    /// Samples folded in (the first sets the mean).
    pub n: u64,
}

impl Ewma {
    /// Weight of a new sample once warmed up; before that a plain running mean.
    const ALPHA: f64 = 0.05;

    pub fn add(&mut self, x: f64) {
        self.n = self.n.saturating_add(1);
        if self.n == 1 {
            self.mean = x;
            self.var = 0.0;
            return;
        }
        // A running mean for the first 1/ALPHA samples, then exponential forgetting.
        let alpha = (1.0 / self.n as f64).max(Self::ALPHA);
        let diff = x - self.mean;
        let incr = alpha * diff;
        self.mean += incr;
        self.var = (1.0 - alpha) * (self.var + diff * incr);
    }

    pub fn sd(&self) -> f64 {
        self.var.max(0.0).sqrt()
    }

    /// How many standard deviations `x` lies above the mean, the deviation floored at
    /// `min_sd` (a constant history has no spread, and nothing is infinitely unusual).
    pub fn z(&self, x: f64, min_sd: f64) -> f64 {
        (x - self.mean) / self.sd().max(min_sd)
    }
}

/// Calls per bucket of `width_ms`, learned over the buckets in which the agent was active
/// (an agent idle most of the day is not "slow"; what matters is how fast it goes when it
/// goes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Rate {
    /// Start of the bucket being counted.
    pub bucket_ms: i64,
    /// Calls in it so far.
    pub count: u32,
    /// Calls per active bucket.
    pub per_bucket: Ewma,
    /// The busiest bucket seen.
    pub peak: u32,
}

impl Rate {
    /// Counts a call at `now_ms`; a new bucket closes the previous one (folding its count
    /// into the history when `learn`). Returns the count of the current bucket.
    pub fn tick(&mut self, now_ms: i64, width_ms: i64, learn: bool) -> u32 {
        if now_ms >= self.bucket_ms.saturating_add(width_ms) || now_ms < self.bucket_ms {
            if self.count > 0 && learn {
                self.per_bucket.add(f64::from(self.count));
                self.peak = self.peak.max(self.count);
            }
            self.bucket_ms = now_ms - now_ms.rem_euclid(width_ms.max(1));
            self.count = 0;
        }
        self.count = self.count.saturating_add(1);
        self.count
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn ewma_tracks_mean_and_spread() {
        let mut e = Ewma::default();
        for i in 0..1000 {
            e.add(if i % 2 == 0 { 9.0 } else { 11.0 });
        }
        assert!((e.mean - 10.0).abs() < 0.2, "{e:?}");
        assert!((e.sd() - 1.0).abs() < 0.2, "{e:?}");
        assert!(e.z(20.0, 0.1) > 8.0);
        let mut flat = Ewma::default();
        flat.add(3.0);
        flat.add(3.0);
        assert!((flat.z(4.0, 0.5) - 2.0).abs() < 1e-9, "the floor bounds z");
    }

    #[test]
    fn rate_learns_only_active_buckets() {
        let mut r = Rate::default();
        // Two calls per 10 s bucket, with idle hours between bursts.
        for burst in 0..50_i64 {
            let base = burst * 3_600_000;
            assert_eq!(r.tick(base, 10_000, true), 1);
            assert_eq!(r.tick(base + 1_000, 10_000, true), 2);
        }
        assert_eq!(r.per_bucket.n, 49);
        assert!((r.per_bucket.mean - 2.0).abs() < 1e-9);
        assert_eq!(r.peak, 2);
        // Not learning: the history is left alone.
        r.tick(500 * 3_600_000, 10_000, false);
        assert_eq!(r.per_bucket.n, 49);
    }
}
