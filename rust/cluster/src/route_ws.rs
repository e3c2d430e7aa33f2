//! The `/ws` router of a cluster with several slots: the client's WebSocket ends here,
//! and each JSON command goes to its slot's owner over a WebSocket to that owner's
//! `/ws` (same path and query, same `Authorization`), by the same rules and merges as
//! the TCP router (`command_route`).
//!
//! An owner's socket sends the events of its own slot's queues, so the owners whose
//! events the client gets are connected at once: every slot for `/ws`, the queue's slot
//! for `/ws/queues/:queue`; the others when a command first needs them. The first
//! connection also checks the client's token: an owner's refusal (401) is passed on as
//! the upgrade's answer. The socket ends when any upstream ends, with the owner's close
//! code where it sent one, or 1012 (service restart) when a slot moves.

use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use hopper_core::cluster_slots::queue_slot;
use hopper_core::Value;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};
use tokio_tungstenite::tungstenite::{client::IntoClientRequest, Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

use crate::command_route::{holds_job, Action, Known, Router, REGISTRY_PROBE};
use crate::registry::{Decision, Holds, Registry};
use crate::slot_table::{connect_owner, moved_from, Port, Table};

/// Requests in progress one socket may have before it is closed.
const MAX_IN_PROGRESS: usize = 1024;
/// Upstream messages waiting for the client (the upstreams are not read beyond it).
const QUEUED: usize = 64;
/// The router's reqIds as they appear in JSON text (the NUL is escaped).
const TAG: &str = "\\u0000hopper:";

type Upstream = SplitSink<WebSocketStream<TcpStream>, Message>;

enum Up {
    Text(String),
    /// The upstream ended: its close frame, if it sent one.
    Closed(Option<CloseFrame>),
}

/// The parts of the upgrade request the router uses.
struct Upgrade {
    target: String,
    key: String,
    authorization: Option<String>,
}

/// Serves a client's `GET /ws` upgrade; `read` holds every byte read from the client so
/// far (the request head, and anything after it). Caller-chosen ids are claimed and
/// looked up in `registry`, if given.
pub async fn serve(
    mut client: TcpStream,
    read: Vec<u8>,
    owners: Table,
    wait: Duration,
    registry: Option<Arc<Registry>>,
) {
    let Some(end) = read.windows(4).position(|w| w == b"\r\n\r\n") else {
        return respond(&mut client, 400, r#"{"error":"Bad Request"}"#).await;
    };
    let Some(upgrade) = parse_upgrade(&read[..end]) else {
        let body = r#"{"error":"Expected a WebSocket upgrade"}"#;
        return respond(&mut client, 400, body).await;
    };
    let slots = owners.borrow().slots();
    let (tx, rx) = mpsc::channel(QUEUED);
    let mut conn = Conn {
        owners,
        wait,
        upgrade,
        ups: (0..slots).map(|_| None).collect(),
        readers: Vec::new(),
        tx,
        rx,
        router: Router::new(slots),
        registry,
    };
    let eager = match conn.upgrade.target.strip_prefix("/ws/queues/") {
        Some(queue) => vec![queue_slot(&percent_decode(queue), slots)],
        None => (0..slots).collect(),
    };
    for slot in eager {
        if let Err(refusal) = conn.open(slot).await {
            let (status, body) = refusal.unwrap_or((503, r#"{"error":"No owner"}"#.into()));
            conn.stop();
            return respond(&mut client, status, &body).await;
        }
    }
    let accept = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n\r\n",
        derive_accept_key(conn.upgrade.key.as_bytes())
    );
    if client.write_all(accept.as_bytes()).await.is_err() {
        return conn.stop();
    }
    let rest = read[end + 4..].to_vec();
    let ws = WebSocketStream::from_partially_read(client, rest, Role::Server, None).await;
    conn.run(ws).await;
}

struct Conn {
    owners: Table,
    wait: Duration,
    upgrade: Upgrade,
    ups: Vec<Option<Upstream>>,
    readers: Vec<JoinHandle<()>>,
    tx: mpsc::Sender<Up>,
    rx: mpsc::Receiver<Up>,
    router: Router,
    registry: Option<Arc<Registry>>,
}

/// Why a step ends the socket: the close frame to send the client.
type Step = Result<(), Option<CloseFrame>>;

impl Conn {
    async fn run(&mut self, mut client: WebSocketStream<TcpStream>) {
        let ended = loop {
            let step = tokio::select! {
                m = client.next() => match m {
                    Some(Ok(Message::Text(text))) => self.client_text(&mut client, text.as_str()).await,
                    // Not JSON: slot 0's owner gives the server's answer.
                    Some(Ok(Message::Binary(b))) => self.send(0, Message::Binary(b)).await,
                    // Answered with the library's echo of the client's close.
                    Some(Ok(Message::Close(frame))) => Err(frame.or_else(|| Some(normal()))),
                    Some(Err(_)) | None => Err(None),
                    Some(Ok(_)) => Ok(()), // pings are answered by the library
                },
                up = self.rx.recv() => match up {
                    Some(Up::Text(text)) => self.upstream_text(&mut client, text).await,
                    Some(Up::Closed(frame)) => Err(frame.or_else(|| Some(restart()))),
                    None => Err(None),
                },
            };
            if let Err(frame) = step {
                break frame;
            }
        };
        if let Some(frame) = ended {
            let _ = client.close(Some(frame)).await;
        }
        self.stop();
        // Close the owners' sockets cleanly, but wait for none of them for long.
        let closing = self.ups.iter_mut().flatten().map(|up| up.close());
        let _ = tokio::time::timeout(
            Duration::from_secs(1),
            futures_util::future::join_all(closing),
        )
        .await;
    }

    fn stop(&mut self) {
        for reader in self.readers.drain(..) {
            reader.abort();
        }
    }

    async fn client_text(&mut self, client: &mut WebSocketStream<TcpStream>, text: &str) -> Step {
        let Some(req) = Value::from_json(text.as_bytes()) else {
            return self.send(0, Message::text(text)).await;
        };
        // Awaited here, so the socket's later commands keep their order behind it.
        let mut known = Known::new();
        if let Some(registry) = self.registry.clone() {
            let slots = self.ups.len() as u32;
            let mut asker = Asker { conn: self, client };
            match registry.decide_command(&req, slots, &mut asker).await? {
                Decision::Send(to) => return self.send(to, Message::text(text)).await,
                Decision::Route(found) => known = found,
            }
        }
        let ups = &self.ups;
        let actions = self
            .router
            .request(&req, |s| ups[s as usize].is_some(), &known);
        self.act(client, actions, text).await?;
        if self.router.in_progress() > MAX_IN_PROGRESS {
            return Err(Some(CloseFrame {
                code: CloseCode::Policy,
                reason: "too many requests in progress".into(),
            }));
        }
        Ok(())
    }

    async fn upstream_text(
        &mut self,
        client: &mut WebSocketStream<TcpStream>,
        text: String,
    ) -> Step {
        if self.router.tracking() && text.contains(TAG) {
            if let Some(reply) = Value::from_json(text.as_bytes()) {
                if let Some(actions) = self.router.reply(reply) {
                    return self.act(client, actions, "").await;
                }
            }
        }
        client.send(Message::text(text)).await.map_err(|_| None)
    }

    async fn act(
        &mut self,
        client: &mut WebSocketStream<TcpStream>,
        actions: Vec<Action>,
        original: &str,
    ) -> Step {
        for action in actions {
            match action {
                Action::Forward(slot) => self.send(slot, Message::text(original)).await?,
                Action::Send(slot, req) => self.send(slot, Message::text(req.to_json())).await?,
                Action::Reply(reply) => client
                    .send(Message::text(reply.to_json()))
                    .await
                    .map_err(|_| None)?,
                Action::Repair { id, from, to } => {
                    if let Some(registry) = &self.registry {
                        registry.repair(id, from, to);
                    }
                }
            }
        }
        Ok(())
    }

    async fn send(&mut self, slot: u32, message: Message) -> Step {
        let i = slot as usize;
        if self.ups.get(i).ok_or(None)?.is_none() {
            // The token was accepted at the upgrade: a refusal now is a failure.
            self.open(slot).await.map_err(|_| Some(restart()))?;
        }
        let up = self.ups[i].as_mut().ok_or(None)?;
        up.send(message).await.map_err(|_| Some(restart()))
    }

    /// Connects to `slot`'s owner's `/ws` with the client's path and token. `Err` holds
    /// the owner's HTTP refusal (status and body), or `None` when no owner answered.
    async fn open(&mut self, slot: u32) -> Result<(), Option<(u16, String)>> {
        let (epoch, stream) = connect_owner(&mut self.owners, slot, Port::Http, self.wait)
            .await
            .ok_or(None)?;
        let addr = stream.peer_addr().map_err(|_| None)?;
        let mut request = format!("ws://{addr}{}", self.upgrade.target)
            .into_client_request()
            .map_err(|_| None)?;
        if let Some(auth) = &self.upgrade.authorization {
            let value = HeaderValue::from_str(auth).map_err(|_| None)?;
            request.headers_mut().insert("authorization", value);
        }
        let (ws, _) = match tokio_tungstenite::client_async(request, stream).await {
            Ok(done) => done,
            Err(WsError::Http(response)) => {
                let body = response.body().clone().unwrap_or_default();
                let body = String::from_utf8_lossy(&body).into_owned();
                return Err(Some((response.status().as_u16(), body)));
            }
            Err(_) => return Err(None),
        };
        let (sink, stream) = ws.split();
        self.ups[slot as usize] = Some(sink);
        let reader = tokio::spawn(read_upstream(
            slot,
            epoch,
            stream,
            self.tx.clone(),
            self.owners.clone(),
        ));
        self.readers.push(reader);
        Ok(())
    }
}

/// A claim's question to an owner, on the socket's upstream; the other upstream
/// messages meanwhile go on to the client as usual.
struct Asker<'a> {
    conn: &'a mut Conn,
    client: &'a mut WebSocketStream<TcpStream>,
}

impl Holds for Asker<'_> {
    type Error = Option<CloseFrame>;

    async fn holds(&mut self, slot: u32, id: &str) -> Result<bool, Option<CloseFrame>> {
        let ask = Value::map(vec![
            ("cmd", Value::str("GetJob")),
            ("id", Value::str(id)),
            ("reqId", Value::str(REGISTRY_PROBE)),
        ]);
        self.conn.send(slot, Message::text(ask.to_json())).await?;
        loop {
            let text = match self.conn.rx.recv().await {
                Some(Up::Text(text)) => text,
                Some(Up::Closed(frame)) => return Err(frame.or_else(|| Some(restart()))),
                None => return Err(None),
            };
            if text.contains(TAG) {
                if let Some(reply) = Value::from_json(text.as_bytes()) {
                    if reply.get("reqId").and_then(Value::as_str) == Some(REGISTRY_PROBE) {
                        return Ok(holds_job(&reply));
                    }
                }
            }
            self.conn.upstream_text(self.client, text).await?;
        }
    }
}

fn normal() -> CloseFrame {
    CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    }
}

