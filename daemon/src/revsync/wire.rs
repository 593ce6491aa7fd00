//! How the shared revocation list is laid out in Redis (`P` = `store.key_prefix`):
//! `P rev:{H}` a revocation by `sid` or `sub` (`H` = SHA-256 of `sid\0<sid>` or `sub\0<sub>`),
//! its value sealed with the store's AEAD key (the key name as associated data), so a dump
//! shows neither who nor why; `P rtend:{H}` a refresh token of an ended session (`H` = the
//! token's SHA-256, as everywhere), its value the expiry in unix seconds; `P jti:{H}` a seen
//! logout-token `jti`. Each key expires with its entry and carries its own `{H}` hash tag (every
//! call touches one key). Changes are announced on the channel `P revocations`, the message
//! being the key's name.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::sessions::{Change, EndReason};
use crate::store::SealKey;
use crate::store::redis::{hex, unhex};

/// What a `rev` key's value holds once opened.
#[derive(Serialize, Deserialize)]
struct Entry {
    /// `sid` or `sub`.
    k: String,
    id: String,
    at: i64,
    until: i64,
    why: EndReason,
}

fn tagged(what: &str, id: &str) -> String {
    let mut h = Sha256::new();
    h.update(what.as_bytes());
    h.update([0u8]);
    h.update(id.as_bytes());
    hex(&h.finalize().into())
}

/// The channel changes are announced on.
pub fn channel(prefix: &str) -> String {
    format!("{prefix}revocations")
}

/// The patterns a full resync scans.
pub fn patterns(prefix: &str) -> [String; 2] {
    [format!("{prefix}rev:{{*"), format!("{prefix}rtend:{{*")]
}

/// The key of a seen `jti`.
pub fn jti_key(prefix: &str, jti: &str) -> String {
    format!("{prefix}jti:{{{}}}", tagged("jti", jti))
}

/// The key of a change.
pub fn key(prefix: &str, change: &Change) -> String {
    match change {
        Change::Sid { sid, .. } => format!("{prefix}rev:{{{}}}", tagged("sid", sid)),
        Change::Sub { sub, .. } => format!("{prefix}rev:{{{}}}", tagged("sub", sub)),
        Change::EndedRefresh { key, .. } => format!("{prefix}rtend:{{{}}}", hex(key)),
    }
}

/// Until when a change holds (unix seconds).
pub fn until(change: &Change) -> i64 {
    match change {
        Change::Sid { until, .. }
        | Change::Sub { until, .. }
        | Change::EndedRefresh { until, .. } => *until,
    }
}

/// Why a value could not be written or read back.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("cannot seal a revocation: {0}")]
    Seal(#[from] crate::store::SealError),
    #[error("a revocation in Redis is not of this version")]
    Decode,
}

/// The value stored under [`key`].
pub fn encode(seal: &SealKey, name: &str, change: &Change) -> Result<Vec<u8>, WireError> {
    let (k, id, at, until, why) = match change {
        Change::Sid {
            sid,
            at,
            until,
            why,
        } => ("sid", sid, *at, *until, *why),
        Change::Sub {
            sub,
            at,
            until,
            why,
        } => ("sub", sub, *at, *until, *why),
        Change::EndedRefresh { until, .. } => return Ok(until.to_string().into_bytes()),
    };
    let entry = Entry {
        k: k.into(),
        id: id.clone(),
        at,
        until,
        why,
    };
    let plain = serde_json::to_vec(&entry).map_err(|_| WireError::Decode)?;
    Ok(seal.seal_bytes(name.as_bytes(), &plain)?)
}

/// The change stored as `value` under the key `name`.
pub fn decode(seal: &SealKey, name: &str, value: &[u8]) -> Result<Change, WireError> {
    let hash = name
        .rsplit_once('{')
        .map(|(_, h)| h.trim_end_matches('}'))
        .ok_or(WireError::Decode)?;
    if name.contains("rtend:{") {
        let key = unhex(hash).ok_or(WireError::Decode)?;
        let until = std::str::from_utf8(value)
            .ok()
            .and_then(|v| v.parse().ok())
            .ok_or(WireError::Decode)?;
        return Ok(Change::EndedRefresh { key, until });
    }
    let plain = seal.open_bytes(name.as_bytes(), value)?;
    let e: Entry = serde_json::from_slice(&plain).map_err(|_| WireError::Decode)?;
    // The key names what the value says (a value copied to another key is refused).
    if tagged(&e.k, &e.id) != hash {
        return Err(WireError::Decode);
    }
    match e.k.as_str() {
        "sid" => Ok(Change::Sid {
            sid: e.id,
            at: e.at,
            until: e.until,
            why: e.why,
        }),
        "sub" => Ok(Change::Sub {
            sub: e.id,
            at: e.at,
            until: e.until,
            why: e.why,
        }),
        _ => Err(WireError::Decode),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_12_revocations_round_trip_sealed_and_bound_to_their_key() {
        let seal = SealKey::new(&[3; 32]).expect("key");
        let c = Change::Sub {
            sub: "alice@example.com".into(),
            at: 10,
            until: 20,
            why: EndReason::AdminRevocation,
        };
        let name = key("t:", &c);
        assert!(name.starts_with("t:rev:{") && !name.contains("alice"));
        let v = encode(&seal, &name, &c).expect("encoded");
        assert!(!String::from_utf8_lossy(&v).contains("alice"));
        assert_eq!(decode(&seal, &name, &v).expect("decoded"), c);
        let other = key(
            "t:",
            &Change::Sid {
                sid: "s".into(),
                at: 1,
                until: 2,
                why: EndReason::Logout,
            },
        );
        assert!(decode(&seal, &other, &v).is_err(), "moved to another key");
        let r = Change::EndedRefresh {
            key: [9; 32],
            until: 99,
        };
        let name = key("t:", &r);
        let v = encode(&seal, &name, &r).expect("encoded");
        assert_eq!(decode(&seal, &name, &v).expect("decoded"), r);
        assert!(jti_key("t:", "j-1").starts_with("t:jti:{"));
    }
}
