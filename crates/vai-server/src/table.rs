//! `as=Table` answers — what `kubectl get` asks for — built from the cells upstream printed when
//! sync received each object, so vai's tables are upstream's, for every type, offline too.
//!
//! Cells that state an age relative to now are recomputed at request time, never served as they
//! were when captured: `Age` (from `metadata.creationTimestamp`), an event's `Last Seen` and
//! `First Seen`, and the "(5m ago)" of a pod's `Restarts`. Everything else is served as captured.

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};

/// What a table row carries besides its cells (`includeObject`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Include {
    /// Nothing.
    None,
    /// The object's metadata, as `PartialObjectMetadata` (the default).
    Metadata,
    /// The whole object.
    Object,
}

impl Include {
    /// Reads the `includeObject` parameter.
    pub fn parse(value: Option<&str>) -> Result<Include, String> {
        match value {
            None | Some("") | Some("PartialObjectMetadata") => Ok(Include::Metadata),
            Some("Object") => Ok(Include::Object),
            Some("None") => Ok(Include::None),
            Some(other) => Err(format!(
                "includeObject: Unsupported value: {other:?}: supported values: \"None\", \"Object\", \"PartialObjectMetadata\""
            )),
        }
    }
}

/// A type's table: its column definitions (as upstream sent them) and how to fill rows.
#[derive(Debug, Clone)]
pub struct TableForm {
    /// `meta.k8s.io/v1` or `meta.k8s.io/v1beta1`, as asked.
    pub api_version: &'static str,
    /// The column definitions (a JSON array).
    pub columns: Box<RawValue>,
    /// What rows carry besides cells.
    pub include: Include,
    /// Column positions, by the names whose cells are recomputed.
    age: Option<usize>,
    last_seen: Option<usize>,
    first_seen: Option<usize>,
    restarts: Option<usize>,
    name: Option<usize>,
    width: usize,
    /// Custom resources' `date` columns: position and the field path they print.
    dates: Vec<(usize, Vec<String>)>,
}

#[derive(Deserialize)]
struct ColumnDefinition {
    name: String,
}

impl TableForm {
    /// A table form from stored column definitions.
    pub fn new(api_version: &'static str, columns: &[u8], include: Include) -> Option<TableForm> {
        let definitions: Vec<ColumnDefinition> = serde_json::from_slice(columns).ok()?;
        let at = |name: &str| definitions.iter().position(|c| c.name == name);
        Some(TableForm {
            api_version,
            columns: serde_json::from_slice(columns).ok()?,
            include,
            age: at("Age"),
            last_seen: at("Last Seen"),
            first_seen: at("First Seen"),
            restarts: at("Restarts"),
            name: at("Name"),
            width: definitions.len(),
            dates: Vec::new(),
        })
    }

    /// Declares a custom resource's `date` printer columns (`name` → `jsonPath`), so that their
    /// cells are recomputed too. Only simple paths (`.a.b.c`) are understood; others stay as
    /// captured.
    pub fn with_date_columns(mut self, columns: &[(String, String)]) -> TableForm {
        let definitions: Vec<ColumnDefinition> =
            serde_json::from_str(self.columns.get()).unwrap_or_default();
        for (name, path) in columns {
            let simple = path.starts_with('.')
                && path[1..]
                    .split('.')
                    .all(|p| !p.is_empty() && p.chars().all(|c| c.is_alphanumeric() || c == '_'));
            if let Some(i) = definitions.iter().position(|c| &c.name == name)
                && simple
            {
                self.dates
                    .push((i, path[1..].split('.').map(String::from).collect()));
            }
        }
        self
    }

    /// The start of a table holding rows (the caller appends rows, then the end).
    pub fn head(&self, column_definitions: bool) -> String {
        format!(
            r#"{{"kind":"Table","apiVersion":"{}","columnDefinitions":{},"rows":["#,
            self.api_version,
            if column_definitions {
                self.columns.get()
            } else {
                "null"
            }
        )
    }

