//! The TCP router of a cluster with several slots, in front of real hopper servers (one
//! per slot, `hopper serve --memory` from the worktree's venv, with an auth token): each
//! request reaches its slot's owner, batches split, custom ids are found by probing,
//! cluster-wide commands merge, Auth reaches upstreams opened later, and a moved slot
//! closes the client connection; the stock SDK's contract scripts pass through it.
//! Skipped (saying so) when the venv (or, for the SDK, bun) is not installed.
//!
//! The owners are standalone servers, whose ids carry no slot tag, so ids are found by
//! probing (a random id passes the tag's 32-bit check with a chance of 2^-32 only).

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hopper_cluster::{serve_tcp_routed, SlotTable};
use hopper_core::cluster_slots::queue_slot;
use hopper_core::Value;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::watch;

mod owners;
use owners::{queue_of, start_server, table, Client, Server, SLOTS, TOKEN};

/// A router listening on 127.0.0.1, reading the slot table from `owners`.
async fn router(owners: watch::Receiver<Arc<SlotTable>>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            tokio::spawn(serve_tcp_routed(
                client,
                owners.clone(),
                Duration::from_secs(2),
                None,
            ));
        }
    });
    addr
}

fn assert_ok(reply: &Value) {
    assert_eq!(reply.get("ok"), Some(&Value::Bool(true)), "{reply:?}");
}

fn id_of(reply: &Value) -> String {
    reply.get("id").and_then(Value::as_str).unwrap().to_owned()
}

fn count(reply: &Value, state: &str) -> i64 {
    match reply.get("counts").and_then(|c| c.get(state)) {
        Some(Value::Int(n)) => *n,
        other => panic!("no {state} count in {reply:?}: {other:?}"),
    }
}

/// Two servers as the owners of slots 0 and 1, and a router in front.
async fn cluster() -> Option<(Vec<Server>, watch::Sender<Arc<SlotTable>>, String)> {
    let servers = vec![start_server()?, start_server()?];
    let (tx, rx) = watch::channel(Arc::new(table(&servers, &[1, 1])));
    let addr = router(rx).await;
    Some((servers, tx, addr))
}

