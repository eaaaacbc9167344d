//! A growable vector stored in fixed-size chunks, for the link table.
//!
//! A `Vec` grows by doubling: it allocates the larger block, copies, and
//! only then frees the old one (mimalloc's realloc copies large blocks), so
//! while a replica loads its links the table briefly takes twice its size.
//! With 1,000,000 links over three replicas that transient was the peak of
//! each replica's memory (issue 16: each replica at 0.48-0.50 of one, the
//! target 0.45). Here the table only ever adds a chunk: no copy, and at most
//! one chunk's slack.
//!
//! Hand-written rather than a crate: the crates that grow without copying
//! (`boxcar`, `append-only-vec`) are made for concurrent appends and pay an
//! atomic load on every access; the table has one owner, and indexing it is
//! the scheduler's hot path.

use std::ops::{Index, IndexMut};

/// Elements per chunk: 4,096 table entries are about half a megabyte.
const CHUNK: usize = 4096;

/// A vector that grows a chunk at a time and never moves its elements.
#[derive(Debug)]
pub(crate) struct Chunked<T> {
    chunks: Vec<Vec<T>>,
    len: usize,
}

impl<T> Default for Chunked<T> {
    fn default() -> Self {
        Self {
            chunks: Vec::new(),
            len: 0,
        }
    }
}

impl<T> Chunked<T> {
    /// Appends an element.
    pub(crate) fn push(&mut self, value: T) {
        match self.chunks.last_mut() {
            Some(last) if last.len() < CHUNK => last.push(value),
            _ => {
                let mut chunk = Vec::with_capacity(CHUNK);
                chunk.push(value);
                self.chunks.push(chunk);
            }
        }
        self.len += 1;
    }

    /// Number of elements.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The elements in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> {
        self.chunks.iter().flatten()
    }
}

impl<T> Index<usize> for Chunked<T> {
    type Output = T;

    fn index(&self, i: usize) -> &T {
        &self.chunks[i / CHUNK][i % CHUNK]
    }
}

impl<T> IndexMut<usize> for Chunked<T> {
    fn index_mut(&mut self, i: usize) -> &mut T {
        &mut self.chunks[i / CHUNK][i % CHUNK]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elements_keep_their_index_and_their_place_across_chunks() {
        let mut v = Chunked::default();
        let n = CHUNK * 2 + 7;
        for i in 0..n {
            v.push(i);
        }
        let first = std::ptr::from_ref(&v[0]);
        for i in n..n + CHUNK {
            v.push(i);
        }
        assert_eq!(std::ptr::from_ref(&v[0]), first, "never moved");
        assert_eq!(v.len(), n + CHUNK);
        assert!((0..v.len()).all(|i| v[i] == i));
        assert!(v.iter().copied().eq(0..n + CHUNK));
        v[CHUNK + 1] = 0;
        assert_eq!(v[CHUNK + 1], 0);
        assert!(v.chunks.iter().all(|c| c.capacity() == CHUNK));
    }
}
