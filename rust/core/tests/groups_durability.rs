//! Group settings (concurrency, rate limit, pause, hold) survive a restart, replayed
//! from the log alone, from a snapshot, and from a snapshot with more log on top, and
//! pulls obey them after it. Real files in a temp directory, a manual clock.

use std::path::Path;

use hopper_core::{EngineConfig, EngineHandle, GroupRate, GroupSettings, ManualClock, PushOptions};

mod common;
use common::data_dir::{open_store, Dir};

const T0: u64 = 1_704_067_200_000;

fn open(dir: &Path, clock: &ManualClock) -> EngineHandle {
    open_store(dir, clock, EngineConfig::default())
}

fn push(h: &EngineHandle, group: &str, data: u32) {
    let json = format!(r#"{{"data":{data},"groupId":"{group}"}}"#);
    h.mutate(|e| {
        let o = PushOptions::from_json(json.as_bytes(), 1 << 20)?;
        e.push("q", o)
    })
    .unwrap();
}

fn restart(h: EngineHandle, dir: &Path, clock: &ManualClock) -> EngineHandle {
    h.close();
    drop(h);
    open(dir, clock)
}

fn pulled(h: &EngineHandle) -> Option<String> {
    h.with(|e| e.pull_job("q", 0))
        .unwrap()
        .map(|p| p.data.to_string())
}

fn settings(h: &EngineHandle, group: &str) -> GroupSettings {
    h.with(|e| e.group_settings("q", group))
}

#[test]
fn group_settings_survive_a_restart_and_are_enforced_after_it() {
    let dir = Dir::new("groups");
    let clock = ManualClock::new(T0);
    let h = open(&dir.0, &clock);
    for i in 0..3 {
        push(&h, "paused", i);
        push(&h, "one", 10 + i);
    }
    push(&h, "held", 20);
    h.mutate(|e| e.pause_group("q", "paused")).unwrap();
    h.mutate(|e| e.set_group_concurrency("q", "one", 1))
        .unwrap();
    h.mutate(|e| e.set_group_rate_limit("q", "one", 7, 2000))
        .unwrap();
    h.mutate(|e| e.hold_group("q", "held", 60_000)).unwrap();
    h.mutate(|e| e.set_group_concurrency("q", "dropped", 4))
        .unwrap();
    h.mutate(|e| Ok(e.remove_group_concurrency("q", "dropped")))
        .unwrap();
    assert_eq!(pulled(&h).as_deref(), Some("10"));
    assert_eq!(pulled(&h), None);
    let before = h.with(|e| e.dump_state());
    assert!(before.contains("paused: true"), "{before}");

    let h = restart(h, &dir.0, &clock);
    assert_eq!(h.with(|e| e.dump_state()), before);
    assert!(settings(&h, "paused").paused);
    assert_eq!(
        settings(&h, "one"),
        GroupSettings {
            rate: Some(GroupRate {
                max: 7,
                duration_ms: 2000
            }),
            concurrency: Some(1),
            paused: false,
            held_until: None,
        }
    );
    assert_eq!(settings(&h, "held").held_until, Some(T0 + 60_000));
    assert_eq!(settings(&h, "dropped"), GroupSettings::default());
    // The active job of "one" still fills its concurrency; the others stay blocked.
    assert_eq!(pulled(&h), None);

    // Through a snapshot, with a change on top of it.
    h.snapshot_now().unwrap();
    h.mutate(|e| Ok(e.resume_group("q", "paused"))).unwrap();
    let before = h.with(|e| e.dump_state());
    let h = restart(h, &dir.0, &clock);
    assert_eq!(h.with(|e| e.dump_state()), before);
    assert!(!settings(&h, "paused").paused);
    assert_eq!(settings(&h, "one").concurrency, Some(1));
    assert_eq!(pulled(&h).as_deref(), Some("0"));

    // The hold counts from when it was set, not from the restart.
    h.snapshot_now().unwrap();
    let h = restart(h, &dir.0, &clock);
    clock.advance(60_000);
    let mut rest = Vec::new();
    while let Some(d) = pulled(&h) {
        rest.push(d);
    }
    // (The leases of the jobs pulled earlier have ended too: they are delivered again.)
    assert_eq!(&rest[..2], ["1", "11"], "{rest:?}");
    assert!(rest.contains(&"20".to_owned()), "the hold ended: {rest:?}");

    // Obliterating the queue forgets them, after a restart too.
    h.mutate(|e| e.obliterate("q", true)).unwrap();
    let h = restart(h, &dir.0, &clock);
    assert_eq!(settings(&h, "one"), GroupSettings::default());
}
