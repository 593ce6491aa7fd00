//! One page of Authentik's Events API: `GET {origin}/api/v3/events/events/?ordering=-created
//! &page_size=N&page=P` with the API token as Bearer, through the provider's HTTP client (so an
//! `internal_url` deployment sends the public Host), and its `PaginatedEventList` read into
//! [`AuthentikEvent`]s. `action` stays a string; `user`, `context` and `brand` stay free-form.

use reqwest::header;
use serde::Deserialize;
use serde_json::Value;
use tokend_shared::{AuthentikEvent, Secret};

use crate::provider::{ProviderError, Upstream};

/// Largest page body read (100 events with their contexts fit many times over).
const MAX_PAGE_BODY: usize = 8 * 1024 * 1024;

/// Why a page could not be read. Messages never contain the API token.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error(
        "Authentik refused the API token (HTTP 401): the API token is invalid or expired; \
         expiring API tokens rotate daily — create one with expiring: false"
    )]
    Unauthorized,
    #[error(
        "Authentik answered HTTP 403: the token's user needs the permission \
         authentik_events.view_event"
    )]
    Forbidden,
    #[error("{url} answered HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("request to {url} failed: {message}")]
    Request { url: String, message: String },
    #[error("{url} sent more than {MAX_PAGE_BODY} bytes")]
    TooLarge { url: String },
    #[error("{url} did not send an event list: {message}")]
    Json { url: String, message: String },
    #[error(transparent)]
    Provider(#[from] ProviderError),
}

impl FetchError {
    /// The HTTP status, when Authentik answered one.
    pub fn status(&self) -> Option<u16> {
        match self {
            FetchError::Unauthorized => Some(401),
            FetchError::Forbidden => Some(403),
            FetchError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The metrics label of this outcome.
    pub fn label(&self) -> &'static str {
        match self {
            FetchError::Unauthorized => "unauthorized",
            FetchError::Forbidden => "forbidden",
            FetchError::Status { .. } => "http_error",
            FetchError::Request { .. } | FetchError::Provider(_) => "unreachable",
            FetchError::TooLarge { .. } | FetchError::Json { .. } => "invalid",
        }
    }
}

/// `PaginatedEventList`; `autocomplete` (required by the schema) is not needed here.
#[derive(Debug, Deserialize)]
struct PageBody {
    pagination: Pagination,
    results: Vec<RawEvent>,
}

/// `Pagination`: numbers; `next` is 0 when there is no next page.
#[derive(Debug, Deserialize)]
struct Pagination {
    #[serde(default)]
    next: f64,
}

/// `Event` as sent.
#[derive(Debug, Deserialize)]
struct RawEvent {
    pk: String,
    action: String,
    #[serde(default)]
    app: String,
    #[serde(default)]
    user: Value,
    #[serde(default)]
    context: Value,
    #[serde(default)]
    client_ip: Option<String>,
    created: String,
    #[serde(default)]
    brand: Value,
}

/// One page: its events (newest first) and whether there is a next one.
#[derive(Debug)]
pub struct Page {
    pub events: Vec<AuthentikEvent>,
    pub next: Option<u32>,
}

/// Reads pages of the Events API.
#[derive(Debug)]
pub struct EventsClient {
    upstream: Upstream,
    /// `{issuer origin}/api/v3/events/events/` (rewritten to `internal_url` by `upstream`).
    url: String,
    token: Secret,
    page_size: u32,
}

impl EventsClient {
    pub fn new(upstream: Upstream, token: Secret, page_size: u32) -> Result<Self, FetchError> {
        let issuer = reqwest::Url::parse(upstream.issuer()).map_err(|e| {
            FetchError::Provider(ProviderError::Url {
                url: upstream.issuer().to_string(),
                message: e.to_string(),
            })
        })?;
        let url = format!(
            "{}/api/v3/events/events/",
            issuer.origin().ascii_serialization()
        );
        Ok(Self {
            upstream,
            url,
            token,
            page_size,
        })
    }

    /// Where requests really go (the internal URL when configured), without query.
    pub fn effective_url(&self) -> String {
        self.upstream
            .effective_url(&self.url)
            .map_or_else(|_| self.url.clone(), |(u, _)| u.to_string())
    }

