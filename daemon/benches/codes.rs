//! Exchange codes: store operations and issue+redeem pairs in-process, and issue+redeem pairs
//! over the Unix socket against a running tokend (HS256 mode, so no provider is needed).
//!
//! `cargo bench -p tokend --bench codes`

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokend::codes::{CodeKind, Codes, NewCode};
use tokend::metrics::Metrics;
use tokend::store::{CodePayload, Kind, MemoryStore, Record, Store};
use tokend_shared::Secret;

/// Concurrent client connections in the socket benchmark.
const CONNECTIONS: usize = 16;

fn payload(expires: i64) -> Record {
    Record::Code(CodePayload {
        access_token: Secret::new("eyJhbGciOiJIUzI1NiJ9.e30.sig"),
        refresh_token: Some(Secret::new("refresh")),
        id_token: None,
        sub: "alice".into(),
        sid: Some("sid".into()),
        created: 0,
        expires,
        kind: CodeKind::Api,
    })
}

fn store_ops(c: &mut Criterion) {
    let mut g = c.benchmark_group("store");
    g.throughput(Throughput::Elements(2));
    let store = MemoryStore::new(usize::MAX, 1);
    let mut i = 0u64;
    // One put and one take per iteration: two store operations. Keys are distinct (a counter
    // in the hash's place); redeemed codes leave tombstones, dropped every 100k iterations as
    // the sweeper would.
    g.bench_function("put+take", |b| {
        b.iter(|| {
            let mut k = [7u8; 32];
            k[..8].copy_from_slice(&i.to_le_bytes());
            i += 1;
            store
                .put_now(Kind::ExchangeCode, k, payload(i64::MAX - 1))
                .expect("room");
            black_box(store.take_now(Kind::ExchangeCode, k, 0).expect("live"));
            if i.is_multiple_of(100_000) {
                store.sweep(i64::MAX);
            }
        })
    });
    g.finish();

    let mut g = c.benchmark_group("codes");
    g.throughput(Throughput::Elements(1));
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let store = Arc::new(MemoryStore::new(usize::MAX, 1));
    let codes = Codes::new(store.clone(), Duration::from_secs(60), Metrics::new());
    let mut n = 0u64;
    // A pair: a fresh 256-bit code from the OS CSPRNG, hashed and stored; then redeemed. The
    // tombstones redeemed codes leave are swept every 100k pairs, as the sweeper would.
    g.bench_function("issue+redeem pair (in-process)", |b| {
        b.iter(|| {
            n += 1;
            if n.is_multiple_of(100_000) {
                store.sweep(i64::MAX);
            }
            rt.block_on(async {
                let code = codes
                    .issue(
                        NewCode {
                            access_token: Secret::new("eyJhbGciOiJIUzI1NiJ9.e30.sig"),
                            refresh_token: None,
                            id_token: None,
                            sub: "alice".into(),
                            sid: None,
                            kind: CodeKind::Api,
                        },
                        0,
                    )
                    .await
                    .expect("issued");
                black_box(
                    codes
                        .redeem(CodeKind::Api, code.expose(), 1)
                        .await
                        .expect("redeemed"),
                );
            })
        })
    });
    g.finish();
}

/// A tokend in HS256 mode on a Unix socket in a temporary directory.
fn start_tokend(rt: &tokio::runtime::Runtime) -> (tempfile::TempDir, std::path::PathBuf, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("tokend.sock");
    let secret = "bench-client-secret-0123456789abcdef";
    let issuer = "http://127.0.0.1:9/application/o/bench/";
    let toml = format!(
        "[listen]\nsocket = {socket:?}\n[provider]\nissuer = \"{issuer}\"\nclient_id = \"bench\"\n\
         client_secret = \"{secret}\"\nalgorithms = [\"HS256\"]\n[codes]\nmax_outstanding = 10000000\n\
         [log]\nlevel = \"error\"\n"
    );
    let config = tokend::Config::from_toml(
        &toml,
        std::path::Path::new("bench.toml"),
        dir.path(),
        std::iter::empty(),
    )
    .expect("valid config");
    rt.spawn(async move {
        let _ = tokend::run(config, std::future::pending()).await;
    });
    for _ in 0..200 {
        if socket.exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let now = tokend::verify::now_unix();
    let claims = serde_json::json!({
        "iss": issuer, "aud": "bench", "sub": "alice", "exp": now + 3600, "iat": now,
        "azp": "bench", "uid": "u", "scope": "openid", "sid": "s"
    });
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("signed");
    (dir, socket, token)
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(socket: &std::path::Path) -> Sender {
    let stream = tokio::net::UnixStream::connect(socket)
        .await
        .expect("connect");
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    sender
}

async fn post(sender: &mut Sender, path: &str, body: String) -> (u16, Bytes) {
    sender.ready().await.expect("ready");
    let req = http::Request::post(path)
        .header("host", "tokend")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("request");
    let resp = sender.send_request(req).await.expect("response");
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, body)
}

/// One issue+redeem pair over an open connection.
async fn pair(sender: &mut Sender, issue_body: &str) {
    let (status, body) = post(sender, "/v1/codes", issue_body.to_string()).await;
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
    let code = v["code"].as_str().expect("code");
    let (status, _) = post(
        sender,
        "/v1/codes/redeem",
        serde_json::json!({ "code": code }).to_string(),
    )
    .await;
    assert_eq!(status, 200);
}

fn over_socket(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (_dir, socket, token) = start_tokend(&rt);
    let issue_body = serde_json::json!({ "access_token": token }).to_string();
    let mut senders: Vec<Sender> = rt.block_on(async { futures_join(CONNECTIONS, &socket).await });
    // Sanity: a pair works before measuring.
    rt.block_on(pair(&mut senders[0], &issue_body));

    let mut g = c.benchmark_group("socket");
    g.throughput(Throughput::Elements(1));
    g.measurement_time(Duration::from_secs(8));
    g.bench_function(
        format!("issue+redeem pair ({CONNECTIONS} connections)"),
        |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let per = iters.div_ceil(CONNECTIONS as u64);
                    let started = Instant::now();
                    let mut tasks = tokio::task::JoinSet::new();
                    for mut s in std::mem::take(&mut senders) {
                        let body = issue_body.clone();
                        tasks.spawn(async move {
                            for _ in 0..per {
                                pair(&mut s, &body).await;
                            }
                            s
                        });
                    }
                    while let Some(s) = tasks.join_next().await {
                        senders.push(s.expect("client task"));
                    }
                    // Scale to the requested iteration count.
                    started
                        .elapsed()
                        .mul_f64(iters as f64 / (per * CONNECTIONS as u64) as f64)
                })
            })
        },
    );
    g.finish();
}

async fn futures_join(n: usize, socket: &std::path::Path) -> Vec<Sender> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(connect(socket).await);
    }
    out
}

criterion_group!(benches, store_ops, over_socket);
criterion_main!(benches);
