//! Who may use the admin socket, decided from the peer's credentials (SO_PEERCRED): root,
//! tokend's own uid, `admin.allowed_uids`, and members of `admin.allowed_groups` — by the
//! peer's primary gid or by the group database listing the peer's user name.

use crate::config::{AdminConfig, GroupSpec};
use crate::listen::Peer;

/// The allow lists of one configuration.
#[derive(Debug, Clone)]
pub struct Policy {
    own_uid: u32,
    uids: Vec<u32>,
    groups: Vec<GroupSpec>,
}

impl Policy {
    pub fn from_config(cfg: &AdminConfig) -> Self {
        Self {
            own_uid: nix::unistd::geteuid().as_raw(),
            uids: cfg.allowed_uids.clone(),
            groups: cfg.allowed_groups.clone(),
        }
    }

    /// Whether `peer` may use the admin API.
    pub fn allows(&self, peer: Peer) -> bool {
        if peer.uid == 0 || peer.uid == self.own_uid || self.uids.contains(&peer.uid) {
            return true;
        }
        self.groups.iter().any(|g| in_group(peer, g))
    }
}

fn in_group(peer: Peer, group: &GroupSpec) -> bool {
    let entry = match group {
        GroupSpec::Id(gid) => {
            if *gid == peer.gid {
                return true;
            }
            nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(*gid))
        }
        GroupSpec::Name(name) => nix::unistd::Group::from_name(name),
    };
    let Ok(Some(entry)) = entry else {
        return false;
    };
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
        assert!(p.allows(peer(0, 0)));
        assert!(p.allows(peer(4242, 9)));
        assert!(p.allows(peer(1001, 9)));
        assert!(!p.allows(peer(1002, 9)));
        assert!(!p.allows(peer(65534, 65534)));
    }

    #[test]
    fn a_listed_group_passes_by_primary_gid() {
        let p = policy(vec![], vec![GroupSpec::Id(777_777)]);
        assert!(p.allows(peer(65533, 777_777)));
        assert!(!p.allows(peer(65533, 777_778)));
    }
}