fn restart() -> CloseFrame {
    CloseFrame {
        code: CloseCode::Restart,
        reason: "slot owner moved or gone; reconnect".into(),
    }
}

/// Passes an upstream's text messages on until it closes or its slot moves.
async fn read_upstream(
    slot: u32,
    epoch: i64,
    mut stream: SplitStream<WebSocketStream<TcpStream>>,
    tx: mpsc::Sender<Up>,
    mut owners: Table,
) {
    let reading = async {
        loop {
            match stream.next().await {
                Some(Ok(Message::Text(text))) => {
                    if tx.send(Up::Text(text.as_str().to_owned())).await.is_err() {
                        return None;
                    }
                }
                Some(Ok(Message::Close(frame))) => return frame,
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return None,
            }
        }
    };
    let frame = tokio::select! {
        frame = reading => frame,
        _ = moved_from(&mut owners, slot, epoch) => None,
    };
    let _ = tx.send(Up::Closed(frame)).await;
}

/// The request target, key and token of a WebSocket upgrade head (`None` if it is not
/// one).
fn parse_upgrade(head: &[u8]) -> Option<Upgrade> {
    let head = std::str::from_utf8(head).ok()?;
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let (method, target) = (request_line.next()?, request_line.next()?);
    if method != "GET" || !target.starts_with("/ws") {
        return None;
    }
    let (mut key, mut authorization, mut websocket) = (None, None, false);
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "sec-websocket-key" => key = Some(value.to_owned()),
            "authorization" => authorization = Some(value.to_owned()),
            "upgrade" => websocket = value.eq_ignore_ascii_case("websocket"),
            _ => {}
        }
    }
    websocket.then_some(())?;
    Some(Upgrade {
        target: target.to_owned(),
        key: key?,
        authorization,
    })
}

