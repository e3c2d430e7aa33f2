//! The HTTP router of a front in a cluster of several slots: it parses each request on
//! a client connection, sends it to the owner of the slot it concerns (on a keep-alive
//! upstream connection per slot, opened when first needed), and writes the answer
//! back, one request at a time, so keep-alive and pipelining keep their order.
//!
//! Where each route goes (paths percent-decoded first, as the server does):
//!
//! | route | target |
//! |---|---|
//! | `/queues/:queue/...`, `/events/queues/:queue`, `{base}/api/queues/:name/...` | the queue's slot |
//! | `GET /ws/queues/:queue` upgrade | the queue's slot, tunnelled byte for byte |
//! | `GET /ws` upgrade | `route_ws` (each message routed) |
//! | `/jobs/:id...` | the id's tagged slot; a caller-chosen id: the first slot whose `GET /jobs/:id` is not a 404 (slot 0 if none), then the request itself goes there (a probe by the request itself could apply a change on a wrong slot, and `ack` of an unknown id is a 400, not a 404) |
//! | `GET /events`, `GET {base}/api/events` | every slot's stream, merged event by event: slot 0's head, first event (the connection message) and keep-alive comments, every owner's other events; the stream ends when any owner's ends |
//! | `GET /stats`, `/metrics`, `/health` | every slot, `Merge::Sum` (counters summed, `uptime` the largest) |
//! | `GET /prometheus` | every slot, `Merge::Prometheus` |
//! | `GET {base}/api/queues`, `/api/search?type=queue` | every slot, `Merge::Queues` (by name) |
//! | `GET {base}/api/flows` | every slot, `Merge::Flows` (newest 100) |
//! | `GET {base}/api/queues/:name/jobs/:id/children` | the queue's slot for the children it holds and the parent's `childrenIds`; each child it does not hold from the slot whose `{base}/api/search?type=job` finds it (a flow spanning slots) |
//! | `GET {base}/api/search?type=job` | the id's tagged slot, else every slot, `Merge::FirstFound` |
//! | `GET {base}/api/search?type=payload&queue=` | the queue's slot |
//! | `GET {base}/api/metrics/sparklines` | every slot, `Merge::Sparklines` |
//! | `GET {base}/api/workers` | `?queue=`: its slot; else every slot, `Merge::Workers` |
//! | `GET {base}/api/schedulers` | `?queue=`: its slot; else every slot, `Merge::Concat` |
//! | `GET /heapstats`, `POST /gc` | 501: debug views of one process's memory, which no sum describes |
//! | `GET`/`HEAD` `/live`, `/healthz`, `/ready` | answered by the router: this broker's liveness is its own, and it is ready when it knows an owner for every slot (a probe sent to one slot's owner would tie every broker's health to that one) |
//! | anything else (`/openapi.json`, `/api/config`, `/api/cluster`, the dashboard, HEAD of an aggregate, unknown paths) | slot 0's owner (any owner answers them alike) |
//!
//! Fan-outs and lookups ask every slot's owner at once. A merge answers with slot 0's
//! head and the merged body; the first owner (in slot order) answering other than 2xx
//! (an auth failure, say) is answered as it is. No paginated route spans queues (job
//! lists are per queue, flows a fixed newest 100), so no merge needs more than one page
//! per owner. No reachable owner within the wait: 503; an owner failing mid-answer:
//! 502 (or, once the answer started, the client connection closes). A client closing
//! while its answer is awaited closes the upstream too, so the owner sees it leave as a
//! single server would (a long poll's job stays queued). When a slot moves,
//! upstreams to its old owner are closed; a request in flight to it closes the client
//! connection, whose next connection reaches the new owner. Errors have the API's
//! shape: `{"ok":false,"error":..}`, or `{"error":{"code","message"}}` under `/api`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use hopper_core::cluster_slots::{id_slot, queue_slot};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::timeout;

use crate::http_merge::{self, Merge};
use crate::http_wire::{
    buffered_piece, chunk, collect, fill, fill_body, has_token, header, hop_by_hop, next_piece,
    parse_request, read_response_head, request_framing, response_framing, Body, Framing,
    RequestHead, ResponseHead, WireError, LAST_CHUNK, MAX_BODY, MAX_HEAD,
};
use crate::registry::{Holds, Registry, Step as Registered};
use crate::slot_table::{connect_owner, moved_from, Port, Table};

/// How long a client connection may take to send a request head, or its body, before
/// it is closed: an idle keep-alive connection, or one that trickles bytes, would
/// otherwise hold a task and its upstreams for good.
const IDLE: Duration = Duration::from_secs(120);

/// Relayed bytes collected beyond this are written without waiting for more.
const FLUSH: usize = 64 * 1024;

