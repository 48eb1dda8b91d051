//! client-go's own `cache` tests for Store, Indexer and ThreadSafeStore behaviour
//! (`tools/cache/store_test.go`, `thread_safe_store_test.go`, `index_test.go`), re-expressed
//! against the vai store: the same scenarios and expectations. Writes go in as a reflector's
//! would (events and replaces); reads go through the typed store and its indexers.

use std::collections::BTreeSet;
use std::sync::Arc;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::runtime::reflector::ObjectRef;
use vai_runtime::Store;
use vai_runtime::indexer::IndexFn;
use vai_store::{Batch, EventKind, StoreConfig};

/// client-go's `testStoreObject{id, val}`: a ConfigMap named `id` whose `data.val` is `val`,
/// optionally with several index values in `data.vals` (comma-separated).
fn obj(id: &str, val: &str, rv: u64) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": id, "namespace": "ns", "resourceVersion": rv.to_string()},
        "data": {"val": val},
    }))
    .unwrap()
}

struct Fixture {
    _dir: tempfile::TempDir,
    raw: vai_store::Store,
    store: Store<ConfigMap>,
    rv: u64,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let raw =
            vai_store::Store::open(&dir.path().join("vai.db"), StoreConfig::default()).unwrap();
        raw.write_blocking(Batch::new("/v1/configmaps").replace(1, Vec::<Vec<u8>>::new()))
            .unwrap();
        let store = Store::<ConfigMap>::new(raw.clone());
        Fixture {
            _dir: dir,
            raw,
            store,
            rv: 1,
        }
    }

    fn write(&mut self, kind: EventKind, id: &str, val: &str) {
        self.rv += 1;
        self.raw
            .write_blocking(Batch::new("/v1/configmaps").event(kind, obj(id, val, self.rv)))
            .unwrap();
    }

    fn add(&mut self, id: &str, val: &str) {
        self.write(EventKind::Added, id, val);
    }
    fn update(&mut self, id: &str, val: &str) {
        self.write(EventKind::Modified, id, val);
    }
    fn delete(&mut self, id: &str) {
        self.write(EventKind::Deleted, id, "");
    }
    fn replace(&mut self, items: &[(&str, &str)]) {
        self.rv += 1;
        let objects: Vec<Vec<u8>> = items.iter().map(|(i, v)| obj(i, v, self.rv)).collect();
        self.raw
            .write_blocking(Batch::new("/v1/configmaps").replace(self.rv, objects))
            .unwrap();
    }

    fn val(&self, id: &str) -> Option<String> {
        self.store
            .get(&ObjectRef::new(id).within("ns"))
            .map(|cm| cm.data.as_ref().unwrap()["val"].clone())
    }

    fn vals(&self) -> BTreeSet<String> {
        self.store
            .state()
            .iter()
            .map(|cm| cm.data.as_ref().unwrap()["val"].clone())
            .collect()
    }
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// `doTestStore`: add, get, update, delete, list, replace.
#[test]
fn store_add_update_delete_list_replace() {
    let mut f = Fixture::new();
    f.add("foo", "bar");
    assert_eq!(
        f.val("foo").as_deref(),
        Some("bar"),
        "didn't find inserted item"
    );
    f.update("foo", "baz");
    assert_eq!(f.val("foo").as_deref(), Some("baz"));
    f.delete("foo");
    assert_eq!(f.val("foo"), None, "found deleted item");

    // Test List.
    f.add("a", "b");
    f.add("c", "d");
    f.add("e", "e");
    assert_eq!(f.vals(), set(&["b", "d", "e"]));
    assert_eq!(f.store.len(), 3);

    // Test ListKeys (client-go's MetaNamespaceKeyFunc keys).
    let keys: BTreeSet<String> = f
        .store
        .state()
        .iter()
        .map(|cm| {
            vai_runtime::indexer::object_key(
                cm.metadata.namespace.as_deref().unwrap_or(""),
                cm.metadata.name.as_deref().unwrap(),
            )
        })
        .collect();
    assert_eq!(keys, set(&["ns/a", "ns/c", "ns/e"]));

    // Test Replace.
    f.replace(&[("foo", "foo"), ("bar", "bar")]);
    assert_eq!(f.vals(), set(&["foo", "bar"]));
    assert!(!f.store.is_empty());
    // GetByKey of a replaced-away object.
    assert_eq!(f.val("a"), None);
}

fn by_val() -> (String, IndexFn<ConfigMap>) {
    (
        "by_val".to_string(),
        Arc::new(|cm: &ConfigMap| {
            cm.data
                .as_ref()
                .and_then(|d| d.get("val"))
                .map(|v| v.split(',').map(String::from).collect())
                .unwrap_or_default()
        }),
    )
}

fn ids(objects: &[ConfigMap]) -> BTreeSet<String> {
    objects
        .iter()
        .map(|cm| cm.metadata.name.clone().unwrap())
        .collect()
}

