//! The `/ws` router of a cluster with several slots, in front of real hopper servers
//! (one per slot, with an auth token): the owner's refusal of a bad token is the
//! upgrade's answer; JSON commands reach their slot's owner, custom ids are probed,
//! Stats merges; events of every slot arrive; a moved slot closes the socket with 1012.
//! Skipped (saying so) when the venv is not built.

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use hopper_cluster::{serve_ws_routed, SlotTable};
use hopper_core::Value;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

mod owners;
use owners::{queue_of, start_server, table, TOKEN};

/// A front's part: reads the request head (bounded), then hands the socket over.
async fn router(owners: watch::Receiver<Arc<SlotTable>>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let owners = owners.clone();
            tokio::spawn(async move {
                let mut read = Vec::new();
                let mut buf = [0u8; 4096];
                while !read.windows(4).any(|w| w == b"\r\n\r\n") && read.len() < 65536 {
                    match client.read(&mut buf).await {
                        Ok(n) if n > 0 => read.extend_from_slice(&buf[..n]),
                        _ => return,
                    }
                }
                serve_ws_routed(client, read, owners, Duration::from_secs(2), None).await;
            });
        }
    });
    addr
}

type Ws = WebSocketStream<TcpStream>;

async fn connect(addr: &str, token: &str) -> Result<Ws, WsError> {
    connect_to(addr, "/ws", token).await
}

async fn connect_to(addr: &str, path: &str, token: &str) -> Result<Ws, WsError> {
    let mut request = format!("ws://{addr}{path}").into_client_request().unwrap();
    let bearer = HeaderValue::from_str(&format!("Bearer {token}")).unwrap();
    request.headers_mut().insert("authorization", bearer);
    let stream = TcpStream::connect(addr).await.unwrap();
    tokio_tungstenite::client_async(request, stream)
        .await
        .map(|(ws, _)| ws)
}

/// The next message, within bounds; `None` once the socket ends.
async fn next(ws: &mut Ws) -> Option<Message> {
    tokio::time::timeout(Duration::from_secs(15), ws.next())
        .await
        .expect("a message in time")
        .and_then(Result::ok)
}

/// Sends a command and returns its reply; events seen meanwhile go to `events`.
async fn send(ws: &mut Ws, events: &mut Vec<Value>, id: &str, cmd: Value) -> Value {
    let Value::Map(mut fields) = cmd else {
        panic!("a map")
    };
    fields.push(("reqId".into(), Value::str(id)));
    ws.send(Message::text(Value::Map(fields).to_json()))
        .await
        .unwrap();
    loop {
        let Some(Message::Text(text)) = next(ws).await else {
            panic!("closed before the reply")
        };
        let v = Value::from_json(text.as_bytes()).unwrap();
        if v.get("reqId") == Some(&Value::str(id)) {
            return v;
        }
        events.push(v);
    }
}

fn cmd(fields: Vec<(&'static str, Value)>) -> Value {
    Value::map(fields)
}

fn push(queue: &str, job_id: Option<&str>) -> Value {
    let mut fields = vec![
        ("cmd", Value::str("PUSH")),
        ("queue", Value::str(queue)),
        ("data", Value::map(vec![])),
    ];
    if let Some(id) = job_id {
        fields.push(("jobId", Value::str(id)));
    }
    cmd(fields)
}

fn assert_ok(reply: &Value) {
    assert_eq!(reply.get("ok"), Some(&Value::Bool(true)), "{reply:?}");
}

#[tokio::test]
async fn commands_route_events_pass_and_a_move_closes() {
    let (Some(a), Some(b)) = (start_server(), start_server()) else {
        return;
    };
    let servers = [a, b];
    let (tx, rx) = watch::channel(Arc::new(table(&servers, &[1, 1])));
    let addr = router(rx).await;
    match connect(&addr, "wrong").await {
        Err(WsError::Http(response)) => assert_eq!(response.status().as_u16(), 401),
        other => panic!("refused, not {:?}", other.map(|_| ())),
    }
    let mut ws = connect(&addr, TOKEN).await.expect("upgraded");
    let mut events = Vec::new();
    let (qa, qb) = (queue_of("ws", 0), queue_of("ws", 1));
    assert_ok(&send(&mut ws, &mut events, "1", push(&qa, None)).await);
    assert_ok(&send(&mut ws, &mut events, "2", push(&qb, Some("order-9"))).await);
    let got = send(
        &mut ws,
        &mut events,
        "3",
        cmd(vec![
            ("cmd", Value::str("GetJob")),
            ("id", Value::str("order-9")),
        ]),
    )
    .await;
    assert_eq!(
        got.get("job").and_then(|j| j.get("queue")),
        Some(&Value::str(&qb))
    );
    let stats = send(
        &mut ws,
        &mut events,
        "4",
        cmd(vec![("cmd", Value::str("Stats"))]),
    )
    .await;
    let waiting = stats.get("stats").and_then(|s| s.get("waiting"));
    assert_eq!(waiting.and_then(Value::as_number), Some(2.0), "{stats:?}");
    // Each owner's "pushed" event, however it interleaved with the replies.
    let deadline = Instant::now() + Duration::from_secs(10);
    let pushed = |events: &[Value], q: &str| {
        events.iter().any(|e| {
            e.get("eventType") == Some(&Value::str("pushed"))
                && e.get("queue") == Some(&Value::str(q))
        })
    };
    while !(pushed(&events, &qa) && pushed(&events, &qb)) {
        assert!(
            Instant::now() < deadline,
            "events of both slots: {events:?}"
        );
        if let Some(Message::Text(t)) = next(&mut ws).await {
            events.push(Value::from_json(t.as_bytes()).unwrap());
        }
    }
    // Slot 1 moves: the socket closes with 1012.
    tx.send(Arc::new(table(&servers, &[1, 2]))).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert!(Instant::now() < deadline, "closed after the move");
        match next(&mut ws).await {
            Some(Message::Close(frame)) => {
                assert_eq!(frame.map(|f| f.code), Some(CloseCode::Restart));
                break;
            }
            Some(_) => {}
            None => panic!("ended without a close frame"),
        }
    }
}

