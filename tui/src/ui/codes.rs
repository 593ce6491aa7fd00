//! The Codes tab: outstanding exchange codes (hash prefix, kind, user) with a TTL bar that
//! counts down locally between polls. Never a code: only the daemon's hash prefix.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Row, Table, TableState};

use super::{Theme, empty_line, list_title};
use crate::app::State;
use crate::format;

/// Width of the TTL bar, in cells.
const BAR: usize = 20;

/// `ttl_ms` of `lifetime_s` as a bar of `BAR` cells.
pub fn bar(ttl_ms: i64, lifetime_s: i64) -> String {
    let total = (lifetime_s.max(1) * 1000) as f64;
    let filled = ((ttl_ms.max(0) as f64 / total) * BAR as f64).ceil() as usize;
    let filled = filled.min(BAR);
    format!("{}{}", "█".repeat(filled), "░".repeat(BAR - filled))
}

pub fn draw(frame: &mut Frame, area: Rect, state: &State, theme: Theme) {
    let visible = state.visible_codes();
    let title = list_title(
        "Codes",
        visible.len(),
        state.codes.len(),
        &state.codes_view.filter,
    );
    let block = Block::bordered().title(Span::styled(title, theme.header()));
    if visible.is_empty() {
        let text = if state.codes.is_empty() {
            " no outstanding codes"
        } else {
            " no code matches the filter"
        };
        frame.render_widget(empty_line(text, theme).block(block), area);
        return;
    }
    let rows: Vec<Row> = visible
        .iter()
        .map(|c| {
            let ttl_ms = state.code_ttl_ms(c);
            let secs = (ttl_ms + 999) / 1000;
            let lifetime = c.expires - c.created;
            let style = if secs <= 5 {
                theme.bad()
            } else if secs * 3 < lifetime {
                theme.warn()
            } else {
                theme.ok()
            };
            Row::new(vec![
                Cell::from(c.hash_prefix.clone()),
                Cell::from(c.kind.clone()),
                Cell::from(state.user_label(&c.sub)),
                Cell::from(Line::from(vec![
                    Span::styled(bar(ttl_ms, lifetime), style),
                    Span::raw(format!(" {:>5}", format::duration(secs))),
                ])),
            ])
        })
        .collect();
    let table = Table::new(
        rows,
        [
            Constraint::Length(13),
            Constraint::Length(5),
            Constraint::Min(10),
            Constraint::Length(BAR as u16 + 7),
        ],
    )
    .header(Row::new(["HASH", "KIND", "USER", "TTL"]).style(theme.header()))
    .row_highlight_style(theme.selected())
    .block(block);
    let mut ts = TableState::default().with_selected(Some(state.codes_view.selected));
    frame.render_stateful_widget(table, area, &mut ts);
}
