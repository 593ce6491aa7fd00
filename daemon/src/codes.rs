//! One-time exchange codes: minted from the OS CSPRNG (256 bits, URL-safe), stored under their
//! hash with a short TTL, redeemed exactly once, and only at the endpoint of its kind. The
//! callback never puts tokens in a URL — only such a code — and the frontend trades it for
//! cookies.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tokend_shared::{AuditKind, Secret};

use crate::audit::Entry;
use crate::metrics::Metrics;
pub use crate::store::CodeKind;
use crate::store::{CodePayload, Kind, Record, Store, StoreError, TakeError, code_key};

#[derive(Debug, thiserror::Error)]
pub enum CodeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the operating system's random source failed: {0}")]
    Random(String),
    #[error("unknown code")]
    Unknown,
    #[error("the code has expired")]
    Expired,
    #[error("the code was already redeemed")]
    AlreadyRedeemed,
}

impl From<TakeError> for CodeError {
    fn from(e: TakeError) -> Self {
        match e {
            TakeError::Unknown => CodeError::Unknown,
            TakeError::Expired | TakeError::ExpiredSwept => CodeError::Expired,
            TakeError::AlreadyUsed => CodeError::AlreadyRedeemed,
            TakeError::Unavailable(u) => CodeError::Store(StoreError::Unavailable(u)),
        }
    }
}

/// Issues and redeems codes. Cheap to share.
#[derive(Debug)]
pub struct Codes {
    store: Arc<dyn Store>,
    ttl: Duration,
    metrics: Arc<Metrics>,
}

/// 32 bytes from the OS CSPRNG, base64url without padding (43 characters).
pub fn random_handle() -> Result<Secret, CodeError> {
    let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
    getrandom::fill(bytes.as_mut()).map_err(|e| CodeError::Random(e.to_string()))?;
    Ok(Secret::new(URL_SAFE_NO_PAD.encode(bytes.as_ref())))
}

/// The parts of a code's payload the caller provides.
#[derive(Debug)]
pub struct NewCode {
    pub access_token: Secret,
    pub refresh_token: Option<Secret>,
    pub id_token: Option<Secret>,
    pub sub: String,
    pub sid: Option<String>,
    /// Where the code may be redeemed.
    pub kind: CodeKind,
}

