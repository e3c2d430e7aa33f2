//! Pull order: priority, FIFO, lifo, delays, pause/resume, promote and update.

mod common;
use common::H;
use hopper_core::JobState;

#[test]
fn higher_priority_first_fifo_among_equals_lifo_to_the_front() {
    let mut h = H::new();
    let a = h.add("q", r#"{"data":"a"}"#);
    let b = h.add("q", r#"{"data":"b"}"#);
    let hi = h.add("q", r#"{"data":"hi","priority":10}"#);
    let low = h.add("q", r#"{"data":"low","priority":-5}"#);
    let l1 = h.add("q", r#"{"data":"l1","lifo":true}"#);
    let c = h.add("q", r#"{"data":"c"}"#);
    let l2 = h.add("q", r#"{"data":"l2","lifo":true}"#);
    let hi2 = h.add("q", r#"{"data":"hi2","priority":10}"#);
    let want = vec![hi, hi2, l2, l1, a, b, c, low];
    assert_eq!(h.ids("q", JobState::Waiting), want, "list shows pull order");
    let mut got = Vec::new();
    while let Some(id) = h.pull_id("q") {
        got.push(id);
    }
    assert_eq!(got, want);
    assert_eq!(h.count("q", JobState::Active), 8);
}

#[test]
fn delayed_job_becomes_ready_exactly_at_run_at() {
    let mut h = H::new();
    let d = h.add("q", r#"{"data":1,"delay":5000}"#);
    assert_eq!(h.state(&d), Some(JobState::Delayed));
    assert_eq!(h.job(&d).run_at, h.now() + 5000);
    h.advance(4999);
    assert_eq!(h.state(&d), Some(JobState::Delayed));
    assert!(h.pull("q").is_none(), "not ready 1 ms before runAt");
    h.advance(1);
    assert_eq!(h.state(&d), Some(JobState::Waiting));
    assert_eq!(h.pull_id("q"), Some(d));
}

#[test]
fn delayed_jobs_keep_priority_once_ready_and_long_jumps_fire_everything() {
    let mut h = H::new();
    let slow = h.add("q", r#"{"data":1,"delay":90000000}"#); // ~1 day
    let fast = h.add("q", r#"{"data":2,"delay":10,"priority":3}"#);
    let now = h.add("q", r#"{"data":3}"#);
    h.advance(100_000_000);
    assert_eq!(h.ids("q", JobState::Delayed), Vec::<String>::new());
    // Both became ready; priority orders them, not readiness time.
    assert_eq!(h.ids("q", JobState::Waiting), vec![fast, now, slow]);
}

#[test]
fn pause_queue_and_pause_one_name() {
    let mut h = H::new();
    let mail = h.add("q", r#"{"name":"mail","data":1,"priority":5}"#);
    let sms = h.add("q", r#"{"name":"sms","data":2}"#);
    h.op(|e| e.pause("q", None)).unwrap();
    assert!(h.e.is_paused("q"));
    assert!(h.pull("q").is_none(), "paused queue hands out nothing");
    h.op(|e| e.resume("q", None)).unwrap();
    h.op(|e| e.pause("q", Some("mail"))).unwrap();
    assert_eq!(h.e.paused_names("q"), vec!["mail".to_string()]);
    assert_eq!(
        h.pull_id("q"),
        Some(sms),
        "paused name skipped even at higher priority"
    );
    assert!(h.pull("q").is_none());
    assert_eq!(h.state(&mail), Some(JobState::Waiting));
    h.op(|e| e.resume("q", Some("mail"))).unwrap();
    assert!(h.e.paused_names("q").is_empty());
    assert_eq!(h.pull_id("q"), Some(mail));
}

#[test]
fn promote_and_promote_all() {
    let mut h = H::new();
    let a = h.add("q", r#"{"data":1,"delay":60000}"#);
    let b = h.add("q", r#"{"data":2,"delay":60000}"#);
    let c = h.add("q", r#"{"data":3,"delay":60000}"#);
    let w = h.add("q", r#"{"data":4}"#);
    assert_eq!(
        h.op(|e| e.promote(&w)).unwrap_err().kind,
        hopper_core::ErrorKind::InvalidState
    );
    h.op(|e| e.promote(&b)).unwrap();
    assert_eq!(h.state(&b), Some(JobState::Waiting));
    assert_eq!(h.job(&b).run_at, h.now());
    assert_eq!(h.op(|e| e.promote_all("q")).unwrap(), 2);
    assert_eq!(h.ids("q", JobState::Waiting), vec![w, b, a, c]);
    // The stale delay timers do nothing once they fire.
    h.advance(60_000);
    assert_eq!(h.count("q", JobState::Waiting), 4);
}

#[test]
fn update_changes_priority_order_and_is_refused_for_active_jobs() {
    let mut h = H::new();
    let a = h.add("q", r#"{"data":"a"}"#);
    let b = h.add("q", r#"{"data":"b"}"#);
    let c = h.add("q", r#"{"data":"c"}"#);
    h.op(|e| e.update(&c, Some(r#"{"v":2}"#.into()), Some(7)))
        .unwrap();
    assert_eq!(&*h.job(&c).data, r#"{"v":2}"#);
    assert_eq!(
        h.ids("q", JobState::Waiting),
        vec![c.clone(), a.clone(), b.clone()]
    );
    let (got, _) = h.pull("q").unwrap();
    assert_eq!(got, c);
    let err = h.op(|e| e.update(&c, None, Some(1))).unwrap_err();
    assert_eq!(err.kind, hopper_core::ErrorKind::InvalidState);
    assert_eq!(h.job(&c).priority, 7);
    // Lowering a priority moves it behind the others.
    h.op(|e| e.update(&a, None, Some(-1))).unwrap();
    assert_eq!(h.pull_id("q"), Some(b));
    assert_eq!(h.pull_id("q"), Some(a));
}
