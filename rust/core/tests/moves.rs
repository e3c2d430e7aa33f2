//! Moves asked for by name (bunqueue's job control): an active job put off without
//! spending an attempt, a pending job's delay changed, a job discarded to failed, some
//! delayed jobs promoted, an active job's data edited, and a lock renewed without its
//! token.

mod common;
use common::H;
use hopper_core::{ErrorKind, JobState};

#[test]
fn move_to_delayed_puts_an_active_job_off_without_an_attempt() {
    let mut h = H::new();
    let id = h.add("q", r#"{"data":1,"maxAttempts":1}"#);
    let (_, token) = h.pull("q").unwrap();
    h.op(|e| e.move_to_delayed(&id, Some(&token), 5_000))
        .unwrap();
    assert_eq!(h.state(&id), Some(JobState::Delayed));
    assert_eq!(h.job(&id).attempts, 0);
    assert!(h.job(&id).lease.is_none());
    assert_eq!(h.job(&id).run_at, h.now() + 5_000);
    // Its old token no longer settles it, and it is due again after the delay.
    assert!(h.op(|e| e.ack(&id, Some(&token), None)).is_err());
    h.advance(4_999);
    assert_eq!(h.pull_id("q"), None);
    h.advance(1);
    assert_eq!(h.pull_id("q"), Some(id.clone()));
}

#[test]
fn move_to_delayed_needs_an_active_job_and_its_token() {
    let mut h = H::new();
    let id = h.add("q", r#"{"data":1}"#);
    let err = h.op(|e| e.move_to_delayed(&id, None, 10)).unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidState);
    h.pull("q").unwrap();
    let wrong = "00000000-0000-7000-8000-000000000000";
    let err = h
        .op(|e| e.move_to_delayed(&id, Some(wrong), 10))
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::LockMismatch);
    assert_eq!(h.state(&id), Some(JobState::Active));
}

#[test]
fn a_job_re_timed_later_is_not_promoted_by_its_earlier_timer() {
    // One tick covering both deadlines must make them ready in due order: `a`'s first
    // timer (30 ms) is stale once `a` is due at 100 ms, and must not put it ahead of `b`.
    let mut h = H::new();
    let a = h.add("q", r#"{"data":1}"#);
    h.op(|e| e.change_delay(&a, None, 30)).unwrap();
    let b = h.add("q", r#"{"data":2}"#);
    h.op(|e| e.promote(&a)).unwrap();
    h.op(|e| e.change_delay(&a, None, 100)).unwrap();
    h.op(|e| e.change_delay(&b, None, 30)).unwrap();
    h.advance(200);
    assert_eq!(h.pull_id("q"), Some(b));
    assert_eq!(h.pull_id("q"), Some(a));
}

#[test]
fn change_delay_moves_waiting_and_delayed_jobs() {
    let mut h = H::new();
    let id = h.add("q", r#"{"data":1}"#);
    h.op(|e| e.change_delay(&id, None, 0)).unwrap();
    assert_eq!(h.state(&id), Some(JobState::Waiting), "0 keeps it ready");
    h.op(|e| e.change_delay(&id, None, 10_000)).unwrap();
    assert_eq!(h.state(&id), Some(JobState::Delayed));
    h.op(|e| e.change_delay(&id, None, 2_000)).unwrap();
    assert_eq!(
        h.job(&id).run_at,
        h.now() + 2_000,
        "a delayed job gets the new time"
    );
    h.advance(2_000);
    assert_eq!(h.state(&id), Some(JobState::Waiting));
    h.op(|e| e.change_delay(&id, None, 3_000)).unwrap();
    h.op(|e| e.change_delay(&id, None, 0)).unwrap();
    assert_eq!(
        h.state(&id),
        Some(JobState::Waiting),
        "0 makes a delayed job ready"
    );
    h.run("q", &id);
    let err = h.op(|e| e.change_delay(&id, None, 10)).unwrap_err();
    assert_eq!(
        err.kind,
        ErrorKind::InvalidState,
        "a completed job has no delay"
    );
}

#[test]
fn discard_fails_jobs_for_good_whatever_their_attempts() {
    let mut h = H::new();
    let active = h.add("q", r#"{"data":1,"maxAttempts":5}"#);
    let waiting = h.add("q", r#"{"data":2,"maxAttempts":5}"#);
    let delayed = h.add("q", r#"{"data":3,"delay":60000}"#);
    let (_, token) = h.pull("q").unwrap();
    h.op(|e| e.discard_job(&active, Some(&token))).unwrap();
    h.op(|e| e.discard_job(&waiting, None)).unwrap();
    h.op(|e| e.discard_job(&delayed, None)).unwrap();
    for id in [&active, &waiting, &delayed] {
        assert_eq!(h.state(id), Some(JobState::Failed));
        assert_eq!(h.error_of(id).as_deref(), Some("Job discarded"));
    }
    let err = h.op(|e| e.discard_job(&active, None)).unwrap_err();
    assert_eq!(
        err.kind,
        ErrorKind::InvalidState,
        "a failed job is not discarded again"
    );
    let err = h.op(|e| e.discard_job("nope", None)).unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound);
}

#[test]
fn promote_first_promotes_the_soonest_due() {
    let mut h = H::new();
    let late = h.add("q", r#"{"data":1,"delay":30000}"#);
    let soon = h.add("q", r#"{"data":2,"delay":10000}"#);
    let mid = h.add("q", r#"{"data":3,"delay":20000}"#);
    assert_eq!(h.op(|e| e.promote_first("q", 2)).unwrap(), 2);
    assert_eq!(h.state(&soon), Some(JobState::Waiting));
    assert_eq!(h.state(&mid), Some(JobState::Waiting));
    assert_eq!(h.state(&late), Some(JobState::Delayed));
    assert_eq!(h.op(|e| e.promote_first("q", 0)).unwrap(), 0);
}

#[test]
fn update_data_edits_an_active_job_and_update_does_not() {
    let mut h = H::new();
    let id = h.add("q", r#"{"data":1}"#);
    let (_, token) = h.pull("q").unwrap();
    let err = h.op(|e| e.update(&id, Some("2".into()), None)).unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidState);
    h.op(|e| e.update_data(&id, "3".into())).unwrap();
    assert_eq!(&*h.job(&id).data, "3");
    assert_eq!(h.state(&id), Some(JobState::Active), "the lease is kept");
    h.ack(&id, &token);
}

#[test]
fn extend_lock_renews_without_the_token_a_lease_that_requires_it() {
    let mut h = H::new();
    let id = h.add("q", r#"{"data":1}"#);
    let (_, token) = h
        .op(|e| e.pull_locked("q", 7, Some(1_000), true))
        .unwrap()
        .unwrap();
    let err = h
        .op(|e| e.extend_lease(&id, None, Some(5_000)))
        .unwrap_err();
    assert_eq!(
        err.kind,
        ErrorKind::LockMismatch,
        "extend_lease needs the token"
    );
    let deadline = h.op(|e| e.extend_lock(&id, None, Some(5_000))).unwrap();
    assert_eq!(deadline, h.now() + 5_000);
    let wrong = "00000000-0000-7000-8000-000000000000";
    let err = h.op(|e| e.extend_lock(&id, Some(wrong), None)).unwrap_err();
    assert_eq!(
        err.kind,
        ErrorKind::LockMismatch,
        "a given token must match"
    );
    h.ack(&id, &token);
}
