//! The console's state, the [`Action`]s that change it, and [`update`], the one place that
//! applies them. Keys (input.rs) and the admin-API task (net.rs) only produce actions; the UI
//! (ui/) only reads the state. `update` answers a [`Command`] when the daemon must be asked
//! to do something (a revoke), which main hands to the net task.

use std::collections::VecDeque;

use tokend_shared::{
    AuditEvent, AuthentikEvent, AuthentikEventList, CodeInfo, CodeList, Order, Overview,
    RevokeOutcome, SessionInfo, SessionPage, SessionSort,
};

mod update;
pub use update::{describe, revoke_message, update};

/// Verifications/s samples kept for the sparkline (one per poll, ~1 s).
pub const RATE_SAMPLES: usize = 120;
/// tokend audit events kept locally, newest last.
pub const AUDIT_KEPT: usize = 1000;
/// Rows moved by PgUp/PgDn.
pub const PAGE: usize = 10;

/// The four tabs, in order (keys 1–4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Tab {
    #[default]
    Overview,
    Sessions,
    Codes,
    Events,
}

impl Tab {
    pub const ALL: [Tab; 4] = [Tab::Overview, Tab::Sessions, Tab::Codes, Tab::Events];

    pub fn index(self) -> usize {
        Self::ALL.iter().position(|t| *t == self).unwrap_or(0)
    }

    pub fn title(self) -> &'static str {
        match self {
            Tab::Overview => "Overview",
            Tab::Sessions => "Sessions",
            Tab::Codes => "Codes",
            Tab::Events => "Events",
        }
    }

    fn next(self) -> Tab {
        Self::ALL[(self.index() + 1) % Self::ALL.len()]
    }

    fn prev(self) -> Tab {
        Self::ALL[(self.index() + Self::ALL.len() - 1) % Self::ALL.len()]
    }
}

/// The link to the admin socket, as the status line shows it.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Connection {
    /// Before the first answer.
    #[default]
    Connecting,
    Connected,
    /// The last poll failed; the next try is in `retry_in_ms` (backoff grows per attempt).
    Down {
        attempt: u32,
        error: String,
        retry_in_ms: u64,
    },
}

/// Authentik's event log as the daemon's poller holds it.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum AuthentikFeed {
    /// Not asked yet.
    #[default]
    Unknown,
    /// The daemon answered 404: `[events]` is not configured.
    NotConfigured,
    Loaded(AuthentikEventList),
    /// Another error (shown as is).
    Failed(String),
}

/// Everything one poll of the admin API brought.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// Local wall-clock time of the poll, Unix ms (code TTLs count down from here).
    pub at_ms: i64,
    pub overview: Overview,
    pub sessions: SessionPage,
    pub codes: CodeList,
    pub authentik: AuthentikFeed,
}

/// What a revoke is aimed at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevokeTarget {
    /// One session, by `sid`; `who` is its user as listed (e-mail, else `sub`), for messages.
    Session { sid: String, who: String },
    /// Every session of a user (`sub`), listed as `who`.
    User { sub: String, who: String },
}

/// Requests for the daemon, carried out by the net task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Revoke(RevokeTarget),
}

/// What the net task reports.
#[derive(Debug, Clone, PartialEq)]
pub enum NetEvent {
    Connection(Connection),
    Snapshot(Box<Snapshot>),
    /// A tokend audit event (from the ring at connect, then from the live stream).
    Audit(AuditEvent),
    /// tokend restarted (its audit numbers start again): forget the events held.
    AuditReset,
    /// The daemon ended this reader's stream as too slow (`count` events skipped); the net
    /// task catches up from the ring.
    StreamDropped {
        count: u64,
    },
    Revoked {
        target: RevokeTarget,
        outcome: RevokeOutcome,
    },
    /// A command failed (the error as the client put it).
    CommandFailed {
        what: String,
        error: String,
    },
}

/// Which event log the Events tab shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EventSource {
    #[default]
    Tokend,
    Authentik,
}

/// Selection and filter of one list.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ListView {
    /// Index into the visible (filtered, sorted) rows.
    pub selected: usize,
    /// Case-insensitive substring; empty shows everything.
    pub filter: String,
}

/// A popup's content, fixed when opened (the list may move underneath).
#[derive(Debug, Clone, PartialEq)]
pub struct Details {
    pub title: String,
    pub body: String,
    /// Lines scrolled past (j/k, PgUp/PgDn), for bodies taller than the popup.
    pub scroll: u16,
}

