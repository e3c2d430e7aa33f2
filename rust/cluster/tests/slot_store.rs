//! A slot's log in a real PostgreSQL: recovery gives the same state as from files; a
//! takeover recovers every committed record and fences the old owner; the lease and
//! the advisory lock decide when a takeover may happen. Time is a manual clock.

use std::sync::Arc;

use hopper_cluster::{ClusterError, Slot, SlotConfig, SCHEMA_VERSION};
use hopper_core::{
    Commit, EngineConfig, EngineHandle, ErrorKind, FsyncPolicy, ManualClock, PushOptions,
    StorageConfig,
};
use postgres::{Client, NoTls};

mod common;
use common::postgres_url;

const T0: u64 = 1_704_067_200_000;
const LEASE_MS: u64 = 5_000;

fn config(url: &str, namespace: &str, broker: &str, clock: &ManualClock) -> SlotConfig {
    SlotConfig {
        url: url.to_string(),
        namespace: namespace.to_string(),
        slot: 0,
        slots: 1,
        broker_id: broker.to_string(),
        lease_ms: LEASE_MS,
        advertise_http: String::new(),
        advertise_tcp: String::new(),
        // Small, so that a test's snapshot spans several rows.
        snapshot_chunk_bytes: 256,
        clock: Some(Arc::new(clock.clone())),
    }
}

fn open(storage: StorageConfig, clock: &ManualClock) -> EngineHandle {
    EngineHandle::open(
        EngineConfig::default(),
        Arc::new(clock.clone()),
        Some(storage),
    )
    .expect("opens")
    .0
}

fn on_slot(slot: &Slot, clock: &ManualClock) -> EngineHandle {
    let store = Arc::new(slot.clone());
    open(StorageConfig::in_store(store, FsyncPolicy::Always), clock)
}

/// Waits for the operation's record like a server answer does.
fn committed<R>(h: &EngineHandle, done: (R, Option<Commit>)) -> Result<R, String> {
    if let Some(c) = done.1 {
        h.wait(c).map_err(|e| e.to_string())?;
    }
    Ok(done.0)
}

fn push(h: &EngineHandle, queue: &str, json: &str) -> Result<String, String> {
    let done = h
        .mutate(|e| e.push(queue, PushOptions::from_json(json.as_bytes(), 1 << 20)?))
        .map_err(|e| e.to_string())?;
    committed(h, done).map(|p| p.id)
}

