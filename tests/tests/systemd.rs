//! Issue #4, systemd: the unit files pass `systemd-analyze verify` and hold the README's
//! exposure score (0.9, with a 0.1 margin) in `systemd-analyze security`; tokend's sd_notify messages (READY, STATUS, WATCHDOG,
//! RELOADING around reloads, STOPPING) arrive on a test NOTIFY_SOCKET in the right order;
//! socket activation through `systemd-socket-activate` serves both sockets.
//!
//! No OIDC provider is needed: tokend runs in HS256 mode (the client secret is the key, so it
//! is ready at once) with its issuer on a closed port. The systemd tools come from the Debian
//! package `systemd` (`tests/run` installs it when run as root); without them, and not root,
//! these tests skip loudly (and under CI a skip fails).

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokend_e2e::{
    Tokend, TokendConfig, free_port, is_root, tokend_bin, unix_request, workspace_root,
};

type R = anyhow::Result<()>;

const SECRET: &str = "systemd-test-client-secret-0123456789";

/// The tool's path, or `None` (after a loud SKIP line) when it is absent and we are not root.
/// As root (CI), `tests/run` installs it, so absence is a failure.
fn tool(name: &str, test: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        assert!(
            !is_root(),
            "{name} is missing (Debian package `systemd`; `bash tests/run` installs it as root)"
        );
        tokend_e2e::skip(
            test,
            &format!("{name} not found (install the Debian package `systemd`)"),
        );
    }
    found
}

/// Copies of the unit files with ExecStart= pointing at the binary under test, because
/// `systemd-analyze verify` checks that the ExecStart binary exists. Nothing else changes.
fn units_for_analysis() -> anyhow::Result<tempfile::TempDir> {
    let dir = tempfile::tempdir()?;
    let units = workspace_root().join("systemd");
    let service = std::fs::read_to_string(units.join("tokend.service"))?;
    assert!(
        service.contains("ExecStart=/usr/local/bin/tokend "),
        "the installed path is /usr/local/bin/tokend"
    );
    let bin = tokend_bin().to_str().context("binary path is UTF-8")?;
    std::fs::write(
        dir.path().join("tokend.service"),
        service.replace(
            "ExecStart=/usr/local/bin/tokend ",
            &format!("ExecStart={bin} "),
        ),
    )?;
    for socket in ["tokend.socket", "tokend-admin.socket"] {
        std::fs::copy(units.join(socket), dir.path().join(socket))?;
    }
    Ok(dir)
}

#[test]
fn units_pass_systemd_analyze_verify() -> R {
    let Some(analyze) = tool("systemd-analyze", "units_pass_systemd_analyze_verify") else {
        return Ok(());
    };
    let dir = units_for_analysis()?;
    let out = std::process::Command::new(analyze)
        .arg("verify")
        .arg(dir.path().join("tokend.service"))
        .arg(dir.path().join("tokend.socket"))
        .arg(dir.path().join("tokend-admin.socket"))
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("systemd-analyze verify: {}\n{stderr}", out.status);
    assert!(out.status.success(), "verify failed:\n{stderr}");
    // verify also loads unrelated units of the host; only complaints about ours count.
    let ours: Vec<&str> = stderr.lines().filter(|l| l.contains("tokend")).collect();
    assert!(
        ours.is_empty(),
        "verify complains about our units:\n{stderr}"
    );
    Ok(())
}

