//! The apps' router's outer layer as one tower service (issue #14, the hot path): the request
//! id, the request timeout, the drain of a declared-oversized body, the runtime pinned to the
//! request, bare 408/413 answers made JSON, and the request log line. One service with its own
//! future replaced a stack of `from_fn`/`map_response` middleware and tower-http's
//! `TimeoutLayer`, each of which boxed a future (or armed a timer) on every request; see
//! bench/RESULTS.md, "Hot path", for what each cost.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Uri, header};
use axum::response::{IntoResponse, Response};
use futures_util::future::BoxFuture;
use tokend_shared::Reason;
use tower::{Layer, Service};

use crate::AppState;
use crate::error::{ApiError, normalize_response};

/// The request id header, asked for and answered.
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Most of an oversized body tokend reads (and drops) before answering 413.
const DRAIN_CAP: u64 = 1024 * 1024;

/// The layer of [`Front`].
#[derive(Clone)]
pub(super) struct FrontLayer {
    /// Whose runtime is pinned to each request.
    pub(super) state: Arc<AppState>,
    /// `listen.request_timeout`: from the headers read to the answer.
    pub(super) timeout: Duration,
    /// `listen.max_body_bytes`: a larger declared body is drained and answered 413.
    pub(super) max_body: usize,
}

impl<S> Layer<S> for FrontLayer {
    type Service = Front<S>;
    fn layer(&self, inner: S) -> Front<S> {
        Front {
            inner,
            layer: self.clone(),
        }
    }
}

/// See the module's documentation.
#[derive(Clone)]
pub(super) struct Front<S> {
    inner: S,
    layer: FrontLayer,
}

impl<S> Service<Request> for Front<S>
where
    S: Service<Request, Error = Infallible> + Clone + Send + 'static,
    S::Response: IntoResponse,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = FrontFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        let started = Instant::now();
        let log = LogLine {
            id: request_id(req.headers()),
            method: req.method().clone(),
            uri: req.uri().clone(),
            started,
        };
        let max = self.layer.max_body;
        let work = match declared_length(req.headers()) {
            Some(len) if len > max as u64 => Work::Drain {
                fut: Box::pin(drain_oversized(req, len, max)),
            },
            _ => {
                // Handlers take the runtime from here, not the current one: a request finishes
                // under the configuration it started with even when a reload swaps it while
                // the body is still arriving.
                req.extensions_mut().insert(self.layer.state.runtime());
                Work::Inner {
                    fut: self.inner.call(req),
                }
            }
        };
        FrontFuture {
            work,
            sleep: None,
            deadline: started + self.layer.timeout,
            log: Some(log),
        }
    }
}

pin_project_lite::pin_project! {
    /// The answer of [`Front`]: the inner service's (or the drain's), unless the timeout
    /// passes first; then normalized, with the request id, logged.
    pub(super) struct FrontFuture<F> {
        #[pin]
        work: Work<F>,
        // Armed only when the work is not done at its first poll: a request answered at once
        // (a cache hit) never touches the timer wheel.
        #[pin]
        sleep: Option<tokio::time::Sleep>,
        deadline: Instant,
        // Taken when the answer is ready.
        log: Option<LogLine>,
    }
}

pin_project_lite::pin_project! {
    #[project = WorkProj]
    enum Work<F> {
        Inner { #[pin] fut: F },
        Drain { fut: BoxFuture<'static, Response> },
    }
}

impl<F, R> Future for FrontFuture<F>
where
    F: Future<Output = Result<R, Infallible>>,
    R: IntoResponse,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let done = match this.work.project() {
            WorkProj::Inner { fut } => fut.poll(cx).map(|r| match r {
                Ok(resp) => resp.into_response(),
                Err(never) => match never {},
            }),
            WorkProj::Drain { fut } => fut.as_mut().poll(cx),
        };
        let resp = match done {
            Poll::Ready(resp) => resp,
            Poll::Pending => {
                if this.sleep.is_none() {
                    let deadline = tokio::time::Instant::from_std(*this.deadline);
                    this.sleep.set(Some(tokio::time::sleep_until(deadline)));
                }
                match this.sleep.as_pin_mut().map(|s| s.poll(cx)) {
                    Some(Poll::Ready(())) => {
                        ApiError::new(Reason::Timeout, "request took too long").into_response()
                    }
                    _ => return Poll::Pending,
                }
            }
        };
        let mut resp = normalize_response(resp);
        if let Some(log) = this.log.take() {
            log.finish(&mut resp);
        }
        Poll::Ready(Ok(resp))
    }
}

/// What the request's log line needs from the request.
pub(crate) struct LogLine {
    id: HeaderValue,
    method: Method,
    /// For the path (never the query: it may hold codes). A clone shares the request's bytes.
    uri: Uri,
    started: Instant,
}

impl LogLine {
    /// Reads what the line needs from `req`; the clock starts now.
    pub(crate) fn of(req: &Request) -> Self {
        Self {
            id: request_id(req.headers()),
            method: req.method().clone(),
            uri: req.uri().clone(),
            started: Instant::now(),
        }
    }

