//! Sync's Prometheus metrics (`vai_sync_lists_total`, `vai_sync_events_total`), shared by
//! every syncer on one registry. This module only counts; it never talks to upstream.

use crate::one_line;

/// Sync's Prometheus metrics. Every syncer on one registry shares them: the counts are per
/// resource type, whichever syncer made them.
#[derive(Debug, Clone)]
pub(crate) struct Metrics {
    pub(crate) lists: prometheus::IntCounterVec,
    pub(crate) events: prometheus::IntCounterVec,
}

impl Metrics {
    /// The metrics registered in `registry`: registered now, or the ones a syncer registered
    /// there before. Should a collector that is not sync's hold their names, the counts are
    /// kept but not exported, and an error says so.
    pub(crate) fn new(registry: &prometheus::Registry) -> Metrics {
        let counter = |name: &str, help: &str| {
            prometheus::IntCounterVec::new(prometheus::Opts::new(name, help), &["resource"])
                .expect("valid metric")
        };
        let metrics = Metrics {
            lists: counter(
                "vai_sync_lists_total",
                "Full lists (initial syncs and relists) made upstream, per resource type.",
            ),
            events: counter(
                "vai_sync_events_total",
                "Watch events received from upstream, per resource type.",
            ),
        };
        match registry.register(Box::new(Registered(metrics.clone()))) {
            Ok(()) => metrics,
            Err(prometheus::Error::AlreadyReg) => match Registered::find(registry) {
                Some(registered) => registered,
                None => {
                    tracing::error!(
                        "the registry holds other collectors named vai_sync_lists_total or vai_sync_events_total; sync's counts are not exported"
                    );
                    metrics
                }
            },
            Err(e) => {
                tracing::error!(error = %one_line(&e), "cannot register sync's metrics; they are not exported");
                metrics
            }
        }
    }
}

thread_local! {
    /// The metrics a [`Registered`] collector was last asked for on this thread.
    static COLLECTED: std::cell::RefCell<Option<Metrics>> = const { std::cell::RefCell::new(None) };
}

/// Sync's metrics as one collector, which can tell which of them a registry holds: a
/// registry that refuses a second registration does not give back the first, but gathering
/// it calls the registered collector, on the gathering thread.
struct Registered(Metrics);

impl Registered {
    /// The metrics registered in `registry` by an earlier syncer, if it holds sync's.
    fn find(registry: &prometheus::Registry) -> Option<Metrics> {
        COLLECTED.with(|c| c.borrow_mut().take());
        registry.gather();
        COLLECTED.with(|c| c.borrow_mut().take())
    }
}

impl prometheus::core::Collector for Registered {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        let Metrics { lists, events } = &self.0;
        lists.desc().into_iter().chain(events.desc()).collect()
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        COLLECTED.with(|c| *c.borrow_mut() = Some(self.0.clone()));
        let Metrics { lists, events } = &self.0;
        lists
            .collect()
            .into_iter()
            .chain(events.collect())
            .collect()
    }
}

#[cfg(test)]
mod metrics_tests {
    use super::*;

    /// The `vai_sync_lists_total` count of `resource` the registry exports, if it exports one.
    fn lists(registry: &prometheus::Registry, resource: &str) -> Option<u64> {
        let families = registry.gather();
        let family = families
            .iter()
            .find(|f| f.name() == "vai_sync_lists_total")?;
        family
            .get_metric()
            .iter()
            .find(|m| m.get_label().iter().any(|l| l.value() == resource))
            .map(|m| m.get_counter().get_value() as u64)
    }

    #[test]
    fn syncers_on_one_registry_share_their_counters_and_other_registries_are_apart() {
        let registry = prometheus::Registry::new();
        let (first, second) = (Metrics::new(&registry), Metrics::new(&registry));
        first.lists.with_label_values(&["v1/pods"]).inc();
        second.lists.with_label_values(&["v1/pods"]).inc();
        second.lists.with_label_values(&["v1/configmaps"]).inc();
        assert_eq!(lists(&registry, "v1/pods"), Some(2));
        assert_eq!(lists(&registry, "v1/configmaps"), Some(1));
        let third = Metrics::new(&registry);
        assert_eq!(third.lists.with_label_values(&["v1/pods"]).get(), 2);

        let other = prometheus::Registry::new();
        let apart = Metrics::new(&other);
        apart.lists.with_label_values(&["v1/pods"]).inc();
        assert_eq!(lists(&other, "v1/pods"), Some(1));
        assert_eq!(lists(&registry, "v1/pods"), Some(2));
    }

    #[test]
    fn a_foreign_collector_under_the_names_leaves_it_in_place() {
        let registry = prometheus::Registry::new();
        let foreign = prometheus::IntCounterVec::new(
            prometheus::Opts::new("vai_sync_lists_total", "Someone else's."),
            &["resource"],
        )
        .unwrap();
        registry.register(Box::new(foreign.clone())).unwrap();
        foreign.with_label_values(&["v1/pods"]).inc_by(7);
        let metrics = Metrics::new(&registry);
        metrics.lists.with_label_values(&["v1/pods"]).inc();
        assert_eq!(lists(&registry, "v1/pods"), Some(7));
        assert_eq!(metrics.lists.with_label_values(&["v1/pods"]).get(), 1);
    }
}
