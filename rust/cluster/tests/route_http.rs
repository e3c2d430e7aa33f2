//! The HTTP router against real servers: two `hopper serve --memory` processes act as
//! the owners of slots 0 and 1, and a router on 127.0.0.1 sends each request to its
//! slot's owner (`owners/mod.rs` starts them).

use std::sync::Arc;
use std::time::Duration;

use hopper_cluster::{serve_http_router, Owner, SlotTable};
use hopper_core::cluster_slots::{id_slot, queue_slot};
use owners::{free_port, start_server_with, Server};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::{timeout, Instant};

mod owners;
use owners::SLOTS;
/// Every wait in these tests is bounded by this.
const LIMIT: Duration = Duration::from_secs(20);

/// Two servers as the owners of slots 0 and 1, and a router in front of them.
struct Cluster {
    servers: Vec<Server>,
    router: String,
    table: watch::Sender<Arc<SlotTable>>,
}

fn owner(http: &str, epoch: i64) -> Option<Owner> {
    Some(Owner {
        epoch,
        http: http.to_string(),
        tcp: String::new(),
    })
}

async fn cluster(wait: Duration) -> Option<Cluster> {
    let mut servers = Vec::new();
    for _ in 0..SLOTS {
        let started = tokio::task::spawn_blocking(|| start_server_with(None)).await;
        servers.push(started.expect("the starter does not panic")?);
    }
    let owners = servers
        .iter()
        .map(|s| {
            Some(Owner {
                epoch: 1,
                http: s.http.clone(),
                tcp: String::new(),
            })
        })
        .collect();
    let (router, table) = route(SlotTable::new(owners), wait).await;
    Some(Cluster {
        servers,
        router,
        table,
    })
}

/// A router listening on 127.0.0.1 for the table given, and the table's sender.
async fn route(table: SlotTable, wait: Duration) -> (String, watch::Sender<Arc<SlotTable>>) {
    let (tx, rx) = watch::channel(Arc::new(table));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let _ = client.set_nodelay(true); // as the front sets it
            tokio::spawn(serve_http_router(client, rx.clone(), wait, None));
        }
    });
    (addr, tx)
}

/// A queue name of `slot`.
fn queue_of(slot: u32, prefix: &str) -> String {
    (0..1000)
        .map(|i| format!("{prefix}-{i}"))
        .find(|q| queue_slot(q, SLOTS) == slot)
        .unwrap()
}

/// Reads one response: (status, head, body), body by Content-Length or chunks.
async fn read_response(
    c: &mut TcpStream,
    buf: &mut Vec<u8>,
) -> std::io::Result<(u16, String, Vec<u8>)> {
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        read_more(c, buf).await?;
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    buf.drain(..head_end);
    let status: u16 = head[9..12].parse().unwrap();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map(|v| v.trim().parse::<usize>().unwrap());
    let mut body = Vec::new();
    if let Some(n) = length {
        while buf.len() < n {
            read_more(c, buf).await?;
        }
        body = buf.drain(..n).collect();
    } else if head.contains("transfer-encoding: chunked") {
        loop {
            let line_end = loop {
                if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
                    break i;
                }
                read_more(c, buf).await?;
            };
            let size =
                usize::from_str_radix(std::str::from_utf8(&buf[..line_end]).unwrap(), 16).unwrap();
            while buf.len() < line_end + 2 + size + 2 {
                read_more(c, buf).await?;
            }
            body.extend_from_slice(&buf[line_end + 2..line_end + 2 + size]);
            buf.drain(..line_end + 2 + size + 2);
            if size == 0 {
                break;
            }
        }
    }
    Ok((status, head, body))
}

