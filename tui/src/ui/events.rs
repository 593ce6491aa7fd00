//! The Events tab: tokend's own audit events (live from the stream) or Authentik's event
//! log (as the daemon's poller holds it; "not configured" when it has none), newest first.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Row, Table, TableState};

use super::{Theme, empty_line, list_title};
use crate::app::{AuthentikFeed, EventSource, State, audit_kind};
use crate::format::{self, NONE};

pub fn draw(frame: &mut Frame, area: Rect, state: &State, theme: Theme) {
    match state.source {
        EventSource::Tokend => tokend(frame, area, state, theme),
        EventSource::Authentik => authentik(frame, area, state, theme),
    }
}

fn title(
    name: &str,
    shown: usize,
    total: usize,
    state: &State,
    other: &str,
    theme: Theme,
) -> Line<'static> {
    Line::from(vec![
        Span::styled(
            list_title(name, shown, total, &state.events_view.filter),
            theme.header(),
        ),
        Span::styled(format!("· e: {other} "), theme.dim()),
    ])
}

fn tokend(frame: &mut Frame, area: Rect, state: &State, theme: Theme) {
    let visible = state.visible_audit();
    let block = Block::bordered().title(title(
        "tokend audit",
        visible.len(),
        state.audit.len(),
        state,
        "Authentik",
        theme,
    ));
    if visible.is_empty() {
        frame.render_widget(empty_line(" no events", theme).block(block), area);
        return;
    }
    let rows: Vec<Row> = visible
        .iter()
        .map(|e| {
            let mut detail = e.detail.clone().unwrap_or_default();
            if let Some(uid) = e.operator_uid {
                detail = format!("uid {uid} {detail}");
            }
            if !e.counts.is_empty() {
                let counts: Vec<String> =
                    e.counts.iter().map(|(k, v)| format!("{k}={v}")).collect();
                detail = format!("{detail}{}", counts.join(" "));
            }
            Row::new(vec![
                format::clock_ms(e.at_ms),
                audit_kind(e),
                e.sub
                    .as_deref()
                    .map(|s| state.user_label(s))
                    .unwrap_or_else(|| NONE.into()),
                detail,
            ])
        })
        .collect();
    let table = Table::new(
        rows,
        [
            Constraint::Length(8),
            Constraint::Length(18),
            Constraint::Length(20),
            Constraint::Min(10),
        ],
    )
    .header(Row::new(["TIME", "EVENT", "USER", "DETAIL"]).style(theme.header()))
    .row_highlight_style(theme.selected())
    .block(block);
    let mut ts = TableState::default().with_selected(Some(state.events_view.selected));
    frame.render_stateful_widget(table, area, &mut ts);
}

fn authentik(frame: &mut Frame, area: Rect, state: &State, theme: Theme) {
    let visible = state.visible_authentik();
    let (held, note) = match &state.authentik {
        AuthentikFeed::Loaded(l) => (l.events.len(), None),
        AuthentikFeed::Unknown => (0, Some(" waiting for tokend…".to_string())),
        AuthentikFeed::NotConfigured => (
            0,
            Some(
                " not configured (tokend has no [events] section: its Authentik poller is off)"
                    .to_string(),
            ),
        ),
        AuthentikFeed::Failed(e) => (0, Some(format!(" cannot read Authentik's events: {e}"))),
    };
    let block = Block::bordered().title(title(
        "Authentik events",
        visible.len(),
        held,
        state,
        "tokend audit",
        theme,
    ));
    if let Some(note) = note {
        frame.render_widget(empty_line(&note, theme).block(block), area);
        return;
    }
    if visible.is_empty() {
        frame.render_widget(empty_line(" no events", theme).block(block), area);
        return;
    }
    let rows: Vec<Row> = visible
        .iter()
        .map(|e| {
            let user = e
                .username
                .clone()
                .or_else(|| e.email.clone())
                .unwrap_or_else(|| NONE.into());
            let sessions = match e.sessions.len() {
                0 => String::new(),
                n => format!("{n} live"),
            };
            let style = if e.action.contains("fail") || e.action.contains("suspicious") {
                theme.warn()
            } else {
                ratatui::style::Style::new()
            };
            Row::new(vec![
                format::clock_ms(e.created_ms),
                e.action.clone(),
                user,
                e.client_ip.clone().unwrap_or_else(|| NONE.into()),
                sessions,
            ])
            .style(style)
        })
        .collect();
    let table = Table::new(
        rows,
        [
            Constraint::Length(8),
            Constraint::Length(22),
            Constraint::Min(12),
            Constraint::Length(15),
            Constraint::Length(8),
        ],
    )
    .header(Row::new(["TIME", "ACTION", "USER", "CLIENT IP", "SESSIONS"]).style(theme.header()))
    .row_highlight_style(theme.selected())
    .block(block);
    let mut ts = TableState::default().with_selected(Some(state.events_view.selected));
    frame.render_stateful_widget(table, area, &mut ts);
}
