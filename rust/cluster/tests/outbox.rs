//! Cross-slot messages carried by the relays through a real PostgreSQL, between engines
//! whose logs are their slots': a flow across three slots runs to its parent's end and
//! leaves no row behind; a message delivered again is applied once; a fenced ex-owner
//! deletes no row and the new owner applies it; the relays reconnect after their
//! sessions are cut; a relay stops by itself when its engine closes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hopper_cluster::{OutboxRelay, Slot, SlotConfig, SweepTiming};
use hopper_core::cluster_slots::queue_slot;
use hopper_core::{
    Clock, EngineConfig, EngineHandle, FsyncPolicy, JobState, ManualClock, PushOptions,
    StorageConfig, SystemClock,
};
use postgres::{Client, NoTls};

mod common;
use common::postgres_url;

const LEASE_MS: u64 = 5_000;
const T0: u64 = 1_704_067_200_000;
/// Every wait for the relays is bounded by this.
const WITHIN: Duration = Duration::from_secs(10);

fn config(url: &str, ns: &str, slot: u32, slots: u32, clock: Option<&ManualClock>) -> SlotConfig {
    SlotConfig {
        url: url.to_string(),
        namespace: ns.to_string(),
        slot: slot as i32,
        slots,
        broker_id: format!("broker-{slot}"),
        lease_ms: LEASE_MS,
        advertise_http: String::new(),
        advertise_tcp: String::new(),
        snapshot_chunk_bytes: 1 << 20,
        clock: clock.map(|c| Arc::new(c.clone()) as Arc<dyn Clock>),
    }
}

/// The engine of slot `n` of `slots`, its log in `slot`.
fn engine(slot: &Slot, n: u32, slots: u32, clock: Arc<dyn Clock>) -> EngineHandle {
    let config = EngineConfig {
        cluster_slot: Some((n, slots)),
        ..Default::default()
    };
    let storage = StorageConfig::in_store(Arc::new(slot.clone()), FsyncPolicy::Always);
    EngineHandle::open(config, clock, Some(storage))
        .expect("opens")
        .0
}

/// One owner per slot on PostgreSQL's clock: its slot, engine and relay.
struct Owner {
    slot: Slot,
    engine: EngineHandle,
    relay: Option<OutboxRelay>,
}

fn owner(url: &str, ns: &str, n: u32, slots: u32) -> Owner {
    let slot = Slot::acquire(&config(url, ns, n, slots, None)).expect("takes the slot");
    let engine = engine(&slot, n, slots, Arc::new(SystemClock));
    let relay = Some(OutboxRelay::start(&slot, engine.clone()).expect("relay starts"));
    Owner {
        slot,
        engine,
        relay,
    }
}

fn owners(url: &str, ns: &str, slots: u32) -> Vec<Owner> {
    (0..slots).map(|n| owner(url, ns, n, slots)).collect()
}

impl Drop for Owner {
    fn drop(&mut self) {
        drop(self.relay.take());
        self.engine.close();
    }
}

fn queue_in(slot: u32, slots: u32, prefix: &str) -> String {
    (0..)
        .map(|i| format!("{prefix}{i}"))
        .find(|q| queue_slot(q, slots) == slot)
        .expect("some name lands in every slot")
}

fn opts(json: &str) -> PushOptions {
    PushOptions::from_json(json.as_bytes(), 1 << 20).expect("test body parses")
}

/// Pushes a flow, answered once its records are synced, as a server answers.
fn push_flow(e: &EngineHandle, flow: Vec<(String, PushOptions)>) {
    let (_, commit) = e.mutate(|e| e.push_flow(flow)).expect("flow pushed");
    if let Some(c) = commit {
        e.wait(c).expect("flow synced");
    }
}

