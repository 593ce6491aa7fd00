//! Every cookie the flow sets or clears: the access and refresh cookies (HttpOnly, attributes
//! from `[cookies]`), and the short-lived browser-binding cookie of a login in progress.

use std::time::Duration;

use sha2::{Digest, Sha256};

use super::Flow;
use crate::config::SameSite;

/// Base name of the browser-binding cookie; each login adds a short id derived from its state,
/// so several tabs can log in at once.
const LOGIN_COOKIE: &str = "tokend_login_";

impl Flow {
    /// Set-Cookie values for a fresh access (and refresh) token.
    pub fn set_cookies(
        &self,
        access: &tokend_shared::Secret,
        refresh: Option<&tokend_shared::Secret>,
    ) -> Vec<String> {
        let c = &self.cookies;
        let mut out = vec![
            self.cookie(
                &c.access_name,
                access.expose(),
                &c.access_path,
                c.access_max_age,
                true,
            )
            .to_string(),
        ];
        if let Some(r) = refresh {
            out.push(
                self.cookie(
                    &c.refresh_name,
                    r.expose(),
                    &c.refresh_path,
                    c.refresh_max_age,
                    true,
                )
                .to_string(),
            );
        }
        out
    }

    /// Set-Cookie values that delete both cookies (same attributes as when set).
    pub fn clear_cookies(&self) -> Vec<String> {
        let c = &self.cookies;
        [
            (&c.access_name, &c.access_path),
            (&c.refresh_name, &c.refresh_path),
        ]
        .into_iter()
        .map(|(name, path)| {
            let mut cookie = self.cookie(name, "", path, Duration::ZERO, true);
            cookie.make_removal();
            cookie.to_string()
        })
        .collect()
    }

    /// The name of the browser-binding cookie of the login with this `state`:
    /// `__Host-tokend_login_<id>` when cookies are Secure (Path=/, no Domain), else
    /// `tokend_login_<id>`; `<id>` is 16 hex digits of SHA-256(state).
    pub fn login_cookie_name(&self, state: &str) -> String {
        let digest = Sha256::digest(state.as_bytes());
        let id: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        let prefix = if self.cookies.secure { "__Host-" } else { "" };
        format!("{prefix}{LOGIN_COOKIE}{id}")
    }

    /// Set-Cookie for a login's browser-binding cookie, living as long as the login state.
    pub(super) fn login_cookie(&self, name: &str, value: &str, ttl: Duration) -> String {
        self.cookie(name, value, "/", ttl, false).to_string()
    }

    /// Set-Cookie that deletes a login's browser-binding cookie.
    pub(super) fn clear_login_cookie(&self, name: &str) -> String {
        let mut cookie = self.cookie(name, "", "/", Duration::ZERO, false);
        cookie.make_removal();
        cookie.to_string()
    }

    /// An HttpOnly cookie. `shared`: the configured Domain and SameSite apply (access and
    /// refresh cookies); otherwise a host-only, SameSite=Lax cookie (the binding cookie must
    /// come back on the provider's top-level redirect to the callback).
    fn cookie<'a>(
        &self,
        name: &'a str,
        value: &'a str,
        path: &'a str,
        max_age: Duration,
        shared: bool,
    ) -> cookie::Cookie<'a> {
        let c = &self.cookies;
        let same_site = match (shared, c.same_site) {
            (true, SameSite::Strict) => cookie::SameSite::Strict,
            _ => cookie::SameSite::Lax,
        };
        let mut builder = cookie::Cookie::build((name, value))
            .http_only(true)
            .secure(c.secure)
            .same_site(same_site)
            .path(path)
            .max_age(cookie::time::Duration::seconds(
                i64::try_from(max_age.as_secs()).unwrap_or(i64::MAX),
            ));
        if shared && let Some(d) = &c.domain {
            builder = builder.domain(d.clone());
        }
        builder.build()
    }
}

#[cfg(test)]
mod tests;
