//! The dev issuer's state and its tokens: the built-in users, browser sessions (`sid`),
//! authorization codes and refresh tokens, and minting access, ID and logout tokens shaped as
//! Authentik shapes them (`docs` of Authentik: claim set, `typ`, `sid`, `azp`, `uid`). It also
//! delivers back-channel logout tokens to tokend, as Authentik does.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use tokend_shared::Secret;

use super::DevError;
use super::keys::SigningKey;
use crate::verify::now_unix;

/// The path segment every dev issuer URL carries, so no token of it passes for a real one.
pub const DEV_PREFIX: &str = "/dev-only-not-for-production";
/// The dev application's slug and client id.
pub const CLIENT_ID: &str = "tokend-dev";
/// Authentik's `acr`.
const ACR: &str = "goauthentik.io/providers/oauth2/default";
/// Lifetime of access and ID tokens from the flow (Authentik: `access_token_validity`).
pub const ACCESS_TTL: i64 = 3600;
/// Lifetime of an authorization code (Authentik: `access_code_validity`, one minute).
const CODE_TTL: i64 = 60;
/// Lifetime of a login page in progress.
const AUTHORIZE_TTL: i64 = 600;
/// Most authorization requests, codes and refresh tokens kept each (oldest dropped).
const MAX_ENTRIES: usize = 10_000;

/// A user of the dev issuer.
#[derive(Debug, Clone)]
pub struct DevUser {
    pub sub: String,
    pub username: String,
    pub email: String,
    pub name: String,
    pub groups: Vec<String>,
    pub organization_id: Option<String>,
}

impl DevUser {
    /// A user from a username: Authentik's default `sub` is a 64-hex hash of the user.
    pub fn new(username: &str, name: &str, groups: &[&str], org: Option<&str>) -> Self {
        Self {
            sub: hex(&Sha256::digest(format!("tokend-dev-user-{username}"))),
            username: username.into(),
            email: format!("{username}@example.com"),
            name: name.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            organization_id: org.map(str::to_string),
        }
    }
}

/// The built-in users the dev login page offers; the first is `/dev/token`'s default.
pub fn builtin_users() -> Vec<DevUser> {
    vec![
        DevUser::new("jane", "Jane Admin", &["ecosire-admins"], Some("org-1")),
        DevUser::new("sam", "Sam Support", &["ecosire-support"], Some("org-1")),
        DevUser::new("uma", "Uma User", &[], Some("org-2")),
    ]
}

/// An authorization request waiting on the login page.
#[derive(Debug, Clone)]
pub struct AuthRequest {
    pub redirect_uri: String,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub scope: String,
    pub code_challenge: Option<(String, String)>,
    pub created: i64,
}

/// What an authorization code or a refresh token grants.
#[derive(Debug, Clone)]
pub struct Grant {
    pub user: DevUser,
    pub sid: String,
    pub scope: String,
    pub nonce: Option<String>,
    pub auth_time: i64,
    pub redirect_uri: String,
    pub code_challenge: Option<(String, String)>,
    pub created: i64,
    /// A refresh token already used (Authentik rotates them; reuse is `invalid_grant`).
    pub revoked: bool,
}

#[derive(Debug, Default)]
struct State {
    /// By request handle.
    authorizations: HashMap<String, AuthRequest>,
    /// By SHA-256 of the code.
    codes: HashMap<String, Grant>,
    /// By SHA-256 of the refresh token.
    refresh: HashMap<String, Grant>,
    /// Live sessions: sid → sub.
    sessions: HashMap<String, String>,
}

/// What a refresh token presented at the token endpoint turns out to be.
pub enum Refresh {
    /// Never issued (or forgotten: revoked, expired).
    Unknown,
    /// Used before: Authentik rotates refresh tokens and refuses a reuse.
    Reused,
    /// Good once: its grant (the token is now used).
    Granted(Box<Grant>),
}

/// Tokens of one grant.
pub struct Minted {
    pub access_token: Secret,
    pub id_token: Secret,
    pub refresh_token: Option<Secret>,
    pub scope: String,
}

/// The dev issuer.
pub struct DevIssuer {
    /// `http://127.0.0.1:<port>`: where its HTTP server listens.
    pub origin: String,
    /// `{origin}/dev-only-not-for-production/application/o/tokend-dev/`.
    pub issuer: String,
    pub client_secret: Secret,
    /// Where tokend listens over TCP (`http://addr`): back-channel logout tokens go there.
    pub tokend_url: String,
    /// tokend's callback, the one redirect URI registered for the dev client.
    pub redirect_uri: String,
    pub users: Vec<DevUser>,
    key: SigningKey,
    state: Mutex<State>,
    http: reqwest::Client,
}

