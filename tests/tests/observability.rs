//! Issue #13, dashboards and alerts: the series that `docs/grafana/tokend.json` and
//! `docs/prometheus/alerts.yml` read exist (at 0) as soon as tokend has started, every
//! verification outcome is counted (`missing_token` too), and the dashboard and the rules
//! name only metrics tokend exports. The rules' own behaviour is `promtool test rules`
//! (`docs/prometheus/alerts.test.yml`, run by `tests/run`).

use std::collections::BTreeSet;

use tokend_e2e::{Provider, Tokend, TokendConfig, workspace_root};

type R = anyhow::Result<()>;

async fn setup() -> anyhow::Result<(Provider, Tokend)> {
    let p = Provider::start().await?;
    let t = Tokend::start(&TokendConfig::for_provider(&p)).await?;
    t.wait_ready().await?;
    Ok((p, t))
}

/// The labelled series the dashboard and the alerts use, each at 0 right after the start.
const AT_ZERO: &[&str] = &[
    "tokend_verifications_total{reason=\"missing_token\",result=\"invalid\"}",
    "tokend_verifications_total{reason=\"bad_signature\",result=\"invalid\"}",
    "tokend_verifications_total{reason=\"expired\",result=\"invalid\"}",
    "tokend_verifications_total{reason=\"keys_unavailable\",result=\"invalid\"}",
    "tokend_verifications_total{reason=\"token_revoked\",result=\"invalid\"}",
    "tokend_verifications_total{reason=\"\",result=\"valid\"}",
    "tokend_login_flow_steps_total{result=\"failure\",step=\"callback\"}",
    "tokend_login_flow_steps_total{result=\"success\",step=\"login\"}",
    "tokend_sessions_ended_total{reason=\"logout\"}",
    "tokend_sessions_ended_total{reason=\"backchannel_logout\"}",
    "tokend_sessions_ended_total{reason=\"admin_revocation\"}",
    "tokend_sessions_ended_total{reason=\"expired\"}",
    "tokend_refreshes_total{outcome=\"failed\"}",
    "tokend_refreshes_total{outcome=\"rate_limited\"}",
    "tokend_config_reloads_total{result=\"failure\"}",
    "tokend_jwks_fetches_total{result=\"failure\"}",
    "tokend_authentik_event_polls_total{result=\"success\"}",
    "tokend_authentik_event_polls_total{result=\"unreachable\"}",
    "tokend_authentik_event_polls_total{result=\"unauthorized\"}",
    "tokend_store_operations_total{engine=\"memory\",op=\"take\",outcome=\"unavailable\"}",
    "tokend_store_operations_total{engine=\"memory\",op=\"put\",outcome=\"full\"}",
    "tokend_store_errors_total{engine=\"memory\",op=\"put\"}",
    "tokend_codes_replayed_total",
    "tokend_codes_expired_total",
    "tokend_backchannel_logouts_total{result=\"failure\"}",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_13_series_exist_at_zero_and_missing_token_is_counted() -> R {
    let (_p, t) = setup().await?;
    let m0 = t.metrics().await?;
    for key in AT_ZERO {
        assert_eq!(
            m0.samples.get(*key).copied(),
            Some(0.0),
            "{key} is not at 0 right after the start"
        );
    }
    assert_eq!(m0.get("tokend_store_up"), 1.0);
    let missing = "tokend_verifications_total{reason=\"missing_token\",result=\"invalid\"}";

    // No cookie, no Bearer; a non-Bearer Authorization; an empty body token.
    let a = t.get("/v1/verify", &[]).await?;
    assert_eq!((a.status, a.reason()), (401, "missing_token".to_string()));
    let a = t
        .get("/v1/verify", &[("authorization", "Basic eDp5")])
        .await?;
    assert_eq!((a.status, a.reason()), (401, "missing_token".to_string()));
    let a = t.post("/v1/verify", r#"{"token": ""}"#).await?;
    assert_eq!((a.status, a.reason()), (401, "missing_token".to_string()));

    let m1 = t.metrics().await?;
    assert_eq!(m1.delta(&m0, missing), 3.0, "each refusal counted once");
    let overview = t.admin()?.overview().await?;
    assert_eq!(
        overview.verifications.get("missing_token").copied(),
        Some(3),
        "the admin overview counts them too: {:?}",
        overview.verifications
    );
    Ok(())
}

/// `tokend_…` names in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("tokend_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
            .unwrap_or(tail.len());
        // Not part of a longer identifier (e.g. a file name such as `my_tokend_x`).
        let before = rest[..i].chars().last();
        if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            names.insert(tail[..end].to_string());
        }
        rest = &tail[end..];
    }
    names
}

