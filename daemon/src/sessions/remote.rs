//! The revocation list shared with other tokend instances (issue #12): what this instance
//! tells them ([`Change`], through an [`Outbox`] that `revsync` provides with the Redis
//! store), what it takes from them ([`Sessions::apply_remote`], never told back), and the
//! single use of logout-token `jti`s across instances ([`Sessions::claim_jti`]). Verification
//! reads only the local maps; nothing here waits on the verification path.

use std::sync::Arc;

use super::{EndReason, Revocation, Session, Sessions};
use crate::store::{BoxFuture, Key, Unavailable};

/// One entry of the revocation list, as it is shared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Tokens of session `sid` are refused until `until` (unix seconds), because of `why`.
    Sid {
        sid: String,
        at: i64,
        until: i64,
        why: EndReason,
    },
    /// Tokens of user `sub` issued at or before `at` are refused until `until`.
    Sub {
        sub: String,
        at: i64,
        until: i64,
        why: EndReason,
    },
    /// The refresh token with this hash belonged to an ended session; refused until `until`.
    EndedRefresh { key: Key, until: i64 },
}

/// Where this instance's revocations go, and who decides whether a `jti` was seen anywhere.
/// Implementations never block: `publish` queues.
pub trait Outbox: Send + Sync + std::fmt::Debug {
    /// Shares a revocation made here (queued; written and published in the background).
    fn publish(&self, change: Change);
    /// Records a logout token's `jti` where every instance sees it: true the first time.
    fn claim_jti(&self, jti: &str, until: i64) -> BoxFuture<'_, Result<bool, Unavailable>>;
}

impl Sessions {
    /// Shares this instance's revocations from now on (set once, by `revsync`).
    pub fn set_outbox(&self, outbox: Arc<dyn Outbox>) {
        let _ = self.outbox.set(outbox);
    }

    /// Tells the other instances, if there are any.
    pub(super) fn emit(&self, change: Change) {
        if let Some(outbox) = self.outbox.get() {
            outbox.publish(change);
        }
    }

    /// Every entry of the revocation list in force at `now` (for the resync's push of what
    /// could not be published).
    pub fn revocation_entries(&self, now: i64) -> Vec<Change> {
        let sids = self.revoked_sids.iter().filter(|r| now < r.until).map(|r| {
            let (sid, r) = (r.key().clone(), *r.value());
            Change::Sid {
                sid,
                at: r.at,
                until: r.until,
                why: r.why,
            }
        });
        let subs = self.revoked_subs.iter().filter(|r| now < r.until).map(|r| {
            let (sub, r) = (r.key().clone(), *r.value());
            Change::Sub {
                sub,
                at: r.at,
                until: r.until,
                why: r.why,
            }
        });
        let refresh = self
            .ended_refresh
            .iter()
            .filter(|r| now < *r.value())
            .map(|r| Change::EndedRefresh {
                key: *r.key(),
                until: *r.value(),
            });
        sids.chain(subs).chain(refresh).collect()
    }

    /// Applies a revocation another instance made: merged into the local list (the later
    /// `at` and `until` win), the local sessions it names ended. Not told back. Returns the
    /// local sessions that ended (their refresh tokens are the caller's to revoke).
    pub fn apply_remote(&self, change: Change, now: i64) -> Vec<Arc<Session>> {
        if !live(&change, now) {
            return Vec::new();
        }
        let ended = match change {
            Change::Sid {
                sid,
                at,
                until,
                why,
            } => {
                let fresh = merge(&self.revoked_sids, sid.clone(), at, until, why);
                if !fresh {
                    return Vec::new();
                }
                let ended: Vec<_> = self
                    .by_key
                    .remove(&sid)
                    .map(|(_, s)| s)
                    .into_iter()
                    .collect();
                self.finish(&ended, why);
                ended
            }
            Change::Sub {
                sub,
                at,
                until,
                why,
            } => {
                let fresh = merge(&self.revoked_subs, sub.clone(), at, until, why);
                if !fresh {
                    return Vec::new();
                }
                let keys: Vec<String> = self
                    .by_key
                    .iter()
                    .filter(|s| s.sub == sub && s.created <= at)
                    .map(|s| s.key.clone())
                    .collect();
                let ended: Vec<_> = keys
                    .iter()
                    .filter_map(|k| self.by_key.remove(k).map(|(_, s)| s))
                    .collect();
                self.finish(&ended, why);
                ended
            }
            Change::EndedRefresh { key, until } => {
                let mut fresh = false;
                self.ended_refresh
                    .entry(key)
                    .and_modify(|u| {
                        if *u < until {
                            *u = until;
                            fresh = true;
                        }
                    })
                    .or_insert_with(|| {
                        fresh = true;
                        until
                    });
                if fresh {
                    self.changed();
                }
                return Vec::new();
            }
        };
        self.bump_generation();
        self.changed();
        ended
    }