/// Where a request goes.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Target {
    Slot(u32),
    /// A job id without a slot tag: found by asking each slot.
    Job(String),
    Fan(Merge),
    /// A flow parent's children (management API): the parent's slot answers those it
    /// holds, the others are found in their slots.
    Children(u32),
    /// Every queue's SSE stream.
    Events,
    /// `/ws`: the WebSocket router.
    Ws,
    /// Not routable with several slots: the route, for the 501.
    Unsupported(&'static str),
    /// A probe the router answers itself.
    Probe(Probe),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Probe {
    Live,
    Ready,
}

/// Decides the target of `method path?query` in a cluster of `slots` slots.
fn target(method: &str, path: &str, query: &str, slots: u32, upgrade: bool) -> Target {
    let decoded = percent_decode(path);
    let segments: Vec<&str> = split(&decoded);
    let by_queue = |queue: &str| Target::Slot(queue_slot(queue, slots));
    // HEAD of an aggregate: headers only, any owner's are right.
    let get = method == "GET";
    match segments.as_slice() {
        ["queues", queue, ..] => by_queue(queue),
        ["events", "queues", queue] => by_queue(queue),
        ["ws", "queues", queue] => by_queue(queue),
        ["jobs", id, ..] => match id_slot(id, slots) {
            Some(slot) => Target::Slot(slot),
            None => Target::Job(id.to_string()),
        },
        ["ws"] if upgrade => Target::Ws,
        ["events"] if get => Target::Events,
        ["stats" | "metrics" | "health"] if get => Target::Fan(Merge::Sum),
        ["prometheus"] if get => Target::Fan(Merge::Prometheus),
        ["heapstats"] => Target::Unsupported("GET /heapstats"),
        ["gc"] => Target::Unsupported("POST /gc"),
        ["live" | "healthz"] if get || method == "HEAD" => Target::Probe(Probe::Live),
        ["ready"] if get || method == "HEAD" => Target::Probe(Probe::Ready),
        _ => match api_prefix(&segments) {
            Some(i) => management(get, &segments[i + 1..], query, slots),
            None => Target::Slot(0),
        },
    }
}

/// The index of the `api` segment ending `{base}/api`: the first `api` followed by a
/// management route's first segment (a base path may itself end in `api`).
fn api_prefix(segments: &[&str]) -> Option<usize> {
    const FIRST: [&str; 9] = [
        "queues",
        "flows",
        "search",
        "metrics",
        "config",
        "events",
        "workers",
        "schedulers",
        "cluster",
    ];
    (0..segments.len())
        .find(|&i| segments[i] == "api" && segments.get(i + 1).is_some_and(|s| FIRST.contains(s)))
}

/// The management API's routes, after `{base}/api`.
fn management(get: bool, rest: &[&str], query: &str, slots: u32) -> Target {
    let by_queue = |queue: &str| Target::Slot(queue_slot(queue, slots));
    let queue_param = query_param(query, "queue").filter(|q| !q.is_empty());
    match rest {
        ["queues", name, "jobs", _, "children"] if get => Target::Children(queue_slot(name, slots)),
        ["queues", name, ..] => by_queue(name),
        _ if !get => Target::Slot(0),
        ["queues"] => Target::Fan(Merge::Queues),
        ["flows"] => Target::Fan(Merge::Flows),
        ["events"] => Target::Events,
        ["metrics", "sparklines"] => Target::Fan(Merge::Sparklines),
        ["workers"] => queue_param.map_or(Target::Fan(Merge::Workers), |q| by_queue(&q)),
        ["schedulers"] => queue_param.map_or(Target::Fan(Merge::Concat), |q| by_queue(&q)),
        ["search"] => match query_param(query, "type").as_deref().unwrap_or("job") {
            "queue" => Target::Fan(Merge::Queues),
            "payload" => queue_param.map_or(Target::Slot(0), |q| by_queue(&q)),
            "job" => {
                let id = query_param(query, "q").unwrap_or_default();
                match id_slot(&id, slots) {
                    Some(slot) if !id.is_empty() => Target::Slot(slot),
                    _ => Target::Fan(Merge::FirstFound),
                }
            }
            _ => Target::Slot(0), // the server's 400
        },
        _ => Target::Slot(0),
    }
}

/// The path and query of a request target; the absolute form (`http://host/path`),
/// which servers must accept, routes by its path as well.
fn origin_form(target: &str) -> &str {
    let scheme = ["http://", "https://"].into_iter().find(|s| {
        target
            .get(..s.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(s))
    });
    match scheme {
        Some(s) => {
            let rest = &target[s.len()..];
            rest.find(['/', '?']).map_or("/", |i| &rest[i..])
        }
        None => target,
    }
}

/// Segments as the server's router splits them: outer slashes stripped, empty inner
/// segments kept (they match no route, wherever they go).
fn split(path: &str) -> Vec<&str> {
    let path = path.trim_matches('/');
    if path.is_empty() {
        Vec::new()
    } else {
        path.split('/').collect()
    }
}

fn percent_decode(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push((hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0)) as u8);
                i += 3;
            }
            (b, ..) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let plus = |s: &str| percent_decode(&s.replace('+', " "));
        (plus(k) == name).then(|| plus(v))
    })
}

