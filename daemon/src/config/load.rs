//! Loading a configuration: the file read and parsed, environment overrides applied, paths
//! and secrets resolved, validated — and what is derived from a loaded [`Config`] (the admin
//! socket, the snapshot file, the revocation TTL, warnings, the redacted rendering).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::defaults::default_revocation_ttl;
use super::env::apply_env;
use serde::Deserialize;

use super::{ADMIN_SOCKET_NAME, Config, ConfigError, SNAPSHOT_NAME, duration, invalid};

/// Longest `store.tls_ca_file` read: a CA bundle is at most a few hundred KB; a device or a
/// huge file is a mistake that must not exhaust memory.
const MAX_CA_FILE: u64 = 4 * 1024 * 1024;

/// A parse error, with an example when it is about a duration.
fn with_duration_example(message: &str) -> String {
    if message.contains("expected a duration") {
        format!("{message} ({})", duration::EXAMPLE)
    } else {
        message.to_string()
    }
}

impl Config {
    /// Reads, overrides from `env`, resolves secrets and validates the file at `path`.
    pub fn load(
        path: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                ConfigError::Missing {
                    path: path.to_path_buf(),
                }
            } else {
                ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                }
            }
        })?;
        let base_dir = path.parent().unwrap_or(Path::new("."));
        let mut config = Self::from_toml(&text, path, base_dir, env)?;
        config.source = Some(path.to_path_buf());
        Ok(config)
    }

    /// The process environment as override input (non-UTF-8 variables cannot be overrides).
    pub fn process_env() -> impl Iterator<Item = (String, String)> {
        std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
    }

    /// Like [`Config::load`] for text already read; `origin` names it in errors.
    pub fn from_toml(
        text: &str,
        origin: &Path,
        base_dir: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let parse_err = |e: toml::de::Error| ConfigError::Parse {
            path: origin.to_path_buf(),
            message: with_duration_example(e.to_string().trim_end()),
        };
        // First pass on the text itself, so schema errors carry the key's line and column.
        toml::from_str::<Config>(text).map_err(parse_err)?;
        let mut table: toml::Table = toml::from_str(text).map_err(parse_err)?;
        let env: BTreeMap<String, String> = env.into_iter().collect();
        let applied = apply_env(&mut table, &env)?;
        let mut config: Config =
            Config::deserialize(toml::Value::Table(table)).map_err(|e| ConfigError::Env {
                var: applied.join(", "),
                message: with_duration_example(e.to_string().trim_end()),
            })?;
        config.resolve_paths(base_dir);
        config.sessions.snapshot_file = config.resolve_snapshot_file(env.get("STATE_DIRECTORY"));
        let credentials = env.get("CREDENTIALS_DIRECTORY").map(Path::new);
        config.resolve_secret(credentials)?;
        if let Some(events) = config.events.as_mut() {
            events.resolve(base_dir, credentials)?;
        }
        config.resolve_store_secrets(credentials)?;
        config.validate()?;
        config.store.tls_ca = config.read_store_ca()?;
        // Shown resolved by check-config.
        config.sessions.revocation_ttl = Some(config.revocation_ttl());
        Ok(config)
    }

    fn resolve_paths(&mut self, base_dir: &Path) {
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base_dir.join(&*p);
            }
        };
        if let Some(p) = self.provider.client_secret_file.as_mut() {
            resolve(p);
        }
        if let Some(p) = self.jwks.cache_file.as_mut() {
            resolve(p);
        }
        for p in [
            self.store.password_file.as_mut(),
            self.store.encryption_key_file.as_mut(),
            self.store.tls_ca_file.as_mut(),
        ]
        .into_iter()
        .flatten()
        {
            resolve(p);
        }
        if let Some(p) = self.sessions.snapshot_file.as_mut() {
            resolve(p);
        }
    }

    /// `store.tls_ca_file`'s PEM text, checked to hold at least one certificate (a bundle
    /// that parses to none would make every `rediss://` connection fail, later and obscurely).
    fn read_store_ca(&self) -> Result<Option<Vec<u8>>, ConfigError> {
        use rustls_pki_types::CertificateDer;
        use rustls_pki_types::pem::PemObject;
        let Some(path) = &self.store.tls_ca_file else {
            return Ok(None);
        };
        let key = "store.tls_ca_file";
        let file_error = |source| ConfigError::File {
            key,
            path: path.clone(),
            source,
        };
        let mut pem = Vec::new();
        std::fs::File::open(path)
            .and_then(|f| f.take(MAX_CA_FILE + 1).read_to_end(&mut pem))
            .map_err(file_error)?;
        if pem.len() as u64 > MAX_CA_FILE {
            return Err(invalid(
                key,
                format!("longer than {MAX_CA_FILE} bytes; not a PEM file of CA certificates"),
            ));
        }
        let certs = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            // The parser's message may quote a line of the file: not repeated.
            .map_err(|_| invalid(key, "not a PEM file of certificates (a malformed section)"))?;
        if certs.is_empty() {
            return Err(invalid(
                key,
                "holds no certificate (expected PEM: -----BEGIN CERTIFICATE-----)",
            ));
        }
        Ok(Some(pem))
    }

    /// Where the sessions snapshot goes: `sessions.snapshot_file`, else `snapshot.json` in
    /// the state directory — beside `jwks.cache_file`, else systemd's `$STATE_DIRECTORY`
    /// (its first entry) — else nowhere; nowhere when `sessions.snapshot = false`.
    fn resolve_snapshot_file(&self, state_directory: Option<&String>) -> Option<PathBuf> {
        if !self.sessions.snapshot {
            return None;
        }
        let state_dir = || {
            let beside_cache = self
                .jwks
                .cache_file
                .as_ref()
                .and_then(|c| c.parent())
                .filter(|d| !d.as_os_str().is_empty())
                .map(Path::to_path_buf);
            beside_cache.or_else(|| {
                state_directory
                    .and_then(|s| s.split(':').next())
                    .filter(|s| !s.is_empty())
                    .map(PathBuf::from)
            })
        };
        self.sessions
            .snapshot_file
            .clone()
            .or_else(|| state_dir().map(|d| d.join(SNAPSHOT_NAME)))
    }

    /// Where the admin socket is: `admin.socket`, else `tokend-admin.sock` beside
    /// `listen.socket`; `None` when `admin.enabled = false` or there is neither.
    pub fn admin_socket(&self) -> Option<PathBuf> {
        if !self.admin.enabled {
            return None;
        }
        self.admin.socket.clone().or_else(|| {
            self.listen
                .socket
                .as_ref()
                .map(|s| s.with_file_name(ADMIN_SOCKET_NAME))
        })
    }

    /// How long revocations are remembered: `sessions.revocation_ttl`, by default
    /// `cookies.refresh_max_age` (at least 1h).
    pub fn revocation_ttl(&self) -> Duration {
        self.sessions
            .revocation_ttl
            .unwrap_or_else(|| default_revocation_ttl(&self.cookies))
    }

    /// The expected `aud`.
    pub fn audience(&self) -> &str {
        self.provider
            .audience
            .as_deref()
            .unwrap_or(&self.provider.client_id)
    }

    /// What is valid but probably a mistake; `check-config` prints these, the daemon logs them.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.admin.enabled
            && self.admin_socket().is_some()
            && self.admin.socket_mode & 0o007 != 0
        {
            out.push(format!(
                "admin.socket_mode {:04o} lets every local user connect to the admin socket; \
                 only root, tokend's uid and admin.allowed_uids/allowed_groups are answered, \
                 but 0600 or 0660 with admin.socket_group is the safer fence",
                self.admin.socket_mode
            ));
        }
        if !self.provider.issuer.ends_with('/') {
            out.push(format!(
                "provider.issuer {:?} does not end with `/`; Authentik's issuers do \
                 (…/application/o/<slug>/) and must match exactly (`tokend doctor` compares it \
                 with the provider's)",
                self.provider.issuer
            ));
        }
        out
    }

    /// The effective configuration as TOML, secrets shown as `[redacted]`.
    pub fn to_redacted_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }
}
