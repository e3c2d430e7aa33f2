//! Durability: state survives a restart exactly; torn tails are cut, damage in the
//! middle stops start-up unless repairing; snapshots compact the log; a failing disk
//! refuses writes and loses nothing committed. Real files in a temp directory.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use hopper_core::list_data_dir as list;
use hopper_core::{
    EngineConfig, EngineHandle, ErrorKind, FsyncPolicy, ManualClock, PushOptions, StorageConfig,
};

mod common;
use common::data_dir::Dir;

const T0: u64 = 1_704_067_200_000;

fn open_with(
    dir: &Path,
    clock: &ManualClock,
    cfg: impl FnOnce(&mut StorageConfig),
) -> Result<EngineHandle, String> {
    let mut storage = StorageConfig::new(dir, FsyncPolicy::Always);
    cfg(&mut storage);
    EngineHandle::open(
        EngineConfig::default(),
        Arc::new(clock.clone()),
        Some(storage),
    )
    .map(|(h, _)| h)
}

fn open(dir: &Path, clock: &ManualClock) -> EngineHandle {
    open_with(dir, clock, |_| {}).expect("opens")
}

fn push(h: &EngineHandle, queue: &str, json: &str) -> String {
    h.mutate(|e| {
        let o = PushOptions::from_json(json.as_bytes(), 1 << 20)?;
        e.push(queue, o)
    })
    .unwrap_or_else(|e| panic!("push {json}: {e}"))
    .0
    .id
}

fn pull(h: &EngineHandle, queue: &str) -> (String, String) {
    h.with(|e| e.pull_job(queue, 7))
        .unwrap()
        .map(|p| (p.id, p.token))
        .expect("a job")
}

fn dump(h: &EngineHandle) -> String {
    h.with(|e| e.dump_state())
}

