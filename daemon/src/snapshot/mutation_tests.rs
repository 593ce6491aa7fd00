//! Issue #8: tests that kill cargo-mutants' mutants of the sessions snapshot (`snapshot.rs`)
//! that the other tests let live: the 256 MiB bound exactly, when reading and writing (and a
//! source longer than its size), which versions are called newer, a missing file against an
//! unreadable path, the directory of a bare file name, and the periodic and shutdown writes.

use std::time::{Duration, Instant};

use super::*;
use crate::sessions::EndReason;

/// The bound as documented (README, `MAX_BYTES`' comment), written out: a test built from
/// `MAX_BYTES` itself would follow a wrong value.
const DOCUMENTED_MAX: u64 = 256 * 1024 * 1024;

fn owner() -> Owner {
    Owner {
        issuer: "https://auth.example.com/application/o/shop/".into(),
        client_id: "shop".into(),
    }
}

fn sessions() -> Arc<Sessions> {
    Arc::new(Sessions::new(Duration::from_secs(3600), Metrics::new()))
}

/// The revocations by `sub` in the snapshot at `path`, loaded at `now`.
fn revoked_subs_in(path: &Path, now: i64) -> Option<usize> {
    load(path, &owner(), &sessions(), now)
        .ok()
        .flatten()
        .map(|n| n.revoked_subs)
}

/// A file of exactly 256 MiB is read whole; one byte more is refused as too large, before
/// it is read.
#[test]
fn issue_8_a_snapshot_of_exactly_256_mib_is_read_and_one_byte_more_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("snapshot.json");
    // Sparse: costs no disk.
    let f = std::fs::File::create(&path).expect("create");
    f.set_len(DOCUMENTED_MAX).expect("set_len");
    let bytes = read_bounded(&path)
        .expect("a file of exactly the bound is read")
        .expect("there is a file");
    assert_eq!(bytes.len() as u64, DOCUMENTED_MAX, "read whole");
    drop(bytes);
    // Through `load`: parsed (and found corrupt: it is all zeros), not refused by size.
    let err = load(&path, &owner(), &sessions(), 0).expect_err("zeros");
    assert!(matches!(err, SnapshotError::Corrupt { .. }), "{err}");

    f.set_len(DOCUMENTED_MAX + 1).expect("set_len");
    let err = read_bounded(&path).expect_err("one byte more");
    assert!(matches!(err, SnapshotError::TooLarge { .. }), "{err}");
    assert!(
        err.to_string()
            .contains(&format!("larger than {DOCUMENTED_MAX} bytes")),
        "{err}"
    );
}

/// A source that yields more than its size said (a file still growing, a device: here
/// `/dev/zero`, whose size is 0) is read up to one byte past the bound and refused, neither
/// read without end nor cut to a silently truncated snapshot.
#[test]
fn issue_8_a_source_longer_than_its_size_is_refused_at_the_bound() {
    let path = Path::new("/dev/zero");
    assert_eq!(std::fs::metadata(path).expect("/dev/zero").len(), 0);
    let err = read_bounded(path).expect_err("endless");
    assert!(matches!(err, SnapshotError::TooLarge { .. }), "{err}");
}

/// A document serializing to exactly 256 MiB is written; one byte more is refused as too
/// large and leaves the file before it in place.
#[test]
fn issue_8_a_snapshot_of_exactly_256_mib_is_written_and_one_byte_more_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("snapshot.json");
    let doc = |issuer: String| Document {
        format: FORMAT.into(),
        version: VERSION,
        issuer,
        client_id: "shop".into(),
        written_at: 0,
        state: sessions().export().0,
    };
    let base = serde_json::to_vec(&doc(String::new())).expect("json").len() as u64;
    // ASCII letters serialize one byte each.
    let exact = doc("a".repeat(usize::try_from(DOCUMENTED_MAX - base).expect("fits")));
    write_atomically(&path, &exact).expect("a document of exactly the bound is written");
    drop(exact);
    assert_eq!(
        std::fs::metadata(&path).expect("written").len(),
        DOCUMENTED_MAX
    );

    let over = doc("a".repeat(usize::try_from(DOCUMENTED_MAX - base + 1).expect("fits")));
    let err = write_atomically(&path, &over).expect_err("one byte more");
    assert!(matches!(err, SnapshotError::TooLarge { .. }), "{err}");
    assert_eq!(
        std::fs::metadata(&path).expect("kept").len(),
        DOCUMENTED_MAX,
        "the file before is left in place"
    );
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(names, ["snapshot.json"], "no temporary file left");
}

