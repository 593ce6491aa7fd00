//! Issue #13, the admin socket under the shipped sandbox: systemd's `tokend-admin.socket`
//! passes `/run/tokend/tokend-admin.sock` (group `tokend-admin`, mode 0660, made by PID 1) as
//! the socket named `admin`, and `[admin] peer_check = "socket_permissions"` lets its group's
//! members in although `PrivateUsers=yes` shows them to tokend as `nobody`.
//!
//! Reproduced with real parts: `systemd-socket-activate -l … --fdname=admin` passes the socket
//! (chgrp/chmod'ed here as the socket unit would), and `unshare --user --map-root-user` runs
//! tokend in a user namespace that maps only root, as `PrivateUsers=` maps only root and the
//! service's user: every other peer's uid reaches tokend as 65534. Operators are other uids
//! (`setpriv --reuid/--regid/--groups`) running curl. Root only (setpriv, chown); otherwise a
//! loud SKIP, and under CI a skip fails.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use tokend_e2e::{Tokend, TokendConfig, is_root, skip};

type R = anyhow::Result<()>;

const SECRET: &str = "admin-socket-test-client-secret-0123456789";
/// The operators' group (`tokend-admin` in the package); numeric, so no group is created.
const ADMIN_GID: u32 = 61_300;
/// A member of it (by a supplementary group, as `adduser alice tokend-admin` makes one).
const MEMBER: u32 = 61_301;
/// Not a member.
const OTHER: u32 = 61_302;

/// The tools these tests need, or `None` after a loud SKIP when not root (as root — CI —
/// `tests/run` installs the Debian package `systemd`; util-linux is always there).
fn tools(test: &str) -> Option<(PathBuf, PathBuf)> {
    if !is_root() {
        skip(
            test,
            "needs root: connects as other uids (setpriv) and chgrps the socket",
        );
        return None;
    }
    let find = |name: &str| {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join(name))
                .find(|p| p.is_file())
        })
    };
    let activate = find("systemd-socket-activate")
        .expect("systemd-socket-activate (Debian package `systemd`; tests/run installs it)");
    let unshare = find("unshare").expect("unshare (util-linux)");
    Some((activate, unshare))
}

/// A tokend started by `systemd-socket-activate` with `admin` passed as the socket named
/// `admin`; inside a user namespace mapping only root when `private_users`. tokend binds the
/// apps' socket itself (it starts on the first connection to the admin socket).
fn spawn(
    admin_tail: &str,
    private_users: bool,
    activate: &Path,
    unshare: &Path,
) -> anyhow::Result<(Tokend, PathBuf)> {
    let dir = tempfile::tempdir()?;
    // The operators must reach the socket: /run/tokend is 0755.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
    let admin = dir.path().join("tokend-admin.sock");
    let mut cfg = TokendConfig::hs256(SECRET);
    cfg.http = false;
    cfg.tail = format!("\n[admin]\n{admin_tail}");
    cfg.launcher = vec![
        activate.to_string_lossy().into_owned(),
        "-l".into(),
        admin.to_string_lossy().into_owned(),
        "--fdname=admin".into(),
    ];
    if private_users {
        cfg.launcher.extend([
            unshare.to_string_lossy().into_owned(),
            "--user".into(),
            "--map-root-user".into(),
        ]);
    }
    let t = Tokend::spawn_in(&cfg, dir)?;
    Ok((t, admin))
}

