//! Every tab, the help popup and the revoke question rendered at 80×24 with ratatui's
//! `TestBackend` from seeded data, asserted with insta snapshots (tests/snapshots/; under CI
//! insta writes nothing and fails on a mismatch). Plus: NO_COLOR leaves no colour at all.

mod common;

use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::style::Color;
use tokentop::app::{Action, Connection, NetEvent, State, Tab, update};
use tokentop::ui::{Theme, draw};

const COLOR: Theme = Theme { color: true };
const NO_COLOR: Theme = Theme { color: false };

fn render(state: &State, theme: Theme) -> Terminal<TestBackend> {
    let mut t = Terminal::new(TestBackend::new(80, 24)).expect("test backend");
    t.draw(|f| draw(f, state, theme)).expect("draws");
    t
}

fn screen(state: &State) -> String {
    render(state, COLOR).backend().to_string()
}

fn on(tab: Tab, poller: bool) -> State {
    let mut s = common::seeded(poller);
    update(&mut s, Action::GoTab(tab));
    s
}

#[test]
fn overview_tab() {
    insta::assert_snapshot!(screen(&on(Tab::Overview, true)));
}

#[test]
fn overview_tab_without_poller_latency_or_rates() {
    let mut s = on(Tab::Overview, false);
    if let Some(o) = s.overview.as_mut() {
        o.latency = None;
        o.verification_rates.clear();
        o.last_reload = None;
        o.store.healthy = false;
        o.store.error = Some("redis: connection refused".into());
    }
    let text = screen(&s);
    assert!(text.contains("p50 — · p99 —"), "{text}");
    assert!(text.contains("events poller not configured"), "{text}");
    insta::assert_snapshot!(text);
}

#[test]
fn sessions_tab() {
    insta::assert_snapshot!(screen(&on(Tab::Sessions, true)));
}

#[test]
fn sessions_tab_filtered_with_details() {
    let mut s = on(Tab::Sessions, true);
    for a in [
        Action::StartFilter,
        Action::FilterChar('b'),
        Action::FilterChar('o'),
    ] {
        update(&mut s, a);
    }
    update(&mut s, Action::FilterDone);
    update(&mut s, Action::Open);
    insta::assert_snapshot!(screen(&s));
}

#[test]
fn sessions_revoke_question() {
    let mut s = on(Tab::Sessions, true);
    update(&mut s, Action::Down);
    update(&mut s, Action::RevokeSession);
    insta::assert_snapshot!(screen(&s));
}

#[test]
fn codes_tab() {
    insta::assert_snapshot!(screen(&on(Tab::Codes, true)));
}

#[test]
fn codes_count_down_between_polls() {
    let mut s = on(Tab::Codes, true);
    let before = screen(&s);
    update(&mut s, Action::Tick((common::NOW + 3) * 1000));
    let after = screen(&s);
    assert!(
        before.contains(" 44s") && before.contains("  9s"),
        "{before}"
    );
    assert!(after.contains(" 41s") && after.contains("  6s"), "{after}");
}

#[test]
fn events_tab_tokend_audit() {
    insta::assert_snapshot!(screen(&on(Tab::Events, true)));
}

#[test]
fn events_tab_authentik_with_context() {
    let mut s = on(Tab::Events, true);
    update(&mut s, Action::SwitchSource);
    insta::assert_snapshot!("events_tab_authentik", screen(&s));
    update(&mut s, Action::Down);
    update(&mut s, Action::Down);
    update(&mut s, Action::Open);
    insta::assert_snapshot!("events_tab_authentik_context", screen(&s));
}

#[test]
fn events_tab_authentik_not_configured() {
    let mut s = on(Tab::Events, false);
    update(&mut s, Action::SwitchSource);
    let text = screen(&s);
    assert!(text.contains("not configured"), "{text}");
    insta::assert_snapshot!(text);
}

#[test]
fn help_popup() {
    let mut s = on(Tab::Sessions, true);
    update(&mut s, Action::ToggleHelp);
    insta::assert_snapshot!(screen(&s));
}

#[test]
fn reconnecting_is_on_screen() {
    let mut s = on(Tab::Overview, true);
    update(
        &mut s,
        Action::Net(NetEvent::Connection(Connection::Down {
            attempt: 3,
            error: "cannot connect to /run/tokend/tokend-admin.sock: No such file or directory"
                .into(),
            retry_in_ms: 2000,
        })),
    );
    let text = screen(&s);
    assert!(text.contains("✗ reconnecting in 2s (attempt 3)"), "{text}");
}

/// Every cell of every tab and popup: no foreground or background colour under NO_COLOR,
/// while the coloured theme does use colour.
#[test]
fn no_color_means_no_colour_at_all() {
    assert_eq!(Theme::with_no_color(Some("1".as_ref())), NO_COLOR);
    assert_eq!(Theme::with_no_color(Some("".as_ref())), COLOR);
    assert_eq!(Theme::with_no_color(None), COLOR);
    let mut states = Vec::new();
    for tab in Tab::ALL {
        states.push(on(tab, true));
    }
    let mut s = on(Tab::Events, true);
    update(&mut s, Action::SwitchSource);
    states.push(s);
    let mut s = on(Tab::Sessions, true);
    update(&mut s, Action::ToggleHelp);
    states.push(s);
    let mut s = on(Tab::Sessions, true);
    update(&mut s, Action::RevokeUser);
    states.push(s);
    let mut coloured = 0;
    for s in &states {
        let plain = render(s, NO_COLOR);
        for cell in plain.backend().buffer().content() {
            assert_eq!(
                (cell.fg, cell.bg),
                (Color::Reset, Color::Reset),
                "a coloured cell {:?} under NO_COLOR on {:?}",
                cell.symbol(),
                s.tab
            );
        }
        let colour = render(s, COLOR);
        coloured += colour
            .backend()
            .buffer()
            .content()
            .iter()
            .filter(|c| c.fg != Color::Reset)
            .count();
        assert_eq!(
            plain.backend().to_string(),
            colour.backend().to_string(),
            "the same text either way"
        );
    }
    assert!(coloured > 0);
    insta::assert_snapshot!(
        render(&on(Tab::Sessions, true), NO_COLOR)
            .backend()
            .to_string()
    );
}
