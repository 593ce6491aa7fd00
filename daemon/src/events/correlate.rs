//! Answering `GET /v1/admin/authentik/events`: the query's filter (action exact, user = username
//! or e-mail exact, limit) and the links from each event to the live tokend sessions of the same
//! user, computed at answer time (../shared/docs/authentik.md §9: Authentik's events carry no
//! token or session id, so the user is the key). A session matches by e-mail, or by its `sub`
//! equal to the event user's username, e-mail or pk — Authentik's `sub_mode`s `user_username`,
//! `user_email` and `user_id` (the default `hashed_user_id` cannot be computed from an event).

use serde_json::Value;
use tokend_shared::{AuthentikEvent, AuthentikEventQuery, SessionInfo, SessionLink};

/// Default number of events answered.
pub const DEFAULT_LIMIT: usize = 100;

/// Whether `e` passes the query's filters.
pub fn matches(e: &AuthentikEvent, q: &AuthentikEventQuery) -> bool {
    q.action.as_ref().is_none_or(|a| &e.action == a)
        && q.user.as_ref().is_none_or(|u| {
            e.username.as_ref() == Some(u) || e.email.as_ref().is_some_and(|m| m == u)
        })
}

/// The live sessions of `e`'s user. An anonymous user (a failed login of an unknown name)
/// links to nothing.
pub fn links(e: &AuthentikEvent, sessions: &[SessionInfo]) -> Vec<SessionLink> {
    let user = &e.user;
    if user.get("is_anonymous").and_then(Value::as_bool) == Some(true) {
        return Vec::new();
    }
    let field = |key: &str| {
        user.get(key)
            .and_then(|v| match v {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
            .filter(|s| !s.is_empty())
    };
    let email = field("email");
    let ids: Vec<String> = [field("username"), email.clone(), field("pk")]
        .into_iter()
        .flatten()
        .collect();
    if ids.is_empty() {
        return Vec::new();
    }
    sessions
        .iter()
        .filter_map(|s| {
            let by_email =
                matches!((&email, &s.email), (Some(a), Some(b)) if a.eq_ignore_ascii_case(b));
            let matched_by = if by_email {
                "email"
            } else if ids.iter().any(|id| id == &s.sub) {
                "sub"
            } else {
                return None;
            };
            Some(SessionLink {
                sid: s.sid.clone(),
                sub: s.sub.clone(),
                matched_by: matched_by.into(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(sub: &str, email: Option<&str>) -> SessionInfo {
        SessionInfo {
            sid: Some(format!("sid-{sub}")),
            sub: sub.into(),
            email: email.map(str::to_string),
            organization_id: None,
            role: "user".into(),
            created: 0,
            access_expires: 0,
            refresh_expires: 0,
            last_seen: 0,
        }
    }

    fn event(user: Value) -> AuthentikEvent {
        AuthentikEvent {
            pk: "1".into(),
            action: "login".into(),
            app: String::new(),
            created: String::new(),
            created_ms: 0,
            client_ip: None,
            username: user
                .get("username")
                .and_then(Value::as_str)
                .map(str::to_string),
            email: user
                .get("email")
                .and_then(Value::as_str)
                .map(str::to_string),
            user,
            context: serde_json::json!({}),
            brand: serde_json::json!({}),
            sessions: Vec::new(),
        }
    }

    #[test]
    fn issue_11_links_by_email_username_or_pk() {
        let sessions = [
            session("a1b2c3", Some("Jane@Example.com")),
            session("jane", None),
            session("7", None),
            session("bob", Some("bob@example.com")),
        ];
        let e =
            event(serde_json::json!({"pk": 7, "username": "jane", "email": "jane@example.com"}));
        let got: Vec<(String, String)> = links(&e, &sessions)
            .into_iter()
            .map(|l| (l.sub, l.matched_by))
            .collect();
        assert_eq!(
            got,
            [
                ("a1b2c3".to_string(), "email".to_string()),
                ("jane".into(), "sub".into()),
                ("7".into(), "sub".into())
            ]
        );
        let anon = event(serde_json::json!({"pk": 7, "username": "jane", "is_anonymous": true}));
        assert!(links(&anon, &sessions).is_empty());
        assert!(links(&event(serde_json::json!({})), &sessions).is_empty());
    }

    #[test]
    fn issue_11_filters_action_exactly_and_user_by_name_or_email() {
        let e = event(serde_json::json!({"username": "jane", "email": "jane@example.com"}));
        let q = |action: Option<&str>, user: Option<&str>| AuthentikEventQuery {
            action: action.map(str::to_string),
            user: user.map(str::to_string),
            limit: None,
        };
        assert!(matches(&e, &q(Some("login"), None)));
        assert!(
            !matches(&e, &q(Some("log"), None)),
            "exact, not Authentik's icontains"
        );
        assert!(matches(&e, &q(None, Some("jane"))));
        assert!(matches(&e, &q(None, Some("jane@example.com"))));
        assert!(!matches(&e, &q(None, Some("bob"))));
    }
}
