//! Keys to [`Action`]s, like htop/k9s: what a key means depends only on the mode (typing a
//! filter, a y/n question, a popup) and the tab; nothing here changes state.

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use crate::app::{Action, Mode, State, Tab};

/// The action for `key` in `state`, if any.
pub fn map(state: &State, key: KeyEvent) -> Option<Action> {
    if key.kind == KeyEventKind::Release {
        return None;
    }
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    if ctrl && matches!(key.code, KeyCode::Char('c')) {
        return Some(Action::Quit);
    }
    match &state.mode {
        Mode::Filter => match key.code {
            KeyCode::Enter => Some(Action::FilterDone),
            KeyCode::Esc => Some(Action::Back),
            KeyCode::Backspace => Some(Action::FilterBackspace),
            KeyCode::Char(c) if !ctrl => Some(Action::FilterChar(c)),
            _ => None,
        },
        Mode::Confirm(_) => match key.code {
            KeyCode::Char('y' | 'Y') => Some(Action::Confirm(true)),
            KeyCode::Char('n' | 'N') | KeyCode::Esc => Some(Action::Confirm(false)),
            _ => None,
        },
        Mode::Help => match key.code {
            KeyCode::Esc | KeyCode::Enter | KeyCode::Char('?' | 'q') => Some(Action::Back),
            _ => None,
        },
        Mode::Details(_) => match key.code {
            KeyCode::Esc | KeyCode::Enter | KeyCode::Char('q') => Some(Action::Back),
            KeyCode::Char('j') | KeyCode::Down => Some(Action::Down),
            KeyCode::Char('k') | KeyCode::Up => Some(Action::Up),
            KeyCode::PageDown => Some(Action::PageDown),
            KeyCode::PageUp => Some(Action::PageUp),
            KeyCode::Char('r') if state.tab == Tab::Sessions => Some(Action::RevokeSession),
            KeyCode::Char('R') if state.tab == Tab::Sessions => Some(Action::RevokeUser),
            _ => None,
        },
        Mode::Normal => normal(state, key),
    }
}

fn normal(state: &State, key: KeyEvent) -> Option<Action> {
    let tab_key = |n: usize| Tab::ALL.get(n).map(|t| Action::GoTab(*t));
    Some(match key.code {
        KeyCode::Char('q') => Action::Quit,
        KeyCode::Tab => Action::NextTab,
        KeyCode::BackTab => Action::PrevTab,
        KeyCode::Char(c @ '1'..='4') => return tab_key(c as usize - '1' as usize),
        KeyCode::Char('j') | KeyCode::Down => Action::Down,
        KeyCode::Char('k') | KeyCode::Up => Action::Up,
        KeyCode::PageDown => Action::PageDown,
        KeyCode::PageUp => Action::PageUp,
        KeyCode::Char('g') | KeyCode::Home => Action::Top,
        KeyCode::Char('G') | KeyCode::End => Action::Bottom,
        KeyCode::Char('/') => Action::StartFilter,
        KeyCode::Esc => Action::Back,
        KeyCode::Char('?') => Action::ToggleHelp,
        KeyCode::Enter => Action::Open,
        KeyCode::Char('r') if state.tab == Tab::Sessions => Action::RevokeSession,
        KeyCode::Char('R') if state.tab == Tab::Sessions => Action::RevokeUser,
        KeyCode::Char('s') if state.tab == Tab::Sessions => Action::CycleSort,
        KeyCode::Char('S') if state.tab == Tab::Sessions => Action::ReverseOrder,
        KeyCode::Char('e') if state.tab == Tab::Events => Action::SwitchSource,
        _ => return None,
    })
}

/// The keys, as the help popup and the README list them.
pub const HELP: &[(&str, &str)] = &[
    ("Tab / Shift-Tab, 1–4", "next / previous tab, or go to tab"),
    ("j k ↓ ↑", "move the selection"),
    ("PgDn PgUp, g G", "a page down / up, first / last row"),
    ("/", "filter this tab (Enter keeps it, Esc clears it)"),
    (
        "Enter",
        "details: a session, an event's context JSON (j/k scroll)",
    ),
    ("s  S", "Sessions: next sort key, reverse the order"),
    ("r  R", "Sessions: revoke the session / all of its user's"),
    ("y  n", "answer a revoke's question"),
    ("e", "Events: tokend audit ↔ Authentik events"),
    ("Esc", "close, clear the filter, dismiss the message"),
    ("?", "this help"),
    ("q, Ctrl-C", "quit"),
];
