//! Validation of a loaded configuration: `Config::validate` and its helpers. Every error
//! names the key it is about.

use std::time::Duration;

use tokend_shared::Secret;

use super::{Config, ConfigError, GroupSpec, StoreKind, invalid};

impl Config {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        self.forward_auth.validate()?;
        let l = &self.listen;
        if l.socket.is_none() && l.http.is_none() {
            return Err(invalid(
                "listen",
                "nothing to listen on: neither has a default; add a [listen] section with \
                 `socket = \"/run/tokend/tokend.sock\"`, `http = \"127.0.0.1:9180\"` or both",
            ));
        }
        if let Some(addr) = l.http
            && !addr.ip().is_loopback()
            && !l.allow_non_loopback
        {
            return Err(invalid(
                "listen.http",
                format!(
                    "{addr} is not a loopback address; tokend is a local sidecar. Set \
                     `allow_non_loopback = true` if you really mean it"
                ),
            ));
        }
        if matches!(&l.socket, Some(p) if p.as_os_str().is_empty()) {
            return Err(invalid("listen.socket", "empty path"));
        }
        if matches!(&l.socket_group, Some(GroupSpec::Name(n)) if n.is_empty()) {
            return Err(invalid("listen.socket_group", "empty group name"));
        }
        self.admin.validate()?;
        if let Some(admin) = self.admin_socket()
            && l.socket.as_ref() == Some(&admin)
        {
            return Err(invalid(
                "admin.socket",
                "must differ from listen.socket: the admin API never shares the apps' socket",
            ));
        }
        if l.max_connections == 0 {
            return Err(invalid("listen.max_connections", "must be at least 1"));
        }
        for (key, d) in [
            ("listen.header_read_timeout", l.header_read_timeout),
            ("listen.request_timeout", l.request_timeout),
        ] {
            if d.is_zero() {
                return Err(invalid(key, "must be longer than 0s"));
            }
        }

        let p = &self.provider;
        check_url("provider.issuer", &p.issuer)?;
        if let Some(url) = &p.internal_url {
            check_url("provider.internal_url", url)?;
        }
        if p.client_id.trim().is_empty() {
            return Err(invalid(
                "provider.client_id",
                "must not be empty (or set AUTHENTIK_CLIENT_ID)",
            ));
        }
        if matches!(&p.audience, Some(a) if a.is_empty()) {
            return Err(invalid("provider.audience", "must not be empty"));
        }
        if p.algorithms.is_empty() {
            return Err(invalid(
                "provider.algorithms",
                "list at least one algorithm",
            ));
        }
        let hmac = p.algorithms.iter().filter(|a| a.is_hmac()).count();
        if hmac > 0 && hmac != p.algorithms.len() {
            return Err(invalid(
                "provider.algorithms",
                "HS256/HS384/HS512 (Authentik without a signing key) cannot be mixed with \
                 asymmetric algorithms",
            ));
        }
        if hmac > 0 && p.client_secret.as_ref().is_none_or(Secret::is_empty) {
            return Err(invalid(
                "provider.algorithms",
                "HS* verification needs the client secret (client_secret, client_secret_file, \
                 AUTHENTIK_CLIENT_SECRET or the systemd credential `client_secret`)",
            ));
        }
        if p.http_timeout.is_zero() {
            return Err(invalid("provider.http_timeout", "must be longer than 0s"));
        }

        let j = &self.jwks;
        if j.refresh_interval < Duration::from_secs(1) {
            return Err(invalid("jwks.refresh_interval", "must be at least 1s"));
        }
        if j.max_stale < j.refresh_interval {
            return Err(invalid(
                "jwks.max_stale",
                "must be at least jwks.refresh_interval, or keys would expire between refreshes",
            ));
        }
        if matches!(&j.cache_file, Some(p) if p.as_os_str().is_empty()) {
            return Err(invalid("jwks.cache_file", "empty path"));
        }

