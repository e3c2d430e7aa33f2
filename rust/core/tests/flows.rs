//! Flows (`push_flow`): a graph of parents and children across queues, pushed
//! atomically; a parent runs after its children and reads their results; a child's
//! failure acts on its parent by its policy; an active job with pending children can go
//! back to waiting-children.

mod common;

use common::H;
use hopper_core::{ErrorKind, JobState, PushOptions};

fn opts(json: &str) -> PushOptions {
    PushOptions::from_json(json.as_bytes(), 1 << 20).expect("test body parses")
}

/// A parent `p` on queue `parents` with children `c1` (queue `a`) and `c2` (queue `b`);
/// `child_extra` is added to each child's options.
fn family(child_extra: &str) -> Vec<(String, PushOptions)> {
    vec![
        (
            "a".into(),
            opts(&format!(
                r#"{{"jobId":"c1","name":"c1","data":{{"n":1}},"parentId":"p","maxAttempts":1{child_extra}}}"#
            )),
        ),
        (
            "b".into(),
            opts(&format!(
                r#"{{"jobId":"c2","name":"c2","data":{{"n":2}},"parentId":"p","maxAttempts":1{child_extra}}}"#
            )),
        ),
        (
            "parents".into(),
            opts(
                r#"{"jobId":"p","name":"p","data":{},"dependsOn":["c1","c2"],"childrenIds":["c1","c2"]}"#,
            ),
        ),
    ]
}

fn ack_with(h: &mut H, queue: &str, id: &str, result: &str) {
    let (got, token) = h.pull(queue).expect("a ready job");
    assert_eq!(got, id);
    h.op(|e| e.ack(&got, Some(&token), Some(result.into())))
        .unwrap();
}

