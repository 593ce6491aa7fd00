//! Unit tests of binding and serving.

use std::path::Path;

use axum::Router;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use super::*;
use crate::Config;

fn listen_config(dir: &Path, http: &str) -> ListenConfig {
    let text = format!(
        "[listen]\nsocket = {:?}\nsocket_mode = \"0666\"\nhttp = {http:?}\n\n\
         [provider]\nissuer = \"https://auth.example.com/application/o/x/\"\nclient_id = \"x\"\n",
        dir.join("configured.sock")
    );
    Config::from_toml(&text, Path::new("test.toml"), dir, std::iter::empty())
        .expect("valid config")
        .listen
}

async fn get_over_unix(path: &Path) -> String {
    let mut s = tokio::net::UnixStream::connect(path)
        .await
        .expect("connect");
    s.write_all(b"GET /ping HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).await.expect("read");
    out
}

#[tokio::test]
async fn adopted_sockets_are_served_untouched_and_left_in_place() {
    let dir = tempfile::tempdir().expect("tempdir");
    let passed = dir.path().join("passed.sock");
    let unix = std::os::unix::net::UnixListener::bind(&passed).expect("bind");
    std::fs::set_permissions(&passed, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").expect("bind tcp");
    let tcp_addr = tcp.local_addr().expect("addr");
    let activated = Activated {
        unix: vec![(unix, "unix".into())],
        tcp: vec![(tcp, "http".into())],
        admin: Vec::new(),
    };
    let cfg = listen_config(dir.path(), "127.0.0.1:1");
    let bound = bind_with(&cfg, activated).expect("adopt");
    assert_eq!(
        bound.len(),
        2,
        "passed sockets stand in for the configured ones"
    );
    assert!(!dir.path().join("configured.sock").exists());
    assert_eq!(bound[1].describe(), format!("http://{tcp_addr}"));
    let mode = std::fs::metadata(&passed)
        .expect("meta")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(
        mode, 0o600,
        "an adopted socket's mode is systemd's business"
    );

    let router = Router::new().route("/ping", axum::routing::get(|| async { "pong" }));
    let (stop_tx, stop_rx) = watch::channel(false);
    let server = tokio::spawn(serve(bound, router, ServeOptions::from(&cfg), stop_rx));
    let answer = get_over_unix(&passed).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("pong"), "{answer}");
    stop_tx.send(true).expect("stop");
    server.await.expect("server");
    assert!(passed.exists(), "an adopted socket file is left to systemd");
}

#[tokio::test]
async fn what_systemd_did_not_pass_is_bound_as_configured() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").expect("bind tcp");
    let activated = Activated {
        unix: vec![],
        tcp: vec![(tcp, "http".into())],
        admin: Vec::new(),
    };
    let cfg = listen_config(dir.path(), "127.0.0.1:1");
    let bound = bind_with(&cfg, activated).expect("bind");
    assert_eq!(bound.len(), 2);
    let configured = dir.path().join("configured.sock");
    let mode = std::fs::metadata(&configured)
        .expect("bound")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o666, "our own socket gets the configured mode");
    assert!(matches!(
        &bound[0],
        Bound::Unix {
            identity: Some(_),
            ..
        }
    ));
}

#[tokio::test]
async fn a_passed_non_loopback_tcp_socket_needs_allow_non_loopback() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tcp = std::net::TcpListener::bind("0.0.0.0:0").expect("bind tcp");
    let activated = Activated {
        unix: vec![],
        tcp: vec![(tcp, "http".into())],
        admin: Vec::new(),
    };
    let cfg = listen_config(dir.path(), "127.0.0.1:1");
    assert!(matches!(
        bind_with(&cfg, activated),
        Err(ListenError::ActivatedNonLoopback { .. })
    ));
}