/// The families of a scrape, with the histogram series' suffixes.
fn exported(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let mut parts = rest.split(' ');
        let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
            continue;
        };
        names.insert(name.to_string());
        if kind == "histogram" || kind == "summary" {
            for suffix in ["_bucket", "_sum", "_count"] {
                names.insert(format!("{name}{suffix}"));
            }
        }
    }
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_13_dashboard_and_alerts_use_only_exported_metrics() -> R {
    let (_p, t) = setup().await?;
    let have = exported(&t.metrics().await?.text);
    assert!(have.contains("tokend_verify_duration_seconds_bucket"));

    let root = workspace_root();
    let dashboard = std::fs::read_to_string(root.join("docs/grafana/tokend.json"))?;
    let json: serde_json::Value = serde_json::from_str(&dashboard)?;
    assert!(json["panels"].as_array().is_some_and(|p| !p.is_empty()));
    let alerts = std::fs::read_to_string(root.join("docs/prometheus/alerts.yml"))?;

    for (file, text) in [("tokend.json", &dashboard), ("alerts.yml", &alerts)] {
        let used = metric_names(text);
        assert!(used.len() >= 5, "{file}: only {used:?}");
        let unknown: Vec<_> = used.difference(&have).collect();
        assert!(
            unknown.is_empty(),
            "{file} names metrics tokend does not export: {unknown:?}"
        );
    }
    Ok(())
}

/// Every `expr` of the dashboard's panels (rows included).
fn dashboard_exprs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("expr", serde_json::Value::String(e)) => out.push(e.clone()),
                    _ => dashboard_exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| dashboard_exprs(v, out)),
        _ => {}
    }
}

/// The dashboard's expressions parse as PromQL: each becomes a recording rule (Grafana's
/// variables replaced) of a file `promtool check rules` reads.
#[test]
fn issue_13_dashboard_expressions_are_valid_promql() -> R {
    let text = std::fs::read_to_string(workspace_root().join("docs/grafana/tokend.json"))?;
    let mut exprs = Vec::new();
    dashboard_exprs(&serde_json::from_str(&text)?, &mut exprs);
    assert!(exprs.len() >= 20, "only {} expressions", exprs.len());
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, e) in exprs.iter().enumerate() {
        let e = e
            .replace("$__rate_interval", "5m")
            .replace("$instance", ".*");
        rules.push_str(&format!(
            "      - record: dashboard_expr_{i}\n        expr: {}\n",
            serde_json::to_string(&e)?
        ));
    }
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("dashboard-rules.yml");
    std::fs::write(&file, rules)?;
    let out = match std::process::Command::new("promtool")
        .args(["check", "rules"])
        .arg(&file)
        .output()
    {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !tokend_e2e::is_root() => {
            tokend_e2e::skip(
                "dashboard expressions",
                "promtool not installed (bash tests/run installs it)",
            );
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    assert!(
        out.status.success(),
        "promtool check rules on the dashboard's expressions:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

#[test]
fn metric_names_are_extracted_whole() {
    let names = metric_names(
        "rate(tokend_verify_duration_seconds_bucket{instance=~\"$i\"}[5m]) my_tokend_x tokend_up",
    );
    let want: BTreeSet<String> = ["tokend_verify_duration_seconds_bucket", "tokend_up"]
        .into_iter()
        .map(String::from)
        .collect();
    assert_eq!(names, want);
}
