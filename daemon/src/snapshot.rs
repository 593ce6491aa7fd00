//! The memory mode's snapshot: what `sessions` must not forget on a restart (revocations,
//! seen logout-token `jti`s, ended refresh tokens, sessions without their tokens) in one
//! versioned JSON file in the state directory — written atomically on shutdown and every
//! `sessions.snapshot_interval` when something changed, loaded at start before serving.
//!
//! Secrets: the file holds no token. Refresh tokens appear only as their SHA-256 (enough to
//! find a restored session by the browser's refresh cookie and to refuse an ended one); the
//! refresh and ID tokens themselves are left out, so a copy of the state directory (a backup)
//! leaks nothing usable. The price: until its next refresh, a restored session's refresh token
//! cannot be revoked at the provider when an operator or a back-channel logout ends it (tokend
//! still refuses it), and its logout carries no `id_token_hint`.
//!
//! A file tokend cannot use (corrupt, truncated, too large, another issuer's or client's, a
//! newer format) is moved aside to `<name>.corrupt-<UTC time>`, logged as an error naming both
//! paths and counted; tokend starts without it rather than not at all.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::metrics::Metrics;
use crate::sessions::{Exported, Imported, Sessions};

/// The `format` field: says what the file is.
pub const FORMAT: &str = "tokend-sessions-snapshot";
/// The newest format version this tokend reads and the one it writes.
pub const VERSION: u32 = 1;
/// Largest file loaded (and written): 256 MiB, some million entries.
pub const MAX_BYTES: u64 = 256 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("cannot read the sessions snapshot {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the sessions snapshot {path} is larger than {MAX_BYTES} bytes")]
    TooLarge { path: PathBuf },
    #[error("the sessions snapshot {path} is corrupt or truncated: {message}")]
    Corrupt { path: PathBuf, message: String },
    #[error(
        "the sessions snapshot {path} was written by a newer tokend (format version {found}; \
         this one reads up to {VERSION})"
    )]
    FutureVersion { path: PathBuf, found: u64 },
    #[error(
        "the sessions snapshot {path} was written for issuer {issuer:?} and client {client_id:?}, \
         not this configuration's"
    )]
    Foreign {
        path: PathBuf,
        issuer: String,
        client_id: String,
    },
    #[error("cannot write the sessions snapshot {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The file.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    /// Always [`FORMAT`].
    format: String,
    version: u32,
    /// Whose revocations these are: a file of another issuer or client is refused.
    issuer: String,
    client_id: String,
    /// Unix seconds.
    written_at: i64,
    state: Exported,
}

/// Read first, leniently, so a newer version is told from a corrupt file.
#[derive(Deserialize)]
struct Header {
    format: Option<String>,
    version: Option<serde_json::Value>,
}

/// Whose snapshot this tokend reads and writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub issuer: String,
    pub client_id: String,
}

/// Parses a snapshot file's bytes: the state it holds, if it is a snapshot of `owner` in a
/// version this tokend reads. Never panics (fuzzed through `tokend::fuzzing`).
pub fn parse(path: &Path, bytes: &[u8], owner: &Owner) -> Result<Exported, SnapshotError> {
    let corrupt = |message: String| SnapshotError::Corrupt {
        path: path.to_path_buf(),
        message,
    };
    let header: Header = serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
    if header.format.as_deref() != Some(FORMAT) {
        return Err(corrupt(format!("its `format` is not {FORMAT:?}")));
    }
    match header.version.as_ref().and_then(serde_json::Value::as_u64) {
        Some(v) if v == u64::from(VERSION) => {}
        Some(found) if found > u64::from(VERSION) => {
            return Err(SnapshotError::FutureVersion {
                path: path.to_path_buf(),
                found,
            });
        }
        _ => return Err(corrupt("its `version` is not a known version".into())),
    }
    let doc: Document = serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
    if doc.issuer != owner.issuer || doc.client_id != owner.client_id {
        return Err(SnapshotError::Foreign {
            path: path.to_path_buf(),
            issuer: doc.issuer,
            client_id: doc.client_id,
        });
    }
    Ok(doc.state)
}

