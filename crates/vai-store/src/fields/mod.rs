//! Fields of objects that field selectors and the query API can name, per resource type, and
//! reading their values out of an object's JSON.
//!
//! A type's fields (its [`FieldSet`]) come from three places:
//!
//! - **Built in**: the fields the apiserver supports in field selectors for built-in types
//!   (pods' `spec.nodeName`, `status.phase`, …), with its value for an absent field (`""`,
//!   `false`, `0`).
//! - **Declared** by a custom resource's CRD (`spec.versions[].selectableFields`, Kubernetes
//!   1.31+; sync reads them from the cached CRDs): named by the `jsonPath` without its leading
//!   dot (`.spec.color` → `spec.color`), valued as upstream values them (the value's string form,
//!   `""` when absent or null).
//! - **Configured** by the user ([`ConfiguredField`], `vai serve --index-field
//!   pods=spec.serviceAccountName`): indexed for the query API. Field selectors accept one only
//!   where upstream does too (a built-in or declared field of that name); an absent value stays
//!   absent (the query API's `!=` and summaries see it as such).
//!
//! The selective and much-used ones are *indexed*: extracted when an object is stored and kept
//! in the label table under keys no real label can have (`#` then the field's name), so a field
//! selector on them becomes a label requirement and shares the label indexes and query plans
//! (`spec.nodeName=node-7` is answered from the index). A field with a default is stored for
//! every object, with the apiserver's value for an absent field, so `!=` means what it means
//! upstream. The others are evaluated on the objects a query reads. Indexing costs ingest time
//! (each indexed field is a row in two b-trees): measured, eight fields per pod cut ingest by
//! 2.5×, so only what selects well is indexed among the built-in fields; declared and configured
//! fields are always indexed (a CRD declares at most eight, and a user asks for what they query).
//! Each version also carries its indexed values as one small JSON object (the `fields` column,
//! see [`column`]), which an index walk checks in the index itself instead of looking each
//! candidate's label row up; the label rows stay what selects by value and what is counted.
//!
//! Which fields a type has can change while objects are stored (a CRD declares a field, the
//! configuration changes between runs): `crate::registry` keeps the label table in step.

//!
//! The module is split by concern: the built-in tables (`builtin`), configured fields and
//! their path syntax (`configured`), the set of a type and its fields (`set`), reading values
//! out of JSON (`extract`) and the `fields` column kept beside each version (`column`). This
//! module must never touch an object's stored bytes, nor decide what a query means: it says
//! which fields a type has, and what their values are.

mod builtin;
mod column;
mod configured;
mod extract;
mod set;

pub use builtin::builtin;
pub(crate) use column::{column, column_path, fill_columns};
pub use configured::ConfiguredField;
pub(crate) use configured::parse_path;
pub use extract::extract;
pub(crate) use extract::read;
pub use set::{FieldSet, IndexedField, PREFIX};

