//! Indexers with client-go's semantics (`cache.Indexer`): named index functions from an object
//! to values, and `index`, `by_index`, `index_keys`, `list_index_func_values`.
//!
//! Only keys are held in memory, never objects: an index maps each value to the keys
//! (`namespace/name`, or `name` when cluster-scoped) of the objects that have it, and objects are
//! decoded from the store when asked for. An index follows the store through its event history:
//! before answering it applies every event committed since it last looked, so an answer is
//! consistent with the store at that moment (the objects returned are read at the resource
//! version the index reached). An index that falls out of the history window rebuilds itself.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use kube::Resource;
use serde::de::DeserializeOwned;
use vai_store::{EventKind, ListRequest};

use crate::Error;
use crate::decode;

/// An index function: the values an object is indexed under (client-go's `IndexFunc`).
pub type IndexFn<K> = Arc<dyn Fn(&K) -> Vec<String> + Send + Sync>;

/// The object key client-go uses (`MetaNamespaceKeyFunc`): `namespace/name`, or `name`.
pub fn object_key(namespace: &str, name: &str) -> String {
    if namespace.is_empty() {
        name.to_string()
    } else {
        format!("{namespace}/{name}")
    }
}

/// The indexers of one type's store.
pub struct Indexers<K> {
    store: vai_store::Store,
    key: String,
    state: Mutex<State<K>>,
}

struct State<K> {
    funcs: BTreeMap<String, IndexFn<K>>,
    /// The resource version the indexes reflect (`None`: not built yet).
    applied: Option<u64>,
    /// index → value → object keys.
    by_value: HashMap<String, HashMap<String, BTreeSet<String>>>,
    /// object key → index → values (to remove an object's old entries).
    values_of: HashMap<String, HashMap<String, Vec<String>>>,
}

impl<K> State<K> {
    fn remove(&mut self, object: &str) {
        for (index, values) in self.values_of.remove(object).unwrap_or_default() {
            let Some(map) = self.by_value.get_mut(&index) else {
                continue;
            };
            for value in values {
                if let Some(keys) = map.get_mut(&value) {
                    keys.remove(object);
                    if keys.is_empty() {
                        map.remove(&value);
                    }
                }
            }
        }
    }

    fn insert(&mut self, object: &str, decoded: &K) {
        let mut values_of = HashMap::new();
        for (index, func) in &self.funcs {
            let values = func(decoded);
            let map = self.by_value.entry(index.clone()).or_default();
            for value in &values {
                map.entry(value.clone())
                    .or_default()
                    .insert(object.to_string());
            }
            values_of.insert(index.clone(), values);
        }
        self.values_of.insert(object.to_string(), values_of);
    }
}

