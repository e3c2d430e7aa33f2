//! A queue's stall and dead-letter settings (bunqueue's SetStallConfig/SetDlqConfig):
//! their effect on leases, stalls and the failed set on the manual clock, partial
//! updates, and recovery from the log and from a snapshot.

use std::path::Path;

use hopper_core::{DlqPatch, EngineConfig, EngineHandle, JobState, ManualClock, PushOptions};
use hopper_core::{StallConfig, StallPatch};

mod common;
use common::data_dir::{open_store, Dir};
use common::H;

fn stall(interval: Option<u64>, max: Option<u64>, grace: Option<u64>) -> StallPatch {
    StallPatch {
        enabled: None,
        stall_interval_ms: interval,
        max_stalls: max,
        grace_period_ms: grace,
    }
}

#[test]
fn unset_settings_report_the_engine_wide_ones_and_updates_merge() {
    let mut h = H::new();
    let s = h.e.stall_config("q");
    assert_eq!(
        s,
        StallConfig {
            enabled: true,
            stall_interval_ms: 30_000,
            max_stalls: 3,
            grace_period_ms: 0
        }
    );
    let d = h.e.dlq_config("q");
    assert_eq!(
        (d.auto_retry, d.auto_retry_interval_ms, d.max_auto_retries),
        (false, 3_600_000, 3)
    );
    assert_eq!((d.max_age_ms, d.max_entries), (Some(86_400_000), 10_000));

    h.op(|e| e.set_stall_config("q", &stall(Some(1000), None, None)))
        .unwrap();
    h.op(|e| e.set_stall_config("q", &stall(None, Some(5), None)))
        .unwrap();
    let s = h.e.stall_config("q");
    assert_eq!(
        (s.stall_interval_ms, s.max_stalls, s.enabled),
        (1000, 5, true)
    );
    assert_eq!(h.e.stall_config("other").stall_interval_ms, 30_000);

    h.op(|e| {
        e.set_dlq_config(
            "q",
            &DlqPatch {
                auto_retry: Some(true),
                ..DlqPatch::default()
            },
        )
    })
    .unwrap();
    let d = h.op(|e| {
        e.set_dlq_config(
            "q",
            &DlqPatch {
                max_age_ms: Some(None),
                max_entries: Some(0),
                ..DlqPatch::default()
            },
        )
    });
    let d = d.unwrap();
    assert_eq!((d.auto_retry, d.max_age_ms, d.max_entries), (true, None, 1));
    assert_eq!(h.e.dlq_config("q"), d);
}

