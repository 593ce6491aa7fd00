//! The Authentik events poller (issue #11) through the real binary, against the test
//! provider's Events API (tests/provider/events.mjs: events built from Authentik's schema, with
//! paging and 401/403/500 controls), read with `tokend_shared::client::AdminClient`: events and
//! their action strings arrive, paging stops at an event already held, failures are explained
//! and recovered from with backoff, events link to live sessions, hot reload restarts the poller,
//! and the API token never appears in tokend's output or answers.

use std::time::Duration;

use serde_json::json;
use tokend_e2e::flow::{flow_setup, log_in};
use tokend_e2e::{Provider, ProviderOptions, Tokend, TokendConfig, jwt_payload};
use tokend_shared::client::{AdminClient, ClientError};
use tokend_shared::{AuthentikEventList, AuthentikEventQuery, PollerStatus, Reason};

type R = anyhow::Result<()>;

const SEVEN: [&str; 7] = [
    "login",
    "login_failed",
    "logout",
    "authorize_application",
    "suspicious_request",
    "secret_rotate",
    "custom_tokend_test",
];

/// An `[events]` section reading `p`'s API token from a file in `dir`.
fn events_section(p: &Provider, dir: &std::path::Path, extra: &str) -> String {
    let file = dir.join("authentik-api-token");
    std::fs::write(&file, format!("{}\n", p.api_token)).expect("write token");
    format!("\n[events]\napi_token_file = {file:?}\ninterval = \"1s\"\n{extra}\n")
}

async fn start(p: &Provider, extra: &str) -> anyhow::Result<Tokend> {
    let dir = tempfile::tempdir()?;
    let mut cfg = TokendConfig::for_provider(p);
    cfg.tail = events_section(p, dir.path(), extra);
    let t = Tokend::start_in(&cfg, dir).await?;
    t.wait_ready().await?;
    Ok(t)
}

fn all() -> AuthentikEventQuery {
    AuthentikEventQuery {
        limit: Some(10_000),
        ..Default::default()
    }
}

