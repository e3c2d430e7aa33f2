//! Finished-job retention (removeOnComplete/removeOnFail, count/bytes/age bounds) and the
//! queue-wide operations: drain, clean, retry_all, obliterate.

mod common;
use common::H;
use hopper_core::EventKind;
use hopper_core::{EngineConfig, ErrorKind, JobState};

fn fail_for_good(h: &mut H, q: &str, id: &str) {
    let (got, t) = h.pull(q).unwrap();
    assert_eq!(got, id);
    h.fail(id, &t, "x");
    assert_eq!(h.state(id), Some(JobState::Failed));
}

#[test]
fn remove_on_complete_true_removes_only_that_job() {
    let mut h = H::new();
    let kept = h.add("q", r#"{"data":1}"#);
    h.run("q", &kept);
    let gone = h.add("q", r#"{"data":2,"removeOnComplete":true}"#);
    h.run("q", &gone);
    assert!(h.get(&gone).is_none(), "removed at completion");
    assert_eq!(
        h.state(&kept),
        Some(JobState::Completed),
        "other completed jobs are untouched"
    );
    assert_eq!(h.e.totals().completed, 2);
}

#[test]
fn remove_on_fail_true_removes_only_that_job() {
    let mut h = H::new();
    let kept = h.add("q", r#"{"data":1,"maxAttempts":1}"#);
    fail_for_good(&mut h, "q", &kept);
    let gone = h.add("q", r#"{"data":2,"maxAttempts":1,"removeOnFail":true}"#);
    fail_for_good_then_gone(&mut h, &gone);
    assert_eq!(h.state(&kept), Some(JobState::Failed));
    // A job that fails with attempts left is not removed.
    let retrying = h.add("q", r#"{"data":3,"maxAttempts":2,"removeOnFail":true}"#);
    let (_, t) = h.pull("q").unwrap();
    h.fail(&retrying, &t, "x");
    assert_eq!(h.state(&retrying), Some(JobState::Delayed));
}

fn fail_for_good_then_gone(h: &mut H, id: &str) {
    let (got, t) = h.pull("q").unwrap();
    assert_eq!(got, id);
    h.fail(id, &t, "x");
    assert!(h.get(id).is_none());
}

#[test]
fn keep_last_n_keeps_the_newest_completed() {
    let mut h = H::new();
    let mut ids = Vec::new();
    for i in 0..5 {
        let id = h.add("q", &format!(r#"{{"data":{i},"removeOnComplete":2}}"#));
        h.advance(10);
        h.run("q", &id);
        ids.push(id);
    }
    // Newest first.
    assert_eq!(
        h.ids("q", JobState::Completed),
        vec![ids[4].clone(), ids[3].clone()]
    );
    assert!(h.get(&ids[0]).is_none());
    let f = h.add("q", r#"{"data":"f","maxAttempts":1,"removeOnFail":0}"#);
    fail_for_good_then_gone(&mut h, &f);
}

#[test]
fn retention_count_bounds_each_finished_set() {
    let mut h = H::with(EngineConfig {
        retention_count: 3,
        ..Default::default()
    });
    let mut done = Vec::new();
    for i in 0..5 {
        let id = h.add("q", &format!(r#"{{"data":{i}}}"#));
        h.advance(1);
        h.run("q", &id);
        done.push(id);
    }
    assert_eq!(h.count("q", JobState::Completed), 3);
    assert_eq!(
        h.ids("q", JobState::Completed),
        vec![done[4].clone(), done[3].clone(), done[2].clone()]
    );
    let mut failed = Vec::new();
    for i in 0..4 {
        let id = h.add("q", &format!(r#"{{"data":{i},"maxAttempts":1}}"#));
        h.advance(1);
        fail_for_good(&mut h, "q", &id);
        failed.push(id);
    }
    assert_eq!(h.count("q", JobState::Failed), 3);
    assert!(h.get(&failed[0]).is_none());
    assert_eq!(
        h.count("q", JobState::Completed),
        3,
        "sets are bounded separately"
    );
    // KeepLast above the engine bound is capped by it.
    let id = h.add("q", r#"{"data":1,"removeOnComplete":100}"#);
    h.run("q", &id);
    assert_eq!(h.count("q", JobState::Completed), 3);
}

/// Finished jobs past the retention age go in a sweep that runs at most this often.
const SWEEP_MS: u64 = 1000;

#[test]
fn retention_age_expires_finished_jobs() {
    let mut h = H::with(EngineConfig {
        retention_age_ms: 10_000,
        ..Default::default()
    });
    let a = h.add("q", r#"{"data":1}"#);
    h.run("q", &a);
    h.advance(5_000);
    let b = h.add("q", r#"{"data":2}"#);
    h.run("q", &b);
    // Never before the age; at the latest one sweep after it.
    for _ in 0..4999 {
        h.advance(1);
        assert!(h.get(&a).is_some());
    }
    h.advance(SWEEP_MS);
    assert!(h.get(&a).is_none());
    assert!(h.get(&b).is_some());
    // A retried job's old finish time no longer counts once it finishes again.
    h.op(|e| e.retry(&b)).unwrap();
    h.advance(3_000);
    h.run("q", &b);
    h.advance(2_000 + SWEEP_MS); // past b's first finish + 10 s
    assert!(h.get(&b).is_some());
    h.advance(8_000);
    assert!(h.get(&b).is_none());
}

/// Sum of the footprints of the finished jobs of `q` in `state`.
fn held_bytes(h: &H, state: JobState) -> usize {
    let (slots, _) = h.e.list("q", state, 0, 999);
    slots.iter().map(|&s| h.e.job_at(s).footprint()).sum()
}

#[test]
fn retention_bytes_bounds_each_finished_set() {
    // Measure one small failed job's footprint, then allow about three.
    let mut probe = H::new();
    let p = probe.add("q", r#"{"data":"xxxxxxxx","maxAttempts":1}"#);
    fail_for_good(&mut probe, "q", &p);
    let one = held_bytes(&probe, JobState::Failed);
    let limit = one * 3 + one / 2;
    let mut h = H::with(EngineConfig {
        retention_bytes: limit,
        ..Default::default()
    });
    for _ in 0..6 {
        // (Finish times must differ: ties in one millisecond are broken by slot.)
        h.advance(1);
        let id = h.add("q", r#"{"data":"xxxxxxxx","maxAttempts":1}"#);
        fail_for_good(&mut h, "q", &id);
        assert!(held_bytes(&h, JobState::Failed) <= limit);
    }
    assert_eq!(h.count("q", JobState::Failed), 3);
}

#[test]
fn retention_bytes_stay_exact_after_a_failure_with_dependents() {
    let limit = 64 * 1024;
    let mut h = H::with(EngineConfig {
        retention_bytes: limit,
        ..Default::default()
    });
    // A failed job with many dependents, then cleaned away.
    let root = h.add("q", r#"{"data":1,"maxAttempts":1}"#);
    let body = format!(r#"{{"data":0,"dependsOn":["{root}"]}}"#);
    for _ in 0..100 {
        h.add("deps", &body);
    }
    fail_for_good(&mut h, "q", &root);
    assert_eq!(h.count("deps", JobState::Failed), 100);
    for _ in 0..5 {
        h.advance(1);
        let id = h.add("q", r#"{"data":"z","maxAttempts":1}"#);
        fail_for_good(&mut h, "q", &id);
    }
    assert_eq!(
        h.op(|e| e.clean("q", JobState::Failed, 0, 1)).unwrap(),
        vec![root]
    );
    // Fill the failed set: what is retained must stay within the byte bound.
    for i in 0..400 {
        h.advance(1);
        let id = h.add(
            "q",
            &format!(r#"{{"data":"{}","maxAttempts":1}}"#, "y".repeat(i % 7 * 10)),
        );
        fail_for_good(&mut h, "q", &id);
        assert!(
            held_bytes(&h, JobState::Failed) <= limit,
            "over the byte bound after {i}"
        );
    }
}

#[test]
fn a_drained_waiting_children_job_fails_its_dependents_elsewhere_naming_the_drain() {
    let mut h = H::new();
    let outside = h.add("other", r#"{"data":1}"#);
    let waiting = h.add("q", &format!(r#"{{"data":2,"dependsOn":["{outside}"]}}"#));
    let dependent = h.add(
        "third",
        &format!(r#"{{"data":3,"dependsOn":["{waiting}"]}}"#),
    );
    assert_eq!(h.op(|e| e.drain("q")).unwrap(), 1);
    assert_eq!(h.state(&waiting), None);
    assert_eq!(h.state(&dependent), Some(JobState::Failed));
    assert_eq!(
        h.job(&dependent).ext().and_then(|e| e.error.as_deref()),
        Some(format!("Dependency {waiting} was removed by a drain of queue q").as_str())
    );
    // The drained job's own dependency is untouched, and no longer has it as a dependent.
    assert_eq!(h.state(&outside), Some(JobState::Waiting));
    assert!(h
        .job(&outside)
        .ext()
        .is_none_or(|e| e.dependents.is_empty()));
}

#[test]
fn drain_removes_waiting_delayed_and_waiting_children_only() {
    let mut h = H::new();
    h.e.set_events_enabled(true);
    let parent = h.add("q", r#"{"data":1}"#);
    h.add("q", r#"{"data":2,"delay":1000}"#);
    let child = h.add("q", &format!(r#"{{"data":5,"dependsOn":["{parent}"]}}"#));
    let elsewhere = h.add(
        "other",
        &format!(r#"{{"data":6,"dependsOn":["{parent}"]}}"#),
    );
    let active = h.add("q", r#"{"data":3,"priority":9}"#);
    let done = h.add("q", r#"{"data":4,"priority":10}"#);
    h.run("q", &done);
    assert_eq!(h.pull_id("q"), Some(active.clone()));
    h.events();
    assert_eq!(h.op(|e| e.drain("q")).unwrap(), 3);
    // Nothing of q failed: its waiting-children job went with its dependency.
    assert_eq!(h.e.counts("q"), [0, 0, 0, 1, 1, 0]);
    assert_eq!(h.state(&child), None);
    // A dependent in another queue loses its dependency: it fails, as on any removal,
    // and its reason says the dependency went with a drain.
    assert_eq!(h.state(&elsewhere), Some(JobState::Failed));
    assert_eq!(
        h.job(&elsewhere).ext().and_then(|e| e.error.as_deref()),
        Some(format!("Dependency {parent} was removed by a drain of queue q").as_str())
    );
    assert!(h.events().iter().any(|e| e.0 == EventKind::Drained));
    assert_eq!(
        h.op(|e| e.drain("nope")).unwrap_err().kind,
        ErrorKind::NotFound
    );
}

#[test]
fn clean_by_state_grace_and_limit() {
    let mut h = H::new();
    let mut done = Vec::new();
    for i in 0..4 {
        let id = h.add("q", &format!(r#"{{"data":{i}}}"#));
        h.run("q", &id);
        done.push(id);
        h.advance(1000);
    }
    // now = T0+4000; finished at T0, +1000, +2000, +3000.
    let cleaned = h
        .op(|e| e.clean("q", JobState::Completed, 1500, 1))
        .unwrap();
    assert_eq!(cleaned, vec![done[0].clone()], "oldest first, limit 1");
    let cleaned = h
        .op(|e| e.clean("q", JobState::Completed, 1500, 0))
        .unwrap();
    assert_eq!(
        cleaned,
        vec![done[1].clone(), done[2].clone()],
        "only those older than the grace"
    );
    assert_eq!(h.ids("q", JobState::Completed), vec![done[3].clone()]);
    let w = h.add("q", r#"{"data":"w"}"#);
    assert!(h
        .op(|e| e.clean("q", JobState::Waiting, 1, 0))
        .unwrap()
        .is_empty());
    assert_eq!(
        h.op(|e| e.clean("q", JobState::Waiting, 0, 0)).unwrap(),
        vec![w]
    );
    let err = h.op(|e| e.clean("q", JobState::Active, 0, 0)).unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidInput);
}

#[test]
fn clean_survives_a_victim_removed_by_another_victims_removal() {
    let mut h = H::new();
    let x = h.add("q", r#"{"data":"x","delay":100000}"#);
    let b = h.add("q", &format!(r#"{{"data":"b","dependsOn":["{x}"]}}"#));
    h.advance(1);
    let c = h.add(
        "q",
        &format!(r#"{{"data":"c","dependsOn":["{b}"],"removeOnFail":true}}"#),
    );
    // Removing b fails c, whose removeOnFail removes it before clean reaches it.
    let cleaned = h
        .op(|e| e.clean("q", JobState::WaitingChildren, 0, 0))
        .unwrap();
    assert_eq!(cleaned[0], b);
    assert!(h.get(&b).is_none() && h.get(&c).is_none());
    assert_eq!(h.state(&x), Some(JobState::Delayed));
}

#[test]
fn retry_all_failed_and_completed() {
    let mut h = H::new();
    let mut ids = Vec::new();
    for i in 0..3 {
        let id = h.add("q", &format!(r#"{{"data":{i},"maxAttempts":1}}"#));
        fail_for_good(&mut h, "q", &id);
        ids.push(id);
    }
    let c = h.add("q", r#"{"data":"c"}"#);
    h.run("q", &c);
    assert_eq!(h.op(|e| e.retry_all("q", JobState::Failed)).unwrap(), 3);
    assert_eq!(h.ids("q", JobState::Waiting).len(), 3);
    assert!(ids.iter().all(|id| h.job(id).attempts == 0));
    assert_eq!(h.op(|e| e.retry_all("q", JobState::Completed)).unwrap(), 1);
    assert_eq!(h.count("q", JobState::Waiting), 4);
    let err = h.op(|e| e.retry_all("q", JobState::Waiting)).unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidInput);
}

#[test]
fn obliterate_refused_with_active_jobs_unless_forced() {
    let mut h = H::new();
    for i in 0..3 {
        h.add("q", &format!(r#"{{"data":{i}}}"#));
    }
    h.add("q", r#"{"data":"d","delay":10}"#);
    let keep = h.add("other", r#"{"data":1}"#);
    let (a, _) = h.pull_as("q", 5).unwrap();
    let err = h.op(|e| e.obliterate("q", false)).unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidState);
    assert_eq!(h.e.counts("q").iter().sum::<usize>(), 4);
    assert_eq!(h.op(|e| e.obliterate("q", true)).unwrap(), 4);
    assert!(!h.e.has_queue("q"));
    assert!(h.get(&a).is_none());
    assert_eq!(
        h.op(|e| e.release_owner(5)),
        0,
        "the forced-out lease is gone"
    );
    assert_eq!(h.state(&keep), Some(JobState::Waiting));
    // The queue can be used again; old timers fire harmlessly.
    let n = h.add("q", r#"{"data":"new"}"#);
    h.advance(100_000);
    assert_eq!(h.pull_id("q"), Some(n));
    h.add("empty", r#"{"data":1}"#);
    h.op(|e| e.drain("empty")).unwrap();
    assert_eq!(h.op(|e| e.obliterate("empty", false)).unwrap(), 0);
}
