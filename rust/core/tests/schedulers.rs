//! Named job schedulers (bunqueue's crons) on the manual clock: upsert and replace, list,
//! get and delete, fires on a cron pattern and on an interval, `maxLimit`,
//! `preventOverlap`, `immediately`, and what obliterating their queue leaves.

mod common;

use common::{H, T0};
use hopper_core::{JobState, SchedulerInfo, SchedulerSpec};

const MIN: u64 = 60_000;

fn every(name: &str, ms: u64) -> SchedulerSpec {
    SchedulerSpec {
        name: name.into(),
        queue: "q".into(),
        data: format!(r#"{{"from":"{name}"}}"#).into(),
        repeat_every: Some(ms),
        ..SchedulerSpec::default()
    }
}

fn cron(name: &str, pattern: &str) -> SchedulerSpec {
    SchedulerSpec {
        repeat_every: None,
        schedule: Some(pattern.into()),
        ..every(name, 0)
    }
}

fn upsert(h: &mut H, spec: SchedulerSpec) -> SchedulerInfo {
    h.op(|e| e.upsert_scheduler(spec)).expect("upsert")
}

fn get(h: &mut H, name: &str) -> SchedulerInfo {
    h.e.scheduler(name).expect("scheduler exists")
}

fn waiting(h: &H) -> usize {
    h.count("q", JobState::Waiting)
}

#[test]
fn upsert_replaces_keeps_executions_and_the_listing_order() {
    let mut h = H::new();
    let a = upsert(&mut h, cron("a", "*/5 * * * *"));
    assert_eq!((a.next_run, a.executions), (T0 + 5 * MIN, 0));
    assert_eq!(&*a.job_name, "default");
    upsert(&mut h, every("b", 1000));
    h.advance(1000);
    assert_eq!(get(&mut h, "b").executions, 1);
    // Replacing "b" keeps its count and place, and computes its next run from now.
    h.advance(300);
    let b = upsert(
        &mut h,
        SchedulerSpec {
            priority: 4,
            ..every("b", 5000)
        },
    );
    assert_eq!((b.executions, b.next_run, b.priority), (1, T0 + 6300, 4));
    let names: Vec<_> = h.e.schedulers().into_iter().map(|s| s.name).collect();
    assert_eq!(names, vec!["a".into(), "b".into()]);
    assert!(h.e.remove_scheduler("a").unwrap());
    assert!(!h.e.remove_scheduler("a").unwrap());
    assert!(h.e.scheduler("a").is_none());
    assert_eq!(h.e.schedulers().len(), 1);
    // A removed scheduler fires no more; its jobs stay.
    assert!(h.e.remove_scheduler("b").unwrap());
    h.advance(60 * MIN);
    assert_eq!(waiting(&h), 1);
}

#[test]
fn a_cron_pattern_fires_at_each_match_and_once_after_a_long_gap() {
    let mut h = H::new();
    upsert(&mut h, cron("c", "*/5 * * * *"));
    h.advance(5 * MIN - 1);
    assert_eq!(waiting(&h), 0);
    h.advance(1);
    assert_eq!(waiting(&h), 1);
    let s = get(&mut h, "c");
    assert_eq!((s.executions, s.next_run), (1, T0 + 10 * MIN));
    let (id, token) = h.pull("q").unwrap();
    assert_eq!(h.job(&id).data.as_ref(), r#"{"from":"c"}"#);
    assert_eq!(
        h.job(&id).ext().and_then(|x| x.unique_key.as_deref()),
        Some("cron:c"),
        "preventOverlap (the default) keys the jobs by the scheduler"
    );
    h.ack(&id, &token);
    // Twelve minutes at once: one fire, the next run the first match after now.
    h.advance(12 * MIN);
    let s = get(&mut h, "c");
    assert_eq!((s.executions, s.next_run), (2, T0 + 20 * MIN));
    assert_eq!(waiting(&h), 1);
}

#[test]
fn an_interval_keeps_its_grid() {
    let mut h = H::new();
    upsert(
        &mut h,
        SchedulerSpec {
            prevent_overlap: Some(false),
            job_name: Some("tick".into()),
            job_options: Some(r#"{"maxAttempts":7,"delay":50}"#.into()),
            ..every("i", 1000)
        },
    );
    for n in 1..=3 {
        h.advance(1000);
        assert_eq!(get(&mut h, "i").executions, n);
    }
    // jobOptions.delay: each job waits 50 ms after its fire.
    assert_eq!(h.count("q", JobState::Delayed), 1);
    assert_eq!(waiting(&h), 2);
    h.advance(50);
    let (id, _) = h.pull("q").unwrap();
    assert_eq!(h.job(&id).max_attempts, 7);
    assert_eq!(h.e.job_name_of(h.e.slot_of(&id).unwrap()), "tick");
    // Late by 2.5 intervals: one fire, and the grid stays at whole seconds.
    h.advance(2450);
    let s = get(&mut h, "i");
    assert_eq!((s.executions, s.next_run), (4, T0 + 6000));
}

#[test]
fn max_limit_stops_the_fires_and_drops_the_scheduler_at_its_next_run() {
    let mut h = H::new();
    upsert(
        &mut h,
        SchedulerSpec {
            max_limit: Some(2),
            prevent_overlap: Some(false),
            ..every("m", 1000)
        },
    );
    h.advance(1000);
    h.advance(1000);
    assert_eq!(waiting(&h), 2);
    assert_eq!(get(&mut h, "m").executions, 2);
    h.advance(999);
    assert!(h.e.scheduler("m").is_some(), "listed until its next run");
    h.advance(1);
    assert!(h.e.scheduler("m").is_none());
    h.advance(10_000);
    assert_eq!(waiting(&h), 2);
}

#[test]
fn prevent_overlap_skips_fires_while_the_last_job_is_live() {
    let mut h = H::new();
    upsert(&mut h, every("p", 1000));
    h.advance(1000);
    let (id, token) = h.pull("q").unwrap();
    // The job is active: the next fires count but push nothing.
    h.advance(1000);
    h.advance(1000);
    assert_eq!(waiting(&h), 0);
    assert_eq!(get(&mut h, "p").executions, 3);
    h.ack(&id, &token);
    h.advance(1000);
    assert_eq!(waiting(&h), 1);
    // An upsert with preventOverlap set explicitly drops the still-waiting job.
    upsert(
        &mut h,
        SchedulerSpec {
            prevent_overlap: Some(true),
            ..every("p", 1000)
        },
    );
    assert_eq!(waiting(&h), 0);
    // Without it, the waiting job stays.
    h.advance(1000);
    upsert(&mut h, every("p", 1000));
    assert_eq!(waiting(&h), 1);
}

#[test]
fn immediately_fires_a_new_scheduler_at_once() {
    let mut h = H::new();
    let s = upsert(
        &mut h,
        SchedulerSpec {
            immediately: true,
            ..every("now", 1000)
        },
    );
    assert_eq!((s.next_run, s.executions), (T0, 0), "answered as stored");
    assert_eq!(waiting(&h), 1);
    let s = get(&mut h, "now");
    assert_eq!((s.next_run, s.executions), (T0 + 1000, 1));
    // Not when it replaces an existing one.
    let s = upsert(
        &mut h,
        SchedulerSpec {
            immediately: true,
            prevent_overlap: Some(false),
            ..every("now", 1000)
        },
    );
    assert_eq!((s.next_run, s.executions), (T0 + 1000, 1));
    assert_eq!(waiting(&h), 1);
}

#[test]
fn schedulers_survive_obliterating_their_queue() {
    let mut h = H::new();
    upsert(&mut h, every("o", 1000));
    h.advance(1000);
    h.op(|e| e.obliterate("q", true)).unwrap();
    assert!(h.e.scheduler("o").is_some());
    h.advance(1000);
    assert_eq!(waiting(&h), 1);
}

#[test]
fn bad_definitions_are_refused_and_change_nothing() {
    let mut h = H::new();
    for (spec, msg) in [
        (every("x", 0), "Cron repeatEvery must be"),
        (cron("x", "* * *"), "Invalid cron expression: "),
        (
            SchedulerSpec {
                timezone: Some("America/New_York".into()),
                ..cron("x", "0 * * * *")
            },
            "unsupported timezone",
        ),
        (
            SchedulerSpec {
                queue: String::new(),
                ..every("x", 10)
            },
            "queue",
        ),
        (
            SchedulerSpec {
                job_options: Some(r#"{"maxAttempts":"many"}"#.into()),
                ..every("x", 10)
            },
            "maxAttempts",
        ),
    ] {
        let err = h.e.upsert_scheduler(spec).unwrap_err().message;
        assert!(err.contains(msg), "{err} / {msg}");
    }
    assert!(h.e.schedulers().is_empty());
}