/// A path segment as a URL carries it.
fn encode_segment(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Whether the path is the management API's (for the error shape).
fn is_management(path: &str) -> bool {
    let decoded = percent_decode(path);
    let segments = split(&decoded);
    !matches!(
        segments.first(),
        Some(&("queues" | "jobs" | "events" | "ws"))
    ) && api_prefix(&segments).is_some()
}

/// A client's request, body read.
struct Request {
    head: RequestHead,
    body: Vec<u8>,
    framed: bool,
    keep_alive: bool,
    management: bool,
}

struct Upstream {
    epoch: i64,
    io: TcpStream,
    buf: Vec<u8>,
}

impl Upstream {
    /// Whether an idle pooled connection is still open: the owner closes idle ones, and
    /// a request that changes state must not be sent twice, so it is sent only on a
    /// connection not already known to be closed (bytes waiting on an idle connection
    /// make it unusable too).
    fn idle_open(&self) -> bool {
        matches!(self.io.try_read(&mut [0u8; 1]), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
    }
}

/// Whether a request may be sent again after a connection broke before any answer:
/// only when sending it twice changes nothing.
fn idempotent(method: &str) -> bool {
    matches!(method, "GET" | "HEAD" | "OPTIONS")
}

/// Why an owner gave no answer.
enum Fail {
    Unavailable,
    Broken,
    /// The slot moved while its answer was awaited.
    Moved,
}

/// How serving a connection ends: closed, or handed on as a WebSocket.
enum Exit {
    Close,
    Ws(Vec<u8>),
    Tunnel(u32, Vec<u8>),
}

/// What the merged event stream does next.
enum Step {
    Write(Vec<u8>),
    Skip,
    End,
}

/// What relaying one answer left behind.
enum Relayed {
    Done {
        reusable: bool,
        client_open: bool,
    },
    /// The owner closed before answering (nothing written to the client).
    NoAnswer,
    /// Cut mid-answer: the client connection must close.
    Cut,
}

struct Conn {
    owners: Table,
    wait: Duration,
    upstreams: HashMap<u32, Upstream>,
    buf: Vec<u8>,
    registry: Option<Arc<Registry>>,
}

/// Serves one client connection until it closes (or hands it to the WebSocket router);
/// caller-chosen ids are claimed and looked up in `registry`, if given.
pub async fn serve(
    mut client: TcpStream,
    owners: Table,
    wait: Duration,
    registry: Option<Arc<Registry>>,
) {
    let mut conn = Conn {
        owners,
        wait,
        upstreams: HashMap::new(),
        buf: Vec::new(),
        registry,
    };
    match conn.run(&mut client).await {
        Exit::Close => {}
        Exit::Ws(read) => {
            drop(conn.upstreams);
            crate::route_ws::serve(client, read, conn.owners, conn.wait, conn.registry).await;
        }
        Exit::Tunnel(slot, read) => conn.tunnel(client, slot, read).await,
    }
}

impl Conn {
    async fn run(&mut self, client: &mut TcpStream) -> Exit {
        loop {
            let head = match timeout(IDLE, self.next_head(client)).await {
                Ok(Ok(Some(head))) => head,
                Ok(Ok(None) | Err(WireError::Io)) | Err(_) => return Exit::Close,
                Ok(Err(WireError::Bad(status, message))) => {
                    let management = false;
                    let _ = client
                        .write_all(&error_response(status, message, management, false))
                        .await;
                    return Exit::Close;
                }
            };
            let (path, query) = origin_form(&head.target)
                .split_once('?')
                .unwrap_or((origin_form(&head.target), ""));
            let management = is_management(path);
            // Only WebSocket upgrades are tunnelled; another (h2c) is a plain request,
            // its Upgrade header dropped.
            let upgrade = head.method == "GET"
                && (path == "/ws" || path.starts_with("/ws/"))
                && has_token(&head.headers, "upgrade", "websocket")
                && has_token(&head.headers, "connection", "upgrade");
            let slots = self.owners.borrow().slots();
            let target = target(&head.method, path, query, slots, upgrade);
            if upgrade {
                let read = std::mem::take(&mut self.buf);
                return match target {
                    Target::Ws => Exit::Ws(read),
                    Target::Slot(slot) => Exit::Tunnel(slot, read),
                    _ => Exit::Tunnel(0, read),
                };
            }
            self.buf.drain(..head.len);
            let keep_alive = if head.minor >= 1 {
                !has_token(&head.headers, "connection", "close")
            } else {
                has_token(&head.headers, "connection", "keep-alive")
            };
            let body = match timeout(IDLE, self.read_body(client, &head)).await {
                Ok(Ok(body)) => body,
                Ok(Err(WireError::Io)) | Err(_) => return Exit::Close,
                Ok(Err(WireError::Bad(status, message))) => {
                    let _ = client
                        .write_all(&error_response(status, message, management, false))
                        .await;
                    return Exit::Close;
                }
            };
            let step = self
                .registry
                .as_ref()
                .and_then(|_| push_step(&head.method, path, &body, slots));
            let req = Request {
                framed: request_framing(&head.headers).is_ok_and(|f| f != Framing::Empty),
                head,
                body,
                keep_alive,
                management,
            };
            let open = match target {
                Target::Slot(slot) => match self.registered(step, &req).await {
                    Ok(to) => self.forward(client, to.unwrap_or(slot), &req).await,
                    Err(fail) => self.fail(client, &req, fail).await,
                },
                Target::Job(id) => match self.find(&id, &req).await {
                    Ok(slot) => self.forward(client, slot, &req).await,
                    Err(fail) => self.fail(client, &req, fail).await,
                },
                Target::Fan(how) => self.fan(client, how, &req).await,
                Target::Children(slot) => self.children(client, slot, &req).await,
                Target::Events => self.events(client, &req).await,
                Target::Unsupported(route) => {
                    let message =
                        format!("{route} is not available in a cluster with several slots");
                    write(
                        client,
                        &error_response(501, &message, management, req.keep_alive),
                    )
                    .await
                        && req.keep_alive
                }
                Target::Probe(probe) => self.probe(client, probe, &req).await,
                // Only with an upgrade, which returned above.
                Target::Ws => false,
            };
            if !open || !req.keep_alive {
                return Exit::Close;
            }
        }
    }

    /// The next request head; meanwhile, upstreams to slots that moved are closed.
    async fn next_head(
        &mut self,
        client: &mut TcpStream,
    ) -> Result<Option<RequestHead>, WireError> {
        loop {
            // Blank lines between requests are allowed (RFC 9112, 2.2).
            let blank = self
                .buf
                .iter()
                .take_while(|b| matches!(b, b'\r' | b'\n'))
                .count();
            self.buf.drain(..blank);
            if !self.buf.is_empty() {
                if let Some(head) = parse_request(&self.buf)? {
                    return Ok(Some(head));
                }
            }
            let read = tokio::select! {
                n = fill(client, &mut self.buf) => Some(n?),
                changed = self.owners.changed() => match changed {
                    Ok(()) => None,
                    Err(_) => return Ok(None), // the front is stopping
                },
            };
            match read {
                Some(0) if self.buf.is_empty() => return Ok(None),
                Some(0) => return Err(WireError::Io),
                Some(_) => {}
                None => self.sweep(),
            }
        }
    }

    async fn read_body(
        &mut self,
        client: &mut TcpStream,
        head: &RequestHead,
    ) -> Result<Vec<u8>, WireError> {
        let framing = request_framing(&head.headers)?;
        let expects = header(&head.headers, "expect")
            .is_some_and(|e| e.trim_ascii().eq_ignore_ascii_case(b"100-continue"));
        if expects && framing != Framing::Empty && head.minor >= 1 && self.buf.is_empty() {
            client.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
        }
        collect(client, &mut self.buf, framing, MAX_BODY).await
    }

    /// Closes the upstreams to owners that are no longer their slot's.
    fn sweep(&mut self) {
        let table = self.owners.borrow().clone();
        self.upstreams
            .retain(|slot, up| table.owner(*slot).is_some_and(|o| o.epoch == up.epoch));
    }

    /// A connection to `slot`'s owner: the pooled one if `pooled` allows, else a new one;
    /// with whether it was pooled.
    async fn upstream(&mut self, slot: u32, pooled: bool) -> Option<(Upstream, bool)> {
        self.sweep();
        match self.upstreams.remove(&slot) {
            Some(up) if pooled && up.idle_open() => return Some((up, true)),
            _ => {}
        }
        let (epoch, io) = connect_owner(&mut self.owners, slot, Port::Http, self.wait).await?;
        let buf = Vec::new();
        Some((Upstream { epoch, io, buf }, false))
    }

    /// Sends the request to `slot`'s owner and relays its answer as it arrives (streams
    /// included). Returns whether the client connection stays open.
    async fn forward(&mut self, client: &mut TcpStream, slot: u32, req: &Request) -> bool {
        let wire = upstream_request(req, &req.head.target, true);
        for attempt in 0..2 {
            let Some((mut up, reused)) = self.upstream(slot, attempt == 0).await else {
                return self.fail(client, req, Fail::Unavailable).await;
            };
            let (epoch, mut watch) = (up.epoch, self.owners.clone());
            let (mut from_client, mut to_client) = client.split();
            let relayed = tokio::select! {
                r = async {
                    match send(&mut up, &wire).await {
                        Ok(resp) => relay(&mut to_client, &mut up, resp, req).await,
                        Err(_) => Relayed::NoAnswer,
                    }
                } => r,
                _ = moved_from(&mut watch, slot, epoch) => Relayed::Cut,
                _ = departed(&mut from_client, &mut self.buf) => Relayed::Cut,
            };
            match relayed {
                Relayed::Done {
                    reusable,
                    client_open,
                } => {
                    if reusable {
                        self.upstreams.insert(slot, up);
                    }
                    return client_open;
                }
                // A pooled connection the owner closed while idle: once more, on a new one,
                // unless the owner may have acted on it (it answered nothing).
                Relayed::NoAnswer if reused && idempotent(&req.head.method) => continue,
                Relayed::NoAnswer => return self.fail(client, req, Fail::Broken).await,
                Relayed::Cut => return false,
            }
        }
        self.fail(client, req, Fail::Broken).await
    }

    /// A flow parent's children: the parent's owner lists those it holds; each child it
    /// names (`childrenIds` of the parent's detail) and does not hold is looked up in
    /// every slot (the management API's job search), and listed after them.
    async fn children(&mut self, client: &mut TcpStream, slot: u32, req: &Request) -> bool {
        let target = &req.head.target;
        let path = target.split_once('?').map_or(target.as_str(), |(p, _)| p);
        let parent = path.strip_suffix("/children").unwrap_or(path);
        let base = &path[..path.find("/api/queues/").unwrap_or(0)];
        let list = self
            .fetch_one(slot, upstream_request(req, target, false))
            .await;
        let detail = self
            .fetch_one(slot, upstream_request(req, parent, false))
            .await;
        let (head, mut listed, named) = match (list, detail) {
            (Ok((head, body)), Ok((ok, detail)))
                if (200..300).contains(&head.status) && (200..300).contains(&ok.status) =>
            {
                let listed = serde_json::from_slice::<serde_json::Value>(&body).ok();
                let detail = serde_json::from_slice::<serde_json::Value>(&detail).ok();
                let named: Vec<String> = detail
                    .as_ref()
                    .and_then(|d| d["data"]["childrenIds"].as_array())
                    .map(|ids| {
                        ids.iter()
                            .filter_map(|i| i.as_str().map(String::from))
                            .collect()
                    })
                    .unwrap_or_default();
                match listed {
                    Some(listed) if listed["data"].is_array() => (head, listed, named),
                    _ => return answer(client, req, &head, &body).await,
                }
            }
            (Ok((head, body)), _) => return answer(client, req, &head, &body).await,
            (Err(fail), _) => return self.fail(client, req, fail).await,
        };
        let held: HashSet<String> = listed["data"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|j| j["id"].as_str().map(String::from))
            .collect();
        for id in named.iter().filter(|id| !held.contains(*id)) {
            let search = format!("{base}/api/search?type=job&q={}", encode_segment(id));
            let probe = upstream_request(req, &search, false);
            let found = self.fetch_all(probe).await.into_iter().find_map(|got| {
                let (head, body) = got.ok()?;
                let v: serde_json::Value = serde_json::from_slice(&body).ok()?;
                ((200..300).contains(&head.status) && v["data"].is_object())
                    .then(|| v["data"].clone())
            });
            if let (Some(job), Some(list)) = (found, listed["data"].as_array_mut()) {
                list.push(job);
            }
        }
        let body = serde_json::to_vec(&listed).unwrap_or_default();
        answer(client, req, &head, &body).await
    }

    /// `slot`'s owner's whole answer to `wire`, on the pooled connection if any.
    async fn fetch_one(&mut self, slot: u32, wire: Vec<u8>) -> Fetched {
        self.sweep();
        let pooled = self.upstreams.remove(&slot);
        let (_, got, kept) =
            fetch(self.owners.clone(), self.wait, slot, pooled, Arc::new(wire)).await;
        if let Some(up) = kept {
            self.upstreams.insert(slot, up);
        }
        got
    }

    /// Every slot's owner's whole answer to `wire`, in slot order, asked all at once
    /// (on the pooled connections, which return to the pool when reusable).
    async fn fetch_all(&mut self, wire: Vec<u8>) -> Vec<Fetched> {
        self.sweep();
        let slots = self.owners.borrow().slots();
        let wire = Arc::new(wire);
        let mut asks = JoinSet::new();
        for slot in 0..slots {
            let pooled = self.upstreams.remove(&slot);
            let (owners, wait, wire) = (self.owners.clone(), self.wait, wire.clone());
            asks.spawn(fetch(owners, wait, slot, pooled, wire));
        }
        let mut answers: Vec<Fetched> = (0..slots).map(|_| Err(Fail::Broken)).collect();
        while let Some(done) = asks.join_next().await {
            // A task that panicked leaves its slot's answer `Broken`.
            let Ok((slot, answer, kept)) = done else {
                continue;
            };
            if let Some(up) = kept {
                self.upstreams.insert(slot, up);
            }
            answers[slot as usize] = answer;
        }
        answers
    }

    /// The slot the registry sends a request to, if it decides one (`step`: a push's
    /// claim or registration, or an id's lookup).
    async fn registered(
        &mut self,
        step: Option<Registered>,
        req: &Request,
    ) -> Result<Option<u32>, Fail> {
        let (Some(registry), Some(step)) = (self.registry.clone(), step) else {
            return Ok(None);
        };
        Ok(match step {
            Registered::Claim(id, slot) => {
                let mut asker = Asker { conn: self, req };
                Some(registry.route_push(&mut asker, &id, slot).await?)
            }
            Registered::Lookup(id) => registry.lookup(&id).await,
            Registered::Register(ids) => {
                registry.register(&ids).await;
                None
            }
        })
    }

    /// The slot to send a request for job `id` (a caller-chosen id, untagged) to: its
    /// registered slot if that owner holds the job (one `GET /jobs/:id`), else the one
    /// `locate` finds, the row then moving there; slot 0 (whose answer is then the
    /// not-found) if none holds it. A row never hides a job another slot holds.
    async fn find(&mut self, id: &str, req: &Request) -> Result<u32, Fail> {
        let row = self
            .registered(Some(Registered::Lookup(id.to_owned())), req)
            .await?;
        if let Some(slot) = row {
            if (Asker { conn: self, req }).holds(slot, id).await? {
                return Ok(slot);
            }
        }
        let found = self.locate(id, req).await?;
        if let (Some(registry), Some(from), Some(to)) = (&self.registry, row, found) {
            if from != to {
                registry.repair(id.to_owned(), from, to);
            }
        }
        Ok(found.unwrap_or(0))
    }

    /// The first slot whose `GET /jobs/:id` is not a 404 (asked of every owner at once).
    async fn locate(&mut self, id: &str, req: &Request) -> Result<Option<u32>, Fail> {
        let wire = probe_request(req, id);
        for (slot, answer) in self.fetch_all(wire).await.into_iter().enumerate() {
            if answer?.0.status != 404 {
                return Ok(Some(slot as u32));
            }
        }
        Ok(None)
    }

    /// Asks every slot's owner and answers the merge of their answers.
    async fn fan(&mut self, client: &mut TcpStream, how: Merge, req: &Request) -> bool {
        let wire = upstream_request(req, &req.head.target, true);
        let mut first: Option<ResponseHead> = None;
        let mut bodies = Vec::new();
        for got in self.fetch_all(wire).await {
            match got {
                Ok((resp, body)) if (200..300).contains(&resp.status) => {
                    first.get_or_insert(resp);
                    bodies.push(body);
                }
                Ok((resp, body)) => return answer(client, req, &resp, &body).await,
                Err(fail) => return self.fail(client, req, fail).await,
            }
        }
        match (first, http_merge::merge(how, &bodies)) {
            (Some(head), Some(body)) => answer(client, req, &head, &body).await,
            _ => {
                let message = "The slots' owners' answers could not be merged";
                let out = error_response(502, message, req.management, req.keep_alive);
                write(client, &out).await && req.keep_alive
            }
        }
    }

    /// A probe's answer, as a server gives it: `/live` is this broker's own; `/ready`
    /// is a 503 while some slot has no owner this front knows of.
    async fn probe(&mut self, client: &mut TcpStream, probe: Probe, req: &Request) -> bool {
        let (status, kind, body) = match probe {
            Probe::Live => (200, "text/plain; charset=utf-8", "OK".to_string()),
            Probe::Ready => {
                let table = self.owners.borrow().clone();
                let ownerless: Vec<String> = (0..table.slots())
                    .filter(|&s| table.owner(s).is_none())
                    .map(|s| s.to_string())
                    .collect();
                match ownerless.as_slice() {
                    [] => (
                        200,
                        "application/json",
                        r#"{"ok":true,"ready":true}"#.into(),
                    ),
                    slots => {
                        let error = format!("no owner for slot {}", slots.join(", "));
                        let body = serde_json::json!({"ok": false, "ready": false, "error": error});
                        (503, "application/json", body.to_string())
                    }
                }
            }
        };
        let head = ResponseHead {
            status,
            reason: if status == 200 {
                "OK"
            } else {
                "Service Unavailable"
            }
            .into(),
            headers: vec![
                ("content-type".into(), kind.as_bytes().to_vec()),
                ("content-length".into(), body.len().to_string().into_bytes()),
            ],
        };
        answer(client, req, &head, body.as_bytes()).await
    }

    /// Every slot's SSE stream, merged; ends (closing the client connection) when the
    /// client or any owner's stream does, or a slot moves.
    async fn events(&mut self, client: &mut TcpStream, req: &Request) -> bool {
        let wire = upstream_request(req, &req.head.target, true);
        let slots = self.owners.borrow().slots();
        let mut opened = Vec::new();
        for slot in 0..slots {
            // Streams get connections of their own: they hold them until the end.
            let Some((mut up, _)) = self.upstream(slot, false).await else {
                return self.fail(client, req, Fail::Unavailable).await;
            };
            let Ok(resp) = send(&mut up, &wire).await else {
                return self.fail(client, req, Fail::Broken).await;
            };
            if resp.status != 200 {
                return matches!(
                    relay(client, &mut up, resp, req).await,
                    Relayed::Done {
                        client_open: true,
                        ..
                    }
                );
            }
            opened.push((slot, up, resp));
        }
        let epochs: Vec<(u32, i64)> = opened.iter().map(|(s, up, _)| (*s, up.epoch)).collect();
        let chunked = req.head.minor >= 1;
        let to_client = if chunked {
            Framing::Chunked
        } else {
            Framing::Close
        };
        let Some((_, _, head)) = opened.first() else {
            return false;
        };
        if !write(client, &response_head(head, to_client, None, false)).await {
            return false;
        }
        let (tx, mut rx) = mpsc::channel::<(u32, bool, Option<Vec<u8>>)>(64);
        let mut pumps = JoinSet::new();
        for (slot, up, resp) in opened {
            pumps.spawn(pump_events(slot, up, resp, tx.clone()));
        }
        drop(tx);
        let mut watch = self.owners.clone();
        let mut scratch = [0u8; 4096];
        loop {
            let step = tokio::select! {
                event = rx.recv() => match event {
                    Some((slot, first, Some(event))) => {
                        let preamble = first || http_merge::sse_comment(&event);
                        if slot != 0 && preamble { Step::Skip } else { Step::Write(event) }
                    }
                    _ => Step::End,
                },
                n = client.read(&mut scratch) => match n {
                    Ok(n) if n > 0 => Step::Skip, // bytes after a stream request: ignored
                    _ => Step::End,
                },
                changed = watch.changed() => {
                    let table = watch.borrow_and_update().clone();
                    let moved = epochs
                        .iter()
                        .any(|(s, e)| table.owner(*s).is_some_and(|o| o.epoch != *e));
                    if changed.is_err() || moved { Step::End } else { Step::Skip }
                }
            };
            match step {
                Step::End => break,
                Step::Skip => {}
                Step::Write(event) => {
                    let bytes = if chunked { chunk(&event) } else { event };
                    if !write(client, &bytes).await {
                        break;
                    }
                }
            }
        }
        pumps.abort_all();
        if chunked {
            let _ = client.write_all(LAST_CHUNK).await;
        }
        false
    }

    /// Answers an owner's failure to answer; whether the client connection stays open.
    async fn fail(&mut self, client: &mut TcpStream, req: &Request, fail: Fail) -> bool {
        let (status, message) = match fail {
            Fail::Unavailable => (503, "No owner of the slot is reachable; retry shortly"),
            Fail::Broken => (502, "The slot's owner closed the connection"),
            Fail::Moved => return false,
        };
        let out = error_response(status, message, req.management, req.keep_alive);
        write(client, &out).await && req.keep_alive
    }

    /// A `/ws/queues/:queue` upgrade (or another upgrade): the connection, from the
    /// request on, copied both ways to the slot's owner until either closes or it moves.
    async fn tunnel(mut self, mut client: TcpStream, slot: u32, read: Vec<u8>) {
        self.upstreams.clear();
        let Some((epoch, mut up)) =
            connect_owner(&mut self.owners, slot, Port::Http, self.wait).await
        else {
            let message = "No owner of the slot is reachable; retry shortly";
            let _ = client
                .write_all(&error_response(503, message, false, false))
                .await;
            return;
        };
        if up.write_all(&read).await.is_err() {
            return;
        }
        tokio::select! {
            _ = tokio::io::copy_bidirectional(&mut client, &mut up) => {}
            _ = moved_from(&mut self.owners, slot, epoch) => {}
        }
    }
}

/// `GET /jobs/:id` with the client's headers (its token): whether an owner holds `id`.
fn probe_request(req: &Request, id: &str) -> Vec<u8> {
    let probe = Request {
        head: RequestHead {
            method: "GET".into(),
            target: String::new(),
            minor: 1,
            headers: req.head.headers.clone(),
            len: 0,
        },
        body: Vec::new(),
        framed: false,
        keep_alive: true,
        management: false,
    };
    upstream_request(&probe, &format!("/jobs/{}", encode_segment(id)), false)
}

/// A claim's question to an owner, with the client's headers, on the pooled connection.
struct Asker<'a> {
    conn: &'a mut Conn,
    req: &'a Request,
}

impl Holds for Asker<'_> {
    type Error = Fail;

    async fn holds(&mut self, slot: u32, id: &str) -> Result<bool, Fail> {
        let answer = self.conn.fetch_one(slot, probe_request(self.req, id)).await;
        Ok(answer?.0.status != 404)
    }
}