/// `%XX` escapes of a path segment decoded (a queue name in `/ws/queues/:queue`); the
/// query, if any, is not part of it.
fn percent_decode(segment: &str) -> String {
    let segment = segment.split(['?', '/']).next().unwrap_or("");
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn respond(client: &mut TcpStream, status: u16, body: &str) {
    let reason = StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error");
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    );
    let _ = client.write_all(head.as_bytes()).await;
    let _ = client.write_all(body.as_bytes()).await;
    let _ = client.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_upgrade_head_is_parsed() {
        let head = b"GET /ws/queues/a%3Ab?x=1 HTTP/1.1\r\nHost: h\r\nUpgrade: WebSocket\r\n\
                     Connection: Upgrade\r\nSec-WebSocket-Key: abc==\r\n\
                     authorization: Bearer t";
        let up = parse_upgrade(head).unwrap();
        assert_eq!(up.target, "/ws/queues/a%3Ab?x=1");
        assert_eq!(up.key, "abc==");
        assert_eq!(up.authorization.as_deref(), Some("Bearer t"));
        assert_eq!(percent_decode("a%3Ab?x=1"), "a:b");
        assert_eq!(percent_decode("q%zz"), "q%zz");
        assert!(parse_upgrade(b"GET /ws HTTP/1.1\r\nSec-WebSocket-Key: k").is_none());
        assert!(
            parse_upgrade(b"POST /ws HTTP/1.1\r\nUpgrade: websocket\r\nSec-WebSocket-Key: k")
                .is_none()
        );
    }
}
