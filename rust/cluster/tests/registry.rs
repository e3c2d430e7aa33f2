//! The registry of caller-chosen ids (`hopper_ids`) with the routers: two real
//! `hopper serve --memory` servers own slots 0 and 1 (`owners/mod.rs`); an HTTP and a
//! TCP router (and the `/ws` router behind the HTTP one) in front of them claim and
//! look ids up in a real PostgreSQL (`common/mod.rs`), each test in a namespace of its
//! own. Skipped (saying so) without the venv or PostgreSQL.
//!
//! The owners are standalone servers, which answer a `jobId` they hold as a duplicate
//! whatever the queue, as a cluster's engine does for the ids the registry sends it
//! (`Engine::push`, `held_in_cluster`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use hopper_cluster::{prepare, serve_http_router, serve_tcp_routed, Registry, SlotTable};
use hopper_core::Value;
use serde_json::{json, Value as Json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

mod common;
mod owners;
use owners::{queue_of, start_server_with, table, Client, Server, SLOTS};

/// Every wait in these tests is bounded by this.
const LIMIT: Duration = Duration::from_secs(20);

/// Two owners, routers with a registry in front of them, and the registry's rows.
struct Setup {
    servers: Vec<Server>,
    http: String,
    tcp: String,
    rows: tokio_postgres::Client,
    namespace: String,
    /// Kept: the routers end their waits when the table's sender is gone.
    _table: watch::Sender<Arc<SlotTable>>,
}

/// `None` when PostgreSQL or the venv is missing. `registry: false` starts the routers
/// without one (for the measurement).
async fn setup(name: &str, registry: bool) -> Option<Setup> {
    setup_with(name, registry.then_some(None)).await
}

/// `setup` with a registry (`Some`), whose claims wait out this grace if given.
async fn setup_with(name: &str, registry: Option<Option<Duration>>) -> Option<Setup> {
    let url = common::postgres_url()?;
    let mut servers = Vec::new();
    for _ in 0..SLOTS {
        let started = tokio::task::spawn_blocking(|| start_server_with(None)).await;
        servers.push(started.expect("the starter does not panic")?);
    }
    let namespace = format!("{name}-{}", std::process::id());
    let ns = namespace.clone();
    tokio::task::spawn_blocking(move || prepare(url, &ns, SLOTS))
        .await
        .unwrap()
        .expect("the schema migrates");
    let registry = registry.map(|grace| match grace {
        Some(g) => Registry::with_claim_grace(url, &namespace, g).unwrap(),
        None => Registry::new(url, &namespace).unwrap(),
    });
    let (table_tx, rx) = watch::channel(Arc::new(table(&servers, &[1, 1])));
    let http = listen(rx.clone(), registry.clone(), true).await;
    let tcp = listen(rx, registry, false).await;
    let (rows, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    Some(Setup {
        servers,
        http,
        tcp,
        rows,
        namespace,
        _table: table_tx,
    })
}

/// A router (HTTP, else TCP) on 127.0.0.1.
async fn listen(
    owners: watch::Receiver<Arc<SlotTable>>,
    registry: Option<Arc<Registry>>,
    http: bool,
) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let (owners, registry) = (owners.clone(), registry.clone());
            let wait = Duration::from_secs(2);
            if http {
                tokio::spawn(serve_http_router(client, owners, wait, registry));
            } else {
                tokio::spawn(serve_tcp_routed(client, owners, wait, registry));
            }
        }
    });
    addr
}

impl Setup {
    /// The slot registered for `id`, if any.
    async fn row(&self, id: &str) -> Option<i32> {
        self.rows
            .query_opt(
                "SELECT slot FROM hopper_ids WHERE namespace = $1 AND job_id = $2",
                &[&self.namespace, &id],
            )
            .await
            .unwrap()
            .map(|r| r.get(0))
    }

    /// Writes `id`'s row, naming `slot`, whatever it named.
    async fn set_row(&self, id: &str, slot: i32) {
        self.rows
            .execute(
                "INSERT INTO hopper_ids (namespace, job_id, slot) VALUES ($1, $2, $3)
                 ON CONFLICT (namespace, job_id) DO UPDATE SET slot = $3",
                &[&self.namespace, &id, &slot],
            )
            .await
            .unwrap();
    }