async fn push(c: &mut Client, queue: &str, extra: Vec<(&'static str, Value)>) -> Value {
    let mut fields = vec![
        ("queue", Value::str(queue)),
        ("data", Value::map(vec![("n", Value::Int(1))])),
    ];
    fields.extend(extra);
    c.send("PUSH", fields).await
}

#[tokio::test]
async fn requests_reach_their_slots_owner_and_batches_split() {
    let Some((servers, _tx, addr)) = cluster().await else {
        return;
    };
    let (qa, qb) = (queue_of("land", 0), queue_of("land", 1));
    let mut c = Client::connect(&addr).await;
    c.auth().await;
    for q in [&qa, &qb, &qb] {
        assert_ok(&push(&mut c, q, vec![]).await);
    }
    // Each owner holds only its slot's queue.
    for (slot, server) in servers.iter().enumerate() {
        let mut direct = Client::connect(&server.tcp).await;
        direct.auth().await;
        for (q, jobs) in [(&qa, 1), (&qb, 2)] {
            let r = direct
                .send("GetJobCounts", vec![("queue", Value::str(q))])
                .await;
            let here = if queue_slot(q, SLOTS) == slot as u32 {
                jobs
            } else {
                0
            };
            assert_eq!(count(&r, "waiting"), here, "{q} on slot {slot}");
        }
    }
    // PULL and ACK of one job; PULLB of both queues, then one ACKB of all their ids.
    let pulled = c.send("PULL", vec![("queue", Value::str(&qb))]).await;
    let job = pulled.get("job").expect("a job");
    let id = job.get("id").and_then(Value::as_str).unwrap().to_owned();
    assert_ok(&c.send("ACK", vec![("id", Value::str(&id))]).await);
    let mut ids = Vec::new();
    for q in [&qa, &qb] {
        let r = c
            .send(
                "PULLB",
                vec![("queue", Value::str(q)), ("count", Value::Int(10))],
            )
            .await;
        let Some(Value::Array(jobs)) = r.get("jobs") else {
            panic!("jobs in {r:?}")
        };
        ids.extend(jobs.iter().map(|j| j.get("id").cloned().unwrap()));
    }
    assert_eq!(ids.len(), 2);
    let results = Value::Array(vec![Value::Int(1), Value::Int(2)]);
    let r = c
        .send(
            "ACKB",
            vec![("ids", Value::Array(ids.clone())), ("results", results)],
        )
        .await;
    assert_ok(&r);
    for (q, done) in [(&qa, 1), (&qb, 2)] {
        let r = c.send("GetJobCounts", vec![("queue", Value::str(q))]).await;
        assert_eq!(count(&r, "completed"), done, "{q}");
        assert_eq!(count(&r, "active"), 0, "{q}");
    }
    // ACKB again: both are completed, so the owners' error is the answer.
    let r = c.send("ACKB", vec![("ids", Value::Array(ids))]).await;
    let error = r.get("error").and_then(Value::as_str).unwrap_or("");
    assert!(
        error.starts_with("Job not found or not in processing state"),
        "{r:?}"
    );
}

#[tokio::test]
async fn custom_ids_are_found_and_cluster_wide_commands_merge() {
    let Some((servers, _tx, addr)) = cluster().await else {
        return;
    };
    let (qa, qb) = (queue_of("probe", 0), queue_of("probe", 1));
    let mut c = Client::connect(&addr).await;
    c.auth().await;
    let pushed = push(&mut c, &qb, vec![("jobId", Value::str("order-7"))]).await;
    assert_eq!(id_of(&pushed), "order-7");
    assert_ok(&push(&mut c, &qa, vec![]).await);
    let got = c.send("GetJob", vec![("id", Value::str("order-7"))]).await;
    assert_ok(&got);
    assert_eq!(
        got.get("job").and_then(|j| j.get("queue")),
        Some(&Value::str(&qb))
    );
    let state = c
        .send("GetState", vec![("id", Value::str("order-7"))])
        .await;
    assert_eq!(state.get("state"), Some(&Value::str("waiting")));
    let missing = c.send("GetJob", vec![("id", Value::str("nowhere"))]).await;
    assert_eq!(missing.get("ok"), Some(&Value::Bool(false)));
    // Stats and ListQueues: every owner's, merged.
    let stats = c.send("Stats", vec![]).await;
    assert_ok(&stats);
    let waiting = |r: &Value| r.get("stats").and_then(|s| s.get("waiting")).cloned();
    let mut total = 0.0;
    for server in &servers {
        let mut direct = Client::connect(&server.tcp).await;
        direct.auth().await;
        let one = direct.send("Stats", vec![]).await;
        total += waiting(&one).and_then(|v| v.as_number()).unwrap();
    }
    assert_eq!(waiting(&stats).and_then(|v| v.as_number()), Some(total));
    assert_eq!(total, 2.0);
    let queues = c.send("ListQueues", vec![]).await;
    let Some(Value::Array(names)) = queues.get("queues") else {
        panic!("queues in {queues:?}")
    };
    for q in [&qa, &qb] {
        assert!(names.contains(&Value::str(q)), "{q} in {names:?}");
    }
    // Job schedulers: created on their queue's slot, found by name by probing, listed
    // from every slot.
    for (name, q) in [("nightly-a", &qa), ("nightly-b", &qb)] {
        let fields = vec![
            ("name", Value::str(name)),
            ("queue", Value::str(q)),
            ("data", Value::map(vec![])),
            ("repeatEvery", Value::Int(3_600_000)),
        ];
        assert_ok(&c.send("Cron", fields).await);
    }
    let got = c
        .send("CronGet", vec![("name", Value::str("nightly-b"))])
        .await;
    assert_eq!(
        got.get("cron").and_then(|j| j.get("queue")),
        Some(&Value::str(&qb)),
        "{got:?}"
    );
    let listed = c.send("CronList", vec![]).await;
    let Some(Value::Array(crons)) = listed.get("crons") else {
        panic!("crons in {listed:?}")
    };
    assert_eq!(crons.len(), 2, "{crons:?}");
    let deleted = c
        .send("CronDelete", vec![("name", Value::str("nightly-b"))])
        .await;
    assert_ok(&deleted);
    let again = c
        .send("CronDelete", vec![("name", Value::str("nightly-b"))])
        .await;
    assert_eq!(again.get("error"), Some(&Value::str("Cron job not found")));
    // One exposition of both slots, merged: each family once (the sums: unit tests).
    let exposition = c.send("Prometheus", vec![]).await;
    assert_ok(&exposition);
    let text = exposition
        .get("data")
        .and_then(|d| d.get("metrics"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    assert_eq!(
        text.matches("# TYPE bunqueue_jobs_pushed").count(),
        1,
        "{text}"
    );
}

#[tokio::test]
async fn auth_reaches_upstreams_opened_later() {
    let Some((_servers, _tx, addr)) = cluster().await else {
        return;
    };
    let qb = queue_of("auth", 1);
    // Without Auth the owner refuses.
    let mut c = Client::connect(&addr).await;
    let r = push(&mut c, &qb, vec![]).await;
    assert_eq!(r.get("error"), Some(&Value::str("Not authenticated")));
    // Auth answered by slot 0's owner; slot 1's upstream, opened after, is authenticated.
    let mut c = Client::connect(&addr).await;
    c.auth().await;
    assert_ok(&push(&mut c, &qb, vec![]).await);
    let wrong = c.send("Auth", vec![("token", Value::str("nope"))]).await;
    assert_eq!(wrong.get("error"), Some(&Value::str("Invalid token")));
}

#[tokio::test]
async fn events_of_every_slot_and_ignored_acks_at_the_clients_indices() {
    let Some((_servers, _tx, addr)) = cluster().await else {
        return;
    };
    let (qa, qb) = (queue_of("events", 0), queue_of("events", 1));
    let mut listener = Client::connect(&addr).await;
    listener.auth().await;
    let r = listener
        .send("SubscribeEvents", vec![("queue", Value::str(&qb))])
        .await;
    assert_ok(&r);
    let mut c = Client::connect(&addr).await;
    c.auth().await;
    assert_ok(&push(&mut c, &qa, vec![]).await);
    assert_ok(&push(&mut c, &qb, vec![]).await);
    let event = listener.frame().await.expect("an event");
    assert_eq!(event.get("type"), Some(&Value::str("event")), "{event:?}");
    let event = event.get("event").unwrap();
    assert_eq!(event.get("eventType"), Some(&Value::str("pushed")));
    assert_eq!(event.get("queue"), Some(&Value::str(&qb)));
    // Failed jobs wait for their retry: an ACKB of them ignores them, reported at the
    // client's indices although each slot saw only its own.
    let mut ids = Vec::new();
    for q in [&qb, &qa] {
        let pulled = c.send("PULL", vec![("queue", Value::str(q))]).await;
        let id = pulled
            .get("job")
            .and_then(|j| j.get("id"))
            .cloned()
            .unwrap();
        let failed = c.send("FAIL", vec![("id", id.clone())]).await;
        assert_ok(&failed);
        ids.push(id);
    }
    let r = c
        .send("ACKB", vec![("ids", Value::Array(ids.clone()))])
        .await;
    let data = r
        .get("data")
        .unwrap_or_else(|| panic!("ignored items in {r:?}"));
    assert_eq!(
        data.get("ignoredIndices"),
        Some(&Value::Array(vec![Value::Int(0), Value::Int(1)]))
    );
    assert_eq!(data.get("ignoredIds"), Some(&Value::Array(ids)));
}

#[tokio::test]
async fn a_moved_slot_closes_the_client_connection() {
    let Some((servers, tx, addr)) = cluster().await else {
        return;
    };
    let qb = queue_of("move", 1);
    let mut c = Client::connect(&addr).await;
    c.auth().await;
    assert_ok(&push(&mut c, &qb, vec![]).await);
    tx.send(Arc::new(table(&servers, &[1, 2]))).unwrap();
    assert!(c.frame().await.is_none(), "closed after the move");
    // A new connection works with the new epoch.
    let mut c = Client::connect(&addr).await;
    c.auth().await;
    assert_ok(&push(&mut c, &qb, vec![]).await);
}

#[tokio::test]
async fn an_oversized_frame_is_answered_and_closes() {
    let Some((_servers, _tx, addr)) = cluster().await else {
        return;
    };
    let mut c = Client::connect(&addr).await;
    let too_large = (64u32 * 1024 * 1024 + 1).to_be_bytes();
    c.stream.write_all(&too_large).await.unwrap();
    let reply = c.frame().await.expect("an answer");
    assert_eq!(
        reply.get("error"),
        Some(&Value::str(
            "Frame too large: 67108865 bytes exceeds maximum 67108864"
        ))
    );
    assert!(c.frame().await.is_none());
}

/// Runs tests/server/sdk/<script>.ts (the stock bunqueue SDK) against `port` on
/// `queue`; returns its `RESULT` object, or `None` when bun is not installed.
fn run_sdk(script: &str, port: u16, queue: &str, args: &[&str]) -> Option<Value> {
    let repo = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let bun = format!("{repo}/bench/peers/node_modules/.bin/bun");
    if !std::path::Path::new(&bun).exists() {
        eprintln!("skipped: {bun} is missing (run `make install`)");
        return None;
    }
    let mut child = Command::new(&bun)
        .arg("--no-install")
        .arg(format!("{repo}/tests/server/sdk/{script}.ts"))
        .args(args)
        .current_dir(repo)
        .env_remove("BQ_TOKEN")
        .env_remove("BUNQUEUE_TOKEN")
        .env_remove("BUNQUEUE_EMBEDDED")
        .env("BQ_HOST", "127.0.0.1")
        .env("BQ_PORT", port.to_string())
        .env("BQ_QUEUE", queue)
        .env("BQ_TEST_TOKEN", TOKEN)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("bun starts");
    // The harness ends every script within its own limit; this is a backstop.
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{script}.ts did not end");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut stdout).unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{script}.ts: {status}: {stdout}");
    let result = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .and_then(|r| Value::from_json(r.as_bytes()));
    Some(result.unwrap_or_else(|| panic!("{script}.ts printed no result: {stdout}")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stock_sdk_works_through_the_router() {
    let Some((_servers, _tx, addr)) = cluster().await else {
        return;
    };
    let port: u16 = addr.rsplit(':').next().unwrap().parse().unwrap();
    // The owners are servers without a cluster, so no outbox carries a flow's jobs to
    // another slot: a base name whose -a and -b queues share a slot.
    let flow_base = (0..1000)
        .map(|i| format!("sdk-flow-{i}"))
        .find(|q| {
            let slot = queue_slot(q, SLOTS);
            [format!("{q}-a"), format!("{q}-b")]
                .iter()
                .all(|c| queue_slot(c, SLOTS) == slot)
        })
        .unwrap();
    let scripts: [(&str, String, &[&str]); 10] = [
        ("add", queue_of("sdk-add", 0), &["100", "50"]),
        ("custom_id", queue_of("sdk-custom", 1), &[]),
        ("concurrency", queue_of("sdk-conc", 1), &["64", "300"]),
        ("retry", queue_of("sdk-retry", 0), &[]),
        ("events", queue_of("sdk-events", 1), &[]),
        ("close", queue_of("sdk-close", 1), &["30"]),
        ("auth", queue_of("sdk-auth", 1), &[]),
        ("queue_control", queue_of("sdk-control", 1), &[]),
        ("flow", flow_base, &[]),
        ("schedulers_and_limits", queue_of("sdk-sched", 1), &[]),
    ];
    for (script, queue, args) in scripts {
        let run = tokio::task::spawn_blocking(move || run_sdk(script, port, &queue, args));
        let Some(result) = run.await.unwrap() else {
            return;
        };
        assert!(result.get("error").is_none(), "{script}: {result:?}");
        assert!(result.get("timedOut").is_none(), "{script}: {result:?}");
        eprintln!(
            "{script}: {}",
            result.to_json().chars().take(300).collect::<String>()
        );
        if script == "concurrency" {
            let Some(Value::Array(processed)) = result.get("processed") else {
                panic!("processed in {result:?}")
            };
            assert_eq!(processed.len(), 300);
            assert_eq!(
                result.get("wrongResults").and_then(Value::as_number),
                Some(0.0)
            );
        }
    }
}
