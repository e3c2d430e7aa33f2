//! One client connection of bunqueue's protocol: TCP frames of MessagePack, or WebSocket
//! messages of JSON, feeding one command table (`commands.rs`). The session holds what
//! the reference keeps per connection: authentication, the rate window, the lease owner
//! id, and the long polls still running (the event subscription lives with the server,
//! which writes the events: `Output::subscription` tells it of a change).

use std::collections::VecDeque;
use std::sync::Arc;

use super::commands::{self, Step};
use super::frames::{write_frame, FrameBuffer, Next, MAX_FRAME};
use super::msgpack;
use super::value::Value;
use crate::engine::Engine;
use crate::error::Result;
use crate::handle::EngineHandle;
use crate::wal::Commit;

/// Commands running at once per connection (the reference's semaphore): frames beyond
/// it wait, in order, until one of the long polls holding a place ends.
pub const MAX_RUNNING: usize = 50;
/// Long polls waiting at once on one WebSocket, which has no such limit in the
/// reference: each costs a task, so more are refused rather than grow memory.
pub const MAX_SOCKET_POLLS: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Length-prefixed MessagePack frames (the TCP port).
    MessagePack,
    /// One JSON text per WebSocket message.
    Json,
}

/// A frame budget per sliding window: never more than `max` frames within any span of
/// `window_ms` (the times of the last `max` frames are kept).
struct RateWindow {
    max: usize,
    window_ms: u64,
    times: VecDeque<u64>,
}

impl RateWindow {
    fn admit(&mut self, now: u64) -> bool {
        while self
            .times
            .front()
            .is_some_and(|&t| now.saturating_sub(t) >= self.window_ms)
        {
            self.times.pop_front();
        }
        if self.times.len() >= self.max {
            return false;
        }
        self.times.push_back(now);
        true
    }
}

/// A command that waits: a long-polling PULL or PULLB (answered when its queue gets a
/// job) or a WaitJob (answered when its job completes), or when its time is up.
#[derive(Debug, Clone)]
pub struct Deferred {
    pub req_id: Value,
    /// The queue whose activity may answer it.
    pub queue: String,
    pub timeout_ms: u64,
    pub(super) awaited: Awaited,
}

#[derive(Debug, Clone)]
pub(super) enum Awaited {
    Pull(commands::PullSpec),
    /// The id of the job whose completion WaitJob waits for.
    Completion(String),
    /// A command about the server process rather than the engine (Stats, Metrics,
    /// Prometheus, webhooks): the server answers it with `Session::answer`. The request
    /// is kept as JSON for the server to read its fields.
    Server(&'static str, String),
}

impl Deferred {
    /// Whether it waits for a job to complete (woken by the queue's events) rather than
    /// for work (woken by the engine's work notifications).
    pub fn waits_for_completion(&self) -> bool {
        matches!(self.awaited, Awaited::Completion(_))
    }

    /// The server command it stands for, if the server is to answer it.
    pub fn server_command(&self) -> Option<&'static str> {
        match self.awaited {
            Awaited::Server(cmd, _) => Some(cmd),
            _ => None,
        }
    }

    /// The request of a server command, as JSON (empty for any other command).
    pub fn server_request(&self) -> &str {
        match &self.awaited {
            Awaited::Server(_, request) => request,
            _ => "",
        }
    }
}

/// What one call produced: reply bytes to write (after `commit` is reached), long polls
/// to wait for, a changed event subscription, and whether to close the connection.
#[derive(Debug, Default)]
pub struct Output {
    pub bytes: Vec<u8>,
    pub deferred: Vec<Deferred>,
    /// `Some(Some(queue))` after SubscribeEvents, `Some(None)` after UnsubscribeEvents.
    pub subscription: Option<Option<String>>,
    pub close: bool,
    /// What the replies must wait for before they are sent: the log write of every
    /// record the chunk made, leases included (answering leases at once measured slower
    /// with the SDK's worker: `docs/performance.md`).
    pub commit: Option<Commit>,
}

pub struct Session {
    pub owner: u64,
    pub encoding: Encoding,
    tokens: Arc<[Box<[u8]>]>,
    authenticated: bool,
    rate: Option<RateWindow>,
    running: usize,
    frames: FrameBuffer,
}

/// The rest of what a command may touch besides the engine.
pub(super) struct Context<'a> {
    pub session: &'a mut Session,
    pub out: &'a mut Output,
    pub now: u64,
    /// Whether state may change now (storage failing refuses it).
    pub writable: &'a Result<()>,
}

impl Session {
    /// `tokens` empty: no authentication. `rate`: (frames, window ms), or none.
    pub fn new(
        owner: u64,
        encoding: Encoding,
        tokens: Arc<[Box<[u8]>]>,
        authenticated: bool,
        rate: Option<(usize, u64)>,
    ) -> Self {
        Self {
            owner,
            encoding,
            authenticated: authenticated || tokens.is_empty(),
            tokens,
            rate: rate.map(|(max, window_ms)| RateWindow {
                max: max.max(1),
                window_ms,
                times: VecDeque::new(),
            }),
            running: 0,
            frames: FrameBuffer::default(),
        }
    }