/// Reads what comes next, within `LIMIT`; a buffer past 1 MiB is an error, so that
/// every read loop ends (each read adds to the buffer it checks).
async fn read_more(c: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<()> {
    if buf.len() > 1 << 20 {
        return Err(std::io::Error::other("more than expected"));
    }
    let mut chunk = [0u8; 8192];
    let n = timeout(LIMIT, c.read(&mut chunk))
        .await
        .map_err(|_| std::io::Error::other("timed out"))??;
    if n == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    buf.extend_from_slice(&chunk[..n]);
    Ok(())
}

async fn exchange(c: &mut TcpStream, request: &str) -> std::io::Result<(u16, String, Vec<u8>)> {
    c.write_all(request.as_bytes()).await?;
    read_response(c, &mut Vec::new()).await
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n")
}

fn post(path: &str, body: &Value) -> String {
    let body = body.to_string();
    format!(
        "POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// One request on a connection of its own, the body as JSON.
async fn call(addr: &str, request: &str) -> (u16, Value) {
    let mut c = TcpStream::connect(addr).await.unwrap();
    let (status, _, body) = exchange(&mut c, request).await.unwrap();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

async fn push(addr: &str, queue: &str, data: Value) -> String {
    let (status, body) = call(
        addr,
        &post(&format!("/queues/{queue}/jobs"), &json!({"data": data})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn pushes_land_on_their_slot_and_jobs_are_found_by_id() {
    let Some(cl) = cluster(Duration::from_secs(2)).await else {
        return;
    };
    let queues = [queue_of(0, "land"), queue_of(1, "land")];
    for (slot, queue) in queues.iter().enumerate() {
        push(&cl.router, queue, json!({"slot": slot})).await;
    }
    for (slot, queue) in queues.iter().enumerate() {
        let (_, listed) = call(&cl.servers[slot].http, &get("/api/queues")).await;
        let names: Vec<&str> = listed["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|q| q["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, vec![queue.as_str()], "slot {slot}");
    }
    // The merged list has both, sorted by name as one server sorts it.
    let (_, merged) = call(&cl.router, &get("/api/queues")).await;
    let mut want: Vec<&str> = queues.iter().map(String::as_str).collect();
    want.sort();
    let names: Vec<&str> = merged["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, want);

    // Ids the (single) servers generate carry no tag: found by asking each slot.
    let q1 = &queues[1];
    let id = push(&cl.router, q1, json!({"n": 1})).await;
    assert_eq!(id_slot(&id, SLOTS), None, "{id}");
    let (status, got) = call(&cl.router, &get(&format!("/jobs/{id}"))).await;
    assert_eq!(
        (status, got["job"]["queue"].as_str()),
        (200, Some(q1.as_str()))
    );
    // Pull everything of q1 through the router, ack each by id (a lookup each time).
    let mut acked = 0;
    for _ in 0..5 {
        let (status, pulled) = call(&cl.router, &get(&format!("/queues/{q1}/jobs"))).await;
        assert_eq!(status, 200);
        if pulled["job"].is_null() {
            break;
        }
        let jid = pulled["job"]["id"].as_str().unwrap();
        let body = json!({"token": pulled["token"], "result": {"done": true}});
        let (status, acks) = call(&cl.router, &post(&format!("/jobs/{jid}/ack"), &body)).await;
        assert_eq!((status, &acks["ok"]), (200, &json!(true)), "{acks}");
        acked += 1;
    }
    assert!(acked >= 2, "acked {acked}");
    let (status, _) = call(&cl.servers[1].http, &get(&format!("/jobs/{id}"))).await;
    assert_eq!(status, 200);
    // A caller-chosen id, and one that no slot has.
    let body = json!({"data": {}, "jobId": "my job-1"});
    let (status, _) = call(&cl.router, &post(&format!("/queues/{q1}/jobs"), &body)).await;
    assert_eq!(status, 200);
    let (status, got) = call(&cl.router, &get("/jobs/my%20job-1")).await;
    assert_eq!(
        (status, got["job"]["queue"].as_str()),
        (200, Some(q1.as_str()))
    );
    let (status, found) = call(&cl.router, &get("/api/search?q=my%20job-1")).await;
    assert_eq!(
        (status, found["data"]["queueName"].as_str()),
        (200, Some(q1.as_str())),
        "{found}"
    );
    let (_, found) = call(&cl.router, &get("/api/search?type=queue&q=land")).await;
    assert_eq!(found["data"].as_array().map(Vec::len), Some(2));
    let (status, got) = call(&cl.router, &get("/jobs/nobody-has-this")).await;
    assert_eq!(
        (status, got),
        (404, json!({"ok": false, "error": "Job not found"}))
    );
    let (status, _) = call(&cl.router, &post("/jobs/nobody-has-this/ack", &json!({}))).await;
    assert_eq!(status, 400); // the server's answer for an unknown id, from slot 0
}

#[tokio::test]
async fn aggregates_merge_every_slot() {
    let Some(cl) = cluster(Duration::from_secs(2)).await else {
        return;
    };
    for slot in 0..SLOTS {
        let queue = queue_of(slot, "agg");
        for i in 0..=slot {
            push(&cl.router, &queue, json!({"i": i})).await;
        }
    }
    let (status, merged) = call(&cl.router, &get("/stats")).await;
    assert_eq!(status, 200);
    let mut sums = (0, 0);
    for server in &cl.servers {
        let (_, one) = call(&server.http, &get("/stats")).await;
        sums.0 += one["stats"]["queued"].as_i64().unwrap();
        sums.1 += one["stats"]["totalPushed"].as_i64().unwrap();
    }
    assert_eq!(sums, (3, 3));
    assert_eq!(merged["stats"]["queued"], 3);
    assert_eq!(merged["stats"]["totalPushed"], 3);
    assert_eq!(merged["ok"], true);
    // Prometheus text: the per-queue series of both slots, counters summed.
    let mut c = TcpStream::connect(&cl.router).await.unwrap();
    let (status, _, text) = exchange(&mut c, &get("/prometheus")).await.unwrap();
    let text = String::from_utf8(text).unwrap();
    assert_eq!(status, 200);
    for slot in 0..SLOTS {
        assert!(text.contains(&queue_of(slot, "agg")), "{text}");
    }
    let pushed = text
        .lines()
        .find_map(|l| l.strip_prefix("bunqueue_jobs_pushed_total "));
    assert_eq!(pushed, Some("3.0"));
    let helps = text.lines().filter(|l| l.starts_with("# HELP")).count();
    let mut distinct: Vec<&str> = text.lines().filter(|l| l.starts_with("# HELP")).collect();
    distinct.dedup();
    assert_eq!(helps, distinct.len());
    // Debug views of one process: refused, in the error shape.
    let (status, body) = call(&cl.router, &get("/heapstats")).await;
    assert_eq!(status, 501);
    assert_eq!(body["ok"], false);
    assert!(body["error"].as_str().unwrap().contains("several slots"));
}

/// An SSE stream through the router, read up to its connection message.
async fn open_stream(router: &str, path: &str) -> (TcpStream, Vec<u8>) {
    let mut stream = TcpStream::connect(router).await.unwrap();
    stream.write_all(get(path).as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        read_more(&mut stream, &mut buf).await.unwrap();
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("text/event-stream"));
    // Every owner's stream is open once the (one) connection message arrived.
    while !String::from_utf8_lossy(&buf).contains("connected") {
        read_more(&mut stream, &mut buf).await.unwrap();
    }
    (stream, buf)
}

#[tokio::test]
async fn merged_event_streams_have_every_slot() {
    let Some(cl) = cluster(Duration::from_secs(2)).await else {
        return;
    };
    let queues = [queue_of(0, "ev"), queue_of(1, "ev")];
    let both = [queues[0].as_str(), queues[1].as_str()];
    // The job server's stream and the management API's named events, merged; one
    // queue's stream, relayed from its slot's owner alone.
    let one = format!("/events/queues/{}", queues[1]);
    let mut streams = [
        (open_stream(&cl.router, "/events").await, "queue", &both[..]),
        (
            open_stream(&cl.router, "/api/events").await,
            "queueName",
            &both[..],
        ),
        (open_stream(&cl.router, &one).await, "queue", &both[1..]),
    ];
    tokio::time::sleep(Duration::from_millis(300)).await;
    for queue in &queues {
        push(&cl.router, queue, json!({})).await;
    }
    for ((stream, buf), key, want) in &mut streams {
        let deadline = Instant::now() + LIMIT;
        loop {
            let text = String::from_utf8_lossy(buf).to_string();
            if want
                .iter()
                .all(|q| text.contains(&format!("\"{key}\":\"{q}\"")))
            {
                assert_eq!(text.matches("connected").count(), 1, "{text}");
                break;
            }
            assert!(Instant::now() < deadline, "events seen: {text}");
            read_more(stream, buf).await.unwrap();
        }
    }
}

#[tokio::test]
async fn keep_alive_pipelining_chunked_and_malformed() {
    let Some(cl) = cluster(Duration::from_secs(2)).await else {
        return;
    };
    let (q0, q1) = (queue_of(0, "ka"), queue_of(1, "ka"));
    let mut c = TcpStream::connect(&cl.router).await.unwrap();
    let mut buf = Vec::new();
    // One at a time, alternating slots, on one connection.
    for i in 0..4 {
        let queue = if i % 2 == 0 { &q0 } else { &q1 };
        let req = post(&format!("/queues/{queue}/jobs"), &json!({"data": {"i": i}}));
        c.write_all(req.as_bytes()).await.unwrap();
        let (status, _, _) = read_response(&mut c, &mut buf).await.unwrap();
        assert_eq!(status, 200);
    }
    // Pipelined: a chunked push, a pull of each slot and the merged stats, written at
    // once; the answers come in order.
    let chunked = format!(
        "POST /queues/{q1}/jobs HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n\
         5\r\n{{\"dat\r\n14\r\na\":{{\"chunked\":true}}}}\r\n0\r\n\r\n"
    );
    let batch = [
        chunked,
        get(&format!("/queues/{q0}/jobs")),
        get("/stats"),
        get(&format!("/queues/{q1}/jobs")),
    ]
    .concat();
    c.write_all(batch.as_bytes()).await.unwrap();
    let mut answers = Vec::new();
    for _ in 0..4 {
        let (status, _, body) = read_response(&mut c, &mut buf).await.unwrap();
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        answers.push(serde_json::from_slice::<Value>(&body).unwrap());
    }
    assert!(answers[0]["id"].is_string());
    assert_eq!(answers[1]["job"]["queue"], json!(q0));
    assert_eq!(answers[2]["stats"]["totalPushed"], 5);
    assert_eq!(answers[3]["job"]["queue"], json!(q1));
    let (_, chunked_job) = call(
        &cl.router,
        &get(&format!("/jobs/{}", answers[0]["id"].as_str().unwrap())),
    )
    .await;
    assert_eq!(chunked_job["job"]["data"], json!({"chunked": true}));

    // An HTTP/1.0 client asking for keep-alive is told so; an h2c upgrade offer is
    // answered as a plain request.
    let old = "GET /stats HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
    let h2c = "GET /stats HTTP/1.1\r\nHost: t\r\nConnection: Upgrade, HTTP2-Settings\r\n\
               Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n";
    for request in [old, h2c] {
        c.write_all(request.as_bytes()).await.unwrap();
        let (status, head, body) = read_response(&mut c, &mut buf).await.unwrap();
        assert_eq!(status, 200, "{head}");
        assert_eq!(
            serde_json::from_slice::<Value>(&body).unwrap()["stats"]["totalPushed"],
            5
        );
        assert_eq!(head.contains("connection: keep-alive"), request == old);
    }

    // Malformed: a 400 in the error shape, then the connection closes.
    c.write_all(b"GET /stats HTTP/1.1\r\nBad Header\r\n\r\n")
        .await
        .unwrap();
    let (status, head, body) = read_response(&mut c, &mut buf).await.unwrap();
    assert_eq!(status, 400);
    assert!(head.contains("connection: close"));
    assert_eq!(serde_json::from_slice::<Value>(&body).unwrap()["ok"], false);
    let mut rest = [0u8; 16];
    assert_eq!(timeout(LIMIT, c.read(&mut rest)).await.unwrap().unwrap(), 0);
    // A head too large: 431; a body too large is refused by its length alone.
    let huge = format!(
        "GET /stats HTTP/1.1\r\nX-Big: {}\r\n\r\n",
        "a".repeat(70_000)
    );
    let (status, _) = call(&cl.router, &huge).await;
    assert_eq!(status, 431);
    let big = format!(
        "POST /queues/{q0}/jobs HTTP/1.1\r\nHost: t\r\nContent-Length: 999999999999\r\n\r\n"
    );
    let (status, body) = call(&cl.router, &big).await;
    assert_eq!((status, &body["ok"]), (413, &json!(false)));
    // Management routes answer errors in their own shape.
    let bad = "POST /api/queues/x/pause HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
    let (status, body) = call(&cl.router, bad).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (400, &json!("BAD_REQUEST"))
    );
}

#[tokio::test]
async fn an_unreachable_owner_is_a_503() {
    // A port nothing listens on: slot 1's owner never answers within the wait.
    let dead = format!("127.0.0.1:{}", free_port());
    let (router, _table) = route(
        SlotTable::new(vec![owner(&dead, 1), owner(&dead, 1)]),
        Duration::from_millis(300),
    )
    .await;
    let started = Instant::now();
    let (status, body) = call(
        &router,
        &get(&format!("/queues/{}/jobs", queue_of(1, "dead"))),
    )
    .await;
    assert_eq!((status, &body["ok"]), (503, &json!(false)));
    assert!(started.elapsed() < Duration::from_secs(5));
    let (status, body) = call(&router, &get("/api/queues")).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (503, &json!("UNAVAILABLE"))
    );
}

#[tokio::test]
async fn a_moved_slot_cuts_the_answer_in_flight_and_the_next_request_follows() {
    let Some(cl) = cluster(Duration::from_secs(2)).await else {
        return;
    };
    let q1 = queue_of(1, "move");
    let mut c = TcpStream::connect(&cl.router).await.unwrap();
    let mut buf = Vec::new();
    // One answer on a keep-alive connection, then a long poll on slot 1, in flight when
    // slot 1 moves to server 0.
    c.write_all(get("/stats").as_bytes()).await.unwrap();
    assert_eq!(read_response(&mut c, &mut buf).await.unwrap().0, 200);
    c.write_all(get(&format!("/queues/{q1}/jobs?timeout=10000")).as_bytes())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    cl.table.send_replace(Arc::new(SlotTable::new(vec![
        owner(&cl.servers[0].http, 1),
        owner(&cl.servers[0].http, 2),
    ])));
    let mut rest = [0u8; 64];
    let n = timeout(LIMIT, c.read(&mut rest))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0, "the connection closes without an answer");
    assert!(started.elapsed() < Duration::from_secs(5));
    // A new connection reaches the new owner: the push lands on server 0.
    push(&cl.router, &q1, json!({})).await;
    let (_, direct) = call(&cl.servers[0].http, &get("/api/queues")).await;
    assert_eq!(direct["data"][0]["name"], json!(q1));
    // Slot 0 did not move: a keep-alive connection's next request is answered.
    let mut c = TcpStream::connect(&cl.router).await.unwrap();
    c.write_all(get("/healthz").as_bytes()).await.unwrap();
    assert_eq!(read_response(&mut c, &mut buf).await.unwrap().0, 200);
    cl.table.send_replace(Arc::new(SlotTable::new(vec![
        owner(&cl.servers[0].http, 1),
        owner(&cl.servers[1].http, 3),
    ])));
    c.write_all(get(&format!("/queues/{q1}/jobs")).as_bytes())
        .await
        .unwrap();
    let (status, _, body) = read_response(&mut c, &mut buf).await.unwrap();
    let body: Value = serde_json::from_slice(&body).unwrap();
    // Server 1 never had a job of q1 (it went to server 0).
    assert_eq!((status, &body["job"]), (200, &Value::Null));
}

#[tokio::test]
async fn queue_websockets_are_tunnelled_to_their_slot() {
    let Some(cl) = cluster(Duration::from_secs(2)).await else {
        return;
    };
    let q1 = queue_of(1, "ws");
    let mut ws = TcpStream::connect(&cl.router).await.unwrap();
    let upgrade = format!(
        "GET /ws/queues/{q1} HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n"
    );
    ws.write_all(upgrade.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        read_more(&mut ws, &mut buf).await.unwrap();
    }
    let text = String::from_utf8_lossy(&buf).to_string();
    assert!(text.starts_with("HTTP/1.1 101"), "{text}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    push(&cl.router, &q1, json!({})).await;
    // The server's frames are unmasked text: the event's JSON shows as it is.
    let want = format!("\"queue\":\"{q1}\"");
    while !String::from_utf8_lossy(&buf).contains(&want) {
        read_more(&mut ws, &mut buf).await.unwrap();
    }
}

#[tokio::test]
async fn odd_requests_get_an_error_or_a_clean_close() {
    let Some(cl) = cluster(Duration::from_secs(2)).await else {
        return;
    };
    let odd: [&[u8]; 10] = [
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", // a TLS hello
        b"GET /stats HTTP/9.9\r\n\r\n",
        b"GET  HTTP/1.1\r\n\r\n",
        b"POST /queues/q/jobs HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
        b"POST /queues/q/jobs HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff\r\n",
        b"POST /queues/q/jobs HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n",
        b"POST /queues/q/jobs HTTP/1.1\r\nTransfer-Encoding: identity\r\n\r\n",
        b"GET /queues/%ff%fe/jobs HTTP/1.1\r\nHost: t\r\n\r\n",
        b"GET http://elsewhere/stats HTTP/1.1\r\nHost: t\r\n\r\n",
        b"GET /stats HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nab",
    ];
    for (i, request) in odd.iter().enumerate() {
        let mut c = TcpStream::connect(&cl.router).await.unwrap();
        c.write_all(request).await.unwrap();
        // The last one sends less body than announced, then stops sending.
        c.shutdown().await.unwrap();
        let mut answer = Vec::new();
        timeout(LIMIT, c.read_to_end(&mut answer))
            .await
            .unwrap()
            .unwrap_or_default();
        let text = String::from_utf8_lossy(&answer);
        assert!(
            answer.is_empty() || text.starts_with("HTTP/1.1 "),
            "request {i}: {text}"
        );
        if text.starts_with("HTTP/1.1 4") {
            let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
            let body: Value = serde_json::from_str(body).unwrap();
            assert_eq!(body["ok"], false, "request {i}: {text}");
        }
    }
    // The router still serves.
    let (status, _) = call(&cl.router, &get("/healthz")).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_departed_long_poll_leaves_the_job_queued() {
    let Some(cl) = cluster(Duration::from_secs(2)).await else {
        return;
    };
    let q1 = queue_of(1, "gone");
    let mut poll = TcpStream::connect(&cl.router).await.unwrap();
    let request = get(&format!("/queues/{q1}/jobs?timeout=8000"));
    poll.write_all(request.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(poll);
    // The owner notices the poll left (the router closed its upstream), so the push
    // stays queued instead of going to a client that is gone.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let id = push(&cl.router, &q1, json!({})).await;
    let (_, pulled) = call(&cl.router, &get(&format!("/queues/{q1}/jobs"))).await;
    assert_eq!(pulled["job"]["id"], json!(id), "{pulled}");
}

#[tokio::test]
async fn probes_are_answered_by_the_router() {
    // Slot 0's owner unreachable, slot 1 without an owner: the broker is still live,
    // and not ready until it knows an owner for every slot.
    let dead = format!("127.0.0.1:{}", free_port());
    let (router, table) = route(
        SlotTable::new(vec![owner(&dead, 1), None]),
        Duration::from_millis(300),
    )
    .await;
    for path in ["/live", "/healthz"] {
        let mut c = TcpStream::connect(&router).await.unwrap();
        let (status, head, body) = exchange(&mut c, &get(path)).await.unwrap();
        assert_eq!((status, body.as_slice()), (200, &b"OK"[..]), "{path}");
        assert!(head.contains("content-type: text/plain"), "{head}");
    }
    let (status, body) = call(&router, &get("/ready")).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(
        body,
        json!({"ok": false, "ready": false, "error": "no owner for slot 1"})
    );
    table.send_replace(Arc::new(SlotTable::new(vec![
        owner(&dead, 1),
        owner(&dead, 1),
    ])));
    // HEAD: the GET's head, no body; the connection stays open for the next request.
    let mut c = TcpStream::connect(&router).await.unwrap();
    c.write_all(b"HEAD /ready HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        read_more(&mut c, &mut buf).await.unwrap();
    }
    let head = String::from_utf8_lossy(&buf).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("content-length: 24"), "{head}");
    assert!(
        head.ends_with("\r\n\r\n"),
        "no body after a HEAD's head: {head}"
    );
    let (status, _, body) = exchange(&mut c, &get("/ready")).await.unwrap();
    assert_eq!(
        (status, body.as_slice()),
        (200, &br#"{"ok":true,"ready":true}"#[..])
    );
}
