//! The Overview tab: verifications/s sparkline with p50/p99, outcomes by reason, the keys
//! and their age, and the daemon (version, uptime, reload, store health, Authentik poller).

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Row, Sparkline, Table};
use tokend_shared::{Overview, PollerStatus};

use super::{Theme, empty_line};
use crate::app::State;
use crate::format::{self, NONE};

pub fn draw(frame: &mut Frame, area: Rect, state: &State, theme: Theme) {
    let Some(o) = &state.overview else {
        frame.render_widget(empty_line(" waiting for tokend…", theme), area);
        return;
    };
    let [spark, middle, daemon] = Layout::vertical([
        Constraint::Length(5),
        Constraint::Min(4),
        Constraint::Length(7),
    ])
    .areas(area);
    sparkline(frame, spark, state, o, theme);
    let [outcomes, keys] =
        Layout::horizontal([Constraint::Percentage(45), Constraint::Percentage(55)]).areas(middle);
    outcome_table(frame, outcomes, o, theme);
    keys_table(frame, keys, o, theme);
    daemon_info(frame, daemon, o, state.now(), theme);
}

fn sparkline(frame: &mut Frame, area: Rect, state: &State, o: &Overview, theme: Theme) {
    let now = state.rates.back().copied().unwrap_or(0);
    let peak = state.rates.iter().copied().max().unwrap_or(0);
    let latency = match &o.latency {
        Some(l) => format!(
            "p50 {} · p99 {} ({} in {}s)",
            format::millis(l.p50_ms),
            format::millis(l.p99_ms),
            l.count,
            l.window_seconds
        ),
        None => format!("p50 {NONE} · p99 {NONE}"),
    };
    let title = Line::from(vec![
        Span::styled(" Verifications/s ", theme.header()),
        Span::raw(format!("now {now} · peak {peak} · {latency} ")),
    ]);
    // The newest samples that fit, right-aligned like htop's meters.
    let width = area.width.saturating_sub(2) as usize;
    let data: Vec<u64> = state
        .rates
        .iter()
        .skip(state.rates.len().saturating_sub(width))
        .copied()
        .collect();
    frame.render_widget(
        Sparkline::default()
            .block(Block::bordered().title(title))
            .style(theme.ok())
            .data(&data),
        area,
    );
}

fn outcome_table(frame: &mut Frame, area: Rect, o: &Overview, theme: Theme) {
    let rows: Vec<Row> = o
        .verifications
        .iter()
        .map(|(reason, total)| {
            let rate = o
                .verification_rates
                .get(reason)
                .map(|r| format!("{r:.1}"))
                .unwrap_or_else(|| NONE.into());
            let style = if reason == "valid" {
                theme.ok()
            } else {
                theme.warn()
            };
            Row::new(vec![reason.clone(), total.to_string(), rate]).style(style)
        })
        .collect();
    let block = Block::bordered().title(Span::styled(" Outcomes ", theme.header()));
    if rows.is_empty() {
        frame.render_widget(
            empty_line(" no verifications yet", theme).block(block),
            area,
        );
        return;
    }
    frame.render_widget(
        Table::new(
            rows,
            [
                Constraint::Min(10),
                Constraint::Length(8),
                Constraint::Length(6),
            ],
        )
        .header(Row::new(["reason", "total", "/s"]).style(theme.dim()))
        .block(block),
        area,
    );
}

