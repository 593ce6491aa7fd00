//! The identity headers of forward auth: which claims go out under which names (the
//! oauth2-proxy or authentik set), the sanitiser (percent-encoding of everything outside
//! printable ASCII, so no value can carry CR, LF, NUL or another control character) and the
//! size budget (groups cut at a group boundary with a marker; other values left out whole).

use axum::http::{HeaderName, HeaderValue};
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use tokend_shared::Claims;

use crate::config::HeaderSet;

/// Encoded in every value (RFC 3986 percent-encoding of the UTF-8 bytes): C0 controls and
/// DEL (`CONTROLS`), `%` itself (so decoding gives back exactly the claim), and — always, by
/// `utf8_percent_encode` — every non-ASCII byte.
const VALUE: &AsciiSet = &CONTROLS.add(b'%');
/// One group of a comma-separated list: also its separator.
const COMMA_ITEM: &AsciiSet = &VALUE.add(b',');
/// One group of a pipe-separated list: also its separator.
const PIPE_ITEM: &AsciiSet = &VALUE.add(b'|');

/// The last group of a list that was cut: `…` (U+2026), sent percent-encoded like any
/// non-ASCII text (`%E2%80%A6`).
pub const TRUNCATION_MARKER: &str = "…";

/// Header names and claims of one set, in order of importance: when the budget runs out, the
/// later ones are left out first; the groups come last.
struct Names {
    /// `(header, claim)` pairs of single values.
    scalars: &'static [(&'static HeaderName, Claim)],
    /// The groups' header.
    groups: &'static HeaderName,
    /// Between two groups.
    separator: char,
    /// The encoding of one group (the separator encoded too).
    item: &'static AsciiSet,
}

/// A single-valued claim of [`Claims`].
#[derive(Clone, Copy)]
enum Claim {
    Sub,
    Email,
    Name,
    PreferredUsername,
    Organization,
    Role,
}

impl Claim {
    fn of(self, c: &Claims) -> Option<&str> {
        match self {
            Claim::Sub => Some(&c.sub),
            Claim::Email => c.email.as_deref(),
            Claim::Name => c.name.as_deref(),
            Claim::PreferredUsername => c.preferred_username.as_deref(),
            Claim::Organization => c.organization_id.as_deref(),
            Claim::Role => Some(&c.role),
        }
    }
}

// The names as statics: an answer kept beside a cached token refers to them (8 bytes each).
static AUTH_REQUEST_USER: HeaderName = HeaderName::from_static("x-auth-request-user");
static AUTH_REQUEST_EMAIL: HeaderName = HeaderName::from_static("x-auth-request-email");
static AUTH_REQUEST_PREFERRED_USERNAME: HeaderName =
    HeaderName::from_static("x-auth-request-preferred-username");
static AUTH_REQUEST_ORG: HeaderName = HeaderName::from_static("x-auth-request-org");
static AUTH_REQUEST_ROLE: HeaderName = HeaderName::from_static("x-auth-request-role");
static AUTH_REQUEST_GROUPS: HeaderName = HeaderName::from_static("x-auth-request-groups");
static AUTHENTIK_UID: HeaderName = HeaderName::from_static("x-authentik-uid");
static AUTHENTIK_USERNAME: HeaderName = HeaderName::from_static("x-authentik-username");
static AUTHENTIK_EMAIL: HeaderName = HeaderName::from_static("x-authentik-email");
static AUTHENTIK_NAME: HeaderName = HeaderName::from_static("x-authentik-name");
static AUTHENTIK_GROUPS: HeaderName = HeaderName::from_static("x-authentik-groups");

static OAUTH2_PROXY_SCALARS: [(&HeaderName, Claim); 5] = [
    (&AUTH_REQUEST_USER, Claim::Sub),
    (&AUTH_REQUEST_EMAIL, Claim::Email),
    (&AUTH_REQUEST_PREFERRED_USERNAME, Claim::PreferredUsername),
    (&AUTH_REQUEST_ORG, Claim::Organization),
    (&AUTH_REQUEST_ROLE, Claim::Role),
];
static AUTHENTIK_SCALARS: [(&HeaderName, Claim); 4] = [
    (&AUTHENTIK_UID, Claim::Sub),
    (&AUTHENTIK_USERNAME, Claim::PreferredUsername),
    (&AUTHENTIK_EMAIL, Claim::Email),
    (&AUTHENTIK_NAME, Claim::Name),
];

fn names(set: HeaderSet) -> Names {
    match set {
        HeaderSet::Oauth2Proxy => Names {
            scalars: &OAUTH2_PROXY_SCALARS,
            groups: &AUTH_REQUEST_GROUPS,
            separator: ',',
            item: COMMA_ITEM,
        },
        HeaderSet::Authentik => Names {
            scalars: &AUTHENTIK_SCALARS,
            groups: &AUTHENTIK_GROUPS,
            separator: '|',
            item: PIPE_ITEM,
        },
    }
}

