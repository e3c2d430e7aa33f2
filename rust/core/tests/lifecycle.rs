//! The lease and attempt lifecycle: tokens, ack/fail, backoff and the dead-letter set,
//! retry, timeouts, stalls, owners, cancel and ttl.

mod common;
use common::H;
use hopper_core::{backoff_delay, MAX_BACKOFF_DELAY_MS};
use hopper_core::{EngineConfig, ErrorKind, FailOutcome, JobState};
use hopper_core::{EventExtra, EventKind};

#[test]
fn pull_returns_a_token_and_ack_checks_it() {
    let mut h = H::new();
    let id = h.add("q", r#"{"data":{"x":1}}"#);
    let (got, token) = h.pull("q").unwrap();
    assert_eq!(got, id);
    assert_eq!(token.len(), 36);
    assert_eq!(h.state(&id), Some(JobState::Active));
    assert!(h.job(&id).started_at == h.now());

    let wrong = "00000000-0000-7000-8000-000000000000";
    let err = h.op(|e| e.ack(&id, Some(wrong), None)).unwrap_err();
    assert_eq!(err.kind, ErrorKind::LockMismatch);
    let err = h
        .op(|e| e.fail(&id, Some("not-a-token"), None))
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::LockMismatch);
    let err = h
        .op(|e| e.extend_lease(&id, Some(wrong), None))
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::LockMismatch);
    assert_eq!(
        h.state(&id),
        Some(JobState::Active),
        "refused calls change nothing"
    );

    h.op(|e| e.ack(&id, Some(&token), Some(r#"{"ok":true}"#.into())))
        .unwrap();
    assert_eq!(h.state(&id), Some(JobState::Completed));
    assert_eq!(
        h.job(&id).ext().unwrap().result.as_deref(),
        Some(r#"{"ok":true}"#)
    );
    assert_eq!(h.job(&id).finished_at, h.now());
    assert!(h.pull("q").is_none(), "an acked job is never pulled again");
    h.advance(3_600_000);
    assert!(h.pull("q").is_none());

    // A second ack (same token) or an ack of an unknown job: not active.
    let err = h.op(|e| e.ack(&id, Some(&token), None)).unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidState);
    let err = h.op(|e| e.ack("no-such-job", None, None)).unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidState);
    let waiting = h.add("q", r#"{"data":2}"#);
    let err = h.op(|e| e.fail(&waiting, None, None)).unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidState);
}

#[test]
fn token_none_skips_the_check() {
    let mut h = H::new();
    let id = h.add("q", r#"{"data":1}"#);
    h.pull("q").unwrap();
    h.op(|e| e.progress(&id, None, 40)).unwrap();
    assert_eq!(h.job(&id).progress, 40);
    h.op(|e| e.ack(&id, None, None)).unwrap();
    assert_eq!(h.state(&id), Some(JobState::Completed));
}

#[test]
fn a_new_lease_gets_a_new_token() {
    let mut h = H::new();
    let id = h.add("q", r#"{"data":1,"backoff":0}"#);
    let (_, t1) = h.pull("q").unwrap();
    h.fail(&id, &t1, "boom");
    let (_, t2) = h.pull("q").unwrap();
    assert_ne!(t1, t2);
    let err = h.op(|e| e.ack(&id, Some(&t1), None)).unwrap_err();
    assert_eq!(
        err.kind,
        ErrorKind::LockMismatch,
        "the old lease's token is dead"
    );
    h.ack(&id, &t2);
}

#[test]
fn backoff_formula() {
    assert_eq!(backoff_delay(1000, 1), 1000);
    assert_eq!(backoff_delay(1000, 2), 2000);
    assert_eq!(backoff_delay(1000, 3), 4000);
    assert_eq!(backoff_delay(1000, 12), 2_048_000);
    assert_eq!(backoff_delay(1000, 13), MAX_BACKOFF_DELAY_MS);
    assert_eq!(backoff_delay(7 * 86_400_000, 1), 3_600_000);
    assert_eq!(backoff_delay(1000, u16::MAX), 3_600_000);
    assert_eq!(backoff_delay(0, 5), 0);
}

#[test]
fn failed_attempts_back_off_then_dead_letter_then_retry() {
    let mut h = H::new();
    h.e.set_events_enabled(true);
    let id = h.add("q", r#"{"data":1,"maxAttempts":3,"backoff":1000}"#);

    // Attempt 1 fails: delayed by 1000.
    let (_, t) = h.pull("q").unwrap();
    assert_eq!(h.fail(&id, &t, "e1"), FailOutcome::Retrying { delay: 1000 });
    assert_eq!(h.state(&id), Some(JobState::Delayed));
    assert_eq!(h.job(&id).attempts, 1);
    assert_eq!(h.job(&id).run_at, h.now() + 1000);
    assert!(h.job(&id).lease.is_none());
    h.advance(999);
    assert!(h.pull("q").is_none());
    h.advance(1);
    assert_eq!(h.state(&id), Some(JobState::Waiting));

    // Attempt 2 fails: delayed by 2000.
    let (_, t) = h.pull("q").unwrap();
    assert_eq!(h.fail(&id, &t, "e2"), FailOutcome::Retrying { delay: 2000 });
    h.advance(1999);
    assert_eq!(h.state(&id), Some(JobState::Delayed));
    h.advance(1);

    // Attempt 3 fails: no attempts left.
    let (_, t) = h.pull("q").unwrap();
    assert_eq!(h.fail(&id, &t, "e3"), FailOutcome::Dead);
    assert_eq!(h.state(&id), Some(JobState::Failed));
    assert_eq!(h.error_of(&id).as_deref(), Some("e3"));
    assert_eq!(h.job(&id).attempts, 3);
    assert_eq!(h.ids("q", JobState::Failed), vec![id.clone()]);
    assert_eq!(h.e.totals().failed, 1);
    assert_eq!(h.e.totals().retried, 2);
    let kinds: Vec<EventKind> = h.events().into_iter().map(|e| e.0).collect();
    assert_eq!(kinds.iter().filter(|&&k| k == EventKind::Failed).count(), 3);
    assert_eq!(
        kinds.iter().filter(|&&k| k == EventKind::Delayed).count(),
        2
    );

    // retry(): back to waiting from attempt 0.
    let err = h.op(|e| e.retry("nope")).unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound);
    h.op(|e| e.retry(&id)).unwrap();
    assert_eq!(h.state(&id), Some(JobState::Waiting));
    assert_eq!(h.job(&id).attempts, 0);
    assert!(h.error_of(&id).is_none());
    assert!(matches!(
        h.events().last(),
        Some((EventKind::Retried, _, EventExtra::Prev(JobState::Failed)))
    ));
    let err = h.op(|e| e.retry(&id)).unwrap_err();
    assert_eq!(
        err.kind,
        ErrorKind::InvalidState,
        "only finished jobs can be retried"
    );
    let (_, t) = h.pull("q").unwrap();
    assert_eq!(
        h.fail(&id, &t, "again"),
        FailOutcome::Retrying { delay: 1000 },
        "attempts restarted"
    );
}

#[test]
fn backoff_is_capped_at_one_hour() {
    let mut h = H::new();
    let id = h.add("q", r#"{"data":1,"maxAttempts":10,"backoff":1000000}"#);
    let mut delays = Vec::new();
    for _ in 0..4 {
        let (_, t) = h.pull("q").unwrap();
        match h.fail(&id, &t, "x") {
            FailOutcome::Retrying { delay } => delays.push(delay),
            FailOutcome::Dead => panic!("attempts left"),
        }
        h.op(|e| e.promote(&id)).unwrap();
    }
    assert_eq!(delays, vec![1_000_000, 2_000_000, 3_600_000, 3_600_000]);
}

#[test]
fn max_attempts_one_fails_at_once() {
    let mut h = H::new();
    let id = h.add("q", r#"{"data":1,"maxAttempts":1}"#);
    let (_, t) = h.pull("q").unwrap();
    assert_eq!(h.fail(&id, &t, "only"), FailOutcome::Dead);
    assert_eq!(h.state(&id), Some(JobState::Failed));
}

#[test]
fn timeout_fails_the_attempt() {
    let mut h = H::new();
    let id = h.add(
        "q",
        r#"{"data":1,"timeout":500,"maxAttempts":2,"backoff":100}"#,
    );
    h.pull("q").unwrap();
    h.advance(499);
    assert_eq!(h.state(&id), Some(JobState::Active));
    h.advance(1);
    assert_eq!(
        h.state(&id),
        Some(JobState::Delayed),
        "timed out, retry scheduled"
    );
    assert_eq!(h.job(&id).attempts, 1);
    assert_eq!(
        h.error_of(&id).as_deref(),
        Some("Job timed out after 500 ms")
    );
    h.advance(100);
    // Second attempt: the timeout counts from this pull, and extending the lease does
    // not postpone it.
    let (_, t) = h.pull("q").unwrap();
    h.advance(300);
    h.op(|e| e.extend_lease(&id, Some(&t), Some(60_000)))
        .unwrap();
    h.advance(200);
    assert_eq!(h.state(&id), Some(JobState::Failed));
    assert_eq!(h.job(&id).attempts, 2);
}

#[test]
fn stale_timeout_of_an_earlier_attempt_is_ignored() {
    let mut h = H::new();
    let id = h.add("q", r#"{"data":1,"timeout":1000,"backoff":0}"#);
    let (_, t) = h.pull("q").unwrap();
    h.advance(100);
    h.fail(&id, &t, "quick"); // back to waiting at once (backoff 0)
    assert_eq!(h.state(&id), Some(JobState::Waiting));
    h.advance(400);
    h.pull("q").unwrap(); // new deadline: now + 1000
    h.advance(500); // first attempt's deadline passes
    assert_eq!(h.state(&id), Some(JobState::Active));
    h.advance(499);
    assert_eq!(h.state(&id), Some(JobState::Active));
    h.advance(1);
    assert_eq!(h.state(&id), Some(JobState::Waiting));
}

fn stall_config(max_stalls: u16) -> EngineConfig {
    EngineConfig {
        stall_interval_ms: 1000,
        max_stalls,
        ..Default::default()
    }
}

#[test]
fn default_stall_settings() {
    let c = EngineConfig::default();
    assert_eq!((c.stall_interval_ms, c.max_stalls), (30_000, 3));
}

#[test]
fn unrenewed_lease_stalls_back_to_waiting() {
    let mut h = H::with(stall_config(3));
    h.e.set_events_enabled(true);
    let id = h.add("q", r#"{"data":1}"#);
    let (_, t) = h.pull("q").unwrap();
    h.events();
    h.advance(999);
    assert_eq!(h.state(&id), Some(JobState::Active));
    h.advance(1);
    assert_eq!(h.state(&id), Some(JobState::Waiting));
    assert_eq!(h.job(&id).stalls, 1);
    assert_eq!(h.job(&id).attempts, 0, "a stall is not a failed attempt");
    assert!(h.job(&id).lease.is_none());
    assert_eq!(h.e.totals().stalled, 1);
    let evs = h.events();
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0].0, EventKind::Stalled);
    assert_eq!(evs[0].1.as_deref(), Some(id.as_str()));
    // The stalled lease's token no longer works.
    let err = h.op(|e| e.ack(&id, Some(&t), None)).unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidState);
}

#[test]
fn extend_lease_postpones_the_stall() {
    let mut h = H::with(stall_config(3));
    let id = h.add("q", r#"{"data":1}"#);
    let (_, t) = h.pull("q").unwrap();
    h.advance(800);
    let deadline = h.op(|e| e.extend_lease(&id, Some(&t), None)).unwrap();
    assert_eq!(deadline, h.now() + 1000);
    h.advance(900); // past the original deadline
    assert_eq!(h.state(&id), Some(JobState::Active));
    let deadline = h.op(|e| e.extend_lease(&id, Some(&t), Some(5000))).unwrap();
    assert_eq!(deadline, h.now() + 5000);
    h.advance(4999);
    assert_eq!(h.state(&id), Some(JobState::Active));
    h.advance(1);
    assert_eq!(h.state(&id), Some(JobState::Waiting));
}

#[test]
fn max_stalls_fails_the_job() {
    let mut h = H::with(stall_config(3));
    let id = h.add("q", r#"{"data":1,"maxAttempts":10}"#);
    for n in 1..=2 {
        h.pull("q").unwrap();
        h.advance(1000);
        assert_eq!(h.state(&id), Some(JobState::Waiting));
        assert_eq!(h.job(&id).stalls, n);
    }
    h.pull("q").unwrap();
    h.advance(1000);
    assert_eq!(h.state(&id), Some(JobState::Failed));
    assert_eq!(h.job(&id).stalls, 3);
    assert!(h.error_of(&id).unwrap().contains("stalled"));
}

#[test]
fn release_owner_returns_only_that_owners_jobs() {
    let mut h = H::new();
    h.e.set_events_enabled(true);
    for i in 0..5 {
        h.add("q", &format!(r#"{{"data":{i}}}"#));
    }
    h.add("other", r#"{"data":9}"#);
    let (a1, _) = h.pull_as("q", 7).unwrap();
    let (b1, tb) = h.pull_as("q", 8).unwrap();
    let (a2, _) = h.pull_as("other", 7).unwrap();
    let (n1, _) = h.pull_as("q", 0).unwrap();
    let (a3, ta3) = h.pull_as("q", 7).unwrap();
    h.ack(&a3, &ta3); // finished before the connection closed
    h.events();
    assert_eq!(h.op(|e| e.release_owner(7)), 2);
    assert_eq!(h.state(&a1), Some(JobState::Waiting));
    assert_eq!(h.state(&a2), Some(JobState::Waiting));
    assert_eq!(h.state(&b1), Some(JobState::Active));
    assert_eq!(h.state(&n1), Some(JobState::Active));
    assert_eq!(h.state(&a3), Some(JobState::Completed));
    let retried = h
        .events()
        .iter()
        .filter(|e| e.0 == EventKind::Retried)
        .count();
    assert_eq!(retried, 2);
    assert_eq!(
        h.op(|e| e.release_owner(7)),
        0,
        "nothing left for that owner"
    );
    assert_eq!(
        h.op(|e| e.release_owner(0)),
        0,
        "owner 0 means no connection"
    );
    h.ack(&b1, &tb);
}

#[test]
fn cancel_and_remove() {
    let mut h = H::new();
    let active = h.add("q", r#"{"data":1}"#);
    let waiting = h.add("q", r#"{"data":2}"#);
    h.pull("q").unwrap();
    let err = h.op(|e| e.remove(&active)).unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidState);
    h.op(|e| e.cancel(&active)).unwrap();
    assert_eq!(h.state(&active), Some(JobState::Failed));
    assert_eq!(h.error_of(&active).as_deref(), Some("Job cancelled"));
    h.op(|e| e.cancel(&waiting)).unwrap();
    assert!(
        h.get(&waiting).is_none(),
        "cancel of a non-active job removes it"
    );
    assert_eq!(
        h.op(|e| e.cancel(&waiting)).unwrap_err().kind,
        ErrorKind::NotFound
    );
}

#[test]
fn cancel_pending_only_touches_jobs_that_have_not_started() {
    let mut h = H::new();
    let active = h.add("q", r#"{"data":1}"#);
    let delayed = h.add("q", r#"{"data":2,"delay":1000}"#);
    let waiting = h.add("q", r#"{"data":3}"#);
    let (id, token) = h.pull("q").unwrap();
    assert_eq!(id, active);
    let err = h.op(|e| e.cancel_pending(&active)).unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidState);
    assert!(err.message.contains("active"), "{}", err.message);
    h.ack(&active, &token);
    let err = h.op(|e| e.cancel_pending(&active)).unwrap_err();
    assert!(err.message.contains("completed"), "{}", err.message);
    h.op(|e| e.cancel_pending(&delayed)).unwrap();
    h.op(|e| e.cancel_pending(&waiting)).unwrap();
    assert!(h.get(&delayed).is_none() && h.get(&waiting).is_none());
    assert_eq!(h.state(&active), Some(JobState::Completed));
    assert_eq!(
        h.op(|e| e.cancel_pending(&waiting)).unwrap_err().kind,
        ErrorKind::NotFound
    );
}

#[test]
fn ttl_removes_a_job_not_started_in_time() {
    let mut h = H::new();
    h.e.set_events_enabled(true);
    let stale = h.add("q", r#"{"data":1,"ttl":1000,"priority":-1}"#);
    let started = h.add("q", r#"{"data":2,"ttl":1000}"#);
    let delayed = h.add("q", r#"{"data":3,"ttl":1000,"delay":5000}"#);
    assert_eq!(h.pull_id("q"), Some(started.clone()));
    h.events();
    h.advance(999);
    assert!(h.get(&stale).is_some());
    h.advance(1);
    assert!(h.get(&stale).is_none(), "expired before anyone pulled it");
    assert!(h.e.render_by_id(&stale).is_none());
    assert!(h.get(&delayed).is_none(), "expired while delayed");
    assert_eq!(
        h.state(&started),
        Some(JobState::Active),
        "an active job is not expired"
    );
    assert_eq!(h.e.totals().expired, 2);
    let removed: Vec<String> = h
        .events()
        .into_iter()
        .filter(|e| e.0 == EventKind::Removed)
        .filter_map(|e| e.1)
        .collect();
    assert_eq!(removed.len(), 2);
    assert!(removed.contains(&stale) && removed.contains(&delayed));
}

#[test]
fn pulls_and_wake_requests_on_an_unknown_queue_do_not_create_it() {
    let mut h = H::new();
    assert!(h.op(|e| e.pull("ghost", 0)).unwrap().is_none());
    assert!(h.op(|e| e.pull_rendered("ghost", 0)).unwrap().is_none());
    assert!(!h.op(|e| e.request_wake("ghost")).unwrap());
    assert!(!h.e.has_queue("ghost"));
    assert!(h.e.queue_names().is_empty(), "{:?}", h.e.queue_names());
    // A bad name is still refused, as by a push.
    assert_eq!(
        h.op(|e| e.request_wake("a b")).unwrap_err().kind,
        ErrorKind::InvalidInput
    );
    // The waiter still hears of the queue's first job.
    h.add("ghost", r#"{"data":1}"#);
    let woken: Vec<String> = h.e.take_woken().iter().map(|q| q.to_string()).collect();
    assert_eq!(woken, ["ghost"]);
    assert!(
        h.op(|e| e.request_wake("ghost")).unwrap(),
        "a ready job now"
    );
}

#[test]
fn a_queue_created_by_its_settings_wakes_a_waiter_on_its_first_job() {
    let mut h = H::new();
    assert!(!h.op(|e| e.request_wake("q")).unwrap());
    h.op(|e| e.pause("q", None)).unwrap();
    h.add("q", r#"{"data":1}"#);
    assert!(h.e.take_woken().is_empty(), "paused");
    h.op(|e| e.resume("q", None)).unwrap();
    let woken: Vec<String> = h.e.take_woken().iter().map(|q| q.to_string()).collect();
    assert_eq!(woken, ["q"]);
}
