//! The TCP-protocol router of a cluster with several slots: one client connection, one
//! upstream connection per slot it needs (opened on first use), each request sent to
//! its slot's owner by `command_route`. Requests and replies that need no rewriting
//! pass as the bytes received; only split, probed and fanned-out requests are
//! re-encoded, and only their legs' replies (which carry the router's own reqIds) are
//! intercepted. Replies go to the client in completion order, as from one server.
//!
//! The connection is closed when an upstream closes or a slot in use moves: the SDK
//! then reconnects and resends Auth and subscriptions, as after the single-slot relay.

use std::sync::Arc;
use std::time::Duration;

use hopper_core::{msgpack_decode, msgpack_encode, FrameBuffer, FrameNext, Value, MAX_FRAME};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::command_route::{error_reply, holds_job, Action, Known, Router, REGISTRY_PROBE};
use crate::registry::{Decision, Holds, Registry};
use crate::slot_table::{connect_owner, moved_from, Port, Table};

/// Requests in progress one connection may have before it is closed (the SDK keeps at
/// most 100 in flight): bounds the router's memory per connection.
const MAX_IN_PROGRESS: usize = 1024;
/// Upstream frames waiting for the client: beyond it the upstreams are not read, so a
/// client that does not read holds back its owners instead of filling memory.
const QUEUED_FRAMES: usize = 64;
/// How long a partial frame may stall before the connection is dropped: the owners'
/// default (`--tcp-idle-timeout-ms`), which they cannot apply to frames they never see.
const PARTIAL_FRAME_IDLE: Duration = Duration::from_secs(60);
/// The longest a write may wait for the peer to take bytes.
const STALLED_WRITE: Duration = Duration::from_secs(60);
/// The bytes of the router's reqIds, to find legs' replies without decoding the rest.
const TAG: &[u8] = b"\0hopper:";

enum Up {
    Frame(Vec<u8>),
    Closed,
}

/// Routes one client connection until it, an upstream, or a used slot's owner goes;
/// caller-chosen ids are claimed and looked up in `registry`, if given.
pub async fn serve(
    client: TcpStream,
    owners: Table,
    wait: Duration,
    registry: Option<Arc<Registry>>,
) {
    let slots = owners.borrow().slots();
    let (mut read, write) = client.into_split();
    let (tx, rx) = mpsc::channel(QUEUED_FRAMES);
    let mut conn = Conn {
        client: write,
        owners,
        wait,
        ups: (0..slots).map(|_| None).collect(),
        readers: Vec::new(),
        tx,
        rx,
        router: Router::new(slots),
        registry,
    };
    let mut frames = FrameBuffer::default();
    let mut buf = vec![0u8; 64 * 1024];
    let mut last_read = tokio::time::Instant::now();
    loop {
        let stalled = tokio::time::sleep_until(last_read + PARTIAL_FRAME_IDLE);
        let step = tokio::select! {
            n = read.read(&mut buf) => match n {
                Ok(n) if n > 0 => {
                    last_read = tokio::time::Instant::now();
                    frames.extend(&buf[..n]);
                    conn.client_frames(&mut frames).await
                }
                _ => Err(()),
            },
            up = conn.rx.recv() => match up {
                Some(Up::Frame(body)) => conn.upstream_frame(body).await,
                _ => Err(()),
            },
            _ = stalled, if frames.pending() > 0 => Err(()),
        };
        if step.is_err() {
            break;
        }
    }
    for reader in conn.readers {
        reader.abort();
    }
}

struct Conn {
    client: OwnedWriteHalf,
    owners: Table,
    wait: Duration,
    /// Each slot's upstream, once opened.
    ups: Vec<Option<OwnedWriteHalf>>,
    readers: Vec<JoinHandle<()>>,
    tx: mpsc::Sender<Up>,
    rx: mpsc::Receiver<Up>,
    router: Router,
    registry: Option<Arc<Registry>>,
}

/// `Err`: the connection ends.
type Step = Result<(), ()>;

impl Conn {
    async fn client_frames(&mut self, frames: &mut FrameBuffer) -> Step {
        loop {
            match frames.next() {
                FrameNext::Partial => return Ok(()),
                FrameNext::TooLarge(n) => {
                    let message = format!("Frame too large: {n} bytes exceeds maximum {MAX_FRAME}");
                    let _ = self.reply(&error_reply(Value::Undefined, &message)).await;
                    return Err(());
                }
                FrameNext::Frame(start, end) => self.client_frame(frames.body(start, end)).await?,
            }
        }
    }

    async fn client_frame(&mut self, body: &[u8]) -> Step {
        // Not MessagePack: slot 0's owner gives the server's error.
        let Ok(req) = msgpack_decode(body) else {
            return self.send(0, body).await;
        };
        // Awaited here, so the connection's later requests wait for it: their order
        // (a push after a push) is the client's.
        let mut known = Known::new();
        if let Some(registry) = self.registry.clone() {
            let slots = self.ups.len() as u32;
            match registry.decide_command(&req, slots, self).await? {
                Decision::Send(to) => return self.send(to, body).await,
                Decision::Route(found) => known = found,
            }
        }
        let ups = &self.ups;
        let actions = self
            .router
            .request(&req, |s| ups[s as usize].is_some(), &known);
        self.run(actions, body).await?;
        if self.router.in_progress() > MAX_IN_PROGRESS {
            return Err(());
        }
        Ok(())
    }

