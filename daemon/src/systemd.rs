//! systemd integration: `sd_notify(3)` messages to the service manager — `READY=1` once
//! verification keys are loaded, periodic `STATUS=` lines, `RELOADING=1`/`READY=1` around
//! reloads, `STOPPING=1` on shutdown and `WATCHDOG=1` keep-alive pings. Everything is a no-op
//! when `NOTIFY_SOCKET` is unset (tokend not started by systemd with `Type=notify`).
//!
//! The protocol is one datagram of `KEY=value` lines to the Unix socket named by
//! `NOTIFY_SOCKET` (a path, or `@name` in the abstract namespace). It is small enough to speak
//! directly on a `UnixDatagram`: the `sd-notify` crate connects to `NOTIFY_SOCKET` as a file
//! path only (no abstract names) and re-reads the environment on every call.

use std::fmt;
use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokend_shared::Readiness;
use tokio::sync::{Notify, watch};

/// How often the `STATUS=` line is refreshed.
const STATUS_INTERVAL: Duration = Duration::from_secs(10);
/// How often readiness is polled until the first keys are loaded.
const READY_POLL: Duration = Duration::from_millis(100);
/// Longest a notification may block when the manager's queue is full. Messages are tiny and
/// rare; this only bounds the pathological case, it never delays the usual one.
const SEND_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum SystemdError {
    #[error(
        "NOTIFY_SOCKET={0:?}: unsupported address (an absolute path or an @abstract name is needed)"
    )]
    UnsupportedAddress(String),
    #[error("NOTIFY_SOCKET={addr:?}: {source}")]
    Socket { addr: String, source: io::Error },
    #[error("WATCHDOG_USEC={0:?}: not a positive number of microseconds")]
    WatchdogUsec(String),
    #[error("reading CLOCK_MONOTONIC: {0}")]
    Clock(#[from] nix::Error),
}

/// A cheap, cloneable handle for telling the service manager how tokend is doing.
/// A disabled one (no `NOTIFY_SOCKET`) does nothing.
#[derive(Clone, Default)]
pub struct Notifier {
    /// `None` when there is no service manager to talk to.
    inner: Option<Arc<Inner>>,
}

struct Inner {
    /// Unbound datagram socket the messages are sent from.
    socket: UnixDatagram,
    /// The manager's notification socket (`NOTIFY_SOCKET`).
    addr: SocketAddr,
    /// `NOTIFY_SOCKET` as given, for logs.
    addr_text: String,
    /// Half of `WATCHDOG_USEC`, when the manager expects keep-alive pings from this process.
    watchdog_interval: Option<Duration>,
    /// Whether the first `READY=1` went out. systemd only honours `RELOADING=1` in the running
    /// state, and a `READY=1` after a reload must not announce readiness before the keys do.
    ready_sent: AtomicBool,
    /// Extra `name: value` parts of the `STATUS=` line, registered by other subsystems (e.g.
    /// the session store's "sessions: N").
    status_fields: Mutex<Vec<StatusField>>,
    /// Wakes the status task so the `STATUS=` line is refreshed at once (e.g. after a reload).
    refresh_status: Notify,
}

/// A named part of the `STATUS=` line and how to compute its current value.
type StatusField = (&'static str, Box<dyn Fn() -> String + Send + Sync>);

impl fmt::Debug for Notifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner {
            None => f.write_str("Notifier(disabled)"),
            Some(i) => f
                .debug_struct("Notifier")
                .field("notify_socket", &i.addr_text)
                .field("watchdog_interval", &i.watchdog_interval)
                .finish_non_exhaustive(),
        }
    }
}

impl Notifier {
    /// A notifier that does nothing.
    pub fn disabled() -> Self {
        Self::default()
    }

