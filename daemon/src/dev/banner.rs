//! What `tokend dev` prints once it listens: that it is not for production, where it listens,
//! and copy-paste examples for each thing tokend does.

use std::net::SocketAddr;
use std::path::Path;

/// The banner text.
pub fn banner(
    http: SocketAddr,
    socket: &Path,
    admin: Option<&Path>,
    issuer: &str,
    config: Option<&Path>,
) -> String {
    let base = format!("http://{http}");
    let sock = socket.display();
    let (admin_line, admin_example) = match admin {
        Some(a) => (
            a.display().to_string(),
            format!(
                "curl -s --unix-socket {} http://tokend/v1/admin/sessions",
                a.display()
            ),
        ),
        None => ("off ([admin] enabled = false)".to_string(), String::new()),
    };
    let config = match config {
        Some(p) => format!(
            "{} (dev issuer in place of [provider]; reloads on change and SIGHUP)",
            p.display()
        ),
        None => "embedded defaults (tokend dev --config FILE to use yours)".to_string(),
    };
    let field = |name: &str| format!("sed -E 's/.*\"{name}\":\"([^\"]*)\".*/\\1/'");
    let token = field("access_token");
    let sid = field("sid");
    let code = field("code");
    format!(
        r#"
=====================================================================================
 tokend dev — DEVELOPMENT ONLY, NOT FOR PRODUCTION
 An ephemeral signing key and a built-in issuer on which anyone can log in as anyone.
=====================================================================================
 HTTP         {base}
 socket       {sock}
 admin socket {admin_line}   (operators only: root and your uid)
 dev issuer   {issuer}
 config       {config}

 Mint an access token shaped like Authentik's (body fields all optional:
 sub email name groups organizationId role ttl scope):
   R=$(curl -s -X POST {base}/dev/token -d '{{"sub":"jane"}}')
   TOKEN=$(echo "$R" | {token}); SID=$(echo "$R" | {sid})

 Verify it over the socket and over TCP:
   curl -s --unix-socket {sock} http://tokend/v1/verify -H "Authorization: Bearer $TOKEN"
   curl -s {base}/v1/verify -H "Authorization: Bearer $TOKEN"

 An expired token (ttl below the 60 s leeway) answers 401 "expired":
   curl -s -X POST {base}/dev/token -d '{{"ttl":-120}}'

 Issue a one-time exchange code and redeem it (once):
   CODE=$(curl -s -X POST {base}/v1/codes -d "{{\"access_token\":\"$TOKEN\"}}" | {code})
   curl -s -X POST {base}/v1/codes/redeem -d "{{\"code\":\"$CODE\"}}"

 End the session with a back-channel logout; the token then answers 401 "token_revoked":
   curl -s -X POST {base}/dev/logout -d "{{\"sid\":\"$SID\"}}"

 Log in through the flow in a browser (users jane, sam, uma, or anyone you type):
   {base}/auth/login?redirect=/      (the dev app at {base}/dev/app/ shows the session)

 Metrics, and the admin API (on its own socket only):
   curl -s {base}/metrics | grep ^tokend_
   {admin_example}

 The console: tokentop   (run as this user, it finds the admin socket above by itself)
=====================================================================================
"#
    )
}
