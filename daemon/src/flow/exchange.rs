//! `POST /auth/exchange {"code"}`: the frontend trades the callback's one-time code for
//! HttpOnly cookies. Only codes minted by the callback are accepted here; codes of
//! `POST /v1/codes` are unknown at this endpoint.

use super::{Flow, FlowError};
use crate::codes::CodeKind;
use crate::verify::now_unix;

impl Flow {
    /// Redeems a flow code; returns the Set-Cookie values of its tokens.
    pub async fn exchange(&self, code: &str) -> Result<Vec<String>, FlowError> {
        self.cfg()?;
        let payload = self.codes.redeem(CodeKind::Flow, code, now_unix()).await;
        self.metrics.flow_step("exchange", payload.is_ok());
        let payload = payload?;
        Ok(self.set_cookies(&payload.access_token, payload.refresh_token.as_ref()))
    }
}
