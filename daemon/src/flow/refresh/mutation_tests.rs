//! Issue #8: tests that kill cargo-mutants' mutants of the local single-flight's slot
//! (`RefreshSlot`): when a finished or abandoned refresh stops being shared, and what a caller
//! gets when the upstream task ends without an answer.

use super::*;

/// A slot created `age` ago with `grace`; `outcome` already sent if `Some`. The sender is
/// returned so an unfinished slot's channel stays open.
fn slot(age: Duration, grace: Duration, outcome: Outcome) -> (RefreshSlot, watch::Sender<Outcome>) {
    let (tx, rx) = watch::channel(outcome);
    let created = Instant::now()
        .checked_sub(age)
        .expect("the monotonic clock is past the test's age");
    (
        RefreshSlot {
            created,
            grace,
            done: rx,
        },
        tx,
    )
}

fn refused() -> Outcome {
    Some(Err(FlowError::Refused("invalid_grant".into())))
}

const GRACE: Duration = Duration::from_secs(10);

/// A finished refresh is shared for the grace window, then dropped; an unfinished one is
/// waited for well past the grace window (the upstream request is slow, not done), and only
/// given up as abandoned after `ABANDONED`.
#[test]
fn issue_8_a_slot_expires_after_the_grace_window_once_finished_and_after_abandoned_if_not() {
    let cases = [
        // (age, finished, expired)
        (Duration::ZERO, true, false),
        (GRACE / 2, true, false),
        (GRACE + Duration::from_secs(1), true, true),
        (ABANDONED / 2, true, true),
        (Duration::ZERO, false, false),
        (GRACE + Duration::from_secs(1), false, false),
        (ABANDONED / 2, false, false),
        (ABANDONED + Duration::from_secs(1), false, true),
    ];
    for (age, finished, expired) in cases {
        let outcome = if finished { refused() } else { None };
        let (slot, _tx) = slot(age, GRACE, outcome);
        assert_eq!(slot.finished(), finished, "finished, age {age:?}");
        assert_eq!(
            slot.expired(),
            expired,
            "expired, age {age:?}, finished {finished}"
        );
    }
}

/// The answer the task sends is what every waiting caller gets.
#[tokio::test]
async fn issue_8_waiting_callers_get_the_tasks_answer() {
    let (slot, tx) = slot(Duration::ZERO, GRACE, None);
    assert!(!slot.finished());
    let waiter = async { slot.wait().await };
    let sender = async {
        tokio::task::yield_now().await;
        tx.send(refused()).expect("the slot holds a receiver");
    };
    let (answer, ()) = tokio::join!(waiter, sender);
    match answer {
        Err(FlowError::Refused(reason)) => assert_eq!(reason, "invalid_grant"),
        Err(other) => panic!("wrong error: {other}"),
        Ok(_) => panic!("tokens out of a refused refresh"),
    }
    assert!(slot.finished());
}

/// A task that ends without sending (it panicked) leaves its callers an upstream error, not a
/// hang.
#[tokio::test]
async fn issue_8_a_task_ending_without_an_answer_is_an_upstream_error() {
    let (slot, tx) = slot(Duration::ZERO, GRACE, None);
    drop(tx);
    let answer = tokio::time::timeout(Duration::from_secs(5), slot.wait())
        .await
        .expect("waiting on a dropped sender returns");
    match answer {
        Err(FlowError::Upstream(message)) => {
            assert_eq!(message, "the refresh task ended without an answer")
        }
        Err(other) => panic!("wrong error: {other}"),
        Ok(_) => panic!("tokens out of nothing"),
    }
}

/// The race `start` settles: between a caller's look at the slots and its claim of one,
/// another caller may have started (or finished) a refresh of the same token. A live slot
/// found then is joined — no second upstream refresh; one past its use is replaced by this
/// caller's refresh.
#[tokio::test]
async fn issue_8_start_joins_a_live_slot_and_replaces_an_expired_one() {
    let flow = Arc::new(crate::flow::test_flow::flow(""));
    let rt = Secret::new("a-refresh-token");
    let key = key_of(rt.expose());
    for (what, age, outcome, joined) in [
        ("in flight", Duration::ZERO, None, true),
        ("just done", Duration::ZERO, refused(), true),
        ("done past the grace window", GRACE * 2, refused(), false),
        ("abandoned", ABANDONED * 2, None, false),
    ] {
        let (found, _tx) = slot(age, GRACE, outcome);
        let found = Arc::new(found);
        flow.refreshes.insert(key, found.clone());
        let next = flow
            .start(key, &rt, None, GRACE, 10)
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let held = flow.refreshes.get(&key).map(|s| s.clone()).expect("a slot");
        match next {
            Next::Join(s) => {
                assert!(joined, "{what}: joined");
                assert!(Arc::ptr_eq(&s, &found), "{what}: the slot found");
                assert!(Arc::ptr_eq(&held, &found), "{what}: kept");
            }
            Next::Started(s) => {
                assert!(!joined, "{what}: a second refresh started");
                assert!(
                    Arc::ptr_eq(&held, &s),
                    "{what}: the new slot replaced the old"
                );
                assert!(!Arc::ptr_eq(&s, &found), "{what}: a new slot");
            }
        }
    }
}