impl FieldSet {
    /// The set of a type with these sources: its built-in fields, the `jsonPath`s its CRD
    /// declares selectable, and the configured fields that apply to it. A name upstream
    /// already defines keeps upstream's meaning; configuring it makes it indexed.
    pub(crate) fn compose(
        resource: &str,
        declared: &[String],
        configured: &[ConfiguredField],
    ) -> FieldSet {
        let mut fields = builtin(resource).fields;
        for json_path in declared {
            let name = json_path.strip_prefix('.').unwrap_or(json_path);
            let Ok(path) = parse_path(json_path) else {
                tracing::warn!(
                    resource,
                    json_path,
                    "a selectableField vai cannot follow; ignored"
                );
                continue;
            };
            match fields.iter_mut().find(|f| f.name == name) {
                Some(f) => f.selectable = true,
                None => fields.push(IndexedField {
                    name: name.to_string(),
                    path,
                    default: Some(String::new()),
                    selectable: true,
                    indexed: true,
                    declared: true,
                }),
            }
        }
        for c in configured.iter().filter(|c| c.applies_to(resource)) {
            match fields.iter_mut().find(|f| f.name == c.name) {
                Some(f) => f.indexed = true,
                None => fields.push(IndexedField {
                    name: c.name.clone(),
                    path: c.path.clone(),
                    default: None,
                    selectable: false,
                    indexed: true,
                    declared: false,
                }),
            }
        }
        FieldSet::new(fields)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn get<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
        pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn pods_index_the_apiservers_field_selectors_with_its_defaults() {
        let pod = br#"{"metadata":{"name":"p"},"spec":{"nodeName":"n1","hostNetwork":true},"status":{"phase":"Running"}}"#;
        let pods = builtin("/v1/pods");
        let fields = extract(&pods, pod).unwrap();
        assert_eq!(get(&fields, "#spec.nodeName"), Some("n1"));
        assert_eq!(get(&fields, "#status.phase"), Some("Running"));
        assert_eq!(fields.len(), 2, "only the selective pod fields are indexed");
        let object: Value = serde_json::from_slice(pod).unwrap();
        let host_network = pods.get("spec.hostNetwork").unwrap();
        assert!(!host_network.indexed && host_network.selectable);
        assert_eq!(host_network.value_in(&object).as_deref(), Some("true"));
        assert_eq!(
            pods.get("status.podIP")
                .unwrap()
                .value_in(&object)
                .as_deref(),
            Some("")
        );
        let rs: Value =
            serde_json::from_str(r#"{"metadata":{"name":"r"},"status":{"replicas":3}}"#).unwrap();
        let replicasets = builtin("apps/v1/replicasets");
        let replicas = replicasets.get("status.replicas").unwrap();
        assert_eq!(replicas.value_in(&rs).as_deref(), Some("3"));
        let node = br#"{"metadata":{"name":"n"}}"#;
        let fields = extract(&builtin("/v1/nodes"), node).unwrap();
        assert_eq!(fields[0].1, "false");
        assert!(builtin("/v1/configmaps").is_empty());
        assert!(builtin("apps/v1/deployments").is_empty());
        assert_eq!(
            builtin("/v1/events").get("source").unwrap().key(),
            "#source"
        );
    }

    #[test]
    fn extraction_walks_only_the_paths_and_tolerates_any_shape() {
        let fields = builtin("/v1/pods");
        let odd = br#"{"spec":{"containers":[{"nodeName":"no"}],"nodeName":"n\u0031"},"status":["x"],"k\"ey":1}"#;
        let got = extract(&fields, odd).unwrap();
        assert_eq!(got[0], ("#spec.nodeName".to_string(), "n1".to_string()));
        assert_eq!(got[1], ("#status.phase".to_string(), String::new()));
        assert!(extract(&fields, b"{not json").is_err());
        let event = br#"{"involvedObject":{"name":"web","kind":"Pod"},"reason":"x"}"#;
        let got = extract(&builtin("/v1/events"), event).unwrap();
        assert_eq!(
            got,
            vec![("#involvedObject.name".to_string(), "web".to_string())]
        );
    }

    #[test]
    fn declared_fields_take_upstreams_values_and_configured_ones_stay_absent() {
        let configured = ConfiguredField::parse_list(
            "widgets.example.com=spec.size,spec.color,metadata.annotations[example.com/team]",
        )
        .unwrap();
        let declared = [".spec.color".to_string(), ".spec.replicas".to_string()];
        let widgets = FieldSet::compose("example.com/v1/widgets", &declared, &configured);
        let color = widgets.get("spec.color").unwrap();
        assert!(color.selectable && color.indexed, "declared and configured");
        let size = widgets.get("spec.size").unwrap();
        assert!(!size.selectable && size.indexed, "configured only");
        assert!(widgets.selectable("spec.size").is_none());
        assert!(widgets.selectable("spec.replicas").is_some());
        // Upstream: the value's string form, "" when absent or null.
        let object = br#"{"metadata":{"name":"w","resourceVersion":"1","annotations":{"example.com/team":"blue"}},"spec":{"replicas":3,"color":null}}"#;
        let got = extract(&widgets, object).unwrap();
        assert_eq!(get(&got, "#spec.color"), Some(""));
        assert_eq!(get(&got, "#spec.replicas"), Some("3"));
        assert_eq!(get(&got, "#spec.size"), None, "absent, no default");
        assert_eq!(
            get(&got, "#metadata.annotations[example.com/team]"),
            Some("blue")
        );
        let mut metadata = None;
        let got = read(object, &widgets, Some(&mut metadata)).unwrap();
        assert!(metadata.is_some());
        assert_eq!(
            get(&got, "#metadata.annotations[example.com/team]"),
            Some("blue"),
            "fields inside metadata are read in the pass that reads metadata"
        );
        let value: Value = serde_json::from_slice(object).unwrap();
        assert_eq!(size.value_in(&value), None);
        assert_eq!(color.value_in(&value).as_deref(), Some(""));
        // A configured built-in field becomes indexed, keeping upstream's meaning.
        let configured = ConfiguredField::parse_list("pods=spec.serviceAccountName").unwrap();
        let pods = FieldSet::compose("/v1/pods", &[], &configured);
        let account = pods.get("spec.serviceAccountName").unwrap();
        assert!(account.selectable && account.indexed);
        assert_eq!(account.default_value(), Some(""));
        assert!(
            !FieldSet::compose("/v1/secrets", &[], &configured)
                .iter()
                .any(|f| f.name == "spec.serviceAccountName")
        );
        // Two fields on one path (built-in `source` and a configured `source.component`).
        let events = FieldSet::compose(
            "/v1/events",
            &[],
            &ConfiguredField::parse_list("events=source,source.component").unwrap(),
        );
        let got = extract(&events, br#"{"source":{"component":"kubelet"}}"#).unwrap();
        assert_eq!(get(&got, "#source"), Some("kubelet"));
        assert_eq!(get(&got, "#source.component"), Some("kubelet"));
    }

    #[test]
    fn index_field_syntax_is_checked_with_a_hint() {
        let parsed = ConfiguredField::parse_list(
            "pods=spec.serviceAccountName, .spec.priority,deployments.apps=spec.replicas",
        )
        .unwrap();
        let names: Vec<(&str, &str)> = parsed
            .iter()
            .map(|f| (f.resource.as_str(), f.name.as_str()))
            .collect();
        assert_eq!(
            names,
            vec![
                ("pods", "spec.serviceAccountName"),
                ("pods", "spec.priority"),
                ("deployments.apps", "spec.replicas")
            ]
        );
        assert!(parsed[0].applies_to("/v1/pods"));
        assert!(!parsed[0].applies_to("/v1/podtemplates"));
        assert!(parsed[2].applies_to("apps/v1/deployments"));
        assert!(!parsed[2].applies_to("extensions/v1beta1/deployments"));
        for (bad, says) in [
            ("spec.x", "expected <resource>=<path>"),
            ("pods=", "an empty path"),
            ("pods=spec..x", "empty key"),
            ("pods=spec.containers[0].image", "indexes an array"),
            ("Pods=spec.x", "is not a type name"),
            ("pods=metadata.name", "always queryable"),
            ("pods=metadata.labels[app]", "always queryable"),
            ("pods=spec x", "unexpected"),
        ] {
            let error = ConfiguredField::parse_list(bad).unwrap_err().to_string();
            assert!(error.contains(says), "{bad}: {error}");
            assert!(error.starts_with("--index-field "), "{error}");
            assert!(error.contains("hint: "), "{error}");
            assert_eq!(error.lines().count(), 1, "{error}");
        }
        assert_eq!(
            parse_path(".metadata.annotations['a.b/c'].x").unwrap(),
            vec!["metadata", "annotations", "a.b/c", "x"]
        );
        assert_eq!(parse_path("spec[\"a.b\"]").unwrap(), vec!["spec", "a.b"]);
    }
}
