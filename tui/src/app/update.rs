//! [`update`]: how each [`Action`] changes the [`State`], and the texts it composes (details
//! popups, a revoke's truthful result).

use tokend_shared::{Order, RevokeOutcome, SessionInfo, SessionSort};

use super::{
    AUDIT_KEPT, Action, Command, Connection, Details, EventSource, Mode, NetEvent, PAGE,
    RATE_SAMPLES, RevokeTarget, State, Tab, audit_kind, user_of,
};
use crate::format;

/// Applies `action`; answers a command for the daemon when one is needed.
pub fn update(state: &mut State, action: Action) -> Option<Command> {
    match action {
        Action::Quit => state.quit = true,
        Action::Tick(now_ms) => state.now_ms = now_ms,
        Action::NextTab => state.tab = state.tab.next(),
        Action::PrevTab => state.tab = state.tab.prev(),
        Action::GoTab(t) => state.tab = t,
        Action::Up => state.move_by(-1),
        Action::Down => state.move_by(1),
        Action::PageUp => state.move_by(-(PAGE as isize)),
        Action::PageDown => state.move_by(PAGE as isize),
        Action::Top => state.move_by(isize::MIN / 2),
        Action::Bottom => state.move_by(isize::MAX / 2),
        Action::StartFilter => {
            if state.view().is_some() {
                state.mode = Mode::Filter;
            }
        }
        Action::FilterChar(c) => {
            if let Some(v) = state.view_mut() {
                v.filter.push(c);
                v.selected = 0;
            }
        }
        Action::FilterBackspace => {
            if let Some(v) = state.view_mut() {
                v.filter.pop();
                v.selected = 0;
            }
        }
        Action::FilterDone => state.mode = Mode::Normal,
        Action::Back => back(state),
        Action::ToggleHelp => {
            state.mode = if state.mode == Mode::Help {
                Mode::Normal
            } else {
                Mode::Help
            }
        }
        Action::Open => open(state),
        Action::RevokeSession | Action::RevokeUser => ask_revoke(state, action),
        Action::Confirm(yes) => {
            if let Mode::Confirm(target) = std::mem::take(&mut state.mode) {
                if yes {
                    state.flash(format!("revoking {}…", describe(&target)), false);
                    return Some(Command::Revoke(target));
                }
                state.flash("revoke cancelled", false);
            }
        }
        Action::CycleSort => {
            state.sort = match state.sort {
                SessionSort::Created => SessionSort::LastSeen,
                SessionSort::LastSeen => SessionSort::User,
                SessionSort::User => SessionSort::Expires,
                SessionSort::Expires => SessionSort::Created,
            };
            state.sessions_view.selected = 0;
        }
        Action::ReverseOrder => {
            state.order = match state.order {
                Order::Asc => Order::Desc,
                Order::Desc => Order::Asc,
            };
            state.sessions_view.selected = 0;
        }
        Action::SwitchSource => {
            state.source = match state.source {
                EventSource::Tokend => EventSource::Authentik,
                EventSource::Authentik => EventSource::Tokend,
            };
            state.events_view.selected = 0;
        }
        Action::Net(ev) => net(state, ev),
    }
    state.clamp();
    None
}

fn back(state: &mut State) {
    match state.mode {
        Mode::Normal => {
            if let Some(v) = state.view_mut().filter(|v| !v.filter.is_empty()) {
                v.filter.clear();
                v.selected = 0;
            } else {
                state.flash = None;
            }
        }
        Mode::Filter => {
            if let Some(v) = state.view_mut() {
                v.filter.clear();
                v.selected = 0;
            }
            state.mode = Mode::Normal;
        }
        Mode::Confirm(_) => {
            state.mode = Mode::Normal;
            state.flash("revoke cancelled", false);
        }
        Mode::Help | Mode::Details(_) => state.mode = Mode::Normal,
    }
}

fn open(state: &mut State) {
    let details = match state.tab {
        Tab::Overview | Tab::Codes => None,
        Tab::Sessions => state.selected_session().map(|s| Details {
            title: format!("Session of {}", user_of(&s)),
            body: session_details(&s, state.now()),
            scroll: 0,
        }),
        Tab::Events => match state.source {
            EventSource::Tokend => state
                .visible_audit()
                .get(state.events_view.selected)
                .map(|e| Details {
                    title: format!("tokend {} #{}", audit_kind(e), e.seq),
                    body: pretty(&serde_json::to_value(e).unwrap_or_default()),
                    scroll: 0,
                }),
            EventSource::Authentik => state
                .visible_authentik()
                .get(state.events_view.selected)
                .map(|e| Details {
                    title: format!("Authentik {} — context", e.action),
                    body: pretty(&e.context),
                    scroll: 0,
                }),
        },
    };
    if let Some(d) = details {
        state.mode = Mode::Details(d);
    }
}

