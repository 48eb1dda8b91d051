//! Configured fields (`--index-field pods=spec.serviceAccountName`) and the path syntax they,
//! and CRDs' `jsonPath`s, are written in.
//!
//! Parsing and validation only; this module must never accept a path it cannot follow (array
//! indices) or one that names what is always queryable.

use super::builtin::group_and_plural;
use crate::comma_list::split_top_level;
use crate::{Error, Result};

/// A field the user asks vai to index for a type: `pods=spec.serviceAccountName`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfiguredField {
    /// The type, as `--resources` names it: `plural` (any group) or `plural.group`.
    pub resource: String,
    /// The field's name in filters: its path as written, without a leading dot.
    pub name: String,
    pub(super) path: Vec<String>,
}

/// How `--index-field` is written, for error hints.
const INDEX_FIELD_HINT: &str = "hint: --index-field pods=spec.serviceAccountName,deployments.apps=spec.replicas; a key with dots goes in brackets: metadata.annotations[example.com/team]";

impl ConfiguredField {
    /// A field at `path` (`spec.replicas`, `metadata.annotations[example.com/team]`) of the type
    /// `resource` (`deployments.apps`).
    pub fn new(resource: &str, path: &str) -> Result<ConfiguredField> {
        let bad = |why: String| {
            Error::InvalidIndexField(format!("{resource}={path}: {why} ({INDEX_FIELD_HINT})"))
        };
        let valid_resource = !resource.is_empty()
            && resource
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-'))
            && !resource.starts_with('.')
            && !resource.ends_with('.');
        if !valid_resource {
            return Err(bad(format!(
                "{resource:?} is not a type name (plural or plural.group, lowercase)"
            )));
        }
        let segments = parse_path(path).map_err(bad)?;
        if segments[0] == "metadata"
            && matches!(
                segments.get(1).map(String::as_str),
                Some("name" | "namespace" | "creationTimestamp" | "labels")
            )
            && (segments.len() == 2 || segments[1] == "labels")
        {
            return Err(bad(
                "metadata.name, .namespace, .creationTimestamp and .labels are always queryable"
                    .into(),
            ));
        }
        Ok(ConfiguredField {
            resource: resource.to_string(),
            name: path.strip_prefix('.').unwrap_or(path).to_string(),
            path: segments,
        })
    }

    /// Parses `--index-field`'s value: `resource=path`, comma-separated; a bare `path` is
    /// another field of the previous item's type (`pods=spec.a,spec.b,deployments.apps=spec.c`).
    pub fn parse_list(text: &str) -> Result<Vec<ConfiguredField>> {
        let mut out = Vec::new();
        let mut resource: Option<String> = None;
        for item in split_top_level(text, '[', ']') {
            let item = item.trim();
            let (res, path) = match item.split_once('=') {
                Some((res, path)) => (res.trim().to_string(), path.trim()),
                None => match &resource {
                    Some(res) => (res.clone(), item),
                    None => {
                        return Err(Error::InvalidIndexField(format!(
                            "{item:?}: expected <resource>=<path> ({INDEX_FIELD_HINT})"
                        )));
                    }
                },
            };
            out.push(ConfiguredField::new(&res, path)?);
            resource = Some(res);
        }
        Ok(out)
    }

    /// Whether it applies to the type with this store key (`group/version/plural`).
    pub fn applies_to(&self, key: &str) -> bool {
        let (group, plural) = group_and_plural(key);
        match self.resource.split_once('.') {
            None => self.resource == plural,
            Some((p, g)) => p == plural && g == group,
        }
    }
}

/// Parses a field path into its keys: `spec.color` or `.spec.color` (a CRD's `jsonPath`), with
/// keys that hold dots in brackets, quoted or not (`metadata.annotations['a.b/c']`,
/// `metadata.annotations[a.b/c]`). Array indices are not followed.
pub(crate) fn parse_path(text: &str) -> std::result::Result<Vec<String>, String> {
    let chars: Vec<char> = text.strip_prefix('.').unwrap_or(text).chars().collect();
    let mut segments = Vec::new();
    let mut at = 0;
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '/' | '$');
    while at < chars.len() {
        if chars[at] == '[' {
            let close = chars[at..]
                .iter()
                .position(|&c| c == ']')
                .ok_or_else(|| format!("unbalanced [ in {text:?}"))?;
            let mut key: String = chars[at + 1..at + close].iter().collect();
            for quote in ['\'', '"'] {
                if key.len() >= 2 && key.starts_with(quote) && key.ends_with(quote) {
                    key = key[1..key.len() - 1].to_string();
                }
            }
            if key.is_empty() || key.chars().all(|c| c.is_ascii_digit() || c == '*') {
                return Err(format!("{text:?} indexes an array or names an empty key"));
            }
            segments.push(key);
            at += close + 1;
        } else {
            let start = at;
            while at < chars.len() && plain(chars[at]) {
                at += 1;
            }
            if at == start {
                return Err(format!(
                    "{text:?} has an empty key or an unexpected {:?} at {at}",
                    chars.get(at).copied().unwrap_or(' ')
                ));
            }
            segments.push(chars[start..at].iter().collect());
        }
        match chars.get(at) {
            None => {}
            Some('.') if at + 1 < chars.len() => at += 1,
            Some('[') => {}
            Some(c) => return Err(format!("unexpected {c:?} in {text:?}")),
        }
    }
    if segments.is_empty() {
        return Err("an empty path".into());
    }
    Ok(segments)
}
