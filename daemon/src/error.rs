//! The one place where errors become HTTP answers: each module's error type maps here to a
//! status code and a stable reason, and [`ApiError`] renders the JSON body.

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokend_shared::{ErrorBody, Reason, VerifyResponse};

use crate::admin::AdminError;
use crate::codes::CodeError;
use crate::flow::FlowError;
use crate::forward::{ForwardError, REASON_HEADER};
use crate::respond::json_headers;
use crate::store::StoreError;
use crate::verify::VerifyError;

/// `Retry-After` of a `store_unavailable` answer: about the time the Redis connection manager
/// takes to reconnect once Redis is back.
pub const STORE_RETRY_AFTER: Duration = Duration::from_secs(2);

/// The HTTP status of each reason.
pub fn status_for(reason: Reason) -> StatusCode {
    match reason {
        Reason::MissingToken
        | Reason::Malformed
        | Reason::UnsupportedAlg
        | Reason::UnsupportedHeader
        | Reason::UnknownKid
        | Reason::BadSignature
        | Reason::Expired
        | Reason::NotYetValid
        | Reason::WrongIssuer
        | Reason::WrongAudience
        | Reason::IdTokenNotAccepted
        | Reason::WrongTokenType
        | Reason::MissingClaim
        | Reason::TokenRevoked
        | Reason::RevokedByAdmin
        | Reason::NonceMismatch
        | Reason::NoSession
        | Reason::RefreshFailed => StatusCode::UNAUTHORIZED,
        Reason::KeysUnavailable
        | Reason::CapacityExceeded
        | Reason::RateLimited
        | Reason::StoreUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        Reason::UnknownCode | Reason::FlowNotConfigured => StatusCode::NOT_FOUND,
        Reason::CodeExpired | Reason::CodeAlreadyRedeemed => StatusCode::GONE,
        Reason::ProviderUnavailable => StatusCode::BAD_GATEWAY,
        Reason::BadRequest => StatusCode::BAD_REQUEST,
        Reason::Forbidden => StatusCode::FORBIDDEN,
        Reason::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        Reason::NotFound => StatusCode::NOT_FOUND,
        Reason::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        Reason::Timeout => StatusCode::REQUEST_TIMEOUT,
        Reason::Internal | Reason::Other => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// An error answer. `verify` answers carry `"active": false` besides reason and message.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub reason: Reason,
    pub message: String,
    /// `/v1/verify`'s shape (`"active": false`).
    verify_shape: bool,
    /// Seconds for a `Retry-After` header (rate limits).
    retry_after: Option<u64>,
    /// A forward-auth refusal (`/v1/auth`): the reason also in [`REASON_HEADER`] (proxies drop
    /// 401 bodies), and `WWW-Authenticate` with a realm, without `error` when no token came.
    forward: bool,
}

impl ApiError {
    pub fn new(reason: Reason, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
            verify_shape: false,
            retry_after: None,
            forward: false,
        }
    }

    /// Adds `Retry-After`, rounded up to whole seconds (at least 1).
    pub fn retry_after(mut self, wait: Duration) -> Self {
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        self.retry_after = Some(secs.max(1));
        self
    }

    /// An answer of `/v1/verify` (`{"active": false, …}`).
    pub fn inactive(reason: Reason, message: impl Into<String>) -> Self {
        Self {
            verify_shape: true,
            ..Self::new(reason, message)
        }
    }

    pub fn status(&self) -> StatusCode {
        status_for(self.reason)
    }
}

impl From<VerifyError> for ApiError {
    fn from(e: VerifyError) -> Self {
        Self::inactive(e.reason(), e.to_string())
    }
}

impl From<ForwardError> for ApiError {
    fn from(e: ForwardError) -> Self {
        let reason = match &e {
            ForwardError::NoToken(_) => Reason::MissingToken,
            ForwardError::Refused(v) => v.reason(),
            ForwardError::Claims(_) => Reason::Internal,
        };
        Self {
            forward: true,
            ..Self::new(reason, e.to_string())
        }
    }
}

impl IntoResponse for ForwardError {
    fn into_response(self) -> Response {
        ApiError::from(self).into_response()
    }
}

impl From<CodeError> for ApiError {
    fn from(e: CodeError) -> Self {
        ApiError::from_code(&e)
    }
}