impl<K> Indexers<K>
where
    K: Resource + DeserializeOwned + Clone + Send + Sync + 'static,
{
    pub(crate) fn new(store: vai_store::Store, key: String) -> Indexers<K> {
        Indexers {
            store,
            key,
            state: Mutex::new(State {
                funcs: BTreeMap::new(),
                applied: None,
                by_value: HashMap::new(),
                values_of: HashMap::new(),
            }),
        }
    }

    /// Adds named index functions (client-go's `AddIndexers`). A name already in use is an
    /// error; existing objects are indexed on the next query.
    pub fn add(
        &self,
        indexers: impl IntoIterator<Item = (String, IndexFn<K>)>,
    ) -> Result<(), Error> {
        let mut state = self.state.lock().expect("index lock");
        let new: Vec<(String, IndexFn<K>)> = indexers.into_iter().collect();
        if let Some((name, _)) = new.iter().find(|(n, _)| state.funcs.contains_key(n)) {
            return Err(Error::Index(format!("indexer conflict: {name}")));
        }
        state.funcs.extend(new);
        // Rebuilt with every function on the next query.
        state.applied = None;
        Ok(())
    }

    /// Brings the indexes up to the store's latest committed state.
    fn catch_up(&self, state: &mut State<K>) -> Result<u64, Error> {
        if let Some(applied) = state.applied {
            match self.store.events_since(&self.key, applied) {
                Ok(events) => {
                    let mut at = applied;
                    for event in events {
                        at = at.max(event.resource_version);
                        if event.kind == EventKind::Bookmark {
                            continue;
                        }
                        let object = object_key(&event.namespace, &event.name);
                        state.remove(&object);
                        if event.kind != EventKind::Deleted {
                            state.insert(&object, &decode::<K>(&event.body)?);
                        }
                    }
                    // Everything up to `at` is applied (a later commit is picked up next time).
                    state.applied = Some(at);
                    return Ok(at);
                }
                Err(vai_store::Error::Gone { .. }) => {}
                Err(vai_store::Error::UnknownResource(_)) => return Ok(applied),
                Err(e) => return Err(e.into()),
            }
        }
        // Build (or rebuild) from one snapshot.
        state.by_value.clear();
        state.values_of.clear();
        let mut decoded = Vec::new();
        let listed = self
            .store
            .list(&self.key, &ListRequest::default(), |ns, name, body| {
                decoded.push((object_key(ns, name), body.to_vec()));
                Ok(())
            });
        let at = match listed {
            Ok(meta) => meta.resource_version,
            Err(vai_store::Error::UnknownResource(_)) => 0,
            Err(e) => return Err(e.into()),
        };
        for (object, body) in decoded {
            state.insert(&object, &decode::<K>(&body)?);
        }
        state.applied = Some(at);
        Ok(at)
    }

    fn keys_for(&self, name: &str, values: &[String]) -> Result<(Vec<String>, u64), Error> {
        let mut state = self.state.lock().expect("index lock");
        if !state.funcs.contains_key(name) {
            return Err(Error::Index(format!(
                "index with name {name} does not exist"
            )));
        }
        let at = self.catch_up(&mut state)?;
        let map = state.by_value.get(name);
        let mut keys = BTreeSet::new();
        for value in values {
            if let Some(found) = map.and_then(|m| m.get(value)) {
                keys.extend(found.iter().cloned());
            }
        }
        Ok((keys.into_iter().collect(), at))
    }

    /// Reads the objects with these keys as of `at` (the resource version the index reached).
    fn objects(&self, keys: &[String], at: u64) -> Result<Vec<K>, Error> {
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            let (ns, name) = key.split_once('/').unwrap_or(("", key));
            let body = match self.store.get(&self.key, ns, name, Some(at)) {
                Err(vai_store::Error::Gone { .. }) => self.store.get(&self.key, ns, name, None)?,
                other => other?,
            };
            if let Some(body) = body {
                out.push(decode(&body)?);
            }
        }
        Ok(out)
    }

    /// The objects that share any index value with `object` under index `name` (client-go's
    /// `Index`).
    pub fn index(&self, name: &str, object: &K) -> Result<Vec<K>, Error> {
        let func = {
            let state = self.state.lock().expect("index lock");
            state.funcs.get(name).cloned()
        }
        .ok_or_else(|| Error::Index(format!("index with name {name} does not exist")))?;
        let (keys, at) = self.keys_for(name, &func(object))?;
        self.objects(&keys, at)
    }

    /// The objects indexed under `value` (client-go's `ByIndex`).
    pub fn by_index(&self, name: &str, value: &str) -> Result<Vec<K>, Error> {
        let (keys, at) = self.keys_for(name, &[value.to_string()])?;
        self.objects(&keys, at)
    }

    /// The keys of the objects indexed under `value` (client-go's `IndexKeys`), sorted.
    pub fn index_keys(&self, name: &str, value: &str) -> Result<Vec<String>, Error> {
        Ok(self.keys_for(name, &[value.to_string()])?.0)
    }

    /// Every value some object is indexed under (client-go's `ListIndexFuncValues`), sorted.
    pub fn list_index_func_values(&self, name: &str) -> Result<Vec<String>, Error> {
        let mut state = self.state.lock().expect("index lock");
        if !state.funcs.contains_key(name) {
            return Err(Error::Index(format!(
                "index with name {name} does not exist"
            )));
        }
        self.catch_up(&mut state)?;
        let mut values: Vec<String> = state
            .by_value
            .get(name)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        values.sort();
        Ok(values)
    }

    /// The names of the index functions.
    pub fn names(&self) -> Vec<String> {
        let state = self.state.lock().expect("index lock");
        state.funcs.keys().cloned().collect()
    }
}