/// Exercises every kind of record: pushes with every option, leases, acks with results,
/// retries, dead letters, progress, pauses, edits, removals, dedup, flows, repeats,
/// metrics and an obliterated queue.
fn workload(h: &EngineHandle, clock: &ManualClock) {
    let a = push(
        h,
        "q",
        r#"{"data":{"n":1},"name":"welcome","priority":5,"uniqueKey":"u1","tags":["x"],"groupId":"g"}"#,
    );
    push(h, "q", r#"{"data":{"n":2},"delay":60000,"ttl":600000}"#);
    push(
        h,
        "q",
        r#"{"data":{"n":3},"lifo":true,"maxAttempts":1,"removeOnComplete":2}"#,
    );
    push(h, "q", r#"{"data":"dup","uniqueKey":"u1"}"#);
    let child = push(
        h,
        "q",
        r#"{"data":{"n":4},"jobId":"child-1","timeout":5000}"#,
    );
    let parent = push(
        h,
        "q",
        &format!(r#"{{"data":{{"p":1}},"dependsOn":["{child}"]}}"#),
    );
    push(
        h,
        "r",
        r#"{"data":{"every":1},"repeat":{"every":1000,"limit":3}}"#,
    );
    push(h, "gone", r#"{"data":1}"#);
    h.mutate(|e| e.obliterate("gone", false)).unwrap();
    h.mutate(|e| e.pause("q", Some("welcome"))).unwrap();
    h.mutate(|e| e.pause("paused-q", None)).unwrap();
    clock.advance(10);
    let (j1, t1) = pull(h, "q");
    h.mutate(|e| e.progress(&j1, Some(&t1), 50)).unwrap();
    h.mutate(|e| e.ack(&j1, Some(&t1), Some(r#"{"ok":1}"#.into())))
        .unwrap();
    clock.advance(10);
    let (j2, t2) = pull(h, "q");
    h.mutate(|e| e.fail(&j2, Some(&t2), Some("boom".into())))
        .unwrap();
    let (r1, rt) = pull(h, "r");
    clock.advance(25);
    h.mutate(|e| e.ack(&r1, Some(&rt), None)).unwrap();
    h.mutate(|e| e.resume("q", Some("welcome"))).unwrap();
    h.mutate(|e| e.update(&a, Some(r#"{"n":"edited"}"#.into()), Some(9)))
        .unwrap();
    let (j3, _t3) = pull(h, "q");
    let _ = (j3, parent);
    h.tick();
}

#[test]
fn state_after_a_clean_restart_equals_state_before() {
    let dir = Dir::new("restart");
    let clock = ManualClock::new(T0);
    let h = open(&dir.0, &clock);
    workload(&h, &clock);
    let before = dump(&h);
    assert!(
        before.contains("child-1") && before.contains("edited"),
        "{before}"
    );
    h.close();
    drop(h);
    let h = open(&dir.0, &clock);
    assert_eq!(dump(&h), before);
    // And again after a snapshot plus more log on top of it.
    h.snapshot_now().unwrap();
    push(&h, "q", r#"{"data":"after-snapshot"}"#);
    clock.advance(1000);
    h.tick();
    let (id, token) = pull(&h, "r");
    h.mutate(|e| e.fail(&id, Some(&token), Some("late".into())))
        .unwrap();
    let before = dump(&h);
    h.close();
    drop(h);
    let listing = list(&dir.0).unwrap();
    assert_eq!(listing.snapshots.len(), 1);
    assert!(
        listing
            .segments
            .iter()
            .all(|(n, _)| *n >= listing.snapshots[0].0),
        "covered segments are deleted"
    );
    let h = open(&dir.0, &clock);
    assert_eq!(dump(&h), before);
}

#[test]
fn a_second_process_cannot_open_a_locked_directory() {
    let dir = Dir::new("lock");
    let clock = ManualClock::new(T0);
    let _h = open(&dir.0, &clock);
    let err = open_with(&dir.0, &clock, |_| {}).err().expect("refused");
    assert!(err.contains("in use by another hopper process"), "{err}");
}

fn last_segment(dir: &Path) -> PathBuf {
    list(dir).unwrap().segments.last().unwrap().1.clone()
}

/// The largest segment (new processes start a fresh, empty one).
fn fullest_segment(dir: &Path) -> PathBuf {
    let l = list(dir).unwrap();
    l.segments
        .iter()
        .max_by_key(|(_, p)| std::fs::metadata(p).unwrap().len())
        .unwrap()
        .1
        .clone()
}

#[test]
fn a_torn_tail_is_cut_and_everything_before_it_survives() {
    let dir = Dir::new("torn");
    let clock = ManualClock::new(T0);
    let h = open(&dir.0, &clock);
    let ids: Vec<String> = (0..20)
        .map(|i| push(&h, "q", &format!(r#"{{"data":{i}}}"#)))
        .collect();
    h.close();
    drop(h);
    let seg = last_segment(&dir.0);
    let len = std::fs::metadata(&seg).unwrap().len();
    // A half-written record: cut the file inside the last frame, then append junk.
    let f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
    f.set_len(len - 5).unwrap();
    drop(f);
    let (h, report) = EngineHandle::open(
        EngineConfig::default(),
        Arc::new(clock.clone()),
        Some(StorageConfig::new(&dir.0, FsyncPolicy::Always)),
    )
    .unwrap();
    let warnings = report.unwrap().recovered.warnings;
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("dropped") && w.contains("bytes at the end")),
        "{warnings:?}"
    );
    let counts = h.with(|e| e.counts("q"));
    // The last frame (the counters, written after the 20th push) or the 20th push is lost.
    assert!(counts[0] >= 19, "{counts:?}");
    for id in &ids[..19] {
        assert!(h.with(|e| e.slot_of(id)).is_some(), "{id} survived");
    }
}

#[test]
fn damage_in_the_middle_stops_start_up_and_repair_keeps_the_rest() {
    let dir = Dir::new("middle");
    let clock = ManualClock::new(T0);
    let h = open(&dir.0, &clock);
    for i in 0..50 {
        // Each push written before the next, so each job has a frame of its own.
        let (_, commit) = h
            .mutate(|e| {
                let json = format!(r#"{{"data":{{"i":{i},"pad":"xxxxxxxxxxxxxxxxxxxx"}}}}"#);
                e.push("q", PushOptions::from_json(json.as_bytes(), 1 << 20)?)
            })
            .unwrap();
        if let Some(c) = commit {
            h.wait(c).unwrap();
        }
    }
    h.close();
    drop(h);
    // Damage the middle job's record: its frame fails its checksum.
    let seg = fullest_segment(&dir.0);
    let mut bytes = std::fs::read(&seg).unwrap();
    let marker = br#""i":25,"#;
    let at = bytes
        .windows(marker.len())
        .position(|w| w == marker)
        .expect("the 26th job's data is in the log");
    bytes[at + 1] ^= 0xFF;
    std::fs::write(&seg, &bytes).unwrap();

    let err = open_with(&dir.0, &clock, |_| {})
        .err()
        .expect("refuses to start");
    assert!(err.contains("--repair") && err.contains("damaged"), "{err}");

    let h = open_with(&dir.0, &clock, |c| c.repair = true).expect("repair starts");
    let waiting = h.with(|e| e.counts("q"))[0];
    assert_eq!(
        waiting, 49,
        "the damaged job's frame is lost, the rest kept"
    );
    let before = dump(&h);
    h.close();
    drop(h);
    // The repair rewrote the state into a snapshot: a normal start now works.
    let h = open(&dir.0, &clock);
    assert_eq!(dump(&h), before);
}

#[test]
fn an_unfinished_snapshot_is_ignored() {
    let dir = Dir::new("tmp-snap");
    let clock = ManualClock::new(T0);
    let h = open(&dir.0, &clock);
    push(&h, "q", r#"{"data":1}"#);
    let before = dump(&h);
    h.close();
    drop(h);
    // What a crash between writing the temp file and the rename leaves behind.
    std::fs::write(
        dir.0.join("snapshot-0000000009.snap.tmp"),
        b"HOPRSNP1 half a snapshot",
    )
    .unwrap();
    let h = open(&dir.0, &clock);
    assert_eq!(dump(&h), before);
    assert!(list(&dir.0).unwrap().temporaries.is_empty());
}

#[test]
fn a_failing_disk_refuses_writes_keeps_reads_and_recovers() {
    let dir = Dir::new("enospc");
    let clock = ManualClock::new(T0);
    let h = open(&dir.0, &clock);
    let kept = push(&h, "q", r#"{"data":"kept"}"#);
    h.inject_io_failure(true).unwrap();
    // The next write fails at the disk: its caller waits for the sync and gets the error.
    let (_, commit) = h
        .mutate(|e| {
            e.push(
                "q",
                PushOptions::from_json(br#"{"data":"in flight"}"#, 1 << 20)?,
            )
        })
        .unwrap();
    let commit = commit.expect("a change waits");
    assert!(commit.synced, "always policy waits for the sync");
    let err = h.wait(commit).unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unavailable);
    assert!(err.message.contains("No space left"), "{}", err.message);
    // While failing, new writes are refused and nothing changes; reads still work.
    let refused = h
        .mutate(|e| {
            e.push(
                "q",
                PushOptions::from_json(br#"{"data":"refused"}"#, 1 << 20)?,
            )
        })
        .unwrap_err();
    assert_eq!(refused.kind, ErrorKind::Unavailable);
    assert_eq!(h.with(|e| e.counts("q"))[0], 2);
    assert!(h.storage_error().is_some());
    // Space comes back: the held records are written and writes are accepted again.
    h.inject_io_failure(false).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while h.storage_error().is_some() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(h.storage_error().is_none());
    let after = push(&h, "q", r#"{"data":"after"}"#);
    let before = dump(&h);
    h.close();
    drop(h);
    let h = open(&dir.0, &clock);
    assert_eq!(dump(&h), before);
    for id in [&kept, &after] {
        assert!(h.with(|e| e.slot_of(id)).is_some());
    }
}

#[test]
fn concurrent_durable_pushes_share_syncs_and_all_survive() {
    let dir = Dir::new("group");
    let clock = ManualClock::new(T0);
    let h = open_with(&dir.0, &clock, |c| {
        c.policy = FsyncPolicy::Interval(std::time::Duration::from_millis(50))
    })
    .unwrap();
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let h = h.clone();
            std::thread::spawn(move || {
                (0..50)
                    .map(|i| {
                        let body = format!(r#"{{"data":{{"t":{t},"i":{i}}},"durable":true}}"#);
                        let (out, commit) = h
                            .mutate(|e| {
                                e.push("q", PushOptions::from_json(body.as_bytes(), 1 << 20)?)
                            })
                            .unwrap();
                        let commit = commit.expect("a push waits");
                        assert!(commit.synced, "a durable push waits under every policy");
                        h.wait(commit).unwrap();
                        out.id
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let ids: Vec<String> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    assert_eq!(ids.len(), 400);
    // No close: the data must already be on disk. Dropping the handle without closing
    // leaves the threads running, so open a second engine on a copy of the directory.
    let copy = Dir::new("group-copy");
    std::fs::create_dir_all(&copy.0).unwrap();
    for (_, p) in list(&dir.0).unwrap().segments {
        std::fs::copy(&p, copy.0.join(p.file_name().unwrap())).unwrap();
    }
    let h2 = open(&copy.0, &clock);
    for id in &ids {
        assert!(h2.with(|e| e.slot_of(id)).is_some(), "{id}");
    }
    h.close();
}

#[test]
fn a_change_is_written_by_its_caller_and_synced_only_by_the_policy() {
    let dir = Dir::new("written");
    let clock = ManualClock::new(T0);
    let h = open_with(&dir.0, &clock, |c| {
        c.policy = FsyncPolicy::Interval(std::time::Duration::from_secs(3600))
    })
    .unwrap();
    let body = br#"{"data":"x"}"#;
    let (_, commit) = h
        .mutate(|e| e.push("q", PushOptions::from_json(body, 1 << 20)?))
        .unwrap();
    let commit = commit.expect("a change waits");
    assert!(
        !commit.synced,
        "interval: the answer waits for the write only"
    );
    // Written on this thread, or, if the writer thread holds the output at that moment
    // (it woke for its nap and found the record), by it at once: either way long before
    // the hour-long interval. Asserting right after `write_now` raced that writer.
    h.write_now();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !h.reached(commit) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    assert!(
        h.reached(commit),
        "written without waiting for the interval"
    );
    assert!(h.written_lsn() >= commit.lsn);
    assert!(
        h.durable_lsn() < commit.lsn,
        "not synced before the interval"
    );
    // A record nobody waits for (a lease) is written by the writer's next nap.
    let (_, lease) = h.mutate(|e| e.pull("q", 0)).unwrap();
    let lease = lease.expect("a lease is logged");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !h.reached(lease) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert!(h.reached(lease), "the writer thread wrote the lease");
    h.close();
}

#[test]
fn callers_writing_their_own_records_leave_segment_switches_to_the_writer() {
    let dir = Dir::new("switch");
    let clock = ManualClock::new(T0);
    let h = open_with(&dir.0, &clock, |c| {
        c.policy = FsyncPolicy::Interval(std::time::Duration::from_millis(5));
        c.segment_bytes = 4096;
    })
    .unwrap();
    for i in 0..300 {
        let body = format!(r#"{{"data":{{"i":{i},"pad":"{}"}}}}"#, "x".repeat(100));
        let (_, commit) = h
            .mutate(|e| e.push("q", PushOptions::from_json(body.as_bytes(), 1 << 20)?))
            .unwrap();
        // What the servers and the embedded API do: write on this thread, then wait.
        h.wait(commit.expect("a push waits")).unwrap();
    }
    let segments = list(&dir.0).unwrap().segments.len();
    assert!(segments > 5, "the log switched segments: {segments}");
    let before = dump(&h);
    h.close();
    drop(h);
    let h = open(&dir.0, &clock);
    assert_eq!(dump(&h), before);
    h.close();
}

#[test]
fn a_flow_survives_a_restart_with_its_links_and_children_values() {
    let dir = Dir::new("flow");
    let clock = ManualClock::new(T0);
    let h = open(&dir.0, &clock);
    let flow = |json: &str| PushOptions::from_json(json.as_bytes(), 1 << 20).unwrap();
    h.mutate(|e| {
        e.push_flow(vec![
            (
                "fa".into(),
                flow(r#"{"jobId":"k1","data":1,"maxAttempts":1,"parentId":"pp","continueParentOnFailure":true}"#),
            ),
            ("fb".into(), flow(r#"{"jobId":"k2","data":2,"parentId":"pp"}"#)),
            (
                "fp".into(),
                flow(r#"{"jobId":"pp","data":0,"dependsOn":["k1","k2"],"childrenIds":["k1","k2"]}"#),
            ),
        ])
    })
    .unwrap();
    let (id, token) = pull(&h, "fb");
    h.mutate(|e| e.ack(&id, Some(&token), Some("\"two\"".into())))
        .unwrap();
    let before = dump(&h);
    h.close();
    drop(h);
    let h = open(&dir.0, &clock);
    assert_eq!(dump(&h), before);
    let values = h.with(|e| e.children_values("pp")).unwrap();
    assert_eq!(
        values.values,
        [("fb:k2".to_string(), "\"two\"".to_string())]
    );
    // The child's policy survived too: its failure releases the parent.
    let (id, token) = pull(&h, "fa");
    h.mutate(|e| e.fail(&id, Some(&token), Some("bad".into())))
        .unwrap();
    let (id, _) = pull(&h, "fp");
    assert_eq!(id, "pp");
    h.snapshot_now().unwrap();
    let before = dump(&h);
    h.close();
    drop(h);
    let h = open(&dir.0, &clock);
    assert_eq!(dump(&h), before);
    let values = h.with(|e| e.children_values("pp")).unwrap();
    assert_eq!(values.failed, [("fa:k1".to_string(), "bad".to_string())]);
}

#[test]
fn named_moves_and_a_released_dedup_key_survive_a_restart() {
    let dir = Dir::new("moves");
    let clock = ManualClock::new(T0);
    let h = open(&dir.0, &clock);
    let keyed = push(&h, "q", r#"{"data":1,"uniqueKey":"k"}"#);
    let later = push(&h, "q", r#"{"data":2}"#);
    let discarded = push(&h, "q", r#"{"data":3}"#);
    h.mutate(|e| e.change_delay(&later, None, 60_000)).unwrap();
    h.mutate(|e| e.discard_job(&discarded, None)).unwrap();
    assert!(h.apply(|e| e.release_dedup_key("q", "k")).0);
    let (active, token) = pull(&h, "q");
    assert_eq!(active, keyed);
    h.mutate(|e| e.move_to_delayed(&active, Some(&token), 30_000))
        .unwrap();
    let before = dump(&h);
    h.close();
    drop(h);
    let h = open(&dir.0, &clock);
    assert_eq!(dump(&h), before);
    assert_eq!(
        h.with(|e| e.dedup_holder("q", "k")),
        None,
        "the key stays released"
    );
    let again = push(&h, "q", r#"{"data":4,"uniqueKey":"k"}"#);
    assert_ne!(again, keyed, "a push with the released key makes a new job");
}

#[test]
fn the_pushed_delay_outlives_promote_retry_and_a_restart() {
    let dir = Dir::new("pushed-delay");
    let clock = ManualClock::new(T0);
    let h = open(&dir.0, &clock);
    let delayed = push(&h, "q", r#"{"data":1,"delay":60000,"maxAttempts":1}"#);
    let plain = push(&h, "q", r#"{"data":2,"maxAttempts":1}"#);
    h.mutate(|e| e.promote(&delayed)).unwrap();
    for _ in 0..2 {
        let (id, token) = pull(&h, "q");
        h.mutate(|e| e.fail(&id, Some(&token), Some("boom".into())))
            .unwrap();
        h.mutate(|e| e.retry(&id)).unwrap();
    }
    let delay_of = |h: &EngineHandle, id: &str| {
        h.with(|e| e.render_by_id(id)).map(|j| {
            let v: serde_json::Value = serde_json::from_str(&j).unwrap();
            v["delay"].as_u64().unwrap()
        })
    };
    assert_eq!(delay_of(&h, &delayed), Some(60_000));
    assert_eq!(delay_of(&h, &plain), Some(0));
    let before = dump(&h);
    h.close();
    drop(h);
    let h = open(&dir.0, &clock);
    assert_eq!(dump(&h), before);
    assert_eq!(delay_of(&h, &delayed), Some(60_000));
    assert_eq!(delay_of(&h, &plain), Some(0));
}

#[test]
fn push_counts_survive_the_log_and_a_snapshot() {
    let dir = Dir::new("push-counts");
    let clock = ManualClock::new(T0);
    let pushed = |h: &EngineHandle| -> u64 {
        h.with(|e| e.metrics("q", 0, u64::MAX, 60_000))
            .unwrap()
            .iter()
            .map(|(_, _, b)| b.pushed)
            .sum()
    };
    let h = open(&dir.0, &clock);
    for i in 0..3 {
        push(&h, "q", &format!(r#"{{"data":{i}}}"#));
    }
    let gone = push(&h, "q", r#"{"data":"removed at once"}"#);
    h.mutate(|e| e.remove(&gone)).unwrap();
    assert_eq!(pushed(&h), 4);
    h.close();
    drop(h);
    let h = open(&dir.0, &clock);
    assert_eq!(pushed(&h), 4, "replayed from the log");
    h.snapshot_now().unwrap();
    clock.advance(60_000);
    push(&h, "q", r#"{"data":5,"name":"other"}"#);
    h.close();
    drop(h);
    let h = open(&dir.0, &clock);
    assert_eq!(pushed(&h), 5, "the snapshot's buckets and the log after it");
}
