//! The Sessions tab: user, organization, role, age, last seen and expiry of every live
//! session, sorted and filtered as the state says, the selected row highlighted.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::text::Span;
use ratatui::widgets::{Block, Row, Table, TableState};
use tokend_shared::{Order, SessionSort};

use super::{Theme, empty_line, list_title};
use crate::app::{State, user_of};
use crate::format::{self, NONE};

fn sort_name(s: SessionSort) -> &'static str {
    match s {
        SessionSort::Created => "created",
        SessionSort::LastSeen => "last seen",
        SessionSort::User => "user",
        SessionSort::Expires => "expires",
    }
}

pub fn draw(frame: &mut Frame, area: Rect, state: &State, theme: Theme) {
    let visible = state.visible_sessions();
    let now = state.now();
    let arrow = match state.order {
        Order::Asc => "↑",
        Order::Desc => "↓",
    };
    let title = format!(
        "{}· sort {} {arrow} ",
        list_title(
            "Sessions",
            visible.len(),
            state.sessions_total.max(state.sessions.len()),
            &state.sessions_view.filter
        ),
        sort_name(state.sort)
    );
    let block = Block::bordered().title(Span::styled(title, theme.header()));
    if visible.is_empty() {
        let text = if state.sessions.is_empty() {
            " no live sessions"
        } else {
            " no session matches the filter"
        };
        frame.render_widget(empty_line(text, theme).block(block), area);
        return;
    }
    let rows: Vec<Row> = visible
        .iter()
        .map(|s| {
            Row::new(vec![
                user_of(s).to_string(),
                s.organization_id.clone().unwrap_or_else(|| NONE.into()),
                s.role.clone(),
                format::duration(now - s.created),
                format::ago(s.last_seen, now),
                format::until(s.refresh_expires, now),
            ])
        })
        .collect();
    let table = Table::new(
        rows,
        [
            Constraint::Min(16),
            Constraint::Length(10),
            Constraint::Length(8),
            Constraint::Length(6),
            Constraint::Length(10),
            Constraint::Length(9),
        ],
    )
    .header(Row::new(["USER", "ORG", "ROLE", "AGE", "LAST SEEN", "EXPIRES"]).style(theme.header()))
    .row_highlight_style(theme.selected())
    .block(block);
    let mut ts = TableState::default().with_selected(Some(state.sessions_view.selected));
    frame.render_stateful_widget(table, area, &mut ts);
}
