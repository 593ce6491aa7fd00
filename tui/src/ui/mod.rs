//! Rendering: [`draw`] lays out the tab bar, the current tab (one module each) and the two
//! status lines, then any popup (popup.rs). It only reads the [`State`]; colours come from
//! the [`Theme`], which has none at all under `NO_COLOR`.

mod codes;
mod events;
mod overview;
mod popup;
mod sessions;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Tabs};

use crate::app::{Connection, Mode, State, Tab};
use crate::format;

/// Styles, with or without colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Theme {
    /// False under `NO_COLOR`: modifiers (bold, reversed) only.
    pub color: bool,
}

impl Theme {
    /// Colour unless `NO_COLOR` is set and non-empty (no-color.org).
    pub fn from_env() -> Self {
        Self::with_no_color(std::env::var_os("NO_COLOR").as_deref())
    }

    pub fn with_no_color(no_color: Option<&std::ffi::OsStr>) -> Self {
        Self {
            color: no_color.is_none_or(|v| v.is_empty()),
        }
    }

    fn fg(self, c: Color) -> Style {
        if self.color {
            Style::new().fg(c)
        } else {
            Style::new()
        }
    }

    pub fn ok(self) -> Style {
        self.fg(Color::Green)
    }

    pub fn bad(self) -> Style {
        self.fg(Color::Red).add_modifier(Modifier::BOLD)
    }

    pub fn warn(self) -> Style {
        self.fg(Color::Yellow)
    }

    pub fn dim(self) -> Style {
        self.fg(Color::DarkGray)
    }

    pub fn accent(self) -> Style {
        self.fg(Color::Cyan)
    }

    pub fn header(self) -> Style {
        self.fg(Color::Cyan).add_modifier(Modifier::BOLD)
    }

    /// The selected row: reversed, which needs no colour.
    pub fn selected(self) -> Style {
        Style::new().add_modifier(Modifier::REVERSED)
    }
}

/// Draws the whole screen.
pub fn draw(frame: &mut Frame, state: &State, theme: Theme) {
    // A message longer than the screen is wide gets a second line.
    let long_flash = state.mode != Mode::Filter
        && state
            .flash
            .as_ref()
            .is_some_and(|f| f.text.chars().count() > frame.area().width as usize);
    let [top, body, conn, foot] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(0),
        Constraint::Length(1),
        Constraint::Length(if long_flash { 2 } else { 1 }),
    ])
    .areas(frame.area());
    tabs(frame, top, state, theme);
    match state.tab {
        Tab::Overview => overview::draw(frame, body, state, theme),
        Tab::Sessions => sessions::draw(frame, body, state, theme),
        Tab::Codes => codes::draw(frame, body, state, theme),
        Tab::Events => events::draw(frame, body, state, theme),
    }
    frame.render_widget(Paragraph::new(connection_line(state, theme)), conn);
    frame.render_widget(
        Paragraph::new(footer_line(state, theme)).wrap(ratatui::widgets::Wrap { trim: true }),
        foot,
    );
    match &state.mode {
        Mode::Help => popup::help(frame, theme),
        Mode::Confirm(target) => popup::confirm(frame, target, theme),
        Mode::Details(d) => popup::details(frame, d, theme),
        Mode::Normal | Mode::Filter => {}
    }
}

fn tabs(frame: &mut Frame, area: Rect, state: &State, theme: Theme) {
    let titles = Tab::ALL
        .iter()
        .enumerate()
        .map(|(i, t)| format!("{} {}", i + 1, t.title()));
    let [name, rest] = Layout::horizontal([Constraint::Length(9), Constraint::Min(0)]).areas(area);
    frame.render_widget(
        Paragraph::new(Span::styled("tokentop", theme.header())),
        name,
    );
    frame.render_widget(
        Tabs::new(titles)
            .select(state.tab.index())
            .style(theme.dim())
            .highlight_style(theme.selected().add_modifier(Modifier::BOLD))
            .divider("|"),
        rest,
    );
}

fn connection_line(state: &State, theme: Theme) -> Line<'static> {
    let socket = Span::styled(format!(" {}", state.socket), theme.dim());
    match &state.connection {
        Connection::Connecting => {
            Line::from(vec![Span::styled("○ connecting to", theme.warn()), socket])
        }
        Connection::Connected => {
            let version = state
                .overview
                .as_ref()
                .map(|o| format!(" · tokend {}", o.version))
                .unwrap_or_default();
            Line::from(vec![
                Span::styled("● connected to", theme.ok()),
                socket,
                Span::styled(version, theme.dim()),
            ])
        }
        Connection::Down {
            attempt,
            error,
            retry_in_ms,
        } => Line::from(vec![
            Span::styled(
                format!(
                    "✗ reconnecting in {} (attempt {attempt}): ",
                    format::duration(retry_in_ms.div_ceil(1000) as i64)
                ),
                theme.bad(),
            ),
            Span::raw(error.clone()),
        ]),
    }
}

fn footer_line(state: &State, theme: Theme) -> Line<'static> {
    if state.mode == Mode::Filter {
        let filter = state.view().map(|v| v.filter.clone()).unwrap_or_default();
        return Line::from(vec![
            Span::styled("/", theme.accent()),
            Span::raw(filter),
            Span::styled("▏", theme.accent()),
            Span::styled("  Enter keep · Esc clear", theme.dim()),
        ]);
    }
    if let Some(f) = &state.flash {
        let style = if f.error { theme.bad() } else { theme.ok() };
        return Line::from(Span::styled(f.text.clone(), style));
    }
    let hints = match state.tab {
        Tab::Overview => "? help · 1-4/Tab tabs · q quit",
        Tab::Sessions => "? help · / filter · Enter details · s/S sort · r/R revoke · q quit",
        Tab::Codes => "? help · / filter · j/k move · q quit",
        Tab::Events => "? help · e source · / filter · Enter context · q quit",
    };
    Line::from(Span::styled(hints, theme.dim()))
}

/// The title of a list's block: name, counts, and the filter when one is set.
fn list_title(name: &str, shown: usize, total: usize, filter: &str) -> String {
    let mut t = format!(" {name} {shown}/{total} ");
    if !filter.is_empty() {
        t.push_str(&format!("· filter \"{filter}\" "));
    }
    t
}

/// A placeholder line for an empty list.
fn empty_line(text: &str, theme: Theme) -> Paragraph<'static> {
    Paragraph::new(Span::styled(text.to_string(), theme.dim()))
}