/// A child `c` in `child_queue` of the parent `p` in `parent_queue`.
fn parent_and_child(parent_queue: &str, child_queue: &str) -> Vec<(String, PushOptions)> {
    vec![
        (
            child_queue.to_string(),
            opts(r#"{"jobId":"c","data":1,"parentId":"p"}"#),
        ),
        (
            parent_queue.to_string(),
            opts(r#"{"jobId":"p","data":{},"dependsOn":["c"],"childrenIds":["c"]}"#),
        ),
    ]
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WITHIN;
    while !done() {
        assert!(Instant::now() < deadline, "not within {WITHIN:?}: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn state(e: &EngineHandle, id: &str) -> Option<JobState> {
    e.with(|e| e.state_by_id(id))
}

/// Pulls `id` from `queue` (waiting for it to arrive) and acks it with `result`.
fn run(e: &EngineHandle, queue: &str, id: &str, result: &str) {
    let pulled = e
        .wait_for(WITHIN.as_millis() as u64, |e| e.pull_job(queue, 0))
        .expect("pull")
        .unwrap_or_else(|| panic!("{id} never arrived in {queue}"));
    assert_eq!(pulled.id, id);
    let (_, commit) = e
        .mutate(|e| e.ack(id, Some(&pulled.token), Some(result.into())))
        .expect("ack");
    if let Some(c) = commit {
        e.wait(c).expect("ack synced");
    }
}

fn db(url: &str) -> Client {
    Client::connect(url, NoTls).expect("connects")
}

/// Rows of `ns` in the table: (target, source, seq).
fn rows(url: &str, ns: &str) -> Vec<(i32, i32, i64)> {
    db(url)
        .query(
            "SELECT target_slot, source_slot, seq FROM hopper_outbox WHERE namespace = $1
             ORDER BY 1, 2, 3",
            &[&ns],
        )
        .expect("reads")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

/// Sessions of the relays of `ns` (`slot`: only that slot's).
fn relay_sessions(url: &str, ns: &str, slot: Option<u32>) -> i64 {
    let pattern = match slot {
        Some(s) => format!("hopper-outbox {ns}/{s}"),
        None => format!("hopper-outbox {ns}/%"),
    };
    db(url)
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE $1",
            &[&pattern],
        )
        .expect("reads")
        .get(0)
}

#[test]
fn a_flow_across_three_slots_runs_to_its_parent_and_leaves_no_row() {
    let Some(url) = postgres_url() else { return };
    let ns = "outbox-flow";
    let o = owners(url, ns, 3);
    let (pq, q1, q2) = (
        queue_in(0, 3, "p"),
        queue_in(1, 3, "a"),
        queue_in(2, 3, "b"),
    );
    // Pushed to the first job's slot, as a front sends it: slot 1 holds c1 only.
    push_flow(
        &o[1].engine,
        vec![
            (
                q1.clone(),
                opts(r#"{"jobId":"c1","data":1,"parentId":"p"}"#),
            ),
            (
                q2.clone(),
                opts(r#"{"jobId":"c2","data":2,"parentId":"p"}"#),
            ),
            (
                pq.clone(),
                opts(
                    r#"{"jobId":"p","data":{},"dependsOn":["c1","c2"],"childrenIds":["c1","c2"]}"#,
                ),
            ),
        ],
    );
    run(&o[1].engine, &q1, "c1", r#"{"r":1}"#);
    run(&o[2].engine, &q2, "c2", "2");
    wait_until("the parent is ready", || {
        state(&o[0].engine, "p") == Some(JobState::Waiting)
    });
    let values = o[0].engine.with(|e| e.children_values("p")).unwrap().values;
    assert_eq!(
        values,
        [
            (format!("{q1}:c1"), r#"{"r":1}"#.to_string()),
            (format!("{q2}:c2"), "2".to_string())
        ]
    );
    run(&o[0].engine, &pq, "p", "null");
    wait_until("every row applied and deleted", || rows(url, ns).is_empty());
    for owner in &o {
        let left = owner.engine.outbox_pending(10).unwrap();
        assert!(left.is_empty(), "every message marked delivered");
    }
    // Stopping waits for the threads, which look at their stop within a poll period.
    let started = Instant::now();
    for mut owner in o {
        drop(owner.relay.take());
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    wait_until("their sessions closed", || {
        relay_sessions(url, ns, None) == 0
    });
}

#[test]
fn a_message_delivered_again_is_applied_once() {
    let Some(url) = postgres_url() else { return };
    let ns = "outbox-again";
    let mut o = owners(url, ns, 2);
    // Slot 1's relay is stopped, so the row stays for the test to copy.
    drop(o[1].relay.take());
    let (pq, cq) = (queue_in(0, 2, "p"), queue_in(1, 2, "c"));
    push_flow(&o[0].engine, parent_and_child(&pq, &cq));
    wait_until("the message delivered", || rows(url, ns) == [(1, 0, 1)]);
    let body: Vec<u8> = db(url)
        .query_one(
            "SELECT body FROM hopper_outbox WHERE namespace = $1",
            &[&ns],
        )
        .unwrap()
        .get(0);
    o[1].relay = Some(OutboxRelay::start(&o[1].slot, o[1].engine.clone()).unwrap());
    wait_until("the row applied and deleted", || rows(url, ns).is_empty());
    assert_eq!(state(&o[1].engine, "c"), Some(JobState::Waiting));
    assert_eq!(o[1].engine.inbox_cursor(0), 1);

    // What a new owner of slot 0 does for a message whose "delivered" record it lost.
    db(url)
        .execute(
            "INSERT INTO hopper_outbox (namespace, target_slot, source_slot, seq, body)
             VALUES ($1, 1, 0, 1, $2)",
            &[&ns, &body],
        )
        .unwrap();
    wait_until("the copy skipped and deleted", || rows(url, ns).is_empty());
    assert_eq!(o[1].engine.inbox_cursor(0), 1);
    run(&o[1].engine, &cq, "c", "1");
    let again = o[1].engine.with(|e| e.pull_job(&cq, 0)).unwrap();
    assert!(again.is_none(), "the child was created once");
    wait_until("the parent is ready", || {
        state(&o[0].engine, "p") == Some(JobState::Waiting)
    });
}

#[test]
fn a_fenced_owner_deletes_no_row_and_the_new_owner_applies_it() {
    let Some(url) = postgres_url() else { return };
    let ns = "outbox-fenced";
    let sender = owner(url, ns, 0, 2);
    // Owner A of slot 1 runs on a clock that lags B's by more than the lease: it still
    // thinks it owns the slot when B takes it, so only the fence stops it.
    let (clock_a, clock_b) = (ManualClock::new(T0), ManualClock::new(T0));
    let slot_a = Slot::acquire(&config(url, ns, 1, 2, Some(&clock_a))).unwrap();
    let a = engine(&slot_a, 1, 2, Arc::new(clock_a.clone()));
    clock_b.advance(LEASE_MS + 1);
    let slot_b = Slot::acquire(&config(url, ns, 1, 2, Some(&clock_b))).unwrap();
    assert_eq!(slot_b.epoch(), slot_a.epoch() + 1);

    let (pq, cq) = (queue_in(0, 2, "p"), queue_in(1, 2, "c"));
    push_flow(&sender.engine, parent_and_child(&pq, &cq));
    wait_until("the message delivered", || rows(url, ns) == [(1, 0, 1)]);
    let relay_a = OutboxRelay::start(&slot_a, a.clone()).unwrap();
    wait_until("A found itself fenced", || slot_a.lost().is_some());
    // A applied the message in memory, but its log refused it: the row stays.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(rows(url, ns), [(1, 0, 1)]);
    drop(relay_a);
    a.close();

    let b = engine(&slot_b, 1, 2, Arc::new(clock_b.clone()));
    let relay_b = OutboxRelay::start(&slot_b, b.clone()).unwrap();
    wait_until("B applied and deleted it", || rows(url, ns).is_empty());
    assert_eq!(state(&b, "c"), Some(JobState::Waiting));
    drop(relay_b);
    b.close();
}

#[test]
fn the_relays_reconnect_after_their_sessions_are_cut() {
    let Some(url) = postgres_url() else { return };
    let ns = "outbox-cut";
    let o = owners(url, ns, 2);
    let (pq, cq) = (queue_in(0, 2, "p"), queue_in(1, 2, "c"));
    wait_until("both receivers listening", || {
        relay_sessions(url, ns, None) == 2
    });
    let pattern = format!("hopper-outbox {ns}/%");
    db(url)
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name LIKE $1",
            &[&pattern],
        )
        .unwrap();
    push_flow(&o[0].engine, parent_and_child(&pq, &cq));
    run(&o[1].engine, &cq, "c", "1");
    wait_until("the parent is ready", || {
        state(&o[0].engine, "p") == Some(JobState::Waiting)
    });
    wait_until("every row deleted", || rows(url, ns).is_empty());
}

#[test]
fn a_relay_stops_by_itself_when_its_engine_closes() {
    let Some(url) = postgres_url() else { return };
    let ns = "outbox-close";
    let o = owners(url, ns, 2);
    wait_until("both receivers listening", || {
        relay_sessions(url, ns, None) == 2
    });
    // Closing gives the slot up, which the relay sees: its session goes.
    o[1].engine.close();
    wait_until("slot 1's relay ended", || {
        relay_sessions(url, ns, Some(1)) == 0
    });
    assert_eq!(relay_sessions(url, ns, Some(0)), 1);
}

/// Registry rows of `ns` naming `slot`.
fn registry_rows(url: &str, ns: &str, slot: i32) -> Vec<String> {
    db(url)
        .query(
            "SELECT job_id FROM hopper_ids WHERE namespace = $1 AND slot = $2 ORDER BY 1",
            &[&ns, &slot],
        )
        .expect("reads")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[test]
fn the_owner_sweeps_the_registry_rows_of_ids_it_no_longer_holds() {
    let Some(url) = postgres_url() else { return };
    let ns = "outbox-sweep";
    let slot = Slot::acquire(&config(url, ns, 1, 2, None)).expect("takes the slot");
    let engine = engine(&slot, 1, 2, Arc::new(SystemClock));
    let queue = queue_in(1, 2, "sweep");
    let (_, commit) = engine
        .mutate(|e| e.push(&queue, opts(r#"{"jobId":"held","data":1}"#)))
        .expect("pushed");
    engine
        .wait(commit.expect("a push commits"))
        .expect("synced");
    // Old rows: one the engine holds, 1,200 it does not (more than a page), one naming
    // the other slot; and a fresh one the engine does not hold (a push on its way).
    let mut gone: Vec<String> = (0..1200).map(|i| format!("gone-{i:04}")).collect();
    gone.push("held".into());
    let mut c = db(url);
    c.execute("DELETE FROM hopper_ids WHERE namespace = $1", &[&ns])
        .expect("cleans");
    c.execute(
        "INSERT INTO hopper_ids (namespace, job_id, slot, touched)
         SELECT $1, id, 1, now() - interval '1 hour' FROM unnest($2::text[]) AS id",
        &[&ns, &gone],
    )
    .expect("inserts");
    c.execute(
        "INSERT INTO hopper_ids (namespace, job_id, slot, touched) VALUES
         ($1, 'elsewhere', 0, now() - interval '1 hour'), ($1, 'fresh', 1, now())",
        &[&ns],
    )
    .expect("inserts");
    let timing = SweepTiming {
        every: Duration::from_millis(50),
        min_age: Duration::from_secs(60),
    };
    let relay = OutboxRelay::start_with(&slot, engine.clone(), timing).expect("starts");
    wait_until("the rows of ids the slot does not hold are swept", || {
        registry_rows(url, ns, 1).len() == 2
    });
    assert_eq!(registry_rows(url, ns, 1), ["fresh", "held"]);
    assert_eq!(registry_rows(url, ns, 0), ["elsewhere"]);
    drop(relay);
    engine.close();
}