/// Reads at most [`MAX_BYTES`] of `path`; `None` when there is no file.
fn read_bounded(path: &Path) -> Result<Option<Vec<u8>>, SnapshotError> {
    let read_err = |source| SnapshotError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(read_err(e)),
    };
    let too_large = || SnapshotError::TooLarge {
        path: path.to_path_buf(),
    };
    if file.metadata().map_err(read_err)?.len() > MAX_BYTES {
        return Err(too_large());
    }
    let mut bytes = Vec::new();
    file.take(MAX_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    if bytes.len() as u64 > MAX_BYTES {
        return Err(too_large());
    }
    Ok(Some(bytes))
}

/// Loads the snapshot at `path` into `sessions` (entries expired at `now` dropped). `Ok(None)`:
/// there is none yet.
pub fn load(
    path: &Path,
    owner: &Owner,
    sessions: &Sessions,
    now: i64,
) -> Result<Option<Imported>, SnapshotError> {
    let Some(bytes) = read_bounded(path)? else {
        return Ok(None);
    };
    let state = parse(path, &bytes, owner)?;
    Ok(Some(sessions.import(state, now)))
}

/// Writes `state` to `path` atomically: a temporary file (mode 0600) in the same directory,
/// fsynced, renamed over `path`, the directory fsynced. A crash leaves the old file or the
/// new one, never a part.
fn write_atomically(path: &Path, doc: &Document) -> Result<(), SnapshotError> {
    let write_err = |source| SnapshotError::Write {
        path: path.to_path_buf(),
        source,
    };
    let bytes = serde_json::to_vec(doc).map_err(|e| write_err(e.into()))?;
    if bytes.len() as u64 > MAX_BYTES {
        return Err(SnapshotError::TooLarge {
            path: path.to_path_buf(),
        });
    }
    let dir = directory_of(path);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .tempfile_in(dir)
        .map_err(write_err)?;
    tmp.write_all(&bytes).map_err(write_err)?;
    tmp.as_file().sync_all().map_err(write_err)?;
    tmp.persist(path).map_err(|e| write_err(e.error))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(write_err)?;
    Ok(())
}