#[test]
fn a_queue_stall_interval_and_max_stalls_replace_the_engine_wide_ones() {
    let mut h = H::new();
    h.op(|e| e.set_stall_config("q", &stall(Some(1000), Some(2), None)))
        .unwrap();
    let id = h.add("q", r#"{"data":1}"#);
    let other = h.add("r", r#"{"data":1}"#);
    h.pull("q").unwrap();
    h.pull("r").unwrap();
    h.advance(999);
    assert_eq!(h.state(&id), Some(JobState::Active));
    h.advance(1);
    assert_eq!(h.state(&id), Some(JobState::Waiting), "stalled at 1000 ms");
    assert_eq!(h.job(&id).stalls, 1);
    h.pull("q").unwrap();
    h.advance(1000);
    assert_eq!(h.state(&id), Some(JobState::Failed), "second stall: max 2");
    assert_eq!(h.state(&other), Some(JobState::Active), "other queue: 30 s");
    // A renewal without a duration uses the queue's interval too.
    let id2 = h.add("q", r#"{"data":2}"#);
    let (_, token) = h.pull("q").unwrap();
    h.advance(500);
    let deadline = h.op(|e| e.extend_lease(&id2, Some(&token), None)).unwrap();
    assert_eq!(deadline, h.now() + 1000);
}

#[test]
fn disabled_stalls_never_expire_default_leases_and_grace_delays_them() {
    let mut h = H::new();
    h.op(|e| {
        e.set_stall_config(
            "q",
            &StallPatch {
                enabled: Some(false),
                stall_interval_ms: Some(100),
                ..StallPatch::default()
            },
        )
    })
    .unwrap();
    let id = h.add("q", r#"{"data":1}"#);
    h.pull("q").unwrap();
    h.advance(10 * 3_600_000);
    assert_eq!(h.state(&id), Some(JobState::Active));
    // An explicit lock still expires.
    let id2 = h.add("q", r#"{"data":2}"#);
    h.op(|e| e.pull_locked("q", 0, Some(50), false)).unwrap();
    h.advance(50);
    assert_eq!(h.state(&id2), Some(JobState::Waiting));

    // Grace: no stall before the job has run that long.
    h.op(|e| {
        e.set_stall_config(
            "g",
            &StallPatch {
                stall_interval_ms: Some(100),
                grace_period_ms: Some(1000),
                ..StallPatch::default()
            },
        )
    })
    .unwrap();
    let g = h.add("g", r#"{"data":1}"#);
    h.pull("g").unwrap();
    h.advance(999);
    assert_eq!(h.state(&g), Some(JobState::Active));
    h.advance(1);
    assert_eq!(h.state(&g), Some(JobState::Waiting));
}

/// Fails `n` jobs of `queue` for good, `gap` ms apart; returns their ids, oldest first.
fn dead_letters(h: &mut H, queue: &str, n: usize, gap: u64) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let id = h.add(queue, &format!(r#"{{"data":{i},"maxAttempts":1}}"#));
        let (got, token) = h.pull(queue).unwrap();
        assert_eq!(got, id);
        h.fail(&id, &token, "boom");
        ids.push(id);
        h.advance(gap);
    }
    ids
}

#[test]
fn max_entries_bounds_the_failed_set_oldest_first() {
    let mut h = H::new();
    let ids = dead_letters(&mut h, "q", 5, 1);
    h.op(|e| {
        e.set_dlq_config(
            "q",
            &DlqPatch {
                max_entries: Some(3),
                ..DlqPatch::default()
            },
        )
    })
    .unwrap();
    assert_eq!(h.count("q", JobState::Failed), 3, "trimmed at once");
    assert!(h.get(&ids[0]).is_none() && h.get(&ids[1]).is_none());
    let more = dead_letters(&mut h, "q", 2, 1);
    assert_eq!(h.count("q", JobState::Failed), 3);
    assert!(h.get(&ids[3]).is_none() && h.get(&more[1]).is_some());
    // Completed jobs are not bounded by it.
    for i in 0..5 {
        let id = h.add("q", &format!(r#"{{"data":{i}}}"#));
        h.run("q", &id);
    }
    assert_eq!(h.count("q", JobState::Completed), 5);
}

#[test]
fn max_age_drops_failed_jobs_by_their_failure_time() {
    let mut h = H::new();
    h.op(|e| {
        e.set_dlq_config(
            "q",
            &DlqPatch {
                max_age_ms: Some(Some(10_000)),
                ..DlqPatch::default()
            },
        )
    })
    .unwrap();
    let ids = dead_letters(&mut h, "q", 3, 4000);
    // Failed at T0, T0+4 s, T0+8 s; now T0+12 s: the first is past 10 s.
    assert!(h.get(&ids[0]).is_none());
    let slot = h.e.slot_of(&ids[1]).unwrap();
    assert_eq!(
        h.e.dlq_expires_at(slot),
        Some(h.job(&ids[1]).finished_at + 10_000)
    );
    h.advance(4000);
    assert!(h.get(&ids[1]).is_none() && h.get(&ids[2]).is_some());
    h.advance(4000);
    assert_eq!(h.count("q", JobState::Failed), 0);
    // Retention's age still applies with no DLQ age.
    h.op(|e| {
        e.set_dlq_config(
            "q",
            &DlqPatch {
                max_age_ms: Some(None),
                ..DlqPatch::default()
            },
        )
    })
    .unwrap();
    let left = dead_letters(&mut h, "q", 1, 0);
    h.advance(86_400_000 + 1000);
    assert!(h.get(&left[0]).is_none());
}

#[test]
fn auto_retry_retries_failed_jobs_with_backoff_up_to_the_limit() {
    let mut h = H::new();
    h.op(|e| {
        e.set_dlq_config(
            "q",
            &DlqPatch {
                auto_retry: Some(true),
                auto_retry_interval_ms: Some(5000),
                max_auto_retries: Some(2),
                ..DlqPatch::default()
            },
        )
    })
    .unwrap();
    let id = dead_letters(&mut h, "q", 1, 0).remove(0);
    let slot = h.e.slot_of(&id).unwrap();
    let failed_at = h.job(&id).finished_at;
    assert_eq!(h.e.dlq_retry_due(slot), Some(failed_at + 5000));
    h.advance(4000);
    assert_eq!(h.state(&id), Some(JobState::Failed));
    h.advance(1000);
    assert_eq!(h.state(&id), Some(JobState::Waiting), "first retry");
    assert_eq!(h.job(&id).ext().unwrap().dlq_retries, 1);
    assert_eq!(h.job(&id).attempts, 0);
    // It fails again: the second retry waits twice as long.
    let (_, token) = h.pull("q").unwrap();
    h.fail(&id, &token, "again");
    h.advance(9000);
    assert_eq!(h.state(&id), Some(JobState::Failed));
    h.advance(1000);
    assert_eq!(h.state(&id), Some(JobState::Waiting), "second retry");
    let (_, token) = h.pull("q").unwrap();
    h.fail(&id, &token, "third");
    assert_eq!(h.e.dlq_retry_due(h.e.slot_of(&id).unwrap()), None);
    h.advance(100_000);
    assert_eq!(h.state(&id), Some(JobState::Failed), "no retries left");
    // A manual retry starts the count again.
    h.op(|e| e.retry(&id)).unwrap();
    assert_eq!(h.job(&id).ext().unwrap().dlq_retries, 0);

    // Turning auto-retry on covers jobs already failed; off, none is retried.
    let old = dead_letters(&mut h, "p", 1, 0).remove(0);
    h.advance(3_600_000 * 2);
    assert_eq!(h.state(&old), Some(JobState::Failed));
    h.op(|e| {
        e.set_dlq_config(
            "p",
            &DlqPatch {
                auto_retry: Some(true),
                ..DlqPatch::default()
            },
        )
    })
    .unwrap();
    assert_eq!(h.state(&old), Some(JobState::Waiting));
}

#[test]
fn obliterate_forgets_the_settings() {
    let mut h = H::new();
    h.add("q", r#"{"data":1}"#);
    h.op(|e| e.set_stall_config("q", &stall(Some(10), None, None)))
        .unwrap();
    h.op(|e| {
        e.set_dlq_config(
            "q",
            &DlqPatch {
                max_entries: Some(7),
                ..DlqPatch::default()
            },
        )
    })
    .unwrap();
    h.op(|e| e.obliterate("q", true)).unwrap();
    assert_eq!(h.e.stall_config("q").stall_interval_ms, 30_000);
    assert_eq!(h.e.dlq_config("q").max_entries, 10_000);
}

// ----- durability --------------------------------------------------------------------

const T0: u64 = 1_704_067_200_000;

fn open(dir: &Path, clock: &ManualClock) -> EngineHandle {
    open_store(dir, clock, EngineConfig::default())
}

fn restart(h: EngineHandle, dir: &Path, clock: &ManualClock) -> EngineHandle {
    h.close();
    drop(h);
    open(dir, clock)
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

/// Fails a fresh job of `queue` for good.
fn dead_letter(h: &EngineHandle, queue: &str) -> String {
    let id = push(h, queue, r#"{"data":1,"maxAttempts":1}"#);
    h.mutate(|e| {
        let (slot, token) = e.pull(queue, 0)?.expect("ready");
        let id = e.job_at(slot).id.to_string();
        e.fail(&id, Some(&token), Some("boom".into()))
    })
    .unwrap();
    id
}

#[test]
fn settings_and_retry_counts_survive_a_restart_from_the_log_and_a_snapshot() {
    let dir = Dir::new("queue-config");
    let clock = ManualClock::new(T0);
    let h = open(&dir.0, &clock);
    h.mutate(|e| {
        e.set_stall_config(
            "q",
            &StallPatch {
                enabled: Some(false),
                stall_interval_ms: Some(2000),
                max_stalls: Some(7),
                grace_period_ms: Some(100),
            },
        )
    })
    .unwrap();
    h.mutate(|e| {
        e.set_dlq_config(
            "q",
            &DlqPatch {
                auto_retry: Some(true),
                auto_retry_interval_ms: Some(1000),
                max_auto_retries: Some(5),
                max_age_ms: Some(Some(60_000)),
                max_entries: Some(50),
            },
        )
    })
    .unwrap();
    let id = dead_letter(&h, "q");
    clock.advance(1000);
    h.mutate(|e| {
        e.tick();
        Ok(())
    })
    .unwrap();
    let retries = |h: &EngineHandle| {
        h.with(|e| {
            let s = e.slot_of(&id).unwrap();
            e.job_at(s).ext().map_or(0, |x| x.dlq_retries)
        })
    };
    assert_eq!(retries(&h), 1);
    // Fails again: a failed job with a retry count.
    h.mutate(|e| {
        let (slot, token) = e.pull("q", 0)?.expect("ready");
        let id = e.job_at(slot).id.to_string();
        e.fail(&id, Some(&token), Some("again".into()))
    })
    .unwrap();
    let stall = h.with(|e| e.stall_config("q"));
    let dlq = h.with(|e| e.dlq_config("q"));
    let before = h.with(|e| e.dump_state());

    // From the log alone.
    let h = restart(h, &dir.0, &clock);
    assert_eq!(h.with(|e| e.dump_state()), before);
    assert_eq!(h.with(|e| e.stall_config("q")), stall);
    assert_eq!(h.with(|e| e.dlq_config("q")), dlq);
    assert_eq!(retries(&h), 1);

    // From a snapshot, with a change on top of it.
    h.snapshot_now().unwrap();
    h.mutate(|e| {
        e.set_stall_config(
            "q",
            &StallPatch {
                max_stalls: Some(9),
                ..StallPatch::default()
            },
        )
    })
    .unwrap();
    let before = h.with(|e| e.dump_state());
    let h = restart(h, &dir.0, &clock);
    assert_eq!(h.with(|e| e.dump_state()), before);
    assert_eq!(h.with(|e| e.stall_config("q")).max_stalls, 9);
    assert_eq!(h.with(|e| e.dlq_config("q")), dlq);
    // The retry schedule goes on after recovery: 2 s after the second failure.
    clock.advance(2000);
    h.mutate(|e| {
        e.tick();
        Ok(())
    })
    .unwrap();
    assert_eq!(retries(&h), 2);

    // Obliterate's drop is replayed too.
    h.mutate(|e| e.obliterate("q", true)).unwrap();
    let h = restart(h, &dir.0, &clock);
    assert_eq!(h.with(|e| e.stall_config("q")).max_stalls, 3);
    h.close();
}
