//! `tokend doctor`: checks a real deployment (the config, the provider as tokend reaches it,
//! the client secret, the clock, the socket directory) and says how to fix what fails. This
//! file owns the entry point, the [`Check`] record and the order of the checks; the checks live
//! in `upstream` (provider) and `local` (this host), the rendering in `report`.

mod local;
mod report;
mod upstream;

use std::path::Path;

use serde::Serialize;

use crate::config::{Config, ConfigError};
use crate::jwks::JwksError;
use crate::provider::ProviderError;

pub use report::Report;

/// One check's outcome: what was checked, whether it passed, what was found, and (when it
/// failed) what to do. Never holds a secret.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Check {
    /// Stable name, e.g. `issuer`, `client_secret`.
    pub check: &'static str,
    pub ok: bool,
    pub detail: String,
    /// How to fix it; `None` when the check passed.
    pub fix: Option<String>,
}

impl Check {
    pub(crate) fn pass(check: &'static str, detail: impl Into<String>) -> Self {
        Self {
            check,
            ok: true,
            detail: detail.into(),
            fix: None,
        }
    }

    pub(crate) fn fail(
        check: &'static str,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self {
            check,
            ok: false,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
}

/// Why a check could not pass; rendered into the check's `detail`.
#[derive(Debug, thiserror::Error)]
pub enum DoctorError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Provider(#[from] ProviderError),
    #[error(transparent)]
    Jwks(#[from] JwksError),
    #[error("{0}")]
    Build(#[from] crate::Error),
    #[error("the provider's discovery document has no {0}")]
    NoEndpoint(&'static str),
    #[error("the provider's answer has no usable Date header ({0})")]
    NoDate(String),
    #[error("{path}: {source}")]
    Path {
        path: String,
        source: nix::errno::Errno,
    },
    #[error("{url}: {message}")]
    Url { url: String, message: String },
}

/// Runs every check for the configuration at `path` (with `env` as overrides, as the daemon
/// reads them) and returns the report. Needs a tokio runtime; makes only read-only requests to
/// the provider (discovery, JWKS, a revocation of a dummy token) and changes nothing locally.
pub async fn run(path: &Path, env: impl IntoIterator<Item = (String, String)>) -> Report {
    let mut checks = Vec::new();
    let config = match Config::load(path, env) {
        Ok(c) => {
            checks.push(Check::pass(
                "config",
                format!("{} is valid", path.display()),
            ));
            c
        }
        Err(e) => {
            let err = DoctorError::from(e);
            checks.push(Check::fail(
                "config",
                err.to_string(),
                format!(
                    "fix the file (`tokend check-config --config {}` shows the same error); \
                     config/tokend.toml is a complete example",
                    path.display()
                ),
            ));
            return Report::new(checks);
        }
    };
    upstream::checks(&config, &mut checks).await;
    local::checks(&config, &mut checks);
    Report::new(checks)
}
