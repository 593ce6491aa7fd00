//! JWS signature algorithms tokend verifies.

use jsonwebtoken::Algorithm;

/// A JWS signature algorithm tokend verifies: those of jsonwebtoken, plus ES512 (ECDSA on
/// P-521, which Authentik signs with P-521 keys), checked with aws-lc-rs directly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Alg {
    Jws(Algorithm),
    Es512,
}

impl Alg {
    /// The algorithm named by a JOSE `alg` value, if tokend can verify it.
    pub fn parse(name: &str) -> Option<Alg> {
        match name {
            "ES512" => Some(Alg::Es512),
            other => other.parse::<Algorithm>().ok().map(Alg::Jws),
        }
    }

    pub fn is_hmac(self) -> bool {
        matches!(
            self,
            Alg::Jws(Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
        )
    }
}

impl std::fmt::Display for Alg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Alg::Jws(a) => write!(f, "{a:?}"),
            Alg::Es512 => f.write_str("ES512"),
        }
    }
}
