//! Claim mapping: turns a verified token's claims into the API's [`Claims`] (organization,
//! groups → role, the rest kept aside) and renders the `200` body of `/v1/verify`.

use bytes::Bytes;
use serde_json::{Map, Value};
use tokend_shared::Claims;

use crate::config::{ClaimsConfig, OrganizationFallback, RoleRule};

/// Turns verified token claims into the API's [`Claims`].
#[derive(Debug, Clone)]
pub struct ClaimMapper {
    organization_claim: String,
    organization_fallback: OrganizationFallback,
    groups_claim: String,
    roles: Vec<RoleRule>,
    default_role: String,
}

impl ClaimMapper {
    pub fn new(cfg: &ClaimsConfig) -> Self {
        Self {
            organization_claim: cfg.organization_claim.clone(),
            organization_fallback: cfg.organization_fallback,
            groups_claim: cfg.groups_claim.clone(),
            roles: cfg.roles.clone(),
            default_role: cfg.default_role.clone(),
        }
    }

    /// `sub` and `exp` have been checked by the caller.
    pub fn map(&self, mut all: Map<String, Value>, sub: String, exp: i64) -> Claims {
        let mut take_string = |name: &str| match all.remove(name) {
            Some(Value::String(s)) => Some(s),
            Some(other) => {
                // Not a string: leave it visible among the other claims.
                all.insert(name.to_string(), other);
                None
            }
            None => None,
        };
        let email = take_string("email");
        let name = take_string("name");
        let preferred_username = take_string("preferred_username");
        let organization_id = match all.remove(&self.organization_claim) {
            Some(Value::String(s)) if !s.is_empty() => Some(s),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => match self.organization_fallback {
                OrganizationFallback::Sub => Some(sub.clone()),
                OrganizationFallback::Absent => None,
            },
        };
        let groups: Vec<String> = match all.remove(&self.groups_claim) {
            Some(Value::Array(items)) => items
                .into_iter()
                .filter_map(|g| match g {
                    Value::String(s) => Some(s),
                    _ => None,
                })
                .collect(),
            Some(Value::String(s)) => vec![s],
            _ => Vec::new(),
        };
        let scope = match all.remove("scope") {
            Some(Value::String(s)) => Some(s),
            Some(Value::Array(items)) => Some(
                items
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
            _ => None,
        };
        all.remove("sub");
        all.remove("exp");
        let role = self
            .roles
            .iter()
            .find(|r| groups.contains(&r.group))
            .map_or_else(|| self.default_role.clone(), |r| r.role.clone());
        Claims {
            sub,
            email,
            name,
            preferred_username,
            organization_id,
            groups,
            role,
            scope,
            exp,
            extra: all,
        }
    }
}

/// The `200` body of `/v1/verify`: `{"active":true,"claims":{…}}` — the shape of
/// [`tokend_shared::VerifyResponse`], rendered from borrowed claims.
pub(super) fn render_active(claims: &Claims) -> Bytes {
    #[derive(serde::Serialize)]
    struct Active<'a> {
        active: bool,
        claims: &'a Claims,
    }
    // Exactly sized (a `Vec`'s spare capacity would stay allocated for as long as the verified
    // token is cached, and `Bytes::from` a `Vec` with spare room allocates a header too).
    serde_json::to_vec(&Active {
        active: true,
        claims,
    })
    .map(|v| Bytes::from(v.into_boxed_slice()))
    .unwrap_or_default()
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use serde_json::json;

    pub(in crate::verify) fn mapper() -> ClaimMapper {
        ClaimMapper::new(&ClaimsConfig::default())
    }

