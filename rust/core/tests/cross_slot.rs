//! Flows and dependencies spanning the slots of a cluster: three engines, one per slot,
//! whose messages to each other are carried by the test (what the cluster's transport
//! does through PostgreSQL): a parent in one slot waits for children created in others,
//! reads their results, and acts by their failure policies; a `dependsOn` naming another
//! slot's job waits for it; redelivered messages are applied once; the mailbox and the
//! links survive a restart.

mod common;
use common::data_dir::{open_store, Dir};
use common::{H, T0};

use hopper_core::cluster_slots::queue_slot;
use hopper_core::{Applied, EngineConfig, JobState, ManualClock, PushOptions};

const SLOTS: u32 = 3;

fn queue_in(slot: u32, prefix: &str) -> String {
    (0..)
        .map(|i| format!("{prefix}{i}"))
        .find(|q| queue_slot(q, SLOTS) == slot)
        .expect("some name lands in every slot")
}

fn config(slot: u32) -> EngineConfig {
    EngineConfig {
        cluster_slot: Some((slot, SLOTS)),
        ..Default::default()
    }
}

fn opts(json: &str) -> PushOptions {
    PushOptions::from_json(json.as_bytes(), 1 << 20).expect("test body parses")
}

struct Cluster {
    slots: Vec<H>,
    /// Messages carried so far.
    carried: usize,
}

impl Cluster {
    fn new() -> Self {
        Cluster {
            slots: (0..SLOTS).map(|s| H::with(config(s))).collect(),
            carried: 0,
        }
    }

    /// Carries every pending message to its slot, until none is left (bounded).
    fn pump(&mut self) {
        for _ in 0..20 {
            let mut moved = false;
            for from in 0..SLOTS as usize {
                let pending = self.slots[from].e.outbox_pending(1000);
                for m in pending {
                    let applied = self.slots[m.target as usize]
                        .op(|e| e.apply_slot_message(from as u32, m.seq, &m.body))
                        .expect("a message applies");
                    assert_eq!(applied, Applied::Done);
                    self.slots[from].op(|e| e.outbox_delivered(m.target, m.seq));
                    self.carried += 1;
                    moved = true;
                }
            }
            if !moved {
                return;
            }
        }
        panic!("messages kept coming");
    }

    fn ack_with(&mut self, slot: u32, queue: &str, id: &str, result: &str) {
        let h = &mut self.slots[slot as usize];
        let (got, token) = h.pull(queue).expect("a ready job");
        assert_eq!(got, id);
        h.op(|e| e.ack(&got, Some(&token), Some(result.into())))
            .unwrap();
        self.pump();
    }
}

