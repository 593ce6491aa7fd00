//! `[admin]`'s access control: `peer_check` (who decides who may use the admin socket — the
//! per-connection peer credentials, or the socket file's owner, group and mode), the `nobody`
//! ids that never name an operator, and the checks that refuse a combination opening the admin
//! API wider than it says.

use serde::{Deserialize, Serialize};

use super::{AdminConfig, ConfigError, GroupSpec, invalid};

/// The uid and gid the kernel reports for a user or group that has no mapping in the
/// reader's user namespace (`/proc/sys/kernel/overflowuid` and `overflowgid`, 65534 unless
/// changed): under systemd's `PrivateUsers=` every peer but root and tokend's own user looks
/// like this, and outside a namespace it is the shared `nobody`/`nogroup`. It names no one, so
/// it is never an operator (issue #13).
pub const NOBODY: u32 = 65534;

/// Who decides whether a connection to the admin socket may use the admin API.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PeerCheck {
    /// Every connection's peer credentials (SO_PEERCRED): root, tokend's own uid,
    /// `allowed_uids`, members of `allowed_groups`; `nobody` never. Needs tokend to see the
    /// peers' real uids, so not under `PrivateUsers=`.
    #[default]
    Credentials,
    /// Whoever can connect: the socket file's owner, group and mode decide — set by systemd
    /// (`tokend-admin.socket`: `SocketGroup=tokend-admin`, `SocketMode=0660`) outside the
    /// sandbox, or by tokend from `socket_mode`/`socket_group`. Works under `PrivateUsers=`.
    SocketPermissions,
}

impl PeerCheck {
    /// The name as written in the config file, for logs.
    pub fn name(self) -> &'static str {
        match self {
            PeerCheck::Credentials => "credentials",
            PeerCheck::SocketPermissions => "socket_permissions",
        }
    }
}

impl AdminConfig {
    /// Refuses what would open the admin API wider than the configuration reads.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if matches!(&self.socket, Some(p) if p.as_os_str().is_empty()) {
            return Err(invalid("admin.socket", "empty path"));
        }
        if matches!(&self.socket_group, Some(GroupSpec::Name(n)) if n.is_empty()) {
            return Err(invalid("admin.socket_group", "empty group name"));
        }
        if self
            .allowed_groups
            .iter()
            .any(|g| matches!(g, GroupSpec::Name(n) if n.is_empty()))
        {
            return Err(invalid("admin.allowed_groups", "empty group name"));
        }
        if self.allowed_uids.contains(&NOBODY) {
            return Err(invalid(
                "admin.allowed_uids",
                format!(
                    "{NOBODY} is `nobody`: the uid tokend sees for every user outside its user \
                     namespace (systemd's PrivateUsers=), so it names no one and is never \
                     allowed. Under the shipped unit, let operators in through \
                     tokend-admin.socket with peer_check = \"socket_permissions\""
                ),
            ));
        }
        if self.allowed_groups.contains(&GroupSpec::Id(NOBODY)) {
            return Err(invalid(
                "admin.allowed_groups",
                format!(
                    "{NOBODY} is `nogroup`: the gid tokend sees for every group outside its user \
                     namespace (systemd's PrivateUsers=), so it names no one and is never \
                     allowed. Under the shipped unit, let operators in through \
                     tokend-admin.socket with peer_check = \"socket_permissions\""
                ),
            ));
        }
        if self.peer_check == PeerCheck::SocketPermissions {
            if !self.allowed_uids.is_empty() || !self.allowed_groups.is_empty() {
                return Err(invalid(
                    "admin.peer_check",
                    "\"socket_permissions\" lets in whoever can connect to the socket, so \
                     allowed_uids and allowed_groups would not be checked: remove them (give the \
                     socket's group instead: SocketGroup= in tokend-admin.socket, or \
                     admin.socket_group), or use peer_check = \"credentials\"",
                ));
            }
            if self.socket_mode & 0o007 != 0 {
                return Err(invalid(
                    "admin.peer_check",
                    format!(
                        "\"socket_permissions\" with admin.socket_mode {:04o} would let every \
                         local user use the admin API; use 0600 (root and tokend's user) or \
                         0660 with admin.socket_group",
                        self.socket_mode
                    ),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::PeerCheck;
    use crate::config::tests::{MINIMAL, load};

    fn admin(lines: &str) -> Result<crate::config::Config, crate::config::ConfigError> {
        load(&format!("{MINIMAL}\n[admin]\n{lines}\n"), &[])
    }

    fn refused(lines: &str) -> String {
        admin(lines).expect_err(lines).to_string()
    }

    #[test]
    fn issue_13_peer_check_defaults_to_credentials() {
        let c = load(MINIMAL, &[]).expect("valid");
        assert_eq!(c.admin.peer_check, PeerCheck::Credentials);
    }

    #[test]
    fn issue_13_combinations_wider_than_they_read_are_refused() {
        let wide = refused("peer_check = \"socket_permissions\"\nsocket_mode = \"0666\"");
        assert!(wide.contains("every local user"), "{wide}");
        let wide = refused("peer_check = \"socket_permissions\"\nsocket_mode = \"0662\"");
        assert!(wide.contains("0662"), "{wide}");
        let lists = refused("peer_check = \"socket_permissions\"\nallowed_uids = [1000]");
        assert!(lists.contains("would not be checked"), "{lists}");
        let lists = refused("peer_check = \"socket_permissions\"\nallowed_groups = [\"adm\"]");
        assert!(lists.contains("would not be checked"), "{lists}");
        assert!(refused("allowed_uids = [65534]").contains("`nobody`"));
        assert!(refused("allowed_groups = [65534]").contains("`nogroup`"));
    }

    #[test]
    fn issue_13_socket_permissions_with_a_fenced_mode_load() {
        for lines in [
            "peer_check = \"socket_permissions\"",
            "peer_check = \"socket_permissions\"\nsocket_mode = \"0660\"\nsocket_group = \"adm\"",
            "peer_check = \"credentials\"\nsocket_mode = \"0666\"\nallowed_uids = [1000]",
        ] {
            admin(lines).expect(lines);
        }
    }
}
