//! Issue #2: configuration fixtures through the real binary, and the listeners' behaviour
//! (socket mode, stale and live sockets, clean shutdown with requests in flight).

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;
use tokend_e2e::{Provider, Tokend, TokendConfig, check_config, spawn_tokend, workspace_root};

type R = anyhow::Result<()>;

fn fixtures(kind: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(workspace_root().join("config").join(kind))
        .expect("fixture dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    files
}

#[test]
fn valid_config_fixtures_pass_check_config() -> R {
    let mut files = fixtures("valid");
    files.push(workspace_root().join("config/tokend.toml"));
    assert!(files.len() >= 5, "fixtures missing: {files:?}");
    for f in files {
        let (code, stdout, stderr) = check_config(&f)?;
        assert_eq!(code, 0, "{}: {stderr}", f.display());
        assert!(stdout.contains("[provider]"), "effective config printed");
        for secret in [
            "fixture-client-secret-do-not-log",
            "fixture-api-token-do-not-log",
        ] {
            assert!(
                !stdout.contains(secret) && !stderr.contains(secret),
                "{}: secret printed",
                f.display()
            );
        }
        if f.ends_with("hs256-secret-file.toml") {
            assert!(
                stdout.contains("client_secret = \"[redacted]\""),
                "{stdout}"
            );
        }
    }
    Ok(())
}

#[test]
fn invalid_config_fixtures_fail_with_a_clear_message() -> R {
    let files = fixtures("invalid");
    assert!(files.len() >= 15, "fixtures missing: {files:?}");
    for f in files {
        let text = std::fs::read_to_string(&f)?;
        let expect = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{} lacks a `# expect:` first line", f.display()));
        let (code, stdout, stderr) = check_config(&f)?;
        assert_eq!(code, 2, "{}: should fail; stdout: {stdout}", f.display());
        assert!(stdout.is_empty(), "{}: printed a config", f.display());
        assert!(
            stderr.contains(expect),
            "{}: expected {expect:?} in:\n{stderr}",
            f.display()
        );
        assert!(
            stderr.starts_with("tokend: invalid configuration"),
            "{stderr}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_mode_stale_takeover_and_removal_on_exit() -> R {
    let p = Provider::start().await?;
    let dir = tempfile::tempdir()?;
    let sock = dir.path().join("api.sock");
    // A stale socket file: bound, then its process (here: listener) gone.
    drop(std::os::unix::net::UnixListener::bind(&sock)?);
    assert!(sock.exists());

    let mut cfg = TokendConfig::for_provider(&p);
    cfg.socket_path = Some(sock.clone());
    cfg.http = false;
    // Handing the socket to another group needs root (CI runs as root).
    let as_root = tokend_e2e::is_root();
    if as_root {
        cfg.listen_extra = "socket_group = \"nogroup\"\n".into();
    } else {
        tokend_e2e::skip(
            "socket group",
            "handing the socket to another group needs root",
        );
    }
    let mut t = Tokend::start(&cfg).await?;
    t.wait_ready().await?;
    let meta = std::fs::metadata(&sock)?;
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    if as_root {
        use std::os::unix::fs::MetadataExt;
        assert_eq!(meta.gid(), 65534, "socket group is nogroup");
    }
    let token = p.login("alice").await?.access_token;
    assert_eq!(t.verify_unix(&token).await?.status, 200);
    assert!(t.output.text().contains("stale socket"));

    // A live socket is not taken over.
    let second_dir = tempfile::tempdir()?;
    let second_cfg = second_dir.path().join("tokend.toml");
    std::fs::write(&second_cfg, cfg.to_toml(second_dir.path()))?;
    let out = spawn_tokend(&second_cfg, &[])?.wait_with_output().await?;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("another process is serving"), "{stderr}");
    assert_eq!(
        t.verify_unix(&token).await?.status,
        200,
        "first one unharmed"
    );

    let status = t.terminate().await?;
    assert!(status.success(), "exit {status}");
    assert!(!sock.exists(), "socket removed on clean shutdown");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_loses_no_request_in_flight() -> R {
    let p = Provider::start().await?;
    let mut t = Tokend::start(&TokendConfig::for_provider(&p)).await?;
    t.wait_ready().await?;
    let token = p.login("alice").await?.access_token;
    let body = json!({"token": token}).to_string();
    let addr = t.http_addr.clone().unwrap_or_default();
    let socket = t.socket.clone().unwrap_or_default();

    // Load: clients verifying in a loop on both listeners until tokend goes away. Every HTTP
    // answer they get must be a 200; after shutdown begins their connects are refused. A
    // refused connect is told from a broken one (issue #8: both once counted as "refused"):
    // a connection closed after part of an answer fails the test, and one closed before any
    // answer — the race of a request arriving as graceful shutdown closes idle connections —
    // may happen at most once per client, at the moment of the shutdown.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Answers so far, so the signal waits for the load to be running (on a loaded 2-core
    // machine a fixed sleep did not always see 20 answers).
    let answers = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let mut load = tokio::task::JoinSet::new();
    for i in 0..6 {
        let (stop, token, addr, socket, answers) = (
            stop.clone(),
            token.clone(),
            addr.clone(),
            socket.clone(),
            answers.clone(),
        );
        load.spawn(async move {
            let client = reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .build()?;
            let (mut answered, mut unanswered) = (0u32, 0u32);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let outcome = if i % 2 == 0 {
                    match client
                        .post(format!("http://{addr}/v1/verify"))
                        .json(&json!({"token": token}))
                        .send()
                        .await
                    {
                        Ok(r) => Outcome::Answered(r.status().as_u16()),
                        Err(e) if e.is_connect() => Outcome::Refused,
                        Err(e) => Outcome::classify(&e),
                    }
                } else {
                    match tokend_e2e::unix_request(
                        &socket,
                        "POST",
                        "/v1/verify",
                        &[],
                        Some(json!({"token": token}).to_string()),
                    )
                    .await
                    {
                        Ok(a) => Outcome::Answered(a.status),
                        Err(e) if e.downcast_ref::<std::io::Error>().is_some() => Outcome::Refused,
                        Err(e) => Outcome::classify(e.as_ref()),
                    }
                };
                match outcome {
                    Outcome::Answered(s) => {
                        anyhow::ensure!(s == 200, "a request under load answered {s}");
                        answered += 1;
                        answers.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    Outcome::Unanswered => unanswered += 1,
                    Outcome::Broken(e) => anyhow::bail!("a connection broke mid-answer: {e}"),
                    Outcome::Refused => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
            anyhow::ensure!(unanswered <= 1, "{unanswered} requests closed unanswered");
            anyhow::Ok(answered)
        });
    }

    // Requests in flight: 40 connections with headers and half the body sent.
    let mut in_flight = Vec::new();
    for _ in 0..40 {
        let mut conn = std::net::TcpStream::connect(&addr)?;
        conn.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(
            conn,
            "POST /v1/verify HTTP/1.1\r\nHost: tokend\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )?;
        conn.write_all(&body.as_bytes()[..body.len() / 2])?;
        in_flight.push(conn);
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while answers.load(std::sync::atomic::Ordering::Relaxed) <= 20 {
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "the load got no 20 answers in 60 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    t.signal("TERM")?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    // No new connections once shutdown began…
    assert!(
        std::net::TcpStream::connect(&addr).is_err(),
        "still accepting"
    );
    // …but every request in flight completes.
    for conn in &mut in_flight {
        conn.write_all(&body.as_bytes()[body.len() / 2..])?;
    }
    for mut conn in in_flight {
        let mut response = String::new();
        let _ = conn.read_to_string(&mut response);
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        assert!(response.contains("\"active\":true"));
    }
    let status = t.terminate_wait().await?;
    assert!(status.success(), "exit {status}");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut answered = 0;
    while let Some(r) = load.join_next().await {
        answered += r??;
    }
    assert!(answered > 20, "the load ran ({answered} answers)");
    t.output.assert_free_of(&[&token]);
    Ok(())
}

/// How one request of the load went.
enum Outcome {
    Answered(u16),
    /// The connect was refused: tokend no longer accepts.
    Refused,
    /// Connected, but closed or reset before any answer (a connection still in the kernel's
    /// backlog, or not yet read, when the listener closed).
    Unanswered,
    /// Anything else: a connection cut mid-way.
    Broken(String),
}

impl Outcome {
    fn classify(e: &(dyn std::error::Error + 'static)) -> Self {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
        while let Some(err) = source {
            // A reset, or a broken pipe while the request was still being written: the
            // connection was closed before tokend read the request, so nothing was lost.
            let reset = err.downcast_ref::<std::io::Error>().is_some_and(|io| {
                matches!(
                    io.kind(),
                    std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
                )
            });
            let closed = err
                .downcast_ref::<hyper::Error>()
                .is_some_and(hyper::Error::is_incomplete_message);
            if reset || closed {
                return Outcome::Unanswered;
            }
            source = err.source();
        }
        Outcome::Broken(format!("{e:?}"))
    }
}
