//! The query API's parameters, in Rancher steve's syntax, parsed into the store's typed page
//! request (no text reaches SQL):
//!
//! - `filter=metadata.name~web,metadata.labels[app]=db` — conditions; commas OR within one
//!   `filter`, repeated `filter`s AND. Operators `=`/`==`, `!=`, `~` (substring), `!~`, `<`, `>`
//!   (numbers, or RFC 3339 times), `in (a,b)`, `notin (a,b)`; a bare label `metadata.labels[k]`
//!   exists, `!metadata.labels[k]` does not. Values may be double-quoted (`\"` and `\\` escape).
//! - `sort=-metadata.creationTimestamp,metadata.name` — keys, `-` for descending; ties are broken
//!   by namespace and name, so pages are stable. `sortcase=insensitive` compares text ignoring
//!   case.
//! - `page=3&pagesize=50` — 1-based pages; the answer carries the total count.
//! - `revision=RV` — every page of a session from one snapshot (`410` once it leaves history).
//! - `summary=status.phase,metadata.namespace` — counts per value.
//!
//! Columns are the type's indexed ones (built in, declared by its CRD, configured with
//! `--index-field`); anything else is a `400` naming them.

use axum::http::Uri;
use vai_store::{Column, Condition, FieldSet, Filter, Operator, SortKey};

use crate::errors::ApiError;

/// Largest page.
pub const MAX_PAGE_SIZE: usize = 10_000;
/// Deepest offset (page × page size) answered.
pub const MAX_OFFSET: usize = 1_000_000;
/// Longest `filter` value, and most conditions per request.
const MAX_FILTER_LEN: usize = 4096;
const MAX_CONDITIONS: usize = 64;

/// A parsed query.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    /// All must hold.
    pub filters: Vec<Filter>,
    /// Sort keys.
    pub sort: Vec<SortKey>,
    /// 1-based page.
    pub page: usize,
    /// Items per page (`None`: all).
    pub page_size: Option<usize>,
    /// The snapshot to read.
    pub revision: Option<u64>,
    /// Columns to count values of.
    pub summary: Vec<Column>,
}

impl Query {
    /// Items skipped before the page.
    pub fn offset(&self) -> usize {
        self.page_size.map_or(0, |size| (self.page - 1) * size)
    }
}

/// The query in a request's parameters, or `None` if it uses none of them; `fields` are the
/// type's ([`vai_store::Store::fields`]).
pub fn parse(fields: &FieldSet, uri: &Uri) -> Result<Option<Query>, ApiError> {
    let pairs: Vec<(String, String)> =
        axum::extract::Query::<Vec<(String, String)>>::try_from_uri(uri)
            .map_err(|e| bad(format!("invalid query: {e}")))?
            .0
            .into_iter()
            .filter(|(k, _)| {
                matches!(
                    k.as_str(),
                    "filter" | "sort" | "sortcase" | "page" | "pagesize" | "revision" | "summary"
                )
            })
            .collect();
    if pairs.is_empty() {
        return Ok(None);
    }
    let mut query = Query {
        page: 1,
        ..Query::default()
    };
    let mut conditions = 0;
    let mut insensitive = false;
    let mut sort_text = None;
    for (key, value) in pairs {
        match key.as_str() {
            "filter" => {
                if value.len() > MAX_FILTER_LEN {
                    return Err(bad(format!("a filter longer than {MAX_FILTER_LEN} bytes")));
                }
                let filter = parse_filter(fields, &value)?;
                conditions += filter.0.len();
                if conditions > MAX_CONDITIONS {
                    return Err(bad(format!("more than {MAX_CONDITIONS} filter conditions")));
                }
                query.filters.push(filter);
            }
            "sort" => sort_text = Some(value),
            "sortcase" => {
                insensitive = match value.as_str() {
                    "insensitive" => true,
                    "sensitive" => false,
                    other => {
                        return Err(bad(format!(
                            "sortcase={other:?}: use \"sensitive\" or \"insensitive\""
                        )));
                    }
                }
            }
            "page" => {
                query.page = number("page", &value)?;
                if query.page == 0 {
                    return Err(bad("page numbers start at 1"));
                }
            }
            "pagesize" => {
                let size = number("pagesize", &value)?;
                if size == 0 || size > MAX_PAGE_SIZE {
                    return Err(bad(format!("pagesize must be 1 to {MAX_PAGE_SIZE}")));
                }
                query.page_size = Some(size);
            }
            "revision" => query.revision = Some(number("revision", &value)? as u64),
            "summary" => {
                for path in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                    query.summary.push(column(fields, path)?);
                }
            }
            _ => unreachable!("filtered above"),
        }
    }
    if let Some(text) = sort_text {
        for key in text.split(',').map(str::trim).filter(|k| !k.is_empty()) {
            let (descending, path) = match key.strip_prefix('-') {
                Some(path) => (true, path),
                None => (false, key),
            };
            query.sort.push(SortKey {
                column: column(fields, path)?,
                descending,
                case_insensitive: insensitive,
            });
        }
    }
    if query.page > 1 && query.page_size.is_none() {
        return Err(bad("page needs pagesize"));
    }
    if query.offset() > MAX_OFFSET {
        return Err(bad(format!(
            "offset {} is deeper than {MAX_OFFSET}; narrow the query with filters",
            query.offset()
        )));
    }
    Ok(Some(query))
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::bad_request(message)
}

