//! Comma-separated lists whose items may hold commas inside brackets: label selectors
//! (`env in (a,b),app`) and `--index-field` values (`pods=metadata.annotations[a,b],spec.x`).
//!
//! Splitting only; this module must never interpret an item.

/// Splits `text` at the commas outside `open`…`close` groups. A stray `close` does not
/// swallow the rest of the list: the depth never goes below zero.
pub(crate) fn split_top_level(text: &str, open: char, close: char) -> Vec<&str> {
    let (mut parts, mut depth, mut start) = (Vec::new(), 0usize, 0);
    for (i, c) in text.char_indices() {
        if c == open {
            depth += 1;
        } else if c == close {
            depth = depth.saturating_sub(1);
        } else if c == ',' && depth == 0 {
            parts.push(&text[start..i]);
            start = i + 1;
        }
    }
    parts.push(&text[start..]);
    parts
}

#[cfg(test)]
mod tests {
    use super::split_top_level;

    #[test]
    fn commas_inside_groups_stay_and_a_stray_closer_does_not_swallow_the_rest() {
        assert_eq!(
            split_top_level("env in (a,b),app", '(', ')'),
            vec!["env in (a,b)", "app"]
        );
        assert_eq!(
            split_top_level("pods=m[a,b],spec.x", '[', ']'),
            vec!["pods=m[a,b]", "spec.x"]
        );
        assert_eq!(split_top_level("a),b", '(', ')'), vec!["a)", "b"]);
        assert_eq!(split_top_level("", '(', ')'), vec![""]);
    }
}
