//! Doctor's checks of this host and of the flow's URLs, without the network: the socket
//! directory (exists, writable) and group, the redirect and post-logout URIs.

use std::path::Path;

use nix::unistd::{AccessFlags, Group, Uid, access};
use reqwest::Url;

use super::{Check, DoctorError};
use crate::config::{Config, GroupSpec};

pub(super) fn checks(config: &Config, out: &mut Vec<Check>) {
    out.push(socket_directory(config));
    out.push(socket_group(config));
    out.extend(flow_uris(config));
}

/// The note on the directory of the socket, shared with the daemon's start-up error.
pub(crate) const SOCKET_DIR_FIX: &str = "create it, owned by the user tokend runs as (`install \
     -d -m 0755 -o <user> DIR`; /run is emptied at boot: use a tmpfiles.d entry), or run \
     tokend from systemd/tokend.service, whose RuntimeDirectory=tokend creates /run/tokend";

fn socket_directory(config: &Config) -> Check {
    let Some(socket) = config.listen.socket.as_deref() else {
        return Check::pass("socket_directory", "no listen.socket: no Unix socket");
    };
    let dir = socket
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let uid = Uid::effective();
    if !dir.is_dir() {
        return Check::fail(
            "socket_directory",
            format!(
                "{} (the directory of listen.socket) does not exist",
                dir.display()
            ),
            SOCKET_DIR_FIX.replace("DIR", &dir.display().to_string()),
        );
    }
    match access(dir, AccessFlags::W_OK | AccessFlags::X_OK) {
        Ok(()) => Check::pass(
            "socket_directory",
            format!("{} exists and is writable by uid {uid}", dir.display()),
        ),
        Err(errno) => Check::fail(
            "socket_directory",
            format!(
                "{} (uid {uid}; tokend may run as another user)",
                DoctorError::Path {
                    path: dir.display().to_string(),
                    source: errno,
                }
            ),
            format!(
                "let the user tokend runs as write to {} (chown it), or use the systemd unit's \
                 RuntimeDirectory=",
                dir.display()
            ),
        ),
    }
}

fn socket_group(config: &Config) -> Check {
    let Some(spec) = config.listen.socket_group.as_ref() else {
        return Check::pass(
            "socket_group",
            "no listen.socket_group: the socket keeps tokend's group",
        );
    };
    let found = match spec {
        GroupSpec::Name(name) => Group::from_name(name),
        GroupSpec::Id(gid) => Group::from_gid((*gid).into()),
    };
    let shown = match spec {
        GroupSpec::Name(n) => format!("{n:?}"),
        GroupSpec::Id(g) => format!("gid {g}"),
    };
    match found {
        Ok(Some(g)) => Check::pass(
            "socket_group",
            format!("group {shown} exists (gid {})", g.gid),
        ),
        Ok(None) => Check::fail(
            "socket_group",
            format!("listen.socket_group: group {shown} does not exist on this host"),
            "create it (`groupadd`) and add the apps' users to it, or change \
             listen.socket_group; under systemd use the socket unit's SocketGroup= instead",
        ),
        Err(errno) => Check::fail(
            "socket_group",
            format!("cannot look up group {shown}: {errno}"),
            "check /etc/group and NSS",
        ),
    }
}

fn flow_uris(config: &Config) -> Vec<Check> {
    let Some(flow) = config.flow.as_ref() else {
        return vec![Check::pass(
            "flow_uris",
            "no [flow]: the login flow is off, no redirect URIs to check",
        )];
    };
    let post_logout = flow
        .post_logout_redirect_uri
        .clone()
        .unwrap_or_else(|| format!("{}/", flow.frontend_url.trim_end_matches('/')));
    vec![
        uri_check("redirect_uri", &flow.redirect_uri, Some("/auth/callback")),
        uri_check("post_logout_redirect_uri", &post_logout, None),
    ]
}

/// A URI the provider sends the browser to: absolute, HTTPS (HTTP only on loopback), no
/// fragment, and for the callback a path ending in `/auth/callback` (tokend's route behind
/// the app's proxy).
fn uri_check(check: &'static str, uri: &str, path_end: Option<&str>) -> Check {
    let url = match Url::parse(uri) {
        Ok(u) => u,
        Err(e) => {
            return Check::fail(
                check,
                format!("flow.{check} {uri:?}: {e}"),
                "give an absolute URL",
            );
        }
    };
    let loopback = matches!(url.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
    let mut problems = Vec::new();
    if url.scheme() != "https" && !(url.scheme() == "http" && loopback) {
        problems.push("is not HTTPS (browsers drop Secure cookies on plain HTTP)".to_string());
    }
    if url.fragment().is_some() {
        problems.push("has a fragment (not allowed in a redirect URI)".to_string());
    }
    if let Some(end) = path_end
        && !url.path().trim_end_matches('/').ends_with(end)
    {
        problems.push(format!(
            "does not end in {end} (tokend's callback, e.g. /api{end} behind the app's proxy)"
        ));
    }
    if problems.is_empty() {
        Check::pass(
            check,
            format!(
                "{uri} (must be registered at the provider exactly; doctor cannot see the \
                 registration)"
            ),
        )
    } else {
        Check::fail(
            check,
            format!("flow.{check} {uri} {}", problems.join("; ")),
            format!(
                "set flow.{check} to the URL the browser reaches through the app's proxy, and \
                 register exactly that URL at the provider"
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_plausibility() {
        assert!(
            uri_check(
                "redirect_uri",
                "https://app.example/api/auth/callback",
                Some("/auth/callback")
            )
            .ok
        );
        assert!(
            uri_check(
                "redirect_uri",
                "http://127.0.0.1:3000/auth/callback",
                Some("/auth/callback")
            )
            .ok
        );
        assert!(
            !uri_check(
                "redirect_uri",
                "http://app.example/auth/callback",
                Some("/auth/callback")
            )
            .ok
        );
        assert!(
            !uri_check(
                "redirect_uri",
                "https://app.example/callback",
                Some("/auth/callback")
            )
            .ok
        );
        assert!(uri_check("post_logout_redirect_uri", "https://app.example/", None).ok);
        assert!(!uri_check("post_logout_redirect_uri", "https://app.example/#x", None).ok);
    }
}
