//! Popups over the current tab: the help (keys), the revoke question, and details (a
//! session, or an event's JSON).

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph, Wrap};

use super::Theme;
use crate::app::{Details, RevokeTarget, describe};
use crate::input::HELP;

/// A rectangle of `w`×`h` (capped at the screen) in the middle of it.
fn centered(area: Rect, w: u16, h: u16) -> Rect {
    area.centered(
        Constraint::Length(w.min(area.width)),
        Constraint::Length(h.min(area.height)),
    )
}

pub fn help(frame: &mut Frame, theme: Theme) {
    let area = centered(frame.area(), 76, HELP.len() as u16 + 3);
    let lines: Vec<Line> = HELP
        .iter()
        .map(|(k, what)| {
            Line::from(vec![
                Span::styled(format!(" {k:<22}"), theme.accent()),
                Span::raw(*what),
            ])
        })
        .chain(std::iter::once(Line::from(Span::styled(
            " Esc, ? or q closes this help",
            theme.dim(),
        ))))
        .collect();
    frame.render_widget(Clear, area);
    frame.render_widget(
        Paragraph::new(lines)
            .block(Block::bordered().title(Span::styled(" Keys ", theme.header()))),
        area,
    );
}

pub fn confirm(frame: &mut Frame, target: &RevokeTarget, theme: Theme) {
    let area = centered(frame.area(), 64, 8);
    let what = match target {
        RevokeTarget::Session { .. } => "Its tokens stop verifying at once;",
        RevokeTarget::User { .. } => "All of their tokens stop verifying at once;",
    };
    let text = vec![
        Line::from(format!("Revoke {}?", describe(target))),
        Line::from(format!("{what} refresh tokens are revoked upstream.")),
        Line::from(""),
        Line::from(vec![
            Span::styled("y", theme.bad()),
            Span::raw(" revoke · "),
            Span::styled("n", theme.ok()),
            Span::raw(" / Esc cancel"),
        ]),
    ];
    frame.render_widget(Clear, area);
    frame.render_widget(
        Paragraph::new(text)
            .wrap(Wrap { trim: true })
            .block(Block::bordered().title(Span::styled(" Revoke ", theme.bad()))),
        area,
    );
}

pub fn details(frame: &mut Frame, d: &Details, theme: Theme) {
    let lines = d.body.lines().count() as u16;
    let area = centered(frame.area(), 76, lines.saturating_add(2));
    let title = Span::styled(format!(" {} ", d.title), theme.header());
    let mut block = Block::bordered().title(title);
    if lines.saturating_add(2) > area.height {
        block = block.title_bottom(Span::styled(
            format!(" line {}/{lines} · j/k scroll ", d.scroll + 1),
            theme.dim(),
        ));
    }
    frame.render_widget(Clear, area);
    frame.render_widget(
        Paragraph::new(d.body.clone())
            .wrap(Wrap { trim: false })
            .scroll((d.scroll, 0))
            .block(block),
        area,
    );
}