impl From<FlowError> for ApiError {
    fn from(e: FlowError) -> Self {
        let reason = match &e {
            FlowError::NotConfigured => Reason::FlowNotConfigured,
            FlowError::NoEndpoint(_) | FlowError::Upstream(_) => Reason::ProviderUnavailable,
            FlowError::Refused(_) => Reason::RefreshFailed,
            FlowError::Token(v) => v.reason(),
            FlowError::NoRefreshToken => Reason::NoSession,
            FlowError::Capacity(_) => Reason::CapacityExceeded,
            FlowError::RateLimited(_) => Reason::RateLimited,
            FlowError::Code(c) => return ApiError::from_code(c),
            FlowError::Store(_) => {
                return ApiError::new(Reason::StoreUnavailable, e.to_string())
                    .retry_after(STORE_RETRY_AFTER);
            }
        };
        let err = ApiError::new(reason, e.to_string());
        match e {
            FlowError::RateLimited(wait) => err.retry_after(wait),
            _ => err,
        }
    }
}

impl ApiError {
    fn from_code(e: &CodeError) -> Self {
        let reason = match e {
            CodeError::Unknown => Reason::UnknownCode,
            CodeError::Expired => Reason::CodeExpired,
            CodeError::AlreadyRedeemed => Reason::CodeAlreadyRedeemed,
            CodeError::Store(StoreError::Full(..)) => Reason::CapacityExceeded,
            CodeError::Store(StoreError::Unavailable(_)) => {
                return ApiError::new(Reason::StoreUnavailable, e.to_string())
                    .retry_after(STORE_RETRY_AFTER);
            }
            CodeError::Store(StoreError::Duplicate) | CodeError::Random(_) => Reason::Internal,
        };
        ApiError::new(reason, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = if self.verify_shape {
            serde_json::to_vec(&VerifyResponse {
                active: false,
                claims: None,
                reason: Some(self.reason),
                message: Some(self.message),
            })
        } else {
            serde_json::to_vec(&ErrorBody {
                reason: self.reason,
                message: self.message,
            })
        }
        .unwrap_or_default();
        let mut resp = (status, json_headers(), body).into_response();
        // For the request log: the reason travels with the response, not in its body only.
        resp.extensions_mut().insert(self.reason);
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.forward {
            resp.headers_mut().insert(
                REASON_HEADER,
                HeaderValue::from_static(self.reason.as_str()),
            );
        }
        if status == StatusCode::UNAUTHORIZED {
            // RFC 6750 §3: no `error` when the request carried no token at all.
            let challenge = match (self.forward, self.reason) {
                (false, Reason::MissingToken) => "Bearer",
                (false, _) => "Bearer error=\"invalid_token\"",
                (true, Reason::MissingToken) => "Bearer realm=\"tokend\"",
                (true, _) => "Bearer realm=\"tokend\", error=\"invalid_token\"",
            };
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
        }
        resp
    }
}

/// [`normalize_response`] as `map_response` middleware (the admin router's layer).
pub async fn normalize(resp: Response) -> Response {
    normalize_response(resp)
}

/// Gives the bare 408/413 answers of the tower-http layers the JSON shape of all errors.
pub fn normalize_response(resp: Response) -> Response {
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if is_json {
        return resp;
    }
    match resp.status() {
        StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::new(Reason::PayloadTooLarge, "request body is too large").into_response()
        }
        StatusCode::REQUEST_TIMEOUT => {
            ApiError::new(Reason::Timeout, "request took too long").into_response()
        }
        _ => resp,
    }
}

impl From<AdminError> for ApiError {
    fn from(e: AdminError) -> Self {
        match e {
            AdminError::Forbidden { .. } | AdminError::ForbiddenNobody | AdminError::NoPeer => {
                ApiError::new(Reason::Forbidden, e.to_string())
            }
            AdminError::RevokeTarget | AdminError::Query(_) => {
                ApiError::new(Reason::BadRequest, e.to_string())
            }
            AdminError::EventsOff => ApiError::new(Reason::NotFound, e.to_string()),
            AdminError::Body(inner) => inner,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_token_failure_is_401_and_infrastructure_is_not() {
        assert_eq!(status_for(Reason::BadSignature), StatusCode::UNAUTHORIZED);
        assert_eq!(
            status_for(Reason::IdTokenNotAccepted),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            status_for(Reason::KeysUnavailable),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(status_for(Reason::BadRequest), StatusCode::BAD_REQUEST);
        assert_eq!(
            status_for(Reason::PayloadTooLarge),
            StatusCode::PAYLOAD_TOO_LARGE
        );
    }
}
