//! `GET /v1/admin/events/stream`: audit events as they are recorded, one JSON object per line
//! (newline-delimited JSON) over a long-lived answer. A reader that falls more than the
//! broadcast's capacity behind gets a `dropped` marker and the stream ends: recording never
//! waits for a reader. The stream also ends when the daemon shuts down.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Extension, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use tokend_shared::AuditEvent;
use tokio::sync::{broadcast, watch};

use super::Operator;
use crate::AppState;
use crate::audit::dropped_marker;

/// Where a stream is: still running, or told its reader it was dropped.
struct Reader {
    events: broadcast::Receiver<AuditEvent>,
    stop: watch::Receiver<bool>,
    done: bool,
}

/// The next line of the stream, or `None` at its end.
async fn next_line(mut r: Reader) -> Option<(Result<Vec<u8>, std::convert::Infallible>, Reader)> {
    if r.done || *r.stop.borrow() {
        return None;
    }
    let event = tokio::select! {
        e = r.events.recv() => e,
        _ = r.stop.changed() => return None,
    };
    let event = match event {
        Ok(e) => e,
        Err(broadcast::error::RecvError::Lagged(skipped)) => {
            tracing::warn!(skipped, "admin event stream: reader too slow; dropping it");
            r.done = true;
            dropped_marker(skipped)
        }
        Err(broadcast::error::RecvError::Closed) => return None,
    };
    let mut line = serde_json::to_vec(&event).unwrap_or_default();
    line.push(b'\n');
    Some((Ok(line), r))
}

/// The stream of one reader, from a subscription taken before the answer's headers go out
/// (so an event recorded after the client saw them is never missed).
pub(crate) fn body(events: broadcast::Receiver<AuditEvent>, stop: watch::Receiver<bool>) -> Body {
    let reader = Reader {
        events,
        stop,
        done: false,
    };
    Body::from_stream(futures_util::stream::unfold(reader, next_line))
}

pub async fn stream(
    State(state): State<Arc<AppState>>,
    Extension(op): Extension<Operator>,
) -> Response {
    tracing::info!(operator_uid = op.uid, "admin event stream opened");
    let body = body(state.metrics.audit.subscribe(), state.stop_signal());
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/x-ndjson"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;
    use tokend_shared::AuditKind;

    use super::*;
    use crate::audit::Audit;

    #[tokio::test]
    async fn a_slow_reader_gets_the_drop_marker_and_the_stream_ends() {
        let audit = Audit::with_capacity(64, 4);
        let (_stop_tx, stop) = watch::channel(false);
        let body = body(audit.subscribe(), stop);
        // The reader reads nothing while far more events than the channel holds arrive.
        for i in 0..20 {
            audit.user(AuditKind::CodeIssued, &format!("u{i}"), None);
        }
        let bytes = tokio::time::timeout(std::time::Duration::from_secs(5), body.collect())
            .await
            .expect("the stream ends by itself")
            .expect("body")
            .to_bytes();
        let lines: Vec<AuditEvent> = bytes
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).expect("JSON line"))
            .collect();
        assert_eq!(lines.len(), 1, "only the marker: {lines:?}");
        assert_eq!(lines[0].kind, AuditKind::Dropped);
        assert_eq!(lines[0].count, Some(16));
    }

    #[tokio::test]
    async fn events_arrive_in_order_and_shutdown_ends_the_stream() {
        let audit = Audit::with_capacity(64, 16);
        let (stop_tx, stop) = watch::channel(false);
        let mut body = body(audit.subscribe(), stop);
        audit.user(AuditKind::LoginCompleted, "alice", Some("s1"));
        let frame = body.frame().await.expect("a frame").expect("ok");
        let line = frame.into_data().expect("data");
        let e: AuditEvent = serde_json::from_slice(&line[..line.len() - 1]).expect("JSON");
        assert_eq!(
            (e.kind, e.sub.as_deref()),
            (AuditKind::LoginCompleted, Some("alice"))
        );
        stop_tx.send(true).expect("stop");
        assert!(body.frame().await.is_none());
    }
}
