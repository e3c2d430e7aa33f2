//! Group commit in isolation: N threads each pushing `durable` jobs one at a time and
//! waiting for each to be synced, on a real data directory with real fdatasync, no
//! Python and no HTTP. Shows how many producers one sync serves.
//!
//!     cargo run --release -p hopper-core --example group_commit -- [dir] [seconds]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hopper_core::{
    EngineConfig, EngineHandle, FsyncPolicy, PushOptions, StorageConfig, SystemClock,
};

const BODY: &[u8] = br#"{"data":{"to":"user@example.com","subject":"Welcome aboard!!!","template":"welcome-v2-2026","n":1},"durable":true}"#;

fn run(dir: &std::path::Path, threads: usize, seconds: f64) -> f64 {
    let _ = std::fs::remove_dir_all(dir);
    let storage = StorageConfig::new(dir, FsyncPolicy::Interval(Duration::from_millis(10)));
    let (h, _) = EngineHandle::open(
        EngineConfig::default(),
        Arc::new(SystemClock),
        Some(storage),
    )
    .expect("opens");
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let start = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let (h, done) = (h.clone(), done.clone());
            std::thread::spawn(move || {
                while Instant::now() < deadline {
                    let (_, commit) = h
                        .mutate(|e| e.push("q", PushOptions::from_json(BODY, 1 << 20)?))
                        .expect("push");
                    h.wait(commit.expect("pushes wait")).expect("committed");
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("worker");
    }
    let rate = done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64();
    h.close();
    rate
}

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = std::path::PathBuf::from(
        args.next()
            .unwrap_or_else(|| "/tmp/hopper-group-commit".into()),
    );
    let seconds: f64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(3.0);
    let one = run(&dir, 1, seconds);
    println!("producers  durable pushes/s  vs 1 producer");
    println!("{:>9}  {:>16.0}  {:>12.1}x", 1, one, 1.0);
    for n in [16, 64] {
        let rate = run(&dir, n, seconds);
        println!("{n:>9}  {rate:>16.0}  {:>12.1}x", rate / one);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