    /// Bytes received and not yet a whole frame (non-zero: a partial frame is pending).
    pub fn partial_bytes(&self) -> usize {
        self.frames.pending()
    }

    /// Whole frames wait because `MAX_RUNNING` long polls hold every place.
    pub fn blocked(&self) -> bool {
        self.running >= MAX_RUNNING && self.frames.pending() > 0
    }

    pub(super) fn check_token(&mut self, token: &[u8]) -> bool {
        let ok = self.tokens.is_empty() || self.tokens.iter().any(|t| constant_time_eq(t, token));
        if ok {
            self.authenticated = true;
        }
        ok
    }

    /// Takes TCP bytes: runs every whole frame, in order, under one engine lock.
    pub fn feed(&mut self, handle: &EngineHandle, data: &[u8]) -> Output {
        self.frames.extend(data);
        let writable = handle.check_writable();
        let mut out = Output::default();
        let ((), commit) = handle.apply(|engine| {
            let now = engine.tick();
            while self.running < MAX_RUNNING {
                match self.frames.next() {
                    Next::Partial => break,
                    Next::TooLarge(n) => {
                        let reply = commands::error_reply(
                            &Value::Undefined,
                            &format!("Frame too large: {n} bytes exceeds maximum {MAX_FRAME}"),
                        );
                        self.write(&mut out.bytes, &reply);
                        out.close = true;
                        return;
                    }
                    Next::Frame(start, end) => {
                        let request = msgpack::decode(self.frames.body(start, end));
                        self.one(engine, request.ok(), now, &writable, &mut out);
                    }
                }
            }
        });
        out.commit = commit;
        out
    }

    /// Takes one WebSocket text message (JSON).
    pub fn message(&mut self, handle: &EngineHandle, text: &[u8]) -> Output {
        let writable = handle.check_writable();
        let mut out = Output::default();
        let ((), commit) = handle.apply(|engine| {
            let now = engine.tick();
            self.one(engine, Value::from_json(text), now, &writable, &mut out);
        });
        out.commit = commit;
        out
    }

    fn one(
        &mut self,
        engine: &mut Engine,
        request: Option<Value>,
        now: u64,
        writable: &Result<()>,
        out: &mut Output,
    ) {
        let admitted = self.rate.as_mut().is_none_or(|r| r.admit(now));
        // A JavaScript-falsy message fails as unreadable, as in the reference.
        let request = request.filter(|v| !is_falsy(v));
        let Some(request) = request else {
            let error = match self.encoding {
                Encoding::MessagePack => "Invalid command format",
                Encoding::Json => "Invalid JSON",
            };
            let reply = commands::error_reply(&Value::Undefined, error);
            return self.write(&mut out.bytes, &reply);
        };
        // The reference echoes only a string reqId on these early refusals.
        let string_id = match request.get("reqId") {
            Some(v @ Value::Str(_)) => v.clone(),
            _ => Value::Undefined,
        };
        if !admitted {
            let reply = commands::error_reply(&string_id, "Rate limit exceeded");
            return self.write(&mut out.bytes, &reply);
        }
        let cmd = request
            .get("cmd")
            .and_then(Value::as_str)
            .filter(|c| !c.is_empty());
        let Some(cmd) = cmd.map(str::to_owned) else {
            let reply = commands::error_reply(&string_id, "Invalid command");
            return self.write(&mut out.bytes, &reply);
        };
        let req_id = request.get("reqId").cloned().unwrap_or(Value::Undefined);
        if !self.authenticated && cmd != "Auth" {
            let reply = commands::error_reply(&req_id, "Not authenticated");
            return self.write(&mut out.bytes, &reply);
        }
        let mut ctx = Context {
            session: self,
            out,
            now,
            writable,
        };
        let step = commands::run(engine, &mut ctx, &cmd, &request);
        let reply = match step {
            Step::Reply(v) => commands::finish(v, &req_id),
            Step::Error(e) => commands::error_reply(&req_id, &e),
            Step::Defer(ref d)
                if self.encoding == Encoding::Json
                    && self.running >= MAX_SOCKET_POLLS
                    && d.server_command().is_none() =>
            {
                commands::error_reply(
                    &req_id,
                    &format!("Too many pending pulls on this socket (max {MAX_SOCKET_POLLS})"),
                )
            }
            Step::Defer(mut d) => {
                d.req_id = req_id;
                self.running += 1;
                out.deferred.push(d);
                return;
            }
        };
        self.write(&mut out.bytes, &reply);
    }

    /// A long poll tries again (its queue got work): its reply, or None to keep waiting.
    /// A pull's reply does not wait for the log (a lease lost in a crash only means
    /// the job runs again).
    pub fn retry(&mut self, handle: &EngineHandle, d: &Deferred) -> Option<Vec<u8>> {
        let (got, _) = handle.apply(|engine| match &d.awaited {
            Awaited::Pull(spec) => {
                let now = engine.tick();
                commands::pull_now(engine, self, spec, now)
            }
            Awaited::Completion(id) => Ok(commands::completion(engine, id)),
            Awaited::Server(..) => Ok(None),
        });
        match got {
            Ok(Some(v)) => Some(self.finish_deferred(commands::finish(v, &d.req_id))),
            Ok(None) => None,
            Err(e) => Some(self.finish_deferred(commands::error_reply(&d.req_id, &e.message))),
        }
    }