impl Codes {
    pub fn new(store: Arc<dyn Store>, ttl: Duration, metrics: Arc<Metrics>) -> Self {
        Self {
            store,
            ttl,
            metrics,
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    pub fn outstanding(&self) -> usize {
        self.store.outstanding(Kind::ExchangeCode)
    }

    /// Mints a code for `new`; returns the code (the only copy outside the hash).
    pub async fn issue(&self, new: NewCode, now: i64) -> Result<Secret, CodeError> {
        let code = random_handle()?;
        let sub = new.sub;
        let ttl = i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX);
        let payload = CodePayload {
            access_token: new.access_token,
            refresh_token: new.refresh_token,
            id_token: new.id_token,
            sub: sub.clone(),
            sid: new.sid,
            created: now,
            expires: now.saturating_add(ttl),
            kind: new.kind,
        };
        let result = self
            .store
            .put(
                Kind::ExchangeCode,
                code_key(new.kind, code.expose()),
                Record::Code(payload),
            )
            .await;
        match result {
            Ok(_) => {
                self.metrics.codes_issued.inc();
                self.metrics.audit.record(
                    AuditKind::CodeIssued,
                    Entry {
                        sub: Some(sub),
                        detail: Some(new.kind.as_str().into()),
                        ..Entry::default()
                    },
                );
                Ok(code)
            }
            Err(e) => {
                if matches!(e, StoreError::Full(..)) {
                    self.metrics.codes_refused.inc();
                }
                Err(e.into())
            }
        }
    }

    /// Redeems a code of `kind`: exactly once, and only before it expires. A code of the other
    /// kind is unknown here (and stays redeemable at its own endpoint).
    pub async fn redeem(
        &self,
        kind: CodeKind,
        code: &str,
        now: i64,
    ) -> Result<CodePayload, CodeError> {
        let result = self
            .store
            .take(Kind::ExchangeCode, code_key(kind, code), now)
            .await;
        let m = &self.metrics;
        let detail = Some(kind.as_str().to_string());
        match &result {
            Ok(Record::Code(c)) => {
                m.codes_redeemed.inc();
                let entry = Entry {
                    sub: Some(c.sub.clone()),
                    sid: c.sid.clone(),
                    detail,
                    ..Entry::default()
                };
                m.audit.record(AuditKind::CodeRedeemed, entry);
            }
            Ok(Record::Login(_)) | Err(TakeError::Unknown) => m.codes_unknown.inc(),
            Err(TakeError::Expired) => {
                m.codes_expired.inc();
                let entry = Entry {
                    detail,
                    count: Some(1),
                    ..Entry::default()
                };
                m.audit.record(AuditKind::CodeExpired, entry);
            }
            // Counted by the sweeper when it found the code expired.
            Err(TakeError::ExpiredSwept) => {}
            // Counted by the store's metrics (tokend_store_errors_total).
            Err(TakeError::Unavailable(_)) => {}
            Err(TakeError::AlreadyUsed) => {
                m.codes_replayed.inc();
                let entry = Entry {
                    detail,
                    ..Entry::default()
                };
                m.audit.record(AuditKind::CodeReplayed, entry);
            }
        }
        match result? {
            Record::Code(c) if c.kind == kind => Ok(c),
            Record::Code(_) | Record::Login(_) => Err(CodeError::Unknown),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    fn codes(max: usize) -> Codes {
        Codes::new(
            Arc::new(MemoryStore::new(max, 10)),
            Duration::from_secs(60),
            Metrics::new(),
        )
    }

    fn new_code() -> NewCode {
        NewCode {
            access_token: Secret::new("access"),
            refresh_token: Some(Secret::new("refresh")),
            id_token: None,
            sub: "alice".into(),
            sid: Some("sid".into()),
            kind: CodeKind::Api,
        }
    }

    #[tokio::test]
    async fn issue_redeem_once() {
        let c = codes(10);
        let code = c.issue(new_code(), 1000).await.expect("issued");
        assert_eq!(code.expose().len(), 43, "256 bits, base64url");
        assert!(
            code.expose()
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        let p = c
            .redeem(CodeKind::Api, code.expose(), 1059)
            .await
            .expect("redeemed");
        assert_eq!(p.access_token.expose(), "access");
        assert_eq!(p.expires, 1060);
        assert!(matches!(
            c.redeem(CodeKind::Api, code.expose(), 1059).await,
            Err(CodeError::AlreadyRedeemed)
        ));
        assert!(matches!(
            c.redeem(CodeKind::Api, "nope", 1059).await,
            Err(CodeError::Unknown)
        ));
        let late = c.issue(new_code(), 1000).await.expect("issued");
        assert!(matches!(
            c.redeem(CodeKind::Api, late.expose(), 1060).await,
            Err(CodeError::Expired)
        ));
        assert_eq!(c.metrics.codes_redeemed.get(), 1);
        assert_eq!(c.metrics.codes_replayed.get(), 1);
    }

    #[tokio::test]
    async fn a_code_redeems_only_at_its_own_endpoint() {
        // Issue #7: a flow code is not redeemable as tokens, nor an API code as cookies.
        let c = codes(10);
        let code = c.issue(new_code(), 1000).await.expect("issued");
        assert!(matches!(
            c.redeem(CodeKind::Flow, code.expose(), 1001).await,
            Err(CodeError::Unknown)
        ));
        assert!(
            c.redeem(CodeKind::Api, code.expose(), 1001).await.is_ok(),
            "the wrong endpoint did not burn it"
        );
    }

    #[tokio::test]
    async fn full_store_refuses_issuance() {
        let c = codes(1);
        c.issue(new_code(), 0).await.expect("first");
        assert!(matches!(
            c.issue(new_code(), 0).await,
            Err(CodeError::Store(StoreError::Full(..)))
        ));
    }

    /// Issue #8 (mutation testing): the audit trail names who and what at every step (the
    /// admin API's only record of a code), and the accessors tell the truth.
    #[tokio::test]
    async fn issue_8_each_step_is_audited_and_the_accessors_are_true() {
        let c = codes(10);
        assert_eq!(c.ttl(), Duration::from_secs(60));
        assert_eq!(c.outstanding(), 0);
        let code = c.issue(new_code(), 1000).await.expect("issued");
        let late = c.issue(new_code(), 1000).await.expect("issued");
        assert_eq!(c.outstanding(), 2);
        c.redeem(CodeKind::Api, code.expose(), 1001)
            .await
            .expect("redeemed");
        assert!(c.redeem(CodeKind::Api, code.expose(), 1001).await.is_err());
        assert!(c.redeem(CodeKind::Api, late.expose(), 1060).await.is_err());
        let got: Vec<_> = c
            .metrics
            .audit
            .since(0, 100)
            .into_iter()
            .map(|e| (e.kind, e.sub, e.sid, e.detail, e.count))
            .collect();
        let (alice, sid, api) = (
            Some("alice".to_string()),
            Some("sid".to_string()),
            Some("api".to_string()),
        );
        assert_eq!(
            got,
            vec![
                (
                    AuditKind::CodeIssued,
                    alice.clone(),
                    None,
                    api.clone(),
                    None
                ),
                (
                    AuditKind::CodeIssued,
                    alice.clone(),
                    None,
                    api.clone(),
                    None
                ),
                (AuditKind::CodeRedeemed, alice, sid, api.clone(), None),
                (AuditKind::CodeReplayed, None, None, api.clone(), None),
                (AuditKind::CodeExpired, None, None, api, Some(1)),
            ]
        );
    }

    #[test]
    fn handles_are_distinct() {
        let a = random_handle().expect("random");
        let b = random_handle().expect("random");
        assert_ne!(a.expose(), b.expose());
    }

    /// One step of a generated schedule.
    #[derive(Debug, Clone)]
    enum Op {
        /// Redeem code `n` (modulo the codes issued) at the endpoint of this kind.
        Redeem(usize, bool),
        /// Let the clock run `n` seconds.
        Tick(i64),
        /// Run the sweeper.
        Sweep,
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        prop_oneof![
            8 => (0usize..8, any::<bool>()).prop_map(|(n, api)| Op::Redeem(n, api)),
            1 => (0i64..40).prop_map(Op::Tick),
            1 => Just(Op::Sweep),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 256, ..Default::default() })]

        /// Issue #9: under any interleaving of redemptions (either endpoint), clock steps and
        /// sweeps, each code is handed to at most one redeemer, only at its own endpoint and
        /// only before it expires; and one redemption at the right endpoint in time succeeds.
        #[test]
        fn issue_9_each_code_is_redeemed_at_most_once_sequentially(
            ops in proptest::collection::vec(op(), 1..60),
            issued in 1usize..8,
        ) {
            let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
            rt.block_on(async {
                let c = codes(16);
                let start = 1_000;
                let mut handles = Vec::new();
                for i in 0..issued {
                    let mut new = new_code();
                    new.kind = if i % 2 == 0 { CodeKind::Api } else { CodeKind::Flow };
                    let kind = new.kind;
                    handles.push((c.issue(new, start).await.expect("issued"), kind));
                }
                let mut now = start;
                let mut redeemed = vec![false; issued];
                for op in ops {
                    match op {
                        Op::Tick(s) => now += s,
                        Op::Sweep => {
                            c.store.sweep(now);
                        }
                        Op::Redeem(n, api) => {
                            let i = n % issued;
                            let (code, kind) = &handles[i];
                            let at = if api { CodeKind::Api } else { CodeKind::Flow };
                            let result = c.redeem(at, code.expose(), now).await;
                            let expected_ok = at == *kind && !redeemed[i] && now < start + 60;
                            proptest::prop_assert_eq!(
                                result.is_ok(), expected_ok,
                                "code {} ({:?}) at {:?}, t+{}: {:?}", i, kind, at, now - start, result.err()
                            );
                            if result.is_ok() {
                                redeemed[i] = true;
                            }
                        }
                    }
                }
                Ok(())
            })?;
        }

        /// Issue #9: threads racing to redeem the same codes (each in its own order): every
        /// code goes to exactly one of them.
        #[test]
        fn issue_9_each_code_is_redeemed_at_most_once_concurrently(
            orders in proptest::collection::vec(
                proptest::collection::vec(0usize..6, 1..24), 2..5),
        ) {
            let c = Arc::new(codes(16));
            let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
            let handles: Vec<Secret> = (0..6)
                .map(|_| rt.block_on(c.issue(new_code(), 1_000)).expect("issued"))
                .collect();
            let wins: Vec<Vec<usize>> = std::thread::scope(|s| {
                let threads: Vec<_> = orders
                    .iter()
                    .map(|order| {
                        let c = c.clone();
                        let handles = &handles;
                        s.spawn(move || {
                            let rt = tokio::runtime::Builder::new_current_thread()
                                .build()
                                .expect("runtime");
                            order
                                .iter()
                                .filter(|&&i| {
                                    rt.block_on(c.redeem(CodeKind::Api, handles[i].expose(), 1_001))
                                        .is_ok()
                                })
                                .copied()
                                .collect::<Vec<usize>>()
                        })
                    })
                    .collect();
                threads.into_iter().map(|t| t.join().expect("thread")).collect()
            });
            for i in 0..6 {
                let tried = orders.iter().any(|o| o.contains(&i));
                let won = wins.iter().flatten().filter(|&&w| w == i).count();
                proptest::prop_assert_eq!(won, usize::from(tried), "code {} won {} times", i, won);
            }
        }
    }
}
