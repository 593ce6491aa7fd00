//! Memory per cached token and per outstanding exchange code (issue #14). Not a criterion
//! bench: it fills the verified-token cache with 100 000 distinct Authentik-sized access tokens
//! (through `Verifier::verify`, as requests do), then the memory store with 100 000 outstanding
//! codes, and prints what each costs:
//!
//! * heap bytes, counted by a global allocator that wraps the system one (`cap`; this bench
//!   binary only, never the daemon): the sizes asked for, so without malloc's own rounding and headers;
//! * resident memory (VmRSS from /proc/self/status), which includes them;
//! * for the cache, the bytes the cache itself accounts (what `verify.cache_max_bytes` bounds);
//!   then what forward auth's identity headers add when kept beside every entry.
//!
//! `cargo bench -p tokend --bench memory` (`TOKEND_BENCH_ENTRIES=n` changes the 100 000).
//! HS256 tokens keep the setup short: the cache holds the same things whatever the algorithm
//! (it keys on the token's hash, and the claims are those of `authentik_claims`).

use std::alloc::System;
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{SystemTime, UNIX_EPOCH};

use cap::Cap;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tokend::config::{Config, HeaderSet};
use tokend::forward::identity;
use tokend::metrics::Metrics;
use tokend::sessions::Sessions;
use tokend::store::{CodeKind, CodePayload, Kind, MemoryStore, Record, code_key};
use tokend::verify::{IdentityHeaders, Verifier, VerifyError};
use tokend_shared::Secret;

/// Counts the bytes currently allocated (as requested by the callers), over the system allocator.
#[global_allocator]
static ALLOC: Cap<System> = Cap::new(System, usize::MAX);

fn signed(n: usize) -> isize {
    isize::try_from(n).unwrap_or(isize::MAX)
}

const ISSUER: &str = "https://authentik.example.com/application/o/bench/";
const CLIENT_ID: &str = "bench";
const SECRET: &str = "bench-client-secret-bench-client-secret";

fn entries() -> usize {
    std::env::var("TOKEND_BENCH_ENTRIES")
        .ok()
        .map_or(100_000, |n| {
            n.parse().expect("TOKEND_BENCH_ENTRIES is a number")
        })
}

fn live() -> isize {
    signed(ALLOC.allocated())
}

/// Resident memory in bytes (VmRSS).
fn rss() -> isize {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kb: isize = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("a VmRSS line");
    kb * 1024
}

fn now_unix() -> i64 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs();
    i64::try_from(secs).expect("seconds fit in i64")
}

/// 32 hex digits derived from `i` and `salt` (distinct per token).
fn hex(i: usize, salt: u128) -> String {
    let n = u128::try_from(i).expect("usize fits in u128");
    format!(
        "{:032x}",
        n.wrapping_add(salt)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835)
    )
}

/// The claims of an Authentik access token (as in `benches/verify.rs`): the RS256 token of these
/// claims is about 1.3 KB, the rendered `/v1/verify` answer about 0.8 KB.
fn authentik_claims(i: usize, now: i64) -> Value {
    json!({
        "iss": ISSUER,
        "sub": format!("{}{}", hex(i, 1), hex(i, 2)),
        "aud": CLIENT_ID,
        "exp": now + 3600,
        "iat": now,
        "auth_time": now - 60,
        "acr": "goauthentik.io/providers/oauth2/default",
        "amr": ["pwd"],
        "sid": format!("{}{}", hex(i, 3), hex(i, 4)),
        "jti": hex(i, 5),
        "azp": CLIENT_ID,
        "uid": hex(i, 6),
        "scope": "openid email profile",
        "email": format!("user{i}@example.com"),
        "email_verified": true,
        "name": format!("Bench User {i}"),
        "given_name": format!("Bench User {i}"),
        "preferred_username": format!("user{i}"),
        "nickname": format!("user{i}"),
        "groups": ["staff", "ecosire-support", "bench-users"],
        "organizationId": format!("org-{}", i % 97),
    })
}

fn hs256(claims: &Value) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.typ = Some("JWT".into());
    jsonwebtoken::encode(
        &header,
        claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("signing a bench token")
}

fn verifier(n: usize) -> Verifier {
    let toml = format!(
        "[listen]\nhttp = \"127.0.0.1:0\"\n[provider]\nissuer = \"{ISSUER}\"\n\
         client_id = \"{CLIENT_ID}\"\nclient_secret = \"{SECRET}\"\nalgorithms = [\"HS256\"]\n\
         [verify]\ncache_max_entries = {n}\ncache_max_bytes = \"1GiB\"\n"
    );
    let config = Config::from_toml(
        &toml,
        std::path::Path::new("bench.toml"),
        std::path::Path::new("."),
        std::iter::empty::<(String, String)>(),
    )
    .expect("bench config is valid");
    let metrics = Metrics::new();
    let jwks = tokend::build_jwks(&config, &metrics).expect("HS256 key set");
    let sessions = Arc::new(Sessions::new(config.revocation_ttl(), metrics.clone()));
    Verifier::new(&config, jwks, sessions, metrics)
}

