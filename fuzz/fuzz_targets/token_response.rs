//! The token endpoint's response, parsed as openidconnect parses it for the code exchange and
//! the refresh grant (`CoreTokenResponse`, or the RFC 6749 error response), then read the way
//! the flow reads it: its access token and ID token go to the verifier (fixed keys, HS mode).
#![no_main]

use libfuzzer_sys::fuzz_target;
use openidconnect::core::{CoreErrorResponseType, CoreTokenResponse};
use openidconnect::{OAuth2TokenResponse, StandardErrorResponse, TokenResponse};
use tokend_fuzz::{NONCE, harness, run};

fuzz_target!(|data: &[u8]| {
    if let Ok(e) = serde_json::from_slice::<StandardErrorResponse<CoreErrorResponseType>>(data) {
        let _ = e.error().to_string();
    }
    let Ok(response) = serde_json::from_slice::<CoreTokenResponse>(data) else {
        return;
    };
    let h = harness();
    let access = response.access_token().secret().clone();
    let _ = response.refresh_token().map(|r| r.secret().len());
    let _ = response.expires_in();
    let _ = response.scopes();
    let _ = run(h.hs.verify_uncached(&access));
    if let Some(id) = response.id_token() {
        let id = id.to_string();
        let _ = run(h.hs.verify_id_token(&id, NONCE));
        let _ = run(h.asym.verify_id_token(&id, NONCE));
    }
});
