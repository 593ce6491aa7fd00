//! The admin API's reads: overview, sessions (filtered, sorted, paged), outstanding codes
//! (a prefix of their hash, never the code) and the audit ring.

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::response::Response;
use tokend_shared::{
    AuditList, CodeInfo, CodeList, KeyInfo, KeysOverview, LatencyOverview, Order, Overview,
    SessionInfo, SessionPage, SessionQuery, SessionSort, StoreOverview,
};

use super::{AdminError, ok_json};
use crate::AppState;
use crate::jwks::{KeyKind, KeySource};
use crate::store::Kind;
use crate::verify::now_unix;
use crate::window::WINDOW_SECONDS;

/// Default and largest page of the session list.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

/// `GET /v1/admin/overview`.
pub async fn overview(State(state): State<Arc<AppState>>) -> Response {
    let rt = state.runtime();
    let keys = rt.jwks.keys();
    let last_error = rt.jwks.last_error();
    let keys_overview = KeysOverview {
        source: match keys.source {
            KeySource::None => "none",
            KeySource::Provider => "provider",
            KeySource::DiskCache => "disk_cache",
            KeySource::ClientSecret => "client_secret",
        }
        .into(),
        age_seconds: keys.age().map(|a| a.as_secs()),
        last_fetch_ok: match (&last_error, keys.source) {
            (Some(_), _) => Some(false),
            (None, KeySource::Provider) => Some(true),
            (None, _) => None,
        },
        last_fetch_error: last_error,
        keys: keys
            .iter()
            .map(|k| KeyInfo {
                kid: k.kid.clone(),
                alg: k.alg.map(|a| a.to_string()),
                kind: key_kind(k.kind).into(),
            })
            .collect(),
    };
    drop(keys);
    let window = state.metrics.window.snapshot();
    let per_second = window.seconds as f64;
    let store_health = state.store.health();
    let body = Overview {
        version: env!("CARGO_PKG_VERSION").into(),
        started: state.started_unix(),
        uptime_seconds: state.started.elapsed().as_secs(),
        config_path: rt.config.source.as_ref().map(|p| p.display().to_string()),
        last_reload: state.last_reload(),
        issuer: rt.config.provider.issuer.clone(),
        keys: keys_overview,
        store: StoreOverview {
            kind: state.store.kind_name().into(),
            codes_outstanding: state.store.outstanding(Kind::ExchangeCode),
            logins_in_progress: state.store.outstanding(Kind::LoginState),
            healthy: store_health.healthy,
            error: store_health.error,
        },
        sessions_active: state.sessions.active(),
        verifications: state.metrics.audit.verification_counts(),
        verification_rates: window
            .counts
            .iter()
            .map(|(outcome, n)| ((*outcome).to_string(), *n as f64 / per_second))
            .collect(),
        latency: window
            .p50
            .zip(window.p99)
            .map(|(p50, p99)| LatencyOverview {
                window_seconds: WINDOW_SECONDS,
                count: window.total,
                p50_ms: p50.as_secs_f64() * 1000.0,
                p99_ms: p99.as_secs_f64() * 1000.0,
            }),
        authentik_events: state.events.load().as_ref().map(|p| p.status()),
    };
    ok_json(&body)
}

fn key_kind(k: KeyKind) -> &'static str {
    match k {
        KeyKind::Rsa => "RSA",
        KeyKind::EcP256 => "EC P-256",
        KeyKind::EcP384 => "EC P-384",
        KeyKind::EcP521 => "EC P-521",
        KeyKind::Ed25519 => "Ed25519",
        KeyKind::Hmac => "HMAC",
    }
}

/// `GET /v1/admin/sessions?user&org&role&sort&order&offset&limit`.
pub async fn sessions(
    State(state): State<Arc<AppState>>,
    RawQuery(raw): RawQuery,
) -> Result<Response, AdminError> {
    let q: SessionQuery = serde_urlencoded::from_str(raw.as_deref().unwrap_or(""))
        .map_err(|e| AdminError::Query(e.to_string()))?;
    let mut all = state.sessions.list();
    if let Some(shared) = state.store.shared_sessions() {
        match shared.list().await {
            Ok(recorded) => {
                // A record an instance wrote back while the session was ending elsewhere.
                let now = now_unix();
                let live = recorded.into_iter().filter(|r| {
                    !state
                        .sessions
                        .is_revoked(r.sid.as_deref(), &r.sub, r.created, now)
                });
                all = merged(all, live.collect());
            }
            Err(e) => {
                tracing::warn!(error = %e, "admin: the session store did not answer; listing this instance's sessions")
            }
        }
    }
    Ok(ok_json(&page(all, &q)))
}

/// This instance's sessions and those the shared store holds, each once (the later
/// last-seen kept), newest first.
fn merged(local: Vec<SessionInfo>, recorded: Vec<SessionInfo>) -> Vec<SessionInfo> {
    let mut all = local;
    for r in recorded {
        let same = all
            .iter_mut()
            .find(|s| s.sid == r.sid && s.sub == r.sub && s.created == r.created);
        match same {
            Some(s) => {
                s.last_seen = s.last_seen.max(r.last_seen);
                s.access_expires = s.access_expires.max(r.access_expires);
            }
            None => all.push(r),
        }
    }
    all.sort_by_key(|s| std::cmp::Reverse(s.created));
    all
}

