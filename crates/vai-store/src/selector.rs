//! Kubernetes label and field selectors, parsed into a typed form before anything touches SQL.
//!
//! The grammar and the validation follow the apiserver's (`k8s.io/apimachinery/pkg/labels` and
//! `.../fields`): comma-separated requirements, all of which must hold. Label requirements:
//! `k`, `!k`, `k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`, `k>n`, `k<n`. Field
//! requirements: `f=v`, `f==v`, `f!=v`. `!=` and `notin` also match objects without the label,
//! as upstream. This module only parses; `crate::sql` turns the result into SQL parameters.

use crate::comma_list::split_top_level;
use crate::{Error, Result};

/// One label requirement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LabelRequirement {
    /// The label is present (`k`).
    Exists(String),
    /// The label is absent (`!k`).
    NotExists(String),
    /// The label has one of these values (`k=v`, `k==v`, `k in (a,b)`).
    In(String, Vec<String>),
    /// The label is absent or has none of these values (`k!=v`, `k notin (a,b)`).
    NotIn(String, Vec<String>),
    /// The label's value is an integer greater than this (`k>n`).
    GreaterThan(String, i64),
    /// The label's value is an integer less than this (`k<n`).
    LessThan(String, i64),
}

/// A parsed label selector: every requirement must hold. Empty selects everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector(pub Vec<LabelRequirement>);

impl LabelSelector {
    /// Parses the apiserver's label selector syntax.
    pub fn parse(input: &str) -> Result<LabelSelector> {
        let mut requirements = Vec::new();
        for part in split_top_level(input, '(', ')') {
            let part = part.trim();
            if part.is_empty() {
                if input.trim().is_empty() {
                    continue;
                }
                return Err(invalid_label(input, "empty requirement"));
            }
            requirements
                .push(parse_label_requirement(part).map_err(|why| invalid_label(input, &why))?);
        }
        Ok(LabelSelector(requirements))
    }

    /// Whether these labels satisfy the selector (the reference semantics the SQL must match).
    pub fn matches<'a>(&self, mut get: impl FnMut(&str) -> Option<&'a str>) -> bool {
        self.0.iter().all(|r| match r {
            LabelRequirement::Exists(k) => get(k).is_some(),
            LabelRequirement::NotExists(k) => get(k).is_none(),
            LabelRequirement::In(k, vs) => get(k).is_some_and(|v| vs.iter().any(|x| x == v)),
            LabelRequirement::NotIn(k, vs) => get(k).is_none_or(|v| vs.iter().all(|x| x != v)),
            LabelRequirement::GreaterThan(k, n) => {
                get(k).and_then(canonical_integer).is_some_and(|v| v > *n)
            }
            LabelRequirement::LessThan(k, n) => {
                get(k).and_then(canonical_integer).is_some_and(|v| v < *n)
            }
        })
    }
}

/// A label value as `>`/`<` compare it: an integer in canonical form only (no sign, no leading
/// zero), as the SQL compares it (`crate::sql::list`), so that lists and watches agree.
fn canonical_integer(v: &str) -> Option<i64> {
    v.parse::<i64>().ok().filter(|n| n.to_string() == v)
}

fn invalid_label(input: &str, why: &str) -> Error {
    Error::InvalidSelector(format!(
        "unable to parse requirement in label selector {input:?}: {why}"
    ))
}

