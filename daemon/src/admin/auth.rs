//! Who may use the admin socket. With `peer_check = "credentials"` (the default), decided from
//! the peer's credentials (SO_PEERCRED): root, tokend's own uid, `admin.allowed_uids`, and
//! members of `admin.allowed_groups` — by the peer's primary gid or by the group database
//! listing the peer's user name — and never `nobody` (uid 65534: under `PrivateUsers=`, every
//! user outside tokend's user namespace). With `"socket_permissions"`, whoever could connect:
//! the socket file's owner, group and mode have decided already.

use crate::config::{AdminConfig, GroupSpec, NOBODY, PeerCheck};
use crate::listen::Peer;

/// The access rule of one configuration.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Who decides: the credentials below, or the socket file.
    check: PeerCheck,
    /// tokend's effective uid, always allowed (as root is).
    own_uid: u32,
    /// `admin.allowed_uids`.
    uids: Vec<u32>,
    /// `admin.allowed_groups`.
    groups: Vec<GroupSpec>,
}

/// The answer to one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// Not root, not tokend's uid, not listed.
    Refuse,
    /// The peer is `nobody`: most likely a real user tokend cannot see (`PrivateUsers=`).
    RefuseNobody,
}

impl Policy {
    pub fn from_config(cfg: &AdminConfig) -> Self {
        Self {
            check: cfg.peer_check,
            own_uid: nix::unistd::geteuid().as_raw(),
            uids: cfg.allowed_uids.clone(),
            groups: cfg.allowed_groups.clone(),
        }
    }

    /// Whether `peer` may use the admin API.
    pub fn decide(&self, peer: Peer) -> Decision {
        if self.check == PeerCheck::SocketPermissions {
            return Decision::Allow;
        }
        // Before everything else: tokend running as `nobody` does not make every peer that
        // appears as `nobody` itself.
        if peer.uid == NOBODY {
            return Decision::RefuseNobody;
        }
        if peer.uid == 0 || peer.uid == self.own_uid || self.uids.contains(&peer.uid) {
            return Decision::Allow;
        }
        if self.groups.iter().any(|g| in_group(peer, g)) {
            Decision::Allow
        } else {
            Decision::Refuse
        }
    }
}

fn in_group(peer: Peer, group: &GroupSpec) -> bool {
    let entry = match group {
        GroupSpec::Id(gid) => {
            if *gid == peer.gid && *gid != NOBODY {
                return true;
            }
            nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(*gid))
        }
        GroupSpec::Name(name) => nix::unistd::Group::from_name(name),
    };
    let Ok(Some(entry)) = entry else {
        return false;
    };
    // `nogroup` (by name) names no one either.
    if entry.gid.as_raw() == NOBODY {
        return false;
    }
    if entry.gid.as_raw() == peer.gid {
        return true;
    }
    match nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(peer.uid)) {
        Ok(Some(user)) => entry.mem.contains(&user.name),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(uids: Vec<u32>, groups: Vec<GroupSpec>) -> Policy {
        Policy {
            check: PeerCheck::Credentials,
            own_uid: 4242,
            uids,
            groups,
        }
    }

    fn peer(uid: u32, gid: u32) -> Peer {
        Peer {
            uid,
            gid,
            pid: None,
        }
    }

    #[test]
    fn root_self_and_listed_uids_pass_others_do_not() {
        let p = policy(vec![1001], vec![]);
        assert_eq!(p.decide(peer(0, 0)), Decision::Allow);
        assert_eq!(p.decide(peer(4242, 9)), Decision::Allow);
        assert_eq!(p.decide(peer(1001, 9)), Decision::Allow);
        assert_eq!(p.decide(peer(1002, 9)), Decision::Refuse);
        assert_eq!(p.decide(peer(65534, 65534)), Decision::RefuseNobody);
    }

    #[test]
    fn a_listed_group_passes_by_primary_gid() {
        let p = policy(vec![], vec![GroupSpec::Id(777_777)]);
        assert_eq!(p.decide(peer(65533, 777_777)), Decision::Allow);
        assert_eq!(p.decide(peer(65533, 777_778)), Decision::Refuse);
    }

    #[test]
    fn issue_13_nobody_is_never_an_operator_under_peer_credentials() {
        // Listed (as a config that skipped validation would), in a listed group, or tokend's
        // own uid: `nobody` stays out.
        let mut p = policy(vec![NOBODY], vec![GroupSpec::Id(NOBODY), GroupSpec::Id(5)]);
        p.own_uid = NOBODY;
        assert_eq!(p.decide(peer(NOBODY, 5)), Decision::RefuseNobody);
        assert_eq!(p.decide(peer(NOBODY, NOBODY)), Decision::RefuseNobody);
        assert_eq!(
            p.decide(peer(1003, NOBODY)),
            Decision::Refuse,
            "a primary gid of nogroup is no membership"
        );
    }

    #[test]
    fn issue_13_socket_permissions_let_in_whoever_could_connect() {
        let mut p = policy(vec![], vec![]);
        p.check = PeerCheck::SocketPermissions;
        assert_eq!(p.decide(peer(NOBODY, NOBODY)), Decision::Allow);
        assert_eq!(p.decide(peer(1002, 9)), Decision::Allow);
    }
}