fn number(name: &str, value: &str) -> Result<usize, ApiError> {
    value
        .parse()
        .map_err(|_| bad(format!("{name}={value:?} is not a number")))
}

fn column(fields: &FieldSet, path: &str) -> Result<Column, ApiError> {
    Column::parse_for(fields, path).map_err(|e| bad(e.to_string()))
}

/// Parses one `filter` value: conditions separated by commas (outside parentheses and quotes).
pub fn parse_filter(fields: &FieldSet, text: &str) -> Result<Filter, ApiError> {
    let mut parser = Parser {
        chars: text.chars().collect(),
        at: 0,
        text,
    };
    let mut conditions = Vec::new();
    loop {
        conditions.push(parser.condition(fields)?);
        parser.skip_space();
        match parser.next() {
            None => break,
            Some(',') => continue,
            Some(c) => return Err(parser.error(&format!("unexpected {c:?}"))),
        }
    }
    Ok(Filter(conditions))
}

struct Parser<'a> {
    chars: Vec<char>,
    at: usize,
    text: &'a str,
}

impl Parser<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.at).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        self.at += c.is_some() as usize;
        c
    }

    fn skip_space(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.at += 1;
        }
    }

    fn error(&self, what: &str) -> ApiError {
        bad(format!(
            "invalid filter {:?}: {what} at position {}",
            self.text, self.at
        ))
    }

    /// A field path: `a.b.c` or `metadata.labels[key]`.
    fn field(&mut self) -> Result<String, ApiError> {
        let start = self.at;
        while let Some(c) = self.peek() {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/') {
                self.at += 1;
            } else if c == '[' {
                while let Some(c) = self.next() {
                    if c == ']' {
                        break;
                    }
                }
                if self.chars[self.at - 1] != ']' {
                    return Err(self.error("unbalanced ["));
                }
            } else {
                break;
            }
        }
        if self.at == start {
            return Err(self.error("a field name expected"));
        }
        Ok(self.chars[start..self.at].iter().collect())
    }

    /// A value: double-quoted, or a run up to `,` `(` `)` (trimmed).
    fn value(&mut self) -> Result<String, ApiError> {
        self.skip_space();
        if self.peek() == Some('"') {
            self.at += 1;
            let mut out = String::new();
            loop {
                match self.next() {
                    None => return Err(self.error("unterminated quote")),
                    Some('"') => return Ok(out),
                    Some('\\') => match self.next() {
                        Some(c @ ('"' | '\\')) => out.push(c),
                        _ => return Err(self.error("unknown escape")),
                    },
                    Some(c) => out.push(c),
                }
            }
        }
        let start = self.at;
        while self.peek().is_some_and(|c| !matches!(c, ',' | '(' | ')')) {
            self.at += 1;
        }
        Ok(self.chars[start..self.at]
            .iter()
            .collect::<String>()
            .trim()
            .to_string())
    }

    fn condition(&mut self, fields: &FieldSet) -> Result<Condition, ApiError> {
        self.skip_space();
        let negated = self.peek() == Some('!');
        if negated {
            self.at += 1;
        }
        let path = self.field()?;
        let column = column(fields, &path)?;
        self.skip_space();
        let rest: String = self.chars[self.at..].iter().collect();
        let (operator, width) = if negated {
            (Operator::NotExists, 0)
        } else if rest.is_empty() || rest.starts_with(',') {
            (Operator::Exists, 0)
        } else if rest.starts_with("notin") {
            (Operator::NotIn, 5)
        } else if rest.starts_with("in") {
            (Operator::In, 2)
        } else if rest.starts_with("==") {
            (Operator::Eq, 2)
        } else if rest.starts_with("!=") {
            (Operator::NotEq, 2)
        } else if rest.starts_with("!~") {
            (Operator::NotContains, 2)
        } else if rest.starts_with('=') {
            (Operator::Eq, 1)
        } else if rest.starts_with('~') {
            (Operator::Contains, 1)
        } else if rest.starts_with('<') {
            (Operator::Lt, 1)
        } else if rest.starts_with('>') {
            (Operator::Gt, 1)
        } else {
            return Err(self.error("an operator expected (=, !=, ~, !~, <, >, in, notin)"));
        };
        self.at += width;
        if matches!(operator, Operator::Exists | Operator::NotExists)
            && !matches!(column, Column::Label(_))
        {
            return Err(self.error("existence applies to labels only"));
        }
        let values = match operator {
            Operator::Exists | Operator::NotExists => Vec::new(),
            Operator::In | Operator::NotIn => {
                self.skip_space();
                if self.next() != Some('(') {
                    return Err(self.error("( expected"));
                }
                let mut values = Vec::new();
                loop {
                    values.push(self.value()?);
                    self.skip_space();
                    match self.next() {
                        Some(',') => continue,
                        Some(')') => break,
                        _ => return Err(self.error("unbalanced parentheses")),
                    }
                }
                values
            }
            _ => vec![self.value()?],
        };
        Ok(Condition {
            column,
            operator,
            values,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pods() -> FieldSet {
        vai_store::fields::builtin("/v1/pods")
    }

    fn filter(text: &str) -> Result<Filter, String> {
        parse_filter(&pods(), text).map_err(|e| e.message)
    }

    fn cond(column: Column, operator: Operator, values: &[&str]) -> Condition {
        Condition {
            column,
            operator,
            values: values.iter().map(|v| v.to_string()).collect(),
        }
    }

    #[test]
    fn filters_in_steves_syntax() {
        use Operator::*;
        let label = |k: &str| Column::Label(k.into());
        assert_eq!(
            filter("metadata.name~web,metadata.labels[app]=db")
                .unwrap()
                .0,
            vec![
                cond(Column::Name, Contains, &["web"]),
                cond(label("app"), Eq, &["db"])
            ]
        );
        assert_eq!(
            filter(r#"metadata.namespace in (a, "b,c"), status.phase notin (Failed)"#)
                .unwrap()
                .0,
            vec![
                cond(Column::Namespace, In, &["a", "b,c"]),
                cond(Column::Field("status.phase".into()), NotIn, &["Failed"])
            ]
        );
        assert_eq!(
            filter("metadata.labels[tier],!metadata.labels[legacy]")
                .unwrap()
                .0,
            vec![
                cond(label("tier"), Exists, &[]),
                cond(label("legacy"), NotExists, &[])
            ]
        );
        assert_eq!(
            filter("metadata.creationTimestamp>2026-01-01T00:00:00Z")
                .unwrap()
                .0,
            vec![cond(
                Column::CreationTimestamp,
                Gt,
                &["2026-01-01T00:00:00Z"]
            )]
        );
        assert_eq!(
            filter(r#"metadata.name!~"a\"b""#).unwrap().0,
            vec![cond(Column::Name, NotContains, &[r#"a"b"#])]
        );
    }

    #[test]
    fn bad_filters_are_refused_with_a_reason() {
        for (text, says) in [
            ("metadata.namespace in (a,b", "unbalanced parentheses"),
            ("metadata.name ?? x", "an operator expected"),
            (
                "spec.containers=x",
                "is not indexed; indexed fields: metadata.name",
            ),
            ("metadata.name=\"open", "unterminated quote"),
            ("!metadata.name", "existence applies to labels only"),
            ("metadata.labels[app", "unbalanced ["),
            ("'; DROP TABLE versions; --", "a field name expected"),
            ("", "a field name expected"),
        ] {
            let error = filter(text).unwrap_err();
            assert!(error.contains(says), "{text:?}: {error}");
        }
    }

    fn query(q: &str) -> Result<Option<Query>, String> {
        parse(&pods(), &format!("/api/v1/pods?{q}").parse().unwrap()).map_err(|e| e.message)
    }

    #[test]
    fn pages_sorts_revisions_and_summaries() {
        assert_eq!(query("labelSelector=a%3Db").unwrap(), None);
        let q = query("sort=-metadata.creationTimestamp,metadata.name&sortcase=insensitive&page=3&pagesize=50&revision=42&summary=status.phase").unwrap().unwrap();
        assert_eq!(q.offset(), 100);
        assert_eq!(q.revision, Some(42));
        assert!(q.sort[0].descending && q.sort[0].case_insensitive);
        assert_eq!(q.sort[1].column, Column::Name);
        assert_eq!(q.summary, vec![Column::Field("status.phase".into())]);
        let two = query("filter=metadata.name~a&filter=metadata.name~b")
            .unwrap()
            .unwrap();
        assert_eq!(two.filters.len(), 2);
        for (q, says) in [
            ("pagesize=1000000000", "pagesize must be 1 to 10000"),
            ("page=0&pagesize=10", "page numbers start at 1"),
            ("page=200000&pagesize=10000", "deeper than"),
            ("page=2", "page needs pagesize"),
            ("sort=spec.containers", "is not indexed"),
            ("revision=abc", "is not a number"),
            ("sortcase=maybe", "sortcase"),
        ] {
            let error = query(q).unwrap_err();
            assert!(error.contains(says), "{q}: {error}");
        }
    }
}
