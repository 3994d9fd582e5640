#![allow(clippy::unwrap_used)]

use super::*;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A fresh directory path under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "cladnet-store-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        TempDir(p)
    }
    /// The (not yet existing) state directory.
    fn state(&self) -> PathBuf {
        self.0.join("state")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn store_roundtrip() {
    let t = TempDir::new();
    let s = Store::create(&t.state()).unwrap();
    assert_eq!(s.get(Table::Records, b"a").unwrap(), None);
    assert!(s.all(Table::Records).unwrap().is_empty());
    assert!(s.all(Table::Invites).unwrap().is_empty());

    s.put(Table::Records, b"a", b"1").unwrap();
    s.put(Table::Records, b"b", b"2").unwrap();
    s.put(Table::Invites, b"a", b"other table").unwrap();
    assert_eq!(s.get(Table::Records, b"a").unwrap(), Some(b"1".to_vec()));
    s.put(Table::Records, b"a", b"1bis").unwrap();
    assert_eq!(s.get(Table::Records, b"a").unwrap(), Some(b"1bis".to_vec()));

    s.put_many(
        Table::Records,
        &[(b"c".to_vec(), b"3".to_vec()), (b"d".to_vec(), vec![])],
    )
    .unwrap();
    assert_eq!(
        s.all(Table::Records).unwrap(),
        vec![
            (b"a".to_vec(), b"1bis".to_vec()),
            (b"b".to_vec(), b"2".to_vec()),
            (b"c".to_vec(), b"3".to_vec()),
            (b"d".to_vec(), vec![]),
        ]
    );
    assert_eq!(
        s.all(Table::Invites).unwrap(),
        vec![(b"a".to_vec(), b"other table".to_vec())]
    );

    assert!(s.remove(Table::Records, b"b").unwrap());
    assert!(!s.remove(Table::Records, b"b").unwrap());
    assert_eq!(s.get(Table::Records, b"b").unwrap(), None);

    // The marker is there, in the meta table.
    assert_eq!(
        s.get(Table::Meta, FORMAT_KEY).unwrap(),
        Some(FORMAT_V1.to_vec())
    );
    s.close().unwrap();
}

#[test]
fn store_update_counts_down_and_removes() {
    let t = TempDir::new();
    let s = Store::create(&t.state()).unwrap();
    let dec = |v: Option<Vec<u8>>| {
        let n = v?[0];
        (n > 1).then(|| vec![n - 1])
    };
    // Absent: f sees None, nothing is written.
    assert_eq!(s.update(Table::Invites, b"inv", dec).unwrap(), None);
    assert_eq!(s.get(Table::Invites, b"inv").unwrap(), None);
    // Insert through update.
    assert_eq!(
        s.update(Table::Invites, b"inv", |old| {
            assert_eq!(old, None);
            Some(vec![2])
        })
        .unwrap(),
        Some(vec![2])
    );
    assert_eq!(
        s.update(Table::Invites, b"inv", dec).unwrap(),
        Some(vec![1])
    );
    assert_eq!(s.get(Table::Invites, b"inv").unwrap(), Some(vec![1]));
    // Last use: removed.
    assert_eq!(s.update(Table::Invites, b"inv", dec).unwrap(), None);
    assert_eq!(s.get(Table::Invites, b"inv").unwrap(), None);
    assert!(s.all(Table::Invites).unwrap().is_empty());
}

#[test]
fn store_update_is_atomic_across_threads() {
    let t = TempDir::new();
    let s = Store::create(&t.state()).unwrap();
    s.put(Table::Meta, b"n", &0u32.to_le_bytes()).unwrap();
    std::thread::scope(|sc| {
        for _ in 0..4 {
            sc.spawn(|| {
                for _ in 0..10 {
                    s.update(Table::Meta, b"n", |v| {
                        let n = u32::from_le_bytes(v.unwrap().try_into().unwrap());
                        Some((n + 1).to_le_bytes().to_vec())
                    })
                    .unwrap();
                }
            });
        }
    });
    assert_eq!(
        s.get(Table::Meta, b"n").unwrap(),
        Some(40u32.to_le_bytes().to_vec())
    );
}

#[test]
fn store_reopen_keeps_data() {
    let t = TempDir::new();
    {
        let s = Store::create(&t.state()).unwrap();
        s.put(Table::Records, b"k", b"v").unwrap();
        s.put(Table::Invites, b"i", b"3").unwrap();
        // Dropped, not closed.
    }
    let s = Store::open(&t.state()).unwrap();
    assert_eq!(s.get(Table::Records, b"k").unwrap(), Some(b"v".to_vec()));
    assert_eq!(s.get(Table::Invites, b"i").unwrap(), Some(b"3".to_vec()));
    assert_eq!(s.dir(), t.state());
    drop(s);
    // Once more, after a clean close.
    Store::open(&t.state()).unwrap().close().unwrap();
    let s = Store::open(&t.state()).unwrap();
    assert_eq!(s.get(Table::Records, b"k").unwrap(), Some(b"v".to_vec()));
}

#[test]
fn store_create_twice_fails() {
    let t = TempDir::new();
    let s = Store::create(&t.state()).unwrap();
    s.put(Table::Records, b"k", b"v").unwrap();
    drop(s);
    let e = Store::create(&t.state()).unwrap_err();
    assert!(matches!(e, StoreError::Exists { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains(&t.state().display().to_string()), "{msg}");
    assert!(msg.contains("already holds a cladnet state"), "{msg}");
    // And the existing state is untouched.
    let s = Store::open(&t.state()).unwrap();
    assert_eq!(s.get(Table::Records, b"k").unwrap(), Some(b"v".to_vec()));
}

#[test]
fn store_create_in_existing_empty_dir() {
    let t = TempDir::new();
    std::fs::create_dir_all(t.state()).unwrap();
    Store::create(&t.state()).unwrap();
    Store::open(&t.state()).unwrap();
}

#[test]
fn store_open_missing_fails() {
    let t = TempDir::new();
    // No directory at all.
    let e = Store::open(&t.state()).unwrap_err();
    assert!(matches!(e, StoreError::Missing { .. }), "{e:?}");
    assert!(e.to_string().contains("cladnet init"), "{e}");
    // An empty directory.
    std::fs::create_dir_all(t.state()).unwrap();
    let e = Store::open(&t.state()).unwrap_err();
    assert!(matches!(e, StoreError::Missing { .. }), "{e:?}");
    // A path through a regular file.
    let f = t.0.join("plainfile");
    std::fs::write(&f, b"x").unwrap();
    let e = Store::open(&f).unwrap_err();
    assert!(matches!(e, StoreError::Missing { .. }), "{e:?}");
}

#[test]
fn store_modes() {
    let t = TempDir::new();
    let s = Store::create(&t.state()).unwrap();
    assert_eq!(mode(&t.state()), 0o700);
    assert_eq!(mode(&s.file()), 0o600);
    drop(s);
    Store::open(&t.state()).unwrap();
    assert_eq!(mode(&t.state().join(STATE_FILE)), 0o600);
}

fn assert_not_state(e: &StoreError) {
    assert!(
        matches!(e, StoreError::Corrupt { .. } | StoreError::Foreign { .. }),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(msg.contains("is not a cladnet state"), "{msg}");
    assert!(msg.contains("restore it from backup"), "{msg}");
}

#[test]
fn store_garbage_file_is_corrupt() {
    let t = TempDir::new();
    std::fs::create_dir_all(t.state()).unwrap();
    let file = t.state().join(STATE_FILE);
    let cases: Vec<Vec<u8>> = vec![
        vec![],
        b"hello, I am not a database\n".to_vec(),
        vec![0u8; 4096],
        (0..100_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect(),
    ];
    for bytes in cases {
        std::fs::write(&file, &bytes).unwrap();
        let e = Store::open(&t.state()).unwrap_err();
        assert_not_state(&e);
    }
}

#[test]
fn store_damaged_file_is_reported() {
    let t = TempDir::new();
    {
        let s = Store::create(&t.state()).unwrap();
        for i in 0..200u32 {
            s.put(Table::Records, &i.to_be_bytes(), &[7u8; 100])
                .unwrap();
        }
    }
    let file = t.state().join(STATE_FILE);
    let good = std::fs::read(&file).unwrap();
    // Truncations: never a panic, and never silently an empty state.
    for len in [0usize, 10, 100, 511, 4096, good.len() / 2] {
        std::fs::write(&file, &good[..len]).unwrap();
        match Store::open(&t.state()) {
            Err(e) => assert!(
                matches!(e, StoreError::Corrupt { .. } | StoreError::Foreign { .. }),
                "truncated to {len}: {e:?}"
            ),
            Ok(s) => {
                // Repair may salvage a truncated file; then the data must be intact.
                for i in 0..200u32 {
                    assert_eq!(
                        s.get(Table::Records, &i.to_be_bytes()).unwrap(),
                        Some(vec![7u8; 100])
                    );
                }
            }
        }
    }
    // Flipped bytes in the header and in the data pages.
    for pos in [0usize, 1, 9, 40, 200, 4096 + 7, good.len() - 100] {
        let mut bad = good.clone();
        bad[pos] ^= 0x5a;
        std::fs::write(&file, &bad).unwrap();
        match Store::open(&t.state()) {
            Err(StoreError::Corrupt { .. } | StoreError::Foreign { .. }) => {}
            Err(e) => panic!("flip at {pos}: {e:?}"),
            Ok(s) => {
                // Either the flipped byte was in unused space, or redb repaired it.
                let all = s.all(Table::Records).unwrap();
                assert!(
                    all.iter().all(|(_, v)| v == &vec![7u8; 100]),
                    "flip at {pos}"
                );
            }
        }
    }
}

#[test]
fn store_foreign_redb_file() {
    let t = TempDir::new();
    std::fs::create_dir_all(t.state()).unwrap();
    let file = t.state().join(STATE_FILE);
    // A redb database some other program wrote: no meta table.
    {
        let db = Database::create(&file).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let def: TableDefinition<u64, u64> = TableDefinition::new("numbers");
            txn.open_table(def).unwrap().insert(1, 2).unwrap();
        }
        txn.commit().unwrap();
    }
    let e = Store::open(&t.state()).unwrap_err();
    assert!(matches!(e, StoreError::Foreign { .. }), "{e:?}");
    assert_not_state(&e);
    assert!(e.to_string().contains("no cladnet format marker"), "{e}");

    // A meta table of other types.
    std::fs::remove_file(&file).unwrap();
    {
        let db = Database::create(&file).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let def: TableDefinition<u64, u64> = TableDefinition::new("meta");
            txn.open_table(def).unwrap().insert(1, 2).unwrap();
        }
        txn.commit().unwrap();
    }
    let e = Store::open(&t.state()).unwrap_err();
    assert!(matches!(e, StoreError::Foreign { .. }), "{e:?}");

    // A cladnet state of another version.
    std::fs::remove_dir_all(t.state()).unwrap();
    Store::create(&t.state())
        .unwrap()
        .put(Table::Meta, FORMAT_KEY, b"cladnet-state-v9")
        .unwrap();
    let e = Store::open(&t.state()).unwrap_err();
    assert!(matches!(e, StoreError::Foreign { .. }), "{e:?}");
    assert!(e.to_string().contains("cladnet-state-v9"), "{e}");

    // The marker removed.
    std::fs::remove_dir_all(t.state()).unwrap();
    let s = Store::create(&t.state()).unwrap();
    assert!(s.remove(Table::Meta, FORMAT_KEY).unwrap());
    drop(s);
    let e = Store::open(&t.state()).unwrap_err();
    assert!(matches!(e, StoreError::Foreign { .. }), "{e:?}");
}

#[test]
fn store_open_twice_is_locked() {
    let t = TempDir::new();
    let s = Store::create(&t.state()).unwrap();
    let e = Store::open(&t.state()).unwrap_err();
    assert!(matches!(e, StoreError::Locked { .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        format!(
            "{} is in use by another cladnet process (is the agent running?)",
            t.state().display()
        )
    );
    // The holder is unaffected, and the lock goes with it.
    s.put(Table::Records, b"k", b"v").unwrap();
    drop(s);
    let s = Store::open(&t.state()).unwrap();
    let e = Store::open(&t.state()).unwrap_err();
    assert!(matches!(e, StoreError::Locked { .. }), "{e:?}");
    assert_eq!(s.get(Table::Records, b"k").unwrap(), Some(b"v".to_vec()));
}

#[test]
fn store_messages() {
    let d = Path::new("/var/lib/cladnet");
    assert_eq!(
        StoreError::Exists { dir: d.into() }.to_string(),
        "/var/lib/cladnet already holds a cladnet state; use it with --state or pick an empty directory"
    );
    assert_eq!(
        StoreError::Missing { dir: d.into() }.to_string(),
        "no cladnet state in /var/lib/cladnet: run `cladnet init` or `cladnet join` first"
    );
    assert!(StoreError::Corrupt {
        file: d.join(STATE_FILE),
        detail: "x".into()
    }
    .to_string()
    .starts_with(
        "/var/lib/cladnet/state.redb is not a cladnet state (or is damaged): restore it from backup or join again with a new --state directory"
    ));
}
