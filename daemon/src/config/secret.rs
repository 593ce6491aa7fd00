//! Secrets read at load: the client secret (`client_secret`, else `client_secret_file`, else
//! the systemd credential `client_secret` in `$CREDENTIALS_DIRECTORY`), and the Redis store's
//! password and sealing key (a file or a named credential); and the sealing key's decoding.

use std::io::Read;
use std::path::Path;

use base64::Engine;
use tokend_shared::Secret;
use zeroize::Zeroizing;

use super::{Config, ConfigError, invalid};

/// Longest secret file read: a client secret is short; a path to a device or a huge file is a
/// mistake that must not exhaust memory (issue #9).
const MAX_SECRET_FILE: u64 = 64 * 1024;

impl Config {
    /// The secret comes from `client_secret`, else `client_secret_file`, else the systemd
    /// credential `client_secret` in `$CREDENTIALS_DIRECTORY`.
    pub(super) fn resolve_secret(
        &mut self,
        credentials_dir: Option<&Path>,
    ) -> Result<(), ConfigError> {
        if self.provider.client_secret.is_some() && self.provider.client_secret_file.is_some() {
            return Err(invalid(
                "provider.client_secret",
                "set either client_secret or client_secret_file, not both",
            ));
        }
        if self.provider.client_secret.is_some() {
            return Ok(());
        }
        let (key, path) = match (&self.provider.client_secret_file, credentials_dir) {
            (Some(file), _) => ("provider.client_secret_file", file.clone()),
            (None, Some(dir)) if dir.join("client_secret").is_file() => {
                ("CREDENTIALS_DIRECTORY", dir.join("client_secret"))
            }
            _ => return Ok(()),
        };
        let mut text = read_bounded(&path).map_err(|source| ConfigError::SecretFile {
            key,
            path: path.clone(),
            source,
        })?;
        let trimmed = text.trim_end_matches(['\r', '\n']).len();
        text.truncate(trimmed);
        self.provider.client_secret = Some(Secret::new(text));
        Ok(())
    }
}

impl Config {
    /// Reads `[store]`'s password and sealing key from their file or systemd credential.
    pub(super) fn resolve_store_secrets(
        &mut self,
        credentials_dir: Option<&Path>,
    ) -> Result<(), ConfigError> {
        let s = &self.store;
        let password = read_one(
            ("store.password_file", s.password_file.as_deref()),
            (
                "store.password_credential",
                s.password_credential.as_deref(),
            ),
            credentials_dir,
        )?;
        let key = read_one(
            (
                "store.encryption_key_file",
                s.encryption_key_file.as_deref(),
            ),
            (
                "store.encryption_key_credential",
                s.encryption_key_credential.as_deref(),
            ),
            credentials_dir,
        )?;
        self.store.password = password;
        self.store.encryption_key = key;
        Ok(())
    }
}

/// The secret in `file`, else in the systemd credential named `credential`; at most one of
/// them may be set.
fn read_one(
    file: (&'static str, Option<&Path>),
    credential: (&'static str, Option<&str>),
    credentials_dir: Option<&Path>,
) -> Result<Option<Secret>, ConfigError> {
    let path = match (file.1, credential.1) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                file.0,
                format!("set either {} or {}, not both", file.0, credential.0),
            ));
        }
        (Some(path), None) => (file.0, path.to_path_buf()),
        (None, Some(name)) => {
            if name.is_empty() || name.contains('/') || name.starts_with('.') {
                return Err(invalid(credential.0, "not a credential name"));
            }
            let Some(dir) = credentials_dir else {
                return Err(invalid(
                    credential.0,
                    "$CREDENTIALS_DIRECTORY is not set: systemd sets it for a unit with \
                     LoadCredential= or SetCredentialEncrypted=",
                ));
            };
            (credential.0, dir.join(name))
        }
        (None, None) => return Ok(None),
    };
    let (key, path) = path;
    let mut text =
        read_bounded(&path).map_err(|source| ConfigError::SecretFile { key, path, source })?;
    let trimmed = text.trim_end_matches(['\r', '\n']).len();
    text.truncate(trimmed);
    Ok(Some(Secret::new(text)))
}