/// Filters, sorts and pages `all`.
pub(crate) fn page(all: Vec<SessionInfo>, q: &SessionQuery) -> SessionPage {
    let mut matching: Vec<SessionInfo> = all
        .into_iter()
        .filter(|s| {
            q.user
                .as_ref()
                .is_none_or(|u| &s.sub == u || s.email.as_ref() == Some(u))
        })
        .filter(|s| {
            q.org
                .as_ref()
                .is_none_or(|o| s.organization_id.as_ref() == Some(o))
        })
        .filter(|s| q.role.as_ref().is_none_or(|r| &s.role == r))
        .collect();
    match q.sort.unwrap_or_default() {
        SessionSort::Created => matching.sort_by_key(|s| s.created),
        SessionSort::LastSeen => matching.sort_by_key(|s| s.last_seen),
        SessionSort::User => matching.sort_by(|a, b| a.sub.cmp(&b.sub)),
        SessionSort::Expires => matching.sort_by_key(|s| s.refresh_expires.max(s.access_expires)),
    }
    if q.order.unwrap_or_default() == Order::Desc {
        matching.reverse();
    }
    let total = matching.len();
    let offset = q.offset.unwrap_or(0).min(total);
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    let sessions = matching.into_iter().skip(offset).take(limit).collect();
    SessionPage {
        total,
        offset,
        limit,
        sessions,
    }
}

/// `GET /v1/admin/codes`: outstanding exchange codes, soonest to expire first.
pub async fn codes(State(state): State<Arc<AppState>>) -> Response {
    let now = now_unix();
    let mut codes: Vec<CodeInfo> = state
        .store
        .list_codes()
        .into_iter()
        .map(|c| CodeInfo {
            hash_prefix: c.key[..6].iter().map(|b| format!("{b:02x}")).collect(),
            kind: c.kind.as_str().into(),
            created: c.created,
            expires: c.expires,
            ttl_left: (c.expires - now).max(0),
            sub: c.sub,
        })
        .collect();
    codes.sort_by_key(|c| c.expires);
    ok_json(&CodeList { codes })
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct EventsQuery {
    #[serde(default)]
    after: u64,
    #[serde(default)]
    limit: Option<usize>,
}

/// `GET /v1/admin/events?after=SEQ&limit=N`: the audit ring after `after`, oldest first.
pub async fn events(
    State(state): State<Arc<AppState>>,
    RawQuery(raw): RawQuery,
) -> Result<Response, AdminError> {
    let q: EventsQuery = serde_urlencoded::from_str(raw.as_deref().unwrap_or(""))
        .map_err(|e| AdminError::Query(e.to_string()))?;
    let audit = &state.metrics.audit;
    let limit = q.limit.unwrap_or(audit.capacity()).min(audit.capacity());
    Ok(ok_json(&AuditList {
        events: audit.since(q.after, limit),
        capacity: audit.capacity(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(sub: &str, org: &str, role: &str, created: i64) -> SessionInfo {
        SessionInfo {
            sid: Some(format!("sid-{sub}-{created}")),
            sub: sub.into(),
            email: Some(format!("{sub}@example.com")),
            organization_id: Some(org.into()),
            role: role.into(),
            created,
            access_expires: created + 300,
            refresh_expires: created + 3600,
            last_seen: created,
        }
    }

    /// Issue #8: the listing in Redis mode — a session both here and in the store is listed
    /// once (the same `sid`, `sub` and creation second), with the later last-seen and access
    /// expiry; two sessions of one user made in the same second stay two; newest first.
    #[test]
    fn issue_8_local_and_recorded_sessions_are_merged_once_each() {
        let mut here = s("alice", "o1", "admin", 10);
        here.last_seen = 50;
        let mut there = here.clone();
        there.last_seen = 40;
        there.access_expires = 400;
        let mut other_browser = here.clone();
        other_browser.sid = Some("sid-alice-10-b".into());
        let mut bob = s("bob", "o1", "user", 10);
        bob.sid = here.sid.clone();
        let carol = s("carol", "o1", "user", 20);
        let all = merged(
            vec![here.clone()],
            vec![there, other_browser.clone(), bob.clone(), carol.clone()],
        );
        let mut expected_here = here;
        expected_here.access_expires = 400;
        assert_eq!(all, [carol, expected_here, other_browser, bob]);
    }

    #[test]
    fn filters_sort_and_pages() {
        let all = vec![
            s("alice", "o1", "admin", 1),
            s("bob", "o1", "user", 2),
            s("alice", "o2", "admin", 3),
            s("carol", "o2", "user", 4),
        ];
        let p = page(all.clone(), &SessionQuery::default());
        assert_eq!(p.total, 4);
        assert_eq!(p.sessions[0].created, 4, "newest first by default");
        let q = SessionQuery {
            user: Some("alice@example.com".into()),
            ..Default::default()
        };
        // Issue #8: by e-mail only the sessions whose e-mail it is (alice's two), not those
        // whose e-mail differs (the count alone was the same either way).
        let p = page(all.clone(), &q);
        let subs: Vec<&str> = p.sessions.iter().map(|s| s.sub.as_str()).collect();
        assert_eq!((p.total, subs), (2, vec!["alice", "alice"]));
        let q = SessionQuery {
            org: Some("o2".into()),
            role: Some("user".into()),
            ..Default::default()
        };
        assert_eq!(page(all.clone(), &q).sessions[0].sub, "carol");
        let q = SessionQuery {
            sort: Some(SessionSort::User),
            order: Some(Order::Asc),
            offset: Some(1),
            limit: Some(2),
            ..Default::default()
        };
        let p = page(all, &q);
        assert_eq!((p.total, p.offset, p.limit), (4, 1, 2));
        let subs: Vec<&str> = p.sessions.iter().map(|s| s.sub.as_str()).collect();
        assert_eq!(subs, ["alice", "bob"]);
    }
}