/// What keys currently mean.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Mode {
    #[default]
    Normal,
    /// Typing the current tab's `/` filter.
    Filter,
    Help,
    /// A revoke waiting for y/n.
    Confirm(RevokeTarget),
    Details(Details),
}

/// A one-line message on the status bar (an action's result).
#[derive(Debug, Clone, PartialEq)]
pub struct Flash {
    pub text: String,
    pub error: bool,
}

/// Everything the UI shows.
#[derive(Debug, Clone, Default)]
pub struct State {
    pub tab: Tab,
    /// Local wall-clock time, Unix ms (set by ticks; the UI computes ages from it).
    pub now_ms: i64,
    /// The admin socket, for the status line.
    pub socket: String,
    pub connection: Connection,
    pub mode: Mode,
    pub flash: Option<Flash>,
    pub quit: bool,
    pub overview: Option<Overview>,
    /// Verifications/s between consecutive polls, oldest first.
    pub rates: VecDeque<u64>,
    /// The previous poll's time (ms) and verification total, for `rates`.
    last_total: Option<(i64, u64)>,
    pub sessions: Vec<SessionInfo>,
    /// Sessions matching on the daemon (may exceed those fetched).
    pub sessions_total: usize,
    pub sessions_view: ListView,
    pub sort: SessionSort,
    pub order: Order,
    pub codes: Vec<CodeInfo>,
    /// When `codes` were fetched (ms): their `ttl_left` counts down from here.
    pub codes_at_ms: i64,
    pub codes_view: ListView,
    pub audit: VecDeque<AuditEvent>,
    pub authentik: AuthentikFeed,
    pub events_view: ListView,
    pub source: EventSource,
}

/// Everything that changes the state.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Quit,
    Tick(i64),
    NextTab,
    PrevTab,
    GoTab(Tab),
    Up,
    Down,
    PageUp,
    PageDown,
    Top,
    Bottom,
    /// `/`: start typing a filter.
    StartFilter,
    FilterChar(char),
    FilterBackspace,
    /// Enter while typing: keep the filter.
    FilterDone,
    /// Esc: close what is open, else clear the filter, else the message.
    Back,
    ToggleHelp,
    /// Enter: details of the selected row.
    Open,
    /// `r`: revoke the selected session (asks first).
    RevokeSession,
    /// `R`: revoke every session of the selected session's user (asks first).
    RevokeUser,
    Confirm(bool),
    /// `s`: next sort key; `S`: reverse the order.
    CycleSort,
    ReverseOrder,
    /// `e`: tokend audit ↔ Authentik events.
    SwitchSource,
    Net(NetEvent),
}

impl State {
    pub fn new(socket: impl Into<String>, now_ms: i64) -> Self {
        Self {
            socket: socket.into(),
            now_ms,
            ..Self::default()
        }
    }

    pub fn now(&self) -> i64 {
        self.now_ms.div_euclid(1000)
    }

    /// The sessions shown: filtered by the Sessions filter, in the chosen order.
    pub fn visible_sessions(&self) -> Vec<&SessionInfo> {
        let f = self.sessions_view.filter.to_lowercase();
        let mut v: Vec<&SessionInfo> = self
            .sessions
            .iter()
            .filter(|s| {
                f.is_empty()
                    || [
                        Some(s.sub.as_str()),
                        s.email.as_deref(),
                        s.organization_id.as_deref(),
                        Some(s.role.as_str()),
                        s.sid.as_deref(),
                    ]
                    .into_iter()
                    .flatten()
                    .any(|x| x.to_lowercase().contains(&f))
            })
            .collect();
        v.sort_by(|a, b| {
            let o = match self.sort {
                SessionSort::Created => a.created.cmp(&b.created),
                SessionSort::LastSeen => a.last_seen.cmp(&b.last_seen),
                SessionSort::User => user_of(a).cmp(user_of(b)),
                SessionSort::Expires => a.refresh_expires.cmp(&b.refresh_expires),
            };
            match self.order {
                Order::Asc => o,
                Order::Desc => o.reverse(),
            }
        });
        v
    }

    /// How a `sub` is shown: the e-mail of a live session with that `sub`, else the `sub`
    /// (under hashed `sub` modes the `sub` alone says little).
    pub fn user_label(&self, sub: &str) -> String {
        self.sessions
            .iter()
            .find(|s| s.sub == sub)
            .and_then(|s| s.email.clone())
            .unwrap_or_else(|| sub.to_string())
    }

