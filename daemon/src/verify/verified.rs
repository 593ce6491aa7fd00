//! [`Verified`]: what a successful verification yields and the verified-token cache keeps — the
//! rendered `/v1/verify` answer and little beside it, so a cached token costs about its answer's
//! bytes (issue #14). The structured claims are parsed back from the answer when asked for.

use std::sync::Arc;

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use tokend_shared::{Claims, VerifyResponse};

use super::claims::render_active;
use super::identity::IdentityHeaders;
use crate::sessions::Session;

/// A verified access token.
#[derive(Debug)]
pub struct Verified {
    /// The `200` body of `/v1/verify`, rendered once (exactly sized) so cache hits serialize
    /// nothing; also the only copy of the claims ([`Verified::claims`] parses them back).
    pub body: Bytes,
    /// The `sub` claim: where its text is in `body`, or its own copy.
    sub: Text,
    /// The `sid` claim (a string), likewise: forgetting a session's entries compares it.
    sid: Option<Text>,
    /// Expiry, unix seconds: the cache lets the entry go then.
    pub exp: i64,
    /// Issued-at, to compare with revocations.
    pub iat: i64,
    /// The session registered for the token's `sid` when it was verified, if any: hits update
    /// its last-seen time and see its end without any map lookup.
    pub session: Option<Arc<Session>>,
    /// Forward auth's identity headers, made on the first `/v1/auth` hit and replaced only
    /// under the cache's lock (`TokenCache::attach`), which accounts for them; empty (8 bytes)
    /// for a verify-only user.
    pub(super) identity: ArcSwapOption<IdentityHeaders>,
}

/// A claim's text, found in the rendered body when it appears there unescaped (the usual case:
/// no quote, backslash or control character in it), else kept apart.
#[derive(Debug)]
enum Text {
    InBody { start: u32, len: u32 },
    Owned(Box<str>),
}

impl Text {
    fn find(body: &[u8], value: &str) -> Text {
        let plain = !value.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20);
        let at = if plain {
            memchr::memmem::find(body, value.as_bytes())
        } else {
            None
        };
        match (
            at.and_then(|s| u32::try_from(s).ok()),
            u32::try_from(value.len()),
        ) {
            (Some(start), Ok(len)) => Text::InBody { start, len },
            _ => Text::Owned(value.into()),
        }
    }

    fn get<'a>(&'a self, body: &'a [u8]) -> &'a str {
        match self {
            Text::Owned(s) => s,
            Text::InBody { start, len } => {
                let (start, len) = (*start as usize, *len as usize);
                // The bytes of a whole `str` found in UTF-8 text: valid, never cut mid-character.
                body.get(start..start + len)
                    .and_then(|b| std::str::from_utf8(b).ok())
                    .unwrap_or_default()
            }
        }
    }

    /// Heap bytes of its own.
    fn heap(&self) -> usize {
        match self {
            Text::Owned(s) => s.len(),
            Text::InBody { .. } => 0,
        }
    }
}

impl Verified {
    /// Renders the answer for `claims` and keeps what the cache and the callers need.
    pub fn new(claims: &Claims, iat: i64, session: Option<Arc<Session>>) -> Self {
        let body = render_active(claims);
        let sub = Text::find(&body, &claims.sub);
        let sid = claims.sid().map(|s| Text::find(&body, s));
        Self {
            body,
            sub,
            sid,
            exp: claims.exp,
            iat,
            session,
            identity: ArcSwapOption::empty(),
        }
    }

    pub fn sub(&self) -> &str {
        self.sub.get(&self.body)
    }

    pub fn sid(&self) -> Option<&str> {
        self.sid.as_ref().map(|t| t.get(&self.body))
    }

    /// The claims, parsed back from the rendered answer (forward auth, code redemption).
    pub fn claims(&self) -> Result<Claims, serde_json::Error> {
        let answer: VerifyResponse = serde_json::from_slice(&self.body)?;
        answer
            .claims
            .ok_or_else(|| serde::de::Error::missing_field("claims"))
    }

    /// Heap bytes this verification holds (the `Arc` allocation around it included): what the
    /// cache accounts for it besides its map slot. The session is shared, not counted.
    pub fn heap_bytes(&self) -> usize {
        // An `Arc`'s allocation: two counters, then the value.
        2 * std::mem::size_of::<usize>()
            + std::mem::size_of::<Self>()
            + self.body.len()
            + self.sub.heap()
            + self.sid.as_ref().map_or(0, Text::heap)
            + self.identity.load().as_ref().map_or(0, |i| i.heap_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    use crate::verify::claims::tests::{claims, mapper};

    fn verified(v: serde_json::Value) -> Verified {
        let c = mapper().map(claims(v), "u".into(), 9);
        Verified::new(&c, 1, None)
    }

    #[test]
    fn sub_and_sid_come_from_the_body_and_claims_parse_back() {
        let v = verified(json!({"sid": "s-1", "email": "e@x", "groups": ["a"]}));
        assert!(matches!(v.sub, Text::InBody { .. }));
        assert!(matches!(v.sid, Some(Text::InBody { .. })));
        assert_eq!(v.sub(), "u");
        assert_eq!(v.sid(), Some("s-1"));
        let c = v.claims().expect("parses back");
        assert_eq!(c.email.as_deref(), Some("e@x"));
        assert_eq!(c.groups, vec!["a".to_string()]);
        assert_eq!(c.exp, 9);
        assert_eq!(v.heap_bytes(), 16 + size_of::<Verified>() + v.body.len());
    }

    #[test]
    fn escaped_or_absent_text_is_kept_apart() {
        let v = verified(json!({"sid": "a\"b\\c\nd"}));
        assert!(matches!(v.sid, Some(Text::Owned(_))));
        assert_eq!(v.sid(), Some("a\"b\\c\nd"));
        assert_eq!(
            v.heap_bytes(),
            16 + size_of::<Verified>() + v.body.len() + 7
        );
        let v = verified(json!({"sid": 5}));
        assert_eq!(v.sid(), None, "not a string: no sid");
    }

    /// Issue #8: each character JSON escapes alone keeps a claim's text apart, even where its
    /// raw bytes happen to occur in the body (a quote, a backslash: the body is full of them);
    /// a space is plain and is found. The text comes back the same either way, and a kept-apart
    /// `sub` is counted in the heap bytes as a `sid` is.
    #[test]
    fn issue_8_one_escaped_character_is_enough_to_keep_the_text_apart() {
        let body = br#"{"a":"x y","b":"\"\\","c":"\n"}"#;
        for (value, owned) in [
            ("\"", true),
            ("\\", true),
            ("\n", true),
            ("\u{1f}", true),
            ("x y", false),
        ] {
            let t = Text::find(body, value);
            assert_eq!(matches!(t, Text::Owned(_)), owned, "{value:?}");
            assert_eq!(t.get(body), value);
            assert_eq!(t.heap(), if owned { value.len() } else { 0 });
        }
        let c = mapper().map(claims(json!({})), "a\"b".into(), 9);
        let v = Verified::new(&c, 1, None);
        assert!(matches!(v.sub, Text::Owned(_)));
        assert_eq!(v.sub(), "a\"b");
        assert_eq!(
            v.heap_bytes(),
            16 + size_of::<Verified>() + v.body.len() + 3
        );
    }
}