/// The registry's step for a push with caller-chosen ids (none for another request):
/// `POST /queues/:queue/jobs` (`jobId`) and the management API's add (`opts.jobId`)
/// claim theirs; a bulk push (`jobs[].jobId`) registers its ids without redirection.
fn push_step(method: &str, path: &str, body: &[u8], slots: u32) -> Option<Registered> {
    if method != "POST" || !body.windows(5).any(|w| w == b"jobId") {
        return None;
    }
    let decoded = percent_decode(path);
    let segments = split(&decoded);
    let body: serde_json::Value = serde_json::from_slice(body).ok()?;
    let chosen = |v: &serde_json::Value| {
        let id = v.as_str()?;
        (!id.is_empty() && id_slot(id, slots).is_none()).then(|| id.to_owned())
    };
    let api = api_prefix(&segments)
        .filter(|_| is_management(path))
        .map(|i| &segments[i + 1..]);
    match (segments.as_slice(), api) {
        (["queues", queue, "jobs"], _) => Some(Registered::Claim(
            chosen(&body["jobId"])?,
            queue_slot(queue, slots),
        )),
        (["queues", queue, "jobs", "bulk"], _) => {
            let slot = queue_slot(queue, slots);
            let ids: Vec<(String, u32)> = body["jobs"]
                .as_array()?
                .iter()
                .filter_map(|job| Some((chosen(&job["jobId"])?, slot)))
                .collect();
            (!ids.is_empty()).then_some(Registered::Register(ids))
        }
        (_, Some(["queues", queue, "jobs"])) => Some(Registered::Claim(
            chosen(&body["opts"]["jobId"])?,
            queue_slot(queue, slots),
        )),
        _ => None,
    }
}