    /// The codes shown (soonest to expire first, as the daemon sends them).
    pub fn visible_codes(&self) -> Vec<&CodeInfo> {
        let f = self.codes_view.filter.to_lowercase();
        self.codes
            .iter()
            .filter(|c| {
                f.is_empty()
                    || [&c.sub, &c.kind, &c.hash_prefix, &self.user_label(&c.sub)]
                        .iter()
                        .any(|x| x.to_lowercase().contains(&f))
            })
            .collect()
    }

    /// A code's TTL now, in ms: its `ttl_left` when fetched, counted down locally since.
    pub fn code_ttl_ms(&self, c: &CodeInfo) -> i64 {
        (c.ttl_left * 1000 - (self.now_ms - self.codes_at_ms).max(0)).max(0)
    }

    /// tokend audit events shown, newest first.
    pub fn visible_audit(&self) -> Vec<&AuditEvent> {
        let f = self.events_view.filter.to_lowercase();
        self.audit
            .iter()
            .rev()
            .filter(|e| {
                f.is_empty()
                    || audit_kind(e).contains(&f)
                    || e.sub
                        .as_deref()
                        .is_some_and(|s| s.to_lowercase().contains(&f))
            })
            .collect()
    }

    /// Authentik events shown, newest first (empty unless loaded).
    pub fn visible_authentik(&self) -> Vec<&AuthentikEvent> {
        let AuthentikFeed::Loaded(list) = &self.authentik else {
            return Vec::new();
        };
        let f = self.events_view.filter.to_lowercase();
        list.events
            .iter()
            .filter(|e| {
                f.is_empty()
                    || e.action.to_lowercase().contains(&f)
                    || [e.username.as_deref(), e.email.as_deref()]
                        .into_iter()
                        .flatten()
                        .any(|u| u.to_lowercase().contains(&f))
            })
            .collect()
    }

    fn view_mut(&mut self) -> Option<&mut ListView> {
        match self.tab {
            Tab::Overview => None,
            Tab::Sessions => Some(&mut self.sessions_view),
            Tab::Codes => Some(&mut self.codes_view),
            Tab::Events => Some(&mut self.events_view),
        }
    }

    /// The current tab's list view, if it has one.
    pub fn view(&self) -> Option<&ListView> {
        match self.tab {
            Tab::Overview => None,
            Tab::Sessions => Some(&self.sessions_view),
            Tab::Codes => Some(&self.codes_view),
            Tab::Events => Some(&self.events_view),
        }
    }

    fn rows(&self) -> usize {
        match self.tab {
            Tab::Overview => 0,
            Tab::Sessions => self.visible_sessions().len(),
            Tab::Codes => self.visible_codes().len(),
            Tab::Events => match self.source {
                EventSource::Tokend => self.visible_audit().len(),
                EventSource::Authentik => self.visible_authentik().len(),
            },
        }
    }

    /// Keeps every selection inside its list.
    fn clamp(&mut self) {
        for tab in Tab::ALL {
            let saved = self.tab;
            self.tab = tab;
            let n = self.rows();
            if let Some(v) = self.view_mut() {
                v.selected = v.selected.min(n.saturating_sub(1));
            }
            self.tab = saved;
        }
    }

    fn move_by(&mut self, delta: isize) {
        if let Mode::Details(d) = &mut self.mode {
            let last = d.body.lines().count().saturating_sub(1) as isize;
            d.scroll = (d.scroll as isize + delta).clamp(0, last.max(0)) as u16;
            return;
        }
        let n = self.rows();
        if let Some(v) = self.view_mut() {
            let last = n.saturating_sub(1) as isize;
            v.selected = (v.selected as isize + delta).clamp(0, last.max(0)) as usize;
        }
    }

    fn selected_session(&self) -> Option<SessionInfo> {
        self.visible_sessions()
            .get(self.sessions_view.selected)
            .map(|s| (*s).clone())
    }

    fn flash(&mut self, text: impl Into<String>, error: bool) {
        self.flash = Some(Flash {
            text: text.into(),
            error,
        });
    }
}

/// What a session is listed by: its e-mail, else its `sub`.
pub fn user_of(s: &SessionInfo) -> &str {
    s.email.as_deref().unwrap_or(&s.sub)
}

/// An audit event's kind as the daemon spells it (`login_completed`, …).
pub fn audit_kind(e: &AuditEvent) -> String {
    serde_json::to_value(e.kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| "other".into())
}
