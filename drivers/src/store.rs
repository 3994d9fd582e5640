//! The node's durable state: one redb database at `DIR/state.redb`.
//!
//! Every write is its own transaction committed with [`redb::Durability::Immediate`], so a call
//! that returned `Ok` survives a crash or a power loss. The file is opened with an integrity
//! check, so a damaged file is reported as [`StoreError::Corrupt`] rather than trusted.
//! Only one process may have a state open at a time (redb locks the file): a second open fails
//! with [`StoreError::Locked`].

use std::fs::{DirBuilder, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition, TableError};

/// Name of the database file inside the state directory.
pub const STATE_FILE: &str = "state.redb";

/// Key of the format marker in [`Table::Meta`].
pub const FORMAT_KEY: &[u8] = b"format";

/// Value of the format marker written by this version.
pub const FORMAT_V1: &[u8] = b"cladnet-state-v1";

/// Memory redb may use to cache pages; the state is small, the 1 GiB default is far too much.
const CACHE_BYTES: usize = 16 * 1024 * 1024;

const META: TableDefinition<&[u8], &[u8]> = TableDefinition::new("meta");
const RECORDS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("records");
const INVITES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("invites");

/// One key-value pair of a table.
pub type Entry = (Vec<u8>, Vec<u8>);

/// The tables of the state, all mapping byte keys to byte values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Table {
    /// Node metadata: the format marker, identity, settings.
    Meta,
    /// Replicated records.
    Records,
    /// Invitations this node issued, with their remaining uses.
    Invites,
}

impl Table {
    /// Every table, in the order they are created.
    pub const ALL: [Table; 3] = [Table::Meta, Table::Records, Table::Invites];

    fn def(self) -> TableDefinition<'static, &'static [u8], &'static [u8]> {
        match self {
            Table::Meta => META,
            Table::Records => RECORDS,
            Table::Invites => INVITES,
        }
    }
}

/// Errors of the state store, each one sentence that names the directory and what to do.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// [`Store::create`] found a state already there.
    #[error("{} already holds a cladnet state; use it with --state or pick an empty directory", .dir.display())]
    Exists {
        /// The state directory.
        dir: PathBuf,
    },
    /// [`Store::open`] found no state.
    #[error("no cladnet state in {}: run `cladnet init` or `cladnet join` first", .dir.display())]
    Missing {
        /// The state directory.
        dir: PathBuf,
    },
    /// The file is a redb database, but not one cladnet wrote (or of an unknown version).
    #[error("{} is not a cladnet state ({found}): restore it from backup or join again with a new --state directory", .file.display())]
    Foreign {
        /// The database file.
        file: PathBuf,
        /// What was found instead of the expected format marker.
        found: String,
    },
    /// The file is not a redb database at all, or is damaged beyond repair.
    #[error("{} is not a cladnet state (or is damaged): restore it from backup or join again with a new --state directory (detail: {detail})", .file.display())]
    Corrupt {
        /// The database file.
        file: PathBuf,
        /// What redb reported.
        detail: String,
    },
    /// Another process has the state open.
    #[error("{} is in use by another cladnet process (is the agent running?)", .dir.display())]
    Locked {
        /// The state directory.
        dir: PathBuf,
    },
    /// Any other failure, mostly of the file system.
    #[error("cannot {what} the cladnet state in {}: {source}; check the directory's permissions and free space", .dir.display())]
    Io {
        /// The state directory.
        dir: PathBuf,
        /// The step that failed, e.g. "open" or "write to".
        what: &'static str,
        /// The underlying error (redb errors that are not I/O are wrapped as `Other`).
        #[source]
        source: io::Error,
    },
}

/// The node's durable key-value state, backed by one redb database in a state directory.
#[derive(Debug)]
pub struct Store {
    db: Database,
    dir: PathBuf,
    /// Write transactions committed since open: each one is all or nothing
    /// across a crash.
    commits: std::sync::atomic::AtomicU64,
}

fn builder() -> redb::Builder {
    let mut b = redb::Builder::new();
    // Verify every page's checksum on open: a file altered outside redb is then reported as
    // Corrupted instead of possibly panicking later. The state is small, so this is cheap.
    b.set_check_integrity_on_open(true);
    b.set_cache_size(CACHE_BYTES);
    b
}

