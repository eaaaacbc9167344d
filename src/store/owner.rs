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
//! a stale lock behind.
//!
//! It is taken on the database file itself, not on a file named after the
//! URL: a lock on `<path>.lock` was bypassed by a symlink (`sym.db`) or a
//! hard link (`hard.db`) to the same database, because each alias derives
//! another lock name. Opening the path follows symlinks and a hard link is
//! the same inode, so every name of the file meets the same lock.
//! Canonicalising the path would only have covered symlinks; a lock file
//! named from (device, inode) would need a folder every alias agrees on.
//!
//! Why `flock` on the file SQLite itself locks is safe: SQLite takes POSIX
//! record locks (`fcntl`), and on Linux `flock` locks and record locks are
//! independent, so neither sees the other. (NFS emulates `flock` with record
//! locks, but the store runs in WAL mode, whose shared memory SQLite does not
//! support on network filesystems in any case.) One caution: closing any
//! descriptor of a file drops the process's POSIX locks on it, SQLite's
//! included, so the lock's descriptor stays open for the whole life of the
//! daemon and is closed only as it exits.
//!
//! The holder is named from `/proc/locks` (its pid beside the file's device
//! and inode); elsewhere the message says the holder is unknown.

use std::fs::{File, OpenOptions, TryLockError};
use std::os::unix::fs::MetadataExt;
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
    /// The database file cannot be opened or locked.
    #[error("cannot lock the SQLite store {db}: {source}")]
    Io {
        /// The database file.
        db: String,
        /// The cause.
        source: std::io::Error,
    },
}

impl OwnerLock {
    /// The database file of a `sqlite:` URL, the file the lock is taken
    /// on, or `None` for an in-memory database (nothing to share) or another
    /// scheme.
    pub fn path_for(url: &str) -> Option<PathBuf> {
        let rest = url.strip_prefix("sqlite:")?;
        if rest.contains(":memory:") || rest.contains("mode=memory") {
            return None;
        }
        let path = rest.trim_start_matches("//").split('?').next()?;
        if path.is_empty() {
            return None;
        }
        Some(PathBuf::from(path))
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
        let db = path.display().to_string();
        let io = |source| OwnerLockError::Io {
            db: db.clone(),
            source,
        };
        // Created here when missing (SQLite takes an empty file as a new
        // database), so the lock exists before the store opens the file.
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => Ok(Self { _file: file }),
            Err(TryLockError::WouldBlock) => {
                let holder = file
                    .metadata()
                    .ok()
                    .and_then(|m| std::fs::read_to_string("/proc/locks").ok().map(|l| (m, l)))
                    .and_then(|(m, locks)| flock_holder(&locks, m.dev(), m.ino()))
                    .map_or_else(|| "holder unknown".to_owned(), |pid| format!("pid {pid}"));
                Err(OwnerLockError::Held { db, holder })
            }
            Err(TryLockError::Error(e)) => Err(io(e)),
        }
    }
}

/// The pid holding an exclusive `flock` on the file (`dev`, `ino`), read
/// from the text of `/proc/locks`, where a line reads
/// `1: FLOCK  ADVISORY  WRITE 4242 08:01:1234567 0 EOF` (device as hex
/// major:minor). Hand-written: no crate parses this one line format.
fn flock_holder(locks: &str, dev: u64, ino: u64) -> Option<u32> {
    // glibc's gnu_dev_major / gnu_dev_minor.
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    let want = format!("{major:02x}:{minor:02x}:{ino}");
    locks.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // A blocked waiter's line starts with "->" and is one field longer.
        let at = fields.iter().position(|f| *f == "FLOCK")?;
        let (kind, pid, id) = (
            fields.get(at + 2)?,
            fields.get(at + 3)?,
            fields.get(at + 4)?,
        );
        (*kind == "WRITE" && *id == want && at == 1)
            .then(|| pid.parse().ok())
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_is_taken_on_the_database_file_itself() {
        assert_eq!(
            OwnerLock::path_for("sqlite:///var/lib/linkfresh/state.db?mode=rwc"),
            Some(PathBuf::from("/var/lib/linkfresh/state.db"))
        );
        assert_eq!(
            OwnerLock::path_for("sqlite:state.db"),
            Some(PathBuf::from("state.db"))
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

    #[test]
    fn the_holder_is_the_pid_of_the_write_flock_on_that_device_and_inode() {
        let locks = "1: POSIX  ADVISORY  WRITE 11 08:01:77 1073741824 1073741824\n\
                     2: FLOCK  ADVISORY  WRITE 4242 08:01:77 0 EOF\n\
                     2: -> FLOCK  ADVISORY  WRITE 5151 08:01:77 0 EOF\n\
                     3: FLOCK  ADVISORY  WRITE 99 08:02:77 0 EOF\n";
        assert_eq!(flock_holder(locks, (8 << 8) | 1, 77), Some(4242));
        assert_eq!(flock_holder(locks, (8 << 8) | 1, 78), None);
    }
}
