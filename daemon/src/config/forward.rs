//! `[forward_auth]`: the identity headers `GET /v1/auth` answers reverse proxies with — which
//! set (oauth2-proxy's or authentik's outpost's names) and their size budget — and its checks.

use serde::{Deserialize, Serialize};

use super::{ConfigError, invalid};

/// `[forward_auth]`: how `/v1/auth` shapes its identity headers. Hot-reloadable.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardAuthConfig {
    /// Which header names: oauth2-proxy's `X-Auth-Request-*` (what most nginx guides copy) or
    /// authentik's outpost's `X-authentik-*` (for apps already written against the outpost).
    #[serde(default)]
    pub headers: HeaderSet,
    /// Most bytes of all identity headers together, as on the wire (name, `: `, value, CRLF):
    /// proxies refuse upstream answers with large headers (nginx: `proxy_buffer_size`, 4 KiB
    /// or 8 KiB), so a long group list is cut here, visibly, rather than there.
    #[serde(default = "default_max_header_bytes")]
    pub max_header_bytes: usize,
}

/// The identity header names `/v1/auth` answers with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
pub enum HeaderSet {
    /// `X-Auth-Request-User` (sub), `-Email`, `-Groups` (comma-separated),
    /// `-Preferred-Username`, `-Org`, `-Role`.
    #[default]
    #[serde(rename = "oauth2-proxy")]
    Oauth2Proxy,
    /// `X-authentik-username`, `-groups` (pipe-separated), `-email`, `-name`, `-uid` (sub).
    #[serde(rename = "authentik")]
    Authentik,
}

fn default_max_header_bytes() -> usize {
    4096
}

/// Smallest budget: room for a user id and an e-mail address with their names.
const MIN_MAX_HEADER_BYTES: usize = 256;
/// Largest budget: beyond nginx's and Traefik's default header buffers by far.
const MAX_MAX_HEADER_BYTES: usize = 64 * 1024;

impl Default for ForwardAuthConfig {
    fn default() -> Self {
        Self {
            headers: HeaderSet::default(),
            max_header_bytes: default_max_header_bytes(),
        }
    }
}

impl ForwardAuthConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if !(MIN_MAX_HEADER_BYTES..=MAX_MAX_HEADER_BYTES).contains(&self.max_header_bytes) {
            return Err(invalid(
                "forward_auth.max_header_bytes",
                format!(
                    "{} is out of range: between {MIN_MAX_HEADER_BYTES} and \
                     {MAX_MAX_HEADER_BYTES} bytes (the default, 4096, fits nginx's default \
                     proxy_buffer_size)",
                    self.max_header_bytes
                ),
            ));
        }
        Ok(())
    }
}
