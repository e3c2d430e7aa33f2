//! Job schedulers survive a restart: replayed from the log alone and from a snapshot
//! with more log on top; a run missed while the server was down is skipped (the
//! default) or fired once (`skipMissedOnRestart: false`). Real files, a manual clock.

use std::path::Path;

use hopper_core::{
    EngineConfig, EngineHandle, JobState, ManualClock, SchedulerInfo, SchedulerSpec,
};

mod common;
use common::data_dir::{open_store, Dir};

const T0: u64 = 1_704_067_200_000;
const MIN: u64 = 60_000;

fn open(dir: &Path, clock: &ManualClock) -> EngineHandle {
    open_store(dir, clock, EngineConfig::default())
}

fn restart(h: EngineHandle, dir: &Path, clock: &ManualClock) -> EngineHandle {
    h.close();
    drop(h);
    open(dir, clock)
}

fn upsert(h: &EngineHandle, spec: SchedulerSpec) -> SchedulerInfo {
    h.mutate(|e| e.upsert_scheduler(spec)).unwrap().0
}

fn get(h: &EngineHandle, name: &str) -> Option<SchedulerInfo> {
    h.with(|e| e.scheduler(name))
}

fn advance(h: &EngineHandle, clock: &ManualClock, ms: u64) {
    clock.advance(ms);
    h.tick();
}

fn jobs(h: &EngineHandle) -> usize {
    h.with(|e| {
        e.counts("q")
            .iter()
            .zip(JobState::ALL)
            .filter(|(_, s)| matches!(s, JobState::Waiting | JobState::Delayed))
            .map(|(n, _)| n)
            .sum()
    })
}

fn every(name: &str, ms: u64) -> SchedulerSpec {
    SchedulerSpec {
        name: name.into(),
        queue: "q".into(),
        data: "1".into(),
        repeat_every: Some(ms),
        prevent_overlap: Some(false),
        ..SchedulerSpec::default()
    }
}

/// Creations, replacements, fires and a removal, some before a snapshot, some after.
fn workload(h: &EngineHandle, clock: &ManualClock, snapshot_midway: bool) {
    upsert(
        h,
        SchedulerSpec {
            schedule: Some("*/5 * * * *".into()),
            repeat_every: None,
            job_name: Some("c".into()),
            max_limit: Some(10),
            timezone: Some("UTC".into()),
            unique_key: Some("k".into()),
            job_options: Some(r#"{"maxAttempts":2}"#.into()),
            ..every("cron", 0)
        },
    );
    upsert(h, every("fast", 1000));
    upsert(h, every("gone", 1000));
    advance(h, clock, 3000);
    if snapshot_midway {
        h.snapshot_now().unwrap();
    }
    upsert(
        h,
        SchedulerSpec {
            priority: 9,
            skip_missed_on_restart: Some(false),
            ..every("fast", 2000)
        },
    );
    assert!(h.mutate(|e| e.remove_scheduler("gone")).unwrap().0);
    advance(h, clock, 2000);
}

fn round_trip(name: &str, snapshot_midway: bool, snapshot_at_end: bool) {
    let dir = Dir::new(name);
    let clock = ManualClock::new(T0);
    let h = open(&dir.0, &clock);
    workload(&h, &clock, snapshot_midway);
    if snapshot_at_end {
        h.snapshot_now().unwrap();
    }
    let before = h.with(|e| e.dump_state());
    assert!(before.contains("scheduler SchedulerInfo { name: \"cron\""));
    assert!(!before.contains("\"gone\""));
    let fast = get(&h, "fast").unwrap();
    // One fire per tick however late (3 s at once: one), then one at its new interval.
    assert_eq!((fast.executions, fast.priority), (2, 9));
    let h = restart(h, &dir.0, &clock);
    assert_eq!(h.with(|e| e.dump_state()), before);
    // And they keep firing after it.
    advance(&h, &clock, 2000);
    assert_eq!(get(&h, "fast").unwrap().executions, 3);
    h.close();
}

#[test]
fn schedulers_come_back_from_the_log() {
    round_trip("log", false, false);
}

#[test]
fn schedulers_come_back_from_a_snapshot_and_the_log_after_it() {
    round_trip("snap-mid", true, false);
    round_trip("snap-end", false, true);
}

#[test]
fn a_run_missed_while_down_is_skipped_by_default_or_fired_once() {
    let dir = Dir::new("missed");
    let clock = ManualClock::new(T0);
    let h = open(&dir.0, &clock);
    upsert(&h, every("skip", 1000));
    upsert(
        &h,
        SchedulerSpec {
            skip_missed_on_restart: Some(false),
            ..every("catch", 1000)
        },
    );
    upsert(
        &h,
        SchedulerSpec {
            schedule: Some("*/5 * * * *".into()),
            repeat_every: None,
            skip_missed_on_restart: Some(false),
            ..every("cron", 0)
        },
    );
    h.close();
    drop(h);
    // Down for 12 minutes and a half.
    clock.advance(12 * MIN + 30_000);
    let h = open(&dir.0, &clock);
    let now = T0 + 12 * MIN + 30_000;
    let skip = get(&h, "skip").unwrap();
    assert_eq!((skip.executions, skip.next_run), (0, now + 1000));
    // The others fired once, at the first tick, and moved past now.
    let catch = get(&h, "catch").unwrap();
    assert_eq!((catch.executions, catch.next_run), (1, now + 1000));
    let cron = get(&h, "cron").unwrap();
    assert_eq!((cron.executions, cron.next_run), (1, T0 + 15 * MIN));
    assert_eq!(jobs(&h), 2);
    // All of that was logged: another restart at the same time changes nothing.
    let before = h.with(|e| e.dump_state());
    let h = restart(h, &dir.0, &clock);
    assert_eq!(h.with(|e| e.dump_state()), before);
    h.close();
}
