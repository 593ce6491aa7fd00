//! The request bodies of every endpoint that takes one, parsed as the handlers parse them:
//! `POST /v1/verify`, `/v1/codes`, `/v1/codes/redeem`, `/auth/exchange` and
//! `/v1/admin/sessions/revoke` (JSON through `extract::parse_json`), `/auth/backchannel-logout`
//! (form), and the query strings of `/auth/login` and `/auth/callback`.
#![no_main]

use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;
use tokend::extract::{parse_json, strip_bearer};
use tokend_shared::{IssueCodeRequest, RedeemRequest, RevokeRequest, VerifyRequest};

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = parse_json::<VerifyRequest>(data) {
        // verify_post strips an optional `Bearer ` prefix from the token.
        let token = strip_bearer(req.token.expose());
        assert!(token.len() <= req.token.expose().len());
    }
    let _ = parse_json::<IssueCodeRequest>(data);
    let _ = parse_json::<RedeemRequest>(data);
    let _ = parse_json::<RevokeRequest>(data);
    if let Some(t) = tokend::fuzzing::logout_token_field(data) {
        assert!(!t.is_empty());
    }
    if let Ok(q) = std::str::from_utf8(data) {
        if let Some(r) = tokend::fuzzing::login_redirect(q) {
            let _ = tokend::flow::safe_redirect(&r);
        }
        // /auth/callback: axum's Query<HashMap<String, String>> is serde_urlencoded.
        let _ = serde_urlencoded::from_str::<HashMap<String, String>>(q);
    }
});