impl Store {
    /// Creates `dir` (mode 0700, if it does not exist) and a new, empty state in it.
    ///
    /// Fails with [`StoreError::Exists`] if `dir` already holds a state file.
    pub fn create(dir: &Path) -> Result<Store, StoreError> {
        let dir = dir.to_path_buf();
        let io_err = |what, source| StoreError::Io {
            dir: dir.clone(),
            what,
            source,
        };
        if !dir.is_dir() {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .map_err(|e| io_err("create the directory of", e))?;
            // The mode given to mkdir is reduced by the umask; make sure it is exactly 0700.
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| io_err("set the permissions of the directory of", e))?;
        }
        let file = dir.join(STATE_FILE);
        // create_new makes "is there already a state?" and "claim the name" one atomic step.
        match OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&file)
        {
            Ok(f) => {
                let res = f
                    .set_permissions(std::fs::Permissions::from_mode(0o600))
                    .map_err(|e| io_err("set the permissions of", e));
                drop(f);
                if let Err(e) = res {
                    let _ = std::fs::remove_file(&file);
                    return Err(e);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(StoreError::Exists { dir: dir.clone() });
            }
            Err(e) => return Err(io_err("create", e)),
        }
        match Self::init(&dir, &file) {
            Ok(store) => Ok(store),
            Err(e) => {
                // Leave no half-made state behind, so that the next attempt can start over.
                // Not when the file is locked: then another process owns it.
                if !matches!(e, StoreError::Locked { .. }) {
                    let _ = std::fs::remove_file(&file);
                }
                Err(e)
            }
        }
    }

    // Initializes the empty file at `file` as a state: the marker and every table.
    fn init(dir: &Path, file: &Path) -> Result<Store, StoreError> {
        let db = builder()
            .create(file)
            .map_err(|e| classify(dir, "create", e))?;
        let store = Store {
            db,
            dir: dir.to_path_buf(),
            commits: Default::default(),
        };
        store.write(|txn| {
            for t in Table::ALL {
                txn.open_table(t.def())?;
            }
            txn.open_table(META)?.insert(FORMAT_KEY, FORMAT_V1)?;
            Ok(())
        })?;
        Ok(store)
    }

    /// Opens the existing state in `dir`, checking its integrity and its format marker.
    ///
    /// Fails with [`StoreError::Missing`] if there is none, [`StoreError::Locked`] if another
    /// process has it open, and [`StoreError::Corrupt`] or [`StoreError::Foreign`] if the file
    /// is not a cladnet state.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        let dir = dir.to_path_buf();
        let file = dir.join(STATE_FILE);
        match std::fs::metadata(&file) {
            Ok(m) if m.is_file() => {}
            Ok(_) => {
                return Err(StoreError::Corrupt {
                    detail: "it is not a regular file".into(),
                    file,
                })
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) =>
            {
                return Err(StoreError::Missing { dir });
            }
            Err(e) => {
                return Err(StoreError::Io {
                    dir,
                    what: "open",
                    source: e,
                })
            }
        }
        let db = builder()
            .open(&file)
            .map_err(|e| classify(&dir, "open", e))?;
        let store = Store {
            db,
            dir,
            commits: Default::default(),
        };
        store.check_marker()?;
        Ok(store)
    }

    fn check_marker(&self) -> Result<(), StoreError> {
        let found = {
            let txn = self.db.begin_read().map_err(|e| self.err("read", e))?;
            match txn.open_table(META) {
                Ok(t) => t
                    .get(FORMAT_KEY)
                    .map_err(|e| self.err("read", e))?
                    .map(|g| g.value().to_vec()),
                Err(TableError::Storage(e)) => return Err(self.err("read", e)),
                // Missing, or of other types: some other program's database.
                Err(_) => None,
            }
        };
        match found {
            Some(v) if v == FORMAT_V1 => Ok(()),
            Some(v) => Err(StoreError::Foreign {
                file: self.file(),
                found: format!("its format marker is {:?}", String::from_utf8_lossy(&v)),
            }),
            None => Err(StoreError::Foreign {
                file: self.file(),
                found: "it has no cladnet format marker".into(),
            }),
        }
    }

    /// The state directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The database file, `DIR/state.redb`.
    pub fn file(&self) -> PathBuf {
        self.dir.join(STATE_FILE)
    }

    fn err(&self, what: &'static str, e: impl Into<redb::Error>) -> StoreError {
        classify(&self.dir, what, e)
    }

    // Runs `f` in one write transaction and commits it durably; returns after the commit.
    fn write<R>(
        &self,
        f: impl FnOnce(&redb::WriteTransaction) -> Result<R, redb::Error>,
    ) -> Result<R, StoreError> {
        let mut txn = self.db.begin_write().map_err(|e| self.err("write to", e))?;
        txn.set_durability(Durability::Immediate)
            .map_err(|e| self.err("write to", e))?;
        // On error the transaction is dropped, which aborts it.
        let r = f(&txn).map_err(|e| self.err("write to", e))?;
        txn.commit().map_err(|e| self.err("commit to", e))?;
        self.commits
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(r)
    }

    /// The value stored under `key` in `table`, if any.
    pub fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.err("read", e))?;
        let t = match txn.open_table(table.def()) {
            Ok(t) => t,
            Err(TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(self.err("read", e)),
        };
        let v = t.get(key).map_err(|e| self.err("read", e))?;
        Ok(v.map(|g| g.value().to_vec()))
    }

    /// Stores `value` under `key` in `table`, durably: returns only after the commit.
    pub fn put(&self, table: Table, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.write(|txn| {
            txn.open_table(table.def())?.insert(key, value)?;
            Ok(())
        })
    }

    /// Stores all `items` in `table` in one durable transaction: all of them or none.
    pub fn put_many(&self, table: Table, items: &[Entry]) -> Result<(), StoreError> {
        self.write(|txn| {
            let mut t = txn.open_table(table.def())?;
            for (k, v) in items {
                t.insert(k.as_slice(), v.as_slice())?;
            }
            Ok(())
        })
    }

    /// Stores `(table, key, value)` entries of several tables in one durable transaction:
    /// all of them or none, whatever crashes.
    pub fn put_across(&self, items: &[(Table, &[u8], &[u8])]) -> Result<(), StoreError> {
        self.write(|txn| {
            for (table, k, v) in items {
                txn.open_table(table.def())?.insert(*k, *v)?;
            }
            Ok(())
        })
    }

    /// Write transactions committed since the store was opened (each is atomic across a
    /// crash; what one call writes in two of them, a crash can split).
    pub fn commits(&self) -> u64 {
        self.commits.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Removes `key` from `table`, durably; returns whether it was there.
    pub fn remove(&self, table: Table, key: &[u8]) -> Result<bool, StoreError> {
        self.write(|txn| {
            let mut t = txn.open_table(table.def())?;
            let removed = t.remove(key)?.is_some();
            Ok(removed)
        })
    }

    /// Every entry of `table`, in key order (empty for a table never written).
    pub fn all(&self, table: Table) -> Result<Vec<Entry>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.err("read", e))?;
        let t = match txn.open_table(table.def()) {
            Ok(t) => t,
            Err(TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(self.err("read", e)),
        };
        let mut out = Vec::new();
        for entry in t.iter().map_err(|e| self.err("read", e))? {
            let (k, v) = entry.map_err(|e| self.err("read", e))?;
            out.push((k.value().to_vec(), v.value().to_vec()));
        }
        Ok(out)
    }

    /// Atomically replaces the value under `key` with `f(old value)`, in one durable write
    /// transaction; `None` from `f` removes the key. Returns the new value.
    ///
    /// Writers are serialized, so no other write can slip between the read and the write.
    pub fn update<F>(&self, table: Table, key: &[u8], f: F) -> Result<Option<Vec<u8>>, StoreError>
    where
        F: FnOnce(Option<Vec<u8>>) -> Option<Vec<u8>>,
    {
        self.write(|txn| {
            let mut t = txn.open_table(table.def())?;
            let old = t.get(key)?.map(|g| g.value().to_vec());
            let new = f(old);
            match &new {
                Some(v) => {
                    t.insert(key, v.as_slice())?;
                }
                None => {
                    t.remove(key)?;
                }
            }
            Ok(new)
        })
    }

    /// Closes the database, reporting any error that dropping the store would ignore.
    pub fn close(self) -> Result<(), StoreError> {
        let dir = self.dir;
        self.db.close().map_err(|e| classify(&dir, "close", e))
    }
}

