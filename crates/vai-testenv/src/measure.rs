//! Small measuring helpers shared by tests and benchmarks: a process's resident memory,
//! percentiles, and the apiserver's own metrics.

use std::time::Duration;

/// Resident memory of a process (`/proc/<pid>/status` `VmRSS`), in MB; 0 if unreadable.
pub fn rss_mb(pid: u32) -> f64 {
    status_mb(pid, "VmRSS:")
}

/// The anonymous part of a process's resident memory (`RssAnon`: its heap and stacks, without
/// the file pages it maps, which the kernel's page cache holds), in MB; 0 if unreadable.
pub fn rss_anon_mb(pid: u32) -> f64 {
    status_mb(pid, "RssAnon:")
}

/// A `kB` line of `/proc/<pid>/status`, in MB; 0 if unreadable.
fn status_mb(pid: u32, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// How many pods a benchmark binary generates: `VAI_BENCH_PODS`, or `default`. `None` when
/// cargo only probes the binary (`cargo test --benches` passes `--list`): nothing to run.
pub fn bench_pods(default: u64) -> Option<u64> {
    if std::env::args().any(|a| a == "--list") {
        return None;
    }
    Some(
        std::env::var("VAI_BENCH_PODS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default),
    )
}

/// The `p` quantile (0.0–1.0) of `samples` (sorted in place).
pub fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    samples[((samples.len() - 1) as f64 * p) as usize]
}

/// Prints a markdown table row: `what`, the median and p99 of `samples`, and the goal.
pub fn print_row(what: &str, samples: &mut [Duration], goal: &str) {
    let (p50, p99) = (percentile(samples, 0.5), percentile(samples, 0.99));
    println!("| {what} | {p50:.2?} | {p99:.2?} | {goal} |");
}

/// Sums a metric's series in a Prometheus text page, over the series whose labels contain every
/// `label="value"` given (e.g. `verb="LIST"`); `None` when no series matches, so that a
/// comparison cannot pass on a metric that is not there.
pub fn metric_sum(page: &str, name: &str, labels: &[&str]) -> Option<f64> {
    page.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter(|l| labels.iter().all(|want| l.contains(want)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .fold(None, |sum, v| Some(sum.unwrap_or(0.0) + v))
}

/// The apiserver's `/metrics` page, read with an admin client.
pub async fn apiserver_metrics(client: &kube::Client) -> Result<String, kube::Error> {
    client
        .request_text(
            http::Request::get("/metrics")
                .body(Vec::new())
                .expect("a GET request"),
        )
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_series_by_labels() {
        let page = "# HELP x\napiserver_request_total{resource=\"pods\",verb=\"LIST\"} 3\napiserver_request_total{resource=\"pods\",verb=\"GET\"} 5\napiserver_request_total_other 9\n";
        assert_eq!(metric_sum(page, "apiserver_request_total", &[]), Some(8.0));
        assert_eq!(
            metric_sum(page, "apiserver_request_total", &["verb=\"LIST\""]),
            Some(3.0)
        );
        assert_eq!(
            metric_sum(page, "apiserver_request_total", &["verb=\"WATCH\""]),
            None
        );
        let mut xs = vec![
            Duration::from_millis(3),
            Duration::from_millis(1),
            Duration::from_millis(2),
        ];
        assert_eq!(percentile(&mut xs, 0.5), Duration::from_millis(2));
        assert!(rss_mb(std::process::id()) > 0.0);
        assert!(rss_anon_mb(std::process::id()) > 0.0);
    }
}
