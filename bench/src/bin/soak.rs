//! The load of `bench/soak` (issue #14): a fixed-rate mix against one tokend for a given time —
//! `/v1/verify` with one repeated token and with distinct tokens, `/v1/auth` (forward auth) with
//! the token as a cookie, exchange-code issue+redeem pairs, and login cycles through the flow
//! (login at the test provider, exchange, refreshes, then a front-channel `/auth/logout` or a
//! back-channel logout from the provider, in turn, and a check that the ended session's token is
//! refused). Every answer's status is checked against the one expected at that step; prints
//! progress every 10 s on stderr and one JSON summary on stdout, and exits 1 if any answer was
//! not the expected one.
//!
//! Each kind of request has its own connections, each sending at its share of the kind's rate
//! (closed loop: a slow answer delays that connection's next request, so the achieved rates are
//! reported beside the asked ones).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bytes::Bytes;
use clap::Parser;
use serde_json::{Value, json};
use tokend_bench::{Answer, Conn};

#[derive(Parser, Clone)]
struct Args {
    /// tokend's TCP listener, `host:port`.
    #[arg(long)]
    addr: String,
    /// The test provider, `host:port`.
    #[arg(long)]
    provider: String,
    /// The repeated token (verify, forward auth, codes).
    #[arg(long)]
    token: String,
    /// Distinct tokens, one a line (cycled).
    #[arg(long)]
    tokens: std::path::PathBuf,
    #[arg(long)]
    seconds: f64,
    /// `/v1/verify` with the repeated token, requests/s.
    #[arg(long, default_value_t = 12_000.0)]
    repeated_rate: f64,
    /// `/v1/verify` with distinct tokens, requests/s.
    #[arg(long, default_value_t = 2_000.0)]
    distinct_rate: f64,
    /// `/v1/auth` with the repeated token as the access cookie, requests/s.
    #[arg(long, default_value_t = 3_000.0)]
    forward_rate: f64,
    /// Exchange-code issue+redeem pairs/s.
    #[arg(long, default_value_t = 1_500.0)]
    code_rate: f64,
    /// Login cycles/s (login, exchange, refreshes, logout).
    #[arg(long, default_value_t = 2.0)]
    flow_rate: f64,
    /// Refreshes per login cycle.
    #[arg(long, default_value_t = 3)]
    refreshes: usize,
    /// Connections per kind of request (login cycles: 2).
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// The access cookie's name.
    #[arg(long, default_value = "ecosire_auth")]
    access_cookie: String,
    /// The refresh cookie's name.
    #[arg(long, default_value = "ecosire_refresh")]
    refresh_cookie: String,
}

/// Answers by step and status, the unexpected ones, and a few examples of those.
#[derive(Default)]
struct Tally {
    counts: Mutex<BTreeMap<&'static str, BTreeMap<u16, u64>>>,
    done: AtomicU64,
    unexpected: AtomicU64,
    examples: Mutex<Vec<String>>,
}

/// One worker's counts, merged into the [`Tally`] at the end (no lock per request).
#[derive(Default)]
struct Local {
    counts: BTreeMap<&'static str, BTreeMap<u16, u64>>,
}

impl Local {
    /// Records `got` at `step` (0: no answer); false (and an example kept) unless it is `want`.
    fn check(
        &mut self,
        tally: &Tally,
        step: &'static str,
        got: &Result<Answer>,
        want: u16,
    ) -> bool {
        let status = got.as_ref().map_or(0, |a| a.status);
        *self
            .counts
            .entry(step)
            .or_default()
            .entry(status)
            .or_default() += 1;
        tally.done.fetch_add(1, Ordering::Relaxed);
        if status == want {
            return true;
        }
        tally.unexpected.fetch_add(1, Ordering::Relaxed);
        // The error's reason only: an answer's body may hold tokens.
        let why = match got {
            Ok(a) => a
                .json()
                .and_then(|v| v.get("reason").or_else(|| v.get("error")).cloned())
                .map_or_else(String::new, |r| r.to_string()),
            Err(e) => e.to_string(),
        };
        let mut ex = tally.examples.lock().unwrap_or_else(|e| e.into_inner());
        if ex.len() < 20 {
            ex.push(format!("{step}: {status} (wanted {want}) {why}"));
        }
        false
    }

