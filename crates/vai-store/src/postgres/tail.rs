//! Live events for a store that does not write: what the writer (another process) commits,
//! read back from the database and published on the store's broadcast, so that watches on a
//! reader replica see every change, in order.
//!
//! The writer rings a doorbell (`NOTIFY vai_commits`) in each commit; a connection of this
//! module's `LISTEN`s (the standby's thread, `role`, waits on it). A notification carries nothing but "look": the tailer then reads, in
//! one snapshot, each type whose last resource version moved past the one it knows, and
//! publishes that type's stored events after it (and a bookmark at its new version). A
//! notification can be lost while the listening connection is down, so the tailer also looks
//! after every reconnect and at least once a second.
//!
//! This module must never write.

use std::collections::HashMap;
use std::sync::{Arc, mpsc};

use tokio::sync::broadcast;

use super::{Shared, block};
use crate::{Event, Result};

/// The channel the writer notifies on each commit.
pub(super) const CHANNEL: &str = "vai_commits";

/// What the standby's thread is told: by the listening task, or by the store closing.
#[derive(Debug)]
pub(crate) enum Ring {
    /// A commit was notified.
    Commit,
    /// The listening connection ended: look (notifications may have been lost), reconnect.
    Lost,
    /// The store is closing.
    Stop,
}

/// Opens a connection that `LISTEN`s, ringing `ring` for each notification (and once when
/// it ends). The client returned keeps the connection open.
pub(super) fn listen(shared: &Shared, ring: mpsc::Sender<Ring>) -> Result<tokio_postgres::Client> {
    let runtime = shared.runtime();
    let config: tokio_postgres::Config = shared
        .url
        .parse()
        .map_err(|e| crate::Error::Backend(Box::new(e)))?;
    let (client, mut connection) =
        block(runtime.spawn(async move { config.connect(tokio_postgres::NoTls).await }))
            .map_err(|_| crate::Error::Closed)??;
    let tx = ring;
    runtime.spawn(async move {
        loop {
            match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(tokio_postgres::AsyncMessage::Notification(_))) => {
                    if tx.send(Ring::Commit).is_err() {
                        return;
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => {
                    let _ = tx.send(Ring::Lost);
                    return;
                }
            }
        }
    });
    block(client.batch_execute(&format!("LISTEN {CHANNEL}")))?;
    Ok(client)
}

/// Each type's last resource version as the tailer last looked (`None`: not looked yet).
pub(super) type Known = Option<HashMap<String, u64>>;

/// Publishes what was committed since the last look: per type whose last resource version
/// moved, its stored events after the known version, then a bookmark at the new one. The first
/// look only learns the versions: the store takes it before it opens, so every watch's replay
/// starts at or after what the tailer knows, and nothing falls between the two.
pub(super) fn look(
    shared: &Shared,
    events: &broadcast::Sender<Arc<[Event]>>,
    known: &mut Known,
) -> Result<()> {
    let mut out: Vec<Arc<[Event]>> = Vec::new();
    let mut now: HashMap<String, u64> = HashMap::new();
    shared.read(false, &mut |reads| {
        out.clear();
        now.clear();
        for state in reads.resource_states()? {
            let last = state.last_resource_version;
            if let Some(known) = known.as_ref() {
                let from = known.get(&state.resource).copied().unwrap_or(0);
                if last > from {
                    let mut batch = match reads.events_since(&state.resource, from) {
                        Ok(batch) => batch,
                        // Fell out of the window: what remains is published, and watches
                        // of the type resynchronise from their versions (410).
                        Err(crate::Error::Gone { oldest, .. }) => {
                            tracing::warn!(resource = %state.resource, from, oldest, "PostgreSQL: commits fell out of the history window before they were read");
                            reads.events_since(&state.resource, oldest)?
                        }
                        Err(e) => return Err(e),
                    };
                    batch.push(Event::bookmark(state.resource.as_str().into(), last));
                    out.push(batch.into());
                }
            }
            now.insert(state.resource, last);
        }
        Ok(())
    })?;
    *known = Some(std::mem::take(&mut now));
    for batch in out {
        // No subscriber is not an error.
        let _ = events.send(batch);
    }
    Ok(())
}