        if self.verify.max_token_bytes < 64 {
            return Err(invalid("verify.max_token_bytes", "must be at least 64"));
        }
        for (key, name) in [
            ("claims.organization_claim", &self.claims.organization_claim),
            ("claims.groups_claim", &self.claims.groups_claim),
            ("claims.default_role", &self.claims.default_role),
            ("cookies.access_name", &self.cookies.access_name),
        ] {
            if name.is_empty() {
                return Err(invalid(key, "must not be empty"));
            }
        }
        for (key, name) in [
            ("cookies.access_name", &self.cookies.access_name),
            ("cookies.refresh_name", &self.cookies.refresh_name),
        ] {
            if !is_cookie_name(name) {
                return Err(invalid(
                    key,
                    "not a valid cookie name (letters, digits and !#$%&'*+-.^_`|~ only)",
                ));
            }
        }
        if self.cookies.access_name == self.cookies.refresh_name {
            return Err(invalid(
                "cookies.refresh_name",
                "must differ from cookies.access_name",
            ));
        }
        for (key, path) in [
            ("cookies.access_path", &self.cookies.access_path),
            ("cookies.refresh_path", &self.cookies.refresh_path),
        ] {
            if !path.starts_with('/') || path.contains([';', ' ', ',']) {
                return Err(invalid(
                    key,
                    "must be a path starting with / (no ; , or spaces)",
                ));
            }
        }
        if self.codes.ttl.is_zero() || self.codes.max_outstanding == 0 {
            return Err(invalid(
                "codes",
                "ttl must be longer than 0s and max_outstanding at least 1",
            ));
        }
        if let Some(flow) = &self.flow {
            check_url("flow.redirect_uri", &flow.redirect_uri)?;
            check_url("flow.frontend_url", &flow.frontend_url)?;
            if let Some(u) = &flow.post_logout_redirect_uri {
                check_url("flow.post_logout_redirect_uri", u)?;
            }
            if !flow.scopes.iter().any(|s| s == "openid") {
                return Err(invalid("flow.scopes", "must include `openid`"));
            }
            for (key, p) in [
                ("flow.frontend_callback_path", &flow.frontend_callback_path),
                ("flow.frontend_login_path", &flow.frontend_login_path),
            ] {
                if !p.starts_with('/') {
                    return Err(invalid(key, "must start with /"));
                }
            }
            if flow.max_pending_refreshes == 0 {
                return Err(invalid("flow.max_pending_refreshes", "must be at least 1"));
            }
            if flow.state_ttl.is_zero() || flow.max_pending_logins == 0 {
                return Err(invalid(
                    "flow",
                    "state_ttl must be longer than 0s and max_pending_logins at least 1",
                ));
            }
            if p.client_secret.as_ref().is_none_or(Secret::is_empty) {
                return Err(invalid(
                    "flow",
                    "the login flow needs the client secret (client_secret, client_secret_file, \
                     AUTHENTIK_CLIENT_SECRET or the systemd credential `client_secret`)",
                ));
            }
        }
        if let Some(r) = self
            .claims
            .roles
            .iter()
            .find(|r| r.group.is_empty() || r.role.is_empty())
        {
            return Err(invalid(
                "claims.roles",
                format!(
                    "rule {{ group = {:?}, role = {:?} }} needs both a group and a role",
                    r.group, r.role
                ),
            ));
        }
        if let Some(ttl) = self.sessions.revocation_ttl
            && ttl < self.cookies.refresh_max_age
        {
            return Err(invalid(
                "sessions.revocation_ttl",
                format!(
                    "{} is shorter than cookies.refresh_max_age ({}): a refresh of an ended \
                     session would mint tokens that are no longer refused once the revocation is \
                     forgotten; set sessions.revocation_ttl to at least cookies.refresh_max_age \
                     (or leave it out: it defaults to cookies.refresh_max_age)",
                    super::duration::text(ttl),
                    super::duration::text(self.cookies.refresh_max_age)
                ),
            ));
        }
        self.validate_store()?;
        if self.sessions.snapshot_interval < std::time::Duration::from_secs(1) {
            return Err(invalid(
                "sessions.snapshot_interval",
                "must be at least 1s (the snapshot is written at most that often, and only \
                 when something changed)",
            ));
        }
        tracing_subscriber::EnvFilter::try_new(&self.log.level)
            .map_err(|e| invalid("log.level", format!("not a valid filter: {e}")))?;
        Ok(())
    }
}