// Sorts a redb error into the variant that tells the user what to do.
fn classify(dir: &Path, what: &'static str, e: impl Into<redb::Error>) -> StoreError {
    let file = || dir.join(STATE_FILE);
    match e.into() {
        redb::Error::DatabaseAlreadyOpen | redb::Error::LockProtocolMismatch => {
            StoreError::Locked {
                dir: dir.to_path_buf(),
            }
        }
        redb::Error::Corrupted(detail) => StoreError::Corrupt {
            file: file(),
            detail,
        },
        redb::Error::RepairAborted => StoreError::Corrupt {
            file: file(),
            detail: "it needs a repair that could not be completed".into(),
        },
        redb::Error::UpgradeRequired(v) => StoreError::Foreign {
            file: file(),
            found: format!("it is in the old redb file format {v}"),
        },
        // redb reports a file that does not start like a redb database as InvalidData, and a
        // file cut short (shorter than its header) as UnexpectedEof.
        redb::Error::Io(e)
            if matches!(
                e.kind(),
                io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof
            ) =>
        {
            StoreError::Corrupt {
                file: file(),
                detail: e.to_string(),
            }
        }
        redb::Error::Io(source) => StoreError::Io {
            dir: dir.to_path_buf(),
            what,
            source,
        },
        other => StoreError::Io {
            dir: dir.to_path_buf(),
            what,
            source: io::Error::other(other.to_string()),
        },
    }
}

#[cfg(test)]
mod tests;
