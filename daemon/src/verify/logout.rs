//! Logout: verifying back-channel logout tokens (OpenID Connect Back-Channel Logout 1.0) and
//! finding the session an access token names when its user logs out.

use serde_json::Value;

use super::jws::{numeric, short};
use super::{Verifier, VerifyError, now_unix};

/// The claims of a verified back-channel logout token.
#[derive(Debug, Clone, PartialEq)]
pub struct LogoutClaims {
    pub sid: Option<String>,
    pub sub: Option<String>,
    pub jti: String,
    /// Until when the jti must be remembered.
    pub valid_until: i64,
}

/// The session an access token belongs to, as logout needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct LogoutSubject {
    pub sid: Option<String>,
    pub sub: String,
}

impl Verifier {
    /// Who an access token names, for logout: its signature, issuer and audience must be
    /// good, but its `exp` may have passed by up to `max_expired` seconds — by the time a user
    /// logs out, the browser's access cookie has usually expired (issue #7).
    pub async fn logout_subject(
        &self,
        token: &str,
        max_expired: i64,
    ) -> Result<LogoutSubject, VerifyError> {
        let signed = self.signed(token).await?;
        let c = &signed.claims;
        let now = now_unix();
        let exp = numeric(c, "exp")?.ok_or(VerifyError::MissingClaim("exp"))?;
        if now > exp.saturating_add(self.leeway).saturating_add(max_expired) {
            return Err(VerifyError::Expired(now.saturating_sub(exp)));
        }
        self.check_iss_aud(c, &self.audience)?;
        if c.contains_key("events") {
            return Err(VerifyError::WrongTokenType(
                "this is a logout token (it has an `events` claim)".into(),
            ));
        }
        let sub = match c.get("sub") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            _ => return Err(VerifyError::MissingClaim("sub")),
        };
        Ok(LogoutSubject {
            sid: c.get("sid").and_then(Value::as_str).map(str::to_owned),
            sub,
        })
    }

    /// Verifies a back-channel logout token (OpenID Connect Back-Channel Logout 1.0 §2.6).
    pub async fn verify_logout_token(&self, token: &str) -> Result<LogoutClaims, VerifyError> {
        let signed = self.signed(token).await?;
        if let Some(typ) = &signed.typ
            && !typ.eq_ignore_ascii_case("logout+jwt")
            && !typ.eq_ignore_ascii_case("application/logout+jwt")
            && !typ.eq_ignore_ascii_case("jwt")
        {
            return Err(VerifyError::WrongTokenType(format!(
                "typ {:?} is not logout+jwt",
                short(typ)
            )));
        }
        let c = &signed.claims;
        let now = now_unix();
        let iat = numeric(c, "iat")?.ok_or(VerifyError::MissingClaim("iat"))?;
        if iat > now.saturating_add(self.leeway) {
            return Err(VerifyError::NotYetValid("iat lies in the future".into()));
        }
        // RFC 7519 §4.1.5, as for access tokens (issue #9: a logout token valid only in the
        // future was accepted).
        if let Some(nbf) = numeric(c, "nbf")?
            && nbf > now.saturating_add(self.leeway)
        {
            return Err(VerifyError::NotYetValid(format!(
                "not valid before {nbf} (nbf), {}s from now",
                nbf.saturating_sub(now)
            )));
        }
        // Back-Channel Logout 1.0 §2.4 requires `exp`; a token without it is refused.
        let exp = numeric(c, "exp")?.ok_or(VerifyError::MissingClaim("exp"))?;
        if now > exp.saturating_add(self.leeway) {
            return Err(VerifyError::Expired(now.saturating_sub(exp)));
        }
        self.check_iss_aud(c, &self.client_id)?;
        let event_ok = c
            .get("events")
            .and_then(Value::as_object)
            .and_then(|e| e.get("http://schemas.openid.net/event/backchannel-logout"))
            .is_some_and(Value::is_object);
        if !event_ok {
            return Err(VerifyError::WrongTokenType(
                "no back-channel logout event in `events`".into(),
            ));
        }
        if c.contains_key("nonce") {
            return Err(VerifyError::WrongTokenType(
                "a logout token must not carry a nonce".into(),
            ));
        }
        let sid = c.get("sid").and_then(Value::as_str).map(str::to_owned);
        let sub = c.get("sub").and_then(Value::as_str).map(str::to_owned);
        if sid.is_none() && sub.is_none() {
            return Err(VerifyError::MissingClaim("sid"));
        }
        let jti = match c.get("jti") {
            Some(Value::String(j)) if !j.is_empty() => j.clone(),
            _ => return Err(VerifyError::MissingClaim("jti")),
        };
        Ok(LogoutClaims {
            sid,
            sub,
            jti,
            valid_until: exp
                .max(iat.saturating_add(self.leeway.saturating_mul(10)))
                .saturating_add(self.leeway),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    use crate::verify::tests::{ISSUER, hs_token, verifier};

    fn logout_claims(sid: &str) -> Value {
        let now = now_unix();
        json!({
            "iss": ISSUER, "aud": "shop", "iat": now, "exp": now + 120, "jti": format!("j-{sid}"),
            "sid": sid,
            "events": {"http://schemas.openid.net/event/backchannel-logout": {}}
        })
    }

    /// Issue #9 (found by the verify_token and logout_token fuzz targets): an `exp` far in
    /// the past (i64::MIN, or a float below it) overflowed `now - exp` — a panic in debug
    /// builds, a nonsense age in release ones. Now plainly expired, on every path.
    #[tokio::test]
    async fn issue_9_extreme_exp_is_expired_not_an_overflow() {
        let v = verifier();
        for exp in [json!(i64::MIN), json!(-1e300), json!(-9.3e18)] {
            let mut access = crate::verify::tests::access_claims("alice", "s1");
            access["exp"] = exp.clone();
            let token = hs_token(json!({}), &access);
            assert_eq!(
                v.verify(&token).await.err(),
                Some(VerifyError::Expired(i64::MAX)),
                "{exp}"
            );
            assert_eq!(
                v.logout_subject(&token, 3600).await.err(),
                Some(VerifyError::Expired(i64::MAX)),
                "{exp}"
            );
            let mut logout = logout_claims("s9");
            logout["exp"] = exp.clone();
            assert_eq!(
                v.verify_logout_token(&hs_token(json!({}), &logout))
                    .await
                    .err(),
                Some(VerifyError::Expired(i64::MAX)),
                "{exp}"
            );
        }
    }

    /// Issue #9 (found by the logout_token fuzz target's property check): a logout token
    /// whose `nbf` lies in the future was accepted; access tokens were already refused.
    #[tokio::test]
    async fn issue_9_logout_token_not_yet_valid_is_refused() {
        let v = verifier();
        for nbf in [json!(now_unix() + 3600), json!(1e300), json!(i64::MAX)] {
            let mut c = logout_claims("s11");
            c["nbf"] = nbf.clone();
            let err = v.verify_logout_token(&hs_token(json!({}), &c)).await.err();
            assert!(
                matches!(err, Some(VerifyError::NotYetValid(_))),
                "{nbf}: {err:?}"
            );
        }
        let mut c = logout_claims("s12");
        c["nbf"] = json!(now_unix() - 10);
        assert!(
            v.verify_logout_token(&hs_token(json!({}), &c))
                .await
                .is_ok()
        );
    }

    /// Issue #8 (mutation testing): the leeway widens each time check of a logout token by
    /// exactly its amount — `iat` and `nbf` may lie up to it in the future, `exp` up to it in
    /// the past — and the `jti` is remembered until max(exp, iat + 10 × leeway) + leeway.
    #[tokio::test]
    async fn issue_8_logout_token_leeway_arithmetic() {
        let v = crate::verify::tests::verifier_with("[verify]\nleeway = \"30s\"\n");
        let check = |field: &'static str, offset: i64, n: u32| {
            let mut c = logout_claims(&format!("lw{n}"));
            let now = now_unix();
            c[field] = json!(now + offset);
            if field == "exp" {
                c["iat"] = json!(now - 600);
            }
            hs_token(json!({}), &c)
        };
        let mut n = 0;
        for (field, inside, outside) in [("iat", 25, 35), ("nbf", 25, 35), ("exp", -25, -35)] {
            n += 2;
            let ok = v.verify_logout_token(&check(field, inside, n)).await;
            assert!(
                ok.is_ok(),
                "{field} {inside:+}s is within the leeway: {ok:?}"
            );
            let err = v.verify_logout_token(&check(field, outside, n + 1)).await;
            assert!(err.is_err(), "{field} {outside:+}s is outside the leeway");
        }

        // Exactly at the edge is still inside (`>` in each check, not `>=`). The clock has
        // whole seconds, so a try counts only when the second did not change meanwhile.
        for (field, offset) in [("iat", 30), ("nbf", 30), ("exp", -30)] {
            loop {
                n += 1;
                let before = now_unix();
                let result = v.verify_logout_token(&check(field, offset, n)).await;
                if now_unix() != before {
                    continue;
                }
                assert!(
                    result.is_ok(),
                    "{field} {offset:+}s is the edge: {result:?}"
                );
                break;
            }
        }

        let now = now_unix();
        for (iat, exp, until) in [
            (now, now + 120, now + 300 + 30),   // iat + 10 × leeway is later
            (now, now + 1000, now + 1000 + 30), // exp is later
        ] {
            let mut c = logout_claims("lw-until");
            c["iat"] = json!(iat);
            c["exp"] = json!(exp);
            c["jti"] = json!(format!("lw-until-{exp}"));
            let claims = v
                .verify_logout_token(&hs_token(json!({}), &c))
                .await
                .expect("valid");
            assert_eq!(claims.valid_until, until, "iat {iat}, exp {exp}");
        }
    }

    /// Issue #8 (mutation testing): the logout path's access-token check — an `exp` may lie
    /// up to leeway + `max_expired` in the past and no further; a logout token is not an
    /// access token; `sub` must be a non-empty string; `sid` comes along when present.
    #[tokio::test]
    async fn issue_8_logout_subject_window_and_shape() {
        let v = crate::verify::tests::verifier_with("[verify]\nleeway = \"30s\"\n");
        let access = |exp_offset: i64, sub: Value| {
            let mut a = crate::verify::tests::access_claims("alice", "s-ls");
            a["exp"] = json!(now_unix() + exp_offset);
            a["sub"] = sub;
            hs_token(json!({}), &a)
        };
        let got = v
            .logout_subject(&access(-(30 + 100 - 5), json!("alice")), 100)
            .await
            .expect("within leeway + max_expired");
        assert_eq!(
            (got.sub.as_str(), got.sid.as_deref()),
            ("alice", Some("s-ls"))
        );
        assert!(matches!(
            v.logout_subject(&access(-(30 + 100 + 5), json!("alice")), 100)
                .await,
            Err(VerifyError::Expired(_))
        ));
        for sub in [json!(""), json!(7)] {
            assert_eq!(
                v.logout_subject(&access(60, sub.clone()), 100).await.err(),
                Some(VerifyError::MissingClaim("sub")),
                "{sub}"
            );
        }
        // Exactly at the edge is still inside (`>`, not `>=`). The clock has whole seconds,
        // so a try counts only when the second did not change meanwhile.
        loop {
            let before = now_unix();
            let result = v
                .logout_subject(&access(-(30 + 100), json!("alice")), 100)
                .await;
            if now_unix() != before {
                continue;
            }
            assert!(result.is_ok(), "exp at leeway + max_expired: {result:?}");
            break;
        }
        let logout_token = hs_token(json!({}), &logout_claims("s-ls"));
        assert!(matches!(
            v.logout_subject(&logout_token, 100).await,
            Err(VerifyError::WrongTokenType(_))
        ));
    }

    /// Issue #8 (mutation testing): a logout token needs a non-empty string `jti` (replay
    /// protection keys on it) and a `sid` or a `sub`.
    #[tokio::test]
    async fn issue_8_logout_token_needs_a_jti_and_a_subject() {
        let v = verifier();
        for jti in [json!(""), json!(5), Value::Null] {
            let mut c = logout_claims("s-jti");
            c["jti"] = jti.clone();
            assert_eq!(
                v.verify_logout_token(&hs_token(json!({}), &c)).await.err(),
                Some(VerifyError::MissingClaim("jti")),
                "{jti}"
            );
        }
        let mut c = logout_claims("s-none");
        c.as_object_mut().map(|o| o.remove("sid"));
        assert_eq!(
            v.verify_logout_token(&hs_token(json!({}), &c)).await.err(),
            Some(VerifyError::MissingClaim("sid"))
        );
        c["sub"] = json!("alice");
        let ok = v.verify_logout_token(&hs_token(json!({}), &c)).await;
        assert_eq!(ok.map(|l| (l.sid, l.sub)), Ok((None, Some("alice".into()))));
    }

    /// Issue #8 (mutation testing): each accepted `typ` of a logout token — `logout+jwt`, its
    /// media-type form, `JWT` (Authentik before 2025.12), any case — and no other.
    #[tokio::test]
    async fn issue_8_logout_token_typ() {
        let v = verifier();
        for (n, typ) in ["logout+jwt", "application/logout+jwt", "JWT", "Logout+JWT"]
            .into_iter()
            .enumerate()
        {
            let token = hs_token(json!({ "typ": typ }), &logout_claims(&format!("typ{n}")));
            let ok = v.verify_logout_token(&token).await;
            assert!(ok.is_ok(), "{typ}: {ok:?}");
        }
        let token = hs_token(json!({"typ": "at+jwt"}), &logout_claims("typ-at"));
        assert!(matches!(
            v.verify_logout_token(&token).await,
            Err(VerifyError::WrongTokenType(_))
        ));
    }

    /// Issue #9: a leeway near the largest duration does not overflow the jti memory time.
    #[tokio::test]
    async fn issue_9_huge_leeway_does_not_overflow_the_jti_memory() {
        let v =
            crate::verify::tests::verifier_with("[verify]\nleeway = \"18446744073709551615s\"\n");
        let claims = v
            .verify_logout_token(&hs_token(json!({}), &logout_claims("s10")))
            .await
            .expect("valid");
        assert_eq!(claims.valid_until, i64::MAX);
    }

    /// Issue #7: Back-Channel Logout 1.0 requires `exp` in a logout token.
    #[tokio::test]
    async fn issue_7_logout_token_without_exp_is_refused() {
        let v = verifier();
        let header = json!({"typ": "logout+jwt"});
        let with_exp = logout_claims("s1");
        let ok = v
            .verify_logout_token(&hs_token(header.clone(), &with_exp))
            .await;
        assert!(ok.is_ok(), "{ok:?}");
        let mut without = logout_claims("s2");
        without.as_object_mut().map(|o| o.remove("exp"));
        let err = v
            .verify_logout_token(&hs_token(header, &without))
            .await
            .err();
        assert_eq!(err, Some(VerifyError::MissingClaim("exp")));
    }
}
