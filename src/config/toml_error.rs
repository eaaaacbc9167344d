//! The message for a config file the `toml` crate rejects (syntax, duplicate
//! key, wrong type, unknown key).
//!
//! The crate's own `Display` echoes the offending line of the file, which may
//! be `client_secret = "..."` or `admin_token = "..."`. The message here keeps
//! the position, the problem and the key, never the line; type names are
//! said in words (`u32` -> an integer).

/// Describes `e`, raised while parsing `text`, without echoing the source.
pub(super) fn describe(mut e: toml::de::Error, text: &str) -> String {
    // A duplicate key's span is the key itself: name it (a bare key is a
    // name from the schema, never a value).
    let duplicate = e
        .span()
        .filter(|_| e.message() == "duplicate key")
        .and_then(|span| text.get(span))
        .filter(|k| {
            !k.is_empty()
                && k.len() <= 64
                && k.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
        })
        .map(|k| format!(" `{k}`"));
    let position = e.span().map(|span| {
        let before = &text.as_bytes()[..span.start.min(text.len())];
        let line = before.iter().filter(|b| **b == b'\n').count() + 1;
        let line_start = before
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(0, |i| i + 1);
        let column = String::from_utf8_lossy(&before[line_start..])
            .chars()
            .count()
            + 1;
        format!("line {line}, column {column}: ")
    });
    // Without its input the error prints its message and the key path only.
    e.set_input(None);
    let rendered = e.to_string();
    let mut lines: Vec<&str> = rendered.trim_end().lines().collect();
    let key = match lines.last() {
        Some(last) if last.starts_with("in `") && lines.len() > 1 => lines.pop(),
        _ => None,
    };
    let mut out = position.unwrap_or_default();
    out += &in_words(&lines.join("; "));
    out += duplicate.as_deref().unwrap_or_default();
    if let Some(key) = key {
        out += &format!(" ({key})");
    }
    out
}

/// Serde's type names in the words of a config file.
fn in_words(message: &str) -> String {
    [
        ("expected u8", "expected an integer"),
        ("expected u16", "expected an integer"),
        ("expected u32", "expected an integer"),
        ("expected u64", "expected an integer"),
        ("expected i64", "expected an integer"),
        ("expected f64", "expected a number"),
        ("expected f32", "expected a number"),
        (
            "expected a sequence",
            "expected a list such as [\"a\", \"b\"]",
        ),
    ]
    .iter()
    .fold(message.to_owned(), |m, (from, to)| m.replace(from, to))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct T {
        n: u32,
        s: crate::secret::Secret,
    }

    fn err(text: &str) -> String {
        describe(toml::from_str::<T>(text).unwrap_err(), text)
    }

    #[test]
    fn the_message_names_line_key_and_type_but_never_the_line() {
        let m = err("s = \"hunter2\"\nn = \"8\"\n");
        assert!(m.starts_with("line 2, column 5: "), "{m}");
        assert!(
            m.contains("expected an integer") && m.contains("`n`"),
            "{m}"
        );
        let m = err("n = 1\ns = 12345\n");
        assert!(!m.contains("12345") && m.contains("`s`"), "{m}");
        let m = err("n = 1\ns = \"hunter2\"\ns = \"hunter3\"\n");
        assert!(m.contains("line 3") && !m.contains("hunter"), "{m}");
        assert!(m.contains("duplicate key `s`"), "{m}");
    }
}
