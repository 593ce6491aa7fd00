//! The embedded engine: single-use records in process memory (DashMap), lost on restart. When
//! login states are at capacity the oldest is evicted, so anonymous load cannot lock out real
//! logins; exchange codes are refused instead.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use dashmap::DashMap;
use dashmap::mapref::entry::Entry;

use super::packed::PackedCode;
use super::{
    BoxFuture, CodeListing, EXPIRED_MEMORY, Key, Kind, Record, Store, StoreError, Stored, TakeError,
};

enum Slot {
    /// Boxed: a record is about 150 bytes and a tombstone 16, and every slot of the map is the
    /// size of its largest variant; the map's spare slots (a third of it, typically) then cost
    /// 48 bytes each instead of about 185 (issue #14). Login states (and a code too large to
    /// pack).
    Live(Box<Record>),
    /// An exchange code, packed: two allocations instead of six (issue #14).
    Code(Box<PackedCode>),
    /// Used; kept until `expires` to recognise replays.
    Used { expires: i64 },
    /// Expired unused and swept; kept until `until` to answer "expired" once more.
    Expired { until: i64 },
}

struct Table {
    map: DashMap<Key, Slot>,
    /// Live records (not tombstones), kept alongside so the capacity check costs no scan.
    live: AtomicUsize,
    max: AtomicUsize,
    /// Keys in insertion order, oldest first, when a full table evicts instead of refusing
    /// (login states). May hold keys already taken or swept; they are skipped and compacted.
    order: Option<Mutex<VecDeque<Key>>>,
    /// Records evicted so far.
    evicted: AtomicU64,
}

impl Slot {
    fn live(record: Record) -> Self {
        match record {
            Record::Code(c) => match PackedCode::pack(&c) {
                Some(packed) => Slot::Code(Box::new(packed)),
                None => Slot::Live(Box::new(Record::Code(c))),
            },
            other => Slot::Live(Box::new(other)),
        }
    }

    /// When a live record expires; `None` for a tombstone.
    fn live_expires(&self) -> Option<i64> {
        match self {
            Slot::Live(r) => Some(r.expires()),
            Slot::Code(c) => Some(c.expires),
            Slot::Used { .. } | Slot::Expired { .. } => None,
        }
    }

    fn is_live(&self) -> bool {
        self.live_expires().is_some()
    }
}

impl Table {
    fn new(max: usize, evicts: bool) -> Self {
        Self {
            map: DashMap::new(),
            live: AtomicUsize::new(0),
            max: AtomicUsize::new(max),
            order: evicts.then(|| Mutex::new(VecDeque::new())),
            evicted: AtomicU64::new(0),
        }
    }

    /// Removes the oldest live record; false when there is none.
    fn evict_oldest(&self, order: &mut VecDeque<Key>) -> bool {
        while let Some(key) = order.pop_front() {
            if self.map.remove_if(&key, |_, slot| slot.is_live()).is_some() {
                self.live.fetch_sub(1, Ordering::AcqRel);
                self.evicted.fetch_add(1, Ordering::Relaxed);
                return true;
            }
        }
        false
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The in-memory store.
pub struct MemoryStore {
    codes: Table,
    logins: Table,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("codes", &self.codes.live.load(Ordering::Relaxed))
            .field("logins", &self.logins.live.load(Ordering::Relaxed))
            .finish()
    }
}

impl MemoryStore {
    pub fn new(max_codes: usize, max_logins: usize) -> Self {
        Self {
            codes: Table::new(max_codes, false),
            logins: Table::new(max_logins, true),
        }
    }

    /// Login states evicted so far to make room for newer ones.
    pub fn evicted(&self, kind: Kind) -> u64 {
        self.table(kind).evicted.load(Ordering::Relaxed)
    }

    fn table(&self, kind: Kind) -> &Table {
        match kind {
            Kind::ExchangeCode => &self.codes,
            Kind::LoginState => &self.logins,
        }
    }

