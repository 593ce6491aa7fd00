//! Unit tests of loading, defaults and accessors of the configuration.

use std::path::Path;

use super::*;

pub(in crate::config) const MINIMAL: &str = r#"
[listen]
http = "127.0.0.1:9180"

[provider]
issuer = "https://auth.example.com/application/o/shop/"
client_id = "shop"
"#;

pub(in crate::config) fn load(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    Config::from_toml(
        text,
        Path::new("test.toml"),
        Path::new("/etc/tokend"),
        env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
    )
}

#[test]
fn defaults_follow_the_reference_design() {
    let c = load(MINIMAL, &[]).expect("valid");
    assert_eq!(c.cookies.access_name, "ecosire_auth");
    assert_eq!(c.claims.organization_claim, "organizationId");
    assert_eq!(c.claims.default_role, "user");
    assert_eq!(c.claims.roles[0].group, "ecosire-admins");
    assert_eq!(c.verify.leeway, Duration::from_secs(60));
    assert_eq!(c.jwks.min_refetch_interval, Duration::from_secs(10));
    assert_eq!(c.listen.socket_mode, 0o660);
    assert!(!c.listen.allow_non_loopback);
    assert_eq!(c.audience(), "shop");
    assert!(c.provider.algorithms.iter().all(|a| !a.is_hmac()));
}

/// Issue #10: an issuer without its trailing slash is valid but warned about.
#[test]
fn issue_10_issuer_without_trailing_slash_is_warned_about() {
    let c = load(MINIMAL, &[]).expect("valid");
    assert!(c.warnings().is_empty());
    let c = load(&MINIMAL.replace("shop/\"", "shop\""), &[]).expect("valid");
    let w = c.warnings();
    assert_eq!(w.len(), 1);
    assert!(w[0].contains("does not end with `/`"), "{w:?}");
}

#[test]
fn unknown_key_names_key_and_line() {
    let err =
        load(&format!("{MINIMAL}\n[jwks]\nrefresh = \"5m\"\n"), &[]).expect_err("unknown key");
    let msg = err.to_string();
    assert!(msg.contains("refresh"), "{msg}");
    assert!(msg.contains("line 10"), "{msg}");
}

/// Issue #7: revocations live as long as the longest token they refuse: by default
/// `cookies.refresh_max_age`, and an explicit shorter `revocation_ttl` is refused.
#[test]
fn issue_7_revocation_ttl_covers_refresh_max_age() {
    let c = load(MINIMAL, &[]).expect("valid");
    assert_eq!(
        c.cookies.refresh_max_age,
        Duration::from_secs(30 * 24 * 3600)
    );
    assert_eq!(c.revocation_ttl(), c.cookies.refresh_max_age);
    assert_eq!(c.sessions.revocation_ttl, Some(c.cookies.refresh_max_age));
    assert!(
        c.to_redacted_toml()
            .contains("revocation_ttl = \"2592000s\"")
    );

    let short_cookie = format!("{MINIMAL}\n[cookies]\nrefresh_max_age = \"10m\"\n");
    let c = load(&short_cookie, &[]).expect("valid");
    assert_eq!(c.revocation_ttl(), Duration::from_secs(3600), "at least 1h");

    let err = load(
        &format!("{MINIMAL}\n[sessions]\nrevocation_ttl = \"24h\"\n"),
        &[],
    )
    .expect_err("shorter than refresh_max_age");
    let msg = err.to_string();
    assert!(msg.contains("sessions.revocation_ttl"), "{msg}");
    assert!(msg.contains("cookies.refresh_max_age"), "{msg}");

    let c = load(
        &format!("{MINIMAL}\n[sessions]\nrevocation_ttl = \"45d\"\n"),
        &[],
    )
    .expect("longer is fine");
    assert_eq!(c.revocation_ttl(), Duration::from_secs(45 * 24 * 3600));
}

/// Issue #12: the sessions snapshot lives in the state directory: `sessions.snapshot_file`,
/// else beside `jwks.cache_file`, else in systemd's `$STATE_DIRECTORY`; off with
/// `sessions.snapshot = false` or with no state directory.
#[test]
fn issue_12_the_snapshot_file_is_resolved_in_the_state_directory() {
    let file =
        |text: &str, env: &[(&str, &str)]| load(text, env).expect("valid").sessions.snapshot_file;
    let snapshot = |p: &str| Some(PathBuf::from(p));
    assert_eq!(file(MINIMAL, &[]), None, "no state directory");
    let cached = format!("{MINIMAL}\n[jwks]\ncache_file = \"/var/lib/tokend/jwks.json\"\n");
    assert_eq!(
        file(&cached, &[]),
        snapshot("/var/lib/tokend/snapshot.json")
    );
    assert_eq!(
        file(
            MINIMAL,
            &[("STATE_DIRECTORY", "/var/lib/tokend:/var/lib/other")]
        ),
        snapshot("/var/lib/tokend/snapshot.json")
    );
    assert_eq!(
        file(&cached, &[("STATE_DIRECTORY", "/elsewhere")]),
        snapshot("/var/lib/tokend/snapshot.json"),
        "beside the JWKS cache first"
    );
    let explicit = format!("{cached}\n[sessions]\nsnapshot_file = \"state/s.json\"\n");
    assert_eq!(file(&explicit, &[]), snapshot("/etc/tokend/state/s.json"));
    let off = format!("{cached}\n[sessions]\nsnapshot = false\n");
    assert_eq!(file(&off, &[("STATE_DIRECTORY", "/var/lib/tokend")]), None);
    let c = load(MINIMAL, &[]).expect("valid");
    assert_eq!(c.sessions.snapshot_interval, Duration::from_secs(30));
    assert!(c.sessions.snapshot);
}

/// Issue #14: the cache's byte bound defaults to 32 MiB and, like every key, can come from the
/// environment as a number of bytes or a size with a unit.
#[test]
fn issue_14_cache_max_bytes_default_and_environment() {
    let c = load(MINIMAL, &[]).expect("valid");
    assert_eq!(c.verify.cache_max_bytes, 32 * 1024 * 1024);
    assert_eq!(c.verify.cache_max_entries, 100_000, "the entry bound stays");
    for (value, bytes) in [("16MiB", 16 << 20), ("1048576", 1 << 20), ("0", 0)] {
        let c = load(MINIMAL, &[("TOKEND_VERIFY_CACHE_MAX_BYTES", value)]).expect("valid");
        assert_eq!(c.verify.cache_max_bytes, bytes, "{value}");
    }
    let err = load(MINIMAL, &[("TOKEND_VERIFY_CACHE_MAX_BYTES", "lots")]).expect_err("bad");
    assert!(
        err.to_string().contains("TOKEND_VERIFY_CACHE_MAX_BYTES"),
        "{err}"
    );
}
