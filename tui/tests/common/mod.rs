//! Seeded console state for the render and key tests: a daemon with three sessions, two
//! outstanding codes, a few audit events and Authentik events, at a fixed time.

#![allow(dead_code)]

use std::collections::BTreeMap;

use serde_json::json;
use tokend_shared::{
    AuditEvent, AuditKind, AuthentikEvent, AuthentikEventList, CodeInfo, CodeList, KeyInfo,
    KeysOverview, LatencyOverview, Overview, PollerStatus, ReloadStatus, SessionInfo, SessionLink,
    SessionPage, StoreOverview,
};
use tokentop::app::{Action, AuthentikFeed, NetEvent, Snapshot, State, update};

/// 2026-12-02 00:20:00 UTC.
pub const NOW: i64 = 1_796_170_800;

pub fn session(sid: &str, sub: &str, email: &str, org: &str, role: &str, age: i64) -> SessionInfo {
    SessionInfo {
        sid: Some(sid.into()),
        sub: sub.into(),
        email: Some(email.into()),
        organization_id: Some(org.into()),
        role: role.into(),
        created: NOW - age,
        access_expires: NOW - age + 300,
        refresh_expires: NOW - age + 86400,
        last_seen: NOW - age / 3,
    }
}

pub fn overview(poller: bool) -> Overview {
    Overview {
        version: "0.1.0".into(),
        started: NOW - 7500,
        uptime_seconds: 7500,
        config_path: Some("/etc/tokend/tokend.toml".into()),
        last_reload: Some(ReloadStatus {
            ok: true,
            at: NOW - 600,
            trigger: "SIGHUP".into(),
            changed: vec!["verify".into()],
            restart_required: vec![],
            error: None,
        }),
        issuer: "https://auth.example.com/application/o/ecosire/".into(),
        keys: KeysOverview {
            source: "provider".into(),
            age_seconds: Some(192),
            last_fetch_ok: Some(true),
            last_fetch_error: None,
            keys: vec![KeyInfo {
                kid: Some("3f9a1c0de2b4".into()),
                alg: Some("RS256".into()),
                kind: "RSA".into(),
            }],
        },
        store: StoreOverview {
            kind: "memory".into(),
            healthy: true,
            error: None,
            codes_outstanding: 2,
            logins_in_progress: 1,
        },
        sessions_active: 3,
        verifications: BTreeMap::from([
            ("valid".into(), 1200),
            ("expired".into(), 31),
            ("revoked".into(), 2),
        ]),
        verification_rates: BTreeMap::from([("valid".into(), 12.5), ("expired".into(), 0.3)]),
        latency: Some(LatencyOverview {
            window_seconds: 60,
            count: 770,
            p50_ms: 0.42,
            p99_ms: 3.1,
        }),
        authentik_events: poller.then(|| PollerStatus {
            url: "http://authentik:9000/api/v3/events/events/".into(),
            last_poll: Some(NOW - 4),
            last_ok: Some(true),
            last_error: None,
            last_status: None,
            next_poll_seconds: 26,
            held: 3,
            capacity: 1000,
            fetched_total: 57,
        }),
    }
}

pub fn authentik_events() -> AuthentikEventList {
    let ev = |pk: &str, action: &str, user: Option<&str>, ago: i64, ctx: serde_json::Value| {
        AuthentikEvent {
            pk: pk.into(),
            action: action.into(),
            app: "authentik.events.signals".into(),
            created: "2026-12-02T00:19:00Z".into(),
            created_ms: (NOW - ago) * 1000,
            client_ip: Some("192.0.2.10".into()),
            username: user.map(str::to_string),
            email: user.map(|u| format!("{u}@example.com")),
            user: json!({}),
            context: ctx,
            brand: json!({}),
            sessions: if action == "login" {
                vec![SessionLink {
                    sid: Some("sid-alice-1".into()),
                    sub: "alice".into(),
                    matched_by: "email".into(),
                }]
            } else {
                vec![]
            },
        }
    };
    AuthentikEventList {
        events: vec![
            ev(
                "e3",
                "login_failed",
                Some("mallory"),
                20,
                json!({"stage": "password", "username": "mallory"}),
            ),
            ev(
                "e2",
                "authorize_application",
                Some("alice"),
                60,
                json!({"authorized_application": {"name": "ecosire"}}),
            ),
            ev(
                "e1",
                "login",
                Some("alice"),
                62,
                json!({"auth_method": "password", "http_request": {"path": "/if/flow/default-authentication-flow/"}}),
            ),
        ],
        poller: overview(true).authentik_events.expect("seeded poller"),
    }
}