    fn merge(self, tally: &Tally) {
        let mut all = tally.counts.lock().unwrap_or_else(|e| e.into_inner());
        for (step, by) in self.counts {
            for (status, n) in by {
                *all.entry(step).or_default().entry(status).or_default() += n;
            }
        }
    }
}

/// Paces a loop at `rate` per second until `end` (closed loop: catches up after a slow answer,
/// but never by more than a second's worth).
struct Pacer {
    period: Option<Duration>,
    next: Instant,
    end: Instant,
}

impl Pacer {
    fn new(rate: f64, end: Instant) -> Self {
        Self {
            period: (rate > 0.0).then(|| Duration::from_secs_f64(1.0 / rate)),
            next: Instant::now(),
            end,
        }
    }

    /// Waits for the next turn; false when the time is up (or the rate is 0).
    async fn turn(&mut self) -> bool {
        let Some(period) = self.period else {
            return false;
        };
        let now = Instant::now();
        if self.next > now {
            tokio::time::sleep_until(self.next.into()).await;
        } else if now - self.next > Duration::from_secs(1) {
            self.next = now;
        }
        self.next += period;
        Instant::now() < self.end
    }
}

fn json_body(v: Value) -> Option<(&'static str, Bytes)> {
    Some(("application/json", Bytes::from(v.to_string())))
}

/// The path and query of an absolute URL (`http://host:port/p?q` → `/p?q`).
fn path_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.find('/').map_or("/", |i| &rest[i..])
}

/// Query parameter `name` of a URL (values here are base64url: no decoding needed).
fn query_param<'a>(url: &'a str, name: &str) -> Option<&'a str> {
    url.split_once('?')?
        .1
        .split('&')
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
}

