//! [`PackedCode`]: how the memory engine keeps an outstanding exchange code (issue #14) — its
//! tokens, `sub` and `sid` in one exactly sized, zeroized-on-drop allocation beside their
//! offsets and times, instead of a [`CodePayload`] of five strings (each with its own
//! allocation, malloc overhead and spare capacity). Packed on put, unpacked on take: what the
//! store hands back is the payload that was put.

use tokend_shared::Secret;
use zeroize::Zeroizing;

use super::{CodeKind, CodePayload};

/// An exchange code's payload, packed.
pub(super) struct PackedCode {
    /// The access token, refresh token, ID token, `sub` and `sid`, one after the other (an
    /// absent one is empty); zeroized on drop, as the `Secret`s they came from would be.
    text: Zeroizing<Box<str>>,
    /// Where the access token, refresh token, ID token and `sub` end in `text` (`sid` ends at
    /// its end).
    ends: [u32; 4],
    /// Unix seconds (as in [`CodePayload`]).
    pub(super) created: i64,
    /// Unix seconds; after this the code is expired.
    pub(super) expires: i64,
    pub(super) kind: CodeKind,
    /// Which of the optional parts are present (an empty one is not the same as none):
    /// [`REFRESH`], [`ID`], [`SID`].
    present: u8,
}

const REFRESH: u8 = 1;
const ID: u8 = 2;
const SID: u8 = 4;

impl PackedCode {
    /// Packs `c`; `None` if its text passes 4 GiB (the offsets are 32-bit), never in practice:
    /// the caller keeps such a payload unpacked.
    pub(super) fn pack(c: &CodePayload) -> Option<Self> {
        let parts = [
            Some(c.access_token.expose()),
            c.refresh_token.as_ref().map(Secret::expose),
            c.id_token.as_ref().map(Secret::expose),
            Some(c.sub.as_str()),
            c.sid.as_deref(),
        ];
        let len = parts.iter().flatten().map(|p| p.len()).sum();
        u32::try_from(len).ok()?;
        let mut text = String::with_capacity(len);
        let mut ends = [0u32; 4];
        for (i, part) in parts.iter().enumerate() {
            text.push_str(part.unwrap_or_default());
            if let Some(end) = ends.get_mut(i) {
                *end = u32::try_from(text.len()).ok()?;
            }
        }
        let present = [
            (REFRESH, c.refresh_token.is_some()),
            (ID, c.id_token.is_some()),
            (SID, c.sid.is_some()),
        ]
        .into_iter()
        .filter(|(_, is)| *is)
        .fold(0, |acc, (bit, _)| acc | bit);
        Some(Self {
            text: Zeroizing::new(text.into_boxed_str()),
            ends,
            created: c.created,
            expires: c.expires,
            kind: c.kind,
            present,
        })
    }

    /// Part `i` (0 access, 1 refresh, 2 ID token, 3 sub, 4 sid) of `text`.
    fn part(&self, i: usize) -> &str {
        let start = match i.checked_sub(1) {
            Some(prev) => self.ends.get(prev).map_or(0, |e| *e as usize),
            None => 0,
        };
        let end = self.ends.get(i).map_or(self.text.len(), |e| *e as usize);
        // Boundaries of whole `str`s pushed one after the other: always valid.
        self.text.get(start..end).unwrap_or_default()
    }

    fn has(&self, bit: u8) -> bool {
        self.present & bit != 0
    }

    pub(super) fn sub(&self) -> &str {
        self.part(3)
    }

    /// The payload back, as it was put.
    pub(super) fn unpack(&self) -> CodePayload {
        let secret = |i: usize| Secret::new(self.part(i));
        CodePayload {
            access_token: secret(0),
            refresh_token: self.has(REFRESH).then(|| secret(1)),
            id_token: self.has(ID).then(|| secret(2)),
            sub: self.sub().to_owned(),
            sid: self.has(SID).then(|| self.part(4).to_owned()),
            created: self.created,
            expires: self.expires,
            kind: self.kind,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(refresh: Option<&str>, id: Option<&str>, sid: Option<&str>) -> CodePayload {
        CodePayload {
            access_token: Secret::new("access.token.x"),
            refresh_token: refresh.map(Secret::new),
            id_token: id.map(Secret::new),
            sub: "user-ü".into(),
            sid: sid.map(str::to_owned),
            created: 10,
            expires: 70,
            kind: CodeKind::Api,
        }
    }

    fn same(a: &CodePayload, b: &CodePayload) -> bool {
        let s = |x: &Option<Secret>| x.as_ref().map(|s| s.expose().to_owned());
        a.access_token.expose() == b.access_token.expose()
            && s(&a.refresh_token) == s(&b.refresh_token)
            && s(&a.id_token) == s(&b.id_token)
            && a.sub == b.sub
            && a.sid == b.sid
            && (a.created, a.expires, a.kind) == (b.created, b.expires, b.kind)
    }

    #[test]
    fn issue_14_a_packed_code_unpacks_to_what_was_put() {
        for p in [
            payload(Some("r"), Some("i.d.t"), Some("s-1")),
            payload(None, None, None),
            payload(Some(""), None, Some("")),
            payload(None, Some("idt"), None),
        ] {
            let packed = PackedCode::pack(&p).expect("packs");
            assert!(same(&packed.unpack(), &p), "{p:?}");
            assert_eq!(packed.sub(), "user-ü");
        }
    }

    #[test]
    fn issue_14_a_packed_code_is_one_small_allocation() {
        assert!(size_of::<PackedCode>() <= 56, "{}", size_of::<PackedCode>());
        let p = payload(Some("r"), Some("i"), Some("s"));
        let packed = PackedCode::pack(&p).expect("packs");
        assert_eq!(packed.text.len(), "access.token.xriuser-üs".len());
    }
}