    /// Synchronous [`Store::put`].
    pub fn put_now(&self, kind: Kind, key: Key, record: Record) -> Result<Stored, StoreError> {
        let t = self.table(kind);
        let max = t.max.load(Ordering::Relaxed);
        let mut stored = Stored::default();
        // The order lock (evicting tables only) makes make-room-then-insert one step.
        let mut order = t.order.as_ref().map(lock);
        // Reserve a slot first so concurrent puts cannot overshoot the limit.
        while t.live.fetch_add(1, Ordering::AcqRel) >= max {
            t.live.fetch_sub(1, Ordering::AcqRel);
            let made_room = order.as_deref_mut().is_some_and(|o| t.evict_oldest(o));
            if !made_room {
                return Err(StoreError::Full(kind, max));
            }
            stored.evicted += 1;
        }
        match t.map.entry(key) {
            Entry::Occupied(_) => {
                t.live.fetch_sub(1, Ordering::AcqRel);
                Err(StoreError::Duplicate)
            }
            Entry::Vacant(v) => {
                v.insert(Slot::live(record));
                if let Some(order) = order.as_deref_mut() {
                    order.push_back(key);
                    // Keys of taken or swept records pile up between sweeps: compact.
                    if order.len() > max.saturating_mul(2).max(64) {
                        order.retain(|k| t.map.get(k).is_some_and(|s| s.is_live()));
                    }
                }
                Ok(stored)
            }
        }
    }

    /// Synchronous [`Store::take`].
    pub fn take_now(&self, kind: Kind, key: Key, now: i64) -> Result<Record, TakeError> {
        let t = self.table(kind);
        match t.map.entry(key) {
            Entry::Vacant(_) => Err(TakeError::Unknown),
            Entry::Occupied(mut e) => match e.get() {
                Slot::Used { .. } => Err(TakeError::AlreadyUsed),
                Slot::Expired { .. } => {
                    e.remove();
                    Err(TakeError::ExpiredSwept)
                }
                // The expiry is checked before removal: an expired record is gone, and said so.
                Slot::Live(_) | Slot::Code(_) if e.get().live_expires() <= Some(now) => {
                    e.remove();
                    t.live.fetch_sub(1, Ordering::AcqRel);
                    Err(TakeError::Expired)
                }
                Slot::Live(_) | Slot::Code(_) => {
                    let expires = e.get().live_expires().unwrap_or(now);
                    let record = match e.insert(Slot::Used { expires }) {
                        Slot::Live(record) => *record,
                        Slot::Code(packed) => Record::Code(packed.unpack()),
                        Slot::Used { .. } | Slot::Expired { .. } => {
                            return Err(TakeError::AlreadyUsed);
                        }
                    };
                    t.live.fetch_sub(1, Ordering::AcqRel);
                    Ok(record)
                }
            },
        }
    }
}

impl Store for MemoryStore {
    fn put(
        &self,
        kind: Kind,
        key: Key,
        record: Record,
    ) -> BoxFuture<'_, Result<Stored, StoreError>> {
        Box::pin(std::future::ready(self.put_now(kind, key, record)))
    }

    fn take(&self, kind: Kind, key: Key, now: i64) -> BoxFuture<'_, Result<Record, TakeError>> {
        Box::pin(std::future::ready(self.take_now(kind, key, now)))
    }

    fn outstanding(&self, kind: Kind) -> usize {
        self.table(kind).live.load(Ordering::Relaxed)
    }

    fn set_capacity(&self, kind: Kind, max: usize) {
        self.table(kind).max.store(max, Ordering::Relaxed);
    }

    fn list_codes(&self) -> Vec<CodeListing> {
        self.codes
            .map
            .iter()
            .filter_map(|e| match e.value() {
                Slot::Code(c) => Some(CodeListing {
                    key: *e.key(),
                    kind: c.kind,
                    sub: c.sub().to_owned(),
                    created: c.created,
                    expires: c.expires,
                }),
                Slot::Live(r) => match &**r {
                    Record::Code(c) => Some(CodeListing {
                        key: *e.key(),
                        kind: c.kind,
                        sub: c.sub.clone(),
                        created: c.created,
                        expires: c.expires,
                    }),
                    Record::Login(_) => None,
                },
                _ => None,
            })
            .collect()
    }

    fn kind_name(&self) -> &'static str {
        "memory"
    }

    fn sweep(&self, now: i64) -> usize {
        let mut expired = 0;
        for t in [&self.codes, &self.logins] {
            let is_codes = std::ptr::eq(t, &self.codes);
            t.map.retain(|_, slot| match slot {
                Slot::Live(_) | Slot::Code(_) => match slot.live_expires() {
                    Some(expires) if now >= expires => {
                        t.live.fetch_sub(1, Ordering::AcqRel);
                        if is_codes {
                            expired += 1;
                        }
                        let until = expires.saturating_add(EXPIRED_MEMORY);
                        *slot = Slot::Expired { until };
                        now < until
                    }
                    _ => true,
                },
                Slot::Used { expires } => now < *expires,
                Slot::Expired { until } => now < *until,
            });
            if let Some(order) = &t.order {
                lock(order).retain(|k| t.map.get(k).is_some_and(|s| s.is_live()));
            }
        }
        expired
    }
}

