//! Access- and ID-token verification end to end, with a fixed key set: header, payload and
//! signature shapes, JSON oddities, huge and nested values, duplicate keys, numeric edge cases.
//! Property: a token accepted has a good signature, the issuer, the audience, and times that
//! hold (checked here independently of tokend).
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tokend_fuzz::{
    CLIENT_ID, NONCE, assert_iss_aud, assert_signed, assert_times, decode, harness, run, tokens,
};

fuzz_target!(|data: &[u8]| {
    let Some((asym_token, hs_token)) = tokens(data) else {
        return;
    };
    let h = harness();
    for (verifier, token) in [(&h.asym, &asym_token), (&h.hs, &hs_token)] {
        if let Ok(verified) = run(verifier.verify(token)) {
            assert_signed(token);
            let d = decode(token);
            assert_iss_aud(&d.claims, CLIENT_ID);
            assert_times(&d.claims, true);
            assert!(
                d.claims.get("sub").and_then(Value::as_str) == Some(verified.sub()),
                "accepted token's sub differs from the one reported"
            );
            assert!(!verified.sub().is_empty(), "accepted token without sub");
            assert!(
                !d.claims.contains_key("events"),
                "logout token accepted as access token"
            );
        }
        if let Ok(claims) = run(verifier.verify_id_token(token, NONCE)) {
            assert_signed(token);
            assert_iss_aud(&claims, CLIENT_ID);
            assert_times(&claims, true);
            assert_eq!(claims.get("nonce").and_then(Value::as_str), Some(NONCE));
            if let Some(azp) = claims.get("azp") {
                assert_eq!(azp.as_str(), Some(CLIENT_ID), "ID token for another party");
            }
        }
    }
});
