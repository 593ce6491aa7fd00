//! Sealing records for an engine outside the process (Redis): the record is encoded as JSON and
//! encrypted with AES-256-GCM under the configured key, a fresh random nonce per record, the
//! record's storage key and expiry as associated data (a value moved to another key does not
//! open). Layout: `[format/key id byte = 1][12-byte nonce][ciphertext + 16-byte tag]`.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use serde::{Deserialize, Serialize};
use tokend_shared::Secret;
use zeroize::Zeroizing;

use super::{CodeKind, CodePayload, Key, LoginState, Record};

/// The first byte of every sealed value: the format and key version. A value with another
/// first byte is refused (there is one key; rotation would add a second id).
pub const FORMAT_V1: u8 = 1;

/// Why a sealed value did not open (or could not be made). Never carries the plaintext.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("sealed value of an unknown format or key id")]
    Format,
    #[error("sealed value does not open under the configured key (another key, or altered)")]
    Open,
    #[error("the random source or the cipher failed")]
    Crypto,
    #[error("the opened record is not a record of this version")]
    Decode,
}

/// The AEAD key for record values. `Debug` shows nothing of it.
pub struct SealKey(LessSafeKey);

impl std::fmt::Debug for SealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealKey([redacted])")
    }
}

/// The plaintext of a sealed record (JSON inside the ciphertext only).
#[derive(Serialize, Deserialize)]
#[serde(tag = "t")]
enum Plain {
    #[serde(rename = "code")]
    Code {
        #[serde(serialize_with = "Secret::serialize_exposed")]
        access_token: Secret,
        #[serde(serialize_with = "exposed_opt")]
        refresh_token: Option<Secret>,
        #[serde(serialize_with = "exposed_opt")]
        id_token: Option<Secret>,
        sub: String,
        sid: Option<String>,
        created: i64,
        expires: i64,
        /// `flow` or `api`.
        kind: String,
    },
    #[serde(rename = "login")]
    Login {
        #[serde(serialize_with = "Secret::serialize_exposed")]
        nonce: Secret,
        #[serde(serialize_with = "Secret::serialize_exposed")]
        pkce_verifier: Secret,
        redirect: String,
        browser: Key,
        created: i64,
        expires: i64,
    },
}

fn exposed_opt<S: serde::Serializer>(v: &Option<Secret>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(secret) => Secret::serialize_exposed(secret, s),
        None => s.serialize_none(),
    }
}

impl From<&Record> for Plain {
    fn from(r: &Record) -> Self {
        match r.clone() {
            Record::Code(c) => Plain::Code {
                access_token: c.access_token,
                refresh_token: c.refresh_token,
                id_token: c.id_token,
                sub: c.sub,
                sid: c.sid,
                created: c.created,
                expires: c.expires,
                kind: c.kind.as_str().into(),
            },
            Record::Login(l) => Plain::Login {
                nonce: l.nonce,
                pkce_verifier: l.pkce_verifier,
                redirect: l.redirect,
                browser: l.browser,
                created: l.created,
                expires: l.expires,
            },
        }
    }
}

impl TryFrom<Plain> for Record {
    type Error = SealError;

    fn try_from(p: Plain) -> Result<Self, SealError> {
        Ok(match p {
            Plain::Code {
                access_token,
                refresh_token,
                id_token,
                sub,
                sid,
                created,
                expires,
                kind,
            } => Record::Code(CodePayload {
                access_token,
                refresh_token,
                id_token,
                sub,
                sid,
                created,
                expires,
                kind: match kind.as_str() {
                    "flow" => CodeKind::Flow,
                    "api" => CodeKind::Api,
                    _ => return Err(SealError::Decode),
                },
            }),
            Plain::Login {
                nonce,
                pkce_verifier,
                redirect,
                browser,
                created,
                expires,
            } => Record::Login(LoginState {
                nonce,
                pkce_verifier,
                redirect,
                browser,
                created,
                expires,
            }),
        })
    }
}

impl SealKey {
    pub fn new(bytes: &[u8; 32]) -> Result<Self, SealError> {
        let key = UnboundKey::new(&AES_256_GCM, bytes).map_err(|_| SealError::Crypto)?;
        Ok(Self(LessSafeKey::new(key)))
    }