#[cfg(test)]
mod mutation_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{CodeKind, CodePayload, LoginState, code_key, key_of};
    use std::sync::Arc;
    use tokend_shared::Secret;

    fn code(expires: i64) -> Record {
        Record::Code(CodePayload {
            access_token: Secret::new("at"),
            refresh_token: None,
            id_token: None,
            sub: "s".into(),
            sid: None,
            created: 0,
            expires,
            kind: CodeKind::Api,
        })
    }

    fn login(n: u8) -> Record {
        Record::Login(LoginState {
            nonce: Secret::new("n"),
            pkce_verifier: Secret::new("v"),
            redirect: "/".into(),
            browser: [n; 32],
            created: 0,
            expires: 100,
        })
    }

    #[test]
    fn full_login_table_evicts_the_oldest() {
        let s = MemoryStore::new(1, 2);
        for n in 0..3 {
            s.put_now(Kind::LoginState, key_of(&n.to_string()), login(n))
                .expect("room is made");
        }
        assert_eq!(s.outstanding(Kind::LoginState), 2);
        assert_eq!(s.evicted(Kind::LoginState), 1);
        assert_eq!(
            s.take_now(Kind::LoginState, key_of("0"), 1).err(),
            Some(TakeError::Unknown),
            "the oldest went"
        );
        // A taken state is skipped: the next eviction takes the oldest live one.
        assert!(s.take_now(Kind::LoginState, key_of("1"), 1).is_ok());
        s.put_now(Kind::LoginState, key_of("3"), login(3))
            .expect("stored");
        s.put_now(Kind::LoginState, key_of("4"), login(4))
            .expect("stored");
        assert!(s.take_now(Kind::LoginState, key_of("2"), 1).is_err());
        assert!(s.take_now(Kind::LoginState, key_of("3"), 1).is_ok());
        assert!(s.take_now(Kind::LoginState, key_of("4"), 1).is_ok());
        // Codes are refused, never evicted.
        s.put_now(Kind::ExchangeCode, key_of("c1"), code(100))
            .expect("room");
        assert!(matches!(
            s.put_now(Kind::ExchangeCode, key_of("c2"), code(100)),
            Err(StoreError::Full(..))
        ));
    }

    #[test]
    fn sweeping_keeps_tombstones_until_they_lapse_and_capacity_follows_reloads() {
        // Issue #8 (mutation testing): tombstone lifetimes, eviction counts and set_capacity
        // were untested.
        let s = MemoryStore::new(1, 1);
        let k = key_of("used");
        s.put_now(Kind::ExchangeCode, k, code(100)).expect("stored");
        assert!(s.take_now(Kind::ExchangeCode, k, 10).is_ok());
        s.sweep(99);
        assert_eq!(
            s.take_now(Kind::ExchangeCode, k, 99).err(),
            Some(TakeError::AlreadyUsed),
            "a used code is remembered until it would have expired"
        );
        s.sweep(100);
        assert_eq!(
            s.take_now(Kind::ExchangeCode, k, 100).err(),
            Some(TakeError::Unknown)
        );
        let e = key_of("expired");
        s.put_now(Kind::ExchangeCode, e, code(100)).expect("stored");
        assert_eq!(s.sweep(100), 1);
        s.sweep(100 + EXPIRED_MEMORY - 1);
        assert_eq!(
            s.take_now(Kind::ExchangeCode, e, 100 + EXPIRED_MEMORY - 1)
                .err(),
            Some(TakeError::ExpiredSwept),
            "kept until EXPIRED_MEMORY has passed"
        );

        s.set_capacity(Kind::ExchangeCode, 2);
        s.put_now(Kind::ExchangeCode, key_of("a"), code(500))
            .expect("a");
        s.put_now(Kind::ExchangeCode, key_of("b"), code(500))
            .expect("room for a second after the reload");
        for n in 0..3 {
            s.put_now(Kind::LoginState, key_of(&format!("l{n}")), login(n))
                .expect("evicting");
        }
        assert_eq!(s.evicted(Kind::LoginState), 2);
        assert_eq!(s.evicted(Kind::ExchangeCode), 0);
        let debug = format!("{s:?}");
        assert!(
            debug.contains("codes: 2") && debug.contains("logins: 1"),
            "{debug}"
        );
    }

    #[test]
    fn code_keys_depend_on_the_kind() {
        assert_ne!(
            code_key(CodeKind::Flow, "abc"),
            code_key(CodeKind::Api, "abc")
        );
        assert_ne!(code_key(CodeKind::Api, "abc"), key_of("abc"));
    }

    #[test]
    fn single_use_expired_and_replayed() {
        let s = MemoryStore::new(10, 10);
        let k = key_of("code-1");
        s.put_now(Kind::ExchangeCode, k, code(100)).expect("stored");
        assert_eq!(s.outstanding(Kind::ExchangeCode), 1);
        assert!(s.take_now(Kind::ExchangeCode, k, 50).is_ok());
        assert_eq!(
            s.take_now(Kind::ExchangeCode, k, 51).err(),
            Some(TakeError::AlreadyUsed)
        );
        assert_eq!(s.outstanding(Kind::ExchangeCode), 0);

        let k2 = key_of("code-2");
        s.put_now(Kind::ExchangeCode, k2, code(100))
            .expect("stored");
        assert_eq!(
            s.take_now(Kind::ExchangeCode, k2, 100).err(),
            Some(TakeError::Expired)
        );
        assert_eq!(
            s.take_now(Kind::ExchangeCode, k2, 101).err(),
            Some(TakeError::Unknown),
            "an expired code is gone"
        );
        assert_eq!(
            s.take_now(Kind::LoginState, k, 0).err(),
            Some(TakeError::Unknown),
            "kinds are separate"
        );
    }

    #[test]
    fn capacity_and_sweep() {
        let s = MemoryStore::new(2, 2);
        s.put_now(Kind::ExchangeCode, key_of("a"), code(10))
            .expect("a");
        s.put_now(Kind::ExchangeCode, key_of("b"), code(100))
            .expect("b");
        assert!(matches!(
            s.put_now(Kind::ExchangeCode, key_of("c"), code(100)),
            Err(StoreError::Full(Kind::ExchangeCode, 2))
        ));
        assert_eq!(s.sweep(20), 1);
        assert_eq!(s.outstanding(Kind::ExchangeCode), 1);
        s.put_now(Kind::ExchangeCode, key_of("c"), code(100))
            .expect("room again");
        assert_eq!(
            s.put_now(Kind::ExchangeCode, key_of("c"), code(100)),
            Err(StoreError::Full(Kind::ExchangeCode, 2))
        );
    }

    #[test]
    fn a_swept_record_still_answers_expired_for_a_while() {
        // Issue #8: whether "expired" or "unknown" came back depended on when the sweeper ran.
        let s = MemoryStore::new(2, 2);
        s.put_now(Kind::ExchangeCode, key_of("a"), code(10))
            .expect("a");
        s.put_now(Kind::ExchangeCode, key_of("b"), code(10))
            .expect("b");
        assert_eq!(s.sweep(11), 2, "both counted once, by the sweeper");
        assert_eq!(s.outstanding(Kind::ExchangeCode), 0, "no longer live");
        assert_eq!(
            s.take_now(Kind::ExchangeCode, key_of("a"), 12).err(),
            Some(TakeError::ExpiredSwept)
        );
        assert_eq!(
            s.take_now(Kind::ExchangeCode, key_of("a"), 12).err(),
            Some(TakeError::Unknown),
            "said once"
        );
        assert_eq!(s.sweep(12), 0, "not counted again");
        s.sweep(10 + EXPIRED_MEMORY);
        assert_eq!(
            s.take_now(Kind::ExchangeCode, key_of("b"), 10 + EXPIRED_MEMORY)
                .err(),
            Some(TakeError::Unknown),
            "forgotten after EXPIRED_MEMORY"
        );
    }

    #[test]
    fn concurrent_takes_exactly_one_wins() {
        let s = Arc::new(MemoryStore::new(10, 10));
        let k = key_of("contested");
        s.put_now(Kind::ExchangeCode, k, code(100)).expect("stored");
        let wins: usize = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    let s = s.clone();
                    scope.spawn(move || {
                        (0..100)
                            .filter(|_| s.take_now(Kind::ExchangeCode, k, 1).is_ok())
                            .count()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap_or(0)).sum()
        });
        assert_eq!(wins, 1);
    }

    #[test]
    fn debug_shows_no_tokens() {
        let rec = code(1);
        assert!(!format!("{rec:?}").contains("\"at\""));
    }
}