    /// Reads `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID`. Problems are logged and leave
    /// the notifier (or just the watchdog) disabled: they must not stop the daemon.
    pub fn from_env() -> Self {
        let var = |k| std::env::var(k).ok();
        match Self::new(
            var("NOTIFY_SOCKET").as_deref(),
            var("WATCHDOG_USEC").as_deref(),
            var("WATCHDOG_PID").as_deref(),
        ) {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "not notifying the service manager");
                Self::disabled()
            }
        }
    }

    /// A notifier for the given `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID` values.
    pub fn new(
        notify_socket: Option<&str>,
        watchdog_usec: Option<&str>,
        watchdog_pid: Option<&str>,
    ) -> Result<Self, SystemdError> {
        let Some(addr_text) = notify_socket.filter(|s| !s.is_empty()) else {
            return Ok(Self::disabled());
        };
        let addr = parse_address(addr_text)?;
        let socket_err = |source| SystemdError::Socket {
            addr: addr_text.to_string(),
            source,
        };
        let socket = UnixDatagram::unbound().map_err(socket_err)?;
        socket
            .set_write_timeout(Some(SEND_TIMEOUT))
            .map_err(socket_err)?;
        let watchdog_interval = match watchdog_interval(watchdog_usec, watchdog_pid) {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(error = %e, "watchdog disabled");
                None
            }
        };
        Ok(Self {
            inner: Some(Arc::new(Inner {
                socket,
                addr,
                addr_text: addr_text.to_string(),
                watchdog_interval,
                ready_sent: AtomicBool::new(false),
                status_fields: Mutex::new(Vec::new()),
                refresh_status: Notify::new(),
            })),
        })
    }

    /// Whether there is a service manager to talk to.
    pub fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// How often to send `WATCHDOG=1` (half of `WATCHDOG_USEC`), when the manager wants it.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.inner.as_ref().and_then(|i| i.watchdog_interval)
    }

    /// Adds a `name: value` part to every later `STATUS=` line; `value` is called each time.
    pub fn add_status_field(
        &self,
        name: &'static str,
        value: impl Fn() -> String + Send + Sync + 'static,
    ) {
        if let Some(i) = &self.inner {
            lock(&i.status_fields).push((name, Box::new(value)));
            i.refresh_status.notify_one();
        }
    }

    /// Startup is complete: `READY=1`, with the current status.
    pub fn ready(&self, status: &str) {
        if let Some(i) = &self.inner {
            self.send(&format!("READY=1\nSTATUS={}\n", one_line(status)));
            i.ready_sent.store(true, Ordering::SeqCst);
        }
    }

    /// A free-form status line (shown by `systemctl status`).
    pub fn status(&self, status: &str) {
        self.send(&format!("STATUS={}\n", one_line(status)));
    }

    /// A reload begins: `RELOADING=1` with `MONOTONIC_USEC` (systemd ≥ 253 requires it for
    /// `Type=notify-reload`, older ones ignore it). Call [`Notifier::reloaded`] afterwards
    /// whether the reload succeeded or not, or systemd waits for it until it times out.
    /// Before the first `READY=1` this does nothing: systemd would not be in a state to reload.
    pub fn reloading(&self) {
        if !self.ready_sent() {
            return;
        }
        match monotonic_usec() {
            Ok(usec) => self.send(&reloading_message(usec)),
            Err(e) => {
                tracing::warn!(error = %e, "cannot tell the service manager about the reload");
            }
        }
    }

    /// The reload is over (applied or rejected): `READY=1` again, then a fresh `STATUS=`.
    pub fn reloaded(&self) {
        if let Some(i) = &self.inner
            && self.ready_sent()
        {
            self.send("READY=1\n");
            i.refresh_status.notify_one();
        }
    }

    /// Shutdown begins: `STOPPING=1`.
    pub fn stopping(&self) {
        self.send("STOPPING=1\nSTATUS=stopping: finishing requests in flight\n");
    }

    /// A keep-alive ping: `WATCHDOG=1`.
    pub fn watchdog(&self) {
        self.send("WATCHDOG=1\n");
    }

    fn ready_sent(&self) -> bool {
        self.inner
            .as_ref()
            .is_some_and(|i| i.ready_sent.load(Ordering::SeqCst))
    }

    /// The `STATUS=` text for `readiness` plus the registered fields.
    pub fn status_line(&self, readiness: &Readiness) -> String {
        let mut line = readiness_status(readiness);
        if let Some(i) = &self.inner {
            for (name, value) in lock(&i.status_fields).iter() {
                line += &format!("; {name}: {}", value());
            }
        }
        line
    }

    fn send(&self, message: &str) {
        let Some(i) = &self.inner else { return };
        if let Err(e) = i.socket.send_to_addr(message.as_bytes(), &i.addr) {
            let what = message.lines().next().unwrap_or_default();
            tracing::warn!(
                notify_socket = %i.addr_text,
                message = what,
                error = %e,
                "cannot notify the service manager"
            );
        }
    }
}

