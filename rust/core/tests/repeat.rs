//! Repeating jobs: every + limit, cron patterns, and failures.

mod common;
use common::{H, T0};
use hopper_core::{FailOutcome, JobState};

/// The one job of `q` in `state`.
fn only(h: &H, state: JobState) -> String {
    let ids = h.ids("q", state);
    assert_eq!(ids.len(), 1, "{}: {ids:?}", state.as_str());
    ids[0].clone()
}

#[test]
fn every_with_limit_runs_limit_times_on_the_cadence() {
    let mut h = H::new();
    let first = h.add("q", r#"{"data":"tick","repeat":{"every":1000,"limit":3}}"#);
    assert_eq!(h.job(&first).run_at, T0);
    h.advance(100);
    h.run("q", &first);
    // The next occurrence is a new job, delayed to previous runAt + every.
    let second = only(&h, JobState::Delayed);
    assert_ne!(second, first);
    assert_eq!(h.job(&second).run_at, T0 + 1000);
    assert_eq!(&*h.job(&second).data, r#""tick""#);
    assert_eq!(
        h.job(&second).ext().unwrap().repeat.as_ref().unwrap().count,
        2
    );
    h.advance(899);
    assert!(h.pull("q").is_none());
    h.advance(1);
    // Slow run: completes 700 ms after its slot; the cadence is kept.
    let (id, t) = h.pull("q").unwrap();
    assert_eq!(id, second);
    h.advance(700);
    h.ack(&id, &t);
    let third = only(&h, JobState::Delayed);
    assert_eq!(h.job(&third).run_at, T0 + 2000);
    h.advance(300);
    h.run("q", &third);
    // limit 3 reached: nothing more.
    assert_eq!(
        h.count("q", JobState::Delayed) + h.count("q", JobState::Waiting),
        0
    );
    assert_eq!(h.count("q", JobState::Completed), 3);
    h.advance(10_000);
    assert!(h.pull("q").is_none());
}

#[test]
fn missed_slots_are_skipped() {
    let mut h = H::new();
    let first = h.add("q", r#"{"data":1,"repeat":{"every":1000}}"#);
    let (_, t) = h.pull("q").unwrap();
    h.advance(2500);
    h.ack(&first, &t);
    let next = only(&h, JobState::Delayed);
    assert_eq!(h.job(&next).run_at, T0 + 3000);
}

#[test]
fn completing_exactly_on_the_next_slot_runs_it_at_once() {
    let mut h = H::new();
    let first = h.add("q", r#"{"data":1,"repeat":{"every":1000}}"#);
    let (_, t) = h.pull("q").unwrap();
    h.advance(1000);
    h.ack(&first, &t);
    // previous runAt + every == now: that slot is due, not missed.
    let next = only(&h, JobState::Waiting);
    assert_eq!(h.job(&next).run_at, T0 + 1000);
}

#[test]
fn a_failed_occurrence_still_schedules_the_next() {
    let mut h = H::new();
    let first = h.add(
        "q",
        r#"{"data":1,"maxAttempts":1,"repeat":{"every":500,"limit":2}}"#,
    );
    let (_, t) = h.pull("q").unwrap();
    assert_eq!(h.fail(&first, &t, "x"), FailOutcome::Dead);
    let next = only(&h, JobState::Delayed);
    assert_eq!(h.job(&next).run_at, T0 + 500);
    h.advance(500);
    let (_, t) = h.pull("q").unwrap();
    h.fail(&next, &t, "y");
    assert_eq!(h.count("q", JobState::Failed), 2);
    assert_eq!(h.count("q", JobState::Delayed), 0, "limit reached");
}

#[test]
fn cron_pattern_schedules_the_next_matching_time() {
    let mut h = H::new();
    // T0 is 00:00 UTC; every 5 minutes.
    let first = h.add(
        "q",
        r#"{"data":1,"repeat":{"pattern":"*/5 * * * *","limit":3}}"#,
    );
    h.advance(61_000);
    h.run("q", &first);
    let next = only(&h, JobState::Delayed);
    assert_eq!(h.job(&next).run_at, T0 + 5 * 60_000);
    h.advance(5 * 60_000 - 61_000);
    let (_, t) = h.pull("q").unwrap();
    // Completes exactly at 00:05: the next match is strictly after now, 00:10.
    h.ack(&next, &t);
    let third = only(&h, JobState::Delayed);
    assert_eq!(h.job(&third).run_at, T0 + 10 * 60_000);
}

#[test]
fn repeat_keeps_options_and_unique_key() {
    let mut h = H::new();
    let first = h.add(
        "q",
        r#"{"name":"report","data":{"a":1},"priority":4,"uniqueKey":"rep","repeat":{"every":1000}}"#,
    );
    h.run("q", &first);
    let next = only(&h, JobState::Delayed);
    assert_eq!(h.e.job_name_of(h.e.slot_of(&next).unwrap()), "report");
    assert_eq!(h.job(&next).priority, 4);
    assert_eq!(
        h.push("q", r#"{"data":2,"uniqueKey":"rep"}"#).id,
        next,
        "the key moved to the next occurrence"
    );
}

#[test]
fn a_job_id_names_the_first_occurrence_only() {
    let mut h = H::new();
    let first = h.add("q", r#"{"data":1,"jobId":"daily","repeat":{"every":1000}}"#);
    assert_eq!(first, "daily");
    // The id is idempotent like any jobId: the same push gives the same job.
    assert_eq!(
        h.push("q", r#"{"data":1,"jobId":"daily","repeat":{"every":1000}}"#)
            .id,
        "daily"
    );
    h.run("q", &first);
    let next = only(&h, JobState::Delayed);
    assert_ne!(next, "daily", "later occurrences get generated ids");
    assert_eq!(h.job(&next).run_at, T0 + 1000);
}

#[test]
fn dependencies_hold_the_first_occurrence_only() {
    let mut h = H::new();
    let a = h.add("q", r#"{"data":"a","jobId":"job-id-1"}"#);
    let b = h.add("q", r#"{"data":"b","jobId":"job-id-2"}"#);
    let first = h.add(
        "q",
        r#"{"data":1,"dependsOn":["job-id-1","job-id-2"],"repeat":{"every":1000,"limit":3}}"#,
    );
    assert_eq!(h.state(&first), Some(JobState::WaitingChildren));
    h.run("q", &a);
    assert_eq!(h.state(&first), Some(JobState::WaitingChildren));
    h.run("q", &b);
    assert_eq!(h.state(&first), Some(JobState::Waiting));
    h.run("q", &first);
    // The next occurrence is a scheduled run: no dependencies to wait for.
    let next = only(&h, JobState::Delayed);
    assert!(h.job(&next).ext().is_none_or(|e| e.depends_on.is_empty()));
    h.advance(1000);
    let (id, _) = h.pull("q").unwrap();
    assert_eq!(id, next);
}

#[test]
fn a_failed_dependency_ends_the_series() {
    // The first occurrence fails without having run (it was never active), so no
    // later occurrence is scheduled: a series that never ran has no cadence to keep.
    let mut h = H::new();
    let dep = h.add("q", r#"{"data":"a","jobId":"dep","maxAttempts":1}"#);
    let first = h.add(
        "q",
        r#"{"data":1,"dependsOn":["dep"],"repeat":{"every":1000}}"#,
    );
    let (got, token) = h.pull("q").unwrap();
    assert_eq!(got, dep);
    h.fail(&dep, &token, "boom");
    assert_eq!(h.state(&first), Some(JobState::Failed));
    for state in [
        JobState::Waiting,
        JobState::Delayed,
        JobState::WaitingChildren,
    ] {
        assert_eq!(h.count("q", state), 0, "{}", state.as_str());
    }
    h.advance(10_000);
    assert!(h.pull("q").is_none());
}
