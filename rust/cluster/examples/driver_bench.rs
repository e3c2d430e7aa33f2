//! Which PostgreSQL driver suits the log writer: commits per second of one writer thread
//! appending rows one commit at a time (as the group-commit writer does), through
//! - the sync `postgres` crate (runs the connection on the calling thread),
//! - `tokio-postgres` driven from a plain thread (`block_on` on a runtime whose worker
//!   runs the connection: one thread hop per statement),
//! - and the store itself (`Slot`'s fenced append through the engine's `SegmentWriter`).
//!
//! `cargo run --release -p hopper-cluster --example driver_bench` (starts its own
//! PostgreSQL with the test starter; prints one line per case).

use std::time::Instant;

use hopper_cluster::{Slot, SlotConfig};
use hopper_core::LogStore;

// The tests' PostgreSQL starter: one throwaway server for the run.
#[path = "../tests/common/mod.rs"]
mod common;

const ROWS: usize = 2000;
const SIZES: [usize; 2] = [1024, 16 * 1024];

fn report(case: &str, size: usize, started: Instant) {
    let s = started.elapsed().as_secs_f64();
    println!(
        "{case:<28} {size:>6} B rows: {:>7.0} commits/s  ({:.3} ms each)",
        ROWS as f64 / s,
        s * 1000.0 / ROWS as f64
    );
}

const CREATE: &str =
    "CREATE TABLE IF NOT EXISTS bench (id bigserial PRIMARY KEY, b bytea NOT NULL)";
const INSERT: &str = "INSERT INTO bench (b) VALUES ($1)";

fn sync_driver(url: &str, size: usize) {
    let mut c = postgres::Client::connect(url, postgres::NoTls).unwrap();
    c.batch_execute(CREATE).unwrap();
    let st = c.prepare(INSERT).unwrap();
    let row = vec![7u8; size];
    let t = Instant::now();
    for _ in 0..ROWS {
        c.execute(&st, &[&row]).unwrap();
    }
    report("postgres (sync)", size, t);
}

fn async_driver(url: &str, size: usize) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (c, conn) = rt
        .block_on(tokio_postgres::connect(url, tokio_postgres::NoTls))
        .unwrap();
    rt.spawn(conn);
    rt.block_on(c.batch_execute(CREATE)).unwrap();
    let st = rt.block_on(c.prepare(INSERT)).unwrap();
    let row = vec![7u8; size];
    let t = Instant::now();
    for _ in 0..ROWS {
        rt.block_on(c.execute(&st, &[&row])).unwrap();
    }
    report("tokio-postgres (block_on)", size, t);
}

fn store(url: &str, size: usize) {
    let slot = Slot::acquire(&SlotConfig {
        url: url.to_string(),
        namespace: format!("bench-{size}"),
        slot: 0,
        slots: 1,
        broker_id: "bench".into(),
        lease_ms: 60_000,
        advertise_http: String::new(),
        advertise_tcp: String::new(),
        snapshot_chunk_bytes: hopper_cluster::SNAPSHOT_CHUNK_BYTES,
        clock: None,
    })
    .unwrap();
    let segment = slot.create_segment(1, &[0; 12]).unwrap();
    let row = vec![7u8; size];
    let mut offset = 12u64;
    let t = Instant::now();
    for _ in 0..ROWS {
        segment.write_at(&row, offset).unwrap();
        segment.sync().unwrap();
        offset += size as u64;
    }
    report("Slot store (fenced append)", size, t);
}

fn main() {
    let url = common::postgres_url().expect("PostgreSQL is installed");
    for size in SIZES {
        sync_driver(url, size);
        async_driver(url, size);
        store(url, size);
    }
}