impl std::fmt::Debug for DevIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevIssuer")
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

impl DevIssuer {
    /// An issuer served at `origin`, for a tokend at `tokend_url`.
    pub fn new(origin: String, tokend_url: String) -> Result<Self, DevError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| DevError::Http(e.to_string()))?;
        Ok(Self {
            issuer: format!("{origin}{DEV_PREFIX}/application/o/{CLIENT_ID}/"),
            redirect_uri: format!("{tokend_url}/auth/callback"),
            origin,
            client_secret: Secret::new(random_hex(32)?),
            tokend_url,
            users: builtin_users(),
            key: SigningKey::generate()?,
            state: Mutex::new(State::default()),
            http,
        })
    }

    /// `{origin}/dev-only-not-for-production/application/o/` + `rest`.
    pub fn url(&self, rest: &str) -> String {
        format!("{}{DEV_PREFIX}/application/o/{rest}", self.origin)
    }

    /// The discovery document, laid out as Authentik's.
    pub fn discovery(&self) -> Value {
        json!({
            "issuer": self.issuer,
            "authorization_endpoint": self.url("authorize/"),
            "token_endpoint": self.url("token/"),
            "end_session_endpoint": self.url(&format!("{CLIENT_ID}/end-session/")),
            "revocation_endpoint": self.url("revoke/"),
            "backchannel_logout_supported": true,
            "backchannel_logout_session_supported": true,
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "jwks_uri": self.url(&format!("{CLIENT_ID}/jwks/")),
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "subject_types_supported": ["public"],
            "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
            "acr_values_supported": [ACR],
            "scopes_supported": ["openid", "email", "profile", "offline_access", "organization"],
            "request_parameter_supported": false,
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "acr", "amr",
                "nonce", "email", "email_verified", "name", "given_name", "preferred_username",
                "nickname", "groups", "organizationId"],
            "claims_parameter_supported": false,
            "code_challenge_methods_supported": ["plain", "S256"],
        })
    }

    pub fn jwks(&self) -> Value {
        self.key.jwks()
    }

    /// The `sid` of an ID token this issuer signed (`id_token_hint`).
    pub fn hint_sid(&self, id_token: &str) -> Option<String> {
        let claims = self.key.claims_of(id_token, &self.issuer, CLIENT_ID)?;
        claims["sid"].as_str().map(str::to_string)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts a browser session of `sub`; returns its `sid` (64 hex, as Authentik's).
    pub fn new_session(&self, sub: &str) -> Result<String, DevError> {
        let sid = hex(&Sha256::digest(random_hex(32)?));
        self.lock().sessions.insert(sid.clone(), sub.to_string());
        Ok(sid)
    }

    /// The `sub` of a live session.
    pub fn session_sub(&self, sid: &str) -> Option<String> {
        self.lock().sessions.get(sid).cloned()
    }

    fn end_session(&self, sid: &str) {
        self.lock().sessions.remove(sid);
    }

    fn end_sub(&self, sub: &str) {
        self.lock().sessions.retain(|_, s| s != sub);
    }

    /// Parks an authorization request for the login page; returns its handle.
    pub fn park_authorization(&self, req: AuthRequest) -> Result<String, DevError> {
        let handle = random_hex(16)?;
        let mut st = self.lock();
        let now = now_unix();
        st.authorizations
            .retain(|_, r| now - r.created < AUTHORIZE_TTL);
        if st.authorizations.len() >= MAX_ENTRIES {
            st.authorizations.clear();
        }
        st.authorizations.insert(handle.clone(), req);
        Ok(handle)
    }

    pub fn take_authorization(&self, handle: &str) -> Option<AuthRequest> {
        let req = self.lock().authorizations.remove(handle)?;
        (now_unix() - req.created < AUTHORIZE_TTL).then_some(req)
    }

    /// Ends an authorization request with a login as `user`: a session and a code.
    pub fn issue_code(&self, req: AuthRequest, user: DevUser) -> Result<Secret, DevError> {
        let now = now_unix();
        let sid = self.new_session(&user.sub)?;
        let code = Secret::new(random_hex(16)?);
        let grant = Grant {
            user,
            sid,
            scope: req.scope,
            nonce: req.nonce,
            auth_time: now,
            redirect_uri: req.redirect_uri,
            code_challenge: req.code_challenge,
            created: now,
            revoked: false,
        };
        let mut st = self.lock();
        st.codes.retain(|_, g| now - g.created < CODE_TTL);
        if st.codes.len() >= MAX_ENTRIES {
            st.codes.clear();
        }
        st.codes.insert(hash(code.expose()), grant);
        Ok(code)
    }

    /// Takes a code (single use); `None` when unknown or expired.
    pub fn take_code(&self, code: &str) -> Option<Grant> {
        let grant = self.lock().codes.remove(&hash(code))?;
        (now_unix() - grant.created < CODE_TTL).then_some(grant)
    }

    /// The grant of a refresh token, marking it used (rotation).
    pub fn rotate_refresh(&self, token: &str) -> Refresh {
        let mut st = self.lock();
        match st.refresh.get_mut(&hash(token)) {
            None => Refresh::Unknown,
            Some(g) if g.revoked => Refresh::Reused,
            Some(g) => {
                g.revoked = true;
                Refresh::Granted(Box::new(g.clone()))
            }
        }
    }

    /// RFC 7009: forgets a refresh token.
    pub fn revoke(&self, token: &str) {
        self.lock().refresh.remove(&hash(token));
    }

    /// The tokens of a grant from the token endpoint: access and ID token, and a refresh token
    /// when `offline_access` was granted. After the session ended, as Authentik does, the new
    /// tokens carry no `sid`.
    pub fn mint_grant(&self, grant: &Grant) -> Result<Minted, DevError> {
        let now = now_unix();
        let sid = self
            .session_sub(&grant.sid)
            .is_some()
            .then_some(grant.sid.as_str());
        let claims = self.id_claims(
            &grant.user,
            sid,
            grant.nonce.as_deref(),
            &grant.scope,
            now,
            now + ACCESS_TTL,
            grant.auth_time,
        )?;
        let id_token = Secret::new(self.key.sign("JWT", &claims)?);
        let access_token = Secret::new(
            self.key
                .sign("JWT", &access_claims(claims, &grant.scope)?)?,
        );
        let refresh_token = if grant.scope.split(' ').any(|s| s == "offline_access") {
            let token = Secret::new(random_alnum(128)?);
            let mut st = self.lock();
            st.refresh.retain(|_, g| now - g.created < 30 * 86400);
            if st.refresh.len() >= MAX_ENTRIES {
                st.refresh.clear();
            }
            let next = Grant {
                created: now,
                revoked: false,
                ..grant.clone()
            };
            st.refresh.insert(hash(token.expose()), next);
            Some(token)
        } else {
            None
        };
        Ok(Minted {
            access_token,
            id_token,
            refresh_token,
            scope: grant.scope.clone(),
        })
    }

    /// An access token of `user` for `POST /dev/token`, in a new session; `exp` is
    /// `now + ttl` (a token with `ttl <= 0` is already expired).
    pub fn mint_access(
        &self,
        user: &DevUser,
        scope: &str,
        ttl: i64,
    ) -> Result<(Secret, String), DevError> {
        let now = now_unix();
        let sid = self.new_session(&user.sub)?;
        let exp = now + ttl;
        // An expired token was issued before it expired.
        let iat = now.min(exp - 1);
        let claims = self.id_claims(user, Some(&sid), None, scope, iat, exp, iat)?;
        let token = self.key.sign("JWT", &access_claims(claims, scope)?)?;
        Ok((Secret::new(token), sid))
    }

    /// Authentik's ID-token claim set for `user` (claims of the granted scopes included).
    #[allow(clippy::too_many_arguments)]
    fn id_claims(
        &self,
        user: &DevUser,
        sid: Option<&str>,
        nonce: Option<&str>,
        scope: &str,
        iat: i64,
        exp: i64,
        auth_time: i64,
    ) -> Result<Map<String, Value>, DevError> {
        let scopes: Vec<&str> = scope.split(' ').collect();
        let mut c = Map::new();
        c.insert("iss".into(), json!(self.issuer));
        c.insert("sub".into(), json!(user.sub));
        c.insert("aud".into(), json!(CLIENT_ID));
        c.insert("exp".into(), json!(exp));
        c.insert("iat".into(), json!(iat));
        c.insert("auth_time".into(), json!(auth_time));
        c.insert("acr".into(), json!(ACR));
        c.insert("amr".into(), json!(["pwd"]));
        if let Some(n) = nonce {
            c.insert("nonce".into(), json!(n));
        }
        if let Some(s) = sid {
            c.insert("sid".into(), json!(s));
        }
        c.insert("jti".into(), json!(random_alnum(40)?));
        if scopes.contains(&"email") {
            c.insert("email".into(), json!(user.email));
            c.insert("email_verified".into(), json!(false));
        }
        if scopes.contains(&"profile") {
            c.insert("name".into(), json!(user.name));
            c.insert("given_name".into(), json!(user.name));
            c.insert("preferred_username".into(), json!(user.username));
            c.insert("nickname".into(), json!(user.username));
            c.insert("groups".into(), json!(user.groups));
        }
        if scopes.contains(&"organization")
            && let Some(org) = &user.organization_id
        {
            c.insert("organizationId".into(), json!(org));
        }
        Ok(c)
    }

    /// Ends a session (or every session of a user) and sends tokend a signed back-channel
    /// logout token for it, as Authentik does; returns once tokend answered 200.
    pub async fn backchannel_logout(
        &self,
        sid: Option<&str>,
        sub: Option<&str>,
    ) -> Result<(), DevError> {
        let sub = match (sid, sub) {
            (Some(sid), sub) => {
                let known = self.session_sub(sid).ok_or(DevError::UnknownSession)?;
                self.end_session(sid);
                Some(sub.map_or(known, str::to_string))
            }
            (None, Some(sub)) => {
                self.end_sub(sub);
                Some(sub.to_string())
            }
            (None, None) => return Err(DevError::UnknownSession),
        };
        let now = now_unix();
        let mut claims = json!({
            "iss": self.issuer,
            "aud": CLIENT_ID,
            "iat": now,
            "exp": now + ACCESS_TTL,
            "jti": uuid4()?,
            "events": {"http://schemas.openid.net/event/backchannel-logout": {}},
        });
        if let Some(sub) = sub {
            claims["sub"] = json!(sub);
        }
        if let Some(sid) = sid {
            claims["sid"] = json!(sid);
        }
        let token = Secret::new(self.key.sign("logout+jwt", &claims)?);
        let url = format!("{}/auth/backchannel-logout", self.tokend_url);
        let resp = self
            .http
            .post(&url)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(
                serde_urlencoded::to_string([("logout_token", token.expose())])
                    .map_err(|_| DevError::Sign)?,
            )
            .send()
            .await
            .map_err(|e| DevError::Http(crate::provider::error_chain(&e)))?;
        if !resp.status().is_success() {
            return Err(DevError::LogoutRefused(resp.status().as_u16()));
        }
        Ok(())
    }
}

/// The access token's claims: the ID token's plus `azp`, `uid` and `scope`.
fn access_claims(mut c: Map<String, Value>, scope: &str) -> Result<Map<String, Value>, DevError> {
    c.insert("azp".into(), json!(CLIENT_ID));
    c.insert("uid".into(), json!(random_alnum(40)?));
    c.insert("scope".into(), json!(scope));
    Ok(c)
}

pub fn hash(s: &str) -> String {
    hex(&Sha256::digest(s))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn random_bytes<const N: usize>() -> Result<[u8; N], DevError> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(|_| DevError::Random)?;
    Ok(b)
}

/// `n` random bytes as hex.
pub fn random_hex(n: usize) -> Result<String, DevError> {
    let mut out = String::new();
    while out.len() < 2 * n {
        out.push_str(&hex(&random_bytes::<16>()?));
    }
    out.truncate(2 * n);
    Ok(out)
}

/// `n` random `[A-Za-z0-9]` characters (Authentik's `generate_id`).
fn random_alnum(n: usize) -> Result<String, DevError> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = String::with_capacity(n);
    while out.len() < n {
        for b in random_bytes::<64>()? {
            // 248 = 4 * 62: no modulo bias.
            if b < 248 && out.len() < n {
                out.push(ALPHABET[usize::from(b) % 62] as char);
            }
        }
    }
    Ok(out)
}