#[test]
fn a_flow_across_queues_runs_children_first_and_hands_their_results_up() {
    let mut h = H::new();
    let out = h.op(|e| e.push_flow(family(""))).unwrap();
    let ids: Vec<_> = out.iter().map(|o| o.id.as_str()).collect();
    assert_eq!(ids, ["c1", "c2", "p"], "ids as given, in request order");
    assert_eq!(h.state("p"), Some(JobState::WaitingChildren));
    assert_eq!(h.state("c1"), Some(JobState::Waiting));
    assert!(h.pull("parents").is_none());
    ack_with(&mut h, "a", "c1", r#"{"r":1}"#);
    assert_eq!(h.state("p"), Some(JobState::WaitingChildren));
    ack_with(&mut h, "b", "c2", "2");
    assert_eq!(h.state("p"), Some(JobState::Waiting));
    let values = h.e.children_values("p").unwrap().values;
    assert_eq!(
        values,
        [
            ("a:c1".to_string(), r#"{"r":1}"#.to_string()),
            ("b:c2".to_string(), "2".to_string())
        ]
    );
    // The results stay with the parent whatever happens to the children.
    h.op(|e| e.remove("c1")).unwrap();
    assert_eq!(h.e.children_values("p").unwrap().values.len(), 2);
    ack_with(&mut h, "parents", "p", "done");
}

#[test]
fn a_bad_job_rejects_the_whole_flow() {
    let mut h = H::new();
    let cases: Vec<(Vec<(String, PushOptions)>, &str)> = vec![
        (
            {
                let mut f = family("");
                f[1].0 = "bad queue!".into();
                f
            },
            "queue",
        ),
        (
            {
                let mut f = family("");
                f[2].1.depends_on.push("nowhere".into());
                f
            },
            "flow dependency not found: nowhere",
        ),
        (
            {
                let mut f = family("");
                f[1].1.parent_id = Some("other".into());
                f
            },
            "flow parent not found: other",
        ),
        (
            {
                let mut f = family("");
                f[1].1.job_id = Some("c1".into());
                f
            },
            "duplicate flow job id: c1",
        ),
        (
            {
                let mut f = family("");
                f[0].1.depends_on.push("p".into());
                f
            },
            "cycle",
        ),
        (
            {
                let mut f = family("");
                f[2].1.repeat = opts(r#"{"data":1,"repeat":{"every":1000}}"#).repeat;
                f
            },
            "repeat is not supported",
        ),
    ];
    for (flow, message) in cases {
        let err = h.op(|e| e.push_flow(flow)).unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidInput);
        assert!(err.message.contains(message), "{} / {message}", err.message);
        assert!(h.e.queue_names().is_empty(), "nothing was created");
    }
    // Ids that exist already.
    h.add("a", r#"{"data":1,"jobId":"c2"}"#);
    let err = h.op(|e| e.push_flow(family(""))).unwrap_err();
    assert_eq!(err.message, "Flow job c2 already exists");
    assert!(h.get("c1").is_none() && h.get("p").is_none());
}

#[test]
fn by_default_a_failed_child_leaves_its_parent_waiting() {
    let mut h = H::new();
    h.op(|e| e.push_flow(family(""))).unwrap();
    let (id, token) = h.pull("a").unwrap();
    h.fail(&id, &token, "boom");
    assert_eq!(h.state("c1"), Some(JobState::Failed));
    assert_eq!(h.state("p"), Some(JobState::WaitingChildren));
    // Retried and completed, the child releases its parent after all.
    ack_with(&mut h, "b", "c2", "2");
    h.op(|e| e.retry("c1")).unwrap();
    ack_with(&mut h, "a", "c1", "1");
    assert_eq!(h.state("p"), Some(JobState::Waiting));
}

#[test]
fn the_child_failure_policies_act_on_the_parent() {
    // failParentOnFailure
    let mut h = H::new();
    h.op(|e| e.push_flow(family(r#","failParentOnFailure":true"#)))
        .unwrap();
    let (id, token) = h.pull("a").unwrap();
    h.fail(&id, &token, "boom");
    assert_eq!(h.state("p"), Some(JobState::Failed));
    assert_eq!(h.error_of("p").unwrap(), "Child job c1 failed: boom");
    assert_eq!(h.state("c2"), Some(JobState::Waiting));

    // continueParentOnFailure: the parent runs at once, the error is kept.
    let mut h = H::new();
    h.op(|e| e.push_flow(family(r#","continueParentOnFailure":true"#)))
        .unwrap();
    let (id, token) = h.pull("a").unwrap();
    h.fail(&id, &token, "boom");
    assert_eq!(h.state("p"), Some(JobState::Waiting));
    let v = h.e.children_values("p").unwrap();
    assert_eq!(v.failed, [("a:c1".to_string(), "boom".to_string())]);

    // ignoreDependencyOnFailure: the parent waits for the others only.
    let mut h = H::new();
    h.op(|e| e.push_flow(family(r#","ignoreDependencyOnFailure":true"#)))
        .unwrap();
    let (id, token) = h.pull("a").unwrap();
    h.fail(&id, &token, "boom");
    assert_eq!(h.state("p"), Some(JobState::WaitingChildren));
    ack_with(&mut h, "b", "c2", "2");
    assert_eq!(h.state("p"), Some(JobState::Waiting));
    let v = h.e.children_values("p").unwrap();
    assert_eq!(v.ignored, [("a:c1".to_string(), "boom".to_string())]);
    assert_eq!(v.values, [("b:c2".to_string(), "2".to_string())]);

    // removeDependencyOnFailure: the same, nothing kept.
    let mut h = H::new();
    h.op(|e| e.push_flow(family(r#","removeDependencyOnFailure":true"#)))
        .unwrap();
    ack_with(&mut h, "b", "c2", "2");
    let (id, token) = h.pull("a").unwrap();
    h.fail(&id, &token, "boom");
    assert_eq!(h.state("p"), Some(JobState::Waiting));
    assert!(h.e.children_values("p").unwrap().ignored.is_empty());

    // Two policies at once, or one without a parent, are refused.
    let body = r#"{"data":1,"failParentOnFailure":true,"ignoreDependencyOnFailure":true}"#;
    assert!(PushOptions::from_json(body.as_bytes(), 1 << 20).is_err());
    let err = h
        .op(|e| {
            e.push_flow(vec![(
                "a".into(),
                opts(r#"{"jobId":"x","data":1,"failParentOnFailure":true}"#),
            )])
        })
        .unwrap_err();
    assert!(err.message.contains("requires a parent"), "{}", err.message);
}

#[test]
fn an_active_job_with_pending_children_moves_to_waiting_children() {
    let mut h = H::new();
    h.op(|e| e.push_flow(family(""))).unwrap();
    ack_with(&mut h, "a", "c1", "1");
    ack_with(&mut h, "b", "c2", "2");
    let (p, token) = h.pull("parents").unwrap();
    // Nothing pending: the job stays active.
    assert!(!h
        .op(|e| e.move_to_waiting_children(&p, Some(&token)))
        .unwrap());
    assert_eq!(h.state("p"), Some(JobState::Active));
    // A child runs again: the parent must wait for it.
    h.op(|e| e.retry("c2")).unwrap();
    let err = h
        .op(|e| e.move_to_waiting_children(&p, Some("00000000-0000-7000-8000-000000000000")))
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::LockMismatch);
    assert!(h
        .op(|e| e.move_to_waiting_children(&p, Some(&token)))
        .unwrap());
    assert_eq!(h.state("p"), Some(JobState::WaitingChildren));
    assert!(h.job("p").lease.is_none());
    // The old lease is dead.
    assert!(h.op(|e| e.ack(&p, Some(&token), None)).is_err());
    ack_with(&mut h, "b", "c2", "22");
    assert_eq!(h.state("p"), Some(JobState::Waiting));
    assert_eq!(
        h.e.children_values("p").unwrap().values,
        [
            ("a:c1".to_string(), "1".to_string()),
            ("b:c2".to_string(), "22".to_string())
        ]
    );
    // Not active: refused.
    let err = h.op(|e| e.move_to_waiting_children("p", None)).unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidState);
}

#[test]
fn removing_a_child_dependency_releases_the_parent() {
    let mut h = H::new();
    h.op(|e| e.push_flow(family(""))).unwrap();
    ack_with(&mut h, "a", "c1", "1");
    assert!(h.op(|e| e.remove_child_dependency("c2")).unwrap());
    assert_eq!(h.state("p"), Some(JobState::Waiting));
    assert_eq!(h.state("c2"), Some(JobState::Waiting), "the child stays");
    assert!(!h.op(|e| e.remove_child_dependency("c1")).unwrap());
    let err = h.op(|e| e.remove_child_dependency("c2")).unwrap_err();
    assert!(err.message.contains("has no parent"), "{}", err.message);
    assert!(h.op(|e| e.remove_child_dependency("nope")).is_err());
}