fn parse_label_requirement(part: &str) -> std::result::Result<LabelRequirement, String> {
    if let Some(key) = part.strip_prefix('!') {
        let key = key.trim();
        validate_key(key)?;
        return Ok(LabelRequirement::NotExists(key.to_string()));
    }
    for (op, negate) in [("!=", true), ("==", false), ("=", false)] {
        if let Some((key, value)) = part.split_once(op) {
            let (key, value) = (key.trim(), value.trim());
            validate_key(key)?;
            validate_value(value)?;
            let values = vec![value.to_string()];
            return Ok(if negate {
                LabelRequirement::NotIn(key.to_string(), values)
            } else {
                LabelRequirement::In(key.to_string(), values)
            });
        }
    }
    for (op, greater) in [(">", true), ("<", false)] {
        if let Some((key, value)) = part.split_once(op) {
            let key = key.trim();
            validate_key(key)?;
            let n: i64 = value.trim().parse().map_err(|_| {
                format!(
                    "for '{op}' the value must be an integer, got {:?}",
                    value.trim()
                )
            })?;
            return Ok(if greater {
                LabelRequirement::GreaterThan(key.to_string(), n)
            } else {
                LabelRequirement::LessThan(key.to_string(), n)
            });
        }
    }
    let mut words = part.splitn(2, char::is_whitespace);
    let key = words.next().unwrap_or_default();
    let rest = words.next().unwrap_or_default().trim_start();
    validate_key(key)?;
    if rest.is_empty() {
        return Ok(LabelRequirement::Exists(key.to_string()));
    }
    let (negate, set) = if let Some(set) = rest.strip_prefix("notin") {
        (true, set)
    } else if let Some(set) = rest.strip_prefix("in") {
        (false, set)
    } else {
        return Err(format!("unknown operator in {part:?}"));
    };
    let set = set.trim();
    let inner = set
        .strip_prefix('(')
        .and_then(|s| s.strip_suffix(')'))
        .ok_or_else(|| format!("expected a parenthesised set of values, got {set:?}"))?;
    let mut values = Vec::new();
    for value in inner.split(',') {
        let value = value.trim();
        validate_value(value)?;
        values.push(value.to_string());
    }
    Ok(if negate {
        LabelRequirement::NotIn(key.to_string(), values)
    } else {
        LabelRequirement::In(key.to_string(), values)
    })
}

/// A label key: an optional DNS-subdomain prefix and `/`, then a name of 1–63 characters.
fn validate_key(key: &str) -> std::result::Result<(), String> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix {
        let ok = !prefix.is_empty()
            && prefix.len() <= 253
            && prefix.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                    && !l.starts_with('-')
                    && !l.ends_with('-')
            });
        if !ok {
            return Err(format!(
                "invalid label key {key:?}: prefix must be a DNS subdomain"
            ));
        }
    }
    if name.is_empty() || !is_label_name(name) {
        return Err(format!(
            "invalid label key {key:?}: name part must be 1-63 alphanumeric characters, '-', '_' or '.', starting and ending with an alphanumeric character"
        ));
    }
    Ok(())
}

fn validate_value(value: &str) -> std::result::Result<(), String> {
    if value.is_empty() || is_label_name(value) {
        Ok(())
    } else {
        Err(format!(
            "invalid label value {value:?}: must be 63 characters or less, alphanumeric, '-', '_' or '.', starting and ending with an alphanumeric character"
        ))
    }
}

fn is_label_name(s: &str) -> bool {
    let bytes = s.as_bytes();
    s.len() <= 63
        && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// A field a selector names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    /// `metadata.name`
    Name,
    /// `metadata.namespace`
    Namespace,
    /// Another field: answered where the type has it (built in, declared by its CRD, or
    /// configured where upstream selects on it too; see [`crate::fields`]), refused with
    /// [`Error::UnsupportedField`] otherwise, as upstream refuses it.
    Other(String),
}

/// One field requirement: `field = value` or `field != value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldRequirement {
    /// The field.
    pub field: Field,
    /// `true` for `!=`.
    pub negate: bool,
    /// The value compared with.
    pub value: String,
}

/// A parsed field selector: every requirement must hold. Empty selects everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector(pub Vec<FieldRequirement>);