/// A random dashed UUID4 (the logout token's `jti`, as Authentik's).
fn uuid4() -> Result<String, DevError> {
    let mut b = random_bytes::<16>()?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex(&b);
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_tokens_rotate_and_a_reuse_is_refused() {
        let issuer =
            DevIssuer::new("http://127.0.0.1:1".into(), "http://127.0.0.1:2".into()).expect("new");
        let user = issuer.users[0].clone();
        let req = AuthRequest {
            redirect_uri: issuer.redirect_uri.clone(),
            state: None,
            nonce: Some("n".into()),
            scope: "openid offline_access".into(),
            code_challenge: None,
            created: now_unix(),
        };
        let code = issuer.issue_code(req, user).expect("code");
        let grant = issuer.take_code(code.expose()).expect("grant");
        assert!(
            issuer.take_code(code.expose()).is_none(),
            "codes are single use"
        );
        let first = issuer.mint_grant(&grant).expect("mint");
        let rt = first
            .refresh_token
            .expect("offline_access gives a refresh token");
        let Refresh::Granted(next) = issuer.rotate_refresh(rt.expose()) else {
            panic!("first use");
        };
        assert!(matches!(
            issuer.rotate_refresh(rt.expose()),
            Refresh::Reused
        ));
        let second = issuer.mint_grant(&next).expect("mint");
        assert_ne!(second.refresh_token, Some(rt));
        assert!(matches!(issuer.rotate_refresh("nope"), Refresh::Unknown));
    }
}