    pub(in crate::verify) fn claims(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn maps_authentik_claims_and_first_matching_role_wins() {
        let c = mapper().map(
            claims(json!({
                "sub": "u1", "exp": 10, "iss": "i", "email": "a@x", "name": "A",
                "preferred_username": "a", "organizationId": "org-1",
                "groups": ["staff", "ecosire-support", "ecosire-admins"],
                "scope": "openid email", "sid": "s1"
            })),
            "u1".into(),
            10,
        );
        assert_eq!(c.role, "admin", "rules are ordered: admins before support");
        assert_eq!(c.organization_id.as_deref(), Some("org-1"));
        assert_eq!(c.email.as_deref(), Some("a@x"));
        assert_eq!(c.scope.as_deref(), Some("openid email"));
        assert_eq!(c.groups.len(), 3);
        assert_eq!(c.extra.get("sid"), Some(&json!("s1")));
        assert_eq!(c.extra.get("iss"), Some(&json!("i")));
        assert!(!c.extra.contains_key("groups") && !c.extra.contains_key("sub"));
    }

    #[test]
    fn organization_falls_back_to_sub_and_role_to_default() {
        let c = mapper().map(
            claims(json!({"sub": "u2", "groups": ["other"]})),
            "u2".into(),
            1,
        );
        assert_eq!(c.organization_id.as_deref(), Some("u2"));
        assert_eq!(c.role, "user");
        let c = mapper().map(claims(json!({"sub": "u3"})), "u3".into(), 1);
        assert!(c.groups.is_empty());
        assert_eq!(c.role, "user");
    }

    /// Issue #8 (mutation testing): an empty organization is no organization (the fallback
    /// applies), a numeric one is its decimal text, and a `scope` array is joined by spaces.
    #[test]
    fn issue_8_empty_organization_falls_back_and_scope_arrays_join() {
        let c = mapper().map(
            claims(json!({"organizationId": "", "scope": ["openid", "email", 7]})),
            "u4".into(),
            1,
        );
        assert_eq!(c.organization_id.as_deref(), Some("u4"));
        assert_eq!(c.scope.as_deref(), Some("openid email"));
        let c = mapper().map(claims(json!({"organizationId": 42})), "u5".into(), 1);
        assert_eq!(c.organization_id.as_deref(), Some("42"));
    }

    /// Issue #7: with `organization_fallback = "none"` a token without the organization claim
    /// has no `organizationId` (left out of the JSON), instead of `sub`.
    #[test]
    fn issue_7_organization_fallback_none_leaves_it_absent() {
        let cfg: ClaimsConfig = toml::from_str("organization_fallback = \"none\"").expect("valid");
        assert_eq!(cfg.organization_fallback, OrganizationFallback::Absent);
        let none = ClaimMapper::new(&cfg);
        let c = none.map(claims(json!({"sub": "u"})), "u".into(), 1);
        assert_eq!(c.organization_id, None);
        let body: Value = serde_json::from_slice(&render_active(&c)).expect("json");
        assert!(
            body["claims"].get("organizationId").is_none(),
            "left out, not null: {body}"
        );
        let back: tokend_shared::VerifyResponse =
            serde_json::from_slice(&render_active(&c)).expect("a VerifyResponse");
        assert_eq!(back.claims.and_then(|c| c.organization_id), None);
        // The claim itself still counts, and the default still falls back to sub.
        let c = none.map(
            claims(json!({"sub": "u", "organizationId": "o"})),
            "u".into(),
            1,
        );
        assert_eq!(c.organization_id.as_deref(), Some("o"));
        let c = mapper().map(claims(json!({"sub": "u"})), "u".into(), 1);
        assert_eq!(c.organization_id.as_deref(), Some("u"));
        assert_eq!(
            ClaimsConfig::default().organization_fallback,
            OrganizationFallback::Sub
        );
    }

    #[test]
    fn configurable_claim_names_and_rules() {
        let cfg: ClaimsConfig = toml::from_str(
            r#"
organization_claim = "tenant"
groups_claim = "roles"
default_role = "guest"
roles = [{ group = "ops", role = "operator" }]
"#,
        )
        .expect("valid");
        let c = ClaimMapper::new(&cfg).map(
            claims(json!({"sub": "u", "tenant": 42, "roles": "ops", "email": 5})),
            "u".into(),
            1,
        );
        assert_eq!(c.organization_id.as_deref(), Some("42"));
        assert_eq!(c.groups, vec!["ops".to_string()]);
        assert_eq!(c.role, "operator");
        assert_eq!(c.email, None);
        assert_eq!(
            c.extra.get("email"),
            Some(&json!(5)),
            "non-string kept aside"
        );
    }

    #[test]
    fn rendered_body_is_a_verify_response() {
        let c = mapper().map(claims(json!({"sub": "u", "email": "e"})), "u".into(), 7);
        let back: tokend_shared::VerifyResponse =
            serde_json::from_slice(&render_active(&c)).expect("a VerifyResponse");
        assert!(back.active);
        assert_eq!(back.claims, Some(c));
        assert_eq!(back.reason, None);
    }
}