impl Config {
    /// `[store]`: Redis settings only with `kind = "redis"`, and then complete.
    fn validate_store(&self) -> Result<(), ConfigError> {
        let s = &self.store;
        if s.kind == StoreKind::Memory {
            let set = [
                ("store.url", s.url.is_some()),
                ("store.cluster", s.cluster),
                ("store.cluster_urls", !s.cluster_urls.is_empty()),
                ("store.username", s.username.is_some()),
                ("store.password_file", s.password_file.is_some()),
                ("store.password_credential", s.password_credential.is_some()),
                ("store.tls_ca_file", s.tls_ca_file.is_some()),
                ("store.encryption_key_file", s.encryption_key_file.is_some()),
                (
                    "store.encryption_key_credential",
                    s.encryption_key_credential.is_some(),
                ),
            ];
            if let Some((key, _)) = set.iter().find(|(_, set)| *set) {
                return Err(invalid(
                    key,
                    "only used with store.kind = \"redis\" (the store is \"memory\")",
                ));
            }
            return Ok(());
        }
        let Some(url) = &s.url else {
            return Err(invalid(
                "store.url",
                "store.kind = \"redis\" needs url = \"redis://host:6379\" (or rediss:// for TLS)",
            ));
        };
        let scheme = check_redis_url("store.url", url, s.cluster)?;
        if s.tls_ca_file.is_some() && scheme != "rediss" {
            return Err(invalid(
                "store.tls_ca_file",
                "only used with TLS: store.url must be rediss://host:port (it is \
                 redis://, without TLS)",
            ));
        }
        if !s.cluster_urls.is_empty() && !s.cluster {
            return Err(invalid(
                "store.cluster_urls",
                "only used with store.cluster = true (seed nodes of a Redis Cluster)",
            ));
        }
        for (i, other) in s.cluster_urls.iter().enumerate() {
            let key = "store.cluster_urls";
            if check_redis_url(key, other, true)? != scheme {
                return Err(invalid(
                    key,
                    format!(
                        "every node of the cluster speaks TLS or none does: all \
                         rediss:// or all redis:// (store.url is {scheme}://)"
                    ),
                ));
            }
            if other == url || s.cluster_urls[..i].contains(other) {
                return Err(invalid(key, "a seed node is named twice"));
            }
        }
        if matches!(&s.username, Some(u) if u.is_empty()) {
            return Err(invalid("store.username", "must not be empty"));
        }
        if s.key_prefix.is_empty()
            || s.key_prefix.len() > 64
            || !s
                .key_prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b":_.-".contains(&b))
        {
            return Err(invalid(
                "store.key_prefix",
                "1 to 64 of letters, digits and : _ . - (e.g. \"tokend:\")",
            ));
        }
        if s.timeout < Duration::from_millis(10) || s.timeout > Duration::from_secs(30) {
            return Err(invalid("store.timeout", "must be between 10ms and 30s"));
        }
        match &s.encryption_key {
            None => Err(invalid(
                "store.encryption_key_file",
                "store.kind = \"redis\" needs the key that seals the records: \
                 encryption_key_file or encryption_key_credential (32 bytes as 64 hex \
                 characters or base64, e.g. from `openssl rand -hex 32`)",
            )),
            Some(k) if super::decode_store_key(k.expose()).is_none() => Err(invalid(
                "store.encryption_key_file",
                "the key must be 32 bytes written as 64 hex characters or as base64 (e.g. \
                 `openssl rand -hex 32`)",
            )),
            Some(_) => Ok(()),
        }
    }
}

/// One Redis URL of `[store]`: redis:// or rediss:// with a host and no credentials; in a
/// cluster, no database other than 0 (Redis Cluster has only that one). Returns the scheme.
fn check_redis_url(key: &'static str, url: &str, cluster: bool) -> Result<String, ConfigError> {
    match reqwest::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "redis" | "rediss") && u.host().is_some() => {
            if u.password().is_some() || !u.username().is_empty() {
                return Err(invalid(
                    key,
                    "no user or password in the URL (it would be shown and logged): use \
                     store.username and store.password_file or store.password_credential",
                ));
            }
            if cluster && !matches!(u.path().trim_matches('/'), "" | "0") {
                return Err(invalid(
                    key,
                    "Redis Cluster has only database 0: no /db in the URL of a cluster node",
                ));
            }
            Ok(u.scheme().to_string())
        }
        Ok(_) => Err(invalid(
            key,
            "must be redis://host:port[/db] or rediss://host:port[/db] (TLS); Unix \
             sockets and Sentinel are not supported (for a Redis Cluster: cluster = true)",
        )),
        // The parser's message never quotes the URL.
        Err(e) => Err(invalid(key, format!("not a URL: {e}"))),
    }
}

fn check_url(key: &'static str, value: &str) -> Result<(), ConfigError> {
    match reqwest::Url::parse(value) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(()),
        Ok(_) => Err(invalid(key, format!("`{value}` is not an http(s) URL"))),
        Err(e) => Err(invalid(key, format!("`{value}` is not a URL: {e}"))),
    }
}

fn is_cookie_name(name: &str) -> bool {
    name.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use crate::config::tests::{MINIMAL, load};

    #[test]
    fn hmac_needs_a_secret_and_stands_alone() {
        let hs = format!("{MINIMAL}algorithms = [\"HS256\"]\n");
        assert!(load(&hs, &[]).is_err());
        assert!(load(&hs, &[("AUTHENTIK_CLIENT_SECRET", "x")]).is_ok());
        let mixed = format!("{MINIMAL}algorithms = [\"HS256\", \"RS256\"]\n");
        assert!(load(&mixed, &[("AUTHENTIK_CLIENT_SECRET", "x")]).is_err());
        let none = format!("{MINIMAL}algorithms = [\"none\"]\n");
        let err = load(&none, &[]).expect_err("none refused");
        assert!(err.to_string().contains("never accepted"), "{err}");
    }

    #[test]
    fn non_loopback_needs_opt_in() {
        let text = MINIMAL.replace("127.0.0.1:9180", "0.0.0.0:9180");
        let err = load(&text, &[]).expect_err("refused");
        assert!(err.to_string().contains("listen.http"), "{err}");
    }
}
