//! Reads: search, metrics, events, and the counts/list invariant over a mixed workload.

mod common;
use common::{H, T0};
use hopper_core::{ErrorKind, JobState, PushOptions, SearchKind};
use hopper_core::{EventExtra, EventKind};

#[test]
fn search_by_id_prefix_queue_substring_and_payload() {
    let mut h = H::new();
    h.add(
        "emails",
        r#"{"data":{"to":"ann@example.com"},"jobId":"order-1"}"#,
    );
    h.add(
        "emails",
        r#"{"data":{"to":"bob@example.com"},"jobId":"order-2"}"#,
    );
    h.add("sms", r#"{"data":{"to":"ann"},"jobId":"user-1"}"#);
    let uuid = h.add("sms", r#"{"data":1}"#);

    let mut got = h.e.search("order-", SearchKind::JobId, None, 10).unwrap();
    got.sort();
    assert_eq!(got, vec!["order-1", "order-2"]);
    assert_eq!(
        h.e.search("order-", SearchKind::JobId, None, 1)
            .unwrap()
            .len(),
        1,
        "limit"
    );
    assert_eq!(
        h.e.search("order-", SearchKind::JobId, Some("sms"), 10)
            .unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(
        h.e.search(&uuid, SearchKind::JobId, None, 10).unwrap(),
        vec![uuid.clone()],
        "exact id"
    );
    assert_eq!(
        h.e.search(&uuid[..8], SearchKind::JobId, Some("sms"), 10)
            .unwrap(),
        vec![uuid.clone()]
    );

    assert_eq!(
        h.e.search("mai", SearchKind::Queue, None, 10).unwrap(),
        vec!["emails"]
    );
    assert_eq!(
        h.e.search("s", SearchKind::Queue, None, 10).unwrap(),
        vec!["emails", "sms"]
    );

    assert_eq!(
        h.e.search("ann", SearchKind::Payload, Some("emails"), 10)
            .unwrap(),
        vec!["order-1"]
    );
    assert_eq!(
        h.e.search("ann", SearchKind::Payload, Some("sms"), 10)
            .unwrap(),
        vec!["user-1"]
    );
    assert_eq!(
        h.e.search("ANN@Example", SearchKind::Payload, Some("emails"), 10)
            .unwrap(),
        vec!["order-1"],
        "case is ignored"
    );
    let err =
        h.e.search("ann", SearchKind::Payload, None, 10)
            .unwrap_err();
    assert_eq!(
        err.kind,
        ErrorKind::InvalidInput,
        "payload search needs a queue"
    );
    assert_eq!(
        h.e.search("", SearchKind::JobId, None, 10)
            .unwrap_err()
            .kind,
        ErrorKind::InvalidInput
    );
    // Payload search covers every state, not just waiting.
    h.run("emails", "order-1");
    assert_eq!(
        h.e.search("example", SearchKind::Payload, Some("emails"), 10)
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn metrics_land_in_the_right_minute() {
    let mut h = H::new();
    h.advance(10_000); // 00:00:10
    let a = h.add("q", r#"{"name":"mail","data":1}"#);
    let (_, t) = h.pull("q").unwrap();
    h.advance(250);
    h.ack(&a, &t); // completed at 00:00:10.250 after 250 ms
    let b = h.add("q", r#"{"name":"mail","data":2,"maxAttempts":1}"#);
    let (_, t) = h.pull("q").unwrap();
    h.op(|e| e.extend_lease(&b, Some(&t), Some(120_000)))
        .unwrap();
    h.advance(50_000); // 00:01:00.250
    h.fail(&b, &t, "x"); // failed after 50 s, in the second minute
    let c = h.add("q", r#"{"name":"mail","data":3,"maxAttempts":2}"#);
    let (_, t) = h.pull("q").unwrap();
    h.fail(&c, &t, "retrying"); // not final: no metric

    let m = h.e.metrics("q", T0, T0 + 3_600_000, 60_000).unwrap();
    assert_eq!(m.len(), 2, "{m:?}");
    let (t1, ref n1, b1) = m[0];
    assert_eq!((t1, n1.as_str()), (T0, "mail"));
    assert_eq!((b1.completed, b1.failed, b1.total_process_ms), (1, 0, 250));
    assert_eq!((b1.min_process_ms, b1.max_process_ms), (250, 250));
    let (t2, _, b2) = m[1];
    assert_eq!(t2, T0 + 60_000);
    assert_eq!(
        (b2.completed, b2.failed, b2.total_process_ms),
        (0, 1, 50_000)
    );
    let hourly = h.e.metrics("q", T0, T0 + 3_600_000, 3_600_000).unwrap();
    assert_eq!(hourly.len(), 1);
    assert_eq!((hourly[0].2.completed, hourly[0].2.failed), (1, 1));
    assert!(h
        .e
        .metrics("q", T0 + 120_000, T0 + 3_600_000, 60_000)
        .unwrap()
        .is_empty());
    assert_eq!(
        h.e.metrics("nope", 0, 1, 60_000).unwrap_err().kind,
        ErrorKind::NotFound
    );
}

#[test]
fn events_of_one_job_in_order() {
    let mut h = H::new();
    h.e.set_events_enabled(true);
    let id = h.add("q", r#"{"data":{"n":1},"maxAttempts":2,"backoff":100}"#);
    let (_, t) = h.pull("q").unwrap();
    h.op(|e| e.progress(&id, Some(&t), 50)).unwrap();
    h.fail(&id, &t, "boom");
    h.advance(100);
    let (_, t) = h.pull("q").unwrap();
    h.op(|e| e.ack(&id, Some(&t), Some("7".into()))).unwrap();
    let evs = h.events();
    let kinds: Vec<EventKind> = evs.iter().map(|e| e.0).collect();
    use EventKind::*;
    assert_eq!(
        kinds,
        vec![Pushed, Pulled, Drained, Progress, Failed, Delayed, Pulled, Drained, Completed]
    );
    assert!(evs
        .iter()
        .all(|e| e.1.is_none() || e.1.as_deref() == Some(id.as_str())));
    assert_eq!(evs[0].2, EventExtra::Data(r#"{"n":1}"#.into()));
    assert_eq!(evs[4].2, EventExtra::Error("boom".into()));
    assert_eq!(evs[5].2, EventExtra::Delay(100));
    assert_eq!(evs[8].2, EventExtra::Result("7".into()));
    // Disabled: nothing is recorded.
    h.e.set_events_enabled(false);
    h.add("q", r#"{"data":1}"#);
    h.e.set_events_enabled(true);
    assert!(h.events().is_empty());
    h.op(|e| e.pause("q", Some("x"))).unwrap();
    assert_eq!(h.events()[0].2, EventExtra::Name(Some("x".into())));
}

#[test]
fn counts_match_lists_through_a_mixed_workload() {
    let mut h = H::with(hopper_core::EngineConfig {
        stall_interval_ms: 500,
        retention_count: 20,
        ..Default::default()
    });
    let mut live: Vec<String> = Vec::new();
    // A deterministic pseudo-random mix of operations; H re-checks the invariant after each.
    let mut x: u64 = 0x1234_5678;
    let mut rnd = move |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    let queues = ["a", "b"];
    for step in 0..3000 {
        let q = queues[rnd(2) as usize];
        match rnd(12) {
            0..=3 => {
                let body = format!(
                    r#"{{"data":{step},"priority":{},"delay":{},"maxAttempts":{},"backoff":50,"uniqueKey":"k{}","removeOnComplete":{}}}"#,
                    rnd(3),
                    rnd(3) * 100,
                    1 + rnd(3),
                    rnd(40),
                    ["false", "true", "3"][rnd(3) as usize],
                );
                live.push(h.push(q, &body).id);
            }
            4 => {
                if let Some(dep) = live.get(rnd(live.len().max(1) as u64) as usize).cloned() {
                    if h.get(&dep).is_some() {
                        let body = format!(
                            r#"{{"data":0,"dependsOn":["{dep}"],"ttl":{}}}"#,
                            200 + rnd(2000)
                        );
                        live.push(h.push(q, &body).id);
                    }
                }
            }
            5..=7 => {
                if let Some((id, t)) = h.pull_as(q, 1 + rnd(3)) {
                    match rnd(4) {
                        0 => {
                            h.fail(&id, &t, "x");
                        }
                        1 => {} // leave it to stall
                        _ => h.ack(&id, &t),
                    }
                }
            }
            8 => h.advance(rnd(300)),
            9 => {
                h.op(|e| e.release_owner(1));
            }
            10 => {
                let id = live.get(rnd(live.len().max(1) as u64) as usize).cloned();
                if let Some(id) = id {
                    let _ = h.op(|e| e.cancel(&id));
                }
            }
            _ => match rnd(5) {
                0 => {
                    let _ = h.op(|e| e.retry_all(q, JobState::Failed));
                }
                1 => {
                    let _ = h.op(|e| e.promote_all(q));
                }
                2 => {
                    let _ = h.op(|e| e.clean(q, JobState::Completed, 100, 5));
                }
                3 => {
                    let _ = h.op(|e| e.drain(q));
                }
                _ => {
                    let _ = h.op(|e| e.obliterate(q, rnd(2) == 0));
                }
            },
        }
    }
    h.advance(10_000_000);
    let t = h.e.totals();
    // The mix really exercised every path.
    assert!(
        t.completed > 100 && t.failed > 10 && t.stalled > 10 && t.duplicated > 10,
        "{t:?}"
    );
    assert!(t.retried > 10 && t.expired > 0, "{t:?}");
    assert_eq!(
        h.e.total_counts()[3],
        0,
        "every lease eventually stalls out"
    );
}

#[test]
fn pages_anywhere_in_a_state_match_the_state_order() {
    // More jobs per state than one page (and one index chunk) holds, so the engine is
    // driven directly: the harness's after-each-op check lists whole states in one page.
    let mut h = H::new();
    let e = &mut h.e;
    for i in 0..3000u32 {
        let body = match i % 5 {
            0 => format!(r#"{{"data":{i},"maxAttempts":1,"priority":{}}}"#, i % 7),
            1 => format!(r#"{{"data":{i},"maxAttempts":1,"lifo":true}}"#),
            2 => format!(
                r#"{{"data":{i},"maxAttempts":1,"delay":{}}}"#,
                1000 + (i * 7919) % 5000
            ),
            _ => format!(r#"{{"data":{i},"maxAttempts":1}}"#),
        };
        let opts = PushOptions::from_json(body.as_bytes(), 1 << 20).unwrap();
        e.push("q", opts).unwrap();
    }
    for n in 0..1500 {
        let (slot, token) = e.pull("q", 0).unwrap().expect("ready");
        if n < 1200 {
            let id = e.job_at(slot).id.to_string();
            if n % 3 == 0 {
                e.fail(&id, Some(&token), Some("x".into())).unwrap();
            } else {
                e.ack(&id, Some(&token), None).unwrap();
            }
        }
    }
    for state in JobState::ALL {
        let all = e.slots_in("q", state);
        assert!(
            state == JobState::WaitingChildren || all.len() > 250,
            "{state:?}"
        );
        let (_, total) = e.list("q", state, 0, 0);
        assert_eq!(total, all.len(), "{state:?}");
        for start in [0, 1, 255, 256, 511, 512, 700, all.len().saturating_sub(3)] {
            let (page, _) = e.list("q", state, start, start + 99);
            let want: Vec<u32> = all.iter().skip(start).take(100).copied().collect();
            assert_eq!(page, want, "{state:?} from {start}");
        }
        assert!(e.list("q", state, all.len(), all.len() + 10).0.is_empty());
    }
}