impl FieldSelector {
    /// Parses the apiserver's field selector syntax for the fields every resource supports.
    pub fn parse(input: &str) -> Result<FieldSelector> {
        let mut requirements = Vec::new();
        if input.trim().is_empty() {
            return Ok(FieldSelector(requirements));
        }
        for part in input.split(',') {
            let (field, negate, value) = if let Some((f, v)) = part.split_once("!=") {
                (f, true, v)
            } else if let Some((f, v)) = part.split_once("==") {
                (f, false, v)
            } else if let Some((f, v)) = part.split_once('=') {
                (f, false, v)
            } else {
                return Err(Error::InvalidSelector(format!(
                    "invalid selector: {input:?}; can't understand {part:?}"
                )));
            };
            let field = match field.trim() {
                "metadata.name" => Field::Name,
                "metadata.namespace" => Field::Namespace,
                other
                    if !other.is_empty()
                        && other
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')) =>
                {
                    Field::Other(other.to_string())
                }
                other => {
                    return Err(Error::InvalidSelector(format!(
                        "invalid selector: {input:?}; {other:?} is not a field name"
                    )));
                }
            };
            requirements.push(FieldRequirement {
                field,
                negate,
                value: value.trim().to_string(),
            });
        }
        Ok(FieldSelector(requirements))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use LabelRequirement::*;

    fn s(v: &str) -> String {
        v.to_string()
    }

    #[test]
    fn parses_the_full_label_grammar() {
        let parsed = LabelSelector::parse(
            "app=web, tier==front,env!=prod,region in (eu, us),zone notin (a),canary,!legacy,n>3,m<10",
        )
        .unwrap();
        assert_eq!(
            parsed.0,
            vec![
                In(s("app"), vec![s("web")]),
                In(s("tier"), vec![s("front")]),
                NotIn(s("env"), vec![s("prod")]),
                In(s("region"), vec![s("eu"), s("us")]),
                NotIn(s("zone"), vec![s("a")]),
                Exists(s("canary")),
                NotExists(s("legacy")),
                GreaterThan(s("n"), 3),
                LessThan(s("m"), 10),
            ]
        );
        assert_eq!(
            LabelSelector::parse("example.com/app=x").unwrap().0,
            vec![In(s("example.com/app"), vec![s("x")])]
        );
        assert_eq!(LabelSelector::parse("").unwrap().0, vec![]);
        assert_eq!(
            LabelSelector::parse("a=").unwrap().0,
            vec![In(s("a"), vec![s("")])]
        );
    }

    #[test]
    fn rejects_hostile_and_malformed_label_selectors() {
        for bad in [
            "a=b=c",
            "app in web",
            "app in (a b)",
            "'; DROP TABLE objects; --",
            "-app=x",
            "app=x,",
            "a>b",
            "x/y/z=1",
            &"k".repeat(64),
            "app=(x)",
        ] {
            let err = LabelSelector::parse(bad).unwrap_err();
            assert!(
                matches!(err, Error::InvalidSelector(_)),
                "{bad:?} gave {err:?}"
            );
        }
    }

    #[test]
    fn not_in_matches_missing_labels_as_upstream_does() {
        let sel = LabelSelector::parse("env!=prod").unwrap();
        assert!(sel.matches(|_| None));
        assert!(!sel.matches(|_| Some("prod")));
        assert!(sel.matches(|_| Some("dev")));
    }

    #[test]
    fn field_selectors_name_fields_and_values() {
        let parsed = FieldSelector::parse("metadata.name=a,metadata.namespace!=b").unwrap();
        assert_eq!(parsed.0.len(), 2);
        assert!(parsed.0[1].negate);
        let parsed = FieldSelector::parse("spec.nodeName==x").unwrap();
        assert_eq!(parsed.0[0].field, Field::Other("spec.nodeName".into()));
        assert!(matches!(
            FieldSelector::parse("spec.node Name=x"),
            Err(Error::InvalidSelector(_))
        ));
        assert!(matches!(
            FieldSelector::parse("metadata.name"),
            Err(Error::InvalidSelector(_))
        ));
    }
}
