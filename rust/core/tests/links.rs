//! Dependency links and wake-ups after removals, retries and obliteration (regressions
//! found in review: stale links, dependents failed after they had run, lost wake-ups,
//! forked repeat schedules).

mod common;

use common::H;
use hopper_core::JobState;

#[test]
fn a_removed_dependent_leaves_no_link_behind_for_a_reused_id() {
    let mut h = H::new();
    let dep = h.add("q", r#"{"data":1,"maxAttempts":1}"#);
    let first = h.add(
        "p",
        &format!(r#"{{"data":2,"jobId":"p","dependsOn":["{dep}"]}}"#),
    );
    h.op(|e| e.remove(&first)).unwrap();
    assert!(h.e.links(&dep).unwrap().1.is_empty(), "unlinked on removal");
    // A new job reusing the id does not depend on `dep`, and is not failed with it.
    let again = h.add("p", r#"{"data":3,"jobId":"p"}"#);
    let (id, token) = h.pull("q").unwrap();
    assert_eq!(id, dep);
    h.fail(&id, &token, "x");
    assert_eq!(h.state(&dep), Some(JobState::Failed));
    assert_eq!(h.state(&again), Some(JobState::Waiting));
}

#[test]
fn a_dependent_that_already_ran_is_not_failed_by_its_dependency_later() {
    let mut h = H::new();
    let dep = h.add("q", r#"{"data":1,"maxAttempts":1}"#);
    let parent = h.add("p", &format!(r#"{{"data":2,"dependsOn":["{dep}"]}}"#));
    h.run("q", &dep);
    let (got, _token) = h.pull("p").unwrap();
    assert_eq!(got, parent);
    // The completed dependency is retried and then removed, or fails for good:
    // the parent is active and must stay so.
    h.op(|e| e.retry(&dep)).unwrap();
    h.op(|e| e.remove(&dep)).unwrap();
    assert_eq!(h.state(&parent), Some(JobState::Active));
    let dep2 = h.add("q", r#"{"data":3,"maxAttempts":1}"#);
    let parent2 = h.add("p", &format!(r#"{{"data":4,"dependsOn":["{dep2}"]}}"#));
    h.run("q", &dep2);
    h.op(|e| e.retry(&dep2)).unwrap();
    let (id, token) = h.pull("q").unwrap();
    h.fail(&id, &token, "late failure");
    assert_eq!(h.state(&dep2), Some(JobState::Failed));
    assert_eq!(h.state(&parent2), Some(JobState::Waiting));
}

#[test]
fn removing_a_dependency_still_fails_the_jobs_waiting_for_it() {
    let mut h = H::new();
    let dep = h.add("q", r#"{"data":1}"#);
    let parent = h.add("q", &format!(r#"{{"data":2,"dependsOn":["{dep}"]}}"#));
    h.op(|e| e.remove(&dep)).unwrap();
    assert_eq!(h.state(&parent), Some(JobState::Failed));
    assert!(h.error_of(&parent).unwrap().contains("was removed"));
}

#[test]
fn obliterate_wakes_pullers_waiting_on_the_queue() {
    let mut h = H::new();
    h.add("q", r#"{"data":1}"#);
    h.run("q", &h.ids("q", JobState::Waiting)[0].clone());
    assert!(!h.op(|e| e.request_wake("q")).unwrap());
    h.op(|e| e.obliterate("q", false)).unwrap();
    assert_eq!(
        h.e.take_woken().len(),
        1,
        "the waiter hears of the obliteration"
    );
    // Asking again after the queue is gone arms a wake-up for the next incarnation.
    assert!(!h.op(|e| e.request_wake("q")).unwrap());
    h.add("q", r#"{"data":2}"#);
    assert_eq!(h.e.take_woken().len(), 1);
}

#[test]
fn retrying_a_completed_repeat_occurrence_does_not_fork_the_schedule() {
    let mut h = H::new();
    let first = h.add("r", r#"{"data":1,"repeat":{"every":1000}}"#);
    h.run("r", &first);
    assert_eq!(h.count("r", JobState::Delayed), 1);
    h.op(|e| e.retry(&first)).unwrap();
    h.run("r", &first);
    assert_eq!(h.count("r", JobState::Delayed), 1, "one successor, not two");
}

#[test]
fn a_dependency_completing_twice_counts_once() {
    let mut h = H::new();
    let a = h.add("q", r#"{"data":1}"#);
    let b = h.add("q", r#"{"data":2}"#);
    let parent = h.add("p", &format!(r#"{{"data":3,"dependsOn":["{a}","{b}"]}}"#));
    h.run("q", &a);
    h.op(|e| e.retry(&a)).unwrap();
    // `a` is waiting again behind `b`; run `b`'s turn later.
    let (first, token) = h.pull("q").unwrap();
    assert_eq!(first, b);
    h.op(|e| e.retry(&a)).unwrap_err(); // a is waiting, not finished
    let (again, t2) = h.pull("q").unwrap();
    assert_eq!(again, a);
    h.ack(&again, &t2); // a completes a second time
    assert_eq!(
        h.state(&parent),
        Some(JobState::WaitingChildren),
        "b is still running"
    );
    h.ack(&first, &token);
    assert_eq!(h.state(&parent), Some(JobState::Waiting));
}
