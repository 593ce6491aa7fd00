//! The driver of `bench/run`: what a stock load generator cannot do honestly — time to ready,
//! filling tokend's verified-token cache and its code store, and exchange-code issue+redeem pairs
//! (the redeem needs the code the issue answered). One HTTP/1.1 keep-alive connection per worker.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use serde_json::{Value, json};
use tokend_bench::Conn;

#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Poll `GET /readyz` every millisecond until 200; print the milliseconds since `since_ns`
    /// (wall clock, `date +%s%N` taken just before the daemon was started).
    Ready {
        #[arg(long)]
        addr: String,
        #[arg(long)]
        since_ns: u128,
        #[arg(long, default_value_t = 20_000)]
        timeout_ms: u64,
    },
    /// `GET /v1/verify` once with every token of a file (one a line); fails on any non-200.
    FillVerify {
        #[arg(long)]
        addr: String,
        #[arg(long)]
        tokens: std::path::PathBuf,
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
    },
    /// `POST /v1/codes` `count` times with one access token; fails on any non-201.
    FillCodes {
        #[arg(long)]
        addr: String,
        #[arg(long)]
        token: String,
        #[arg(long)]
        count: usize,
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
    },
    /// Issue+redeem pairs for `seconds` on `concurrency` connections; prints one JSON line:
    /// pairs/s, p50 and p99 of a pair in ms, errors.
    Pairs {
        #[arg(long)]
        addr: String,
        #[arg(long)]
        token: String,
        #[arg(long)]
        seconds: f64,
        #[arg(long)]
        concurrency: usize,
    },
}

fn main() -> Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("runtime")?;
    runtime.block_on(async move {
        match args.cmd {
            Cmd::Ready {
                addr,
                since_ns,
                timeout_ms,
            } => ready(&addr, since_ns, timeout_ms).await,
            Cmd::FillVerify {
                addr,
                tokens,
                concurrency,
            } => {
                let text = std::fs::read_to_string(&tokens)
                    .with_context(|| format!("read {}", tokens.display()))?;
                let tokens: Arc<Vec<String>> = Arc::new(text.lines().map(str::to_string).collect());
                let n = tokens.len();
                fill(&addr, n, concurrency, move |i| {
                    let t = tokens[i].clone();
                    ("GET", "/v1/verify", Some(t), None, 200)
                })
                .await
            }
            Cmd::FillCodes {
                addr,
                token,
                count,
                concurrency,
            } => {
                fill(&addr, count, concurrency, move |_| {
                    let body = json!({ "access_token": token });
                    ("POST", "/v1/codes", None, Some(body), 201)
                })
                .await
            }
            Cmd::Pairs {
                addr,
                token,
                seconds,
                concurrency,
            } => pairs(&addr, &token, seconds, concurrency).await,
        }
    })
}

async fn ready(addr: &str, since_ns: u128, timeout_ms: u64) -> Result<()> {
    let deadline = Instant::now() + Duration::from_millis(timeout_ms);
    loop {
        if let Ok(mut c) = Conn::open(addr).await
            && let Ok((200, _)) = c.send("GET", "/readyz", None, None).await
        {
            let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos();
            println!("{:.1}", now.saturating_sub(since_ns) as f64 / 1e6);
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{addr}/readyz not 200 within {timeout_ms} ms");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

type Request = (
    &'static str,
    &'static str,
    Option<String>,
    Option<Value>,
    u16,
);

/// Sends request `i` for every `i < n` on `concurrency` connections; fails on a wrong status.
async fn fill<F>(addr: &str, n: usize, concurrency: usize, make: F) -> Result<()>
where
    F: Fn(usize) -> Request + Send + Sync + 'static,
{
    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let make = Arc::new(make);
    let mut tasks = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (next, make, addr) = (next.clone(), make.clone(), addr.to_string());
        tasks.push(tokio::spawn(async move {
            let mut c = Conn::open(&addr).await?;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return anyhow::Ok(());
                }
                let (method, path, bearer, body, want) = make(i);
                let (status, answer) = c.send(method, path, bearer.as_deref(), body).await?;
                if status != want {
                    bail!(
                        "{method} {path} #{i}: {status} (wanted {want}): {}",
                        String::from_utf8_lossy(&answer)
                    );
                }
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    eprintln!("{n} requests in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

async fn pairs(addr: &str, token: &str, seconds: f64, concurrency: usize) -> Result<()> {
    let started = Instant::now();
    let end = started + Duration::from_secs_f64(seconds);
    let errors = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (addr, token, errors) = (addr.to_string(), token.to_string(), errors.clone());
        tasks.push(tokio::spawn(async move {
            let mut c = Conn::open(&addr).await?;
            let mut lat = Vec::with_capacity(100_000);
            let issue = json!({ "access_token": token });
            while Instant::now() < end {
                let t0 = Instant::now();
                let (s, body) = c
                    .send("POST", "/v1/codes", None, Some(issue.clone()))
                    .await?;
                let code = serde_json::from_slice::<Value>(&body)
                    .ok()
                    .and_then(|v| v["code"].as_str().map(str::to_string));
                let Some(code) = code.filter(|_| s == 201) else {
                    errors.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                let redeem = json!({ "code": code });
                let (s, _) = c
                    .send("POST", "/v1/codes/redeem", None, Some(redeem))
                    .await?;
                if s != 200 {
                    errors.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                lat.push(t0.elapsed());
            }
            anyhow::Ok(lat)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort_unstable();
    let pct = |p: f64| -> f64 {
        if all.is_empty() {
            return 0.0;
        }
        let i = ((all.len() as f64 - 1.0) * p).round() as usize;
        all[i].as_secs_f64() * 1e3
    };
    println!(
        "{}",
        json!({
            "rps": all.len() as f64 / elapsed,
            "p50_ms": pct(0.50),
            "p99_ms": pct(0.99),
            "errors": errors.load(Ordering::Relaxed),
        })
    );
    Ok(())
}
