//! Export and import of what the registry must not forget on a restart — revocations, seen
//! logout-token `jti`s, ended refresh tokens, sessions without their tokens — as plain data
//! for the memory mode's snapshot (`crate::snapshot` owns the file).

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{EndReason, Revocation, Session, SessionSecrets, Sessions, lock};
use crate::store::Key;

/// The registry's lasting state. Tokens are never part of it: refresh tokens appear only as
/// their SHA-256, so the file leaks nothing usable.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Exported {
    /// Ended sessions' `sid`s: every token of them is refused until `until`.
    pub revoked_sids: Vec<Revoked>,
    /// Users whose tokens issued until `at` are refused until `until`.
    pub revoked_subs: Vec<Revoked>,
    /// Back-channel logout token ids seen, so a replay is still told after a restart.
    pub seen_jtis: Vec<SeenJti>,
    /// Hashes of ended sessions' refresh tokens, refused without asking the provider.
    pub ended_refresh: Vec<EndedRefresh>,
    /// Live sessions, so refresh and logout keep working for browsers logged in before.
    pub sessions: Vec<SavedSession>,
}

/// One revocation by `sid` or `sub` (`id`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Revoked {
    pub id: String,
    pub at: i64,
    pub until: i64,
    pub why: EndReason,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeenJti {
    pub jti: String,
    pub until: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndedRefresh {
    /// SHA-256 of the refresh token.
    pub key: Hash,
    pub until: i64,
}

/// A session without its secrets (`Session::info` plus the registry key and the refresh
/// token's hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedSession {
    pub key: String,
    pub sid: Option<String>,
    pub sub: String,
    pub email: Option<String>,
    pub organization_id: Option<String>,
    pub role: String,
    pub created: i64,
    pub access_expires: i64,
    pub refresh_expires: i64,
    pub last_seen: i64,
    /// SHA-256 of the current refresh token: a restored session is found by the browser's
    /// refresh cookie, and its refresh token is refused once the session ends.
    pub refresh_key: Option<Hash>,
}

/// A SHA-256 key, written as unpadded base64url.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hash(pub Key);

impl Serialize for Hash {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&URL_SAFE_NO_PAD.encode(self.0))
    }
}

impl<'de> Deserialize<'de> for Hash {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let bytes = URL_SAFE_NO_PAD
            .decode(s.as_bytes())
            .map_err(|_| serde::de::Error::custom("a hash is not base64url"))?;
        Key::try_from(bytes.as_slice())
            .map(Hash)
            .map_err(|_| serde::de::Error::custom("a hash is not 32 bytes"))
    }
}

/// What an import kept, by kind, and how many entries had expired and were dropped.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Imported {
    pub revoked_sids: usize,
    pub revoked_subs: usize,
    pub seen_jtis: usize,
    pub ended_refresh: usize,
    pub sessions: usize,
    pub expired: usize,
}

impl Imported {
    pub fn total(&self) -> usize {
        self.revoked_sids + self.revoked_subs + self.seen_jtis + self.ended_refresh + self.sessions
    }
}

impl Sessions {
    /// The lasting state as of now, and the change count it reflects (read before, so a
    /// change made during the export is written next time).
    pub fn export(&self) -> (Exported, u64) {
        let changes = self.changes();
        let revoked = |m: &dashmap::DashMap<String, Revocation>| {
            m.iter()
                .map(|e| Revoked {
                    id: e.key().clone(),
                    at: e.at,
                    until: e.until,
                    why: e.why,
                })
                .collect()
        };
        let sessions = self
            .by_key
            .iter()
            .filter(|s| !s.is_ended())
            .map(|s| SavedSession {
                key: s.key.clone(),
                sid: s.sid.clone(),
                sub: s.sub.clone(),
                email: s.email.clone(),
                organization_id: s.organization_id.clone(),
                role: s.role.clone(),
                created: s.created,
                access_expires: s.access_expires.load(Ordering::Relaxed),
                refresh_expires: s.refresh_expires.load(Ordering::Relaxed),
                last_seen: s.last_seen.load(Ordering::Relaxed),
                refresh_key: lock(&s.secrets).refresh_key.map(Hash),
            })
            .collect();
        let exported = Exported {
            revoked_sids: revoked(&self.revoked_sids),
            revoked_subs: revoked(&self.revoked_subs),
            seen_jtis: self
                .seen_jtis
                .iter()
                .map(|e| SeenJti {
                    jti: e.key().clone(),
                    until: *e.value(),
                })
                .collect(),
            ended_refresh: self
                .ended_refresh
                .iter()
                .map(|e| EndedRefresh {
                    key: Hash(*e.key()),
                    until: *e.value(),
                })
                .collect(),
            sessions,
        };
        (exported, changes)
    }

    /// Adds a snapshot's entries, dropping those expired at `now` (the sweep's rules) and
    /// sessions whose `sid` is revoked. Meant for the start, before anything is served; the
    /// revocation generation moves, as after any revocation.
    pub fn import(&self, state: Exported, now: i64) -> Imported {
        let mut n = Imported::default();
        let live = |until: i64, n: &mut Imported| {
            let keep = now < until;
            n.expired += usize::from(!keep);
            keep
        };
        n.revoked_sids = import_revocations(state.revoked_sids, &self.revoked_sids, now, &mut n);
        n.revoked_subs = import_revocations(state.revoked_subs, &self.revoked_subs, now, &mut n);
        for j in state.seen_jtis {
            if live(j.until, &mut n) {
                self.seen_jtis.insert(j.jti, j.until);
                n.seen_jtis += 1;
            }
        }
        for e in state.ended_refresh {
            if live(e.until, &mut n) {
                self.ended_refresh.insert(e.key.0, e.until);
                n.ended_refresh += 1;
            }
        }
        for s in state.sessions {
            let lapsed = now >= s.access_expires && now >= s.refresh_expires;
            let revoked = s
                .sid
                .as_deref()
                .is_some_and(|sid| self.revoked_sids.get(sid).is_some_and(|r| now < r.until));
            if lapsed || revoked {
                n.expired += 1;
                continue;
            }
            if let Some(rk) = s.refresh_key {
                self.by_refresh.insert(rk.0, s.key.clone());
            }
            self.by_key.insert(
                s.key.clone(),
                Arc::new(Session {
                    key: s.key,
                    sid: s.sid,
                    sub: s.sub,
                    email: s.email,
                    organization_id: s.organization_id,
                    role: s.role,
                    created: s.created,
                    access_expires: AtomicI64::new(s.access_expires),
                    refresh_expires: AtomicI64::new(s.refresh_expires),
                    last_seen: AtomicI64::new(s.last_seen),
                    flushed: AtomicI64::new(s.last_seen),
                    ended: AtomicBool::new(false),
                    secrets: Mutex::new(SessionSecrets {
                        refresh_token: None,
                        refresh_key: s.refresh_key.map(|h| h.0),
                        id_token: None,
                    }),
                }),
            );
            n.sessions += 1;
        }
        self.bump_generation();
        n
    }
}

/// Puts the revocations still in force at `now` into `map`; returns how many.
fn import_revocations(
    list: Vec<Revoked>,
    map: &dashmap::DashMap<String, Revocation>,
    now: i64,
    n: &mut Imported,
) -> usize {
    let mut kept = 0;
    for r in list {
        if now < r.until {
            let (at, until, why) = (r.at, r.until, r.why);
            map.insert(r.id, Revocation { at, until, why });
            kept += 1;
        } else {
            n.expired += 1;
        }
    }
    kept
}