fn keys_table(frame: &mut Frame, area: Rect, o: &Overview, theme: Theme) {
    let k = &o.keys;
    let age = k
        .age_seconds
        .map(|a| format!("{} old", format::duration(a as i64)))
        .unwrap_or_else(|| NONE.into());
    let fetch = match (k.last_fetch_ok, &k.last_fetch_error) {
        (Some(true), _) => Span::styled("fetch ok", theme.ok()),
        (Some(false), e) => Span::styled(
            format!("fetch failed: {}", e.as_deref().unwrap_or("?")),
            theme.bad(),
        ),
        (None, _) => Span::styled(format!("fetch {NONE}"), theme.dim()),
    };
    let title = Line::from(vec![
        Span::styled(" Keys ", theme.header()),
        Span::raw(format!("{} · {age} · ", k.source)),
        fetch,
        Span::raw(" "),
    ]);
    let rows: Vec<Row> = k
        .keys
        .iter()
        .map(|key| {
            Row::new(vec![
                key.kid.clone().unwrap_or_else(|| NONE.into()),
                key.alg.clone().unwrap_or_else(|| NONE.into()),
                key.kind.clone(),
            ])
        })
        .collect();
    let block = Block::bordered().title(title);
    if rows.is_empty() {
        frame.render_widget(empty_line(" no keys", theme).block(block), area);
        return;
    }
    frame.render_widget(
        Table::new(
            rows,
            [
                Constraint::Min(12),
                Constraint::Length(6),
                Constraint::Length(8),
            ],
        )
        .header(Row::new(["kid", "alg", "kind"]).style(theme.dim()))
        .block(block),
        area,
    );
}

fn daemon_info(frame: &mut Frame, area: Rect, o: &Overview, now: i64, theme: Theme) {
    let label = |s: &str| Span::styled(format!("{s:<10}"), theme.dim());
    let reload = match &o.last_reload {
        None => Span::raw(format!("{NONE} (none since start)")),
        Some(r) if r.ok => Span::styled(
            format!(
                "ok {} via {}{}",
                format::ago(r.at, now),
                r.trigger,
                if r.restart_required.is_empty() {
                    String::new()
                } else {
                    format!(" · restart needed for {}", r.restart_required.join(", "))
                }
            ),
            theme.ok(),
        ),
        Some(r) => Span::styled(
            format!(
                "FAILED {} via {}: {}",
                format::ago(r.at, now),
                r.trigger,
                r.error.as_deref().unwrap_or("?")
            ),
            theme.bad(),
        ),
    };
    let s = &o.store;
    let store = if s.healthy {
        Span::styled(format!("{} healthy", s.kind), theme.ok())
    } else {
        Span::styled(
            format!(
                "{} UNHEALTHY: {}",
                s.kind,
                s.error.as_deref().unwrap_or("?")
            ),
            theme.bad(),
        )
    };
    let lines = vec![
        Line::from(vec![
            label("tokend"),
            Span::raw(format!(
                "{} · up {} · {}",
                o.version,
                format::duration(o.uptime_seconds as i64),
                o.config_path.as_deref().unwrap_or("no config file")
            )),
        ]),
        Line::from(vec![label("issuer"), Span::raw(o.issuer.clone())]),
        Line::from(vec![label("reload"), reload]),
        Line::from(vec![
            label("store"),
            store,
            Span::raw(format!(
                " · {} sessions · {} codes · {} logins in progress",
                o.sessions_active, s.codes_outstanding, s.logins_in_progress
            )),
        ]),
        Line::from(vec![
            label("authentik"),
            poller(o.authentik_events.as_ref(), now, theme),
        ]),
    ];
    frame.render_widget(
        Paragraph::new(lines)
            .block(Block::bordered().title(Span::styled(" Daemon ", theme.header()))),
        area,
    );
}

/// The Authentik events poller in one line.
fn poller(p: Option<&PollerStatus>, now: i64, theme: Theme) -> Span<'static> {
    let Some(p) = p else {
        return Span::styled("events poller not configured", theme.dim());
    };
    let last = p
        .last_poll
        .map(|t| format::ago(t, now))
        .unwrap_or_else(|| "never".into());
    match p.last_ok {
        Some(false) => Span::styled(
            format!(
                "poll FAILED {last}{}: {} · retry in {}",
                p.last_status.map(|s| format!(" ({s})")).unwrap_or_default(),
                p.last_error.as_deref().unwrap_or("?"),
                format::duration(p.next_poll_seconds as i64)
            ),
            theme.bad(),
        ),
        _ => Span::styled(
            format!(
                "polled {last} · {}/{} held · {} fetched · next in {}",
                p.held,
                p.capacity,
                p.fetched_total,
                format::duration(p.next_poll_seconds as i64)
            ),
            theme.ok(),
        ),
    }
}