/// The 32 bytes of a store sealing key written as 64 hex characters or as base64 (standard
/// or URL-safe, padded or not); `None` for anything else.
pub fn decode_store_key(text: &str) -> Option<Zeroizing<[u8; 32]>> {
    let text = text.trim();
    let mut key = Zeroizing::new([0u8; 32]);
    if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        for (i, pair) in text.as_bytes().chunks(2).enumerate() {
            let hex = std::str::from_utf8(pair).ok()?;
            key[i] = u8::from_str_radix(hex, 16).ok()?;
        }
        return Some(key);
    }
    let unpadded = text.trim_end_matches('=');
    let bytes = Zeroizing::new(
        base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(unpadded)
            .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(unpadded))
            .ok()?,
    );
    if bytes.len() != 32 {
        return None;
    }
    key.copy_from_slice(&bytes);
    Some(key)
}

/// The file's text, refusing more than [`MAX_SECRET_FILE`] bytes.
pub(super) fn read_bounded(path: &Path) -> std::io::Result<String> {
    let mut text = String::new();
    std::fs::File::open(path)?
        .take(MAX_SECRET_FILE + 1)
        .read_to_string(&mut text)?;
    if text.len() as u64 > MAX_SECRET_FILE {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("longer than {MAX_SECRET_FILE} bytes; not a client secret"),
        ));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::{MINIMAL, load};

    #[test]
    fn secret_from_credentials_directory_and_redacted_output() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("client_secret"), "from-credential\n").expect("write");
        let c = load(
            MINIMAL,
            &[(
                "CREDENTIALS_DIRECTORY",
                dir.path().to_str().expect("utf-8 path"),
            )],
        )
        .expect("valid");
        assert_eq!(
            c.provider.client_secret.as_ref().map(Secret::expose),
            Some("from-credential")
        );
        let shown = c.to_redacted_toml();
        assert!(!shown.contains("from-credential"), "{shown}");
        assert!(shown.contains("[redacted]"), "{shown}");
        assert!(!format!("{c:?}").contains("from-credential"));
    }

    #[test]
    fn an_endless_secret_file_is_refused() {
        // Issue #9: a secret file was read whole, whatever its size (/dev/zero never ends).
        let err = load(
            &MINIMAL.replace(
                "client_id = \"shop\"",
                "client_id = \"shop\"\nclient_secret_file = \"/dev/zero\"",
            ),
            &[],
        )
        .expect_err("refused");
        assert!(err.to_string().contains("longer than"), "{err}");
    }

    #[test]
    fn issue_12_store_key_is_hex_or_base64_of_32_bytes() {
        let hex = "00".repeat(31) + "ff";
        assert_eq!(decode_store_key(&hex).map(|k| k[31]), Some(0xff));
        let b64 = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        assert_eq!(decode_store_key(&format!("{b64}\n")).map(|k| k[0]), Some(7));
        assert!(decode_store_key(&"00".repeat(31)).is_none(), "31 bytes");
        assert!(decode_store_key("correct horse battery staple").is_none());
    }

    #[test]
    fn issue_12_redis_secrets_from_credentials_and_never_shown() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("redis_pw"), "pw-from-credential\n").expect("write");
        std::fs::write(dir.path().join("store_key"), "ab".repeat(32)).expect("write");
        let text = format!(
            "{MINIMAL}\n[store]\nkind = \"redis\"\nurl = \"redis://127.0.0.1:6379\"\n\
             password_credential = \"redis_pw\"\nencryption_key_credential = \"store_key\"\n"
        );
        let creds = dir.path().to_str().expect("utf-8 path");
        let c = load(&text, &[("CREDENTIALS_DIRECTORY", creds)]).expect("valid");
        assert_eq!(
            c.store.password.as_ref().map(Secret::expose),
            Some("pw-from-credential")
        );
        let shown = c.to_redacted_toml();
        assert!(!shown.contains("pw-from-credential") && !shown.contains("abab"));
        assert!(!format!("{c:?}").contains("pw-from-credential"));
        let err = load(&text, &[]).expect_err("no credentials directory");
        assert!(err.to_string().contains("CREDENTIALS_DIRECTORY"), "{err}");
    }
}
