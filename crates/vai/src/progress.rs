//! Progress of the initial sync: a live line on a terminal, a log line every few seconds
//! otherwise; silent once every type has synced.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use vai_sync::Syncer;

/// Shows progress until every cached type has synced once.
pub async fn show(syncer: Syncer) {
    let terminal = std::io::stderr().is_terminal();
    let bar = terminal.then(|| {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    });
    let started = Instant::now();
    let mut last_log = Instant::now();
    loop {
        let all = syncer.status().all();
        let done = all.values().filter(|s| s.synced).count();
        let loaded: u64 = all.values().map(|s| s.loaded).sum();
        let rate = loaded as f64 / started.elapsed().as_secs_f64().max(0.001);
        let busiest = all
            .iter()
            .filter(|(_, s)| !s.synced)
            .max_by_key(|(_, s)| s.loaded)
            .map(|(k, s)| format!(", {k}: {} loaded", s.loaded))
            .unwrap_or_default();
        let message = format!(
            "initial sync: {done}/{} types, {loaded} objects ({rate:.0}/s){busiest}",
            all.len()
        );
        if done == all.len() {
            if let Some(bar) = &bar {
                bar.finish_and_clear();
            }
            tracing::info!(
                types = all.len(),
                objects = loaded,
                seconds = started.elapsed().as_secs_f64(),
                "initial sync complete"
            );
            return;
        }
        match &bar {
            Some(bar) => bar.set_message(message),
            None if last_log.elapsed() >= Duration::from_secs(5) => {
                tracing::info!("{message}");
                last_log = Instant::now();
            }
            None => {}
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