    /// Seals `record`; `aad` binds it to where it is stored.
    pub fn seal(&self, aad: &[u8], record: &Record) -> Result<Vec<u8>, SealError> {
        let plain = Zeroizing::new(
            serde_json::to_vec(&Plain::from(record)).map_err(|_| SealError::Decode)?,
        );
        self.seal_bytes(aad, &plain)
    }

    /// Seals any bytes (the revocation list's entries, the shared refresh results); `aad`
    /// binds them to where they are stored.
    pub fn seal_bytes(&self, aad: &[u8], plain: &[u8]) -> Result<Vec<u8>, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|_| SealError::Crypto)?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + plain.len() + 16);
        out.push(FORMAT_V1);
        out.extend_from_slice(&nonce);
        let mut body = plain.to_vec();
        self.0
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut body,
            )
            .map_err(|_| SealError::Crypto)?;
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// Opens a value made by [`SealKey::seal`] with the same `aad`.
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Record, SealError> {
        let plain = self.open_bytes(aad, sealed)?;
        let plain: Plain = serde_json::from_slice(&plain).map_err(|_| SealError::Decode)?;
        Record::try_from(plain)
    }

    /// Opens a value made by [`SealKey::seal_bytes`] with the same `aad`.
    pub fn open_bytes(&self, aad: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, SealError> {
        let Some((&FORMAT_V1, rest)) = sealed.split_first() else {
            return Err(SealError::Format);
        };
        if rest.len() < NONCE_LEN + 16 {
            return Err(SealError::Format);
        }
        let (nonce, body) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SealError::Format)?;
        let mut body = Zeroizing::new(body.to_vec());
        let len = self
            .0
            .open_in_place(nonce, Aad::from(aad), &mut body)
            .map_err(|_| SealError::Open)?
            .len();
        body.truncate(len);
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code() -> Record {
        Record::Code(CodePayload {
            access_token: Secret::new("access-token-in-clear"),
            refresh_token: Some(Secret::new("refresh-token-in-clear")),
            id_token: None,
            sub: "user".into(),
            sid: Some("sid".into()),
            created: 1,
            expires: 2,
            kind: CodeKind::Flow,
        })
    }

    #[test]
    fn issue_12_sealed_records_hide_tokens_and_open_only_where_they_were_sealed() {
        let key = SealKey::new(&[7; 32]).expect("key");
        let sealed = key.seal(b"k1", &code()).expect("sealed");
        assert_eq!(sealed[0], FORMAT_V1);
        let text = String::from_utf8_lossy(&sealed);
        assert!(!text.contains("access-token") && !text.contains("refresh-token"));
        let again = key.seal(b"k1", &code()).expect("sealed");
        assert_ne!(sealed, again, "a fresh nonce per record");
        match key.open(b"k1", &sealed) {
            Ok(Record::Code(c)) => {
                assert_eq!(c.access_token.expose(), "access-token-in-clear");
                assert_eq!(c.kind, CodeKind::Flow);
                assert_eq!(c.sid.as_deref(), Some("sid"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(key.open(b"k2", &sealed).err(), Some(SealError::Open));
        let other = SealKey::new(&[8; 32]).expect("key");
        assert_eq!(other.open(b"k1", &sealed).err(), Some(SealError::Open));
        let mut bad = sealed.clone();
        bad[0] = 2;
        assert_eq!(key.open(b"k1", &bad).err(), Some(SealError::Format));
        assert_eq!(
            key.open(b"k1", &sealed[..10]).err(),
            Some(SealError::Format)
        );
        assert!(!format!("{key:?}").contains('7'));
    }

    /// Issue #8 (mutation testing): the shortest sealed value, nonce and tag around nothing,
    /// opens (to nothing); one byte shorter is not a sealed value at all.
    #[test]
    fn issue_8_an_empty_value_opens_and_a_shorter_one_is_malformed() {
        let key = SealKey::new(&[7; 32]).expect("key");
        let sealed = key.seal_bytes(b"k1", b"").expect("sealed");
        assert_eq!(sealed.len(), 1 + NONCE_LEN + 16);
        assert_eq!(
            key.open_bytes(b"k1", &sealed).map(|p| p.len()),
            Ok(0),
            "nothing sealed, nothing opened"
        );
        assert_eq!(
            key.open_bytes(b"k1", &sealed[..sealed.len() - 1]).err(),
            Some(SealError::Format)
        );
    }
}