    /// Page `page` (from 1), newest first.
    pub async fn page(&self, page: u32) -> Result<Page, FetchError> {
        let url = format!(
            "{}?ordering=-created&page_size={}&page={page}",
            self.url, self.page_size
        );
        let request_err = |e: reqwest::Error| FetchError::Request {
            url: self.url.clone(),
            message: crate::provider::error_chain(&e),
        };
        let mut resp = self
            .upstream
            .request(reqwest::Method::GET, &url)?
            .header(header::ACCEPT, "application/json")
            .bearer_auth(self.token.expose())
            .send()
            .await
            .map_err(request_err)?;
        match resp.status().as_u16() {
            200..=299 => {}
            401 => return Err(FetchError::Unauthorized),
            403 => return Err(FetchError::Forbidden),
            status => {
                return Err(FetchError::Status {
                    url: self.url.clone(),
                    status,
                });
            }
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(request_err)? {
            if body.len() + chunk.len() > MAX_PAGE_BODY {
                return Err(FetchError::TooLarge {
                    url: self.url.clone(),
                });
            }
            body.extend_from_slice(&chunk);
        }
        parse_page(&body).map_err(|message| FetchError::Json {
            url: self.url.clone(),
            message,
        })
    }
}

/// Reads a `PaginatedEventList` body; the error is serde's message (which quotes no input).
pub fn parse_page(body: &[u8]) -> Result<Page, String> {
    let page: PageBody = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let next = page.pagination.next;
    Ok(Page {
        events: page.results.into_iter().map(convert).collect(),
        next: (next >= 1.0 && next < f64::from(u32::MAX)).then_some(next as u32),
    })
}

fn convert(e: RawEvent) -> AuthentikEvent {
    let object = |v: Value| {
        if v.is_null() {
            Value::Object(Default::default())
        } else {
            v
        }
    };
    let text = |v: &Value, key: &str| {
        v.get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    // A failed login of an unknown name has the anonymous user and the attempted name in
    // the context.
    let anonymous = e.user.get("is_anonymous").and_then(Value::as_bool) == Some(true);
    let username = if anonymous {
        text(&e.context, "username").or_else(|| text(&e.user, "username"))
    } else {
        text(&e.user, "username").or_else(|| text(&e.context, "username"))
    };
    let email = text(&e.user, "email");
    AuthentikEvent {
        created_ms: created_ms(&e.created),
        pk: e.pk,
        action: e.action,
        app: e.app,
        created: e.created,
        client_ip: e.client_ip,
        username,
        email,
        user: object(e.user),
        context: object(e.context),
        brand: object(e.brand),
        sessions: Vec::new(),
    }
}

/// RFC 3339 `created` as Unix milliseconds; 0 when it does not parse.
fn created_ms(created: &str) -> i64 {
    humantime::parse_rfc3339_weak(created.trim_end_matches('Z'))
        .ok()
        .or_else(|| humantime::parse_rfc3339(created).ok())
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_11_reads_authentik_shapes_custom_actions_and_zero_next() {
        let body = serde_json::json!({
            "pagination": {"next": 0, "previous": 0, "count": 2, "current": 1,
                           "total_pages": 1, "start_index": 1, "end_index": 2},
            "results": [
                {"pk": "f00f54e7-2b38-421f-bc78-e61f950048d6",
                 "user": {"pk": 1, "email": "root@localhost", "username": "akadmin"},
                 "action": "login", "app": "authentik.events.signals",
                 "context": {"auth_method": "password"}, "client_ip": "203.0.113.7",
                 "created": "2023-02-15T15:33:42.771091Z", "expires": "2024-02-15T15:33:42Z",
                 "brand": {"name": "Default brand"}},
                {"pk": "0b5a…", "user": {"pk": 0, "username": "AnonymousUser",
                 "is_anonymous": true}, "action": "custom_my_thing", "app": "x",
                 "context": {"username": "mallory"}, "client_ip": null,
                 "created": "2026-12-01T10:00:00Z"}
            ],
            "autocomplete": {}
        });
        let page = parse_page(body.to_string().as_bytes()).expect("page");
        assert_eq!(page.next, None);
        let [login, custom] = &page.events[..] else {
            panic!("two events")
        };
        assert_eq!(login.action, "login");
        assert_eq!(login.username.as_deref(), Some("akadmin"));
        assert_eq!(login.email.as_deref(), Some("root@localhost"));
        assert_eq!(login.created_ms, 1_676_475_222_771);
        assert_eq!(custom.action, "custom_my_thing");
        assert_eq!(custom.client_ip, None);
        assert_eq!(custom.brand, serde_json::json!({}));
        assert_eq!(
            custom.username.as_deref(),
            Some("mallory"),
            "the attempted name"
        );
        let two = parse_page(br#"{"pagination":{"next":2},"results":[]}"#).expect("page");
        assert_eq!(two.next, Some(2));
        assert!(parse_page(br#"{"results":[]}"#).is_err());
    }
}
