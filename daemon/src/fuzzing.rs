//! Entry points for the fuzz targets in `fuzz/` (issue #9), compiled only with the `fuzzing`
//! feature. Each is a thin wrapper around a parser the daemon runs on outside input that is
//! not public otherwise; none changes what it wraps. Not an API: it may change at any time.

use std::time::SystemTime;

use crate::jwks::{Jwks, JwksError};

/// Parses a JWKS document as if the provider had served it and installs its keys into `jwks`
/// (the path of a background refresh, without the network). Returns how many keys are
/// usable afterwards.
pub fn install_jwks(jwks: &Jwks, body: &[u8]) -> Result<usize, JwksError> {
    jwks.install_body("fuzz input", body, SystemTime::now())?;
    Ok(jwks.keys().len())
}

/// The `redirect` parameter of `/auth/login`'s query string, as the handler reads it.
pub fn login_redirect(query: &str) -> Option<String> {
    crate::api::login_redirect(query)
}

/// The `logout_token` field of a back-channel logout form body, as the handler reads it.
pub fn logout_token_field(body: &[u8]) -> Option<String> {
    crate::api::logout_token_field(body)
}