    /// A long poll's time is up (or the server is stopping): the empty answer.
    pub fn expire(&mut self, d: &Deferred) -> Vec<u8> {
        let reply = match &d.awaited {
            Awaited::Pull(spec) => commands::empty_pull(spec),
            Awaited::Completion(_) => commands::not_completed(),
            Awaited::Server(cmd, _) => {
                let message = format!("{cmd} is not available");
                return self.finish_deferred(commands::error_reply(&d.req_id, &message));
            }
        };
        self.finish_deferred(commands::finish(reply, &d.req_id))
    }

    /// The server's answer to a server command (`Deferred::server_command`): `reply`
    /// is the reply object as JSON, sent with the request's reqId.
    pub fn answer(&mut self, d: &Deferred, reply: &[u8]) -> Vec<u8> {
        let reply = match Value::from_json(reply) {
            Some(v) => commands::finish(v, &d.req_id),
            None => commands::error_reply(&d.req_id, "Internal error"),
        };
        self.finish_deferred(reply)
    }

    fn finish_deferred(&mut self, reply: Value) -> Vec<u8> {
        self.running = self.running.saturating_sub(1);
        let mut bytes = Vec::new();
        self.write(&mut bytes, &reply);
        bytes
    }

    /// The connection closed: its unrenewed leases go back to waiting, its workers go.
    pub fn close(&mut self, handle: &EngineHandle) -> usize {
        let ((released, _), _) = handle.apply(|engine| {
            (
                engine.release_owner(self.owner),
                engine.workers.drop_connection(self.owner),
            )
        });
        released
    }

    fn write(&self, out: &mut Vec<u8>, reply: &Value) {
        match self.encoding {
            Encoding::MessagePack => write_frame(out, |o| msgpack::encode(reply, o)),
            Encoding::Json => {
                let mut s = String::new();
                reply.write_json(&mut s);
                out.extend_from_slice(s.as_bytes());
            }
        }
    }
}

fn is_falsy(v: &Value) -> bool {
    match v {
        Value::Nil | Value::Undefined | Value::Bool(false) | Value::Int(0) => true,
        Value::Float(f) => *f == 0.0 || f.is_nan(),
        Value::Str(s) => s.is_empty(),
        _ => false,
    }
}

/// Compares every byte whatever the first difference, so the time taken does not tell
/// an attacker how much of a token was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// One event frame for TCP subscribers, from the event's JSON: the reference's
/// `{type:"event", event:{...}}` with a completed job's result under `data` and an empty
/// `jobId` for queue-wide events.
pub fn event_frame(event_json: &[u8]) -> Option<Vec<u8>> {
    let Value::Map(mut fields) = Value::from_json(event_json)? else {
        return None;
    };
    let mut progress = None;
    for (k, v) in &mut fields {
        if k == "result" {
            *k = "data".into();
        } else if k == "jobId" && matches!(v, Value::Nil) {
            *v = Value::str("");
        } else if k == "progress" {
            progress = Some(v.clone());
        }
    }
    // A progress event also carries `data: {progress, message}` (QueueEvents reads it).
    if let Some(p) = progress {
        let message = fields
            .iter()
            .position(|(k, _)| k == "message")
            .map_or(Value::Undefined, |i| fields.remove(i).1);
        fields.push((
            "data".into(),
            Value::map(vec![("progress", p), ("message", message)]),
        ));
    }
    let frame = Value::map(vec![
        ("type", Value::str("event")),
        ("event", Value::Map(fields)),
    ]);
    let mut out = Vec::new();
    write_frame(&mut out, |o| msgpack::encode(&frame, o));
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_window_is_exact() {
        let mut w = RateWindow {
            max: 2,
            window_ms: 1000,
            times: VecDeque::new(),
        };
        assert!(w.admit(0) && w.admit(999));
        assert!(!w.admit(999) && !w.admit(999));
        assert!(w.admit(1000), "the first frame left the window");
        assert!(!w.admit(1998));
        assert!(w.admit(1999));
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd") && !constant_time_eq(b"abc", b"ab"));
    }

    #[test]
    fn events_take_the_reference_shape() {
        let frame = event_frame(
            br#"{"eventType":"completed","queue":"q","jobId":null,"timestamp":5,"result":{"a":1}}"#,
        )
        .unwrap();
        let v = msgpack::decode(&frame[4..]).unwrap();
        let ev = v.get("event").unwrap();
        assert_eq!(v.get("type"), Some(&Value::str("event")));
        assert_eq!(ev.get("jobId"), Some(&Value::str("")));
        assert_eq!(ev.get("data").unwrap().get("a"), Some(&Value::Int(1)));
    }
}
