//! The `fields` column: each version's indexed values as one small JSON object beside it, which
//! an index walk checks in the index itself (see [`crate::fields`]).
//!
//! This module must never be the source of truth: the label rows are; the column is rebuilt
//! from them.

use serde_json::Value;

use super::set::PREFIX;

/// The `fields` column of a version from its indexed field values (label keys with
/// [`PREFIX`]): a JSON object by field name, `None` when the version has none.
pub(crate) fn column(fields: &[(String, String)]) -> Option<String> {
    let object: serde_json::Map<String, Value> = fields
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix(PREFIX)?.to_string(), Value::from(v.as_str()))))
        .collect();
    (!object.is_empty()).then(|| Value::Object(object).to_string())
}

/// Rebuilds the `fields` column from the label rows, of every version of one type (or of all
/// types): after the type's indexed fields changed, or when the column is new.
pub(crate) fn fill_columns(
    conn: &rusqlite::Connection,
    resource_id: Option<i64>,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE versions SET fields = (
             SELECT NULLIF(json_group_object(substr(l.key, 2), l.value), '{}') FROM labels l
             WHERE l.version_id = versions.id AND l.key >= '#' AND l.key < '$')
         WHERE ?1 IS NULL OR resource_id = ?1",
    )?
    .execute([resource_id])?;
    Ok(())
}

/// The JSON path of a field in the `fields` column, where SQLite's path syntax can name it
/// (a quoted label cannot hold `"` or `\`): `$."status.phase"`.
pub(crate) fn column_path(name: &str) -> Option<String> {
    (!name.contains(['"', '\\'])).then(|| format!("$.\"{name}\""))
}
