//! `POST /auth/logout`: ends the browser's session even when its access token has expired —
//! the session is found by the access cookie's `sid` (signature, issuer and audience checked,
//! `exp` allowed to have passed by up to `cookies.refresh_max_age`), else by the refresh
//! cookie; the session ends locally at once (its tokens and refresh token are refused from
//! then on), its refresh token is revoked at the provider (RFC 7009), and the answer carries
//! the provider's end-session URL. With a shared store (Redis) the session is also looked up
//! there (made or refreshed on another instance), and its record removed.

use reqwest::Url;
use tokend_shared::Secret;

use super::{Flow, frontend_url};
use crate::sessions::EndReason;
use crate::verify::now_unix;

impl Flow {
    /// Logs the browser out; returns the URL to send it to. Never fails: without a usable
    /// cookie there is nothing to end, and the cookies are cleared anyway.
    pub async fn logout(&self, access: Option<&Secret>, refresh: Option<&Secret>) -> String {
        let sessions = self.verifier.sessions();
        let mut sid = None;
        if let Some(a) = access {
            match self
                .verifier
                .logout_subject(a.expose(), self.refresh_lifetime())
                .await
            {
                Ok(subject) => sid = subject.sid,
                Err(e) => tracing::info!(reason = %e.reason(), "logout: access cookie not usable"),
            }
        }
        let mut session = sid.as_deref().and_then(|s| sessions.by_sid(s));
        if session.is_none()
            && let Some(r) = refresh
        {
            session = sessions.by_refresh_token(r.expose());
        }
        // With a shared store: the session as the instances share it (it may have been made
        // or refreshed on another instance, so its current tokens may be unknown here).
        let key = sid
            .clone()
            .or_else(|| session.as_ref().map(|s| s.key.clone()));
        let record = self
            .shared_record(key.as_deref(), refresh.filter(|_| key.is_none()))
            .await;
        let mut refresh_tokens: Vec<Secret> = session
            .as_ref()
            .and_then(|s| s.refresh_token())
            .or_else(|| refresh.cloned())
            .into_iter()
            .collect();
        let id_token = session
            .as_ref()
            .and_then(|s| s.id_token())
            .or_else(|| record.as_ref().and_then(|r| r.id_token.clone()));
        // End it here first: from now on its tokens and its refresh token are refused, even if
        // the provider cannot be reached.
        let now = now_unix();
        let sid = sid
            .or_else(|| session.as_ref().and_then(|s| s.sid.clone()))
            .or_else(|| record.as_ref().and_then(|r| r.sid.clone()));
        let local_key = session
            .as_ref()
            .map(|s| s.key.clone())
            .or_else(|| record.as_ref().map(|r| r.key.clone()));
        match (&sid, &local_key) {
            (Some(sid), _) => {
                self.verifier
                    .end_sessions(Some(sid), None, EndReason::Logout, now);
            }
            (None, Some(key)) => {
                sessions.end_sid(key, EndReason::Logout, now);
            }
            (None, None) => {}
        }
        if let Some(record) = &record
            && let Some(rt) = self.end_shared(record).await
            && !refresh_tokens.iter().any(|t| t.expose() == rt.expose())
        {
            refresh_tokens.push(rt);
        }
        let revoked = self.revoke_refresh_tokens(refresh_tokens).await > 0;
        tracing::info!(
            session = session.is_some() || record.is_some(),
            sid = sid.is_some(),
            revoked,
            "logout"
        );
        self.metrics.logouts.inc();
        self.metrics.audit.record(
            tokend_shared::AuditKind::Logout,
            crate::audit::Entry {
                sub: session
                    .as_ref()
                    .map(|s| s.sub.clone())
                    .or_else(|| record.as_ref().map(|r| r.sub.clone())),
                sid: sid.clone(),
                ..Default::default()
            },
        );
        self.metrics.flow_step("logout", true);
        self.logout_url(id_token.as_ref())
    }

    fn logout_url(&self, id_token: Option<&Secret>) -> String {
        let Some(cfg) = &self.cfg else {
            return "/".into();
        };
        let post_logout = cfg
            .post_logout_redirect_uri
            .clone()
            .or_else(|| frontend_url(cfg, "/").map(|u| u.to_string()))
            .unwrap_or_else(|| "/".into());
        let end_session = self
            .provider
            .metadata()
            .and_then(|m| m.end_session_endpoint.clone())
            .and_then(|u| Url::parse(&u).ok());
        match end_session {
            Some(mut url) => {
                {
                    let mut q = url.query_pairs_mut();
                    if let Some(t) = id_token {
                        q.append_pair("id_token_hint", t.expose());
                    }
                    q.append_pair("post_logout_redirect_uri", &post_logout)
                        .append_pair("client_id", &self.client_id);
                }
                url.to_string()
            }
            None => post_logout,
        }
    }
}