/// `s` percent-encoded by `set`, with leading and trailing spaces encoded too (HTTP drops
/// them from header values).
fn encode(s: &str, set: &'static AsciiSet) -> String {
    let out: String = utf8_percent_encode(s, set).collect();
    let body = out.trim_matches(' ');
    let lead = out.len() - out.trim_start_matches(' ').len();
    if body.is_empty() {
        return "%20".repeat(lead);
    }
    let trail = out.len() - out.trim_end_matches(' ').len();
    format!("{}{body}{}", "%20".repeat(lead), "%20".repeat(trail))
}

/// `s` as a header value: encoded, `None` when empty or (not expected after encoding) still
/// not a valid value — such a value is left out, never passed on.
pub fn sanitize(s: &str) -> Option<HeaderValue> {
    value(encode(s, VALUE))
}

fn value(encoded: String) -> Option<HeaderValue> {
    if encoded.is_empty() || !encoded.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return None;
    }
    HeaderValue::from_str(&encoded).ok()
}

/// Bytes of one header on the wire: name, `: `, value, CRLF.
pub fn wire_len(name: &HeaderName, value: &HeaderValue) -> usize {
    name.as_str().len() + value.len() + 4
}

/// The identity headers of one answer.
#[derive(Debug, Default)]
pub struct Identity {
    /// Names are statics, so an answer kept beside a cached token costs 8 bytes per name.
    pub headers: Vec<(&'static HeaderName, HeaderValue)>,
    /// Whether the budget cut the group list or left a value out.
    pub truncated: bool,
}

/// The identity headers of `claims` in `set`, all together at most `budget` bytes on the
/// wire: single values in order of importance, each whole or not at all (a cut identifier
/// could name someone else); then the groups, cut at a group boundary and ended with
/// [`TRUNCATION_MARKER`] when they do not all fit.
pub fn identity(claims: &Claims, set: HeaderSet, budget: usize) -> Identity {
    let names = names(set);
    let mut out = Identity::default();
    let mut left = budget;
    for &(name, claim) in names.scalars {
        let Some(v) = claim.of(claims).and_then(sanitize) else {
            continue;
        };
        let len = wire_len(name, &v);
        if len <= left {
            left -= len;
            out.headers.push((name, v));
        } else {
            out.truncated = true;
        }
    }
    let groups: Vec<String> = claims
        .groups
        .iter()
        .filter(|g| !g.is_empty())
        .map(|g| encode(g, names.item))
        .collect();
    if groups.is_empty() {
        return out;
    }
    let name = names.groups;
    // Room for the value alone.
    let room = left.saturating_sub(name.as_str().len() + 4);
    let sep = names.separator.to_string();
    let all = groups.join(&sep);
    let joined = if all.len() <= room {
        all
    } else {
        out.truncated = true;
        let marker = encode(TRUNCATION_MARKER, names.item);
        let mut kept = String::new();
        for g in &groups {
            let extra = usize::from(!kept.is_empty()) + g.len();
            if kept.len() + extra + 1 + marker.len() > room {
                break;
            }
            if !kept.is_empty() {
                kept.push_str(&sep);
            }
            kept.push_str(g);
        }
        if !kept.is_empty() {
            kept.push_str(&sep);
        }
        kept.push_str(&marker);
        if kept.len() > room {
            return out;
        }
        kept
    };
    if let Some(v) = value(joined) {
        out.headers.push((name, v));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn claims(groups: &[&str]) -> Claims {
        Claims {
            sub: "u1".into(),
            email: Some("a@example.com".into()),
            name: Some("Alice Admin".into()),
            preferred_username: Some("alice".into()),
            organization_id: Some("org-1".into()),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            role: "admin".into(),
            scope: None,
            exp: 0,
            extra: Default::default(),
        }
    }

    fn get<'a>(id: &'a Identity, name: &str) -> Option<&'a str> {
        id.headers
            .iter()
            .find(|(n, _)| *n == name)
            .and_then(|(_, v)| v.to_str().ok())
    }

    #[test]
    fn issue_13_sanitiser_encodes_controls_non_ascii_and_percent() {
        let v = sanitize("Eve\r\nX-Injected: 1").expect("value");
        assert_eq!(v, "Eve%0D%0AX-Injected: 1");
        assert_eq!(sanitize("a\0b\tc\x7f").expect("value"), "a%00b%09c%7F");
        assert_eq!(sanitize("Zoë 100%").expect("value"), "Zo%C3%AB 100%25");
        assert_eq!(sanitize(" padded  ").expect("value"), "%20padded%20%20");
        assert_eq!(sanitize("   ").expect("value"), "%20%20%20");
        assert_eq!(
            sanitize("plain-ascii_1.2@x"),
            Some(HeaderValue::from_static("plain-ascii_1.2@x"))
        );
        assert_eq!(sanitize(""), None);
    }

