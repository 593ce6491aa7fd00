//! The one place where errors become HTTP answers: status code, stable reason, JSON body.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokend_shared::{ErrorBody, Reason, VerifyResponse};

use crate::verify::VerifyError;

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
        | Reason::NonceMismatch
        | Reason::NoSession
        | Reason::RefreshFailed => StatusCode::UNAUTHORIZED,
        Reason::KeysUnavailable | Reason::CapacityExceeded => StatusCode::SERVICE_UNAVAILABLE,
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
    verify_shape: bool,
}

impl ApiError {
    pub fn new(reason: Reason, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
            verify_shape: false,
        }
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
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer error=\"invalid_token\""),
            );
        }
        resp
    }
}

/// Headers of every JSON answer: its type, and no caching (answers describe a user).
pub fn json_headers() -> [(header::HeaderName, HeaderValue); 2] {
    [
        (
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        ),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
    ]
}

/// Gives the bare 408/413 answers of the tower-http layers the JSON shape of all errors.
pub async fn normalize(resp: Response) -> Response {
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
