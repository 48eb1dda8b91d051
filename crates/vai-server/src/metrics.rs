//! The server's Prometheus metrics: request latency by verb, code and who answered, the
//! store's size and how long its writer waited for the journal, staleness, how far each type's store is behind its watch, and upstream's
//! contact age. This module only records; `/metrics`
//! (in `ops`) sets the gauges and encodes the page.

use std::time::Duration;

use axum::http::StatusCode;

/// The server's metrics.
pub(crate) struct Metrics {
    requests: prometheus::HistogramVec,
    pub db_bytes: prometheus::IntGauge,
    /// Writes held for the journal since the store opened: how many, their time, the longest.
    pub writes_held: prometheus::GaugeVec,
    pub writes_held_seconds: prometheus::GaugeVec,
    pub writes_held_longest: prometheus::GaugeVec,
    pub stale_seconds: prometheus::GaugeVec,
    pub lag_seconds: prometheus::GaugeVec,
    pub lag_events: prometheus::IntGaugeVec,
    pub lag_versions: prometheus::IntGaugeVec,
    pub contact_age: prometheus::Gauge,
}

/// Who answered a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ServedBy {
    /// vai, from its store.
    Cache,
    /// Upstream, through the proxy.
    Upstream,
}

impl Metrics {
    /// The server's metrics, registered in `registry`; fails if they are registered there
    /// already (a second router on one registry would count nothing of its own).
    pub fn new(registry: &prometheus::Registry) -> prometheus::Result<Metrics> {
        let requests = prometheus::HistogramVec::new(
            prometheus::HistogramOpts::new(
                "vai_request_duration_seconds",
                "Time to answer a request (to its headers, for streams), by verb, code and who answered (cache or upstream).",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
            ]),
            &["verb", "code", "served_by"],
        )
        .expect("valid metric");
        let db_bytes =
            prometheus::IntGauge::new("vai_store_bytes", "Size of the database file and its WAL.")
                .expect("valid metric");
        // Gauges with one label: `resource` (per cached type) or `cause`.
        let gauges = |label: &str, name: &str, help: &str| {
            prometheus::GaugeVec::new(prometheus::Opts::new(name, help), &[label])
                .expect("valid metric")
        };
        let by_cause = |name: &str, help: &str| gauges("cause", name, help);
        let writes_held = by_cause(
            "vai_store_writes_held",
            "Times since start the store's writer waited a millisecond or more for the journal, by cause: behind a checkpoint (waiting for long readers), or for the WAL's limit.",
        );
        let writes_held_seconds = by_cause(
            "vai_store_writes_held_seconds",
            "Seconds since start the store's writer waited for the journal, in all, by cause.",
        );
        let writes_held_longest = by_cause(
            "vai_store_writes_held_longest_seconds",
            "The longest single wait of the store's writer for the journal since start, by cause.",
        );
        let seconds_per_type = |name: &str, help: &str| gauges("resource", name, help);
        let per_type = |name: &str, help: &str| {
            prometheus::IntGaugeVec::new(prometheus::Opts::new(name, help), &["resource"])
                .expect("valid metric")
        };
        let stale_seconds = seconds_per_type(
            "vai_stale_seconds",
            "How long a cached type's data has been possibly stale (0 when live).",
        );
        let lag_seconds = seconds_per_type(
            "vai_sync_lag_seconds",
            "How long the oldest event received from a type's watch has waited to be stored (0 when none waits).",
        );
        let lag_events = per_type(
            "vai_sync_lag_events",
            "Events received from a type's watch and not stored yet: the store's queue for it.",
        );
        let lag_versions = per_type(
            "vai_sync_lag_resource_versions",
            "Resource versions between what a type's store holds and the newest event being stored.",
        );
        let contact_age = prometheus::Gauge::new(
            "vai_upstream_contact_age_seconds",
            "Seconds since upstream last answered the health probe.",
        )
        .expect("valid metric");
        for m in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(db_bytes.clone()),
            Box::new(writes_held.clone()),
            Box::new(writes_held_seconds.clone()),
            Box::new(writes_held_longest.clone()),
            Box::new(stale_seconds.clone()),
            Box::new(lag_seconds.clone()),
            Box::new(lag_events.clone()),
            Box::new(lag_versions.clone()),
            Box::new(contact_age.clone()),
        ] {
            registry.register(m)?;
        }
        Ok(Metrics {
            requests,
            db_bytes,
            writes_held,
            writes_held_seconds,
            writes_held_longest,
            stale_seconds,
            lag_seconds,
            lag_events,
            lag_versions,
            contact_age,
        })
    }

    pub fn observe(&self, verb: &str, code: StatusCode, served_by: ServedBy, elapsed: Duration) {
        let served_by = match served_by {
            ServedBy::Cache => "cache",
            ServedBy::Upstream => "upstream",
        };
        self.requests
            .with_label_values(&[verb, code.as_str(), served_by])
            .observe(elapsed.as_secs_f64());
    }
}
