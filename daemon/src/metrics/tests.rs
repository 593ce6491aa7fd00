//! Tests of the metrics registry: every family rendered, labelled series at zero from start.

use super::*;

#[test]
fn renders_every_family_with_prefix_and_build_info() {
    let m = Metrics::new();
    m.verified(Ok(()), Instant::now());
    m.verified(Err(Reason::Expired), Instant::now());
    m.flow_step("login", true);
    let text = m.render(3, 2);
    assert!(text.contains("tokend_verifications_total{reason=\"expired\",result=\"invalid\"} 1"));
    assert!(text.contains("tokend_verifications_total{reason=\"\",result=\"valid\"} 1"));
    assert!(text.contains("tokend_codes_outstanding 3"));
    assert!(text.contains("tokend_sessions_active 2"));
    m.verify_cache(4, 4096);
    let text = m.render(3, 2);
    assert!(text.contains("tokend_verify_cache_entries 4"));
    assert!(text.contains("tokend_verify_cache_bytes 4096"));
    assert!(text.contains("tokend_build_info{version="));
    assert!(text.contains("tokend_jwks_age_seconds -1"));
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        assert!(line.starts_with("tokend_"), "{line}");
    }
}

/// Issue #13: the labelled series dashboards and alerts read exist at 0 from the start.
#[test]
fn issue_13_labelled_series_exist_at_zero_from_start() {
    let m = Metrics::new();
    m.precreate_store("memory");
    let text = m.render(0, 0);
    for line in [
        "tokend_verifications_total{reason=\"missing_token\",result=\"invalid\"} 0",
        "tokend_verifications_total{reason=\"bad_signature\",result=\"invalid\"} 0",
        "tokend_verifications_total{reason=\"revoked_by_admin\",result=\"invalid\"} 0",
        "tokend_login_flow_steps_total{result=\"failure\",step=\"refresh\"} 0",
        "tokend_sessions_ended_total{reason=\"backchannel_logout\"} 0",
        "tokend_authentik_event_polls_total{result=\"unreachable\"} 0",
        "tokend_store_operations_total{engine=\"memory\",op=\"take\",outcome=\"used\"} 0",
        "tokend_store_errors_total{engine=\"memory\",op=\"put\"} 0",
        "tokend_upstream_request_duration_seconds_count{endpoint=\"token\"} 0",
    ] {
        assert!(text.contains(line), "{line} missing");
    }
    // Only verification reasons: not the flow's or the HTTP layer's.
    assert!(!text.contains("reason=\"method_not_allowed\""));
    assert!(!text.contains("reason=\"code_expired\""));
}
