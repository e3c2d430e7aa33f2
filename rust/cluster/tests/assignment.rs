//! Several slots on a real PostgreSQL: the slot count is fixed on a cluster's first start;
//! a standby takes a slot at once when it ranks first among the live brokers with a
//! standby for the slot, and only after the slot stood vacant otherwise; an owner learns
//! that a settled broker with a standby ranks first and, once it gives the slot up, that
//! broker takes it; a broker with no standby for the slot is passed over.

use std::time::{Duration, Instant};

use hopper_cluster::{prepare, ClusterError, Slot, SlotConfig, Standby};
use hopper_core::cluster_slots::preferred_owner;
use hopper_core::LogStore;
use postgres::{Client, NoTls};

mod common;
use common::postgres_url;

const SLOTS: u32 = 8;
const NOW: &str = "(extract(epoch from clock_timestamp()) * 1000)::bigint";

fn config(url: &str, ns: &str, broker: &str, slot: u32) -> SlotConfig {
    SlotConfig {
        url: url.into(),
        namespace: ns.into(),
        slot: slot as i32,
        slots: SLOTS,
        broker_id: broker.into(),
        lease_ms: 600,
        advertise_http: String::new(),
        advertise_tcp: String::new(),
        snapshot_chunk_bytes: hopper_cluster::SNAPSHOT_CHUNK_BYTES,
        clock: None,
    }
}

/// Marks `brokers` live and up for 10 s (settled), as their fronts would.
fn announce(c: &mut Client, ns: &str, brokers: &[&str]) {
    for b in brokers {
        c.execute(
            &format!(
                "INSERT INTO hopper_brokers VALUES ($1, $2, '', '', {NOW} - 10000, {NOW})
                 ON CONFLICT (namespace, broker_id) DO UPDATE SET seen_ms = {NOW}"
            ),
            &[&ns, b],
        )
        .unwrap();
    }
}

/// What a running standby of `broker` for `slot` holds (`assignment.rs`): a shared
/// advisory lock on a session of its own, kept while the returned client lives.
fn standby_of(url: &str, ns: &str, broker: &str, slot: u32) -> Client {
    let mut c = Client::connect(url, NoTls).unwrap();
    c.execute(
        "SELECT pg_advisory_lock_shared(hashtext($1), hashtext($2))",
        &[&format!("{ns} standby {slot}"), &broker],
    )
    .unwrap();
    c
}

/// The broker `owner`'s lease renewals find ranked first, waited for (bounded) while
/// `a` and `b` stay live.
fn handoff_seen(owner: &Slot, c: &mut Client, ns: &str) -> Option<String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    while owner.handoff_to().is_none() && Instant::now() < deadline {
        announce(c, ns, &["a", "b"]);
        std::thread::sleep(Duration::from_millis(50));
    }
    owner.handoff_to()
}

fn client(url: &str, ns: &str) -> Client {
    prepare(url, ns, SLOTS).unwrap();
    Client::connect(url, NoTls).unwrap()
}

/// A slot `first` ranks first for among `brokers`.
fn slot_of(first: &str, brokers: &[&str]) -> u32 {
    (0..SLOTS)
        .find(|&s| preferred_owner(brokers.iter().copied(), s) == Some(first))
        .expect("every broker ranks first for one of 8 slots")
}

#[test]
fn the_slot_count_is_fixed_when_the_cluster_starts() {
    let Some(url) = postgres_url() else { return };
    prepare(url, "slot-count", 4).unwrap();
    prepare(url, "slot-count", 4).unwrap();
    match prepare(url, "slot-count", 2) {
        Err(e @ ClusterError::SlotCount { fixed: 4, asked: 2 }) => {
            assert!(e.to_string().contains("HOPPER_SLOTS=4"), "{e}")
        }
        other => panic!("a second count must be refused: {other:?}"),
    }
}