/// `doTestIndex`: objects sharing an index value are found through it.
#[test]
fn indexer_index_finds_objects_sharing_a_value() {
    let mut f = Fixture::new();
    f.store.indexers().add([by_val()]).unwrap();
    f.add("a", "b");
    f.add("c", "b");
    f.add("e", "f");
    f.add("g", "h");
    let probe = |val: &str| -> ConfigMap { serde_json::from_slice(&obj("", val, 1)).unwrap() };
    for (val, expected) in [
        ("b", set(&["a", "c"])),
        ("f", set(&["e"])),
        ("h", set(&["g"])),
    ] {
        let found = f.store.indexers().index("by_val", &probe(val)).unwrap();
        assert_eq!(ids(&found), expected, "index by {val}");
    }
}

/// `TestThreadSafeStoreIndexingFunctionsWithMultipleValues`: an object indexed under several
/// values; updates move it between them.
#[test]
fn indexes_follow_updates_with_multiple_values() {
    let mut f = Fixture::new();
    let store = f.store.clone();
    let indexers = store.indexers();
    indexers.add([by_val()]).unwrap();
    f.add("foo", "bar");
    f.add("baz", "bar,baz");
    f.add("qux", "baz");
    let keys = |value: &str| indexers.index_keys("by_val", value).unwrap();
    assert_eq!(keys("bar"), vec!["ns/baz", "ns/foo"]);
    assert_eq!(keys("baz"), vec!["ns/baz", "ns/qux"]);

    f.update("foo", "bar,baz");
    assert_eq!(keys("bar"), vec!["ns/baz", "ns/foo"]);
    assert_eq!(keys("baz"), vec!["ns/baz", "ns/foo", "ns/qux"]);

    f.update("baz", "qux");
    assert_eq!(keys("bar"), vec!["ns/foo"]);
    assert_eq!(keys("baz"), vec!["ns/foo", "ns/qux"]);
    assert_eq!(keys("qux"), vec!["ns/baz"]);

    f.delete("foo");
    assert_eq!(keys("bar"), Vec::<String>::new());
    assert_eq!(keys("baz"), vec!["ns/qux"]);
    assert_eq!(
        indexers.list_index_func_values("by_val").unwrap(),
        vec!["baz", "qux"]
    );
    assert_eq!(
        ids(&indexers.by_index("by_val", "qux").unwrap()),
        set(&["baz"])
    );
}

/// `TestIndexErrors` / `TestAddIndexers`: unknown indexes and conflicting names are errors;
/// an indexer added after objects exist indexes them.
#[test]
fn indexer_errors_and_late_indexers() {
    let mut f = Fixture::new();
    f.add("a", "x");
    let store = f.store.clone();
    let indexers = store.indexers();
    assert!(indexers.by_index("missing", "x").is_err());
    assert!(indexers.list_index_func_values("missing").is_err());
    indexers.add([by_val()]).unwrap();
    assert!(
        indexers.add([by_val()]).is_err(),
        "a second by_val conflicts"
    );
    assert_eq!(indexers.index_keys("by_val", "x").unwrap(), vec!["ns/a"]);
    // A replace (a relist) re-indexes: vanished objects leave the index.
    f.replace(&[("b", "x")]);
    assert_eq!(
        f.store.indexers().index_keys("by_val", "x").unwrap(),
        vec!["ns/b"]
    );
}

/// Versioned reads: an object and the whole list as of an earlier resource version.
#[test]
fn reads_as_of_an_earlier_resource_version() {
    let mut f = Fixture::new();
    f.add("a", "one");
    let first = f.rv;
    f.update("a", "two");
    f.add("b", "three");
    let then = f
        .store
        .try_get(Some("ns"), "a", Some(first))
        .unwrap()
        .unwrap();
    assert_eq!(then.data.unwrap()["val"], "one");
    assert_eq!(ids(&f.store.state_at(first).unwrap()), set(&["a"]));
    assert_eq!(ids(&f.store.state_at(f.rv).unwrap()), set(&["a", "b"]));
}

/// The same store read as `DynamicObject`s, for types known only at run time.
#[test]
fn dynamic_objects_read_the_same_data() {
    use kube::api::{ApiResource, DynamicObject};
    let mut f = Fixture::new();
    f.add("a", "one");
    let resource = ApiResource::erase::<ConfigMap>(&());
    let dynamic = Store::<DynamicObject>::for_key(
        f.raw.clone(),
        vai_runtime::resource_key::<DynamicObject>(&resource),
    );
    assert_eq!(dynamic.key(), f.store.key());
    let found = dynamic
        .get(&ObjectRef::new_with("a", resource).within("ns"))
        .unwrap();
    assert_eq!(found.data["data"]["val"], "one");
    assert_eq!(dynamic.len(), 1);
}
