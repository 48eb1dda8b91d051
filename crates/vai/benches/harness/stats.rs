//! The two summaries the scenarios take of their samples.

/// The middle sample (the upper one of an even count); `xs` must not be empty.
pub fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    xs[xs.len() / 2]
}

/// The `p`th quantile (0–1) of the samples, in any order; NaN for none.
pub fn percentile(sorted_or_not: &[f64], p: f64) -> f64 {
    if sorted_or_not.is_empty() {
        return f64::NAN;
    }
    let mut xs = sorted_or_not.to_vec();
    xs.sort_by(|a, b| a.total_cmp(b));
    xs[((xs.len() - 1) as f64 * p) as usize]
}
