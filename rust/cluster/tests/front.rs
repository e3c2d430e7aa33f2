//! A broker's front in front of a real PostgreSQL: a connection is relayed byte for byte
//! to the backend the slot row names; when the slot moves, relays to the old owner are
//! closed and new connections reach the new one; with no owner a connection is closed
//! after the wait; the front announces its broker.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hopper_cluster::{fetch_view, Front, FrontConfig, Slot, SlotConfig};
use hopper_core::ManualClock;

mod common;
use common::postgres_url;

const T0: u64 = 1_704_067_200_000;
const LEASE_MS: u64 = 5_000;

/// A backend that answers every read with `tag` followed by what it read.
fn backend(tag: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            std::thread::spawn(move || {
                let mut buf = [0u8; 256];
                while let Ok(n @ 1..) = conn.read(&mut buf) {
                    let mut out = tag.as_bytes().to_vec();
                    out.extend_from_slice(&buf[..n]);
                    if conn.write_all(&out).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

fn slot_config(
    url: &str,
    ns: &str,
    broker: &str,
    at: SocketAddr,
    clock: &ManualClock,
) -> SlotConfig {
    SlotConfig {
        url: url.into(),
        namespace: ns.into(),
        slot: 0,
        slots: 1,
        broker_id: broker.into(),
        lease_ms: LEASE_MS,
        advertise_http: at.to_string(),
        advertise_tcp: String::new(),
        snapshot_chunk_bytes: hopper_cluster::SNAPSHOT_CHUNK_BYTES,
        clock: Some(Arc::new(clock.clone())),
    }
}

fn front(url: &str, ns: &str, wait_ms: u64) -> Front {
    let config = FrontConfig {
        url: url.into(),
        namespace: ns.into(),
        broker_id: "f1".into(),
        poll: Duration::from_millis(20),
        connect_wait: Duration::from_millis(wait_ms),
        slots: 1,
    };
    let http = TcpListener::bind("127.0.0.1:0").unwrap();
    Front::start(config, http, None).unwrap()
}

fn connect(front: &Front) -> TcpStream {
    let s = TcpStream::connect(front.http_addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

fn ask(s: &mut TcpStream, what: &str) -> String {
    s.write_all(what.as_bytes()).unwrap();
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// Reads until the relay closes the connection (EOF or reset), bounded by the timeout.
fn closed(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    !matches!(s.read(&mut buf), Ok(1..))
}

#[test]
fn relays_to_the_owner_and_follows_a_takeover() {
    let Some(url) = postgres_url() else { return };
    let ns = "front-move";
    let clock = ManualClock::new(T0);
    let (a, b) = (backend("a:"), backend("b:"));
    let _owner_a = Slot::acquire(&slot_config(url, ns, "a", a, &clock)).unwrap();
    let front = front(url, ns, 5_000);

    let mut first = connect(&front);
    assert_eq!(ask(&mut first, "ping"), "a:ping");
    assert_eq!(ask(&mut first, "again"), "a:again", "one connection, kept");

    clock.advance(LEASE_MS + 1);
    let owner_b = Slot::acquire(&slot_config(url, ns, "b", b, &clock)).unwrap();
    assert_eq!(owner_b.epoch(), 2);
    let started = Instant::now();
    assert!(
        closed(&mut first),
        "a relay to the old owner is closed when the slot moves"
    );
    assert!(started.elapsed() < Duration::from_secs(5));

    let mut second = connect(&front);
    assert_eq!(ask(&mut second, "ping"), "b:ping");
}

#[test]
fn without_an_owner_a_connection_waits_then_is_closed() {
    let Some(url) = postgres_url() else { return };
    let front = front(url, "front-none", 300);
    let mut s = connect(&front);
    let started = Instant::now();
    let _ = s.write_all(b"ping");
    assert!(closed(&mut s));
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(250),
        "closed after {waited:?}"
    );
}

#[test]
fn a_front_announces_its_broker_and_withdraws_on_stop() {
    let Some(url) = postgres_url() else { return };
    let ns = "front-announce";
    // A broker killed two hours ago, and one seen a minute ago.
    let mut c = postgres::Client::connect(url, postgres::NoTls).unwrap();
    let mut f = front(url, ns, 1_000);
    let addr = f.http_addr.to_string();
    let deadline = Instant::now() + Duration::from_secs(10);
    let listed = loop {
        // The front migrates the schema itself; until then there is nothing to read.
        let found = fetch_view(url, ns)
            .ok()
            .and_then(|view| view.brokers.into_iter().find(|b| b.broker_id == "f1"));
        if let Some(b) = found {
            break b;
        }
        assert!(
            Instant::now() < deadline,
            "the front never announced itself"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(listed.http, addr);
    let now: i64 = c
        .query_one(
            "SELECT (extract(epoch from clock_timestamp()) * 1000)::bigint",
            &[],
        )
        .unwrap()
        .get(0);
    for (id, seen) in [("killed", now - 2 * 3_600_000), ("recent", now - 60_000)] {
        c.execute(
            "INSERT INTO hopper_brokers VALUES ($1, $2, '', '', $3, $3)",
            &[&ns, &id, &seen],
        )
        .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let ids = loop {
        let ids: Vec<String> = fetch_view(url, ns)
            .unwrap()
            .brokers
            .into_iter()
            .map(|b| b.broker_id)
            .collect();
        if !ids.iter().any(|i| i == "killed") || Instant::now() > deadline {
            break ids;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        ids,
        ["f1", "recent"],
        "a row unseen for an hour is forgotten, a recent one kept"
    );
    f.stop();
    let view = fetch_view(url, ns).unwrap();
    assert!(view.brokers.iter().all(|b| b.broker_id != "f1"));
}