/// One login cycle; returns at the first unexpected answer (counted).
async fn cycle(
    a: &Args,
    tokend: &mut Conn,
    provider: &mut Conn,
    tally: &Tally,
    local: &mut Local,
    n: u64,
    worker: usize,
) {
    let jar = format!("soak-{worker}-{n}");
    let user = format!("soak{}", n % 50);
    let r = tokend
        .request("GET", "/auth/login?redirect=%2F", &[], None)
        .await;
    if !local.check(tally, "flow: login", &r, 302) {
        return;
    }
    let Ok(r) = r else { return };
    let (Some(authorize), Some(binding)) = (r.location(), r.cookie_pair("tokend_login_"))
    else {
        let bad: Result<Answer> = Err(anyhow::anyhow!("no location or binding cookie"));
        local.check(tally, "flow: login", &bad, 302);
        return;
    };
    let browse = json!({"url": authorize, "user": user, "session": jar});
    let r = provider
        .request("POST", "/_test/browse", &[], json_body(browse))
        .await;
    if !local.check(tally, "provider: browse", &r, 200) {
        return;
    }
    let back = r
        .ok()
        .and_then(|r| r.json())
        .and_then(|v| v["location"].as_str().map(str::to_string))
        .unwrap_or_default();
    let r = tokend
        .request("GET", path_of(&back), &[("cookie", &binding)], None)
        .await;
    if !local.check(tally, "flow: callback", &r, 302) {
        return;
    }
    let code = r
        .ok()
        .and_then(|r| {
            r.location()
                .and_then(|l| query_param(l, "exchange"))
                .map(str::to_string)
        })
        .unwrap_or_default();
    let r = tokend
        .request(
            "POST",
            "/auth/exchange",
            &[],
            json_body(json!({"code": code})),
        )
        .await;
    if !local.check(tally, "flow: exchange", &r, 200) {
        return;
    }
    let Ok(r) = r else { return };
    let (mut access, mut refresh) = (
        r.cookie(&a.access_cookie).unwrap_or_default(),
        r.cookie(&a.refresh_cookie).unwrap_or_default(),
    );
    let verify = |access: &str| format!("{}={access}", a.access_cookie);
    let r = tokend
        .request("GET", "/v1/verify", &[("cookie", &verify(&access))], None)
        .await;
    if !local.check(tally, "flow: verify", &r, 200) {
        return;
    }
    for _ in 0..a.refreshes {
        let cookie = format!("{}={refresh}", a.refresh_cookie);
        let r = tokend
            .request("POST", "/auth/refresh", &[("cookie", &cookie)], None)
            .await;
        if !local.check(tally, "flow: refresh", &r, 200) {
            return;
        }
        let Ok(r) = r else { return };
        access = r.cookie(&a.access_cookie).unwrap_or(access);
        refresh = r.cookie(&a.refresh_cookie).unwrap_or(refresh);
        let r = tokend
            .request("GET", "/v1/verify", &[("cookie", &verify(&access))], None)
            .await;
        if !local.check(tally, "flow: verify after refresh", &r, 200) {
            return;
        }
    }
    if n.is_multiple_of(2) {
        let r = tokend
            .request(
                "POST",
                "/auth/logout",
                &[("cookie", &verify(&access))],
                None,
            )
            .await;
        if !local.check(tally, "flow: logout", &r, 200) {
            return;
        }
    } else {
        let r = provider
            .request(
                "POST",
                "/_test/end-session",
                &[],
                json_body(json!({"session": jar})),
            )
            .await;
        let delivered = r
            .as_ref()
            .ok()
            .and_then(Answer::json)
            .is_some_and(|v| v["backchannel"][0]["ok"] == json!(true));
        let r = match r {
            Ok(r) if !delivered => Err(anyhow::anyhow!(
                "back-channel logout not delivered (status {})",
                r.status
            )),
            other => other,
        };
        if !local.check(
            tally,
            "provider: end-session (back-channel logout)",
            &r,
            200,
        ) {
            return;
        }
    }
    // The ended session's token: refused (`token_revoked`), the one expected error answer.
    let r = tokend
        .request("GET", "/v1/verify", &[("cookie", &verify(&access))], None)
        .await;
    let revoked = r
        .as_ref()
        .ok()
        .and_then(Answer::json)
        .is_some_and(|v| v["reason"] == json!("token_revoked"));
    let r = match r {
        Ok(r) if r.status == 401 && !revoked => Err(anyhow::anyhow!("401 but not token_revoked")),
        other => other,
    };
    local.check(tally, "flow: verify after logout (401 expected)", &r, 401);
}

fn main() -> Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("runtime")?;
    runtime.block_on(run(args))
}

/// What every worker shares.
struct Shared {
    a: Args,
    tally: Tally,
    distinct: Vec<String>,
    end: Instant,
}

/// A worker of kind `kind` (`w` of `conns`), sending at `rate` per second.
async fn worker(s: Arc<Shared>, kind: Kind, w: usize, conns: usize, rate: f64) -> Result<()> {
    let (a, tally) = (&s.a, &s.tally);
    let mut c = Conn::open(&a.addr).await?;
    let mut local = Local::default();
    let mut pace = Pacer::new(rate, s.end);
    match kind {
        Kind::Repeated => {
            let auth = format!("Bearer {}", a.token);
            while pace.turn().await {
                let r = c
                    .request("GET", "/v1/verify", &[("authorization", &auth)], None)
                    .await;
                local.check(tally, "verify, repeated token", &r, 200);
            }
        }
        Kind::Distinct => {
            let mut i = w * s.distinct.len() / conns;
            while pace.turn().await {
                i = (i + 1) % s.distinct.len();
                let auth = format!("Bearer {}", s.distinct[i]);
                let r = c
                    .request("GET", "/v1/verify", &[("authorization", &auth)], None)
                    .await;
                local.check(tally, "verify, distinct tokens", &r, 200);
            }
        }
        Kind::Forward => {
            let cookie = format!("{}={}", a.access_cookie, a.token);
            while pace.turn().await {
                let r = c
                    .request("GET", "/v1/auth", &[("cookie", &cookie)], None)
                    .await;
                local.check(tally, "forward auth, repeated token", &r, 200);
            }
        }
        Kind::Codes => {
            let issue = json!({ "access_token": a.token });
            while pace.turn().await {
                let r = c
                    .request("POST", "/v1/codes", &[], json_body(issue.clone()))
                    .await;
                if !local.check(tally, "code issue", &r, 201) {
                    continue;
                }
                let code = r
                    .ok()
                    .and_then(|r| r.json())
                    .and_then(|v| v["code"].as_str().map(str::to_string))
                    .unwrap_or_default();
                let r = c
                    .request(
                        "POST",
                        "/v1/codes/redeem",
                        &[],
                        json_body(json!({ "code": code })),
                    )
                    .await;
                local.check(tally, "code redeem", &r, 200);
            }
        }
        Kind::Flow => {
            let mut p = Conn::open(&a.provider).await?;
            let mut n = w as u64;
            while pace.turn().await {
                n += conns as u64;
                cycle(a, &mut c, &mut p, tally, &mut local, n, w).await;
            }
        }
    }
    local.merge(tally);
    Ok(())
}