/// Waits for `systemd-socket-activate` to bind `admin`, then gives it the group and mode
/// `tokend-admin.socket` gives it (`SocketGroup=`, `SocketMode=`).
async fn as_the_socket_unit(admin: &Path, mode: u32) -> R {
    for _ in 0..200 {
        if admin.exists() {
            std::os::unix::fs::chown(admin, None, Some(ADMIN_GID))?;
            std::fs::set_permissions(admin, std::fs::Permissions::from_mode(mode))?;
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("systemd-socket-activate did not bind {}", admin.display())
}

/// What curl saw, run as `uid`/`gid` with supplementary `groups`.
struct Seen {
    /// HTTP status; 0 when it could not connect.
    status: u16,
    body: String,
    /// curl's `-v` trace (the connect error is there).
    trace: String,
}

async fn curl_as(
    uid: u32,
    gid: u32,
    groups: &[u32],
    socket: &Path,
    path: &str,
) -> anyhow::Result<Seen> {
    let groups = if groups.is_empty() {
        "--clear-groups".to_string()
    } else {
        format!(
            "--groups={}",
            groups
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(",")
        )
    };
    let out = tokio::process::Command::new("setpriv")
        .args([
            &format!("--reuid={uid}"),
            &format!("--regid={gid}"),
            &groups,
            "curl",
            "-sv",
            "--max-time",
            "30",
            "-w",
            "\n%{http_code}",
            "--unix-socket",
        ])
        .arg(socket)
        .arg(format!("http://tokend{path}"))
        .output()
        .await
        .context("setpriv … curl")?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", ""));
    Ok(Seen {
        status: code.trim().parse().unwrap_or(0),
        body: body.to_string(),
        trace: String::from_utf8_lossy(&out.stderr).to_string(),
    })
}

/// The user namespace tokend runs in, as `/proc/<pid>/uid_map` shows it (whitespace
/// normalised): `0 0 1` under `unshare --map-root-user`.
fn uid_map(t: &Tokend) -> anyhow::Result<String> {
    let pid = t.pid().context("tokend's pid")?;
    let map = std::fs::read_to_string(format!("/proc/{pid}/uid_map"))?;
    Ok(map.split_whitespace().collect::<Vec<_>>().join(" "))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_13_group_members_use_the_admin_api_through_the_passed_socket_under_private_users()
-> R {
    let test =
        "issue_13_group_members_use_the_admin_api_through_the_passed_socket_under_private_users";
    let Some((activate, unshare)) = tools(test) else {
        return Ok(());
    };
    let (mut t, admin) = spawn(
        "peer_check = \"socket_permissions\"\n",
        true,
        &activate,
        &unshare,
    )?;
    as_the_socket_unit(&admin, 0o660).await?;

    // The first connection starts tokend (it waits in the backlog meanwhile).
    let member = curl_as(MEMBER, MEMBER, &[ADMIN_GID], &admin, "/v1/admin/overview").await?;
    assert_eq!(
        member.status,
        200,
        "{}\n{}\n{}",
        member.body,
        member.trace,
        t.output.text()
    );
    let overview: serde_json::Value = serde_json::from_str(&member.body)?;
    assert!(overview["version"].is_string(), "{overview}");
    t.wait_listening().await?;
    assert_eq!(
        uid_map(&t)?,
        "0 0 1",
        "tokend runs in a user namespace that maps only root"
    );
    let sessions = curl_as(MEMBER, MEMBER, &[ADMIN_GID], &admin, "/v1/admin/sessions").await?;
    assert_eq!(sessions.status, 200, "{}", sessions.body);

    let other = curl_as(OTHER, OTHER, &[], &admin, "/v1/admin/overview").await?;
    assert_eq!(
        other.status, 0,
        "a non-member cannot connect: {}",
        other.body
    );
    assert!(
        other.trace.contains("Permission denied"),
        "connect(2) fails with EACCES: {}",
        other.trace
    );

    let log = t.output.text();
    assert!(
        log.lines()
            .any(|l| l.contains("admin API on the socket systemd passed")
                && l.contains("fd_name=admin")
                && l.contains("mode=0660")
                && l.contains("peer_check=socket_permissions")),
        "{log}"
    );
    assert!(
        !log.contains("admin API on its own socket"),
        "tokend did not bind an admin socket of its own: {log}"
    );
    // The apps' socket is not the admin socket: 404 there.
    let apps = t.unix("GET", "/v1/admin/overview", &[], None).await?;
    assert_eq!(apps.status, 404);

    assert!(t.terminate().await?.success());
    assert!(
        admin.exists(),
        "the passed socket's file is systemd's and stays"
    );
    t.output.assert_free_of(&[SECRET]);
    Ok(())
}

/// The gap this closes: under `PrivateUsers=` the default per-connection check sees the member
/// as `nobody` and refuses it, although its group is allowed — and the same member passes
/// without the namespace, so the namespace is what refuses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_13_the_default_peer_check_refuses_members_under_private_users() -> R {
    let test = "issue_13_the_default_peer_check_refuses_members_under_private_users";
    let Some((activate, unshare)) = tools(test) else {
        return Ok(());
    };
    let tail = format!("allowed_groups = [{ADMIN_GID}]\n");
    for private_users in [true, false] {
        let (mut t, admin) = spawn(&tail, private_users, &activate, &unshare)?;
        as_the_socket_unit(&admin, 0o660).await?;
        // The peer's primary group is the allowed one: what SO_PEERCRED reports.
        let seen = curl_as(MEMBER, ADMIN_GID, &[], &admin, "/v1/admin/overview").await?;
        let log = t.output.text();
        if private_users {
            assert_eq!(seen.status, 403, "{}\n{log}", seen.body);
            let v: serde_json::Value = serde_json::from_str(&seen.body)?;
            assert_eq!(v["reason"], "forbidden");
            assert!(
                v["message"]
                    .as_str()
                    .unwrap_or("")
                    .contains("uid 65534 (nobody)"),
                "{v}"
            );
            assert!(
                log.contains("tokend runs in a user namespace"),
                "the start log warns: {log}"
            );
            assert!(
                log.lines()
                    .any(|l| l.contains("admin API refused") && l.contains("uid=65534")),
                "{log}"
            );
        } else {
            assert_eq!(seen.status, 200, "{}\n{log}", seen.body);
            assert!(!log.contains("tokend runs in a user namespace"), "{log}");
        }
        assert!(
            log.contains("peer_check=credentials"),
            "the start log names the check: {log}"
        );
        assert!(t.terminate().await?.success());
    }
    Ok(())
}

/// Issue #8 (mutation testing): the user-namespace warning is for an admin socket tokend binds
/// itself too, not only for one systemd passed; and an admin API turned off says so, with no
/// word of a passed socket when none was passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_8_the_start_log_warns_of_a_user_namespace_and_says_why_the_admin_api_is_off() -> R {
    let test = "issue_8_the_start_log_warns_of_a_user_namespace_and_says_why_the_admin_api_is_off";
    let Some((activate, unshare)) = tools(test) else {
        return Ok(());
    };
    let in_a_user_namespace = [
        unshare.to_string_lossy().into_owned(),
        "--user".into(),
        "--map-root-user".into(),
    ];
    let mut cfg = TokendConfig::hs256(SECRET);
    cfg.launcher = in_a_user_namespace.to_vec();
    let mut t = Tokend::start(&cfg).await?;
    t.wait_ready().await?;
    let log = t.output.text();
    assert!(
        log.contains("admin API on its own socket")
            && log.contains("tokend runs in a user namespace"),
        "tokend bound the admin socket itself, in a user namespace: {log}"
    );
    assert!(t.terminate().await?.success());

    // A passed admin socket and no apps' socket, so no admin socket configured: warned too.
    let dir = tempfile::tempdir()?;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
    let admin = dir.path().join("tokend-admin.sock");
    let mut cfg = TokendConfig::hs256(SECRET);
    cfg.socket = false;
    cfg.launcher = vec![
        activate.to_string_lossy().into_owned(),
        "-l".into(),
        admin.to_string_lossy().into_owned(),
        "--fdname=admin".into(),
    ];
    cfg.launcher.extend(in_a_user_namespace);
    let mut t = Tokend::spawn_in(&cfg, dir)?;
    as_the_socket_unit(&admin, 0o660).await?;
    // The first connection starts tokend.
    let first = curl_as(0, 0, &[], &admin, "/v1/admin/overview").await?;
    assert_ne!(first.status, 0, "{}\n{}", first.trace, t.output.text());
    let log = t.output.text();
    assert!(
        log.contains("admin API on the socket systemd passed")
            && log.contains("tokend runs in a user namespace"),
        "a passed admin socket, in a user namespace: {log}"
    );
    assert!(t.terminate().await?.success());

    let mut cfg = TokendConfig::hs256(SECRET);
    cfg.tail = "\n[admin]\nenabled = false\n".into();
    let mut t = Tokend::start(&cfg).await?;
    t.wait_ready().await?;
    let log = t.output.text();
    assert!(
        log.contains("admin API off: admin.enabled = false"),
        "{log}"
    );
    assert!(!log.contains("systemd passed an admin socket"), "{log}");
    assert!(t.terminate().await?.success());
    Ok(())
}

/// `socket_permissions` on a passed socket every local user may connect to would make every
/// local user an operator: tokend refuses to start and says what to fix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_13_socket_permissions_refuse_a_world_connectable_passed_socket() -> R {
    let test = "issue_13_socket_permissions_refuse_a_world_connectable_passed_socket";
    let Some((activate, unshare)) = tools(test) else {
        return Ok(());
    };
    let (mut t, admin) = spawn(
        "peer_check = \"socket_permissions\"\n",
        true,
        &activate,
        &unshare,
    )?;
    as_the_socket_unit(&admin, 0o666).await?;
    let seen = curl_as(MEMBER, MEMBER, &[ADMIN_GID], &admin, "/v1/admin/overview").await?;
    assert_ne!(seen.status, 200, "{}", seen.body);
    let status = t.wait_exit().await?;
    assert!(!status.success(), "tokend must not start: {status}");
    let log = t.output.text();
    assert!(
        log.contains("has mode 0666: every local user may connect")
            && log.contains("SocketMode=0660"),
        "{log}"
    );
    assert!(
        !t.dir.path().join("tokend.sock").exists(),
        "a failed start leaves no apps' socket behind"
    );
    Ok(())
}

