//! Medians with their spread over repeated runs, and percentiles of latency samples.

use serde::{Deserialize, Serialize};

/// One figure measured several times: the median is reported, min and max show the noise.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub runs: Vec<f64>,
}

impl Spread {
    pub fn of(runs: Vec<f64>) -> Self {
        let mut sorted = runs.clone();
        sorted.sort_by(f64::total_cmp);
        let median = match sorted.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => sorted[n / 2],
            n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
        };
        Self {
            median,
            min: sorted.first().copied().unwrap_or(f64::NAN),
            max: sorted.last().copied().unwrap_or(f64::NAN),
            runs,
        }
    }
}

/// Nearest-rank percentile of an ascending slice (`p` in 0..=100).
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// A number with about three significant digits, thousands grouped: `14.6k`, `980`, `0.31`.
pub fn human(value: f64) -> String {
    let abs = value.abs();
    if !value.is_finite() {
        "n/a".into()
    } else if abs >= 100_000.0 {
        format!("{:.0}k", value / 1000.0)
    } else if abs >= 10_000.0 {
        format!("{:.1}k", value / 1000.0)
    } else if abs >= 1000.0 {
        format!("{:.2}k", value / 1000.0)
    } else if abs >= 100.0 {
        format!("{value:.0}")
    } else if abs >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_of_an_even_count_is_the_mean_of_the_middle_two() {
        let spread = Spread::of(vec![4.0, 1.0, 3.0, 2.0]);

        assert_eq!(spread.median, 2.5);
        assert_eq!((spread.min, spread.max), (1.0, 4.0));
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let sorted: Vec<f64> = (1..=100).map(f64::from).collect();

        assert_eq!(percentile(&sorted, 50.0), 50.0);
        assert_eq!(percentile(&sorted, 99.0), 99.0);
        assert_eq!(percentile(&sorted, 100.0), 100.0);
    }

    #[test]
    fn human_numbers_keep_three_digits() {
        assert_eq!(human(14_600.0), "14.6k");
        assert_eq!(human(4_612.0), "4.61k");
        assert_eq!(human(0.314), "0.31");
    }
}
