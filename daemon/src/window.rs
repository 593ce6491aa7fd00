//! The last minute of verifications for the admin overview: counts by outcome and a latency
//! histogram in a ring of 60 one-second slots of atomics. Recording is a few relaxed atomic
//! adds (no lock, no allocation); a slot is cleared by the first recorder of a new second.
//! Latencies go into fixed log-scale buckets (four per doubling from 1 µs, so a percentile is
//! within ~12% of the truth); percentiles are read from the summed buckets.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokend_shared::Reason;

/// The window, seconds: one slot each.
pub const WINDOW_SECONDS: u64 = 60;
/// Outcome slots: 0 is `valid`, then one per [`Reason`] (the last also takes any overflow).
const OUTCOMES: usize = 64;
/// Latency buckets: 0..4 µs exactly, then four per power of two up to ~2^36 µs (19 h).
const BUCKETS: usize = 144;
/// A slot's `second` while its recorder clears it.
const CLEARING: u64 = u64::MAX;

/// One second's counts.
struct Slot {
    /// The window second (1 = the first second after start) these counts belong to; 0 = never
    /// used, [`CLEARING`] while being reset.
    second: AtomicU64,
    outcomes: [AtomicU64; OUTCOMES],
    buckets: [AtomicU64; BUCKETS],
}