/// Only a version above [`VERSION`] is "written by a newer tokend" (run that one again);
/// version 0, which never existed, is a corrupt file.
#[test]
fn issue_8_only_a_version_above_the_current_one_is_called_newer() {
    let path = Path::new("/var/lib/tokend/snapshot.json");
    let with_version = |v: u64| {
        let mut doc = serde_json::to_value(Document {
            format: FORMAT.into(),
            version: VERSION,
            issuer: owner().issuer,
            client_id: owner().client_id,
            written_at: 0,
            state: sessions().export().0,
        })
        .expect("json");
        doc["version"] = v.into();
        doc.to_string()
    };
    let err = parse(path, with_version(0).as_bytes(), &owner()).expect_err("version 0");
    assert!(matches!(err, SnapshotError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("not a known version"), "{err}");
    assert!(!err.to_string().contains("newer"), "{err}");

    let next = u64::from(VERSION) + 1;
    let err = parse(path, with_version(next).as_bytes(), &owner()).expect_err("newer");
    assert!(
        matches!(err, SnapshotError::FutureVersion { found, .. } if found == next),
        "{err}"
    );
    assert!(
        err.to_string().contains(&format!(
            "written by a newer tokend (format version {next}; this one reads up to {VERSION})"
        )),
        "{err}"
    );
    assert!(parse(path, with_version(VERSION.into()).as_bytes(), &owner()).is_ok());
}

/// No file is "no snapshot yet" (a first start); a path that cannot be opened for another
/// reason (here: its directory is a file) is an error, reported as unreadable, not taken for
/// a first start.
#[test]
fn issue_8_a_missing_file_is_no_snapshot_but_an_unopenable_path_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("snapshot.json");
    assert!(matches!(load(&missing, &owner(), &sessions(), 0), Ok(None)));
    let metrics = Metrics::new();
    let snapshot = Snapshot::new(missing.clone(), sessions(), metrics.clone());
    assert_eq!(snapshot.restore(&owner(), 0), "absent");
    assert!(!missing.exists(), "restore creates nothing");

    let file = dir.path().join("a-file");
    std::fs::write(&file, b"not a directory").expect("write");
    let under_a_file = file.join("snapshot.json");
    let err = load(&under_a_file, &owner(), &sessions(), 0).expect_err("unopenable");
    assert!(
        matches!(&err, SnapshotError::Read { source, .. }
            if source.kind() == std::io::ErrorKind::NotADirectory),
        "{err}"
    );
    let snapshot = Snapshot::new(under_a_file, sessions(), metrics.clone());
    assert_eq!(snapshot.restore(&owner(), 0), "unreadable");
    for (result, count) in [("absent", 1), ("unreadable", 1)] {
        assert_eq!(
            metrics.snapshot_loads.with_label_values(&[result]).get(),
            count,
            "{result}"
        );
    }
}

/// The temporary file goes into the snapshot's own directory (a rename is atomic only within
/// one file system), and a bare file name's directory is `.`, not the empty path.
#[test]
fn issue_8_the_temporary_file_goes_beside_the_snapshot() {
    assert_eq!(
        directory_of(Path::new("/var/lib/tokend/snapshot.json")),
        Path::new("/var/lib/tokend")
    );
    assert_eq!(
        directory_of(Path::new("state/snapshot.json")),
        Path::new("state")
    );
    assert_eq!(directory_of(Path::new("snapshot.json")), Path::new("."));
}

/// Polls `check` every 10 ms for up to 20 s (a loaded machine).
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < Duration::from_secs(20), "never: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A snapshot to write to a file in a fresh directory, of sessions holding one revocation
/// (`mallory`'s, at `now`).
struct Written {
    dir: tempfile::TempDir,
    path: PathBuf,
    sessions: Arc<Sessions>,
    now: i64,
    metrics: Arc<Metrics>,
    snapshot: Arc<Snapshot>,
}

impl Written {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("snapshot.json");
        let sessions = sessions();
        let now = crate::verify::now_unix();
        sessions.end_sub("mallory", EndReason::AdminRevocation, now);
        let metrics = Metrics::new();
        let snapshot = Arc::new(Snapshot::new(
            path.clone(),
            sessions.clone(),
            metrics.clone(),
        ));
        Self {
            dir,
            path,
            sessions,
            now,
            metrics,
            snapshot,
        }
    }
}

/// The writer task writes what changed every interval, again after a later change, and ends
/// when told to stop.
#[tokio::test]
async fn issue_8_the_writer_writes_changes_periodically_until_stopped() {
    let Written {
        dir: _dir,
        path,
        sessions: s,
        now,
        metrics,
        snapshot,
    } = Written::new();
    let (stop_tx, stop_rx) = watch::channel(false);
    let writer = tokio::spawn(run_writer(
        snapshot.clone(),
        owner,
        Duration::from_millis(20),
        stop_rx,
    ));
    eventually("the first change written", || {
        revoked_subs_in(&path, now) == Some(1)
    })
    .await;
    s.end_sub("eve", EndReason::AdminRevocation, now);
    eventually("the second change written", || {
        revoked_subs_in(&path, now) == Some(2)
    })
    .await;
    assert!(!snapshot.dirty());
    stop_tx.send(true).expect("the writer listens");
    tokio::time::timeout(Duration::from_secs(20), writer)
        .await
        .expect("the writer stops")
        .expect("and does not panic");
    assert!(metrics.snapshot_writes.with_label_values(&["ok"]).get() >= 2);
}

/// The shutdown's write lands on disk; a write that fails is logged and counted, not a
/// panic.
#[tokio::test]
async fn issue_8_the_shutdown_write_lands_and_a_failed_one_is_counted() {
    let Written {
        dir,
        path,
        sessions: s,
        now,
        metrics,
        snapshot,
    } = Written::new();
    write_logged(snapshot.clone(), owner()).await;
    assert_eq!(revoked_subs_in(&path, now), Some(1));
    assert!(!snapshot.dirty());

    let nowhere = Arc::new(Snapshot::new(
        dir.path().join("missing-dir/snapshot.json"),
        s,
        metrics.clone(),
    ));
    write_logged(nowhere, owner()).await;
    for (result, count) in [("ok", 1), ("error", 1)] {
        assert_eq!(
            metrics.snapshot_writes.with_label_values(&[result]).get(),
            count,
            "{result}"
        );
    }
}
