//! uniqueKey dedup, jobId idempotency and dependsOn.

mod common;
use common::H;
use hopper_core::EventKind;
use hopper_core::{ErrorKind, FailOutcome, JobState};

#[test]
fn unique_key_dedups_while_live_only() {
    let mut h = H::new();
    h.e.set_events_enabled(true);
    let first = h.push("q", r#"{"data":1,"uniqueKey":"k"}"#);
    assert!(!first.duplicate);
    let again = h.push("q", r#"{"data":2,"uniqueKey":"k"}"#);
    assert!(again.duplicate);
    assert_eq!(again.id, first.id);
    assert_eq!(h.count("q", JobState::Waiting), 1);
    assert_eq!(&*h.job(&first.id).data, "1");
    assert_eq!(h.e.totals().duplicated, 1);
    assert!(h.events().iter().any(|e| e.0 == EventKind::Duplicated));
    // Same key in another queue is a different key.
    assert!(!h.push("other", r#"{"data":3,"uniqueKey":"k"}"#).duplicate);
    // Still live while active.
    let (_, t) = h.pull("q").unwrap();
    assert!(h.push("q", r#"{"data":4,"uniqueKey":"k"}"#).duplicate);
    h.ack(&first.id, &t);
    let next = h.push("q", r#"{"data":5,"uniqueKey":"k"}"#);
    assert!(!next.duplicate, "a completed job no longer holds its key");
    assert_ne!(next.id, first.id);
    assert!(h.push("q", r#"{"data":6,"uniqueKey":"k"}"#).duplicate);
}

#[test]
fn unique_key_is_released_by_failure_and_removal() {
    let mut h = H::new();
    let a = h.add(
        "q",
        r#"{"data":1,"uniqueKey":"k","maxAttempts":2,"backoff":10}"#,
    );
    let (_, t) = h.pull("q").unwrap();
    h.fail(&a, &t, "x"); // delayed for a retry: still live
    assert!(h.push("q", r#"{"data":2,"uniqueKey":"k"}"#).duplicate);
    h.op(|e| e.promote(&a)).unwrap();
    let (_, t) = h.pull("q").unwrap();
    assert_eq!(h.fail(&a, &t, "y"), FailOutcome::Dead);
    let b = h.add("q", r#"{"data":3,"uniqueKey":"k"}"#);
    h.op(|e| e.remove(&b)).unwrap();
    let c = h.add("q", r#"{"data":4,"uniqueKey":"k"}"#);
    // Retrying the failed holder while another job holds the key does not steal it.
    h.op(|e| e.retry(&a)).unwrap();
    assert_eq!(h.push("q", r#"{"data":5,"uniqueKey":"k"}"#).id, c);
}

#[test]
fn job_id_is_idempotent() {
    let mut h = H::new();
    let first = h.push("q", r#"{"data":"first","jobId":"order-42"}"#);
    assert_eq!((first.id.as_str(), first.duplicate), ("order-42", false));
    let again = h.push("q", r#"{"data":"second","jobId":"order-42","priority":9}"#);
    assert_eq!((again.id.as_str(), again.duplicate), ("order-42", true));
    assert_eq!(&*h.job("order-42").data, r#""first""#);
    assert_eq!(h.job("order-42").priority, 0);
    assert_eq!(h.count("q", JobState::Waiting), 1);
    // Idempotent after completion too: the id still exists.
    h.run("q", "order-42");
    assert!(
        h.push("q", r#"{"data":"third","jobId":"order-42"}"#)
            .duplicate
    );
    assert_eq!(h.count("q", JobState::Waiting), 0);
    // Once the job is gone the id is free again.
    h.op(|e| e.remove("order-42")).unwrap();
    assert!(
        !h.push("q", r#"{"data":"fourth","jobId":"order-42"}"#)
            .duplicate
    );
}

#[test]
fn depends_on_waits_for_every_dependency() {
    let mut h = H::new();
    h.e.set_events_enabled(true);
    let a = h.add("q", r#"{"data":"a"}"#);
    let b = h.add("q", r#"{"data":"b","delay":1000}"#);
    let body = format!(r#"{{"data":"p","dependsOn":["{a}","{b}"]}}"#);
    let p = h.add("q", &body);
    assert_eq!(h.state(&p), Some(JobState::WaitingChildren));
    assert!(h
        .events()
        .iter()
        .any(|e| e.0 == EventKind::WaitingChildren && e.1.as_deref() == Some(p.as_str())));
    assert_eq!(h.e.links(&p).unwrap(), (vec![a.clone(), b.clone()], vec![]));
    assert_eq!(h.e.links(&a).unwrap(), (vec![], vec![p.clone()]));
    assert_eq!(h.e.links(&b).unwrap(), (vec![], vec![p.clone()]));

    h.run("q", &a);
    assert_eq!(
        h.state(&p),
        Some(JobState::WaitingChildren),
        "one dependency still pending"
    );
    assert!(h.pull("q").is_none());
    h.advance(1000);
    h.run("q", &b);
    assert_eq!(h.state(&p), Some(JobState::Waiting));
    h.run("q", &p);
    // A dependent pushed after its dependencies completed runs at once.
    let body = format!(r#"{{"data":"late","dependsOn":["{a}"]}}"#);
    let late = h.add("q", &body);
    assert_eq!(h.state(&late), Some(JobState::Waiting));
}

#[test]
fn released_dependent_still_honours_its_delay() {
    let mut h = H::new();
    let a = h.add("q", r#"{"data":"a"}"#);
    let p = h.add(
        "q",
        &format!(r#"{{"data":"p","delay":5000,"dependsOn":["{a}"]}}"#),
    );
    h.advance(1000);
    h.run("q", &a);
    assert_eq!(h.state(&p), Some(JobState::Delayed));
    h.advance(3999);
    assert_eq!(h.state(&p), Some(JobState::Delayed));
    h.advance(1);
    assert_eq!(h.state(&p), Some(JobState::Waiting));
}

#[test]
fn a_dependency_failing_for_good_fails_the_dependent() {
    let mut h = H::new();
    let a = h.add("q", r#"{"data":"a","maxAttempts":2,"backoff":0}"#);
    let p = h.add("q", &format!(r#"{{"data":"p","dependsOn":["{a}"]}}"#));
    let gp = h.add("q", &format!(r#"{{"data":"gp","dependsOn":["{p}"]}}"#));
    let (_, t) = h.pull("q").unwrap();
    h.fail(&a, &t, "first");
    assert_eq!(
        h.state(&p),
        Some(JobState::WaitingChildren),
        "a retried failure is not final"
    );
    let (_, t) = h.pull("q").unwrap();
    h.fail(&a, &t, "final");
    assert_eq!(h.state(&p), Some(JobState::Failed));
    assert!(h.error_of(&p).unwrap().contains(&a), "{:?}", h.error_of(&p));
    assert_eq!(
        h.state(&gp),
        Some(JobState::Failed),
        "failure propagates transitively"
    );
    assert!(h.error_of(&gp).unwrap().contains(&p));
    // A dependent pushed after the dependency failed fails at once.
    let late = h.add("q", &format!(r#"{{"data":"late","dependsOn":["{a}"]}}"#));
    assert_eq!(h.state(&late), Some(JobState::Failed));
    assert!(h.error_of(&late).unwrap().contains(&a));
}

#[test]
fn dependent_with_a_group_on_an_already_failed_dependency() {
    let mut h = H::new();
    let a = h.add("q", r#"{"data":"a","maxAttempts":1}"#);
    let (_, t) = h.pull("q").unwrap();
    h.fail(&a, &t, "dead");
    let p = h.add(
        "q",
        &format!(r#"{{"data":"p","groupId":"g","dependsOn":["{a}"]}}"#),
    );
    assert_eq!(h.state(&p), Some(JobState::Failed));
    assert!(h.e.groups("q").is_empty());
    // The ready queue is intact.
    let w = h.add("q", r#"{"data":"w","groupId":"g"}"#);
    assert_eq!(h.e.groups("q").len(), 1);
    assert_eq!(h.pull_id("q"), Some(w));
}

#[test]
fn removing_a_live_dependency_fails_the_dependent() {
    let mut h = H::new();
    let a = h.add("q", r#"{"data":"a"}"#);
    let p = h.add("q", &format!(r#"{{"data":"p","dependsOn":["{a}"]}}"#));
    h.op(|e| e.remove(&a)).unwrap();
    assert_eq!(h.state(&p), Some(JobState::Failed));
    assert!(h.error_of(&p).unwrap().contains("removed"));
}

#[test]
fn unknown_dependency_is_rejected() {
    let mut h = H::new();
    let err = h
        .try_push("q", r#"{"data":1,"dependsOn":["ghost"]}"#)
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidInput);
    assert!(err.message.contains("ghost"));
    assert_eq!(h.e.job_count(), 0);
    let err = h
        .try_push("q", r#"{"data":1,"dependsOn":["x"],"repeat":{"every":10}}"#)
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidInput);
}

#[test]
fn dependencies_across_queues() {
    let mut h = H::new();
    let a = h.add("upstream", r#"{"data":"a"}"#);
    let p = h.add(
        "downstream",
        &format!(r#"{{"data":"p","dependsOn":["{a}"]}}"#),
    );
    assert!(h.pull("downstream").is_none());
    h.run("upstream", &a);
    assert_eq!(h.pull_id("downstream"), Some(p));
}
