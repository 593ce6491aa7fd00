//! Key handling: keys through `input::map` into `update`, on seeded data — tabs, moving, the
//! `/` filter, sorting, and the revoke question confirmed (a command for the daemon) or
//! cancelled (none), and the revoke's answer reported as it was.

mod common;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use tokend_shared::{Order, RevokeOutcome, SessionSort};
use tokentop::app::{
    Action, Command, EventSource, Mode, NetEvent, RevokeTarget, State, Tab, update, user_of,
};
use tokentop::input::map;

/// Presses `keys` in order; returns the commands `update` asked for.
fn press(s: &mut State, keys: &[KeyCode]) -> Vec<Command> {
    let mut out = Vec::new();
    for k in keys {
        let mods = if matches!(k, KeyCode::BackTab) {
            KeyModifiers::SHIFT
        } else {
            KeyModifiers::NONE
        };
        if let Some(a) = map(s, KeyEvent::new(*k, mods)) {
            out.extend(update(s, a));
        }
    }
    out
}

fn chars(text: &str) -> Vec<KeyCode> {
    text.chars().map(KeyCode::Char).collect()
}

fn users(s: &State) -> Vec<String> {
    s.visible_sessions().iter().map(|x| x.sub.clone()).collect()
}

#[test]
fn tabs_by_number_tab_and_shift_tab() {
    let mut s = common::seeded(true);
    press(&mut s, &[KeyCode::Char('3')]);
    assert_eq!(s.tab, Tab::Codes);
    press(&mut s, &[KeyCode::Tab, KeyCode::Tab]);
    assert_eq!(s.tab, Tab::Overview);
    press(&mut s, &[KeyCode::BackTab]);
    assert_eq!(s.tab, Tab::Events);
    press(&mut s, &[KeyCode::Char('e')]);
    assert_eq!(s.source, EventSource::Authentik);
    press(&mut s, &[KeyCode::Char('q')]);
    assert!(s.quit);
}

#[test]
fn moving_stays_inside_the_list() {
    let mut s = common::seeded(true);
    press(&mut s, &[KeyCode::Char('2'), KeyCode::Char('k')]);
    assert_eq!(s.sessions_view.selected, 0);
    press(&mut s, &[KeyCode::Char('j'), KeyCode::Down]);
    assert_eq!(s.sessions_view.selected, 2);
    press(&mut s, &[KeyCode::Down, KeyCode::PageDown]);
    assert_eq!(s.sessions_view.selected, 2, "clamped to the last row");
    press(&mut s, &[KeyCode::PageUp]);
    assert_eq!(s.sessions_view.selected, 0);
    press(&mut s, &[KeyCode::Char('G')]);
    assert_eq!(s.sessions_view.selected, 2);
}

#[test]
fn issue_11_slash_filters_enter_keeps_esc_clears() {
    let mut s = common::seeded(true);
    press(&mut s, &[KeyCode::Char('2'), KeyCode::Char('/')]);
    assert_eq!(s.mode, Mode::Filter);
    // While typing, q and digits are text, not quit or tabs.
    press(&mut s, &chars("org-1"));
    assert_eq!((s.tab, s.quit), (Tab::Sessions, false));
    assert_eq!(users(&s), ["alice", "carol"]);
    press(&mut s, &[KeyCode::Backspace, KeyCode::Char('2')]);
    assert_eq!(users(&s), ["bob"]);
    press(&mut s, &[KeyCode::Enter]);
    assert_eq!(s.mode, Mode::Normal);
    assert_eq!(s.sessions_view.filter, "org-2", "Enter keeps the filter");
    press(&mut s, &[KeyCode::Esc]);
    assert_eq!(s.sessions_view.filter, "", "Esc clears it");
    assert_eq!(users(&s).len(), 3);
    // Esc while typing clears too.
    press(&mut s, &[KeyCode::Char('/')]);
    press(&mut s, &chars("zz"));
    assert!(users(&s).is_empty());
    press(&mut s, &[KeyCode::Esc]);
    assert_eq!((s.mode.clone(), users(&s).len()), (Mode::Normal, 3));
    // Events: by action or by user.
    press(&mut s, &[KeyCode::Char('4'), KeyCode::Char('/')]);
    press(&mut s, &chars("code_"));
    assert_eq!(s.visible_audit().len(), 2);
    press(&mut s, &[KeyCode::Esc, KeyCode::Char('/')]);
    press(&mut s, &chars("carol"));
    assert_eq!(s.visible_audit().len(), 1);
}

#[test]
fn issue_11_s_cycles_the_sort_key_and_capital_s_reverses() {
    let mut s = common::seeded(true);
    press(&mut s, &[KeyCode::Char('2')]);
    assert_eq!((s.sort, s.order), (SessionSort::Created, Order::Desc));
    assert_eq!(users(&s), ["alice", "bob", "carol"], "newest first");
    press(&mut s, &[KeyCode::Char('s')]);
    assert_eq!(s.sort, SessionSort::LastSeen);
    assert_eq!(users(&s), ["alice", "bob", "carol"]);
    press(&mut s, &[KeyCode::Char('s')]);
    assert_eq!(s.sort, SessionSort::User);
    assert_eq!(users(&s), ["carol", "bob", "alice"]);
    press(&mut s, &[KeyCode::Char('S')]);
    assert_eq!(s.order, Order::Asc);
    assert_eq!(users(&s), ["alice", "bob", "carol"]);
    press(&mut s, &[KeyCode::Char('s'), KeyCode::Char('s')]);
    assert_eq!(s.sort, SessionSort::Created);
    assert_eq!(users(&s), ["carol", "bob", "alice"], "oldest first");
}