/// Pushes with options, leases, an ack, a failure with retry, dedup, a pause.
fn workload(h: &EngineHandle, clock: &ManualClock) {
    push(h, "q", r#"{"data":{"n":1},"priority":5,"uniqueKey":"u1"}"#).unwrap();
    push(h, "q", r#"{"data":{"n":2},"delay":60000}"#).unwrap();
    push(h, "q", r#"{"data":"dup","uniqueKey":"u1"}"#).unwrap();
    push(
        h,
        "q",
        r#"{"data":{"n":3},"jobId":"custom-3","maxAttempts":2}"#,
    )
    .unwrap();
    clock.advance(10);
    let (id, token) = h
        .with(|e| e.pull_job("q", 7))
        .unwrap()
        .map(|p| (p.id, p.token))
        .unwrap();
    let done = h.mutate(|e| e.ack(&id, Some(&token), Some(r#"{"ok":1}"#.into())));
    committed(h, done.unwrap()).unwrap();
    let (id, token) = h
        .with(|e| e.pull_job("q", 7))
        .unwrap()
        .map(|p| (p.id, p.token))
        .unwrap();
    let done = h.mutate(|e| e.fail(&id, Some(&token), Some("boom".into())));
    committed(h, done.unwrap()).unwrap();
    let done = h.mutate(|e| e.pause("paused", None)).unwrap();
    committed(h, done).unwrap();
    h.tick();
}

fn dump(h: &EngineHandle) -> String {
    h.with(|e| e.dump_state())
}

/// Epochs of the slot's log rows in log order.
fn row_epochs(url: &str, namespace: &str) -> Vec<i64> {
    let mut c = Client::connect(url, NoTls).unwrap();
    c.query(
        r#"SELECT epoch FROM hopper_log WHERE namespace = $1 ORDER BY segment, "offset""#,
        &[&namespace],
    )
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

#[test]
fn recovery_from_postgres_gives_the_state_recovery_from_files_gives() {
    let Some(url) = postgres_url() else { return };
    let dir = std::env::temp_dir().join(format!("hopper-conformance-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut dumps = Vec::new();
    for on_pg in [false, true] {
        let clock = ManualClock::new(T0);
        let storage = || match on_pg {
            true => {
                let slot = Slot::acquire(&config(url, "conformance", "a", &clock)).unwrap();
                StorageConfig::in_store(Arc::new(slot), FsyncPolicy::Always)
            }
            false => StorageConfig::new(&dir, FsyncPolicy::Always),
        };
        let h = open(storage(), &clock);
        workload(&h, &clock);
        let before = dump(&h);
        h.close();
        // Recovered from the log alone, then from a snapshot plus a log tail.
        let h = open(storage(), &clock);
        assert_eq!(
            dump(&h),
            before,
            "recovered from the log (postgres: {on_pg})"
        );
        h.snapshot_now().unwrap();
        push(&h, "q", r#"{"data":"after-snapshot"}"#).unwrap();
        let before = dump(&h);
        h.close();
        let h = open(storage(), &clock);
        assert_eq!(dump(&h), before, "snapshot + tail (postgres: {on_pg})");
        dumps.push(before);
        h.close();
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(
        dumps[0], dumps[1],
        "files and PostgreSQL recover the same state"
    );
    // The snapshot pruned what it covers: only the segments after it are left.
    let mut c = Client::connect(url, NoTls).unwrap();
    let row = c
        .query_one(
            "SELECT count(DISTINCT segment), min(segment), count(*) FROM hopper_snapshots
             WHERE namespace = 'conformance'",
            &[],
        )
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 1, "one snapshot left");
    assert!(row.get::<_, i64>(2) > 1, "stored in several chunks");
    let covered: i64 = c
        .query_one(
            "SELECT count(*) FROM hopper_log WHERE namespace = 'conformance' AND segment < $1",
            &[&row.get::<_, i32>(1)],
        )
        .unwrap()
        .get(0);
    assert_eq!(covered, 0, "the log rows the snapshot covers are pruned");
}

#[test]
fn the_schema_is_migrated_once_and_a_newer_one_is_refused() {
    let Some(url) = postgres_url() else { return };
    let mut admin = Client::connect(url, NoTls).unwrap();
    admin.batch_execute("CREATE DATABASE schema_test").unwrap();
    let url = format!("{}/schema_test", url.strip_suffix("/postgres").unwrap());
    let clock = ManualClock::new(T0);
    let slot = Slot::acquire(&config(&url, "schema", "a", &clock)).unwrap();
    drop(slot);
    let mut c = Client::connect(&url, NoTls).unwrap();
    let version = |c: &mut Client| -> Vec<i32> {
        let rows = c
            .query("SELECT version FROM hopper_schema_version", &[])
            .unwrap();
        rows.iter().map(|r| r.get(0)).collect()
    };
    assert_eq!(version(&mut c), [SCHEMA_VERSION]);
    clock.advance(LEASE_MS);
    Slot::acquire(&config(&url, "schema", "b", &clock)).expect("a migrated database opens");
    assert_eq!(version(&mut c), [SCHEMA_VERSION]);
    c.execute(
        "UPDATE hopper_schema_version SET version = version + 1",
        &[],
    )
    .unwrap();
    assert!(matches!(
        Slot::acquire(&config(&url, "schema", "c", &clock)),
        Err(ClusterError::SchemaTooNew { found, known }) if found == known + 1
    ));
}

#[test]
fn a_takeover_recovers_every_committed_record_and_fences_the_old_owner() {
    let Some(url) = postgres_url() else { return };
    let ns = "takeover";
    // A's clock lags B's by more than the lease (skew, or a stalled process whose
    // reading of the time is stale): A still thinks it owns the slot when B takes it,
    // so only the epoch fence stops A.
    let clock_a = ManualClock::new(T0);
    let clock = ManualClock::new(T0);
    let slot_a = Slot::acquire(&config(url, ns, "a", &clock_a)).unwrap();
    let a = on_slot(&slot_a, &clock_a);
    let pushed: Vec<String> = (0..50)
        .map(|i| push(&a, &format!("q{}", i % 3), &format!(r#"{{"data":{i}}}"#)).unwrap())
        .collect();
    let committed_state = dump(&a);

    // A stops renewing but is not closed: its session and lock live.
    let b_config = config(url, ns, "b", &clock);
    assert!(matches!(
        Slot::acquire(&b_config),
        Err(ClusterError::LeaseHeld { ref owner, .. }) if owner == "a"
    ));
    clock.advance(LEASE_MS + 1);
    let slot_b = Slot::acquire(&b_config).unwrap();
    assert_eq!(slot_b.epoch(), slot_a.epoch() + 1);
    let b = on_slot(&slot_b, &clock);
    assert_eq!(
        dump(&b),
        committed_state,
        "B recovered every committed record"
    );
    for id in &pushed {
        assert!(
            b.with(|e| e.state_by_id(id).is_some()),
            "job {id} recovered"
        );
    }
    push(&b, "q0", r#"{"data":"from b"}"#).unwrap();

    // A, still believing it owns the slot, writes: refused, and it refuses writes from
    // then on.
    let err = push(&a, "q0", r#"{"data":"from a"}"#).unwrap_err();
    assert!(err.contains("fenced"), "{err}");
    let err = a.check_writable().unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unavailable);
    assert!(matches!(slot_a.renew(), Err(ClusterError::Fenced { .. })));
    assert!(
        a.snapshot_now().is_err(),
        "a fenced owner cannot publish a snapshot"
    );
    let epochs = row_epochs(url, ns);
    let first_b = epochs.iter().position(|e| *e == slot_b.epoch()).unwrap();
    assert!(
        epochs[first_b..].iter().all(|e| *e == slot_b.epoch()),
        "no row of the old epoch after the new one's first: {epochs:?}"
    );
    assert!(!dump(&b).contains("from a"));
    let mut c = Client::connect(url, NoTls).unwrap();
    let old_snapshots: i64 = c
        .query_one(
            "SELECT count(*) FROM hopper_snapshots WHERE namespace = $1",
            &[&ns],
        )
        .unwrap()
        .get(0);
    assert_eq!(old_snapshots, 0);
    a.close();
    b.close();
}

#[test]
fn a_lease_is_taken_over_only_once_it_ends_unless_the_owners_session_died() {
    let Some(url) = postgres_url() else { return };
    let clock = ManualClock::new(T0);
    let ns = "lease";
    let a = Slot::acquire(&config(url, ns, "a", &clock)).unwrap();
    assert!(a.holds_lock());
    let b_config = config(url, ns, "b", &clock);
    clock.advance(LEASE_MS / 2);
    assert_eq!(a.renew().unwrap(), (T0 + LEASE_MS / 2 + LEASE_MS) as i64);
    clock.advance(LEASE_MS - 1);
    assert!(matches!(
        Slot::acquire(&b_config),
        Err(ClusterError::LeaseHeld { .. })
    ));
    clock.advance(1);
    let b = Slot::acquire(&b_config).expect("the lease ended");
    // A still holds the advisory lock, so B owns the slot by the lease alone until A,
    // fenced, lets the lock go and B's renewal takes it.
    assert!(!b.holds_lock());
    assert!(
        matches!(a.renew(), Err(ClusterError::Fenced { mine, current }) if current == mine + 1)
    );
    b.renew().unwrap();
    assert!(b.holds_lock());

    // B's session dies (its connection is cut): C may take over at once, lease or not.
    let c_config = config(url, ns, "c", &clock);
    assert!(matches!(
        Slot::acquire(&c_config),
        Err(ClusterError::LeaseHeld { .. })
    ));
    let mut admin = Client::connect(url, NoTls).unwrap();
    let killed: i64 = admin
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_locks
             WHERE locktype = 'advisory' AND classid::int = hashtext($1) AND objid::int = 0",
            &[&ns],
        )
        .unwrap()
        .get(0);
    assert_eq!(killed, 1);
    let c = wait_for_takeover(&c_config);
    assert_eq!(c.epoch(), b.epoch() + 1);
    assert!(c.holds_lock());
}

#[test]
fn a_takeover_during_appends_keeps_every_push_the_old_owner_acknowledged() {
    let Some(url) = postgres_url() else { return };
    let ns = "race";
    // As in the takeover test, A's clock lags, so only the fence can stop A.
    let (clock_a, clock_b) = (ManualClock::new(T0), ManualClock::new(T0 + LEASE_MS + 1));
    let slot_a = Slot::acquire(&config(url, ns, "a", &clock_a)).unwrap();
    let a = on_slot(&slot_a, &clock_a);
    let pusher = std::thread::spawn(move || {
        let mut acknowledged = Vec::new();
        while let Ok(id) = push(&a, "q", r#"{"data":"a"}"#) {
            acknowledged.push(id);
        }
        a.close();
        acknowledged
    });
    while row_epochs(url, ns).len() < 20 {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let slot_b = Slot::acquire(&config(url, ns, "b", &clock_b)).unwrap();
    let b = on_slot(&slot_b, &clock_b);
    let acknowledged = pusher.join().unwrap();
    assert!(acknowledged.len() >= 19, "{}", acknowledged.len());
    for id in &acknowledged {
        assert!(
            b.with(|e| e.state_by_id(id).is_some()),
            "acknowledged push {id} recovered"
        );
    }
    push(&b, "q", r#"{"data":"b"}"#).unwrap();
    let epochs = row_epochs(url, ns);
    let first_b = epochs.iter().position(|e| *e == slot_b.epoch()).unwrap();
    assert!(epochs[first_b..].iter().all(|e| *e == slot_b.epoch()));
    b.close();
}

#[test]
fn an_owner_whose_lease_ran_out_writes_nothing_until_it_renews() {
    let Some(url) = postgres_url() else { return };
    let clock = ManualClock::new(T0);
    let slot = Slot::acquire(&config(url, "lapse", "a", &clock)).unwrap();
    let h = on_slot(&slot, &clock);
    push(&h, "q", r#"{"data":1}"#).unwrap();
    clock.advance(LEASE_MS);
    // Refused before anything is written: a pull (whose lease record nobody waits for)
    // is not answered either.
    let err = h.check_writable().unwrap_err().message;
    assert!(err.contains("lease ran out"), "{err}");
    assert!(h.mutate(|e| e.pull_job("q", 7)).is_err());
    let err = push(&h, "q", r#"{"data":2}"#).unwrap_err();
    assert!(err.contains("lease ran out"), "{err}");
    slot.renew().unwrap();
    // The log retries what it could not write; once it has, writes are taken again.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while h.check_writable().is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "writes resume after the renewal"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    push(&h, "q", r#"{"data":3}"#).unwrap();
    h.close();
}

#[test]
fn a_kept_lease_holds_the_slot_and_a_dropped_keeper_lets_it_go() {
    let Some(url) = postgres_url() else { return };
    // PostgreSQL's clock and a short lease: the keeper renews every second, so two slow
    // renewals on a busy machine still keep it.
    let config = |broker: &str| SlotConfig {
        lease_ms: 3_000,
        advertise_http: String::new(),
        advertise_tcp: String::new(),
        clock: None,
        ..config(url, "keeper", broker, &ManualClock::new(0))
    };
    let a = Slot::acquire(&config("a")).unwrap();
    let keeper = a.keep_lease().unwrap();
    let kept_until = std::time::Instant::now() + std::time::Duration::from_millis(1500);
    while std::time::Instant::now() < kept_until {
        assert!(matches!(
            Slot::acquire(&config("b")),
            Err(ClusterError::LeaseHeld { .. })
        ));
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    drop(keeper);
    let b = wait_for_takeover(&config("b"));
    assert_eq!(b.epoch(), a.epoch() + 1);
}

/// Retries a takeover for a bounded time: a terminated backend releases its lock a
/// moment after `pg_terminate_backend` returns, and a lease ends on PostgreSQL's clock.
fn wait_for_takeover(config: &SlotConfig) -> Slot {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match Slot::acquire(config) {
            Ok(slot) => return slot,
            Err(ClusterError::LeaseHeld { .. }) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(e) => panic!("no takeover after the owner's session died: {e}"),
        }
    }
}

#[test]
fn a_long_fenced_write_delays_a_takeover_but_not_a_renewal() {
    let Some(url) = postgres_url() else { return };
    let ns = "renew-aside";
    let clock = ManualClock::new(T0);
    let a = Slot::acquire(&config(url, ns, "a", &clock)).unwrap();
    // What a long snapshot insert holds on the slot row, held here from outside.
    let mut writer = Client::connect(url, NoTls).unwrap();
    let mut tx = writer.transaction().unwrap();
    tx.query_one(
        "SELECT epoch FROM hopper_slots WHERE namespace = $1 AND slot = 0 FOR KEY SHARE",
        &[&ns],
    )
    .unwrap();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let renewing = a.clone();
    std::thread::spawn(move || done_tx.send(renewing.renew().map(|_| ())).unwrap());
    let renewed = done_rx.recv_timeout(std::time::Duration::from_secs(5));
    assert!(
        matches!(renewed, Ok(Ok(()))),
        "the renewal waited for the writer: {renewed:?}"
    );

    clock.advance(LEASE_MS * 2);
    let (took_tx, took_rx) = std::sync::mpsc::channel();
    let b_config = config(url, ns, "b", &clock);
    std::thread::spawn(move || {
        took_tx
            .send(Slot::acquire(&b_config).map(|s| s.epoch()))
            .unwrap()
    });
    assert!(
        took_rx
            .recv_timeout(std::time::Duration::from_millis(500))
            .is_err(),
        "a takeover must wait for the fenced write to finish"
    );
    tx.commit().unwrap();
    let took = took_rx
        .recv_timeout(std::time::Duration::from_secs(5))
        .unwrap();
    assert_eq!(took.unwrap(), a.epoch() + 1);
}
