//! One daemon per SQLite file.
//!
//! SQLite serves a single replica (DESIGN: PostgreSQL when several replicas
//! share the work). Rather than guard every POST with a claim in the
//! database — which cost a third of the store's time per POST — the daemon
//! holds an exclusive lock on a file beside the database for as long as it
//! runs. A second `linkfresh run` on the same file stops at start with a
//! message naming the holder, so two daemons can never refresh the same
//! links twice. The operator commands (`status`, `pause`, ...) do not take
//! it: they write through the store's change sequence, which the running
//! daemon polls.
//!
//! The lock is the kernel's (`flock` via [`std::fs::File::try_lock`]): it is
//! released when the process dies, even by `kill -9`, so a crash never leaves
//! a stale lock behind. A separate file, because SQLite's own locks on the
//! database file are POSIX record locks, which NFS may emulate with `flock`.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Held for the life of the daemon; dropping it releases the lock.
#[derive(Debug)]
pub struct OwnerLock {
    _file: File,
}

/// Why the lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum OwnerLockError {
    /// Another process holds it.
    #[error(
        "the SQLite store {db} is in use by another linkfresh daemon ({holder}); SQLite serves one daemon at a time: stop the other one, or use PostgreSQL ([database] url = \"postgres://...\") for several replicas"
    )]
    Held {
        /// The database file.
        db: String,
        /// What the lock file says about its holder.
        holder: String,
    },
    /// The lock file cannot be opened or written.
    #[error("cannot lock the SQLite store {db} with {lock}: {source}")]
    Io {
        /// The database file.
        db: String,
        /// The lock file.
        lock: String,
        /// The cause.
        source: std::io::Error,
    },
}

impl OwnerLock {
    /// The lock file of a `sqlite:` URL's database, or `None` for an
    /// in-memory database (nothing to share) or another scheme.
    pub fn path_for(url: &str) -> Option<PathBuf> {
        let rest = url.strip_prefix("sqlite:")?;
        if rest.contains(":memory:") || rest.contains("mode=memory") {
            return None;
        }
        let path = rest.trim_start_matches("//").split('?').next()?;
        if path.is_empty() {
            return None;
        }
        Some(PathBuf::from(format!("{path}.lock")))
    }

    /// Takes the lock for the database at `url`; `Ok(None)` when the URL
    /// needs none (in-memory SQLite, PostgreSQL).
    pub fn acquire(url: &str) -> Result<Option<Self>, OwnerLockError> {
        let Some(path) = Self::path_for(url) else {
            return Ok(None);
        };
        Self::acquire_at(&path).map(Some)
    }

    fn acquire_at(path: &Path) -> Result<Self, OwnerLockError> {
        let db = path.with_extension("").display().to_string();
        let io = |source| OwnerLockError::Io {
            db: db.clone(),
            lock: path.display().to_string(),
            source,
        };
        // Not truncated on open: the holder's pid must survive our attempt.
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = match holder.trim() {
                    "" => "holder unknown".to_owned(),
                    h => h.to_owned(),
                };
                return Err(OwnerLockError::Held { db, holder });
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        file.set_len(0).map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        writeln!(file, "pid {}", std::process::id()).map_err(io)?;
        Ok(Self { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_file_sits_beside_the_database() {
        assert_eq!(
            OwnerLock::path_for("sqlite:///var/lib/linkfresh/state.db?mode=rwc"),
            Some(PathBuf::from("/var/lib/linkfresh/state.db.lock"))
        );
        assert_eq!(
            OwnerLock::path_for("sqlite:state.db"),
            Some(PathBuf::from("state.db.lock"))
        );
        assert_eq!(OwnerLock::path_for("sqlite::memory:"), None);
        assert_eq!(OwnerLock::path_for("postgres://h/db"), None);
    }

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_pid_until_it_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite:{}", dir.path().join("s.db").display());
        let first = OwnerLock::acquire(&url).unwrap().unwrap();
        let err = OwnerLock::acquire(&url).unwrap_err().to_string();
        assert!(err.contains("in use by another linkfresh daemon"), "{err}");
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        assert!(err.contains("PostgreSQL"), "{err}");
        drop(first);
        assert!(OwnerLock::acquire(&url).unwrap().is_some());
    }
}