    /// Records a logout token's `jti`: false if this instance saw it, or (with a shared
    /// outbox) any other did. When the shared record cannot be reached, the local one decides
    /// (the logout still applies; the outbox logs the outage).
    pub async fn claim_jti(&self, jti: &str, until: i64) -> bool {
        if !self.first_use_of_jti(jti, until) {
            return false;
        }
        match self.outbox.get() {
            None => true,
            Some(outbox) => outbox.claim_jti(jti, until).await.unwrap_or(true),
        }
    }
}

fn live(change: &Change, now: i64) -> bool {
    match change {
        Change::Sid { until, .. }
        | Change::Sub { until, .. }
        | Change::EndedRefresh { until, .. } => now < *until,
    }
}

/// Merges a revocation in; true when it refuses more than what was there.
fn merge(
    map: &dashmap::DashMap<String, Revocation>,
    id: String,
    at: i64,
    until: i64,
    why: EndReason,
) -> bool {
    let mut fresh = false;
    map.entry(id)
        .and_modify(|r| {
            // Refuses more only with a later `at`; a later `until` refuses the same for longer.
            fresh = at > r.at;
            r.at = r.at.max(at);
            r.until = r.until.max(until);
            if fresh {
                r.why = why;
            }
        })
        .or_insert_with(|| {
            fresh = true;
            Revocation { at, until, why }
        });
    fresh
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use crate::sessions::NewSession;
    use std::sync::Mutex;
    use std::time::Duration;

    #[derive(Debug, Default)]
    struct Recorder(Mutex<Vec<Change>>);

    impl Outbox for Recorder {
        fn publish(&self, change: Change) {
            self.0.lock().expect("lock").push(change);
        }
        fn claim_jti(&self, _: &str, _: i64) -> BoxFuture<'_, Result<bool, Unavailable>> {
            Box::pin(async { Err(Unavailable("down".into())) })
        }
    }

    fn login(s: &Sessions, sub: &str, sid: &str, now: i64) {
        let claims = tokend_shared::Claims {
            sub: sub.into(),
            email: None,
            name: None,
            preferred_username: None,
            organization_id: None,
            groups: vec![],
            role: "user".into(),
            scope: None,
            exp: now + 300,
            extra: Default::default(),
        };
        s.create(NewSession {
            claims: &claims,
            sid: Some(sid.into()),
            id_token: None,
            refresh_token: Some(tokend_shared::Secret::new(format!("rt-{sid}"))),
            refresh_expires: now + 3600,
            now,
        });
    }

    #[tokio::test]
    async fn issue_12_local_revocations_are_published_remote_ones_applied_not_told_back() {
        let s = Sessions::new(Duration::from_secs(3600), Metrics::new());
        let out = Arc::new(Recorder::default());
        s.set_outbox(out.clone());
        login(&s, "alice", "s1", 100);
        login(&s, "bob", "s2", 100);
        s.end_sid("s1", EndReason::Logout, 110);
        let sent = out.0.lock().expect("lock").clone();
        assert!(matches!(&sent[0], Change::EndedRefresh { .. }), "{sent:?}");
        assert!(matches!(&sent[1], Change::Sid { sid, at: 110, .. } if sid == "s1"));
        assert_eq!(s.revocation_entries(110).len(), 2);

        // Another instance revoked bob: his session here ends, nothing is told back.
        let before = s.revocation_generation();
        let remote = Change::Sub {
            sub: "bob".into(),
            at: 120,
            until: 4000,
            why: EndReason::AdminRevocation,
        };
        let ended = s.apply_remote(remote.clone(), 120);
        assert_eq!(ended.len(), 1);
        assert!(s.is_revoked(None, "bob", 119, 121));
        assert_ne!(s.revocation_generation(), before);
        // Its refresh token was this instance's to share.
        let sent = out.0.lock().expect("lock").clone();
        assert_eq!(sent.len(), 3);
        assert!(matches!(&sent[2], Change::EndedRefresh { .. }));
        // Applied again (a resync): nothing changes.
        let gen_now = s.revocation_generation();
        assert!(s.apply_remote(remote, 125).is_empty());
        assert_eq!(s.revocation_generation(), gen_now);
        // Expired entries are ignored.
        let old = Change::Sid {
            sid: "s9".into(),
            at: 1,
            until: 2,
            why: EndReason::Logout,
        };
        assert!(s.apply_remote(old, 125).is_empty());
        assert!(!s.is_revoked(Some("s9"), "x", 1, 125));

        // Redis unreachable: the local jti list decides.
        assert!(s.claim_jti("j1", 500).await);
        assert!(!s.claim_jti("j1", 500).await);
    }
}