#[test]
fn service_exposure_score_holds_the_documented_0_9() -> R {
    let Some(analyze) = tool(
        "systemd-analyze",
        "service_exposure_score_holds_the_documented_0_9",
    ) else {
        return Ok(());
    };
    let dir = units_for_analysis()?;
    let out = std::process::Command::new(analyze)
        .args(["security", "--offline=true", "--no-pager"])
        .arg(dir.path().join("tokend.service"))
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stdout
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .with_context(|| format!("no exposure level in:\n{stdout}\n{stderr}"))?;
    let score: f64 = line
        .split(':')
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("no score in {line:?}"))?;
    // For CI's log (nextest shows this test's output; see .config/nextest.toml): what still
    // counts against the unit, and the score — straight to stderr, past libtest's capture.
    let exposed: Vec<&str> = stdout.lines().filter(|l| l.starts_with('✗')).collect();
    println!("{}", exposed.join("\n"));
    let _ = writeln!(
        std::io::stderr(),
        "systemd-analyze security --offline=true: tokend.service exposure {score} (limit 1.0)"
    );
    // The README documents 0.9 (issue #8: the limit was 2.0, so a regression to 1.9 passed).
    assert!(
        score <= 1.0,
        "exposure {score} > 1.0 (documented: 0.9):\n{stdout}"
    );
    Ok(())
}

/// A test NOTIFY_SOCKET: a datagram socket in a temporary directory whose messages a thread
/// collects with their arrival times.
struct NotifySocket {
    _dir: tempfile::TempDir,
    path: PathBuf,
    messages: Arc<Mutex<Vec<(Instant, String)>>>,
    stop: Arc<AtomicBool>,
}

impl NotifySocket {
    fn bind() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("notify.sock");
        let sock = UnixDatagram::bind(&path)?;
        sock.set_read_timeout(Some(Duration::from_millis(50)))?;
        let messages = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (m, s) = (messages.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            while !s.load(Ordering::SeqCst) {
                if let Ok(n) = sock.recv(&mut buf) {
                    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                    if let Ok(mut v) = m.lock() {
                        v.push((Instant::now(), text));
                    }
                }
            }
        });
        Ok(Self {
            _dir: dir,
            path,
            messages,
            stop,
        })
    }

    fn env(&self) -> (String, String) {
        (
            "NOTIFY_SOCKET".into(),
            self.path.to_string_lossy().into_owned(),
        )
    }

    fn messages(&self) -> Vec<(Instant, String)> {
        self.messages.lock().map(|v| v.clone()).unwrap_or_default()
    }

    fn texts(&self) -> Vec<String> {
        self.messages().into_iter().map(|(_, m)| m).collect()
    }

    /// Waits (at most `limit`) until `pred` holds for the messages received so far.
    async fn wait_for(
        &self,
        what: &str,
        limit: Duration,
        pred: impl Fn(&[String]) -> bool,
    ) -> anyhow::Result<()> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if pred(&self.texts()) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        bail!(
            "{what} not received within {limit:?}; got {:?}",
            self.texts()
        )
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn has(messages: &[String], line: &str) -> bool {
    messages.iter().any(|m| m.lines().any(|l| l == line))
}

