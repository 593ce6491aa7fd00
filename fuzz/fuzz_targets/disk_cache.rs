//! The JWKS disk cache file (`jwks.cache_file`), loaded at start so tokend verifies while the
//! provider is down: any bytes written to the file, then `Jwks::load_disk_cache` as the daemon
//! calls it, with two key caches — `max_stale` of a century (so seeds dated at generation stay
//! loadable) and the default 24 h. Property: a file accepted names this issuer, its discovery
//! document names this issuer, and its `fetched_at` is neither in the future (beyond the
//! 5-minute skew) nor older than `max_stale`.
#![no_main]

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use libfuzzer_sys::fuzz_target;
use tokend::config::Config;
use tokend::jwks::Jwks;
use tokend::metrics::Metrics;
use tokend_fuzz::ISSUER;

/// Clock skew the loader allows for a file dated in the future (`jwks::disk::FUTURE_SKEW`).
const FUTURE_SKEW: u64 = 300;

struct Cache {
    jwks: Arc<Jwks>,
    path: PathBuf,
    max_stale: Duration,
}

fn cache(max_stale: &str, secs: u64) -> Cache {
    // A RAM-backed directory where there is one: the target writes the file on every input.
    let dir = match std::path::Path::new("/dev/shm") {
        shm if shm.is_dir() => shm.to_path_buf(),
        _ => std::env::temp_dir(),
    };
    let path = dir.join(format!(
        "tokend-fuzz-disk-cache-{}-{max_stale}.json",
        std::process::id()
    ));
    let text = format!(
        "[listen]\nhttp = \"127.0.0.1:9\"\n\
         [provider]\nissuer = \"{ISSUER}\"\nclient_id = \"fuzz\"\nhttp_timeout = \"1s\"\n\
         [jwks]\nmin_refetch_interval = \"100years\"\nmax_stale = \"{max_stale}\"\ncache_file = \"{}\"\n",
        path.display()
    );
    let config = match Config::from_toml(
        &text,
        std::path::Path::new("fuzz.toml"),
        std::path::Path::new("."),
        std::iter::empty::<(String, String)>(),
    ) {
        Ok(c) => c,
        Err(e) => panic!("harness config: {e}"),
    };
    let jwks = match tokend::build_jwks(&config, &Metrics::new()) {
        Ok(j) => j,
        Err(e) => panic!("key cache: {e}"),
    };
    Cache {
        jwks,
        path,
        max_stale: Duration::from_secs(secs),
    }
}

fn caches() -> &'static [Cache; 2] {
    static C: OnceLock<[Cache; 2]> = OnceLock::new();
    C.get_or_init(|| [cache("100years", 100 * 31_557_600), cache("24h", 86_400)])
}

fuzz_target!(|data: &[u8]| {
    for c in caches() {
        if let Err(e) = std::fs::write(&c.path, data) {
            panic!("cannot write {}: {e}", c.path.display());
        }
        let loaded = matches!(c.jwks.load_disk_cache(), Ok(true));
        if loaded {
            check_accepted(data, c.max_stale);
        }
    }
});

/// The members of the file the property is about. Parsed with serde like the daemon's own
/// struct, so members it ignores are ignored here too (serde_json does not check the UTF-8 or
/// escapes of a skipped string).
#[derive(serde::Deserialize)]
struct Seen {
    issuer: String,
    fetched_at: u64,
    discovery: SeenDiscovery,
}

#[derive(serde::Deserialize)]
struct SeenDiscovery {
    issuer: String,
}

/// What an accepted file must hold, checked without tokend's code.
fn check_accepted(data: &[u8], max_stale: Duration) {
    let seen: Seen = match serde_json::from_slice(data) {
        Ok(v) => v,
        Err(e) => panic!("accepted a file without issuer, fetched_at or discovery.issuer: {e}"),
    };
    assert_eq!(seen.issuer, ISSUER, "accepted another issuer");
    assert_eq!(
        seen.discovery.issuer, ISSUER,
        "accepted a discovery document of another issuer"
    );
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    assert!(
        seen.fetched_at <= now + FUTURE_SKEW,
        "accepted a cache dated in the future"
    );
    // One second of slack for the clock ticking between the load and this check.
    assert!(
        now.saturating_sub(seen.fetched_at) <= max_stale.as_secs() + 1,
        "accepted a cache older than max_stale"
    );
}