/// An owner's whole answer.
type Fetched = Result<(ResponseHead, Vec<u8>), Fail>;

/// `slot`'s owner's whole answer to `wire`, on `pooled` if given (once more on a new
/// connection if the owner had closed it meanwhile), else on a new one; with the
/// connection to pool, if it stays usable.
async fn fetch(
    mut owners: Table,
    wait: Duration,
    slot: u32,
    mut pooled: Option<Upstream>,
    wire: Arc<Vec<u8>>,
) -> (u32, Fetched, Option<Upstream>) {
    loop {
        let reused = pooled.is_some();
        let mut up = match pooled.take() {
            Some(up) => up,
            None => match connect_owner(&mut owners, slot, Port::Http, wait).await {
                Some((epoch, io)) => Upstream {
                    epoch,
                    io,
                    buf: Vec::new(),
                },
                None => return (slot, Err(Fail::Unavailable), None),
            },
        };
        let epoch = up.epoch;
        let got = tokio::select! {
            r = async {
                let resp = send(&mut up, &wire).await.map_err(|_| false)?;
                let framing = response_framing(false, &resp);
                let body = collect(&mut up.io, &mut up.buf, framing, MAX_BODY)
                    .await
                    .map_err(|_| true)?;
                Ok((resp, body, framing))
            } => r,
            _ = moved_from(&mut owners, slot, epoch) => return (slot, Err(Fail::Moved), None),
        };
        return match got {
            Ok((resp, body, framing)) => {
                let keep = reusable(framing, &resp).then_some(up);
                (slot, Ok((resp, body)), keep)
            }
            // `false`: no answer began; a pooled connection the owner closed while idle.
            Err(false) if reused => continue,
            Err(_) => (slot, Err(Fail::Broken), None),
        };
    }
}