impl Slot {
    fn new() -> Self {
        Self {
            second: AtomicU64::new(0),
            outcomes: std::array::from_fn(|_| AtomicU64::new(0)),
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

/// The ring of slots.
pub struct Window {
    /// Seconds are counted on the monotonic clock from here (a wall-clock jump cannot age
    /// slots out early or keep them forever).
    start: Instant,
    slots: Box<[Slot]>,
    /// Wire names of the outcome slots, set by their first recorder.
    names: [OnceLock<&'static str>; OUTCOMES],
}

impl std::fmt::Debug for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Window").finish_non_exhaustive()
    }
}

impl Default for Window {
    fn default() -> Self {
        Self {
            start: Instant::now(),
            slots: (0..WINDOW_SECONDS).map(|_| Slot::new()).collect(),
            names: std::array::from_fn(|_| OnceLock::new()),
        }
    }
}

/// What the window held at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// Verifications by outcome (`valid` or the reason); outcomes with none are absent.
    pub counts: Vec<(&'static str, u64)>,
    /// Seconds the rates are over: the window, or the time since start when shorter.
    pub seconds: u64,
    pub total: u64,
    /// `None` when `total` is 0.
    pub p50: Option<Duration>,
    pub p99: Option<Duration>,
}

impl Window {
    /// Counts one verification that took `took` and ended at `ended` (passed in, so the hot
    /// path reads the clock once for the duration and the slot).
    pub fn record(&self, result: Result<(), Reason>, took: Duration, ended: Instant) {
        let second = ended.saturating_duration_since(self.start).as_secs() + 1;
        self.record_at(second, result, took);
    }

    /// The window over the last [`WINDOW_SECONDS`].
    pub fn snapshot(&self) -> Snapshot {
        self.snapshot_at(self.now())
    }

    fn now(&self) -> u64 {
        self.start.elapsed().as_secs() + 1
    }

    fn record_at(&self, now: u64, result: Result<(), Reason>, took: Duration) {
        let (index, name) = match result {
            Ok(()) => (0, "valid"),
            Err(r) => (((r as usize) + 1).min(OUTCOMES - 1), r.as_str()),
        };
        self.names[index].get_or_init(|| name);
        let slot = self.slot(now);
        slot.outcomes[index].fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        slot.buckets[bucket(micros)].fetch_add(1, Ordering::Relaxed);
    }

    /// The slot of second `now`, cleared first if it still holds an older second.
    fn slot(&self, now: u64) -> &Slot {
        let slot = &self.slots[(now % WINDOW_SECONDS) as usize];
        loop {
            let second = slot.second.load(Ordering::Acquire);
            if second == now || (second != CLEARING && second > now) {
                // A recorder that read the clock before a slower one cleared the slot for a
                // later second counts into that second: off by one second, never lost.
                return slot;
            }
            if second == CLEARING {
                std::hint::spin_loop();
                continue;
            }
            if slot
                .second
                .compare_exchange(second, CLEARING, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                for c in slot.outcomes.iter().chain(slot.buckets.iter()) {
                    c.store(0, Ordering::Relaxed);
                }
                slot.second.store(now, Ordering::Release);
                return slot;
            }
        }
    }

    fn snapshot_at(&self, now: u64) -> Snapshot {
        let mut outcomes = [0u64; OUTCOMES];
        let mut buckets = [0u64; BUCKETS];
        for slot in self.slots.iter() {
            let second = slot.second.load(Ordering::Acquire);
            if second == 0 || second == CLEARING || second + WINDOW_SECONDS <= now {
                continue;
            }
            for (sum, c) in outcomes.iter_mut().zip(slot.outcomes.iter()) {
                *sum += c.load(Ordering::Relaxed);
            }
            for (sum, c) in buckets.iter_mut().zip(slot.buckets.iter()) {
                *sum += c.load(Ordering::Relaxed);
            }
        }
        let counts = outcomes
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(i, n)| (self.names[i].get().copied().unwrap_or("other"), *n))
            .collect();
        let total = buckets.iter().sum();
        Snapshot {
            counts,
            seconds: now.clamp(1, WINDOW_SECONDS),
            total,
            p50: percentile(&buckets, total, 0.50),
            p99: percentile(&buckets, total, 0.99),
        }
    }
}

/// The bucket of a latency in microseconds.
fn bucket(micros: u64) -> usize {
    if micros < 4 {
        return micros as usize;
    }
    let log2 = 63 - micros.leading_zeros() as usize;
    let sub = ((micros >> (log2 - 2)) & 3) as usize;
    (4 * (log2 - 1) + sub).min(BUCKETS - 1)
}

/// A representative latency of bucket `i`, microseconds: exact below 4 µs, else the middle of
/// the bucket's range.
fn bucket_value(i: usize) -> f64 {
    if i < 4 {
        return i as f64;
    }
    let log2 = i / 4 + 1;
    let sub = (i % 4) as f64;
    let unit = (1u64 << (log2 - 2)) as f64;
    (4.0 + sub + 0.5) * unit
}

/// The `q` quantile (0..=1) of `total` samples in `buckets`.
fn percentile(buckets: &[u64], total: u64, q: f64) -> Option<Duration> {
    if total == 0 {
        return None;
    }
    let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
    let mut seen = 0;
    for (i, n) in buckets.iter().enumerate() {
        seen += n;
        if seen >= rank {
            return Some(Duration::from_nanos((bucket_value(i) * 1000.0) as u64));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn count(s: &Snapshot, name: &str) -> u64 {
        s.counts
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(0, |(_, c)| *c)
    }

    #[test]
    fn issue_11_counts_by_outcome_within_the_window_and_old_slots_age_out() {
        let w = Window::default();
        for _ in 0..3 {
            w.record_at(10, Ok(()), MS);
        }
        w.record_at(10, Err(Reason::Expired), MS);
        w.record_at(40, Err(Reason::Expired), MS);
        let s = w.snapshot_at(40);
        assert_eq!(
            (count(&s, "valid"), count(&s, "expired"), s.total),
            (3, 2, 5)
        );
        assert_eq!(
            s.seconds, 40,
            "rates over the time since start until a minute passed"
        );
        // Second 10 leaves the window at 70; second 40 is still in it.
        let s = w.snapshot_at(69);
        assert_eq!(s.total, 5);
        let s = w.snapshot_at(70);
        assert_eq!(
            (count(&s, "valid"), count(&s, "expired"), s.total),
            (0, 1, 1)
        );
        assert_eq!(s.seconds, WINDOW_SECONDS);
        // Second 70 reuses second 10's slot: cleared, not added to.
        w.record_at(70, Ok(()), MS);
        let s = w.snapshot_at(70);
        assert_eq!((count(&s, "valid"), s.total), (1, 2));
        assert_eq!(w.snapshot_at(200).total, 0);
        assert_eq!(w.snapshot_at(200).p50, None);
    }

    #[test]
    fn issue_11_percentiles_come_from_the_buckets() {
        let w = Window::default();
        // 98 fast ones at 100 µs, two slow ones at 50 ms.
        for _ in 0..98 {
            w.record_at(5, Ok(()), Duration::from_micros(100));
        }
        w.record_at(6, Ok(()), 50 * MS);
        w.record_at(6, Ok(()), 50 * MS);
        let s = w.snapshot_at(6);
        let p50 = s.p50.expect("p50").as_secs_f64() * 1e6;
        let p99 = s.p99.expect("p99").as_secs_f64() * 1e6;
        assert!((88.0..=113.0).contains(&p50), "p50 {p50} µs");
        assert!((44_000.0..=57_000.0).contains(&p99), "p99 {p99} µs");
        assert!(p50 <= p99);
    }

    #[test]
    fn buckets_are_monotonic_and_tight() {
        let mut last = 0;
        for micros in [
            0u64, 1, 3, 4, 5, 7, 8, 15, 16, 100, 1000, 123_456, 10_000_000,
        ] {
            let b = bucket(micros);
            assert!(b >= last, "{micros}");
            last = b;
            let v = bucket_value(b);
            let err = (v - micros as f64).abs() / (micros as f64).max(1.0);
            assert!(err <= 0.13, "{micros} µs -> bucket {b} ({v} µs)");
        }
        assert_eq!(bucket(u64::MAX), BUCKETS - 1);
    }
}