#[derive(Clone, Copy)]
enum Kind {
    Repeated,
    Distinct,
    Forward,
    Codes,
    Flow,
}

async fn run(a: Args) -> Result<()> {
    let text = std::fs::read_to_string(&a.tokens)
        .with_context(|| format!("read {}", a.tokens.display()))?;
    let distinct: Vec<String> = text.lines().map(str::to_string).collect();
    anyhow::ensure!(!distinct.is_empty(), "no tokens in {}", a.tokens.display());
    let started = Instant::now();
    let conns = a.connections.max(1);
    let kinds = [
        (Kind::Repeated, a.repeated_rate, conns),
        (Kind::Distinct, a.distinct_rate, conns),
        (Kind::Forward, a.forward_rate, conns),
        (Kind::Codes, a.code_rate, conns),
        (Kind::Flow, a.flow_rate, 2),
    ];
    let shared = Arc::new(Shared {
        end: started + Duration::from_secs_f64(a.seconds),
        a,
        tally: Tally::default(),
        distinct,
    });
    let tally = &shared.tally;
    let mut tasks = tokio::task::JoinSet::new();
    for (kind, rate, n) in kinds {
        for w in 0..n {
            tasks.spawn(worker(shared.clone(), kind, w, n, rate / n as f64));
        }
    }
    let progress = {
        let shared = shared.clone();
        tokio::spawn(async move {
            let tally = &shared.tally;
            let mut last = 0;
            loop {
                tokio::time::sleep(Duration::from_secs(10)).await;
                let done = tally.done.load(Ordering::Relaxed);
                eprintln!(
                    "bench-soak: {:>4.0} s: {:.0} answers/s in the last 10 s, {} unexpected so far",
                    started.elapsed().as_secs_f64(),
                    (done - last) as f64 / 10.0,
                    tally.unexpected.load(Ordering::Relaxed)
                );
                last = done;
            }
        })
    };
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    progress.abort();
    let elapsed = started.elapsed().as_secs_f64();
    let counts = tally
        .counts
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let unexpected = tally.unexpected.load(Ordering::Relaxed);
    let examples = tally
        .examples
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let by_step: serde_json::Map<String, Value> = counts
        .iter()
        .map(|(step, by)| {
            let n: u64 = by.values().sum();
            let statuses: serde_json::Map<String, Value> =
                by.iter().map(|(s, n)| (s.to_string(), json!(n))).collect();
            (
                step.to_string(),
                json!({"per_s": n as f64 / elapsed, "statuses": statuses}),
            )
        })
        .collect();
    println!(
        "{}",
        json!({
            "seconds": elapsed,
            "answers": tally.done.load(Ordering::Relaxed),
            "answers_per_s": tally.done.load(Ordering::Relaxed) as f64 / elapsed,
            "unexpected": unexpected,
            "examples": examples,
            "by_step": by_step,
        })
    );
    if unexpected > 0 {
        std::process::exit(1);
    }
    Ok(())
}
