//! The registry's side of sessions shared with other instances (the Redis store, issue #12):
//! a session as a [`SessionRecord`] for the store, a record another instance wrote adopted
//! here (so its refresh and logout work on this instance), ended refresh tokens learnt from a
//! record, and the last-seen times not yet written behind.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use super::{Change, Session, SessionSecrets, Sessions, lock};
use crate::store::{Key, SessionRecord, key_of};

impl Session {
    /// This session as the instances share it (with its tokens; the store seals them).
    pub fn record(&self) -> SessionRecord {
        let secrets = lock(&self.secrets);
        SessionRecord {
            key: self.key.clone(),
            sid: self.sid.clone(),
            sub: self.sub.clone(),
            email: self.email.clone(),
            organization_id: self.organization_id.clone(),
            role: self.role.clone(),
            created: self.created,
            access_expires: self.access_expires.load(Ordering::Relaxed),
            refresh_expires: self.refresh_expires.load(Ordering::Relaxed),
            last_seen: self.last_seen.load(Ordering::Relaxed),
            refresh_token: secrets.refresh_token.clone(),
            id_token: secrets.id_token.clone(),
        }
    }
}

impl Sessions {
    /// Whether a shared record belongs to a session that ended (its `sid` or user revoked
    /// since it was made, or its refresh token ended).
    fn record_ended(&self, r: &SessionRecord, now: i64) -> bool {
        let by_sid = r
            .sid
            .as_deref()
            .is_some_and(|sid| self.revoked_sids.get(sid).is_some_and(|x| now < x.until));
        let by_sub = self
            .revoked_subs
            .get(&r.sub)
            .is_some_and(|x| now < x.until && r.created <= x.at);
        let by_refresh = r
            .refresh_token
            .as_ref()
            .is_some_and(|rt| self.refresh_token_ended(rt.expose()));
        by_sid || by_sub || by_refresh
    }

    /// Takes in a session another instance recorded (or a newer state of one held here): its
    /// current refresh and ID tokens, its expiries. `None` when it ended meanwhile. A session
    /// held here is updated in place, so its cached verifications stay linked to it.
    pub fn adopt(&self, r: &SessionRecord, now: i64) -> Option<Arc<Session>> {
        if self.record_ended(r, now) {
            return None;
        }
        let refresh_key = r.refresh_token.as_ref().map(|t| key_of(t.expose()));
        let held = self.by_key.get(&r.key).map(|s| s.clone());
        let session = match held.filter(|s| !s.is_ended()) {
            Some(s) => {
                let mut secrets = lock(&s.secrets);
                if let Some(old) = secrets.refresh_key
                    && Some(old) != refresh_key
                {
                    self.by_refresh.remove(&old);
                }
                secrets.refresh_key = refresh_key;
                secrets.refresh_token = r.refresh_token.clone();
                if r.id_token.is_some() {
                    secrets.id_token = r.id_token.clone();
                }
                drop(secrets);
                s.access_expires.store(r.access_expires, Ordering::Relaxed);
                s.refresh_expires
                    .store(r.refresh_expires, Ordering::Relaxed);
                s.last_seen.fetch_max(r.last_seen, Ordering::Relaxed);
                s
            }
            None => {
                let s = Arc::new(Session {
                    key: r.key.clone(),
                    sid: r.sid.clone(),
                    sub: r.sub.clone(),
                    email: r.email.clone(),
                    organization_id: r.organization_id.clone(),
                    role: r.role.clone(),
                    created: r.created,
                    access_expires: AtomicI64::new(r.access_expires),
                    refresh_expires: AtomicI64::new(r.refresh_expires),
                    last_seen: AtomicI64::new(r.last_seen),
                    flushed: AtomicI64::new(r.last_seen),
                    ended: AtomicBool::new(false),
                    secrets: Mutex::new(SessionSecrets {
                        refresh_token: r.refresh_token.clone(),
                        refresh_key,
                        id_token: r.id_token.clone(),
                    }),
                });
                self.by_key.insert(r.key.clone(), s.clone());
                s
            }
        };
        if let Some(rk) = refresh_key {
            self.by_refresh.insert(rk, r.key.clone());
        }
        self.changed();
        // A revocation applied while this was added ends it as it would have.
        if self.record_ended(r, now) {
            self.by_key.remove(&r.key);
            session.ended.store(true, Ordering::Relaxed);
            return None;
        }
        Some(session)
    }

    /// Refuses a refresh token of a session that ended on another instance's record (here and,
    /// through the outbox, everywhere), until it would have expired.
    pub fn end_refresh_token(&self, key: Key, until: i64) {
        self.by_refresh.remove(&key);
        self.ended_refresh.insert(key, until);
        self.changed();
        self.emit(Change::EndedRefresh { key, until });
    }

    /// The sessions seen since their last-seen time was last handed out here (registry key,
    /// unix seconds), marked as handed out: what the write-behind sends to the store.
    pub fn unflushed_last_seen(&self) -> Vec<(String, i64)> {
        self.by_key
            .iter()
            .filter_map(|s| {
                let seen = s.last_seen.load(Ordering::Relaxed);
                let before = s.flushed.swap(seen, Ordering::Relaxed);
                (seen > before).then(|| (s.key.clone(), seen))
            })
            .collect()
    }
}

/// How often the last-seen times of the sessions seen since are written to the shared store
/// (so at most once per this per session, and never on the verification path).
pub const LAST_SEEN_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Writes the last-seen times behind, in one batch every [`LAST_SEEN_EVERY`], until `stop`
/// turns true. A failed batch is dropped (the next sighting is written again).
pub async fn write_behind(
    sessions: Arc<Sessions>,
    shared: Arc<dyn crate::store::SharedSessions>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(LAST_SEEN_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let batch = sessions.unflushed_last_seen();
        if batch.is_empty() {
            continue;
        }
        if let Err(e) = shared.seen(batch).await {
            tracing::debug!(error = %e, "last-seen times not written to the store");
        }
    }
}