    /// One row: `{"cells":[…],"object":…}` for an object and the cells captured with it.
    pub fn row(&self, body: &[u8], cells: Option<&[u8]>, now_ms: i64) -> Vec<u8> {
        let object: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let mut cells: Vec<Value> = cells
            .and_then(|c| serde_json::from_slice(c).ok())
            .filter(|c: &Vec<Value>| c.len() == self.width)
            .unwrap_or_else(|| self.fallback_cells(&object));
        let since = |path: &[&str]| -> Option<String> {
            let mut v = &object;
            for p in path {
                v = v.get(p)?;
            }
            let ms = v
                .as_str()?
                .parse::<jiff::Timestamp>()
                .ok()?
                .as_millisecond();
            Some(human_duration(now_ms - ms))
        };
        for (i, path) in &self.dates {
            let path: Vec<&str> = path.iter().map(String::as_str).collect();
            if let Some(age) = since(&path) {
                cells[*i] = json!(age);
            }
        }
        if let Some(i) = self.age {
            cells[i] =
                json!(since(&["metadata", "creationTimestamp"]).unwrap_or("<unknown>".into()));
        }
        if let Some(i) = self.first_seen {
            let first = since(&["firstTimestamp"]).or_else(|| since(&["eventTime"]));
            cells[i] = json!(first.clone().unwrap_or("<unknown>".into()));
        }
        if let Some(i) = self.last_seen {
            let first = since(&["firstTimestamp"]).or_else(|| since(&["eventTime"]));
            let last = since(&["series", "lastObservedTime"])
                .or_else(|| since(&["lastTimestamp"]))
                .or(first);
            cells[i] = json!(last.unwrap_or("<unknown>".into()));
        }
        if let Some(i) = self.restarts
            && let Some(text) = cells[i].as_str()
            && let Some((count, _)) = text.split_once(" (")
            && let Some(latest) = last_restart(&object)
        {
            cells[i] = json!(format!("{count} ({} ago)", human_duration(now_ms - latest)));
        }
        let object = match self.include {
            Include::None => None,
            Include::Object => Some(body.to_vec()),
            Include::Metadata => Some(crate::metadata::metadata_only(body)),
        };
        let mut row = format!(r#"{{"cells":{}"#, Value::Array(cells)).into_bytes();
        if let Some(object) = object {
            row.extend_from_slice(br#","object":"#);
            row.extend_from_slice(&object);
        }
        row.push(b'}');
        row
    }

    /// Cells for an object stored without them: its name, and blanks.
    fn fallback_cells(&self, object: &Value) -> Vec<Value> {
        let mut cells = vec![json!(""); self.width];
        if let Some(i) = self.name {
            cells[i] = object["metadata"]["name"].clone();
        }
        cells
    }

    /// A whole table for one object (a `get`).
    pub fn single(&self, body: &[u8], cells: Option<&[u8]>, now_ms: i64) -> Vec<u8> {
        let resource_version = serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|v| v["metadata"]["resourceVersion"].as_str().map(String::from))
            .unwrap_or_default();
        let mut out = self.head(true).into_bytes();
        out.extend_from_slice(&self.row(body, cells, now_ms));
        out.extend_from_slice(
            format!(r#"],"metadata":{{"resourceVersion":"{resource_version}"}}}}"#).as_bytes(),
        );
        out
    }
}

/// When a pod's containers last restarted (ms since the epoch), as its printer reads it.
fn last_restart(pod: &Value) -> Option<i64> {
    ["initContainerStatuses", "containerStatuses"]
        .iter()
        .filter_map(|list| pod["status"][list].as_array())
        .flatten()
        .filter_map(|s| s["lastState"]["terminated"]["finishedAt"].as_str())
        .filter_map(|t| t.parse::<jiff::Timestamp>().ok())
        .map(|t| t.as_millisecond())
        .max()
}

/// A duration as the apiserver prints ages (`HumanDuration` of k8s.io/apimachinery): `42s`,
/// `5m3s`, `3h10m`, `2d5h`, `1y30d`, …, with less detail as it grows.
pub fn human_duration(ms: i64) -> String {
    let seconds = ms.div_euclid(1000);
    if seconds < -1 {
        return "<invalid>".into();
    }
    if seconds < 0 {
        return "0s".into();
    }
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    let both = |big: i64, a: &str, small: i64, b: &str| {
        if small == 0 {
            format!("{big}{a}")
        } else {
            format!("{big}{a}{small}{b}")
        }
    };
    if minutes < 10 {
        return both(minutes, "m", seconds % 60, "s");
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        return both(hours, "h", minutes % 60, "m");
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        return both(hours / 24, "d", hours % 24, "h");
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        return both(hours / 24 / 365, "y", (hours / 24) % 365, "d");
    }
    format!("{}y", hours / 24 / 365)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_print_as_the_apiserver_prints_them() {
        let s = 1000;
        let m = 60 * s;
        let h = 60 * m;
        let d = 24 * h;
        for (ms, text) in [
            (-5 * s, "<invalid>"),
            (-500, "0s"),
            (0, "0s"),
            (119 * s, "119s"),
            (2 * m, "2m"),
            (5 * m + 3 * s, "5m3s"),
            (10 * m + 59 * s, "10m"),
            (179 * m, "179m"),
            (3 * h + 10 * m, "3h10m"),
            (8 * h, "8h"),
            (47 * h, "47h"),
            (2 * d + 5 * h, "2d5h"),
            (8 * d, "8d"),
            (729 * d, "729d"),
            (2 * 365 * d + 30 * d, "2y30d"),
            (9 * 365 * d, "9y"),
        ] {
            assert_eq!(human_duration(ms), text, "{ms} ms");
        }
    }

    #[test]
    fn rows_recompute_ages_and_carry_what_is_asked() {
        let columns = br#"[{"name":"Name","type":"string"},{"name":"Restarts","type":"string"},{"name":"Age","type":"string"}]"#;
        let pod = br#"{"kind":"Pod","apiVersion":"v1","metadata":{"name":"p","creationTimestamp":"2026-01-01T00:00:00Z"},"status":{"containerStatuses":[{"lastState":{"terminated":{"finishedAt":"2026-01-01T00:50:00Z"}}}]}}"#;
        let now = "2026-01-01T01:00:00Z"
            .parse::<jiff::Timestamp>()
            .unwrap()
            .as_millisecond();
        let form = TableForm::new("meta.k8s.io/v1", columns, Include::Metadata).unwrap();
        let row: Value =
            serde_json::from_slice(&form.row(pod, Some(br#"["p","2 (3s ago)","0s"]"#), now))
                .unwrap();
        assert_eq!(row["cells"], json!(["p", "2 (10m ago)", "60m"]));
        assert_eq!(row["object"]["kind"], "PartialObjectMetadata");
        assert_eq!(row["object"]["metadata"]["name"], "p");
        let form = TableForm::new("meta.k8s.io/v1", columns, Include::None).unwrap();
        let row: Value = serde_json::from_slice(&form.row(pod, None, now)).unwrap();
        assert_eq!(row, json!({"cells": ["p", "", "60m"]}));
        assert!(Include::parse(Some("Everything")).is_err());
    }

    #[test]
    fn custom_date_columns_are_recomputed_from_their_path() {
        let columns = br#"[{"name":"Name","type":"string"},{"name":"Built","type":"date"},{"name":"Odd","type":"date"}]"#;
        let form = TableForm::new("meta.k8s.io/v1", columns, Include::None)
            .unwrap()
            .with_date_columns(&[
                ("Built".into(), ".spec.built".into()),
                ("Odd".into(), ".spec.items[0].at".into()),
            ]);
        let object = br#"{"metadata":{"name":"g"},"spec":{"built":"2026-01-01T00:00:00Z"}}"#;
        let now = "2026-01-01T02:10:00Z"
            .parse::<jiff::Timestamp>()
            .unwrap()
            .as_millisecond();
        let row: Value =
            serde_json::from_slice(&form.row(object, Some(br#"["g","1m","5m"]"#), now)).unwrap();
        assert_eq!(row["cells"], json!(["g", "130m", "5m"]));
    }
}