    async fn upstream_frame(&mut self, body: Vec<u8>) -> Step {
        if self.router.tracking() && body.windows(TAG.len()).any(|w| w == TAG) {
            if let Ok(reply) = msgpack_decode(&body) {
                if let Some(actions) = self.router.reply(reply) {
                    return self.run(actions, &[]).await;
                }
            }
        }
        write_frame(&mut self.client, &body).await
    }

    async fn run(&mut self, actions: Vec<Action>, original: &[u8]) -> Step {
        for action in actions {
            match action {
                Action::Forward(slot) => self.send(slot, original).await?,
                Action::Send(slot, req) => {
                    let mut body = Vec::new();
                    msgpack_encode(&req, &mut body);
                    self.send(slot, &body).await?;
                }
                Action::Reply(reply) => self.reply(&reply).await?,
                Action::Repair { id, from, to } => {
                    if let Some(registry) = &self.registry {
                        registry.repair(id, from, to);
                    }
                }
            }
        }
        Ok(())
    }

    async fn reply(&mut self, reply: &Value) -> Step {
        let mut body = Vec::new();
        msgpack_encode(reply, &mut body);
        write_frame(&mut self.client, &body).await
    }

    async fn send(&mut self, slot: u32, body: &[u8]) -> Step {
        let i = slot as usize;
        if self.ups.get(i).ok_or(())?.is_none() {
            self.ups[i] = Some(self.open(slot).await?);
        }
        let up = self.ups[i].as_mut().ok_or(())?;
        write_frame(up, body).await
    }

    /// Connects to `slot`'s owner, sends it the client's Auth first (and waits for its
    /// answer, so nothing runs unauthenticated), and starts reading its frames.
    async fn open(&mut self, slot: u32) -> Result<OwnedWriteHalf, ()> {
        let (epoch, stream) = connect_owner(&mut self.owners, slot, Port::Tcp, self.wait)
            .await
            .ok_or(())?;
        let (mut read, mut write) = stream.into_split();
        let mut frames = FrameBuffer::default();
        if let Some(auth) = self.router.auth(slot) {
            let mut body = Vec::new();
            msgpack_encode(&auth, &mut body);
            write_frame(&mut write, &body).await?;
            let answered = tokio::time::timeout(
                self.wait.max(Duration::from_secs(1)),
                read_frame(&mut read, &mut frames),
            );
            answered.await.map_err(|_| ())??;
        }
        let reader = tokio::spawn(read_upstream(
            slot,
            epoch,
            read,
            frames,
            self.tx.clone(),
            self.owners.clone(),
        ));
        self.readers.push(reader);
        Ok(write)
    }
}

impl Holds for Conn {
    type Error = ();

    /// Asks `slot`'s owner for the job; meanwhile other upstream frames go on to the
    /// client as usual.
    async fn holds(&mut self, slot: u32, id: &str) -> Result<bool, ()> {
        let ask = Value::map(vec![
            ("cmd", Value::str("GetJob")),
            ("id", Value::str(id)),
            ("reqId", Value::str(REGISTRY_PROBE)),
        ]);
        let mut body = Vec::new();
        msgpack_encode(&ask, &mut body);
        self.send(slot, &body).await?;
        loop {
            let Some(Up::Frame(body)) = self.rx.recv().await else {
                return Err(());
            };
            if body.windows(TAG.len()).any(|w| w == TAG) {
                if let Ok(reply) = msgpack_decode(&body) {
                    if reply.get("reqId").and_then(Value::as_str) == Some(REGISTRY_PROBE) {
                        return Ok(holds_job(&reply));
                    }
                }
            }
            self.upstream_frame(body).await?;
        }
    }
}

/// Writes one frame; a peer that takes nothing for `STALLED_WRITE` (gone without a
/// close, or not reading) ends the connection rather than holding it forever.
async fn write_frame(to: &mut OwnedWriteHalf, body: &[u8]) -> Step {
    let mut out = Vec::with_capacity(4 + body.len());
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(body);
    match tokio::time::timeout(STALLED_WRITE, to.write_all(&out)).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(()),
    }
}

/// Reads until one whole frame is buffered and consumes it (the Auth answer).
async fn read_frame(read: &mut (impl AsyncRead + Unpin), frames: &mut FrameBuffer) -> Step {
    let mut buf = vec![0u8; 4096];
    loop {
        match frames.next() {
            FrameNext::Frame(..) => return Ok(()),
            FrameNext::TooLarge(_) => return Err(()),
            FrameNext::Partial => {}
        }
        match read.read(&mut buf).await {
            Ok(n) if n > 0 => frames.extend(&buf[..n]),
            _ => return Err(()),
        }
    }
}

/// Passes an upstream's frames on until it closes or its slot moves, then says so.
async fn read_upstream(
    slot: u32,
    epoch: i64,
    mut read: OwnedReadHalf,
    mut frames: FrameBuffer,
    tx: mpsc::Sender<Up>,
    mut owners: Table,
) {
    let reading = async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            loop {
                match frames.next() {
                    FrameNext::Frame(start, end) => {
                        let body = frames.body(start, end).to_vec();
                        if tx.send(Up::Frame(body)).await.is_err() {
                            return;
                        }
                    }
                    FrameNext::TooLarge(_) => return,
                    FrameNext::Partial => break,
                }
            }
            match read.read(&mut buf).await {
                Ok(n) if n > 0 => frames.extend(&buf[..n]),
                _ => return,
            }
        }
    };
    tokio::select! {
        _ = reading => {}
        _ = moved_from(&mut owners, slot, epoch) => {}
    }
    let _ = tx.send(Up::Closed).await;
}
