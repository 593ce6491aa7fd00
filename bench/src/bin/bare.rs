//! The bare server of `bench/run`: answers every request with a fixed JSON body of a given size,
//! on TCP and on a Unix socket — the ceiling of an HTTP hop on the same stack as tokend (axum on
//! hyper, tokio's multi-threaded runtime).

use std::path::PathBuf;

use anyhow::{Context, Result};
use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use clap::Parser;

#[derive(Parser)]
struct Args {
    /// TCP address to listen on, e.g. 127.0.0.1:8080.
    #[arg(long)]
    tcp: String,
    /// Unix socket path to listen on (removed first if present).
    #[arg(long)]
    socket: PathBuf,
    /// Size of the body in bytes (tokend's verify answer's size).
    #[arg(long, default_value_t = 600)]
    body_bytes: usize,
}

fn main() -> Result<()> {
    let args = Args::parse();
    // A JSON string of the wanted total size: `{"x":"aaa…"}`.
    let filler = args.body_bytes.saturating_sub(8);
    let body = bytes::Bytes::from(format!("{{\"x\":\"{}\"}}", "a".repeat(filler)));
    let app = Router::new().fallback(move || {
        let body = body.clone();
        async move { ([(header::CONTENT_TYPE, "application/json")], body).into_response() }
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("runtime")?;
    runtime.block_on(async move {
        let tcp = tokio::net::TcpListener::bind(&args.tcp)
            .await
            .with_context(|| format!("bind {}", args.tcp))?;
        let _ = std::fs::remove_file(&args.socket);
        let unix = tokio::net::UnixListener::bind(&args.socket)
            .with_context(|| format!("bind {}", args.socket.display()))?;
        let a = tokio::spawn(axum::serve(tcp, app.clone()).into_future());
        let b = tokio::spawn(axum::serve(unix, app).into_future());
        println!("ready");
        let (a, b) = tokio::join!(a, b);
        a??;
        b??;
        Ok(())
    })
}