pub fn audit() -> Vec<AuditEvent> {
    let ev =
        |seq: u64, ago: i64, kind: AuditKind, sub: Option<&str>, detail: Option<&str>| AuditEvent {
            seq,
            at_ms: (NOW - ago) * 1000,
            kind,
            sub: sub.map(str::to_string),
            sid: None,
            operator_uid: None,
            detail: detail.map(str::to_string),
            count: None,
            counts: BTreeMap::new(),
        };
    let mut failures = ev(5, 5, AuditKind::VerifyFailures, None, None);
    failures.counts = BTreeMap::from([("expired".into(), 3)]);
    let mut revoke = ev(
        4,
        30,
        AuditKind::AdminRevoke,
        Some("carol"),
        Some("ended 1"),
    );
    revoke.operator_uid = Some(0);
    vec![
        ev(1, 62, AuditKind::LoginCompleted, Some("alice"), None),
        ev(2, 61, AuditKind::CodeIssued, Some("alice"), Some("flow")),
        ev(3, 58, AuditKind::CodeRedeemed, Some("alice"), Some("flow")),
        revoke,
        failures,
    ]
}

/// A state as after a few polls: three sessions, two codes, the audit events; the
/// Authentik poller configured when `poller`.
pub fn seeded(poller: bool) -> State {
    let mut s = State::new("/run/tokend/tokend-admin.sock", NOW * 1000);
    let sessions = vec![
        session(
            "sid-alice-1",
            "alice",
            "alice@example.com",
            "org-1",
            "admin",
            62,
        ),
        session(
            "sid-bob-1",
            "bob",
            "bob@example.com",
            "org-2",
            "member",
            3600,
        ),
        session(
            "sid-carol-1",
            "carol",
            "carol@example.com",
            "org-1",
            "member",
            90000,
        ),
    ];
    let codes = vec![
        CodeInfo {
            hash_prefix: "9c2f4b1e07aa".into(),
            kind: "flow".into(),
            created: NOW - 15,
            expires: NOW + 45,
            ttl_left: 45,
            sub: "dave".into(),
        },
        CodeInfo {
            hash_prefix: "51d0e3a8b2c4".into(),
            kind: "api".into(),
            created: NOW - 50,
            expires: NOW + 10,
            ttl_left: 10,
            sub: "erin".into(),
        },
    ];
    let mut acc = 0;
    for (i, extra) in [0u64, 8, 20, 13, 10].into_iter().enumerate() {
        let mut o = overview(poller);
        // Totals that grow by `extra` in a second, for the sparkline.
        acc += extra;
        *o.verifications.entry("valid".into()).or_default() += acc;
        let snap = Snapshot {
            at_ms: (NOW - 5 + i as i64) * 1000,
            overview: o,
            sessions: SessionPage {
                total: sessions.len(),
                offset: 0,
                limit: 1000,
                sessions: sessions.clone(),
            },
            codes: CodeList {
                codes: codes.clone(),
            },
            authentik: if poller {
                AuthentikFeed::Loaded(authentik_events())
            } else {
                AuthentikFeed::NotConfigured
            },
        };
        update(&mut s, Action::Net(NetEvent::Snapshot(Box::new(snap))));
    }
    for e in audit() {
        update(&mut s, Action::Net(NetEvent::Audit(e)));
    }
    update(&mut s, Action::Tick(NOW * 1000));
    s
}
