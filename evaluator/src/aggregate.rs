//! The `range.aggregation` functions of a KeptnMetric with a `range.step`, as the metrics-operator
//! applies them to every point of the single series a range query returns
//! (metrics-operator/controllers/common/aggregation/aggregation.go).
//!
//! One deliberate difference: Keptn's percentiles index the points in time order
//! (`sort.Float64Slice(values)` converts, it does not sort), so its "p90" is whichever point
//! happens to sit at 90 % of the window. Here the points are sorted first, which is what p90
//! means and what Keptn's docs promise; the index rule (nearest rank, `ceil(n*p/100)`) is Keptn's.

use std::cmp::Ordering;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregation {
    Max,
    Min,
    Avg,
    Median,
    P90,
    P95,
    P99,
}

/// The names the KeptnMetric CRD allows (`range.aggregation` enum).
pub const NAMES: &str = "p90, p95, p99, max, min, avg, median";

/// The mean of a provider's points (`None`), or their `aggregation` as Keptn takes it: each
/// point printed with `%f` and parsed back first, as the Datadog and Dynatrace providers do.
/// `format_mean` writes the mean the way the provider does.
pub fn points_value(
    points: &[f64],
    aggregation: Option<Aggregation>,
    format_mean: fn(f64) -> String,
) -> String {
    match aggregation {
        None => {
            let mean = if points.is_empty() {
                0.0
            } else {
                points.iter().sum::<f64>() / points.len() as f64
            };
            format_mean(mean)
        }
        Some(aggregation) => {
            let values: Vec<f64> = points
                .iter()
                .map(|v| crate::gofloat::parse(&crate::gofloat::format_fixed6(*v)).unwrap_or(*v))
                .collect();
            crate::gofloat::format_v(aggregation.apply(&values))
        }
    }
}

impl Aggregation {
    pub fn parse(name: &str) -> Option<Aggregation> {
        Some(match name {
            "max" => Aggregation::Max,
            "min" => Aggregation::Min,
            "avg" => Aggregation::Avg,
            "median" => Aggregation::Median,
            "p90" => Aggregation::P90,
            "p95" => Aggregation::P95,
            "p99" => Aggregation::P99,
            _ => return None,
        })
    }

    /// Keptn returns 0 for no points; callers never pass an empty slice (no points is an error
    /// before this), but the rule is kept.
    pub fn apply(self, values: &[f64]) -> f64 {
        if values.is_empty() {
            return 0.0;
        }
        match self {
            Aggregation::Max => values
                .iter()
                .copied()
                .fold(values[0], |m, v| if v > m { v } else { m }),
            Aggregation::Min => values
                .iter()
                .copied()
                .fold(values[0], |m, v| if v < m { v } else { m }),
            Aggregation::Avg => values.iter().sum::<f64>() / values.len() as f64,
            Aggregation::Median => {
                let s = sorted(values);
                let mid = s.len() / 2;
                if s.len().is_multiple_of(2) {
                    (s[mid - 1] + s[mid]) / 2.0
                } else {
                    s[mid]
                }
            }
            Aggregation::P90 => percentile(values, 90.0),
            Aggregation::P95 => percentile(values, 95.0),
            Aggregation::P99 => percentile(values, 99.0),
        }
    }
}

fn sorted(values: &[f64]) -> Vec<f64> {
    let mut s = values.to_vec();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap_or(Ordering::Equal));
    s
}

/// Nearest rank, Keptn's index: `values[ceil(n*p/100) - 1]`.
fn percentile(values: &[f64], p: f64) -> f64 {
    let s = sorted(values);
    let rank = (s.len() as f64 * p / 100.0).ceil() as usize;
    s[rank.clamp(1, s.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    const POINTS: [f64; 11] = [3.0, 3.0, 3.0, 3.0, 3.0, 9.0, 2.0, 2.0, 2.0, 2.0, 2.0];

    #[test]
    fn keptn_functions() {
        assert_eq!(Aggregation::Max.apply(&POINTS), 9.0);
        assert_eq!(Aggregation::Min.apply(&POINTS), 2.0);
        assert_eq!(Aggregation::Avg.apply(&POINTS), 34.0 / 11.0);
        assert_eq!(Aggregation::Median.apply(&POINTS), 3.0);
        assert_eq!(Aggregation::Median.apply(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(Aggregation::Max.apply(&[]), 0.0);
    }

    #[test]
    fn percentiles_sort_then_take_the_nearest_rank() {
        // 11 points: ceil(9.9) = 10th smallest, ceil(10.45) = 11th.
        assert_eq!(Aggregation::P90.apply(&POINTS), 3.0);
        assert_eq!(Aggregation::P95.apply(&POINTS), 9.0);
        let hundred: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        assert_eq!(Aggregation::P90.apply(&hundred), 90.0);
        assert_eq!(Aggregation::P99.apply(&hundred), 99.0);
        assert_eq!(Aggregation::P90.apply(&[7.0]), 7.0);
    }

    #[test]
    fn names() {
        for name in NAMES.split(", ") {
            assert!(Aggregation::parse(name).is_some(), "{name}");
        }
        assert_eq!(Aggregation::parse("mean"), None);
    }
}