#[test]
fn issue_11_revoke_asks_and_y_sends_the_command() {
    let mut s = common::seeded(true);
    press(&mut s, &[KeyCode::Char('2'), KeyCode::Char('j')]);
    assert!(
        press(&mut s, &[KeyCode::Char('r')]).is_empty(),
        "asks first"
    );
    let target = RevokeTarget::Session {
        sid: "sid-bob-1".into(),
        who: "bob@example.com".into(),
    };
    assert_eq!(s.mode, Mode::Confirm(target.clone()));
    // Other keys do nothing while asking.
    assert!(press(&mut s, &[KeyCode::Char('q'), KeyCode::Char('j')]).is_empty());
    assert!(!s.quit);
    let cmds = press(&mut s, &[KeyCode::Char('y')]);
    assert_eq!(cmds, [Command::Revoke(target.clone())]);
    assert_eq!(s.mode, Mode::Normal);
    // The answer is reported as it was.
    update(
        &mut s,
        Action::Net(NetEvent::Revoked {
            target,
            outcome: RevokeOutcome {
                ended: 1,
                sids: vec!["sid-bob-1".into()],
                refresh_tokens_revoked: 0,
                refresh_tokens_failed: 1,
                tokens_refused_until: common::NOW + 3600,
            },
        }),
    );
    let flash = s.flash.clone().expect("a message");
    assert_eq!(
        flash.text,
        "revoked session sid-bob-1 of bob@example.com: 1 session ended, 0 refresh tokens revoked upstream, \
         1 NOT revoked upstream (still refused by tokend); tokens refused until 2026-12-02 01:20:00 UTC"
    );
}

#[test]
fn issue_11_revoke_cancelled_by_n_or_esc_sends_nothing() {
    let mut s = common::seeded(true);
    press(&mut s, &[KeyCode::Char('2')]);
    for cancel in [KeyCode::Char('n'), KeyCode::Esc] {
        assert!(press(&mut s, &[KeyCode::Char('R'), cancel]).is_empty());
        assert_eq!(s.mode, Mode::Normal);
        assert_eq!(
            s.flash.as_ref().map(|f| f.text.as_str()),
            Some("revoke cancelled")
        );
    }
    // R asks about every session of the user; from the details popup too.
    press(&mut s, &[KeyCode::Enter]);
    assert!(matches!(s.mode, Mode::Details(_)));
    press(&mut s, &[KeyCode::Char('R')]);
    let first = s.visible_sessions()[0].sub.clone();
    assert_eq!(
        s.mode,
        Mode::Confirm(RevokeTarget::User {
            sub: first,
            who: "alice@example.com".into()
        })
    );
    // r means nothing outside Sessions.
    press(
        &mut s,
        &[KeyCode::Esc, KeyCode::Char('3'), KeyCode::Char('r')],
    );
    assert_eq!(s.mode, Mode::Normal);
}

#[test]
fn help_opens_and_closes_and_enter_opens_details() {
    let mut s = common::seeded(true);
    press(&mut s, &[KeyCode::Char('?')]);
    assert_eq!(s.mode, Mode::Help);
    press(&mut s, &[KeyCode::Char('q')]);
    assert_eq!(
        (s.mode.clone(), s.quit),
        (Mode::Normal, false),
        "q closes help"
    );
    press(
        &mut s,
        &[KeyCode::Char('4'), KeyCode::Char('e'), KeyCode::Enter],
    );
    let Mode::Details(d) = &s.mode else {
        panic!("no details: {:?}", s.mode)
    };
    assert!(d.body.contains("\"stage\": \"password\""), "{}", d.body);
    // j/k scroll the popup (not the list underneath), within its lines.
    let selected = s.events_view.selected;
    press(&mut s, &[KeyCode::Char('j'), KeyCode::Char('j')]);
    assert!(matches!(&s.mode, Mode::Details(d) if d.scroll == 2));
    press(&mut s, &[KeyCode::PageDown]);
    assert!(
        matches!(&s.mode, Mode::Details(d) if d.scroll == 3),
        "clamped to the last line"
    );
    press(&mut s, &[KeyCode::PageUp]);
    assert!(matches!(&s.mode, Mode::Details(d) if d.scroll == 0));
    assert_eq!(s.events_view.selected, selected);
    let first = s.visible_sessions()[0];
    assert_eq!(user_of(first), "alice@example.com");
}

#[test]
fn ctrl_c_quits_even_while_typing() {
    let mut s = common::seeded(true);
    press(&mut s, &[KeyCode::Char('2'), KeyCode::Char('/')]);
    let a = map(&s, KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL));
    assert_eq!(a, Some(Action::Quit));
}
