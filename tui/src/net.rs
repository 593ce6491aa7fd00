//! The task that owns the [`AdminClient`]: polls overview, sessions, codes and Authentik's
//! events every second, follows the live audit stream (catching up from the ring after a
//! drop or a reconnect), carries out [`Command`]s, and reports everything — including the
//! connection's state and its backoff — as [`NetEvent`]s. It never blocks the UI.

use std::time::Duration;

use tokend_shared::client::{AdminClient, ClientError};
use tokend_shared::{AuditKind, AuthentikEventQuery, Reason, SessionQuery};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

use crate::app::{AuthentikFeed, Command, Connection, NetEvent, RevokeTarget, Snapshot, describe};

/// Time between polls while connected.
pub const POLL: Duration = Duration::from_secs(1);
/// Sessions fetched per poll (the daemon's page limit).
const SESSION_LIMIT: usize = 1000;
/// Authentik events fetched per poll.
const AUTHENTIK_LIMIT: usize = 200;

/// Exponential backoff: 500 ms doubling to 8 s.
#[derive(Debug, Default, Clone)]
pub struct Backoff {
    /// Failures since the last success.
    pub attempt: u32,
}

impl Backoff {
    pub fn fail(&mut self) -> Duration {
        self.attempt = self.attempt.saturating_add(1);
        let ms = 500u64.saturating_mul(1 << self.attempt.min(5).saturating_sub(1));
        Duration::from_millis(ms.min(10_000))
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// One poll of everything the tabs show.
async fn poll(client: &AdminClient) -> Result<Snapshot, ClientError> {
    let overview = client.overview().await?;
    let sessions = client
        .sessions(&SessionQuery {
            limit: Some(SESSION_LIMIT),
            ..SessionQuery::default()
        })
        .await?;
    let codes = client.codes().await?;
    let authentik = match client
        .authentik_events(&AuthentikEventQuery {
            limit: Some(AUTHENTIK_LIMIT),
            ..AuthentikEventQuery::default()
        })
        .await
    {
        Ok(list) => AuthentikFeed::Loaded(list),
        Err(ClientError::Api {
            reason: Reason::NotFound,
            ..
        }) => AuthentikFeed::NotConfigured,
        Err(e) => AuthentikFeed::Failed(e.to_string()),
    };
    Ok(Snapshot {
        at_ms: now_ms(),
        overview,
        sessions,
        codes,
        authentik,
    })
}

/// Runs until `commands` closes (the UI quit) or `events` does.
pub async fn run(
    client: AdminClient,
    events: UnboundedSender<NetEvent>,
    mut commands: UnboundedReceiver<Command>,
) {
    let follower = tokio::spawn(follow_audit(client.clone(), events.clone()));
    let mut backoff = Backoff::default();
    let mut wait = Duration::ZERO;
    loop {
        tokio::select! {
            cmd = commands.recv() => {
                let Some(cmd) = cmd else { break };
                let report = execute(&client, cmd).await;
                if events.send(report).is_err() {
                    break;
                }
                wait = Duration::ZERO;
            }
            () = tokio::time::sleep(wait) => {
                let report = match poll(&client).await {
                    Ok(s) => {
                        backoff.reset();
                        wait = POLL;
                        NetEvent::Snapshot(Box::new(s))
                    }
                    Err(e) => {
                        wait = backoff.fail();
                        NetEvent::Connection(Connection::Down {
                            attempt: backoff.attempt,
                            error: e.to_string(),
                            retry_in_ms: wait.as_millis() as u64,
                        })
                    }
                };
                if events.send(report).is_err() {
                    break;
                }
            }
        }
    }
    follower.abort();
}

async fn execute(client: &AdminClient, cmd: Command) -> NetEvent {
    match cmd {
        Command::Revoke(target) => {
            let result = match &target {
                RevokeTarget::Session { sid, .. } => client.revoke_session(sid).await,
                RevokeTarget::User { sub, .. } => client.revoke_user(sub).await,
            };
            match result {
                Ok(outcome) => NetEvent::Revoked { target, outcome },
                Err(e) => NetEvent::CommandFailed {
                    what: format!("revoking {}", describe(&target)),
                    error: e.to_string(),
                },
            }
        }
    }
}

/// Follows the live audit stream: opens it, then catches up from the ring (so that nothing
/// between the two is missed), then forwards events as they come; after a drop, an end or
/// an error it starts over with backoff. Events already forwarded are not sent again.
async fn follow_audit(client: AdminClient, events: UnboundedSender<NetEvent>) {
    let mut last = 0u64;
    let mut backoff = Backoff::default();
    loop {
        if let Ok(mut stream) = client.stream().await
            && let Ok(ring) = client.events(0).await
        {
            backoff.reset();
            // A ring that ends before what was seen: tokend restarted and counts from 1 again.
            if ring.events.last().map_or(0, |e| e.seq) < last {
                last = 0;
                if events.send(NetEvent::AuditReset).is_err() {
                    return;
                }
            }
            for e in ring.events {
                if e.seq > last {
                    last = e.seq;
                    if events.send(NetEvent::Audit(e)).is_err() {
                        return;
                    }
                }
            }
            while let Ok(Some(e)) = stream.next().await {
                if e.kind == AuditKind::Dropped {
                    let count = e.count.unwrap_or(0);
                    if events.send(NetEvent::StreamDropped { count }).is_err() {
                        return;
                    }
                    break;
                }
                if e.seq > last {
                    last = e.seq;
                    if events.send(NetEvent::Audit(e)).is_err() {
                        return;
                    }
                }
            }
        }
        if events.is_closed() {
            return;
        }
        tokio::time::sleep(backoff.fail()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_ten_seconds_and_resets() {
        let mut b = Backoff::default();
        let ms: Vec<u128> = (0..7).map(|_| b.fail().as_millis()).collect();
        assert_eq!(ms, [500, 1000, 2000, 4000, 8000, 8000, 8000]);
        b.reset();
        assert_eq!(b.fail().as_millis(), 500);
    }
}