fn verify_now(v: &Verifier, token: &str) {
    let mut fut = pin!(v.verify(token));
    match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(r) => {
            r.expect("a bench token verifies");
        }
        Poll::Pending => panic!("an HS256 verification never waits"),
    }
}

fn per(bytes: isize, n: usize) -> isize {
    bytes / signed(n)
}

/// Returns the verifier (and the tokens), so that its memory is not reused by `codes`.
fn cache(n: usize) -> (Verifier, Vec<String>) {
    let now = now_unix();
    let tokens: Vec<String> = (0..n).map(|i| hs256(&authentik_claims(i, now))).collect();
    let v = verifier(n);
    verify_now(&v, &tokens[0]);
    let body = v.cache().bytes();
    println!(
        "token: {} bytes as HS256 (about 1.3 KB as RS256); first cache entry accounted at {body} bytes",
        tokens[0].len(),
    );
    let (heap0, rss0) = (live(), rss());
    for t in &tokens[1..] {
        verify_now(&v, t);
    }
    let (heap1, rss1) = (live(), rss());
    assert_eq!(v.cache().len(), n, "every token cached");
    let added = n - 1;
    println!(
        "verified-token cache, {n} entries: heap {} B/entry, RSS {} B/entry, accounted by the \
         cache {} B/entry ({} B in all)",
        per(heap1 - heap0, added),
        per(rss1 - rss0, added),
        v.cache().bytes() / n,
        v.cache().bytes(),
    );
    (v, tokens)
}

/// Forward auth's identity headers (oauth2-proxy's set, the default budget) made for every cached
/// token and kept beside it, as `/v1/auth` hits do: what they add per entry.
fn forward(v: &Verifier, tokens: &[String]) {
    let (set, budget) = (HeaderSet::Oauth2Proxy, 4096);
    let before = v.cache().bytes();
    let (heap0, rss0) = (live(), rss());
    for t in tokens {
        let mut fut = pin!(v.verify_identity(t, set, budget, |verified| {
            let claims = verified.claims().expect("claims parse back");
            let id = identity(&claims, set, budget);
            Ok::<_, VerifyError>(IdentityHeaders::new(set, budget, id.truncated, &id.headers))
        }));
        match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(r) => {
                r.expect("a bench token verifies");
            }
            Poll::Pending => panic!("an HS256 verification never waits"),
        }
    }
    let (heap1, rss1) = (live(), rss());
    let n = tokens.len();
    println!(
        "forward auth's identity headers kept beside each of the {n} entries: heap {} B/entry, \
         RSS {} B/entry, accounted by the cache {} B/entry",
        per(heap1 - heap0, n),
        per(rss1 - rss0, n),
        (v.cache().bytes() - before) / n,
    );
}

fn codes(n: usize) -> MemoryStore {
    let store = MemoryStore::new(usize::MAX, 1);
    let now = now_unix();
    // Each code's tokens are made and moved into the store one at a time, so the heap and RSS
    // deltas hold them: their bytes (and those of sub and sid) are subtracted.
    let (mut token_bytes, mut id_bytes) = (0, 0);
    let (heap0, rss0) = (live(), rss());
    for i in 0..n {
        let access = hs256(&authentik_claims(i, now));
        let id = hs256(&authentik_claims(i + n, now));
        let refresh = format!("{}{}{}", hex(i, 7), hex(i, 8), hex(i, 9));
        token_bytes += access.len() + id.len() + refresh.len();
        let sub = format!("{}{}", hex(i, 1), hex(i, 2));
        let sid = format!("{}{}", hex(i, 3), hex(i, 4));
        id_bytes += sub.len() + sid.len();
        let code = format!("{}{}", hex(i, 10), hex(i, 11));
        let record = Record::Code(CodePayload {
            access_token: Secret::new(access),
            refresh_token: Some(Secret::new(refresh)),
            id_token: Some(Secret::new(id)),
            sub,
            sid: Some(sid),
            created: now,
            expires: now + 60,
            kind: CodeKind::Flow,
        });
        store
            .put_now(Kind::ExchangeCode, code_key(CodeKind::Flow, &code), record)
            .expect("room for every code");
    }
    let (heap1, rss1) = (live(), rss());
    let held = signed(token_bytes + id_bytes);
    println!(
        "exchange codes, {n} outstanding: beyond the {} B of tokens and {} B of sub+sid each \
         holds, heap {} B/code, RSS {} B/code",
        token_bytes / n,
        id_bytes / n,
        per(heap1 - heap0 - held, n),
        per(rss1 - rss0 - held, n),
    );
    store
}

fn main() {
    // `cargo bench` passes `--bench`; nothing to filter.
    let n = entries();
    let cached = cache(n);
    forward(&cached.0, &cached.1);
    let _cache = cached;
    let _codes = codes(n);
}
