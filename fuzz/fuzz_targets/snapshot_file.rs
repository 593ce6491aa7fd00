//! The sessions snapshot file (`sessions.snapshot_file`, issue #12), loaded at start so a
//! restart forgets no revocation: any bytes through `snapshot::parse` as the loader calls it,
//! and an accepted file imported into a registry at three moments (long ago, now, far later).
//! Property: a file accepted says it is a snapshot (`format`), of version 1, of this issuer and
//! client; an import keeps no more entries than the file holds, and none that expired.
#![no_main]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use tokend::metrics::Metrics;
use tokend::sessions::Sessions;
use tokend::snapshot::{FORMAT, Owner, parse};
use tokend_fuzz::{CLIENT_ID, ISSUER};

fuzz_target!(|data: &[u8]| {
    let owner = Owner {
        issuer: ISSUER.into(),
        client_id: CLIENT_ID.into(),
    };
    let Ok(state) = parse(Path::new("/var/lib/tokend/snapshot.json"), data, &owner) else {
        return;
    };
    check_accepted(data);
    let held = state.revoked_sids.len()
        + state.revoked_subs.len()
        + state.seen_jtis.len()
        + state.ended_refresh.len()
        + state.sessions.len();
    for now in [i64::MIN, 1_700_000_000, i64::MAX] {
        let sessions = Arc::new(Sessions::new(Duration::from_secs(3600), Metrics::new()));
        let n = sessions.import(state.clone(), now);
        assert!(n.total() + n.expired == held, "an entry lost or invented");
        let (kept, _) = sessions.export();
        for r in kept.revoked_sids.iter().chain(&kept.revoked_subs) {
            assert!(now < r.until, "kept an expired revocation");
        }
        assert!(
            kept.seen_jtis.iter().all(|j| now < j.until),
            "kept an expired jti"
        );
        assert!(kept.ended_refresh.iter().all(|e| now < e.until));
        assert!(
            kept.sessions
                .iter()
                .all(|s| now < s.access_expires || now < s.refresh_expires),
            "kept a lapsed session"
        );
    }
});

/// The members an accepted file must hold, read without tokend's code.
#[derive(serde::Deserialize)]
struct Seen {
    format: String,
    version: u64,
    issuer: String,
    client_id: String,
}

fn check_accepted(data: &[u8]) {
    let seen: Seen = match serde_json::from_slice(data) {
        Ok(v) => v,
        Err(e) => panic!("accepted a file without format, version, issuer or client_id: {e}"),
    };
    assert_eq!(seen.format, FORMAT, "accepted another format");
    assert_eq!(seen.version, 1, "accepted another version");
    assert_eq!(seen.issuer, ISSUER, "accepted another issuer");
    assert_eq!(seen.client_id, CLIENT_ID, "accepted another client");
}
