//! Environment overrides: `AUTHENTIK_*` (the reference design's variables) and
//! `TOKEND_<SECTION>_<KEY>`, applied to the parsed TOML table before it is deserialized.

use std::collections::BTreeMap;

use super::ConfigError;

/// Environment variables that are not config overrides (read elsewhere).
const RESERVED_ENV: &[&str] = &["TOKEND_CONFIG", "TOKEND_LOG"];

/// Config sections that `TOKEND_<SECTION>_<KEY>` may address.
const SECTIONS: &[&str] = &[
    "listen", "provider", "jwks", "verify", "claims", "cookies", "codes", "flow", "sessions",
    "store", "log", "events",
];

/// Applies AUTHENTIK_* and TOKEND_<SECTION>_<KEY> variables to the parsed table; returns the
/// names of the variables applied.
pub(super) fn apply_env(
    table: &mut toml::Table,
    env: &BTreeMap<String, String>,
) -> Result<Vec<String>, ConfigError> {
    let mut applied = Vec::new();
    fn set(
        table: &mut toml::Table,
        section: &str,
        key: &str,
        value: toml::Value,
    ) -> Result<(), String> {
        let entry = table
            .entry(section.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        match entry {
            toml::Value::Table(t) => {
                t.insert(key.to_string(), value);
                Ok(())
            }
            _ => Err(format!("`{section}` in the file is not a table")),
        }
    }
    for (var, value) in env {
        let result = match var.as_str() {
            "AUTHENTIK_URL" => {
                let issuer = issuer_from_authentik_url(value, table).map_err(|message| {
                    ConfigError::Env {
                        var: var.clone(),
                        message,
                    }
                })?;
                set(table, "provider", "issuer", toml::Value::String(issuer))
            }
            "AUTHENTIK_INTERNAL_URL" => set(
                table,
                "provider",
                "internal_url",
                toml::Value::String(value.clone()),
            ),
            "AUTHENTIK_CLIENT_ID" => set(
                table,
                "provider",
                "client_id",
                toml::Value::String(value.clone()),
            ),
            "AUTHENTIK_CLIENT_SECRET" => {
                // An explicit secret replaces a configured secret file.
                if let Some(toml::Value::Table(p)) = table.get_mut("provider") {
                    p.remove("client_secret_file");
                }
                set(
                    table,
                    "provider",
                    "client_secret",
                    toml::Value::String(value.clone()),
                )
            }
            v if v.starts_with("TOKEND_") && !RESERVED_ENV.contains(&v) => {
                let rest = v["TOKEND_".len()..].to_ascii_lowercase();
                let Some((section, key)) = SECTIONS.iter().find_map(|s| {
                    rest.strip_prefix(s)
                        .and_then(|k| k.strip_prefix('_'))
                        .map(|k| (*s, k))
                }) else {
                    return Err(ConfigError::Env {
                        var: var.clone(),
                        message: format!(
                            "not a known override; use TOKEND_<SECTION>_<KEY> with SECTION one \
                             of {}",
                            SECTIONS.join(", ").to_uppercase()
                        ),
                    });
                };
                set(table, section, key, env_value(value))
            }
            _ => continue,
        };
        result.map_err(|message| ConfigError::Env {
            var: var.clone(),
            message,
        })?;
        applied.push(var.clone());
    }
    Ok(applied)
}

/// `AUTHENTIK_URL` is either the issuer itself (it contains `/application/o/`) or Authentik's
/// base URL, in which case the application slug is taken from the configured issuer.
fn issuer_from_authentik_url(value: &str, table: &toml::Table) -> Result<String, String> {
    if value.contains("/application/o/") {
        return Ok(value.to_string());
    }
    let configured = table
        .get("provider")
        .and_then(|p| p.get("issuer"))
        .and_then(|i| i.as_str())
        .ok_or("is a base URL, so provider.issuer must name the application slug")?;
    let slug_path = configured
        .find("/application/o/")
        .map(|i| &configured[i..])
        .ok_or("is a base URL, but provider.issuer has no /application/o/<slug>/ path")?;
    Ok(format!("{}{}", value.trim_end_matches('/'), slug_path))
}

/// Env values are strings, except plain booleans, integers and `[…]` arrays. A number with a
/// leading zero (`0660`, a socket mode) stays a string; `0` itself is an integer.
fn env_value(raw: &str) -> toml::Value {
    if let Ok(b) = raw.parse::<bool>() {
        return toml::Value::Boolean(b);
    }
    if (raw == "0" || !raw.starts_with('0'))
        && raw.len() < 19
        && let Ok(i) = raw.parse::<i64>()
    {
        return toml::Value::Integer(i);
    }
    if raw.starts_with('[')
        && let Ok(t) = toml::from_str::<toml::Table>(&format!("v = {raw}"))
        && let Some(v) = t.get("v")
    {
        return v.clone();
    }
    toml::Value::String(raw.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use jsonwebtoken::Algorithm;
    use tokend_shared::Secret;

    use crate::alg::Alg;
    use crate::config::AlgName;
    use crate::config::tests::{MINIMAL, load};

    #[test]
    fn authentik_env_overrides() {
        let c = load(
            MINIMAL,
            &[
                ("AUTHENTIK_URL", "https://sso.example.org/"),
                ("AUTHENTIK_INTERNAL_URL", "http://authentik-server:9000"),
                ("AUTHENTIK_CLIENT_ID", "other"),
                ("AUTHENTIK_CLIENT_SECRET", "s3cret"),
                ("TOKEND_VERIFY_LEEWAY", "5s"),
                ("TOKEND_LISTEN_ALLOW_NON_LOOPBACK", "true"),
                ("TOKEND_PROVIDER_ALGORITHMS", "[\"ES256\"]"),
                ("TOKEND_LOG", "debug"),
                ("PATH", "/usr/bin"),
            ],
        )
        .expect("valid");
        assert_eq!(
            c.provider.issuer,
            "https://sso.example.org/application/o/shop/"
        );
        assert_eq!(
            c.provider.internal_url.as_deref(),
            Some("http://authentik-server:9000")
        );
        assert_eq!(c.provider.client_id, "other");
        assert_eq!(
            c.provider.client_secret.as_ref().map(Secret::expose),
            Some("s3cret")
        );
        assert_eq!(c.verify.leeway, Duration::from_secs(5));
        assert!(c.listen.allow_non_loopback);
        assert_eq!(
            c.provider.algorithms,
            vec![AlgName(Alg::Jws(Algorithm::ES256))]
        );
    }

    /// Issue #7: `TOKEND_VERIFY_CACHE_MAX_ENTRIES=0`, the documented way to turn the cache
    /// off, loads; leading-zero values such as a socket mode stay strings.
    #[test]
    fn issue_7_env_zero_is_an_integer_and_leading_zeros_stay_strings() {
        assert_eq!(env_value("0"), toml::Value::Integer(0));
        assert_eq!(env_value("10"), toml::Value::Integer(10));
        assert_eq!(env_value("0660"), toml::Value::String("0660".into()));
        let c = load(
            MINIMAL,
            &[
                ("TOKEND_VERIFY_CACHE_MAX_ENTRIES", "0"),
                ("TOKEND_LISTEN_SOCKET_MODE", "0600"),
            ],
        )
        .expect("valid");
        assert_eq!(c.verify.cache_max_entries, 0);
        assert_eq!(c.listen.socket_mode, 0o600);
    }

    #[test]
    fn full_issuer_in_authentik_url_is_taken_as_is() {
        let c = load(
            MINIMAL,
            &[("AUTHENTIK_URL", "https://a.example/application/o/x/")],
        )
        .expect("valid");
        assert_eq!(c.provider.issuer, "https://a.example/application/o/x/");
    }

    #[test]
    fn unknown_tokend_variable_is_an_error() {
        let err = load(MINIMAL, &[("TOKEND_NOPE_X", "1")]).expect_err("unknown");
        assert!(err.to_string().contains("TOKEND_NOPE_X"), "{err}");
        let err = load(MINIMAL, &[("TOKEND_VERIFY_LEEWAY", "soon")]).expect_err("bad value");
        assert!(err.to_string().contains("TOKEND_VERIFY_LEEWAY"), "{err}");
    }
}
