//! `Secret`: a string that never shows itself — Debug and Display print `[redacted]`, and the
//! bytes are zeroized when the value is dropped.

use std::fmt;

use serde::{Deserialize, Deserializer, Serializer};
use zeroize::Zeroizing;

/// What Debug, Display and [`Secret::serialize_redacted`] print instead of a secret.
pub const REDACTED: &str = "[redacted]";

/// A token, code, client secret or API token.
///
/// There is deliberately no `Serialize` impl: code that must send the value says so with
/// `#[serde(serialize_with = "Secret::serialize_exposed")]`, code that describes it uses
/// [`Secret::serialize_redacted`].
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(Zeroizing::new(value.into()))
    }

    /// The secret itself. Call sites are the places to audit.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Serializes the real value (for requests that must carry it).
    pub fn serialize_exposed<S: Serializer>(secret: &Secret, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(secret.expose())
    }

    /// Serializes `[redacted]` (for printing configurations and diagnostics).
    pub fn serialize_redacted<S: Serializer>(_: &Secret, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(REDACTED)
    }

    /// Like [`Secret::serialize_redacted`] for an optional secret: `None` stays `null`.
    pub fn serialize_redacted_opt<S: Serializer>(
        secret: &Option<Secret>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match secret {
            Some(_) => s.serialize_str(REDACTED),
            None => s.serialize_none(),
        }
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self::new(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self::new(value)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_value() {
        let s = Secret::new("hunter2-super-secret");
        assert_eq!(format!("{s:?}"), "[redacted]");
        assert_eq!(format!("{s}"), "[redacted]");
        assert_eq!(format!("{:?}", Some(s.clone())), "Some([redacted])");
        assert_eq!(s.expose(), "hunter2-super-secret");
    }

    #[test]
    fn deserializes_from_a_string() {
        let s: Secret = serde_json::from_str("\"abc\"").expect("valid JSON string");
        assert_eq!(s.expose(), "abc");
    }
}