#[test]
fn the_broker_ranked_first_takes_a_vacant_slot_at_once_another_after_the_grace() {
    let Some(url) = postgres_url() else { return };
    let ns = "turns";
    let mut c = client(url, ns);
    announce(&mut c, ns, &["a", "b"]);
    let slot = slot_of("a", &["a", "b"]);
    let _a_waits = standby_of(url, ns, "a", slot);

    // b does not rank first: the slot is vacant (no owner yet), but b waits the grace.
    let mut standby = Standby::default();
    match standby.take(&config(url, ns, "b", slot)) {
        Err(ClusterError::NotYourTurn { preferred }) => assert_eq!(preferred, "a"),
        other => panic!("b must wait for a: {:?}", other.map(|s| s.epoch())),
    }
    std::thread::sleep(Duration::from_millis(1_100));
    announce(&mut c, ns, &["a", "b"]);
    let b = standby
        .take(&config(url, ns, "b", slot))
        .expect("vacant past the grace: b takes it");

    // a ranks first, but the slot is b's while its lease runs.
    assert!(matches!(
        Standby::default().take(&config(url, ns, "a", slot)),
        Err(ClusterError::LeaseHeld { .. })
    ));

    // b's renewals notice that a (settled, live) ranks first.
    let keeper = b.keep_lease().unwrap();
    assert_eq!(handoff_seen(&b, &mut c, ns).as_deref(), Some("a"));

    // b gives the slot up (its engine closes): a takes it at once, a new epoch.
    drop(keeper);
    b.release();
    let a = Standby::default()
        .take(&config(url, ns, "a", slot))
        .expect("a ranks first and the slot was given up");
    assert_eq!(a.epoch(), b.epoch() + 1);
}

#[test]
fn a_standby_ranked_first_takes_the_slot_of_a_dead_owner_at_once() {
    let Some(url) = postgres_url() else { return };
    let ns = "dead-owner";
    let mut c = client(url, ns);
    announce(&mut c, ns, &["a", "b"]);
    let slot = slot_of("b", &["a", "b"]);
    // a takes b's slot while b is not live yet (a standby's grace passes first).
    c.execute(
        "DELETE FROM hopper_brokers WHERE namespace = $1 AND broker_id = 'b'",
        &[&ns],
    )
    .unwrap();
    let mut standby = Standby::default();
    let deadline = Instant::now() + Duration::from_secs(5);
    let a = loop {
        match standby.take(&config(url, ns, "a", slot)) {
            Ok(a) => break a,
            Err(ClusterError::NotYourTurn { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100))
            }
            Err(e) => panic!("{e}"),
        }
    };
    // a's session ends (its process died): b, live and ranked first, takes over at once
    // although a's lease still runs.
    announce(&mut c, ns, &["a", "b"]);
    let epoch = a.epoch();
    c.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory'
         AND classid = hashtext($1)::oid AND objid = ($2::integer)::oid AND objsubid = 2",
        &[&ns, &(slot as i32)],
    )
    .unwrap();
    drop(a);
    let b = Standby::default()
        .take(&config(url, ns, "b", slot))
        .expect("b ranks first and a's session is gone");
    assert_eq!(b.epoch(), epoch + 1);
}

#[test]
fn a_broker_with_no_standby_for_the_slot_is_passed_over() {
    let Some(url) = postgres_url() else { return };
    let ns = "no-standby";
    let mut c = client(url, ns);
    announce(&mut c, ns, &["a", "b"]);
    let slot = slot_of("a", &["a", "b"]);
    // a ranks first but runs no standby for the slot (its slot server did not start):
    // b takes the vacant slot at once, without the grace.
    let b = Standby::default()
        .take(&config(url, ns, "b", slot))
        .expect("a cannot take the slot, so b is first");
    // Nor does b hand it to a while a has no standby for it.
    let keeper = b.keep_lease().unwrap();
    for _ in 0..10 {
        announce(&mut c, ns, &["a", "b"]);
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(b.handoff_to(), None);
    // Once a's standby runs, b's renewals see that a ranks first.
    let _a_waits = standby_of(url, ns, "a", slot);
    assert_eq!(handoff_seen(&b, &mut c, ns).as_deref(), Some("a"));
    drop(keeper);
}