/// Reads one owner's SSE stream and sends each complete event (flagged when it is the
/// stream's first: the connection message), then `None` at its end.
async fn pump_events(
    slot: u32,
    mut up: Upstream,
    resp: ResponseHead,
    tx: mpsc::Sender<(u32, bool, Option<Vec<u8>>)>,
) {
    let mut state = Body::new(response_framing(false, &resp));
    let (mut pending, mut first) = (Vec::new(), true);
    while let Ok(Some(piece)) = next_piece(&mut up.io, &mut up.buf, &mut state).await {
        for event in http_merge::sse_events(&mut pending, &piece) {
            if tx.send((slot, first, Some(event))).await.is_err() {
                return;
            }
            first = false;
        }
    }
    let _ = tx.send((slot, false, None)).await;
}

/// Returns once the client has closed its side while its answer is awaited (so the
/// owner sees it leave, as a single server would: a long poll's job stays queued);
/// what the client sends meanwhile (pipelined requests) is kept in `buf`, up to a head's
/// worth beyond which it is left unread.
async fn departed<R: AsyncRead + Unpin>(client: &mut R, buf: &mut Vec<u8>) {
    while buf.len() <= MAX_HEAD {
        match fill(client, buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
    std::future::pending::<()>().await;
}

/// Writes the request and reads the answer's head.
async fn send(up: &mut Upstream, wire: &[u8]) -> Result<ResponseHead, WireError> {
    up.io.write_all(wire).await?;
    read_response_head(&mut up.io, &mut up.buf).await
}

fn reusable(framing: Framing, resp: &ResponseHead) -> bool {
    framing != Framing::Close && !has_token(&resp.headers, "connection", "close")
}

/// Writes an owner's answer to the client as it arrives, framed for the client.
async fn relay<W: AsyncWrite + Unpin>(
    client: &mut W,
    up: &mut Upstream,
    resp: ResponseHead,
    req: &Request,
) -> Relayed {
    let head_request = req.head.method == "HEAD";
    let framing = response_framing(head_request, &resp);
    let to_client = match framing {
        Framing::Empty | Framing::Length(_) => framing,
        // An HTTP/1.0 client knows no chunks: its answer ends with the connection.
        _ if req.head.minor >= 1 => Framing::Chunked,
        _ => Framing::Close,
    };
    let keep = req.keep_alive && to_client != Framing::Close;
    let mut out = response_head(
        &resp,
        to_client,
        keep.then_some(req.head.minor),
        head_request,
    );
    let mut state = Body::new(framing);
    // What has arrived goes out in one write (a small answer: head and body in one
    // packet); before waiting on the owner, what is pending is sent, so a stream's head
    // and events never wait for the next event.
    loop {
        match buffered_piece(&mut up.buf, &mut state) {
            Ok(Some(piece)) => {
                if to_client == Framing::Chunked {
                    out.extend(chunk(&piece));
                } else {
                    out.extend(piece);
                }
                if out.len() >= FLUSH {
                    if !write(client, &out).await {
                        return Relayed::Cut;
                    }
                    out.clear();
                }
            }
            Ok(None) if state == Body::Done => break,
            Ok(None) => {
                if !out.is_empty() {
                    if !write(client, &out).await {
                        return Relayed::Cut;
                    }
                    out.clear();
                }
                if fill_body(&mut up.io, &mut up.buf, &mut state)
                    .await
                    .is_err()
                {
                    return Relayed::Cut;
                }
            }
            Err(_) => return Relayed::Cut,
        }
    }
    if to_client == Framing::Chunked {
        out.extend_from_slice(LAST_CHUNK);
    }
    if !write(client, &out).await {
        return Relayed::Cut;
    }
    Relayed::Done {
        reusable: reusable(framing, &resp),
        client_open: keep,
    }
}

/// Answers a whole body under an owner's head.
async fn answer(client: &mut TcpStream, req: &Request, resp: &ResponseHead, body: &[u8]) -> bool {
    let head_request = req.head.method == "HEAD";
    let framing = Framing::Length(body.len() as u64);
    let mut out = response_head(
        resp,
        framing,
        req.keep_alive.then_some(req.head.minor),
        head_request,
    );
    if !head_request {
        out.extend_from_slice(body);
    }
    write(client, &out).await && req.keep_alive
}

async fn write<W: AsyncWrite + Unpin>(client: &mut W, bytes: &[u8]) -> bool {
    client.write_all(bytes).await.is_ok()
}

/// The request as sent to an owner: HTTP/1.1, the client's end-to-end headers, the
/// body by Content-Length.
fn upstream_request(req: &Request, target: &str, with_body: bool) -> Vec<u8> {
    let head = &req.head;
    let mut out = format!("{} {} HTTP/1.1\r\n", head.method, target).into_bytes();
    for (name, value) in &head.headers {
        if !hop_by_hop(name) {
            push_header(&mut out, name, value);
        }
    }
    if header(&head.headers, "host").is_none() {
        push_header(&mut out, "host", b"hopper");
    }
    if with_body && (req.framed || !req.body.is_empty()) {
        push_header(
            &mut out,
            "content-length",
            req.body.len().to_string().as_bytes(),
        );
    }
    out.extend_from_slice(b"\r\n");
    if with_body {
        out.extend_from_slice(&req.body);
    }
    out
}

fn push_header(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// An owner's response head re-framed for the client; `keep`: the client's HTTP minor
/// version if the connection stays open (an HTTP/1.0 client is told so).
fn response_head(
    resp: &ResponseHead,
    framing: Framing,
    keep: Option<u8>,
    head_request: bool,
) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {} {}\r\n", resp.status, resp.reason).into_bytes();
    for (name, value) in &resp.headers {
        // A HEAD's Content-Length tells the size of the GET's body: kept.
        let length_of_head = head_request && name == "content-length";
        if !hop_by_hop(name) || length_of_head {
            push_header(&mut out, name, value);
        }
    }
    let bodiless = resp.status < 200 || resp.status == 204 || resp.status == 304;
    match framing {
        Framing::Length(n) if !head_request => {
            push_header(&mut out, "content-length", n.to_string().as_bytes())
        }
        Framing::Chunked => push_header(&mut out, "transfer-encoding", b"chunked"),
        Framing::Empty if !head_request && !bodiless => {
            push_header(&mut out, "content-length", b"0")
        }
        _ => {}
    }
    match keep {
        None => push_header(&mut out, "connection", b"close"),
        Some(0) => push_header(&mut out, "connection", b"keep-alive"),
        Some(_) => {}
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// A whole error answer in the API's shape.
fn error_response(status: u16, message: &str, management: bool, keep: bool) -> Vec<u8> {
    let body = if management {
        let code = match status {
            400 | 431 => "BAD_REQUEST",
            413 => "PAYLOAD_TOO_LARGE",
            501 => "NOT_IMPLEMENTED",
            _ => "UNAVAILABLE",
        };
        serde_json::json!({"error": {"code": code, "message": message}})
    } else {
        serde_json::json!({"ok": false, "error": message})
    };
    let body = body.to_string();
    let reason = match status {
        400 => "Bad Request",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        _ => "Service Unavailable",
    };
    let connection = if keep { "" } else { "connection: close\r\n" };
    format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n\
         content-length: {}\r\n{connection}\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hopper_core::cluster_slots::tag_id;

    const S: u32 = 3;

    fn t(method: &str, target_: &str) -> Target {
        let (path, query) = target_.split_once('?').unwrap_or((target_, ""));
        target(method, path, query, S, false)
    }

    fn slot_of(queue: &str) -> Target {
        Target::Slot(queue_slot(queue, S))
    }

    /// A generated-looking id (UUIDv7 text) tagged with `slot`.
    fn tagged(slot: u32) -> String {
        let mut b = [0x11u8; 16];
        b[6] = 0x70;
        tag_id(&mut b, slot);
        let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
        format!(
            "{}-{}-{}-{}-{}",
            &h[..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..]
        )
    }

    #[test]
    fn queue_routes_go_to_the_queue_slot() {
        for (queue, raw) in [("emails", "emails"), ("a b/c", "a%20b%2Fc")] {
            // `%2F` decodes before splitting, as on the server: only the name's first part.
            let name = queue.split('/').next().unwrap();
            assert_eq!(t("POST", &format!("/queues/{raw}/jobs")), slot_of(name));
            assert_eq!(t("GET", &format!("/events/queues/{raw}")), slot_of(name));
            assert_eq!(t("DELETE", &format!("/api/queues/{raw}")), slot_of(name));
            assert_eq!(
                t("GET", &format!("/ops/api/queues/{raw}/jobs/x")),
                slot_of(name)
            );
        }
        let upgrade = |p: &str| target("GET", p, "", S, true);
        assert_eq!(upgrade("/ws/queues/emails"), slot_of("emails"));
        assert_eq!(upgrade("/ws"), Target::Ws);
        assert_eq!(t("GET", "/ws"), Target::Slot(0));
        assert_eq!(t("GET", "/api/workers?queue=a%2Bb"), slot_of("a+b"));
        assert_eq!(
            t("GET", "/api/search?type=payload&queue=q+1&q=x"),
            slot_of("q 1")
        );
    }

    #[test]
    fn job_ids_route_by_tag_or_are_looked_up() {
        for slot in 0..S {
            assert_eq!(
                t("POST", &format!("/jobs/{}/ack", tagged(slot))),
                Target::Slot(slot)
            );
            assert_eq!(
                t("GET", &format!("/api/search?q={}", tagged(slot))),
                Target::Slot(slot)
            );
        }
        // A tag beyond the slot count is no tag.
        assert_eq!(
            t("GET", &format!("/jobs/{}", tagged(7))),
            Target::Job(tagged(7))
        );
        assert_eq!(t("DELETE", "/jobs/my%20id"), Target::Job("my id".into()));
        assert_eq!(
            t("GET", "/api/search?q=my-id"),
            Target::Fan(Merge::FirstFound)
        );
        assert_eq!(encode_segment("my id/é"), "my%20id%2F%C3%A9");
    }

    #[test]
    fn pushes_with_chosen_ids_claim_or_register_them() {
        let claim =
            |id: &str, queue: &str| Some(Registered::Claim(id.into(), queue_slot(queue, S)));
        let step =
            |method: &str, path: &str, body: &str| push_step(method, path, body.as_bytes(), S);
        assert_eq!(
            step("POST", "/queues/a%20b/jobs", r#"{"data":1,"jobId":"o-1"}"#),
            claim("o-1", "a b")
        );
        assert_eq!(
            step(
                "POST",
                "/ops/api/queues/m/jobs",
                r#"{"name":"n","opts":{"jobId":"o-2"}}"#
            ),
            claim("o-2", "m")
        );
        assert_eq!(
            step(
                "POST",
                "/queues/q/jobs/bulk",
                r#"{"jobs":[{"jobId":"b-1"},{"data":2}]}"#
            ),
            Some(Registered::Register(vec![(
                "b-1".into(),
                queue_slot("q", S)
            )]))
        );
        let tag = tagged(1);
        for (method, path, body) in [
            ("POST", "/queues/q/jobs", r#"{"data":1}"#.to_string()),
            ("POST", "/queues/q/jobs", format!(r#"{{"jobId":"{tag}"}}"#)),
            ("POST", "/queues/q/jobs", r#"{"jobId":""}"#.into()),
            ("POST", "/queues/q/jobs", r#"{"jobId":"#.into()),
            ("PUT", "/queues/q/jobs", r#"{"jobId":"o-1"}"#.into()),
            (
                "POST",
                "/jobs/o-1/ack",
                r#"{"result":{"jobId":"o-1"}}"#.into(),
            ),
        ] {
            assert_eq!(step(method, path, &body), None, "{method} {path} {body}");
        }
    }

    #[test]
    fn aggregates_fan_out_and_the_rest_goes_to_slot_0() {
        assert_eq!(t("GET", "/stats"), Target::Fan(Merge::Sum));
        assert_eq!(t("GET", "/health"), Target::Fan(Merge::Sum));
        assert_eq!(t("HEAD", "/health"), Target::Slot(0));
        assert_eq!(t("GET", "/prometheus"), Target::Fan(Merge::Prometheus));
        assert_eq!(t("GET", "/events"), Target::Events);
        assert_eq!(t("GET", "/api/events"), Target::Events);
        assert_eq!(t("GET", "/api/queues"), Target::Fan(Merge::Queues));
        assert_eq!(
            t("GET", "/api/search?type=queue&q=e"),
            Target::Fan(Merge::Queues)
        );
        assert_eq!(t("GET", "/api/flows?state=all"), Target::Fan(Merge::Flows));
        assert_eq!(
            t("GET", "/dash/api/queues/q1/jobs/p-1/children"),
            Target::Children(queue_slot("q1", S))
        );
        assert_eq!(
            t("GET", "/api/metrics/sparklines"),
            Target::Fan(Merge::Sparklines)
        );
        assert_eq!(t("GET", "/api/workers"), Target::Fan(Merge::Workers));
        assert_eq!(
            t("GET", "/api/schedulers?queue="),
            Target::Fan(Merge::Concat)
        );
        assert_eq!(
            t("GET", "/heapstats"),
            Target::Unsupported("GET /heapstats")
        );
        assert_eq!(t("POST", "/gc"), Target::Unsupported("POST /gc"));
        assert_eq!(t("GET", "/live"), Target::Probe(Probe::Live));
        assert_eq!(t("HEAD", "/healthz"), Target::Probe(Probe::Live));
        assert_eq!(t("GET", "/ready"), Target::Probe(Probe::Ready));
        // Other methods get the server's 405.
        assert_eq!(t("POST", "/ready"), Target::Slot(0));
        for path in [
            "/openapi.json",
            "/",
            "/api/config",
            "/api/cluster",
            "/api/metrics/status",
            "/assets/x.js",
        ] {
            assert_eq!(t("GET", path), Target::Slot(0), "{path}");
        }
        assert_eq!(origin_form("HTTP://h:1/stats?x=1"), "/stats?x=1");
        assert_eq!(origin_form("http://h?x"), "?x");
        assert_eq!(origin_form("https://h"), "/");
        assert_eq!(origin_form("/http://x"), "/http://x");
        assert_eq!(origin_form("/é"), "/é");
        assert!(is_management("/ops/api/queues"));
        // A base path ending in `api`, a queue named `api`.
        assert_eq!(t("GET", "/api/api/queues"), Target::Fan(Merge::Queues));
        assert_eq!(t("POST", "/api/queues/api/pause"), slot_of("api"));
        assert!(!is_management("/queues/api/jobs"));
    }

    #[test]
    fn answers_are_reframed_for_the_client() {
        let resp = |status, headers: &[(&str, &str)]| ResponseHead {
            status,
            reason: "R".into(),
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
                .collect(),
        };
        let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
        let owner = resp(
            200,
            &[
                ("content-type", "text/plain"),
                ("content-length", "9"),
                ("connection", "keep-alive"),
            ],
        );
        assert_eq!(
            text(response_head(&owner, Framing::Chunked, Some(1), false)),
            "HTTP/1.1 200 R\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n"
        );
        // A HEAD keeps the owner's length; an HTTP/1.0 client is told keep-alive.
        assert_eq!(
            text(response_head(&owner, Framing::Empty, Some(0), true)),
            "HTTP/1.1 200 R\r\ncontent-type: text/plain\r\ncontent-length: 9\r\n\
             connection: keep-alive\r\n\r\n"
        );
        assert_eq!(
            text(response_head(&resp(204, &[]), Framing::Empty, None, false)),
            "HTTP/1.1 204 R\r\nconnection: close\r\n\r\n"
        );
        assert_eq!(
            text(response_head(
                &resp(404, &[]),
                Framing::Empty,
                Some(1),
                false
            )),
            "HTTP/1.1 404 R\r\ncontent-length: 0\r\n\r\n"
        );
    }

    #[test]
    fn requests_are_forwarded_with_their_own_framing() {
        let head = parse_request(
            b"POST /queues/q/jobs HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\
              Connection: keep-alive\r\nAuthorization: Bearer t\r\n\r\n",
        )
        .unwrap()
        .unwrap();
        let req = Request {
            head,
            body: b"{}".to_vec(),
            framed: true,
            keep_alive: true,
            management: false,
        };
        assert_eq!(
            String::from_utf8(upstream_request(&req, "/queues/q/jobs", true)).unwrap(),
            "POST /queues/q/jobs HTTP/1.1\r\nauthorization: Bearer t\r\nhost: hopper\r\n\
             content-length: 2\r\n\r\n{}"
        );
        assert_eq!(
            String::from_utf8(upstream_request(&req, "/jobs/x", false)).unwrap(),
            "POST /jobs/x HTTP/1.1\r\nauthorization: Bearer t\r\nhost: hopper\r\n\r\n"
        );
    }

    #[test]
    fn errors_have_the_api_shape() {
        let text = String::from_utf8(error_response(503, "down", false, true)).unwrap();
        assert!(text.starts_with("HTTP/1.1 503 Service Unavailable\r\n"));
        assert!(text.ends_with("\r\n\r\n{\"error\":\"down\",\"ok\":false}"));
        assert!(!text.contains("connection: close"));
        let text = String::from_utf8(error_response(501, "no", true, false)).unwrap();
        assert!(text.contains("connection: close\r\n"));
        assert!(text.ends_with("{\"error\":{\"code\":\"NOT_IMPLEMENTED\",\"message\":\"no\"}}"));
    }
}