/// Sends `READY=1` (and logs) when verification keys are first loaded — from the provider,
/// the disk cache, or the client secret in HS256 mode — then refreshes `STATUS=` periodically.
/// `readiness` is asked each time (a reload may replace the key cache).
pub async fn supervise(
    notifier: Notifier,
    readiness: impl Fn() -> Readiness + Send + 'static,
    mut stop: watch::Receiver<bool>,
) {
    let mut waiting_said = false;
    loop {
        let r = readiness();
        if r.ready {
            tracing::info!(keys = r.keys, "ready: verification keys loaded");
            notifier.ready(&notifier.status_line(&r));
            break;
        }
        if !waiting_said {
            notifier.status(&notifier.status_line(&r));
            waiting_said = true;
        }
        tokio::select! {
            _ = tokio::time::sleep(READY_POLL) => {}
            _ = stop.changed() => return,
        }
    }
    let Some(inner) = notifier.inner.clone() else {
        return;
    };
    let mut tick = tokio::time::interval(STATUS_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await; // the first tick is immediate; READY=1 just carried the status
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = inner.refresh_status.notified() => {}
            _ = stop.changed() => return,
        }
        notifier.status(&notifier.status_line(&readiness()));
    }
}

/// Sends `WATCHDOG=1` every half of `WATCHDOG_USEC`, as long as the runtime is responsive.
pub async fn watchdog(notifier: Notifier, mut stop: watch::Receiver<bool>) {
    let Some(interval) = notifier.watchdog_interval() else {
        return;
    };
    tracing::debug!(?interval, "sending watchdog pings");
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => notifier.watchdog(),
            _ = stop.changed() => return,
        }
    }
}

/// `NOTIFY_SOCKET` → socket address: an absolute path, or `@name` in the abstract namespace.
fn parse_address(s: &str) -> Result<SocketAddr, SystemdError> {
    let err = |source| SystemdError::Socket {
        addr: s.to_string(),
        source,
    };
    if s.starts_with('/') {
        return SocketAddr::from_pathname(s).map_err(err);
    }
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if let Some(name) = s.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        return SocketAddr::from_abstract_name(name.as_bytes()).map_err(err);
    }
    Err(SystemdError::UnsupportedAddress(s.to_string()))
}

/// Half of `WATCHDOG_USEC`, unless the watchdog is meant for another process (`WATCHDOG_PID`).
fn watchdog_interval(
    usec: Option<&str>,
    pid: Option<&str>,
) -> Result<Option<Duration>, SystemdError> {
    let Some(usec) = usec.filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    if let Some(pid) = pid.filter(|s| !s.is_empty())
        && pid.parse::<u32>().ok() != Some(std::process::id())
    {
        return Ok(None);
    }
    match usec.parse::<u64>() {
        Ok(n) if n > 0 => Ok(Some(Duration::from_micros(n) / 2)),
        _ => Err(SystemdError::WatchdogUsec(usec.to_string())),
    }
}

/// The readiness part of the `STATUS=` line.
fn readiness_status(r: &Readiness) -> String {
    if !r.ready {
        let reason = r.reason.as_deref().unwrap_or("no verification keys");
        return format!("waiting for verification keys: {reason}");
    }
    let mut s = format!("ready; keys: {}", r.keys);
    if let Some(age) = r.keys_age_seconds {
        s += &format!(
            "; jwks age: {}",
            humantime::format_duration(Duration::from_secs(age))
        );
    }
    s
}

fn reloading_message(monotonic_usec: u64) -> String {
    format!("RELOADING=1\nMONOTONIC_USEC={monotonic_usec}\nSTATUS=reloading configuration\n")
}

/// `CLOCK_MONOTONIC` in microseconds, as systemd expects in `MONOTONIC_USEC`.
fn monotonic_usec() -> Result<u64, SystemdError> {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)?;
    let sec = u64::try_from(t.tv_sec()).unwrap_or(0);
    let usec = u64::try_from(t.tv_nsec() / 1_000).unwrap_or(0);
    Ok(sec.saturating_mul(1_000_000).saturating_add(usec))
}

