//! Multi-row statement texts, built once per template and row count.
//!
//! The write paths split their rows into chunks and send one multi-row
//! statement per chunk, whose text depends only on the template and the
//! chunk's length: a full chunk's text is the same every time. Building it
//! afresh (and, for PostgreSQL, numbering a few thousand `?`s) for every chunk
//! of every group commit was work the daemon's write path repeated thousands
//! of times a second; each text is now built once and shared (`Arc<str>`,
//! which sqlx takes without copying and keys its prepared statements by).
//!
//! The cache is bounded (see [`BUDGET`]): chunk lengths other than the full
//! one vary with the load, so over a long run every length of every template
//! could be met; past the budget a text is built as before and not kept.
//! A `HashTable` (hashbrown, already used by the link table) is used so a
//! lookup hashes the template's pieces in place, without building a key.

use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, LazyLock, Mutex};

use hashbrown::HashTable;

use super::rows::multi_row;

/// Bytes of statement text kept at most: the full chunks of every template
/// of both backends take about a quarter of a megabyte (some 30,000
/// parameters of 3 to 6 characters); the rest is room for partial chunks.
const BUDGET: usize = 4 << 20;

/// One kept text and the template it was built from.
struct Text {
    hash: u64,
    head: String,
    row: String,
    tail: String,
    rows: usize,
    numbered: bool,
    text: Arc<str>,
}

#[derive(Default)]
struct Cache {
    texts: HashTable<Text>,
    bytes: usize,
    hasher: std::hash::RandomState,
}

static CACHE: LazyLock<Mutex<Cache>> = LazyLock::new(Mutex::default);

/// [`multi_row`]'s text, built on the first use of this template and row
/// count and shared afterwards.
pub(crate) fn cached_multi_row(
    head: &[&str],
    row: &str,
    rows: usize,
    tail: &str,
    numbered: bool,
) -> Arc<str> {
    let same = |t: &Text| {
        t.rows == rows
            && t.numbered == numbered
            && t.row == row
            && t.tail == tail
            && joined_eq(&t.head, head)
    };
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    let hash = {
        let mut h = cache.hasher.build_hasher();
        for piece in head {
            h.write(piece.as_bytes());
        }
        h.write_u8(0xff);
        h.write(row.as_bytes());
        h.write_u8(0xff);
        h.write(tail.as_bytes());
        h.write_usize(rows);
        h.write_u8(u8::from(numbered));
        h.finish()
    };
    if let Some(t) = cache.texts.find(hash, same) {
        return t.text.clone();
    }
    let text: Arc<str> = multi_row(head, row, rows, tail, numbered).into();
    let head = head.concat();
    let size = text.len() + head.len() + row.len() + tail.len();
    if cache.bytes + size <= BUDGET {
        cache.bytes += size;
        cache.texts.insert_unique(
            hash,
            Text {
                hash,
                head,
                row: row.to_owned(),
                tail: tail.to_owned(),
                rows,
                numbered,
                text: text.clone(),
            },
            |t| t.hash,
        );
    }
    text
}

/// Whether `pieces` joined equal `joined`.
fn joined_eq(joined: &str, pieces: &[&str]) -> bool {
    let mut rest = joined;
    for piece in pieces {
        match rest.strip_prefix(piece) {
            Some(r) => rest = r,
            None => return false,
        }
    }
    rest.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_text_is_built_once_per_template_and_row_count_and_equals_a_fresh_one() {
        let head = ["UPDATE t SET seq = ", "nextval('s')", " FROM (VALUES "];
        let a = cached_multi_row(&head, "(?, ?)", 3, ") AS v", true);
        let b = cached_multi_row(&head, "(?, ?)", 3, ") AS v", true);
        assert!(Arc::ptr_eq(&a, &b), "the second use shares the first text");
        assert_eq!(&*a, multi_row(&head, "(?, ?)", 3, ") AS v", true));
        // Same joined head in other pieces: the same statement.
        let joined = [head.concat()];
        let joined: Vec<&str> = joined.iter().map(String::as_str).collect();
        assert_eq!(
            &*cached_multi_row(&joined, "(?, ?)", 3, ") AS v", true),
            &*a
        );
        // Any difference is another text.
        for other in [
            cached_multi_row(&head, "(?, ?)", 2, ") AS v", true),
            cached_multi_row(&head, "(?, ?)", 3, ") AS v", false),
            cached_multi_row(&head, "(?, ?, ?)", 3, ") AS v", true),
            cached_multi_row(&head, "(?, ?)", 3, ") AS w", true),
            cached_multi_row(&head[..2], "(?, ?)", 3, ") AS v", true),
        ] {
            assert_ne!(&*other, &*a);
        }
    }

    #[test]
    fn joined_pieces_compare_as_one_text() {
        assert!(joined_eq("abc", &["a", "bc"]));
        assert!(joined_eq("abc", &["abc"]));
        assert!(!joined_eq("abc", &["ab"]));
        assert!(!joined_eq("ab", &["ab", "c"]));
    }
}
