//! Wire types of tokend's HTTP API, shared by the daemon, the `tokentop` console and the tests.
//!
//! Everything here is plain serde data: no I/O, no async runtime. A change to a type in this
//! crate is a change to the public API; the README documents the same shapes.

pub mod api;
pub mod secret;

pub use api::{
    Claims, ErrorBody, IssueCodeRequest, IssueCodeResponse, LogoutResponse, Readiness, Reason,
    RedeemRequest, RedeemResponse, RevokeRequest, RevokeResponse, SessionInfo, SessionList,
    VerifyRequest, VerifyResponse,
};
pub use secret::Secret;
