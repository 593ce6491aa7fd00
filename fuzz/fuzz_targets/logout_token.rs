//! Back-channel logout tokens (OpenID Connect Back-Channel Logout 1.0) and the logout path's
//! reading of an access token (`logout_subject`), with a fixed key set. Properties: a logout
//! token accepted is signed, from the issuer, for the client, unexpired, carries the logout
//! event and a `jti`, names a `sid` or `sub`, and has no nonce.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tokend_fuzz::{
    CLIENT_ID, assert_iss_aud, assert_signed, assert_times, decode, harness, run, tokens,
};

const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

fuzz_target!(|data: &[u8]| {
    let Some((asym_token, hs_token)) = tokens(data) else {
        return;
    };
    let h = harness();
    for (verifier, token) in [(&h.asym, &asym_token), (&h.hs, &hs_token)] {
        if let Ok(logout) = run(verifier.verify_logout_token(token)) {
            assert_signed(token);
            let c = decode(token).claims;
            assert_iss_aud(&c, CLIENT_ID);
            assert_times(&c, true);
            assert!(
                c.get("events")
                    .and_then(|e| e.get(EVENT))
                    .is_some_and(Value::is_object),
                "logout token without the logout event accepted"
            );
            assert!(
                !c.contains_key("nonce"),
                "logout token with a nonce accepted"
            );
            assert!(!logout.jti.is_empty(), "logout token without jti accepted");
            assert!(logout.sid.is_some() || logout.sub.is_some());
            assert!(logout.valid_until >= 0 || c.get("exp").and_then(Value::as_f64).is_some());
        }
        // The access token presented at logout may have expired (by at most `max_expired`).
        if let Ok(subject) = run(verifier.logout_subject(token, 3600)) {
            assert_signed(token);
            let c = decode(token).claims;
            assert_iss_aud(&c, CLIENT_ID);
            assert!(!subject.sub.is_empty());
        }
    }
});
