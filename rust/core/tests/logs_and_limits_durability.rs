//! Job logs and queue limits survive a restart: replayed from the log alone, from a
//! snapshot, and from a snapshot with more log on top. Real files in a temp directory,
//! a manual clock.

use std::path::Path;

use hopper_core::{EngineConfig, EngineHandle, ManualClock, PushOptions};

mod common;
use common::data_dir::{open_store, Dir};

const T0: u64 = 1_704_067_200_000;

fn open(dir: &Path, clock: &ManualClock) -> EngineHandle {
    open_store(
        dir,
        clock,
        EngineConfig {
            max_logs_per_job: 4,
            ..EngineConfig::default()
        },
    )
}

fn push(h: &EngineHandle, queue: &str, json: &str) -> String {
    h.mutate(|e| {
        let o = PushOptions::from_json(json.as_bytes(), 1 << 20)?;
        e.push(queue, o)
    })
    .unwrap()
    .0
    .id
}

fn log(h: &EngineHandle, id: &str, message: &str, level: Option<&str>) {
    h.mutate(|e| e.add_log(id, message, level)).unwrap();
}

/// A job's lines as (message, level, timestamp), and its count.
fn lines(h: &EngineHandle, id: &str) -> (Vec<(String, &'static str, u64)>, usize) {
    let page = h.with(|e| e.logs(id, None, None)).unwrap();
    let v = page
        .entries
        .iter()
        .map(|l| (l.message.to_string(), l.level.as_str(), l.timestamp))
        .collect();
    (v, page.total)
}

fn restart(h: EngineHandle, dir: &Path, clock: &ManualClock) -> EngineHandle {
    h.close();
    drop(h);
    open(dir, clock)
}

/// Lines added, bounded, cleared with a keep and freed with their job, each in its own
/// operation or several in one frame, come back exactly.
fn log_workload(h: &EngineHandle, clock: &ManualClock) -> (String, String, String) {
    let a = push(h, "q", r#"{"data":1}"#);
    for i in 0..6 {
        clock.advance(10);
        log(
            h,
            &a,
            &format!("a{i}"),
            Some(["info", "warn", "error"][i % 3]),
        );
    }
    let b = push(h, "q", r#"{"data":2}"#);
    for i in 0..3 {
        log(h, &b, &format!("b{i}"), None);
    }
    h.mutate(|e| e.clear_logs(&b, Some(1))).unwrap();
    let gone = push(h, "q", r#"{"data":3}"#);
    log(h, &gone, "bye", None);
    h.mutate(|e| e.remove(&gone)).unwrap();
    // A push and its lines in one frame (as a batch of protocol commands is): the
    // lines follow the job's record.
    let (c, _) = h.apply(|e| {
        let o = PushOptions::from_json(br#"{"data":4}"#, 1 << 20).unwrap();
        let c = e.push("q", o).unwrap().id;
        e.add_log(&c, "c0", None).unwrap();
        e.add_log(&c, "c1", None).unwrap();
        e.clear_logs(&c, Some(1)).unwrap();
        e.add_log(&c, "c2", Some("warn")).unwrap();
        c
    });
    (a, b, c)
}

#[test]
fn job_logs_survive_a_restart_from_the_log_and_from_a_snapshot() {
    let dir = Dir::new("logs");
    let clock = ManualClock::new(T0);
    let h = open(&dir.0, &clock);
    let (a, b, c) = log_workload(&h, &clock);
    let want_a = lines(&h, &a);
    assert_eq!(want_a.1, 4, "bounded to max_logs_per_job");
    assert_eq!(want_a.0[0], ("a2".into(), "error", T0 + 30));
    assert_eq!(lines(&h, &b).0.len(), 1);
    let want_c: Vec<String> = lines(&h, &c).0.into_iter().map(|l| l.0).collect();
    assert_eq!(want_c, ["c1", "c2"]);
    let before = h.with(|e| e.dump_state());
    assert!(before.contains("logs base=2"), "{before}");

    // From the log alone.
    let h = restart(h, &dir.0, &clock);
    assert_eq!(h.with(|e| e.dump_state()), before);
    assert_eq!(lines(&h, &a), want_a);

    // From a snapshot, then more lines and clears on top of it.
    h.snapshot_now().unwrap();
    let h = restart(h, &dir.0, &clock);
    assert_eq!(h.with(|e| e.dump_state()), before);
    log(&h, &a, "after-snapshot", None);
    h.mutate(|e| e.clear_logs(&b, None)).unwrap();
    log(&h, &b, "b-again", None);
    let before = h.with(|e| e.dump_state());
    let h = restart(h, &dir.0, &clock);
    assert_eq!(h.with(|e| e.dump_state()), before);
    assert_eq!(lines(&h, &a).0.last().unwrap().0, "after-snapshot");
    assert_eq!(lines(&h, &b).0, vec![("b-again".into(), "info", T0 + 60)]);

    // Lines added after the restart continue the numbering (no duplicates on replay).
    log(&h, &b, "b-next", None);
    let before = h.with(|e| e.dump_state());
    let h = restart(h, &dir.0, &clock);
    assert_eq!(h.with(|e| e.dump_state()), before);
    assert_eq!(lines(&h, &b).1, 2);
}

#[test]
fn queue_limits_survive_a_restart_and_are_enforced_after_it() {
    let dir = Dir::new("limits");
    let clock = ManualClock::new(T0);
    let h = open(&dir.0, &clock);
    for i in 0..6 {
        push(&h, "q", &format!(r#"{{"data":{i}}}"#));
    }
    h.mutate(|e| e.set_concurrency("q", 2)).unwrap();
    h.mutate(|e| e.set_rate_limit("r", 5, 1000, None)).unwrap();
    h.mutate(|e| e.set_rate_limit("t", 1, 1000, Some(60_000)))
        .unwrap();
    h.mutate(|e| e.set_concurrency("gone", 1)).unwrap();
    h.mutate(|e| e.obliterate("gone", true)).unwrap();
    let pulled = h.with(|e| e.pull_job("q", 0)).unwrap().unwrap();
    let before = h.with(|e| e.dump_state());
    assert!(before.contains("concurrency: Some(2)"), "{before}");

    let h = restart(h, &dir.0, &clock);
    assert_eq!(h.with(|e| e.dump_state()), before);
    let limits = |h: &EngineHandle, q: &str| h.with(|e| e.queue_limits(q, None));
    assert_eq!(limits(&h, "q").concurrency_limit, Some(2));
    let r = limits(&h, "r").rate_limit.unwrap();
    assert_eq!((r.max, r.duration_ms, r.expires_at), (5, 1000, None));
    assert_eq!(limits(&h, "t").rate_limit_ttl, 60_000);
    assert_eq!(limits(&h, "gone").concurrency_limit, None);
    // The job active before the restart still holds one of the two slots.
    assert!(h.with(|e| e.pull_job("q", 0)).unwrap().is_some());
    assert!(h.with(|e| e.pull_job("q", 0)).unwrap().is_none());
    h.mutate(|e| e.ack(&pulled.id, None, None)).unwrap();
    assert!(h.with(|e| e.pull_job("q", 0)).unwrap().is_some());

    // Through a snapshot, with a change on top of it.
    h.snapshot_now().unwrap();
    h.mutate(|e| e.clear_rate_limit("r")).unwrap();
    let before = h.with(|e| e.dump_state());
    let h = restart(h, &dir.0, &clock);
    assert_eq!(h.with(|e| e.dump_state()), before);
    assert_eq!(limits(&h, "r").rate_limit, None);
    assert_eq!(limits(&h, "q").concurrency_limit, Some(2));
    // The ttl counts from when it was set, not from the restart.
    clock.advance(60_000);
    assert_eq!(limits(&h, "t").rate_limit, None);
    let h = restart(h, &dir.0, &clock);
    assert_eq!(limits(&h, "t").rate_limit, None);
    h.close();
}