    /// Answers the request id on `resp` and logs the line: id, method, path, status, reason,
    /// latency. Flow requests and errors at INFO (5xx at WARN), the rest at DEBUG.
    pub(crate) fn finish(self, resp: &mut Response) {
        let status = resp.status().as_u16();
        let reason = resp.extensions().get::<Reason>().map_or("", |r| r.as_str());
        // Read in the macro: only when the line is logged (a clock read saved per request).
        let latency_us = || u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX);
        let id = self.id.to_str().unwrap_or_default();
        let method = &self.method;
        let path = self.uri.path();
        macro_rules! line {
            ($level:ident) => {
                tracing::$level!(request_id = %id, %method, path = %path, status, reason, latency_us = latency_us(), "request")
            };
        }
        if status >= 500 {
            line!(warn);
        } else if path.starts_with("/auth/") || (status >= 400 && status != 401) {
            line!(info);
        } else {
            line!(debug);
        }
        resp.headers_mut().insert(X_REQUEST_ID, self.id);
    }
}

/// Per-process prefix of generated request ids, so ids from restarts do not collide.
static REQUEST_PREFIX: OnceLock<[u8; 8]> = OnceLock::new();
static REQUEST_COUNTER: AtomicU64 = AtomicU64::new(0);

/// The caller's `X-Request-Id` when it is short and plain (answered as it came), else a
/// generated one: the process's prefix and a counter, in hex.
fn request_id(headers: &HeaderMap) -> HeaderValue {
    if let Some(id) = headers.get(X_REQUEST_ID) {
        let b = id.as_bytes();
        if !b.is_empty()
            && b.len() <= 64
            && b.iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        {
            return id.clone();
        }
    }
    let prefix = REQUEST_PREFIX.get_or_init(|| {
        let mut b = [0u8; 4];
        let _ = getrandom::fill(&mut b);
        let mut hex = [0u8; 8];
        for (i, x) in b.iter().enumerate() {
            hex[2 * i] = HEX[usize::from(x >> 4)];
            hex[2 * i + 1] = HEX[usize::from(x & 0xf)];
        }
        hex
    });
    let n = REQUEST_COUNTER.fetch_add(1, Ordering::Relaxed);
    // `{prefix}-{n:x}`: 8 + 1 + at most 16 bytes.
    let mut buf = [0u8; 25];
    buf[..8].copy_from_slice(prefix);
    buf[8] = b'-';
    let digits = (64 - n.leading_zeros()).div_ceil(4).max(1) as usize;
    for i in 0..digits {
        let nibble = (n >> (4 * (digits - 1 - i))) & 0xf;
        buf[9 + i] = HEX[nibble as usize];
    }
    HeaderValue::from_bytes(&buf[..9 + digits]).unwrap_or(HeaderValue::from_static("-"))
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// The request's `Content-Length`, if it declares one.
fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

/// Answers 413 to a declared-oversized body after reading it (up to [`DRAIN_CAP`]): closing
/// a connection with unread data makes the kernel reset it, and the client may then never see
/// the 413. Bodies without a Content-Length are cut by `RequestBodyLimitLayer`.
async fn drain_oversized(req: Request, len: u64, max: usize) -> Response {
    if len <= DRAIN_CAP {
        let body = http_body_util::Limited::new(req.into_body(), DRAIN_CAP as usize);
        let _ = http_body_util::BodyExt::collect(body).await;
    }
    ApiError::new(
        Reason::PayloadTooLarge,
        format!("request body is larger than {max} bytes"),
    )
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_prefix_dash_hex_counter() {
        let a = request_id(&HeaderMap::new());
        let b = request_id(&HeaderMap::new());
        let (a, b) = (a.to_str().expect("ascii"), b.to_str().expect("ascii"));
        let (pa, na) = a.split_once('-').expect("dash");
        let (pb, nb) = b.split_once('-').expect("dash");
        assert_eq!(pa, pb);
        assert_eq!(pa.len(), 8);
        assert!(pa.bytes().all(|c| c.is_ascii_hexdigit()));
        let (na, nb) = (
            u64::from_str_radix(na, 16).expect("hex"),
            u64::from_str_radix(nb, 16).expect("hex"),
        );
        assert!(nb > na, "{a} then {b}");
        assert_eq!(format!("{pa}-{na:x}"), a, "no leading zeros");
    }

    #[test]
    fn a_plain_caller_id_is_kept_and_any_other_replaced() {
        let mut h = HeaderMap::new();
        h.insert(X_REQUEST_ID, HeaderValue::from_static("abc-1_2.3"));
        assert_eq!(request_id(&h), "abc-1_2.3");
        for bad in ["", "a b", "a/b", &"x".repeat(65)] {
            h.insert(X_REQUEST_ID, HeaderValue::from_str(bad).expect("value"));
            assert_ne!(request_id(&h), bad);
        }
    }
}
