//! Wire types of tokend's HTTP API, shared by the daemon, the `tokentop` console and the tests.
//!
//! Everything here is plain serde data: no I/O, no async runtime — except [`client`], the
//! admin-API client, compiled only with the `client` feature. A change to a type in this
//! crate is a change to the public API; the README documents the same shapes.

pub mod admin;
pub mod api;
/// The admin-API client (feature `client`).
#[cfg(feature = "client")]
pub mod client;
pub mod secret;

pub use admin::{
    AuditEvent, AuditKind, AuditList, AuthentikEvent, AuthentikEventList, AuthentikEventQuery,
    CodeInfo, CodeList, JwksRefreshOutcome, KeyInfo, KeysOverview, LatencyOverview, Order,
    Overview, PollerStatus, ReloadStatus, RevokeOutcome, SessionLink, SessionPage, SessionQuery,
    SessionSort, StoreOverview,
};
pub use api::{
    Claims, ErrorBody, IssueCodeRequest, IssueCodeResponse, LogoutResponse, Readiness, Reason,
    RedeemRequest, RedeemResponse, RevokeRequest, SessionInfo, StoreReadiness, VerifyRequest,
    VerifyResponse,
};
pub use secret::Secret;
