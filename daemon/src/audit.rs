//! tokend's own audit trail: a bounded ring of [`AuditEvent`]s (logins, codes, refreshes,
//! logouts, operators' actions, verification failures aggregated by reason) and a bounded
//! broadcast of the same events for the admin API's live stream. Recording never blocks and
//! never waits on a reader: a reader that falls behind the broadcast is told it lagged.
//! Events carry no tokens and no codes.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use tokend_shared::{AuditEvent, AuditKind, Reason};
use tokio::sync::broadcast;

/// Events kept for `GET /v1/admin/events`.
pub const RING_CAPACITY: usize = 1024;
/// Events a stream reader may fall behind before it is dropped.
pub const STREAM_CAPACITY: usize = 256;

/// The ring, the stream and the verification counts by reason.
#[derive(Debug)]
pub struct Audit {
    ring: Mutex<VecDeque<AuditEvent>>,
    capacity: usize,
    next_seq: AtomicU64,
    live: broadcast::Sender<AuditEvent>,
    /// Valid verifications since start, for the overview: an atomic, as the hot path counts
    /// one per request (issue #14); refusals are counted by reason in `verifications`.
    valid: AtomicU64,
    /// Refused verifications since start by reason, for the overview.
    verifications: Mutex<BTreeMap<&'static str, u64>>,
    /// Failures since the last `verify_failures` event.
    pending_failures: Mutex<BTreeMap<&'static str, u64>>,
}

impl Default for Audit {
    fn default() -> Self {
        Self::with_capacity(RING_CAPACITY, STREAM_CAPACITY)
    }
}

/// The parts of an event its recorder chooses.
#[derive(Debug, Default)]
pub struct Entry {
    pub sub: Option<String>,
    pub sid: Option<String>,
    pub operator_uid: Option<u32>,
    pub detail: Option<String>,
    pub count: Option<u64>,
    pub counts: BTreeMap<String, u64>,
}

impl Audit {
    pub fn with_capacity(ring: usize, stream: usize) -> Self {
        let (live, _) = broadcast::channel(stream.max(1));
        Self {
            ring: Mutex::new(VecDeque::with_capacity(ring.min(RING_CAPACITY))),
            capacity: ring.max(1),
            next_seq: AtomicU64::new(1),
            live,
            valid: AtomicU64::new(0),
            verifications: Mutex::new(BTreeMap::new()),
            pending_failures: Mutex::new(BTreeMap::new()),
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Records an event: into the ring (the oldest goes when full) and to live readers.
    pub fn record(&self, kind: AuditKind, entry: Entry) {
        let mut ring = lock(&self.ring);
        // Numbered under the ring's lock, so the ring and the stream are in sequence order.
        let event = AuditEvent {
            seq: self.next_seq.fetch_add(1, Ordering::Relaxed),
            at_ms: now_ms(),
            kind,
            sub: entry.sub,
            sid: entry.sid,
            operator_uid: entry.operator_uid,
            detail: entry.detail,
            count: entry.count,
            counts: entry.counts,
        };
        if ring.len() == self.capacity {
            ring.pop_front();
        }
        ring.push_back(event.clone());
        // No receiver is fine; a full channel overwrites the oldest and the reader lags.
        let _ = self.live.send(event);
    }

    /// Shorthand for an event about one user's session.
    pub fn user(&self, kind: AuditKind, sub: &str, sid: Option<&str>) {
        self.record(
            kind,
            Entry {
                sub: Some(sub.to_string()),
                sid: sid.map(str::to_string),
                ..Entry::default()
            },
        );
    }

    /// Events after `after` (sequence number), oldest first, at most `limit`.
    pub fn since(&self, after: u64, limit: usize) -> Vec<AuditEvent> {
        lock(&self.ring)
            .iter()
            .filter(|e| e.seq > after)
            .take(limit)
            .cloned()
            .collect()
    }

    /// A live reader: every event recorded from now on, until it lags.
    pub fn subscribe(&self) -> broadcast::Receiver<AuditEvent> {
        self.live.subscribe()
    }

    /// Counts one verification (called by `Metrics::verified`).
    pub fn verified(&self, result: Result<(), Reason>) {
        match result {
            Ok(()) => {
                self.valid.fetch_add(1, Ordering::Relaxed);
            }
            Err(r) => {
                *lock(&self.pending_failures).entry(r.as_str()).or_default() += 1;
                *lock(&self.verifications).entry(r.as_str()).or_default() += 1;
            }
        }
    }

    /// Verifications since start by outcome (`valid` or the reason); outcomes with none are
    /// absent.
    pub fn verification_counts(&self) -> BTreeMap<String, u64> {
        let mut counts: BTreeMap<String, u64> = lock(&self.verifications)
            .iter()
            .map(|(k, v)| ((*k).to_string(), *v))
            .collect();
        let valid = self.valid.load(Ordering::Relaxed);
        if valid > 0 {
            counts.insert("valid".into(), valid);
        }
        counts
    }

    /// Records one `verify_failures` event with the failures counted since the last one, if
    /// any (the sweeper calls this every few seconds: failures are aggregated, not one event
    /// per refused token).
    pub fn flush_failures(&self) {
        let counts = std::mem::take(&mut *lock(&self.pending_failures));
        if counts.is_empty() {
            return;
        }
        let total = counts.values().sum();
        self.record(
            AuditKind::VerifyFailures,
            Entry {
                count: Some(total),
                counts: counts
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect(),
                ..Entry::default()
            },
        );
    }
}

/// The marker a dropped stream reader gets last: `skipped` events it missed.
pub fn dropped_marker(skipped: u64) -> AuditEvent {
    AuditEvent {
        seq: 0,
        at_ms: now_ms(),
        kind: AuditKind::Dropped,
        sub: None,
        sid: None,
        operator_uid: None,
        detail: Some(
            "reader too slow: events were skipped and the stream ends; reconnect and \
                      read GET /v1/admin/events to catch up"
                .into(),
        ),
        count: Some(skipped),
        counts: BTreeMap::new(),
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_keeps_the_newest_in_order() {
        let a = Audit::with_capacity(3, 8);
        for i in 0..5 {
            a.user(AuditKind::Refresh, &format!("u{i}"), None);
        }
        let seqs: Vec<u64> = a.since(0, 10).iter().map(|e| e.seq).collect();
        assert_eq!(seqs, vec![3, 4, 5]);
        assert_eq!(a.since(4, 10).len(), 1);
    }

    #[test]
    fn failures_are_aggregated_by_reason() {
        let a = Audit::default();
        a.verified(Err(Reason::Expired));
        a.verified(Err(Reason::Expired));
        a.verified(Err(Reason::BadSignature));
        a.verified(Ok(()));
        a.flush_failures();
        a.flush_failures(); // nothing new: no second event
        let events = a.since(0, 10);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].kind, AuditKind::VerifyFailures);
        assert_eq!(events[0].count, Some(3));
        assert_eq!(events[0].counts.get("expired"), Some(&2));
        assert_eq!(a.verification_counts().get("valid"), Some(&1));
    }

    #[tokio::test]
    async fn a_slow_reader_lags_and_never_blocks_the_recorder() {
        let a = Audit::with_capacity(16, 4);
        let mut slow = a.subscribe();
        // Far more than the channel holds: recording must not wait for the reader.
        for i in 0..100 {
            a.user(AuditKind::CodeIssued, &format!("u{i}"), None);
        }
        match slow.recv().await {
            Err(broadcast::error::RecvError::Lagged(n)) => assert_eq!(n, 96),
            other => panic!("expected a lag, got {other:?}"),
        }
    }
}