    /// Waits (bounded) for `id`'s row to name `slot`: a lookup repairs it in a task of
    /// its own, after answering.
    async fn repaired(&self, id: &str, slot: i32) {
        let deadline = Instant::now() + LIMIT;
        while self.row(id).await != Some(slot) {
            assert!(
                Instant::now() < deadline,
                "{id}'s row never named slot {slot}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Dates `id`'s last touch `offset` from now (`-1 hour`: untouched for an hour;
    /// `100 years`: in the future, which a claim takes as a row just made).
    async fn set_touched(&self, id: &str, offset: &str) {
        self.rows
            .execute(
                "UPDATE hopper_ids SET touched = now() + $3::text::interval
                 WHERE namespace = $1 AND job_id = $2",
                &[&self.namespace, &id, &offset],
            )
            .await
            .unwrap();
    }

    /// Whether `id`'s row was touched within the last minute (by a claim: not an aged
    /// or future-dated row).
    async fn touched_lately(&self, id: &str) -> bool {
        self.rows
            .query_one(
                "SELECT touched BETWEEN now() - interval '1 minute' AND now() FROM hopper_ids
                 WHERE namespace = $1 AND job_id = $2",
                &[&self.namespace, &id],
            )
            .await
            .unwrap()
            .get(0)
    }
}

/// One HTTP request on a connection of its own (closed after the answer): status and
/// JSON body.
async fn call(addr: &str, method: &str, path: &str, body: Option<Json>) -> (u16, Json) {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(LIMIT, c.read_to_end(&mut answer))
        .await
        .expect("an answer in time")
        .unwrap();
    let end = answer.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8_lossy(&answer[..end]).to_ascii_lowercase();
    let status = head[9..12].parse().unwrap();
    let mut body = answer[end..].to_vec();
    if head.contains("transfer-encoding: chunked") {
        let (mut raw, mut out) = (&body[..], Vec::new());
        while let Some(i) = raw.windows(2).position(|w| w == b"\r\n") {
            let size = usize::from_str_radix(std::str::from_utf8(&raw[..i]).unwrap(), 16).unwrap();
            out.extend_from_slice(&raw[i + 2..i + 2 + size]);
            raw = &raw[i + 2 + size + 2..];
            if size == 0 {
                break;
            }
        }
        body = out;
    }
    (status, serde_json::from_slice(&body).unwrap_or(Json::Null))
}

async fn push(addr: &str, queue: &str, job_id: &str) -> (u16, Json) {
    let body = json!({"data": {"q": queue}, "jobId": job_id});
    call(addr, "POST", &format!("/queues/{queue}/jobs"), Some(body)).await
}

/// The queue of job `id` as `addr` answers `GET /jobs/:id` (`None`: a 404).
async fn queue_of_job(addr: &str, id: &str) -> Option<String> {
    let (status, got) = call(addr, "GET", &format!("/jobs/{id}"), None).await;
    match status {
        404 => None,
        200 => Some(got["job"]["queue"].as_str().unwrap().to_owned()),
        _ => panic!("{status} {got}"),
    }
}

fn str_field<'a>(reply: &'a Value, key: &str) -> Option<&'a str> {
    reply.get(key).and_then(Value::as_str)
}

#[tokio::test]
async fn one_job_id_pushed_to_two_slots_over_http_is_one_job() {
    let Some(s) = setup("reg-http", true).await else {
        return;
    };
    let (a, b) = (queue_of("reg-a", 0), queue_of("reg-b", 1));
    let (status, first) = push(&s.http, &a, "order-1").await;
    assert_eq!((status, &first["id"]), (200, &json!("order-1")), "{first}");
    assert_eq!(s.row("order-1").await, Some(0));
    // Slot 1's queue: the registry names slot 0, whose owner holds the id and answers
    // the duplicate with the first job's id.
    let (status, second) = push(&s.http, &b, "order-1").await;
    assert_eq!(
        (status, &second["id"]),
        (200, &json!("order-1")),
        "{second}"
    );
    assert_eq!(queue_of_job(&s.servers[0].http, "order-1").await, Some(a));
    assert_eq!(queue_of_job(&s.servers[1].http, "order-1").await, None);
    assert_eq!(s.row("order-1").await, Some(0));
    // A bulk push registers its ids (each with the queue's slot), without redirection.
    let bulk = json!({"jobs": [{"data": 1, "jobId": "bulk-1"}, {"data": 2}]});
    let (status, got) = call(
        &s.http,
        "POST",
        &format!("/queues/{b}/jobs/bulk"),
        Some(bulk),
    )
    .await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(s.row("bulk-1").await, Some(1));
}

#[tokio::test]
async fn one_job_id_pushed_to_two_slots_over_tcp_is_one_job() {
    let Some(s) = setup("reg-tcp", true).await else {
        return;
    };
    let (a, b) = (queue_of("reg-ta", 1), queue_of("reg-tb", 0));
    let mut c = Client::connect(&s.tcp).await;
    let job = |queue: &str| {
        vec![
            ("queue", Value::str(queue)),
            ("data", Value::map(vec![("n", Value::Int(1))])),
            ("jobId", Value::str("order-t")),
        ]
    };
    let first = c.send("PUSH", job(&a)).await;
    assert_eq!(str_field(&first, "id"), Some("order-t"), "{first:?}");
    let second = c.send("PUSH", job(&b)).await;
    assert_eq!(str_field(&second, "id"), Some("order-t"), "{second:?}");
    assert_eq!(queue_of_job(&s.servers[1].http, "order-t").await, Some(a));
    assert_eq!(queue_of_job(&s.servers[0].http, "order-t").await, None);
    assert_eq!(s.row("order-t").await, Some(1));
    // PUSHB registers its items' customIds.
    let items = Value::Array(vec![Value::map(vec![
        ("data", Value::Int(1)),
        ("customId", Value::str("batch-t")),
    ])]);
    let pushed = c
        .send("PUSHB", vec![("queue", Value::str(&b)), ("jobs", items)])
        .await;
    assert_eq!(pushed.get("ok"), Some(&Value::Bool(true)), "{pushed:?}");
    assert_eq!(s.row("batch-t").await, Some(0));
}

#[tokio::test]
async fn a_registered_id_goes_straight_to_its_slot() {
    let Some(s) = setup("reg-lookup", true).await else {
        return;
    };
    let (a, b) = (queue_of("reg-la", 0), queue_of("reg-lb", 1));
    // `twin` on slot 0's owner directly (past the routers: no row), then through the
    // router to slot 1's queue: no row, so it is claimed for slot 1 and made there.
    let (status, _) = push(&s.servers[0].http, &a, "twin").await;
    assert_eq!(status, 200);
    let (status, _) = push(&s.http, &b, "twin").await;
    assert_eq!(status, 200);
    assert_eq!(s.row("twin").await, Some(1));
    // Asking every owner would find slot 0's first; the row sends it to slot 1.
    assert_eq!(queue_of_job(&s.http, "twin").await, Some(b.clone()));
    let mut c = Client::connect(&s.tcp).await;
    let got = c.send("GetJob", vec![("id", Value::str("twin"))]).await;
    let queue = got.get("job").and_then(|j| j.get("queue"));
    assert_eq!(queue.and_then(Value::as_str), Some(b.as_str()), "{got:?}");
    let state = c.send("GetState", vec![("id", Value::str("twin"))]).await;
    assert_eq!(str_field(&state, "state"), Some("waiting"), "{state:?}");
    // Both active; an ACKB of `twin` (no token) acks the one its row names, where asking
    // slot by slot would ack slot 0's.
    let (status, _) = call(
        &s.servers[0].http,
        "GET",
        &format!("/queues/{a}/jobs"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let pulled = c.send("PULL", vec![("queue", Value::str(&b))]).await;
    let id = pulled.get("job").and_then(|j| j.get("id"));
    assert_eq!(id.and_then(Value::as_str), Some("twin"), "{pulled:?}");
    let ids = Value::Array(vec![Value::str("twin")]);
    let acked = c.send("ACKB", vec![("ids", ids)]).await;
    assert_eq!(acked.get("ok"), Some(&Value::Bool(true)), "{acked:?}");
    for (server, state) in [(0, "active"), (1, "completed")] {
        let (_, got) = call(&s.servers[server].http, "GET", "/jobs/twin", None).await;
        assert_eq!(got["job"]["state"], json!(state), "slot {server}: {got}");
    }
    // An id with no row is still found by asking every owner.
    let (status, _) = push(&s.servers[1].http, &b, "loose").await;
    assert_eq!(status, 200);
    assert_eq!(s.row("loose").await, None);
    assert_eq!(queue_of_job(&s.http, "loose").await, Some(b.clone()));
    let got = c.send("GetJob", vec![("id", Value::str("loose"))]).await;
    assert_eq!(got.get("ok"), Some(&Value::Bool(true)), "{got:?}");
}

#[tokio::test]
async fn a_row_naming_the_wrong_slot_hides_no_job_and_is_repaired() {
    let Some(s) = setup("reg-wrong", true).await else {
        return;
    };
    let b = queue_of("reg-wrong-b", 1);
    // `stray` on slot 1's owner (past the routers), its row naming slot 0: as after a
    // batch pushed the id elsewhere, or a push made while the registry was down.
    for id in ["stray", "stray-t"] {
        assert_eq!(push(&s.servers[1].http, &b, id).await.0, 200);
    }
    s.set_row("stray", 0).await;
    s.set_row("stray-t", 0).await;
    assert_eq!(queue_of_job(&s.http, "stray").await, Some(b.clone()));
    s.repaired("stray", 1).await;
    // A state change goes to the holder: pulled on slot 1, acked through the router.
    s.set_row("stray", 0).await;
    let (status, _) = call(&s.http, "GET", &format!("/queues/{b}/jobs"), None).await;
    assert_eq!(status, 200);
    let (status, got) = call(&s.http, "POST", "/jobs/stray/ack", Some(json!({}))).await;
    assert_eq!(status, 200, "{got}");
    let (_, got) = call(&s.servers[1].http, "GET", "/jobs/stray", None).await;
    assert_eq!(got["job"]["state"], json!("completed"), "{got}");
    s.repaired("stray", 1).await;
    let mut c = Client::connect(&s.tcp).await;
    // Over TCP: found, repaired, and acked where it is.
    let got = c.send("GetJob", vec![("id", Value::str("stray-t"))]).await;
    let queue = got.get("job").and_then(|j| j.get("queue"));
    assert_eq!(queue.and_then(Value::as_str), Some(b.as_str()), "{got:?}");
    s.repaired("stray-t", 1).await;
    s.set_row("stray-t", 0).await;
    let pulled = c.send("PULL", vec![("queue", Value::str(&b))]).await;
    let id = pulled.get("job").and_then(|j| j.get("id"));
    assert_eq!(id.and_then(Value::as_str), Some("stray-t"), "{pulled:?}");
    let acked = c.send("ACK", vec![("id", Value::str("stray-t"))]).await;
    assert_eq!(acked.get("ok"), Some(&Value::Bool(true)), "{acked:?}");
    let (_, got) = call(&s.servers[1].http, "GET", "/jobs/stray-t", None).await;
    assert_eq!(got["job"]["state"], json!("completed"), "{got}");
    s.repaired("stray-t", 1).await;
    // An ACKB item with a wrong row: probed from the row on, acked where it is.
    assert_eq!(push(&s.servers[1].http, &b, "stray-b").await.0, 200);
    s.set_row("stray-b", 0).await;
    let pulled = c.send("PULL", vec![("queue", Value::str(&b))]).await;
    let id = pulled.get("job").and_then(|j| j.get("id"));
    assert_eq!(id.and_then(Value::as_str), Some("stray-b"), "{pulled:?}");
    let ids = Value::Array(vec![Value::str("stray-b")]);
    let acked = c.send("ACKB", vec![("ids", ids)]).await;
    assert_eq!(acked.get("ok"), Some(&Value::Bool(true)), "{acked:?}");
    let (_, got) = call(&s.servers[1].http, "GET", "/jobs/stray-b", None).await;
    assert_eq!(got["job"]["state"], json!("completed"), "{got}");
    s.repaired("stray-b", 1).await;
    // Held nowhere: not found, as without a registry, and the row stays.
    s.set_row("ghost", 1).await;
    assert_eq!(queue_of_job(&s.http, "ghost").await, None);
    let got = c.send("GetJob", vec![("id", Value::str("ghost"))]).await;
    assert_eq!(got.get("ok"), Some(&Value::Bool(false)), "{got:?}");
    let acked = c.send("ACK", vec![("id", Value::str("ghost"))]).await;
    assert_eq!(acked.get("ok"), Some(&Value::Bool(false)), "{acked:?}");
    assert_eq!(s.row("ghost").await, Some(1));
}

#[tokio::test]
async fn a_removed_jobs_id_can_be_pushed_to_another_slot() {
    let Some(s) = setup("reg-moved", true).await else {
        return;
    };
    let (a, b) = (queue_of("reg-ma", 0), queue_of("reg-mb", 1));
    assert_eq!(push(&s.http, &a, "again").await.0, 200);
    let (status, got) = call(&s.http, "DELETE", "/jobs/again", None).await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(queue_of_job(&s.servers[0].http, "again").await, None);
    // Slot 0 no longer holds it: the row moves to slot 1 and the job is made there.
    assert_eq!(push(&s.http, &b, "again").await.0, 200);
    assert_eq!(s.row("again").await, Some(1));
    assert_eq!(
        queue_of_job(&s.servers[1].http, "again").await,
        Some(b.clone())
    );
    assert_eq!(queue_of_job(&s.http, "again").await, Some(b.clone()));
    // Over TCP too: removed on slot 1 by id, pushed again to slot 0's queue.
    let mut c = Client::connect(&s.tcp).await;
    let removed = c.send("Cancel", vec![("id", Value::str("again"))]).await;
    assert_eq!(removed.get("ok"), Some(&Value::Bool(true)), "{removed:?}");
    let pushed = c
        .send(
            "PUSH",
            vec![
                ("queue", Value::str(&a)),
                ("data", Value::Nil),
                ("jobId", Value::str("again")),
            ],
        )
        .await;
    assert_eq!(str_field(&pushed, "id"), Some("again"), "{pushed:?}");
    assert_eq!(s.row("again").await, Some(0));
    assert_eq!(queue_of_job(&s.servers[0].http, "again").await, Some(a));
}

#[tokio::test]
async fn one_job_id_pushed_to_two_slots_over_ws_is_one_job() {
    let Some(s) = setup("reg-ws", true).await else {
        return;
    };
    let (a, b) = (queue_of("reg-wa", 0), queue_of("reg-wb", 1));
    let stream = TcpStream::connect(&s.http).await.unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async(format!("ws://{}/ws", s.http), stream)
        .await
        .unwrap();
    // Replies by reqId; the events of both slots arrive on the socket meanwhile.
    let mut send = async |req_id: &str, fields: Vec<(&'static str, Value)>| {
        let mut fields = fields;
        fields.push(("reqId", Value::str(req_id)));
        ws.send(Message::text(Value::map(fields).to_json()))
            .await
            .unwrap();
        for _ in 0..100 {
            let next = tokio::time::timeout(LIMIT, ws.next()).await;
            let Ok(Some(Ok(Message::Text(text)))) = next else {
                panic!("no reply to {req_id}: {next:?}")
            };
            let v = Value::from_json(text.as_bytes()).unwrap();
            if v.get("reqId") == Some(&Value::str(req_id)) {
                return v;
            }
        }
        panic!("no reply to {req_id} among 100 messages")
    };
    let job = |queue: &str| {
        vec![
            ("cmd", Value::str("PUSH")),
            ("queue", Value::str(queue)),
            ("data", Value::map(vec![])),
            ("jobId", Value::str("order-w")),
        ]
    };
    let first = send("1", job(&a)).await;
    assert_eq!(str_field(&first, "id"), Some("order-w"), "{first:?}");
    let second = send("2", job(&b)).await;
    assert_eq!(str_field(&second, "id"), Some("order-w"), "{second:?}");
    assert_eq!(
        queue_of_job(&s.servers[0].http, "order-w").await,
        Some(a.clone())
    );
    assert_eq!(queue_of_job(&s.servers[1].http, "order-w").await, None);
    assert_eq!(s.row("order-w").await, Some(0));
    // A row naming the wrong slot: the probe goes on to slot 0, and the row is repaired.
    s.set_row("order-w", 1).await;
    let get = vec![("cmd", Value::str("GetJob")), ("id", Value::str("order-w"))];
    let got = send("3", get).await;
    let queue = got.get("job").and_then(|j| j.get("queue"));
    assert_eq!(queue.and_then(Value::as_str), Some(a.as_str()), "{got:?}");
    s.repaired("order-w", 0).await;
}

/// The registry's cost, measured (not part of the suite; release build):
/// `cargo test --release -p hopper-cluster --test registry -- --ignored --nocapture`.
/// Pushes with caller-chosen ids to a queue of each slot through routers with and
/// without a registry: HTTP keep-alive and TCP, `CONNS` connections each sending one
/// push at a time. Prints the rates of 3 rounds and their median.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
#[ignore]
async fn measure_push_rate_with_and_without_the_registry() {
    const CONNS: usize = 8;
    const PER_CONN: usize = 500;
    for registry in [false, true] {
        let Some(s) = setup(&format!("reg-bench-{registry}"), registry).await else {
            return;
        };
        for http in [true, false] {
            let mut rates = Vec::new();
            for round in 0..3 {
                let started = Instant::now();
                let mut conns = tokio::task::JoinSet::new();
                for conn in 0..CONNS {
                    let addr = if http { s.http.clone() } else { s.tcp.clone() };
                    let queue = queue_of("bench", (conn % SLOTS as usize) as u32);
                    let prefix = format!("{registry}-{http}-{round}-{conn}");
                    conns.spawn(async move {
                        if http {
                            http_pushes(&addr, &queue, &prefix, PER_CONN).await
                        } else {
                            tcp_pushes(&addr, &queue, &prefix, PER_CONN).await
                        }
                    });
                }
                while let Some(done) = conns.join_next().await {
                    done.unwrap();
                }
                rates.push((CONNS * PER_CONN) as f64 / started.elapsed().as_secs_f64());
            }
            let mut sorted = rates.clone();
            sorted.sort_by(f64::total_cmp);
            let (api, with) = (if http { "HTTP" } else { "TCP" }, registry);
            println!(
                "{api} registry={with}: {:.0} pushes/s median (rounds {:?})",
                sorted[1],
                rates.iter().map(|r| r.round()).collect::<Vec<_>>()
            );
        }
    }
}

/// `n` pushes with ids `prefix-i`, one at a time on one keep-alive connection.
async fn http_pushes(addr: &str, queue: &str, prefix: &str, n: usize) {
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.set_nodelay(true).unwrap();
    let mut buf = Vec::new();
    for i in 0..n {
        let body = format!(r#"{{"data":{{"i":{i}}},"jobId":"{prefix}-{i}"}}"#);
        let request = format!(
            "POST /queues/{queue}/jobs HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        c.write_all(request.as_bytes()).await.unwrap();
        let mut chunk = [0u8; 4096];
        let (end, length) = loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                assert!(head.starts_with("http/1.1 200"), "{head}");
                let length = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map(|v| v.trim().parse::<usize>().unwrap())
                    .expect("a push answer has a length");
                break (end + 4, length);
            }
            let read = tokio::time::timeout(LIMIT, c.read(&mut chunk)).await;
            let n = read.expect("an answer in time").unwrap();
            assert!(n > 0, "the router closed the connection");
            buf.extend_from_slice(&chunk[..n]);
        };
        while buf.len() < end + length {
            let read = tokio::time::timeout(LIMIT, c.read(&mut chunk)).await;
            let n = read.expect("an answer in time").unwrap();
            assert!(n > 0, "the router closed the connection");
            buf.extend_from_slice(&chunk[..n]);
        }
        buf.drain(..end + length);
    }
}

/// `n` PUSHes with ids `prefix-i`, one at a time on one connection.
async fn tcp_pushes(addr: &str, queue: &str, prefix: &str, n: usize) {
    let mut c = Client::connect(addr).await;
    c.stream.set_nodelay(true).unwrap();
    for i in 0..n {
        let id = format!("{prefix}-{i}");
        let fields = vec![
            ("queue", Value::str(queue)),
            ("data", Value::Int(i as i64)),
            ("jobId", Value::str(&id)),
        ];
        let reply = c.send("PUSH", fields).await;
        assert_eq!(str_field(&reply, "id"), Some(id.as_str()), "{reply:?}");
    }
}

#[tokio::test]
async fn every_push_of_a_registered_id_touches_its_row() {
    let Some(s) = setup("reg-touch", true).await else {
        return;
    };
    let (a, b) = (queue_of("reg-ka", 0), queue_of("reg-kb", 1));
    // A claim of a row there (the id pushed again, as a duplicate).
    assert_eq!(push(&s.http, &a, "kept").await.0, 200);
    s.set_touched("kept", "-1 hour").await;
    assert!(!s.touched_lately("kept").await);
    assert_eq!(push(&s.http, &a, "kept").await.0, 200);
    assert!(s.touched_lately("kept").await);
    // A move: the job removed, its id pushed to the other slot's queue.
    assert_eq!(call(&s.http, "DELETE", "/jobs/kept", None).await.0, 200);
    s.set_touched("kept", "-1 hour").await;
    assert_eq!(push(&s.http, &b, "kept").await.0, 200);
    assert_eq!(s.row("kept").await, Some(1));
    assert!(s.touched_lately("kept").await);
    // A batch's registration, over TCP.
    let mut c = Client::connect(&s.tcp).await;
    let items = || {
        Value::Array(vec![Value::map(vec![
            ("data", Value::Int(1)),
            ("customId", Value::str("batched")),
        ])])
    };
    let pushed = c
        .send("PUSHB", vec![("queue", Value::str(&a)), ("jobs", items())])
        .await;
    assert_eq!(pushed.get("ok"), Some(&Value::Bool(true)), "{pushed:?}");
    s.set_touched("batched", "-1 hour").await;
    let pushed = c
        .send("PUSHB", vec![("queue", Value::str(&a)), ("jobs", items())])
        .await;
    assert_eq!(pushed.get("ok"), Some(&Value::Bool(true)), "{pushed:?}");
    assert!(s.touched_lately("batched").await);
}

#[tokio::test]
async fn a_push_racing_another_fronts_claim_waits_for_it_and_is_one_job() {
    // A grace far longer than the test: the racing push waits for the other one however
    // slow the machine is.
    let Some(s) = setup_with("reg-race", Some(Some(Duration::from_secs(60)))).await else {
        return;
    };
    let (a, b) = (queue_of("reg-ra", 0), queue_of("reg-rb", 1));
    // Another front has just claimed `raced` for slot 0 (a fresh row) and its push is
    // still on its way: slot 0's owner does not hold the id yet.
    s.set_row("raced", 0).await;
    s.set_touched("raced", "100 years").await;
    let router = s.http.clone();
    let (queue_b, queue_a) = (b.clone(), a.clone());
    let racing = tokio::spawn(async move { push(&router, &queue_b, "raced").await });
    // Once this push has claimed (touched the row), the other front's lands on slot 0.
    let deadline = Instant::now() + LIMIT;
    while !s.touched_lately("raced").await {
        assert!(Instant::now() < deadline, "the racing push never claimed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!racing.is_finished(), "the racing push did not wait");
    let owner0 = s.servers[0].http.clone();
    assert_eq!(push(&owner0, &queue_a, "raced").await.0, 200);
    let (status, got) = racing.await.unwrap();
    assert_eq!((status, got["id"].as_str()), (200, Some("raced")), "{got}");
    // One job, slot 0's; the row still names it.
    assert_eq!(queue_of_job(&s.servers[0].http, "raced").await, Some(a));
    assert_eq!(queue_of_job(&s.servers[1].http, "raced").await, None);
    assert_eq!(s.row("raced").await, Some(0));
}

#[tokio::test]
async fn a_fresh_row_whose_push_never_lands_moves_after_the_grace() {
    let Some(s) = setup_with("reg-stranded", Some(Some(Duration::from_millis(200)))).await else {
        return;
    };
    let b = queue_of("reg-sb", 1);
    s.set_row("stranded", 0).await;
    assert_eq!(push(&s.http, &b, "stranded").await.0, 200);
    assert_eq!(queue_of_job(&s.servers[1].http, "stranded").await, Some(b));
    assert_eq!(s.row("stranded").await, Some(1));
}