    #[test]
    fn issue_13_both_sets_and_their_separators() {
        let c = claims(&["admins", "a,b", "c|d"]);
        let id = identity(&c, HeaderSet::Oauth2Proxy, 4096);
        assert!(!id.truncated);
        assert_eq!(get(&id, "x-auth-request-user"), Some("u1"));
        assert_eq!(get(&id, "x-auth-request-email"), Some("a@example.com"));
        assert_eq!(get(&id, "x-auth-request-preferred-username"), Some("alice"));
        assert_eq!(get(&id, "x-auth-request-org"), Some("org-1"));
        assert_eq!(get(&id, "x-auth-request-role"), Some("admin"));
        assert_eq!(get(&id, "x-auth-request-groups"), Some("admins,a%2Cb,c|d"));
        let id = identity(&c, HeaderSet::Authentik, 4096);
        assert_eq!(get(&id, "x-authentik-uid"), Some("u1"));
        assert_eq!(get(&id, "x-authentik-username"), Some("alice"));
        assert_eq!(get(&id, "x-authentik-name"), Some("Alice Admin"));
        assert_eq!(get(&id, "x-authentik-email"), Some("a@example.com"));
        assert_eq!(get(&id, "x-authentik-groups"), Some("admins|a,b|c%7Cd"));
        assert_eq!(id.headers.len(), 5);
        // Absent claims, absent headers; no groups, no groups header.
        let mut bare = claims(&[]);
        bare.email = None;
        let id = identity(&bare, HeaderSet::Oauth2Proxy, 4096);
        assert_eq!(get(&id, "x-auth-request-email"), None);
        assert_eq!(get(&id, "x-auth-request-groups"), None);
    }

    #[test]
    fn issue_13_long_group_lists_are_cut_at_a_boundary_with_the_marker() {
        let groups: Vec<String> = (0..500).map(|i| format!("group-{i:03}")).collect();
        let refs: Vec<&str> = groups.iter().map(String::as_str).collect();
        let id = identity(&claims(&refs), HeaderSet::Oauth2Proxy, 1024);
        assert!(id.truncated);
        let total: usize = id.headers.iter().map(|(n, v)| wire_len(n, v)).sum();
        assert!(total <= 1024, "{total}");
        let g = get(&id, "x-auth-request-groups").expect("groups");
        let items: Vec<&str> = g.split(',').collect();
        assert_eq!(items.last(), Some(&"%E2%80%A6"));
        assert!(items.len() > 10);
        for (i, item) in items[..items.len() - 1].iter().enumerate() {
            assert_eq!(*item, groups[i], "whole groups, in order");
        }
        assert!(
            get(&id, "x-auth-request-user").is_some(),
            "single values first"
        );
    }

    #[test]
    fn issue_13_a_value_too_large_for_the_budget_is_left_out_whole() {
        let mut c = claims(&["g"]);
        c.email = Some("e".repeat(300));
        let id = identity(&c, HeaderSet::Oauth2Proxy, 256);
        assert!(id.truncated);
        assert_eq!(get(&id, "x-auth-request-email"), None);
        assert_eq!(get(&id, "x-auth-request-user"), Some("u1"));
    }

    fn any_claims() -> impl Strategy<Value = Claims> {
        let text = || proptest::string::string_regex("(?s).{0,80}").expect("regex");
        (
            text(),
            proptest::option::of(text()),
            proptest::option::of(text()),
            proptest::option::of(text()),
            proptest::collection::vec(text(), 0..200),
            text(),
        )
            .prop_map(|(sub, email, name, user, groups, role)| Claims {
                sub,
                email,
                name,
                preferred_username: user.clone(),
                organization_id: user,
                groups,
                role,
                scope: None,
                exp: 0,
                extra: Default::default(),
            })
    }

    proptest! {
        /// Whatever the claims: every header is a valid value of printable ASCII only, and
        /// all of them together fit the budget.
        #[test]
        fn issue_13_every_header_is_clean_and_the_total_fits(
            c in any_claims(),
            budget in 256usize..6000,
            authentik in any::<bool>(),
        ) {
            let set = if authentik { HeaderSet::Authentik } else { HeaderSet::Oauth2Proxy };
            let id = identity(&c, set, budget);
            let mut total = 0;
            for (n, v) in &id.headers {
                prop_assert!(v.as_bytes().iter().all(|b| (0x20..0x7f).contains(b)), "{v:?}");
                prop_assert!(HeaderValue::from_bytes(v.as_bytes()).is_ok());
                prop_assert!(!v.as_bytes().starts_with(b" ") && !v.as_bytes().ends_with(b" "));
                total += wire_len(n, v);
            }
            prop_assert!(total <= budget, "{total} > {budget}");
        }
    }
}
