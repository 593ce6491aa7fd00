//! Reading requests: JSON bodies, cookies and bearer tokens, with errors that never quote
//! what the client sent.

use axum::http::{HeaderMap, header};
use tokend_shared::{Reason, Secret};

use crate::error::ApiError;

/// The value of cookie `name`, if present and not empty.
pub fn cookie_value(headers: &HeaderMap, name: &str) -> Option<Secret> {
    cookie_in(headers, name).map(Secret::new)
}

/// [`cookie_value`], borrowed from the request.
fn cookie_in<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| cookie::Cookie::split_parse(v).flatten())
        .find(|c| c.name() == name && !c.value().is_empty())
        .and_then(|c| c.value_raw())
}

/// The reference design's order: the cookie when there is one (it decides, even when its token
/// is invalid), else the Bearer header.
pub fn token_from_headers(headers: &HeaderMap, cookie_name: &str) -> Result<Secret, ApiError> {
    token_in_headers(headers, cookie_name).map(Secret::new)
}

/// [`token_from_headers`], borrowed from the request: the hot path (`GET /v1/verify`) makes
/// no copy of the token (a copy would have to be a [`Secret`], zeroed when dropped; the
/// request's own bytes are hyper's).
pub fn token_in_headers<'h>(
    headers: &'h HeaderMap,
    cookie_name: &str,
) -> Result<&'h str, ApiError> {
    if let Some(token) = cookie_in(headers, cookie_name) {
        return Ok(token);
    }
    match headers.get(header::AUTHORIZATION).map(|v| v.to_str()) {
        Some(Ok(v)) if v.len() > 7 && has_bearer_prefix(v) => Ok(v[7..].trim()),
        Some(_) => Err(ApiError::inactive(
            Reason::MissingToken,
            "the Authorization header is not a Bearer token",
        )),
        None => Err(ApiError::inactive(
            Reason::MissingToken,
            format!("no `{cookie_name}` cookie and no Authorization: Bearer header"),
        )),
    }
}

/// Whether `s` starts with `Bearer ` (any case). Never slices inside a character: the token
/// of a JSON body may be any text (issue #9: `{"token": "ééééé"}` panicked).
fn has_bearer_prefix(s: &str) -> bool {
    s.get(..7)
        .is_some_and(|p| p.eq_ignore_ascii_case("bearer "))
}

/// A token with an optional `Bearer ` prefix, without it.
pub fn strip_bearer(token: &str) -> &str {
    let token = token.trim();
    if token.len() > 7 && has_bearer_prefix(token) {
        token[7..].trim_start()
    } else {
        token
    }
}

/// Parses a JSON body. Error messages give the position and kind, never input text.
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        let what = match e.classify() {
            serde_json::error::Category::Io | serde_json::error::Category::Eof => "incomplete JSON",
            serde_json::error::Category::Syntax => "invalid JSON",
            serde_json::error::Category::Data => "JSON of the wrong shape",
        };
        let hint = if e.classify() == serde_json::error::Category::Data {
            // serde's message for missing/unknown fields names only field names; other data
            // errors may quote the input, so they are left out.
            let msg = e.to_string();
            if msg.starts_with("missing field") || msg.starts_with("unknown field") {
                format!(" ({})", msg.split(" at line").next().unwrap_or(""))
            } else {
                String::new()
            }
        } else {
            String::new()
        };
        ApiError::new(
            Reason::BadRequest,
            format!(
                "request body is {what}{hint} at line {} column {}",
                e.line(),
                e.column()
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use tokend_shared::VerifyRequest;

    #[test]
    fn cookie_wins_over_bearer() {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer from-header"),
        );
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=b; ecosire_auth=from-cookie"),
        );
        let t = token_from_headers(&h, "ecosire_auth").expect("found");
        assert_eq!(t.expose(), "from-cookie");
        h.remove(header::COOKIE);
        let t = token_from_headers(&h, "ecosire_auth").expect("found");
        assert_eq!(t.expose(), "from-header");
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic dXNlcjpwYXNz"),
        );
        assert!(token_from_headers(&h, "ecosire_auth").is_err());
    }

    /// Issue #9 (found by the request_bodies fuzz target): a token whose 7th byte is inside
    /// a multibyte character made `strip_bearer` panic (`POST /v1/verify`).
    #[test]
    fn issue_9_strip_bearer_does_not_split_a_character() {
        assert_eq!(strip_bearer("ééééé"), "ééééé");
        assert_eq!(strip_bearer("abcdeéfg"), "abcdeéfg");
        assert_eq!(strip_bearer("beareré x"), "beareré x");
        assert_eq!(strip_bearer("Bearer ééé"), "ééé");
        assert_eq!(strip_bearer("  bEaReR  tok "), "tok");
        let req = parse_json::<VerifyRequest>("{\"token\": \"ééééé\"}".as_bytes()).expect("ok");
        assert_eq!(strip_bearer(req.token.expose()), "ééééé");
    }

    #[test]
    fn json_errors_never_quote_the_input() {
        let err = parse_json::<VerifyRequest>(br#"{"token": 12345678}"#).expect_err("bad type");
        assert!(!err.message.contains("12345678"), "{}", err.message);
        let err = parse_json::<VerifyRequest>(br#"{"tokn": "eyJsecret"}"#).expect_err("unknown");
        assert!(
            err.message.contains("unknown field `tokn`"),
            "{}",
            err.message
        );
        assert!(!err.message.contains("eyJsecret"), "{}", err.message);
        let err = parse_json::<VerifyRequest>(b"{").expect_err("eof");
        assert_eq!(err.reason, Reason::BadRequest);
    }
}