fn pretty(v: &serde_json::Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
}

fn session_details(s: &SessionInfo, now: i64) -> String {
    let opt = |o: &Option<String>| o.clone().unwrap_or_else(|| format::NONE.into());
    [
        format!("sid           {}", opt(&s.sid)),
        format!("sub           {}", s.sub),
        format!("email         {}", opt(&s.email)),
        format!("organization  {}", opt(&s.organization_id)),
        format!("role          {}", s.role),
        format!(
            "created       {} UTC ({})",
            format::datetime(s.created),
            format::ago(s.created, now)
        ),
        format!("last seen     {}", format::ago(s.last_seen, now)),
        format!("access until  {}", format::until(s.access_expires, now)),
        format!("refresh until {}", format::until(s.refresh_expires, now)),
        String::new(),
        "r revoke this session · R revoke all of this user's · Esc close".into(),
    ]
    .join("\n")
}

fn ask_revoke(state: &mut State, action: Action) {
    if state.tab != Tab::Sessions || !matches!(state.mode, Mode::Normal | Mode::Details(_)) {
        return;
    }
    let Some(s) = state.selected_session() else {
        return;
    };
    let who = user_of(&s).to_string();
    let target = match (action, s.sid) {
        (Action::RevokeSession, Some(sid)) => RevokeTarget::Session { sid, who },
        (Action::RevokeSession, None) => {
            state.flash(
                "this session has no sid: R revokes all of its user's sessions",
                true,
            );
            return;
        }
        _ => RevokeTarget::User { sub: s.sub, who },
    };
    state.mode = Mode::Confirm(target);
}

/// How a revoke target reads in messages.
pub fn describe(t: &RevokeTarget) -> String {
    match t {
        RevokeTarget::Session { sid, who } => {
            format!("session {} of {who}", format::cut(sid, 12))
        }
        RevokeTarget::User { who, .. } => format!("every session of {who}"),
    }
}

/// The truthful one-line account of a revoke's answer.
pub fn revoke_message(t: &RevokeTarget, o: &RevokeOutcome) -> String {
    let plural = |n: usize, one: &str| format!("{n} {one}{}", if n == 1 { "" } else { "s" });
    let mut text = format!(
        "revoked {}: {} ended, {} revoked upstream",
        describe(t),
        plural(o.ended, "session"),
        plural(o.refresh_tokens_revoked, "refresh token"),
    );
    if o.refresh_tokens_failed > 0 {
        text.push_str(&format!(
            ", {} NOT revoked upstream (still refused by tokend)",
            o.refresh_tokens_failed
        ));
    }
    text.push_str(&format!(
        "; tokens refused until {} UTC",
        format::datetime(o.tokens_refused_until)
    ));
    text
}

fn net(state: &mut State, ev: NetEvent) {
    match ev {
        NetEvent::Connection(c) => state.connection = c,
        NetEvent::Snapshot(s) => {
            let s = *s;
            state.connection = Connection::Connected;
            let total: u64 = s.overview.verifications.values().sum();
            if let Some((at, prev)) = state.last_total
                && s.at_ms > at
            {
                let per_s = total.saturating_sub(prev) as f64 * 1000.0 / (s.at_ms - at) as f64;
                state.rates.push_back(per_s.round() as u64);
                while state.rates.len() > RATE_SAMPLES {
                    state.rates.pop_front();
                }
            }
            state.last_total = Some((s.at_ms, total));
            state.overview = Some(s.overview);
            state.sessions_total = s.sessions.total;
            state.sessions = s.sessions.sessions;
            state.codes = s.codes.codes;
            state.codes_at_ms = s.at_ms;
            state.authentik = s.authentik;
        }
        NetEvent::Audit(e) => {
            if state.audit.back().is_none_or(|last| e.seq > last.seq) {
                state.audit.push_back(e);
                while state.audit.len() > AUDIT_KEPT {
                    state.audit.pop_front();
                }
            }
        }
        NetEvent::AuditReset => state.audit.clear(),
        NetEvent::StreamDropped { count } => state.flash(
            format!("the live stream fell behind ({count} events skipped); catching up"),
            true,
        ),
        NetEvent::Revoked { target, outcome } => {
            let text = revoke_message(&target, &outcome);
            state.flash(text, false);
        }
        NetEvent::CommandFailed { what, error } => {
            state.flash(format!("{what} failed: {error}"), true)
        }
    }
}
