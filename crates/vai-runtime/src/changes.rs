//! The change stream of a typed store ([`Store::changes`]): what a controller reconciles on.
//! It follows the store's history (`vai_store::Store::watch`), so a consumer that falls
//! behind catches up from where it was; it never holds the objects, only their keys.

use std::collections::{HashSet, VecDeque};

use futures::StreamExt;
use futures::stream::BoxStream;
use kube::Resource;
use serde::de::DeserializeOwned;
use vai_store::EventKind;

use crate::decode;
use crate::store::Store;

/// A change to an object, in commit order.
#[derive(Debug, Clone, PartialEq)]
pub enum Change<K> {
    /// Created or updated (or, after a resync, re-announced).
    Applied(K),
    /// Deleted: its last state (after a resync, its name and namespace only).
    Deleted(K),
}

impl<K> Store<K>
where
    K: Resource + DeserializeOwned + Clone + Send + Sync + 'static,
{
    /// The changes committed from now on, decoded, in commit order — what a controller
    /// reconciles on. The stream follows the store's history, so a consumer that falls behind
    /// the live buffer catches up from where it was, deletions included. One further behind
    /// than the store keeps history gets a resync: every current object as `Applied`, and every
    /// object it knew that is gone as `Deleted` (its name and namespace only: its last state
    /// is no longer kept). An object that does not decode as `K` is logged and skipped. The
    /// stream holds the keys (namespace, name) of the type's objects, not the objects.
    pub fn changes(&self) -> BoxStream<'static, Change<K>> {
        // "From now on": the version the store holds now (a small read); the keys the
        // consumer knows of are read when the stream is first polled.
        let now = match self.inner().resource_state(self.key()) {
            Ok(state) => state.map_or(0, |s| s.last_resource_version),
            Err(e) => {
                tracing::warn!(resource = %self.key(), error = %e, "the change stream starts from the history's start");
                0
            }
        };
        let follow = Follow {
            store: self.clone(),
            watch: None,
            seen_rv: now,
            started: false,
            known: HashSet::new(),
            type_meta: None,
            pending: VecDeque::new(),
        };
        futures::stream::unfold(follow, |mut follow| async move {
            let change = follow.next().await?;
            Some((change, follow))
        })
        .boxed()
    }
}
/// The state of a [`Reflector::changes`] stream.
struct Follow<K: Resource> {
    store: Store<K>,
    watch: Option<vai_store::Watch>,
    /// The resource version delivered last.
    seen_rv: u64,
    /// The keys the consumer knows of have been read.
    started: bool,
    /// The keys of the objects the consumer knows of.
    known: HashSet<(String, String)>,
    /// `apiVersion` and `kind` of the type's objects, as stored (for a resync's deletions).
    type_meta: Option<(String, String)>,
    pending: VecDeque<Change<K>>,
}

/// The objects of a type at one snapshot: (namespace, name, body), and its resource version.
type Snapshot = (Vec<(String, String, Vec<u8>)>, u64);

impl<K> Follow<K>
where
    K: Resource + DeserializeOwned + Clone + Send + Sync + 'static,
{
    async fn next(&mut self) -> Option<Change<K>> {
        loop {
            if let Some(change) = self.pending.pop_front() {
                return Some(change);
            }
            if !self.started {
                // What the consumer knows of is what the store holds.
                let (objects, _) = self.snapshot().await?;
                self.known = objects.into_iter().map(|(ns, n, _)| (ns, n)).collect();
                self.started = true;
            }
            let seen = self.seen_rv;
            let Some(watch) = self.watch.as_mut() else {
                let (store, key) = (self.store.inner().clone(), self.store.key().to_string());
                match tokio::task::spawn_blocking(move || store.watch(&key, seen)).await {
                    Ok(Ok(watch)) => self.watch = Some(watch),
                    Ok(Err(vai_store::Error::Gone { .. })) => self.resync().await?,
                    Ok(Err(e)) => {
                        tracing::warn!(resource = %self.store.key(), error = %e, "the change stream ends");
                        return None;
                    }
                    Err(_) => return None,
                }
                continue;
            };
            match watch.next().await {
                Ok(event) => self.take(&event),
                // Behind the live buffer: follow the history from where the consumer is.
                Err(vai_store::Error::WatchLagged) => self.watch = None,
                Err(_) => return None,
            }
        }
    }

    /// Every object of the type, read on a blocking thread.
    async fn snapshot(&self) -> Option<Snapshot> {
        let (store, key) = (self.store.inner().clone(), self.store.key().to_string());
        let read = tokio::task::spawn_blocking(move || {
            let mut objects = Vec::new();
            let meta = store.list(
                &key,
                &vai_store::ListRequest::default(),
                |ns, name, body| {
                    objects.push((ns.to_string(), name.to_string(), body.to_vec()));
                    Ok(())
                },
            )?;
            Ok::<_, vai_store::Error>((objects, meta.resource_version))
        })
        .await;
        match read {
            Ok(Ok(snapshot)) => Some(snapshot),
            Ok(Err(e)) => {
                tracing::warn!(resource = %self.store.key(), error = %e, "the change stream ends");
                None
            }
            Err(_) => None,
        }
    }

    /// Announces the current objects again, and the known ones that are gone.
    async fn resync(&mut self) -> Option<()> {
        let (objects, rv) = self.snapshot().await?;
        let now: HashSet<(String, String)> = objects
            .iter()
            .map(|(ns, n, _)| (ns.clone(), n.clone()))
            .collect();
        let gone: Vec<(String, String)> = self.known.difference(&now).cloned().collect();
        for (namespace, name) in &gone {
            let (api_version, kind) = self.type_meta.clone().unwrap_or_default();
            let stub = serde_json::json!({
                "apiVersion": api_version, "kind": kind,
                "metadata": {"name": name, "namespace": (!namespace.is_empty()).then_some(namespace)},
            });
            if let Some(object) = self.decode(&stub.to_string().into_bytes(), name) {
                self.pending.push_back(Change::Deleted(object));
            }
        }
        for (_, name, body) in &objects {
            if let Some(object) = self.decode(body, name) {
                self.pending.push_back(Change::Applied(object));
            }
        }
        self.known = now;
        self.seen_rv = rv;
        Some(())
    }

    fn take(&mut self, event: &vai_store::Event) {
        self.seen_rv = event.resource_version;
        let key = (event.namespace.clone(), event.name.clone());
        let change = match event.kind {
            EventKind::Bookmark => return,
            EventKind::Deleted => {
                self.known.remove(&key);
                Change::Deleted
            }
            EventKind::Added | EventKind::Modified => {
                self.known.insert(key);
                Change::Applied
            }
        };
        if let Some(object) = self.decode(&event.body, &event.name) {
            self.pending.push_back(change(object));
        }
    }

    /// Decodes an object, learning the type's `apiVersion` and `kind`; logs what does not decode.
    fn decode(&mut self, body: &[u8], name: &str) -> Option<K> {
        if self.type_meta.is_none()
            && let Ok(meta) = serde_json::from_slice::<TypeMeta>(body)
        {
            self.type_meta = Some((meta.api_version, meta.kind));
        }
        match decode::<K>(body) {
            Ok(object) => Some(object),
            Err(e) => {
                tracing::warn!(resource = %self.store.key(), %name, error = %e,
                    "an object does not decode as the reflector's type; its change is skipped");
                None
            }
        }
    }
}

/// The type fields of a stored object.
#[derive(serde::Deserialize)]
struct TypeMeta {
    #[serde(rename = "apiVersion")]
    api_version: String,
    kind: String,
}
