//! Property tests (issue #9): a token accepted implies that its signature, issuer, audience
//! and time checks all passed — over generated claims, headers and signature tamperings, with
//! numeric edge cases — and a token that passes them all is accepted.

use proptest::prelude::*;
use serde_json::{Value, json};

use super::tests::{ISSUER, hs_token, verifier};
use super::{VerifyError, now_unix};

/// The verifier's leeway (the default, 60s) and slack for a slow test run.
const LEEWAY: i64 = 60;
const SLACK: i64 = 5;

#[derive(Debug, Clone)]
enum Time {
    Offset(i64),
    Float(f64),
    Extreme(i64),
    Text,
    Absent,
}

fn time() -> impl Strategy<Value = Time> {
    prop_oneof![
        4 => (-100_000i64..100_000).prop_map(Time::Offset),
        1 => (-1e12f64..1e12).prop_map(Time::Float),
        1 => prop_oneof![Just(i64::MIN), Just(i64::MAX), Just(0), Just(-1)].prop_map(Time::Extreme),
        1 => Just(Time::Text),
        1 => Just(Time::Absent),
    ]
}

impl Time {
    /// The claim value, and the time it stands for (`None`: absent or not a number).
    fn value(&self, now: i64) -> (Option<Value>, Option<f64>) {
        match self {
            Time::Offset(o) => (Some(json!(now + o)), Some((now + o) as f64)),
            Time::Float(f) => (Some(json!(now as f64 + f)), Some(now as f64 + f)),
            Time::Extreme(v) => (Some(json!(v)), Some(*v as f64)),
            Time::Text => (Some(json!("soon")), None),
            Time::Absent => (None, None),
        }
    }
}

#[derive(Debug, Clone)]
enum Tamper {
    None,
    FlipSignature,
    OtherPayload,
    DropSignature,
    AlgNone,
}

fn tamper() -> impl Strategy<Value = Tamper> {
    prop_oneof![
        6 => Just(Tamper::None),
        1 => Just(Tamper::FlipSignature),
        1 => Just(Tamper::OtherPayload),
        1 => Just(Tamper::DropSignature),
        1 => Just(Tamper::AlgNone),
    ]
}

fn iss() -> impl Strategy<Value = Value> {
    prop_oneof![
        6 => Just(json!(ISSUER)),
        1 => Just(json!(ISSUER.trim_end_matches('/'))),
        1 => Just(json!("https://evil.example/application/o/shop/")),
        1 => Just(json!(7)),
        1 => Just(Value::Null),
    ]
}

fn aud() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => Just(json!("shop")),
        2 => Just(json!(["other", "shop"])),
        1 => Just(json!(["other"])),
        1 => Just(json!("SHOP")),
        1 => Just(json!([["shop"]])),
        1 => Just(Value::Null),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Issue #9: accepted ⇒ signature, issuer, audience, exp, nbf and iat all passed; and a
    /// token that passes all of them (and is an access token) is accepted.
    #[test]
    fn issue_9_accepted_tokens_passed_every_check(
        iss in iss(), aud in aud(), exp in time(), iat in time(),
        nbf in prop_oneof![3 => Just(Time::Absent), 1 => time()],
        tamper in tamper(),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        // One verifier for all cases (building one costs milliseconds): a token accepted
        // is cached, which the property must hold through as well.
        static VERIFIER: std::sync::OnceLock<super::Verifier> = std::sync::OnceLock::new();
        let v = VERIFIER.get_or_init(verifier);
        let now = now_unix();
        let mut claims = json!({"sub": "alice", "sid": "s1", "azp": "shop", "uid": "u"});
        let mut times = [None, None, None];
        for (i, (name, t)) in [("exp", &exp), ("iat", &iat), ("nbf", &nbf)].into_iter().enumerate() {
            let (value, at) = t.value(now);
            if let Some(value) = value {
                claims[name] = value;
            }
            times[i] = at;
        }
        if !iss.is_null() {
            claims["iss"] = iss.clone();
        }
        if !aud.is_null() {
            claims["aud"] = aud.clone();
        }
        let mut token = hs_token(json!({}), &claims);
        match tamper {
            Tamper::None => {}
            Tamper::FlipSignature => {
                let last = token.pop().expect("signature");
                token.push(if last == 'A' { 'B' } else { 'A' });
            }
            Tamper::OtherPayload => {
                let other = hs_token(json!({}), &json!({"sub": "mallory"}));
                let mut parts: Vec<&str> = token.split('.').collect();
                parts[1] = other.split('.').nth(1).expect("payload");
                token = parts.join(".");
            }
            Tamper::DropSignature => {
                token.truncate(token.rfind('.').expect("dot") + 1);
            }
            Tamper::AlgNone => {
                use base64::Engine;
                let none = base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .encode(br#"{"alg":"none","typ":"JWT"}"#);
                let rest = token.split_once('.').expect("dot").1.to_string();
                token = format!("{none}.{rest}");
            }
        }
        let result = rt.block_on(v.verify(&token));
        let [exp_at, iat_at, nbf_at] = times;
        let lo = (now - LEEWAY - SLACK) as f64;
        let hi = (now + LEEWAY + SLACK) as f64;
        let signature_ok = matches!(tamper, Tamper::None);
        let iss_ok = iss == json!(ISSUER);
        let aud_ok = aud == json!("shop") || aud == json!(["other", "shop"]);
        let exp_ok = exp_at.is_some_and(|e| e >= lo);
        let iat_ok = iat_at.is_some_and(|i| i <= hi);
        let nbf_ok = matches!(nbf, Time::Absent) || nbf_at.is_some_and(|n| n <= hi);
        if let Ok(verified) = &result {
            prop_assert!(signature_ok, "accepted with tampering {tamper:?}");
            prop_assert!(iss_ok, "accepted with iss {iss}");
            prop_assert!(aud_ok, "accepted with aud {aud}");
            prop_assert!(exp_ok, "accepted with exp {exp:?}");
            prop_assert!(iat_ok, "accepted with iat {iat:?}");
            prop_assert!(nbf_ok, "accepted with nbf {nbf:?}");
            prop_assert_eq!(verified.sub(), "alice");
        }
        // Clearly inside every window (away from the edges the slack blurs): accepted.
        let inside = |t: Option<f64>, lo: f64, hi: f64| t.is_some_and(|t| t > lo && t < hi);
        let clear_exp = inside(exp_at, (now + SLACK) as f64, f64::MAX);
        let clear_iat = inside(iat_at, f64::MIN, (now - SLACK) as f64);
        let clear_nbf = matches!(nbf, Time::Absent) || inside(nbf_at, f64::MIN, (now - SLACK) as f64);
        if signature_ok && iss_ok && aud_ok && clear_exp && clear_iat && clear_nbf {
            prop_assert!(result.is_ok(), "a token passing every check was refused: {:?}", result.err());
        }
        // Whatever the outcome, a refusal says why with a stable reason.
        if let Err(e) = result {
            let _: VerifyError = e.clone();
            let _ = e.reason();
        }
    }
}
