//! The client secret's sources: `client_secret`, else `client_secret_file`, else the systemd
//! credential `client_secret` in `$CREDENTIALS_DIRECTORY`.

use std::io::Read;
use std::path::Path;

use tokend_shared::Secret;

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
}