#[tokio::test]
async fn an_owners_close_code_reaches_the_client() {
    let (Some(a), Some(b)) = (start_server(), start_server()) else {
        return;
    };
    let servers = [a, b];
    let (_tx, rx) = watch::channel(Arc::new(table(&servers, &[1, 1])));
    let addr = router(rx).await;
    let mut ws = connect(&addr, TOKEN).await.expect("upgraded");
    let mut events = Vec::new();
    let ping = cmd(vec![("cmd", Value::str("Ping"))]);
    assert_ok(&send(&mut ws, &mut events, "1", ping).await);
    // A clean shutdown of slot 1's owner closes its sockets with 1001 (going away).
    let stopped = Command::new("kill")
        .args(["-TERM", &servers[1].child.id().to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        assert!(Instant::now() < deadline, "closed after the owner stopped");
        match next(&mut ws).await {
            Some(Message::Close(frame)) => {
                assert_eq!(frame.map(|f| f.code), Some(CloseCode::Away));
                break;
            }
            Some(_) => {}
            None => panic!("ended without a close frame"),
        }
    }
}

#[tokio::test]
async fn a_queues_socket_gets_its_events_and_reaches_other_slots_later() {
    let (Some(a), Some(b)) = (start_server(), start_server()) else {
        return;
    };
    let servers = [a, b];
    let (_tx, rx) = watch::channel(Arc::new(table(&servers, &[1, 1])));
    let addr = router(rx).await;
    let (qa, qb) = (queue_of("wsq", 0), queue_of("wsq", 1));
    let mut ws = connect_to(&addr, &format!("/ws/queues/{qb}"), TOKEN)
        .await
        .expect("upgraded");
    let mut events = Vec::new();
    // Slot 0's owner is connected for this command only; its queue's events are not
    // this socket's.
    assert_ok(&send(&mut ws, &mut events, "1", push(&qa, None)).await);
    assert_ok(&send(&mut ws, &mut events, "2", push(&qb, None)).await);
    let ping = cmd(vec![("cmd", Value::str("Ping"))]);
    assert_ok(&send(&mut ws, &mut events, "3", ping).await);
    let deadline = Instant::now() + Duration::from_secs(10);
    while events.is_empty() {
        assert!(Instant::now() < deadline, "the event of {qb}");
        if let Some(Message::Text(t)) = next(&mut ws).await {
            events.push(Value::from_json(t.as_bytes()).unwrap());
        }
    }
    // A later round trip through slot 0's owner: an event of its would be in by now.
    let counts = cmd(vec![
        ("cmd", Value::str("GetJobCounts")),
        ("queue", Value::str(&qa)),
    ]);
    assert_ok(&send(&mut ws, &mut events, "4", counts).await);
    assert!(
        events
            .iter()
            .all(|e| e.get("queue") == Some(&Value::str(&qb))),
        "{events:?}"
    );
}