/// Issue #8 (mutation testing): a passed admin socket with no file (an abstract socket) has no
/// permissions to fence it, so `socket_permissions` refuses to start and says why, while
/// `credentials` (which checks each peer) serves it. And a passed socket at another path than
/// the configured one is served with a warning (tokentop finds the configured one); at the
/// same path, without.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_8_passed_admin_sockets_without_a_file_or_elsewhere_than_configured() -> R {
    let test = "issue_8_passed_admin_sockets_without_a_file_or_elsewhere_than_configured";
    let Some((activate, unshare)) = tools(test) else {
        return Ok(());
    };
    const DIFFERS: &str = "differs from the socket systemd passed";
    for check in ["socket_permissions", "credentials"] {
        let name = format!("tokend-admin-test-{}-{check}", std::process::id());
        let mut cfg = TokendConfig::hs256(SECRET);
        cfg.tail = format!("\n[admin]\npeer_check = {check:?}\n");
        cfg.launcher = vec![
            activate.to_string_lossy().into_owned(),
            "-l".into(),
            format!("@{name}"),
            "--fdname=admin".into(),
        ];
        let mut t = Tokend::spawn_in(&cfg, tempfile::tempdir()?)?;
        // The first connection starts tokend.
        let mut seen = None;
        for _ in 0..100 {
            let out = tokio::process::Command::new("curl")
                .args(["-s", "--max-time", "30", "-w", "\n%{http_code}"])
                .args(["--abstract-unix-socket", &name])
                .arg("http://tokend/v1/admin/overview")
                .output()
                .await?;
            let text = String::from_utf8_lossy(&out.stdout).to_string();
            if out.status.code() != Some(7) {
                seen = Some(text);
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await; // not bound yet
        }
        let seen = seen.context("systemd-socket-activate did not bind the abstract socket")?;
        if check == "socket_permissions" {
            let status = t.wait_exit().await?;
            assert!(!status.success(), "tokend must not start: {status}");
            let log = t.output.text();
            assert!(
                log.contains("it has no file (an abstract or unnamed socket)")
                    && log.contains("ListenStream=/run/tokend/tokend-admin.sock"),
                "{log}"
            );
        } else {
            assert!(seen.ends_with("\n200"), "{seen}\n{}", t.output.text());
            assert!(t.terminate().await?.success());
        }
    }

    let dir = tempfile::tempdir()?;
    let configured = dir.path().join("configured-admin.sock");
    let (mut t, admin) = spawn(
        &format!("socket = {configured:?}\n"),
        false,
        &activate,
        &unshare,
    )?;
    as_the_socket_unit(&admin, 0o660).await?;
    let seen = curl_as(0, 0, &[], &admin, "/v1/admin/overview").await?;
    assert_eq!(seen.status, 200, "{}\n{}", seen.trace, t.output.text());
    let log = t.output.text();
    assert!(
        log.lines()
            .any(|l| l.contains(DIFFERS)
                && l.contains(&format!("configured={}", configured.display()))),
        "{log}"
    );
    assert!(t.terminate().await?.success());
    let (mut t, admin) = spawn("", false, &activate, &unshare)?;
    as_the_socket_unit(&admin, 0o660).await?;
    let seen = curl_as(0, 0, &[], &admin, "/v1/admin/overview").await?;
    assert_eq!(seen.status, 200, "{}\n{}", seen.trace, t.output.text());
    assert!(!t.output.text().contains(DIFFERS), "{}", t.output.text());
    assert!(t.terminate().await?.success());
    Ok(())
}