/// A newline inside a value would start another `KEY=value` assignment.
fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receiver() -> (tempfile::TempDir, UnixDatagram, String) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notify.sock");
        let sock = UnixDatagram::bind(&path).expect("bind");
        sock.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let path = path.to_str().expect("utf-8 path").to_string();
        (dir, sock, path)
    }

    fn recv(sock: &UnixDatagram) -> String {
        let mut buf = [0u8; 4096];
        let n = sock.recv(&mut buf).expect("a notification");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    fn ready_readiness() -> Readiness {
        Readiness {
            ready: true,
            reason: None,
            keys: 2,
            keys_age_seconds: Some(12),
            warning: None,
            store: None,
        }
    }

    #[test]
    fn disabled_without_notify_socket() {
        let n = Notifier::new(None, Some("200000"), None).expect("ok");
        assert!(!n.is_enabled());
        assert_eq!(n.watchdog_interval(), None);
        // All no-ops.
        n.ready("x");
        n.reloading();
        n.reloaded();
        n.stopping();
        assert!(
            !Notifier::new(Some(""), None, None)
                .expect("ok")
                .is_enabled()
        );
    }

    #[test]
    fn unsupported_address_is_refused() {
        assert!(matches!(
            Notifier::new(Some("vsock:2:1234"), None, None),
            Err(SystemdError::UnsupportedAddress(_))
        ));
    }

    #[test]
    fn watchdog_interval_is_half_and_respects_pid() {
        let own = std::process::id().to_string();
        assert_eq!(
            watchdog_interval(Some("200000"), None).expect("ok"),
            Some(Duration::from_millis(100))
        );
        assert_eq!(
            watchdog_interval(Some("30000000"), Some(&own)).expect("ok"),
            Some(Duration::from_secs(15))
        );
        assert_eq!(
            watchdog_interval(Some("200000"), Some("1")).expect("ok"),
            None
        );
        assert_eq!(watchdog_interval(None, None).expect("ok"), None);
        assert!(watchdog_interval(Some("0"), None).is_err());
        assert!(watchdog_interval(Some("soon"), None).is_err());
    }

    #[test]
    fn reload_messages_follow_ready_and_carry_monotonic_usec() {
        let (_dir, sock, path) = receiver();
        let n = Notifier::new(Some(&path), None, None).expect("notifier");
        // Before READY=1, reload notifications would make systemd think we are ready.
        n.reloading();
        n.reloaded();
        n.ready("ready; keys: 1");
        assert_eq!(recv(&sock), "READY=1\nSTATUS=ready; keys: 1\n");

        let before = monotonic_usec().expect("clock");
        n.clone().reloading();
        let after = monotonic_usec().expect("clock");
        let msg = recv(&sock);
        let lines: Vec<&str> = msg.lines().collect();
        assert_eq!(lines[0], "RELOADING=1", "{msg}");
        let usec: u64 = lines[1]
            .strip_prefix("MONOTONIC_USEC=")
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("MONOTONIC_USEC line: {msg}"));
        assert!(
            before <= usec && usec <= after,
            "{before} <= {usec} <= {after}"
        );
        assert_eq!(lines[2], "STATUS=reloading configuration");

        n.reloaded();
        assert_eq!(recv(&sock), "READY=1\n");
        n.stopping();
        assert!(recv(&sock).starts_with("STOPPING=1\n"));
        n.watchdog();
        assert_eq!(recv(&sock), "WATCHDOG=1\n");
    }

    #[test]
    fn abstract_socket_names() {
        let name = format!("tokend-test-{}", std::process::id());
        let addr = parse_address(&format!("@{name}")).expect("abstract address");
        let sock = UnixDatagram::bind_addr(&addr).expect("bind abstract");
        sock.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let n = Notifier::new(Some(&format!("@{name}")), None, None).expect("notifier");
        n.status("hello");
        assert_eq!(recv(&sock), "STATUS=hello\n");
    }

    #[test]
    fn status_line_has_keys_age_and_registered_fields() {
        let (_dir, _sock, path) = receiver();
        let n = Notifier::new(Some(&path), None, None).expect("notifier");
        assert_eq!(
            n.status_line(&ready_readiness()),
            "ready; keys: 2; jwks age: 12s"
        );
        n.add_status_field("sessions", || "5".to_string());
        assert_eq!(
            n.status_line(&ready_readiness()),
            "ready; keys: 2; jwks age: 12s; sessions: 5"
        );
        let waiting = Readiness {
            ready: false,
            reason: Some("no verification keys loaded yet".into()),
            keys: 0,
            keys_age_seconds: None,
            warning: None,
            store: None,
        };
        assert_eq!(
            n.status_line(&waiting),
            "waiting for verification keys: no verification keys loaded yet; sessions: 5"
        );
    }
}