fn position(messages: &[String], line: &str) -> Option<usize> {
    messages.iter().position(|m| m.lines().any(|l| l == line))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sd_notify_ready_status_watchdog_stopping_in_order() -> R {
    let notify = NotifySocket::bind()?;
    let mut cfg = TokendConfig::hs256(SECRET);
    cfg.env = vec![notify.env(), ("WATCHDOG_USEC".into(), "200000".into())];
    let mut t = Tokend::start(&cfg).await?;

    notify
        .wait_for("READY=1", Duration::from_secs(10), |m| has(m, "READY=1"))
        .await?;
    // READY=1 goes out once the keys are loaded, so /readyz already agrees.
    let readyz = t.get("/readyz", &[]).await?;
    assert_eq!(readyz.status, 200, "{:?}", readyz.body);
    let texts = notify.texts();
    let ready = &texts[position(&texts, "READY=1").context("READY=1")?];
    assert!(
        ready.contains("STATUS=ready; keys: 1") && ready.contains("; sessions: 0"),
        "READY=1 carries the status (keys, sessions): {ready:?}"
    );

    // WATCHDOG_USEC=200000: a ping about every 100 ms.
    notify
        .wait_for("5 WATCHDOG=1", Duration::from_secs(5), |m| {
            m.iter().filter(|x| x.as_str() == "WATCHDOG=1\n").count() >= 5
        })
        .await?;
    let pings: Vec<Instant> = notify
        .messages()
        .into_iter()
        .filter(|(_, m)| m == "WATCHDOG=1\n")
        .map(|(at, _)| at)
        .collect();
    let mut gaps: Vec<Duration> = pings.windows(2).map(|w| w[1] - w[0]).collect();
    gaps.sort();
    let median = gaps[gaps.len() / 2];
    assert!(
        median >= Duration::from_millis(50) && median < Duration::from_millis(200),
        "watchdog pings every {median:?}, expected about 100ms (half of WATCHDOG_USEC)"
    );

    let status = t.terminate().await?;
    assert!(status.success(), "{status}");
    notify
        .wait_for("STOPPING=1", Duration::from_secs(5), |m| {
            has(m, "STOPPING=1")
        })
        .await?;
    let texts = notify.texts();
    let ready_at = position(&texts, "READY=1").context("READY=1")?;
    let stopping_at = position(&texts, "STOPPING=1").context("STOPPING=1")?;
    assert!(ready_at < stopping_at, "{texts:?}");
    let first_ping = position(&texts, "WATCHDOG=1").context("WATCHDOG=1")?;
    assert!(first_ping < stopping_at, "{texts:?}");
    assert_eq!(
        texts.iter().filter(|m| m.contains("READY=1")).count(),
        1,
        "READY=1 exactly once: {texts:?}"
    );
    assert!(
        texts[stopping_at].contains("STATUS=stopping"),
        "{:?}",
        texts[stopping_at]
    );
    t.output.assert_free_of(&[SECRET]);
    for m in &texts {
        assert!(
            !m.contains(SECRET),
            "a notification carries the secret: {m:?}"
        );
    }
    Ok(())
}

/// Issue #8: `systemctl status` shows a `STATUS=` line refreshed every 10 s, with nothing
/// happening in between (no reload, no request).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_8_status_is_refreshed_every_10_seconds() -> R {
    let notify = NotifySocket::bind()?;
    let mut cfg = TokendConfig::hs256(SECRET);
    cfg.env = vec![notify.env()];
    let t = Tokend::start(&cfg).await?;
    notify
        .wait_for("READY=1", Duration::from_secs(10), |m| has(m, "READY=1"))
        .await?;
    let ready_at = notify
        .messages()
        .iter()
        .find(|(_, x)| x.contains("READY=1"))
        .map(|(at, _)| *at)
        .context("READY=1")?;
    // Refreshes: messages that are a STATUS= line alone, from 1 s after READY=1 (one may
    // follow READY=1 at once).
    let refreshes = || -> Vec<(Instant, String)> {
        notify
            .messages()
            .into_iter()
            .filter(|(at, x)| {
                *at >= ready_at + Duration::from_secs(1)
                    && x.starts_with("STATUS=")
                    && x.lines().count() == 1
            })
            .collect()
    };
    notify
        .wait_for("two STATUS= refreshes", Duration::from_secs(30), |_| {
            refreshes().len() >= 2
        })
        .await?;
    let got = refreshes();
    let mut last = ready_at;
    for (at, text) in &got[..2] {
        let gap = *at - last;
        assert!(
            gap >= Duration::from_secs(9) && gap < Duration::from_secs(13),
            "STATUS= refreshed after {gap:?}, expected every 10 s: {got:?}"
        );
        assert!(
            text.starts_with("STATUS=ready; keys: 1") && text.contains("; sessions: 0"),
            "{text:?}"
        );
        last = *at;
    }
    // Refreshed, not repeated: the keys' age moved on.
    assert_ne!(got[0].1, got[1].1, "{got:?}");
    t.output.assert_free_of(&[SECRET]);
    Ok(())
}