/// Issue #8 (a mutant nothing caught: membership by the group database's member list): an
/// operator whose allowed group is only a supplementary one — listed by user name in
/// `/etc/group`, as `adduser daemon tokend-ops` makes it, not the peer's primary gid — may use
/// the admin API; a user the group does not list may not. tokend runs in a mount namespace
/// whose `/etc/group` is a copy with that group added (`unshare --mount`, a bind mount), so
/// the host's group database is not touched; the peers are Debian's `daemon` (uid 1, gid 1)
/// and `bin` (uid 2, gid 2), which every Debian system has.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_8_a_supplementary_member_by_name_is_an_operator_and_a_non_member_is_not() -> R {
    let test = "issue_8_a_supplementary_member_by_name_is_an_operator_and_a_non_member_is_not";
    let Some((activate, unshare)) = tools(test) else {
        return Ok(());
    };
    let files = tempfile::tempdir()?;
    let group = files.path().join("group");
    let mut db = std::fs::read_to_string("/etc/group")?;
    db.push_str(&format!("tokend-ops:x:{ADMIN_GID}:daemon\n"));
    std::fs::write(&group, db)?;
    std::fs::set_permissions(&group, std::fs::Permissions::from_mode(0o644))?;

    let dir = tempfile::tempdir()?;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
    let admin = dir.path().join("tokend-admin.sock");
    let mut cfg = TokendConfig::hs256(SECRET);
    cfg.http = false;
    cfg.tail = "\n[admin]\nallowed_groups = [\"tokend-ops\"]\n".into();
    cfg.launcher = vec![
        activate.to_string_lossy().into_owned(),
        "-l".into(),
        admin.to_string_lossy().into_owned(),
        "--fdname=admin".into(),
        unshare.to_string_lossy().into_owned(),
        "--mount".into(),
        "--propagation".into(),
        "private".into(),
        "sh".into(),
        "-c".into(),
        r#"mount --bind "$0" /etc/group && exec "$@""#.into(),
        group.to_string_lossy().into_owned(),
    ];
    let mut t = Tokend::spawn_in(&cfg, dir)?;
    // Every local user may connect: the credentials check alone decides.
    as_the_socket_unit(&admin, 0o666).await?;
    let member = curl_as(1, 1, &[], &admin, "/v1/admin/overview").await?;
    let log = t.output.text();
    assert_eq!(
        member.status, 200,
        "{}\n{}\n{log}",
        member.body, member.trace
    );
    let other = curl_as(2, 2, &[], &admin, "/v1/admin/overview").await?;
    assert_eq!(other.status, 403, "{}", other.body);
    let v: serde_json::Value = serde_json::from_str(&other.body)?;
    assert_eq!(v["reason"], "forbidden");
    assert!(t.terminate().await?.success());
    Ok(())
}