/// The directory `path` is in, where its temporary file goes and which is fsynced after the
/// rename: `.` for a bare file name (whose `parent()` is the empty path).
fn directory_of(path: &Path) -> &Path {
    path.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Moves a file tokend refused aside to `<name>.corrupt-<UTC time>`; returns the new path.
fn move_aside(path: &Path) -> std::io::Result<PathBuf> {
    let stamp: String = humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        .to_string()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect();
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    // Never over an earlier one (two refusals within a second).
    let aside = (0..100)
        .map(|n| match n {
            0 => path.with_file_name(format!("{name}.corrupt-{stamp}")),
            n => path.with_file_name(format!("{name}.corrupt-{stamp}-{n}")),
        })
        .find(|p| !p.exists())
        .ok_or_else(|| std::io::Error::other("too many files moved aside this second"))?;
    std::fs::rename(path, &aside)?;
    Ok(aside)
}

/// The snapshot of one daemon: where, whose, and the registry it mirrors.
#[derive(Debug)]
pub struct Snapshot {
    path: PathBuf,
    sessions: Arc<Sessions>,
    metrics: Arc<Metrics>,
    /// The change count of the last write (or load); `None` before either.
    written: Mutex<Option<u64>>,
}

impl Snapshot {
    pub fn new(path: PathBuf, sessions: Arc<Sessions>, metrics: Arc<Metrics>) -> Self {
        Self {
            path,
            sessions,
            metrics,
            written: Mutex::new(None),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Loads the snapshot at start. A file tokend cannot use is moved aside, logged as an
    /// error with what to do, counted (`tokend_snapshot_loads_total{result="refused"}`), and
    /// tokend starts without it: an outage over a bad state file would be worse than the
    /// revocations it may have held. Returns the outcome's metric label.
    pub fn restore(&self, owner: &Owner, now: i64) -> &'static str {
        let result = match load(&self.path, owner, &self.sessions, now) {
            Ok(Some(n)) => {
                for (kind, count) in [
                    ("revoked_sid", n.revoked_sids),
                    ("revoked_sub", n.revoked_subs),
                    ("seen_jti", n.seen_jtis),
                    ("ended_refresh", n.ended_refresh),
                    ("session", n.sessions),
                ] {
                    self.metrics
                        .snapshot_loaded
                        .with_label_values(&[kind])
                        .set(i64::try_from(count).unwrap_or(i64::MAX));
                }
                tracing::info!(
                    file = %self.path.display(),
                    revocations = n.revoked_sids + n.revoked_subs,
                    jtis = n.seen_jtis,
                    ended_refresh_tokens = n.ended_refresh,
                    sessions = n.sessions,
                    expired_dropped = n.expired,
                    "restored the sessions snapshot"
                );
                "loaded"
            }
            Ok(None) => {
                tracing::info!(file = %self.path.display(), "no sessions snapshot yet");
                "absent"
            }
            Err(e @ SnapshotError::Read { .. }) => {
                tracing::error!(
                    "{e}; starting without it: its revocations are not applied. Fix the file's \
                     owner or mode (tokend's user must read and write it; systemd's \
                     StateDirectory= does this), then restart"
                );
                "unreadable"
            }
            Err(e) => {
                let fix = match &e {
                    SnapshotError::FutureVersion { .. } => {
                        "run the newer tokend again to keep them"
                    }
                    SnapshotError::Foreign { .. } => {
                        "if provider.issuer or provider.client_id changed by mistake, restore \
                         them and move the file back"
                    }
                    _ => "the file was damaged (disk full, a crash outside tokend, an edit)",
                };
                match move_aside(&self.path) {
                    Ok(aside) => tracing::error!(
                        "{e}; moved aside to {} and starting without it: the revocations in it \
                         are not applied ({fix})",
                        aside.display()
                    ),
                    Err(io) => tracing::error!(
                        "{e}; starting without it: the revocations in it are not applied ({fix}); \
                         it could not be moved aside ({io}) and will be overwritten"
                    ),
                }
                "refused"
            }
        };
        self.metrics
            .snapshot_loads
            .with_label_values(&[result])
            .inc();
        *lock(&self.written) = Some(self.sessions.changes());
        result
    }

    /// Writes the snapshot now (blocking: call from `spawn_blocking`). Writes are serialized,
    /// so the last one started also lands last.
    pub fn write(&self, owner: &Owner, now: i64) -> Result<(), SnapshotError> {
        let mut written = lock(&self.written);
        let (state, changes) = self.sessions.export();
        let doc = Document {
            format: FORMAT.into(),
            version: VERSION,
            issuer: owner.issuer.clone(),
            client_id: owner.client_id.clone(),
            written_at: now,
            state,
        };
        let result = write_atomically(&self.path, &doc);
        let label = if result.is_ok() { "ok" } else { "error" };
        self.metrics
            .snapshot_writes
            .with_label_values(&[label])
            .inc();
        if result.is_ok() {
            *written = Some(changes);
        }
        result
    }

    /// Whether something changed since the last write or load.
    pub fn dirty(&self) -> bool {
        *lock(&self.written) != Some(self.sessions.changes())
    }
}

/// Writes `snapshot` every `interval` when something changed, until `stop`; the last write is
/// the shutdown's, made by the caller once requests have drained.
pub async fn run_writer(
    snapshot: Arc<Snapshot>,
    owner: impl Fn() -> Owner + Send + 'static,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {
                if snapshot.dirty() {
                    write_logged(snapshot.clone(), owner()).await;
                }
            }
            _ = stop.changed() => return,
        }
    }
}

/// Writes on a blocking thread; a failure is logged (and counted by `write`).
pub async fn write_logged(snapshot: Arc<Snapshot>, owner: Owner) {
    let now = crate::verify::now_unix();
    match tokio::task::spawn_blocking(move || snapshot.write(&owner, now)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(
            "{e}; revocations since the last write would be forgotten by a restart (check the \
             state directory's free space and permissions)"
        ),
        Err(e) => tracing::error!(error = %e, "the sessions snapshot writer failed"),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod mutation_tests;
#[cfg(test)]
mod tests;