/// A parent in slot 0 with children `c1` in slot 1 and `c2` in slot 2 (`extra` added
/// to each child's options), pushed to slot 0.
fn spanning_flow(c: &mut Cluster, extra: &str) -> (String, String, String) {
    let (pq, q1, q2) = (queue_in(0, "p"), queue_in(1, "a"), queue_in(2, "b"));
    let flow = vec![
        (
            q1.clone(),
            opts(&format!(
                r#"{{"jobId":"c1","data":{{"n":1}},"parentId":"p","maxAttempts":1{extra}}}"#
            )),
        ),
        (
            q2.clone(),
            opts(&format!(
                r#"{{"jobId":"c2","data":{{"n":2}},"parentId":"p","maxAttempts":1{extra}}}"#
            )),
        ),
        (
            pq.clone(),
            opts(r#"{"jobId":"p","data":{},"dependsOn":["c1","c2"],"childrenIds":["c1","c2"]}"#),
        ),
    ];
    let out = c.slots[0].op(|e| e.push_flow(flow)).unwrap();
    let ids: Vec<_> = out.iter().map(|o| o.id.as_str()).collect();
    assert_eq!(ids, ["c1", "c2", "p"]);
    // Only the parent is held by slot 0; its children are created by their slots.
    assert!(c.slots[0].get("c1").is_none());
    assert_eq!(c.slots[0].state("p"), Some(JobState::WaitingChildren));
    c.pump();
    assert_eq!(c.slots[1].state("c1"), Some(JobState::Waiting));
    assert_eq!(c.slots[2].state("c2"), Some(JobState::Waiting));
    (pq, q1, q2)
}

#[test]
fn a_parent_waits_for_children_of_other_slots_and_reads_their_results() {
    let mut c = Cluster::new();
    let (pq, q1, q2) = spanning_flow(&mut c, "");
    // A child names its parent in another slot among its dependents, as on one server.
    let (_, dependents) = c.slots[1].e.links("c1").unwrap();
    assert_eq!(dependents, ["p"]);
    assert!(c.slots[0].pull(&pq).is_none());
    c.ack_with(1, &q1, "c1", r#"{"r":1}"#);
    assert_eq!(c.slots[0].state("p"), Some(JobState::WaitingChildren));
    c.ack_with(2, &q2, "c2", "2");
    assert_eq!(c.slots[0].state("p"), Some(JobState::Waiting));
    let values = c.slots[0].e.children_values("p").unwrap().values;
    assert_eq!(
        values,
        [
            (format!("{q1}:c1"), r#"{"r":1}"#.to_string()),
            (format!("{q2}:c2"), "2".to_string())
        ]
    );
    c.slots[0].run(&pq, "p");
    // One message created the children of each slot, and each child reported once.
    assert_eq!(c.carried, 4);
}

#[test]
fn a_child_failing_for_good_acts_on_its_parent_by_its_policy() {
    let mut c = Cluster::new();
    let (_, q1, _) = spanning_flow(&mut c, r#","failParentOnFailure":true"#);
    let (id, token) = c.slots[1].pull(&q1).unwrap();
    c.slots[1].fail(&id, &token, "boom");
    c.pump();
    assert_eq!(c.slots[0].state("p"), Some(JobState::Failed));
    assert_eq!(
        c.slots[0].error_of("p").as_deref(),
        Some("Child job c1 failed: boom")
    );

    let mut c = Cluster::new();
    let (pq, q1, q2) = spanning_flow(&mut c, r#","ignoreDependencyOnFailure":true"#);
    let (id, token) = c.slots[1].pull(&q1).unwrap();
    c.slots[1].fail(&id, &token, "skipped");
    c.pump();
    assert_eq!(c.slots[0].state("p"), Some(JobState::WaitingChildren));
    c.ack_with(2, &q2, "c2", "2");
    c.slots[0].run(&pq, "p");
    let ignored = c.slots[0].e.children_values("p").unwrap().ignored;
    assert_eq!(ignored, [(format!("{q1}:c1"), "skipped".to_string())]);

    // The default policy: the parent keeps waiting.
    let mut c = Cluster::new();
    let (_, q1, _) = spanning_flow(&mut c, "");
    let (id, token) = c.slots[1].pull(&q1).unwrap();
    c.slots[1].fail(&id, &token, "boom");
    c.pump();
    assert_eq!(c.slots[0].state("p"), Some(JobState::WaitingChildren));
}

#[test]
fn removing_a_waited_for_child_fails_its_parent_and_detaching_one_releases_it() {
    let mut c = Cluster::new();
    spanning_flow(&mut c, "");
    c.slots[1].op(|e| e.remove("c1")).unwrap();
    c.pump();
    assert_eq!(c.slots[0].state("p"), Some(JobState::Failed));
    assert_eq!(
        c.slots[0].error_of("p").as_deref(),
        Some("Dependency c1 was removed")
    );

    let mut c = Cluster::new();
    let (pq, _, q2) = spanning_flow(&mut c, "");
    assert!(c.slots[1].op(|e| e.remove_child_dependency("c1")).unwrap());
    c.pump();
    assert_eq!(c.slots[0].state("p"), Some(JobState::WaitingChildren));
    c.ack_with(2, &q2, "c2", "2");
    c.slots[0].run(&pq, "p");
}

#[test]
fn a_depends_on_naming_another_slots_job_waits_for_it() {
    let mut c = Cluster::new();
    let (q0, q1) = (queue_in(0, "x"), queue_in(1, "y"));
    let first = c.slots[1].add(&q1, r#"{"data":1}"#);
    let later = c.slots[0].add(&q0, &format!(r#"{{"data":2,"dependsOn":["{first}"]}}"#));
    assert_eq!(c.slots[0].state(&later), Some(JobState::WaitingChildren));
    c.pump();
    assert!(c.slots[0].pull(&q0).is_none());
    c.ack_with(1, &q1, &first, "1");
    c.slots[0].run(&q0, &later);

    // Already completed when asked: released on the answer.
    let done = c.slots[1].add(&q1, r#"{"data":3}"#);
    c.ack_with(1, &q1, &done, "3");
    let after = c.slots[0].add(&q0, &format!(r#"{{"data":4,"dependsOn":["{done}"]}}"#));
    c.pump();
    c.slots[0].run(&q0, &after);

    // An id of another slot that does not exist there: the dependent fails, saying so.
    let ghost = {
        let other = c.slots[1].add(&q1, r#"{"data":5}"#);
        c.slots[1].op(|e| e.remove(&other)).unwrap();
        other
    };
    let orphan = c.slots[0].add(&q0, &format!(r#"{{"data":6,"dependsOn":["{ghost}"]}}"#));
    c.pump();
    assert_eq!(c.slots[0].state(&orphan), Some(JobState::Failed));
    assert_eq!(
        c.slots[0].error_of(&orphan),
        Some(format!("Dependency {ghost} is unknown"))
    );
    // A caller-chosen id is not another slot's: it must be held here, as on one server.
    let e = c.slots[0]
        .try_push(&q0, r#"{"data":7,"dependsOn":["nowhere"]}"#)
        .unwrap_err();
    assert!(e.message.contains("unknown job: nowhere"), "{}", e.message);
}

#[test]
fn a_message_is_applied_once_and_in_order() {
    let mut c = Cluster::new();
    spanning_flow(&mut c, "");
    let q1 = queue_in(1, "a");
    let (id, token) = c.slots[1].pull(&q1).unwrap();
    c.slots[1].ack(&id, &token);
    let sent = c.slots[1].e.outbox_pending(10);
    assert_eq!(sent.len(), 1);
    let m = &sent[0];
    assert_eq!(m.seq, 1, "the first message from slot 1 to slot 0");
    let apply = |c: &mut Cluster, seq: u64| {
        c.slots[0]
            .op(|e| e.apply_slot_message(1, seq, &m.body))
            .unwrap()
    };
    assert_eq!(apply(&mut c, 2), Applied::Gap { expected: 1 });
    assert_eq!(apply(&mut c, 1), Applied::Done);
    assert_eq!(apply(&mut c, 1), Applied::AlreadyApplied);
    assert_eq!(c.slots[0].e.inbox_cursor(1), 1);
    // Delivered messages are not handed out again; an unreadable one is passed over.
    c.slots[1].op(|e| e.outbox_delivered(0, 1));
    assert!(c.slots[1].e.outbox_pending(10).is_empty());
    assert!(c.slots[0]
        .op(|e| e.apply_slot_message(1, 2, b"not json"))
        .is_err());
    assert_eq!(c.slots[0].e.inbox_cursor(1), 2);
}

#[test]
fn the_mailbox_and_the_links_survive_a_restart() {
    let dir = Dir::new("cross-slot");
    let clock = ManualClock::new(T0);
    let pq = queue_in(0, "p");
    let q1 = queue_in(1, "a");
    let h = open_store(&dir.0, &clock, config(0));
    h.mutate(|e| {
        e.push_flow(vec![
            (
                q1.clone(),
                opts(r#"{"jobId":"c1","data":1,"parentId":"p"}"#),
            ),
            (
                pq.clone(),
                opts(r#"{"jobId":"p","data":0,"dependsOn":["c1"],"childrenIds":["c1"]}"#),
            ),
        ])
    })
    .unwrap();
    let before = h.with(|e| e.dump_state());
    assert!(before.contains("pending=[(1, 1)]"), "{before}");
    h.close();
    drop(h);
    let h = open_store(&dir.0, &clock, config(0));
    assert_eq!(h.with(|e| e.dump_state()), before);
    let pending = h.outbox_pending(10).unwrap();
    assert_eq!((pending.len(), pending[0].target), (1, 1));
    h.outbox_delivered(1, 1).unwrap();
    // What slot 1 says once c1 completes, applied after a snapshot and a restart.
    let mut other = H::with(config(1));
    let seq = pending[0].seq;
    other
        .op(|e| e.apply_slot_message(0, seq, &pending[0].body))
        .unwrap();
    other.run(&q1, "c1");
    let reply = other.e.outbox_pending(10).remove(0);
    h.snapshot_now().unwrap();
    h.close();
    drop(h);
    let h = open_store(&dir.0, &clock, config(0));
    assert!(h.outbox_pending(10).unwrap().is_empty());
    assert_eq!(
        h.apply_slot_message(1, reply.seq, &reply.body).unwrap(),
        Applied::Done
    );
    let before = h.with(|e| e.dump_state());
    h.close();
    drop(h);
    let h = open_store(&dir.0, &clock, config(0));
    assert_eq!(h.with(|e| e.dump_state()), before);
    assert_eq!(h.inbox_cursor(1), 1);
    assert_eq!(
        h.apply_slot_message(1, reply.seq, &reply.body).unwrap(),
        Applied::AlreadyApplied
    );
    let pulled = h.with(|e| e.pull_job(&pq, 7)).unwrap().map(|p| p.id);
    assert_eq!(pulled.as_deref(), Some("p"));
    h.close();
}