/// Polls the poller's status until `done` holds (20 s at most).
async fn wait_status(
    t: &Tokend,
    what: &str,
    done: impl Fn(&PollerStatus) -> bool,
) -> anyhow::Result<PollerStatus> {
    let admin = t.admin()?;
    let mut last = None;
    for _ in 0..200 {
        if let Some(s) = admin.overview().await?.authentik_events {
            if done(&s) {
                return Ok(s);
            }
            last = Some(s);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("{what}: poller status stayed {last:?}\n{}", t.output.text())
}

async fn list(admin: &AdminClient, q: AuthentikEventQuery) -> anyhow::Result<AuthentikEventList> {
    Ok(admin.authentik_events(&q).await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_11_authentik_events_arrive_filtered_and_reload_restarts_the_poller() -> R {
    let p = Provider::start().await?;
    let t = start(&p, "").await?;
    let s = wait_status(&t, "first poll", |s| s.held == 7).await?;
    assert_eq!(s.last_ok, Some(true));
    assert!(s.url.ends_with("/api/v3/events/events/"), "{}", s.url);
    assert_eq!((s.capacity, s.fetched_total), (1000, 7));
    let admin = t.admin()?;
    let l = list(&admin, all()).await?;
    let actions: Vec<&str> = l.events.iter().map(|e| e.action.as_str()).collect();
    let mut newest_first = SEVEN;
    newest_first.reverse();
    assert_eq!(actions, newest_first, "every kind, action strings as sent");
    let by = |a: &str| l.events.iter().find(|e| e.action == a).expect(a);
    assert_eq!(by("login").username.as_deref(), Some("alice"));
    assert_eq!(by("login").email.as_deref(), Some("alice@example.com"));
    assert_eq!(by("login").context["geo"]["city"], "Berlin");
    assert!(by("login").created_ms > 0);
    assert_eq!(
        by("login_failed").username.as_deref(),
        Some("mallory"),
        "the attempted name of an anonymous failed login"
    );
    assert_eq!(by("suspicious_request").client_ip, None);
    assert_eq!(by("secret_rotate").email.as_deref(), Some("root@localhost"));
    assert_eq!(by("custom_tokend_test").context["tokend_test"], true);
    assert_eq!(by("login").brand["name"], "Default brand");

    // Filters: action exact, user by name or e-mail, limit.
    let q = |action: Option<&str>, user: Option<&str>, limit: Option<usize>| AuthentikEventQuery {
        action: action.map(str::to_string),
        user: user.map(str::to_string),
        limit,
    };
    assert_eq!(
        list(&admin, q(Some("login"), None, None))
            .await?
            .events
            .len(),
        1
    );
    assert_eq!(
        list(&admin, q(Some("log"), None, None)).await?.events.len(),
        0
    );
    assert_eq!(
        list(&admin, q(None, Some("alice"), None))
            .await?
            .events
            .len(),
        2
    );
    let bob = list(&admin, q(None, Some("bob@example.com"), None)).await?;
    assert_eq!(bob.events.len(), 2);
    let three = list(&admin, q(None, None, Some(3))).await?;
    assert_eq!(three.events.len(), 3);
    assert_eq!(three.events[0].action, "custom_tokend_test");
    let bad = t
        .admin_unix("GET", "/v1/admin/authentik/events?limit=x", None)
        .await?;
    assert_eq!((bad.status, bad.reason()), (400, "bad_request".into()));

    // New events come in front.
    p.add_events(json!([{"action": "custom_new_thing", "user": "carol"}]))
        .await?;
    wait_status(&t, "a new event", |s| s.held == 8).await?;
    let l = list(&admin, q(None, None, Some(1))).await?;
    assert_eq!(l.events[0].action, "custom_new_thing");

    // The app socket and TCP do not serve it.
    let a = t.get("/v1/admin/authentik/events", &[]).await?;
    assert_eq!(a.status, 404);

    let m = t.metrics().await?;
    assert!(m.get("tokend_authentik_event_polls_total{result=\"success\"}") >= 2.0);
    assert_eq!(m.get("tokend_authentik_events_fetched_total"), 8.0);

    // Hot reload: a changed [events] restarts the poller (a new ring of the new capacity).
    let config = std::fs::read_to_string(t.config_path())?;
    t.replace_config(&config.replace("interval = \"1s\"", "interval = \"1s\"\ncapacity = 5"))?;
    let s = wait_status(&t, "restarted with capacity 5", |s| {
        s.capacity == 5 && s.held == 5
    })
    .await?;
    assert_eq!(s.fetched_total, 5, "a new poller: {s:?}");
    // Without [events]: off, and the endpoint answers 404 not_found.
    let cut = config.find("\n[events]").expect("events section");
    t.replace_config(&config[..cut])?;
    let mut off = false;
    for _ in 0..100 {
        if admin.overview().await?.authentik_events.is_none() {
            off = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(off, "the poller should be off after the reload");
    match admin.authentik_events(&all()).await {
        Err(ClientError::Api { status, reason, .. }) => {
            assert_eq!((status, reason), (404, Reason::NotFound));
        }
        other => panic!("expected 404 not_found, got {other:?}"),
    }

    t.output.assert_free_of(&[&p.api_token, &p.client_secret]);
    assert_eq!(p.stat("events_bad_tokens").await?, 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_11_paging_stops_at_an_event_already_held() -> R {
    let p = Provider::start().await?;
    p.add_many_events(150, "login", "alice").await?;
    let t = start(&p, "").await?;
    // 157 events at 100 a page: pages 1 and 2.
    wait_status(&t, "first poll", |s| s.held == 157).await?;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    p.reset_stats().await?;
    // 120 new ones: page 1 (100 new), page 2 (20 new, then one held) — never page 3, although
    // 277 events fill three pages.
    p.add_many_events(120, "logout", "bob").await?;
    let s = wait_status(&t, "second batch", |s| s.held == 277).await?;
    assert_eq!(s.fetched_total, 277);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let stats = p.stats().await?;
    let pages: Vec<u64> = stats["events_pages"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_u64()).collect())
        .unwrap_or_default();
    assert_eq!(
        pages.iter().filter(|&&n| n == 2).count(),
        1,
        "page 2 read once, for the batch: {pages:?}"
    );
    assert!(
        pages.iter().all(|&n| n <= 2),
        "stopped at an event already held: {pages:?}"
    );
    assert!(
        pages.iter().filter(|&&n| n == 1).count() >= 2,
        "later polls read page 1 only: {pages:?}"
    );
    let l = list(&t.admin()?, all()).await?;
    assert_eq!(l.events.len(), 277);
    assert_eq!(l.events[0].action, "logout", "newest first");
    assert_eq!(l.events[276].action, "login");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_11_401_and_403_are_explained_once_and_recovered_from() -> R {
    let p = Provider::start().await?;
    let t = start(&p, "max_backoff = \"2s\"").await?;
    wait_status(&t, "first poll", |s| s.held == 7).await?;

    p.events_mode("forbidden").await?;
    let s = wait_status(&t, "403", |s| s.last_status == Some(403)).await?;
    let e = s.last_error.unwrap_or_default();
    assert!(e.contains("authentik_events.view_event"), "{e}");
    assert_eq!((s.last_ok, s.held), (Some(false), 7), "the ring is kept");
    // Several failed polls, one log line.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let polls = t.metrics().await?;
    assert!(polls.get("tokend_authentik_event_polls_total{result=\"forbidden\"}") >= 2.0);
    assert_eq!(
        t.output
            .text()
            .matches("authentik_events.view_event")
            .count(),
        1,
        "{}",
        t.output.text()
    );

    p.events_mode("normal").await?;
    let s = wait_status(&t, "recovered from 403", |s| s.last_ok == Some(true)).await?;
    assert_eq!((s.last_error, s.last_status), (None, None));
    assert!(t.output.text().contains("poll works again"));

    p.events_mode("unauthorized").await?;
    let s = wait_status(&t, "401", |s| s.last_status == Some(401)).await?;
    let e = s.last_error.unwrap_or_default();
    assert!(
        e.contains("invalid or expired") && e.contains("expiring: false"),
        "{e}"
    );
    p.events_mode("normal").await?;
    wait_status(&t, "recovered from 401", |s| s.last_ok == Some(true)).await?;
    let m = t.metrics().await?;
    assert!(m.get("tokend_authentik_event_polls_total{result=\"unauthorized\"}") >= 1.0);
    assert!(
        !m.text.contains(&p.api_token),
        "the token is in no metric label"
    );
    t.output.assert_free_of(&[&p.api_token]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_11_a_failing_authentik_is_backed_off_and_the_ring_kept() -> R {
    let p = Provider::start().await?;
    let t = start(&p, "max_backoff = \"8s\"").await?;
    wait_status(&t, "first poll", |s| s.held == 7).await?;
    p.events_mode("error").await?;
    wait_status(&t, "500", |s| s.last_status == Some(500)).await?;
    p.reset_stats().await?;
    // At 1 s a poll that would be ~8 requests; backing off 2 s, 4 s, 8 s it is at most 3.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let requests = p.stat("events_requests").await?;
    assert!(
        (1..=3).contains(&requests),
        "{requests} requests in 8 s of errors"
    );
    let s = t
        .admin()?
        .overview()
        .await?
        .authentik_events
        .expect("poller");
    assert_eq!((s.held, s.last_ok), (7, Some(false)), "the ring is kept");
    assert!(
        s.last_error
            .as_deref()
            .is_some_and(|e| e.contains("HTTP 500")),
        "{s:?}"
    );
    p.events_mode("normal").await?;
    let s = wait_status(&t, "recovered", |s| s.last_ok == Some(true)).await?;
    assert!(s.next_poll_seconds <= 1, "the interval again: {s:?}");
    assert_eq!(s.held, 7);

    // A poll waiting on a slow or failing Authentik never holds up the shutdown.
    p.events_mode("error").await?;
    wait_status(&t, "500 again", |s| s.last_status == Some(500)).await?;
    let mut t = t;
    let stopping = std::time::Instant::now();
    let status = t.terminate().await?;
    assert!(status.success(), "{status:?}\n{}", t.output.text());
    assert!(
        stopping.elapsed() < Duration::from_secs(5),
        "stopped in {:?}",
        stopping.elapsed()
    );
    Ok(())
}

/// The internal-URL deployment: the public issuer is `https://auth.example.test/…` (TLS ends at
/// a proxy), tokend reaches Authentik at `internal_url` and sends the public Host and
/// `X-Forwarded-Proto`, as it does for discovery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_11_events_are_read_through_the_internal_url_with_the_public_host() -> R {
    let p = Provider::start_with(ProviderOptions {
        public_host: Some("auth.example.test".into()),
        public_scheme: Some("https".into()),
        ..Default::default()
    })
    .await?;
    let dir = tempfile::tempdir()?;
    let mut cfg = TokendConfig::for_provider(&p);
    cfg.internal_url = Some(format!("http://127.0.0.1:{}", p.port));
    cfg.tail = events_section(&p, dir.path(), "");
    let t = Tokend::start_in(&cfg, dir).await?;
    t.wait_ready().await?;
    let s = wait_status(&t, "first poll", |s| s.held == 7).await?;
    assert_eq!(
        s.url,
        format!("http://127.0.0.1:{}/api/v3/events/events/", p.port),
        "the status names where the requests go"
    );
    let seen = p.seen_from_tokend("events").await?;
    assert!(!seen.is_empty());
    for e in &seen {
        assert_eq!(e["host"], "auth.example.test", "{e}");
        assert_eq!(e["x_forwarded_proto"], "https", "{e}");
    }
    t.output.assert_free_of(&[&p.api_token]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_11_an_event_links_to_the_live_session_of_its_user() -> R {
    let dir = tempfile::tempdir()?;
    // The provider of flow_setup is only known once it runs: the token file is written after.
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "placeholder")?;
    let (p, t) = flow_setup(&format!(
        "\n[events]\napi_token_file = {token_file:?}\ninterval = \"1s\"\n"
    ))
    .await?;
    std::fs::write(&token_file, format!("{}\n", p.api_token))?;
    t.signal("HUP")?;
    wait_status(&t, "first poll with the real token", |s| s.held == 7).await?;

    let logged_in = log_in(&p, &t, "alice", "browser-a").await?;
    let sid = jwt_payload(&logged_in.access)["sid"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(!sid.is_empty());
    p.add_events(json!([
        {"action": "login", "user": "alice"},
        {"action": "logout", "user": "carol"},
    ]))
    .await?;
    wait_status(&t, "the new events", |s| s.held == 9).await?;
    let admin = t.admin()?;
    let l = list(&admin, all()).await?;
    let alice_login = &l.events[1];
    assert_eq!(alice_login.action, "login");
    assert_eq!(alice_login.sessions.len(), 1, "{:?}", alice_login.sessions);
    let link = &alice_login.sessions[0];
    assert_eq!(
        (
            link.sub.as_str(),
            link.sid.as_deref(),
            link.matched_by.as_str()
        ),
        ("alice", Some(sid.as_str()), "email")
    );
    assert!(l.events[0].sessions.is_empty(), "carol has no session");
    let failed = l
        .events
        .iter()
        .find(|e| e.action == "login_failed")
        .expect("login_failed");
    assert!(failed.sessions.is_empty(), "anonymous: no link");

    // Computed at answer time: once alice's session ends, the link is gone.
    let ended = admin.revoke_user("alice").await?;
    assert_eq!(ended.ended, 1);
    let l = list(&admin, all()).await?;
    assert!(l.events.iter().all(|e| e.sessions.is_empty()));
    t.output
        .assert_free_of(&[&p.api_token, &logged_in.access, &logged_in.refresh]);
    Ok(())
}