/// `MONOTONIC_USEC=` of a `RELOADING=1` message.
fn monotonic_usec(message: &str) -> Option<u64> {
    message
        .lines()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_are_bracketed_by_reloading_and_ready() -> R {
    let notify = NotifySocket::bind()?;
    let mut cfg = TokendConfig::hs256(SECRET);
    cfg.env = vec![notify.env()];
    let mut t = Tokend::start(&cfg).await?;
    notify
        .wait_for("READY=1", Duration::from_secs(10), |m| has(m, "READY=1"))
        .await?;
    let count =
        |m: &[String], line: &str| m.iter().filter(|x| x.lines().any(|l| l == line)).count();

    // SIGHUP (ExecReload=): a reload of the unchanged file.
    t.signal("HUP")?;
    notify
        .wait_for("RELOADING=1 then READY=1", Duration::from_secs(10), |m| {
            count(m, "RELOADING=1") == 1 && count(m, "READY=1") == 2
        })
        .await?;

    // An invalid file (seen by the watcher): rejected, the old configuration stays in force,
    // and systemd still hears READY=1, or it would wait for the reload until it times out.
    t.replace_config("[listen\nthis is not TOML")?;
    notify
        .wait_for(
            "a second RELOADING=1 then READY=1",
            Duration::from_secs(10),
            |m| count(m, "RELOADING=1") == 2 && count(m, "READY=1") == 3,
        )
        .await?;
    assert_eq!(t.get("/readyz", &[]).await?.status, 200);
    assert!(
        t.output.text().contains("configuration reload failed"),
        "{}",
        t.output.text()
    );

    let texts = notify.texts();
    let states: Vec<&str> = texts
        .iter()
        .filter_map(|m| m.lines().find(|l| *l == "READY=1" || *l == "RELOADING=1"))
        .collect();
    assert_eq!(
        states,
        [
            "READY=1",
            "RELOADING=1",
            "READY=1",
            "RELOADING=1",
            "READY=1"
        ],
        "{texts:?}"
    );
    let stamps: Vec<u64> = texts
        .iter()
        .filter(|m| m.starts_with("RELOADING=1\n"))
        .map(|m| monotonic_usec(m).with_context(|| format!("MONOTONIC_USEC in {m:?}")))
        .collect::<anyhow::Result<_>>()?;
    assert!(
        stamps[0] > 0 && stamps[0] < stamps[1],
        "MONOTONIC_USEC rises: {stamps:?}"
    );
    assert!(t.terminate().await?.success());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_ready_before_keys_are_loaded() -> R {
    let notify = NotifySocket::bind()?;
    // Not HS256: keys must come from the provider, which is not there, and there is no cache.
    let mut cfg = TokendConfig::hs256(SECRET);
    cfg.algorithms = None;
    cfg.env = vec![notify.env(), ("WATCHDOG_USEC".into(), "200000".into())];
    let mut t = Tokend::start(&cfg).await?;

    notify
        .wait_for("a waiting STATUS=", Duration::from_secs(5), |m| {
            m.iter()
                .any(|x| x.starts_with("STATUS=waiting for verification keys"))
        })
        .await?;
    // Still alive and pinging while it waits.
    notify
        .wait_for("WATCHDOG=1", Duration::from_secs(5), |m| {
            has(m, "WATCHDOG=1")
        })
        .await?;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(t.get("/readyz", &[]).await?.status, 503);
    assert!(!has(&notify.texts(), "READY=1"), "{:?}", notify.texts());

    assert!(t.terminate().await?.success());
    notify
        .wait_for("STOPPING=1", Duration::from_secs(5), |m| {
            has(m, "STOPPING=1")
        })
        .await?;
    assert!(!has(&notify.texts(), "READY=1"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchdog_meant_for_another_pid_is_not_fed() -> R {
    let notify = NotifySocket::bind()?;
    let mut cfg = TokendConfig::hs256(SECRET);
    cfg.env = vec![
        notify.env(),
        ("WATCHDOG_USEC".into(), "200000".into()),
        ("WATCHDOG_PID".into(), "1".into()),
    ];
    let mut t = Tokend::start(&cfg).await?;
    notify
        .wait_for("READY=1", Duration::from_secs(10), |m| has(m, "READY=1"))
        .await?;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(!has(&notify.texts(), "WATCHDOG=1"), "{:?}", notify.texts());
    assert!(t.terminate().await?.success());
    Ok(())
}

fn mode(path: &Path) -> anyhow::Result<u32> {
    Ok(std::fs::metadata(path)?.permissions().mode() & 0o777)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_activation_serves_both_passed_sockets() -> R {
    let Some(activate) = tool(
        "systemd-socket-activate",
        "socket_activation_serves_both_passed_sockets",
    ) else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let sock = dir.path().join("activated.sock");
    let port = free_port()?;
    let mut cfg = TokendConfig::hs256(SECRET);
    cfg.socket_path = Some(sock.clone());
    // Were tokend to bind the socket itself, it would get this mode; a passed one is left alone.
    cfg.listen_extra = "socket_mode = \"0600\"\n".into();
    cfg.launcher = vec![
        activate.to_string_lossy().into_owned(),
        "-l".into(),
        sock.to_string_lossy().into_owned(),
        "-l".into(),
        format!("127.0.0.1:{port}"),
        "--fdname=unix:http".into(),
    ];
    let mut t = Tokend::spawn_in(&cfg, dir)?;

    // systemd-socket-activate binds, then starts tokend on the first connection: this request
    // waits in the backlog and is answered by tokend once it has adopted the socket.
    for _ in 0..100 {
        if sock.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let first = tokio::time::timeout(
        Duration::from_secs(20),
        unix_request(&sock, "GET", "/readyz", &[], None),
    )
    .await
    .context("the first request over the passed Unix socket timed out")??;
    assert_eq!(first.status, 200, "{:?}\n{}", first.body, t.output.text());

    t.wait_listening().await?;
    assert_eq!(t.http_addr.as_deref(), Some(&*format!("127.0.0.1:{port}")));
    let over_tcp = t.get("/readyz", &[]).await?;
    assert_eq!(over_tcp.status, 200, "{:?}", over_tcp.body);
    assert_eq!(t.unix("GET", "/readyz", &[], None).await?.status, 200);

    let log = t.output.text();
    assert!(
        log.contains("socket activation: adopting the sockets systemd passed"),
        "{log}"
    );
    assert!(
        log.contains(&format!("listener=unix:{}", sock.display())) && log.contains("fd_name=unix"),
        "{log}"
    );
    assert!(log.contains("fd_name=http"), "{log}");
    assert_ne!(mode(&sock)?, 0o600, "a passed socket is not chmod'ed");

    assert!(t.terminate().await?.success());
    assert!(
        sock.exists(),
        "a passed socket's file belongs to systemd and stays"
    );
    t.output.assert_free_of(&[SECRET]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_activation_unnamed_by_type_and_the_rest_bound_as_configured() -> R {
    let Some(activate) = tool(
        "systemd-socket-activate",
        "socket_activation_unnamed_by_type_and_the_rest_bound_as_configured",
    ) else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let sock = dir.path().join("own.sock");
    let port = free_port()?;
    let mut cfg = TokendConfig::hs256(SECRET);
    cfg.socket_path = Some(sock.clone());
    cfg.listen_extra = "socket_mode = \"0600\"\n".into();
    // Only the TCP address is passed, without a name (as from a socket unit without
    // FileDescriptorName=): tokend tells it by type and binds the Unix socket itself.
    cfg.launcher = vec![
        activate.to_string_lossy().into_owned(),
        "-l".into(),
        format!("127.0.0.1:{port}"),
    ];
    let mut t = Tokend::spawn_in(&cfg, dir)?;
    let url = format!("http://127.0.0.1:{port}/readyz");
    let first = tokio::time::timeout(Duration::from_secs(20), reqwest::get(&url))
        .await
        .context("the first request over the passed TCP socket timed out")??;
    assert_eq!(first.status(), 200);

    t.wait_listening().await?;
    assert_eq!(t.unix("GET", "/readyz", &[], None).await?.status, 200);
    assert_eq!(
        mode(&sock)?,
        0o600,
        "our own socket gets the configured mode"
    );
    let log = t.output.text();
    assert!(log.contains("unix=0 tcp=1"), "{log}");
    assert!(t.terminate().await?.success());
    assert!(!sock.exists(), "tokend removes the socket file it made");
    Ok(())
}

/// The `Environment=` lines of `systemd/tokend.service`, as systemd passes them.
fn unit_environment() -> anyhow::Result<Vec<(String, String)>> {
    let unit = std::fs::read_to_string(workspace_root().join("systemd/tokend.service"))?;
    Ok(unit
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Environment="))
        .flat_map(str::split_whitespace)
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect())
}

/// glibc's per-thread malloc arenas in `pid`'s memory map: each is a 64 MiB-aligned
/// reservation of 64 MiB (an `rw-p` part in use, the rest `---p`), anonymous; the main arena
/// is the `[heap]` and is not counted.
fn thread_arenas(pid: u32) -> anyhow::Result<usize> {
    const HEAP_MAX: u64 = 64 << 20;
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps"))?;
    let regions: Vec<(u64, u64, &str, bool)> = maps
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (range, perms) = (f.next()?, f.next()?);
            let anonymous = f.nth(3).is_none();
            let (a, b) = range.split_once('-')?;
            Some((
                u64::from_str_radix(a, 16).ok()?,
                u64::from_str_radix(b, 16).ok()?,
                perms,
                anonymous,
            ))
        })
        .collect();
    Ok(regions
        .windows(2)
        .filter(|w| {
            let ((start, end, perms, anon), (next_start, next_end, next_perms, next_anon)) =
                (w[0], w[1]);
            anon && next_anon
                && start % HEAP_MAX == 0
                && perms == "rw-p"
                && next_perms == "---p"
                && next_start == end
                && next_end == start + HEAP_MAX
        })
        .count())
}

/// Issue #14: the unit runs tokend with one malloc arena (`MALLOC_ARENA_MAX=1`): the 30-minute
/// soak's RSS grew with glibc's per-thread arenas while the verified-token cache churned, and
/// stayed flat with one. Started with the unit's environment, tokend's threads allocate from
/// the main heap only; started without it (the check can fail), its worker threads have
/// arenas of their own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_14_the_unit_runs_tokend_with_one_malloc_arena() -> R {
    let env = unit_environment()?;
    assert!(
        env.contains(&("MALLOC_ARENA_MAX".into(), "1".into())),
        "tokend.service sets MALLOC_ARENA_MAX=1: {env:?}"
    );
    let mut arenas = Vec::new();
    for env in [env, Vec::new()] {
        let mut cfg = TokendConfig::hs256(SECRET);
        cfg.env = env;
        let mut t = Tokend::start(&cfg).await?;
        t.wait_ready().await?;
        // Requests on both listeners: they are served on the runtime's worker threads, never
        // on the main thread (whose allocations the main arena serves either way).
        for i in 0..32 {
            let a = if i % 2 == 0 {
                t.verify("not.a.token").await?
            } else {
                t.verify_unix("not.a.token").await?
            };
            assert_eq!(a.status, 401);
        }
        arenas.push(thread_arenas(t.pid().context("pid")?)?);
        t.terminate().await?;
    }
    assert_eq!(arenas[0], 0, "with the unit's environment: no thread arena");
    assert!(
        arenas[1] >= 1,
        "without it, glibc gives threads arenas of their own (else this test proves nothing)"
    );
    Ok(())
}
