//! Which slot's owner answers a protocol request, for the TCP and WebSocket routers of a
//! cluster with several slots. A request naming a queue goes to that queue's slot; one
//! naming a job goes to the slot tagged in the id, or is tried slot by slot (a probe)
//! when the id was the caller's own; a batch of ids is split by slot; cluster-wide
//! commands go to every slot and their replies are merged. The `Router` keeps the
//! requests in progress and is transport-free, so both routers share every rule and the
//! rules are tested without sockets.

use std::collections::HashMap;

use hopper_core::cluster_slots::{id_slot, queue_slot};
use hopper_core::Value;

use crate::registry::Step;

/// The routers' own reqIds start with this (a NUL no client sends), so replies to split,
/// probed and fanned-out legs are told from replies to requests forwarded unchanged.
const TAG: &str = "\u{0}hopper:";

/// Commands that name one job by `id` (checked against hopper's command table).
const ID_COMMANDS: &[&str] = &[
    "ACK",
    "FAIL",
    "JobHeartbeat",
    "Progress",
    "MoveToWait",
    "GetChildrenValues",
    "GetFailedChildrenValues",
    "GetIgnoredChildrenFailures",
    "MoveToWaitingChildren",
    "RemoveChildDependency",
    "GetJob",
    "GetState",
    "GetResult",
    "GetProgress",
    "Cancel",
    "Update",
    "ChangePriority",
    "Promote",
    "ChangeDelay",
    "MoveToDelayed",
    "Discard",
    "ExtendLock",
    "RemoveJobDeduplicationKey",
    "WaitJob",
    "AddLog",
    "GetLogs",
    "ClearLogs",
];

/// Commands naming one job by `id` that answer success for an id their slot does not
/// hold: a caller-chosen id is sent to every slot (`classify_known`).
const EVERY_SLOT: &[&str] = &["GetLogs", "ClearLogs", "RemoveJobDeduplicationKey"];

/// Where one leg of a tracked request goes: a fixed slot, or the slot a probe is at. A
/// probe starts at the id's registered slot (else slot 0) and wraps around through
/// every other slot, so a right row costs one request and a wrong one hides no job.
#[derive(Debug, Clone, PartialEq)]
enum Target {
    Slot(u32),
    Probe { at: u32, start: u32 },
}

/// One request sent on behalf of a client request; `indices` are the client's batch
/// indices of its items (to remap `ignoredIndices`); `registered` the caller-chosen id
/// whose registry row named the probe's start, for the row to be repaired when the
/// probe finds the job on another slot.
#[derive(Debug, Clone, PartialEq)]
pub struct Leg {
    req: Value,
    target: Target,
    indices: Vec<usize>,
    registered: Option<String>,
}

/// How the replies of a request's legs become the client's reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Merge {
    /// The first error, else the first leg's reply (probes, Auth, event subscriptions).
    First,
    /// The first error, else every reply folded: numbers summed, lists concatenated,
    /// maps united.
    Sum,
    /// ACKB: the first error, else ok with the ignored items at the client's indices.
    Batch,
    /// `Prometheus`: the first error, else `{ok, data: {metrics}}` with the merge of
    /// every reply's exposition.
    Prometheus,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Route {
    /// To one slot, unchanged.
    Forward(u32),
    /// To any owner, unchanged: one already connected (a keep-alive Ping then opens no
    /// upstream, which a move of that slot would close), else slot 0's.
    Any,
    /// Remembered for every upstream, and sent to those open.
    Auth,
    Legs(Vec<Leg>, Merge),
}

/// What ids of a batch without a slot tag (caller-chosen) become.
#[derive(Clone, Copy)]
enum Untagged {
    /// One probe per item: the command fails for an id its slot does not hold.
    Probe,
    /// Sent to every slot: the command counts what it renewed, and only one slot can.
    Everywhere,
}

/// The slots the id registry names for caller-chosen ids: a batch's (`batch_ids`), or
/// the one id a probed request names (`registry_step`'s lookup).
pub type Known = HashMap<String, u32>;

/// `classify_known` with no registered ids (the tests' view of the routing rules).
#[cfg(test)]
fn classify(req: &Value, slots: u32) -> Route {
    classify_known(req, slots, &Known::new())
}

/// The route of one decoded request in a cluster of `slots` slots, given the registered
/// slots of caller-chosen ids: a batch's item goes to its slot like a generated id,
/// instead of being probed or sent everywhere; a probed id's probe starts at its slot.
/// What is not a command (or is malformed) goes to slot 0, whose server gives its
/// usual error.
fn classify_known(req: &Value, slots: u32, known: &Known) -> Route {
    let Some(cmd) = req.get("cmd").and_then(Value::as_str) else {
        return Route::Forward(0);
    };
    let every = || (0..slots).map(|s| Leg::to(s, strip(req))).collect();
    match cmd {
        // Every slot's exposition, merged as `GET /prometheus` is (equal series summed).
        "Prometheus" => return Route::Legs(every(), Merge::Prometheus),
        "Auth" => return Route::Auth,
        "SubscribeEvents" | "UnsubscribeEvents" => return Route::Legs(every(), Merge::First),
        "Stats" | "ListQueues" | "CronList" | "StorageStatus" => {
            return Route::Legs(every(), Merge::Sum)
        }
        "Metrics" if req.field("queue").is_none() => return Route::Legs(every(), Merge::Sum),
        "Ping" | "Hello" => return Route::Any,
        // Workers are registered, renewed and listed at one place: slot 0's owner.
        "RegisterWorker" | "Heartbeat" | "UnregisterWorker" | "ListWorkers" => {
            return Route::Forward(0)
        }
        // The webhook registry is the cluster's table, which every slot server reads:
        // any one owner writes and lists it (slot 0's, whatever the `queue` field says).
        "AddWebhook" | "RemoveWebhook" | "ListWebhooks" | "SetWebhookEnabled" => {
            return Route::Forward(0)
        }
        "PUSHF" => return flow_route(req, slots),
        "ACKB" => return split(req, slots, &["tokens", "results"], Untagged::Probe, known),
        "JobHeartbeatB" => return split(req, slots, &["tokens"], Untagged::Everywhere, known),
        "ExtendLocks" => {
            let aligned = &["tokens", "durations"];
            return split(req, slots, aligned, Untagged::Everywhere, known);
        }
        "GetJobByCustomId" => return probe(req, "customId", slots, known),
        "CronDelete" | "CronGet" => return probe(req, "name", slots, &Known::new()),
        // They answer success for an id they do not hold (no logs, nothing cleared), so
        // a probe cannot find a caller-chosen id's slot: every slot is asked, only the
        // holder acts, and the answers add up (logs joined, `removed` if any removed).
        c if EVERY_SLOT.contains(&c)
            && req.field("queue").is_none()
            && req
                .field("id")
                .and_then(Value::as_str)
                .is_some_and(|id| id_slot(id, slots).is_none()) =>
        {
            return Route::Legs(every(), Merge::Sum)
        }
        _ => {}
    }
    if let Some(queue) = req.field("queue").and_then(Value::as_str) {
        return Route::Forward(queue_slot(queue, slots));
    }
    if ID_COMMANDS.contains(&cmd) {
        if let Some(id) = req.field("id").and_then(Value::as_str) {
            return match id_slot(id, slots) {
                Some(slot) => Route::Forward(slot),
                None => probe(req, "id", slots, known),
            };
        }
    }
    Route::Forward(0)
}

/// The reqId of the request asking a registered slot whether it holds an id (a claim's
/// `Holds`): the transport takes its reply itself.
pub const REGISTRY_PROBE: &str = "\u{0}hopper:registry";

/// What the id registry does for a request before it is routed: a `PUSH` with a
/// caller-chosen `jobId` claims it for its queue's slot; `PUSHB` (`customId`) and a
/// `PUSHF` that is not refused register their ids where no row exists (each with its own
/// queue's slot), without being redirected; a request that would be probed for a
/// caller-chosen id looks it up first (except those sent to every slot, which a probe
/// cannot place).
pub fn registry_step(req: &Value, slots: u32) -> Option<Step> {
    let cmd = req.field("cmd")?.as_str()?;
    let chosen = |v: &Value, key: &str| {
        let id = v.field(key)?.as_str()?;
        (!id.is_empty() && id_slot(id, slots).is_none()).then(|| id.to_owned())
    };
    let slot_of = |v: &Value| Some(queue_slot(v.field("queue")?.as_str()?, slots));
    fn items(v: &Value) -> &[Value] {
        match v.field("jobs") {
            Some(Value::Array(jobs)) => jobs,
            _ => &[],
        }
    }
    let register = |ids: Vec<(String, u32)>| (!ids.is_empty()).then_some(Step::Register(ids));
    match cmd {
        "PUSH" => Some(Step::Claim(chosen(req, "jobId")?, slot_of(req)?)),
        "PUSHB" => {
            let slot = slot_of(req)?;
            let ids = items(req).iter().filter_map(|j| chosen(j, "customId"));
            register(ids.map(|id| (id, slot)).collect())
        }
        // A flow's jobs each register with their own queue's slot (they are created
        // there, by the outbox when it is not the slot the flow goes to).
        "PUSHF" => {
            let ids = items(req)
                .iter()
                .filter_map(|j| Some((chosen(j, "id")?, slot_of(j)?)))
                .collect();
            register(ids)
        }
        "GetJobByCustomId" => Some(Step::Lookup(chosen(req, "customId")?)),
        c if ID_COMMANDS.contains(&c)
            && !EVERY_SLOT.contains(&c)
            && req.field("queue").is_none() =>
        {
            Some(Step::Lookup(chosen(req, "id")?))
        }
        _ => None,
    }
}

/// The caller-chosen ids of an `ACKB`, whose items are probed one by one: looked up in
/// the registry first, so each probe starts at its id's row. (The renewals,
/// `JobHeartbeatB` and `ExtendLocks`, send such items to every slot, where only the
/// holder renews: a row naming the wrong slot could only lose a renewal.)
pub fn batch_ids(req: &Value, slots: u32) -> Vec<String> {
    let cmd = req.field("cmd").and_then(Value::as_str);
    let Some(Value::Array(ids)) = req.field("ids") else {
        return Vec::new();
    };
    if cmd != Some("ACKB") {
        return Vec::new();
    }
    ids.iter()
        .filter_map(Value::as_str)
        .filter(|id| id_slot(id, slots).is_none())
        .map(str::to_owned)
        .collect()
}

/// Whether a reply to `GetJob` says the owner holds the job (any answer but "not
/// found": an error such as a refused token is the owner's to give the push too).
pub fn holds_job(reply: &Value) -> bool {
    !keep_looking("GetJob", reply)
}

/// A probe for the id in `key`, starting at its registered slot if `known` has one.
fn probe(req: &Value, key: &str, slots: u32, known: &Known) -> Route {
    let id = req.field(key).and_then(Value::as_str);
    let slot = |id: &str| known.get(id).copied().filter(|&s| s < slots);
    let registered = id.and_then(|id| Some((id.to_owned(), slot(id)?)));
    let start = registered.as_ref().map_or(0, |r| r.1);
    Route::Legs(
        vec![Leg {
            req: strip(req),
            target: Target::Probe { at: start, start },
            indices: Vec::new(),
            registered: registered.map(|r| r.0),
        }],
        Merge::First,
    )
}

/// A flow goes whole to the slot of its first job's queue: that engine creates the jobs
/// of its own slot and sends the others' through its outbox (`outbox.rs`).
fn flow_route(req: &Value, slots: u32) -> Route {
    let first = match req.field("jobs") {
        Some(Value::Array(jobs)) => jobs.first(),
        _ => None,
    };
    match first.and_then(|j| j.field("queue")).and_then(Value::as_str) {
        Some(queue) => Route::Forward(queue_slot(queue, slots)),
        None => Route::Forward(0), // the server's own error, or its empty answer
    }
}

/// Splits a batch addressed by `ids` (with `aligned` arrays of the same length) into
/// one request per slot; a batch held by one slot is forwarded unchanged.
fn split(req: &Value, slots: u32, aligned: &[&str], untagged: Untagged, known: &Known) -> Route {
    let Some(Value::Array(ids)) = req.field("ids") else {
        return Route::Forward(0);
    };
    let aligned_ok = aligned.iter().all(|f| match req.field(f) {
        None => true,
        Some(Value::Array(a)) => a.len() == ids.len(),
        Some(_) => false,
    });
    if !aligned_ok || ids.is_empty() {
        return Route::Forward(0); // the server's error, or its empty answer
    }
    let mut per_slot: Vec<Vec<usize>> = vec![Vec::new(); slots as usize];
    // (item, the slot its probe starts at, the id if a registry row named that slot)
    let mut probes: Vec<(usize, u32, Option<String>)> = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let Some(id) = id.as_str() else {
            return Route::Forward(0);
        };
        match (id_slot(id, slots).filter(|&s| s < slots), untagged) {
            (Some(s), _) => per_slot[s as usize].push(i),
            // A row is a hint: the probe starts there and goes on if it is wrong.
            (None, Untagged::Probe) => match known.get(id).copied().filter(|&s| s < slots) {
                Some(s) => probes.push((i, s, Some(id.to_owned()))),
                None => probes.push((i, 0, None)),
            },
            (None, Untagged::Everywhere) => per_slot.iter_mut().for_each(|l| l.push(i)),
        }
    }
    let used: Vec<u32> = (0..slots)
        .filter(|&s| !per_slot[s as usize].is_empty())
        .collect();
    if probes.is_empty() && used.len() == 1 {
        return Route::Forward(used[0]);
    }
    let mut legs: Vec<Leg> = used
        .into_iter()
        .map(|s| {
            let indices = std::mem::take(&mut per_slot[s as usize]);
            Leg {
                req: subset(req, aligned, &indices),
                target: Target::Slot(s),
                indices,
                registered: None,
            }
        })
        .collect();
    legs.extend(probes.into_iter().map(|(i, start, registered)| Leg {
        req: subset(req, aligned, &[i]),
        target: Target::Probe { at: start, start },
        indices: vec![i],
        registered,
    }));
    let merge = match untagged {
        Untagged::Probe => Merge::Batch,
        Untagged::Everywhere => Merge::Sum,
    };
    Route::Legs(legs, merge)
}

/// The request without its reqId, with `ids` and the `aligned` arrays cut to `indices`.
fn subset(req: &Value, aligned: &[&str], indices: &[usize]) -> Value {
    let Value::Map(fields) = strip(req) else {
        return Value::Nil;
    };
    Value::Map(
        fields
            .into_iter()
            .map(|(k, v)| match v {
                Value::Array(items) if k == "ids" || aligned.contains(&&*k) => {
                    let picked = indices.iter().filter_map(|&i| items.get(i).cloned());
                    (k, Value::Array(picked.collect()))
                }
                v => (k, v),
            })
            .collect(),
    )
}

/// A copy of a request without its `reqId` (the leg gets the router's own).
fn strip(req: &Value) -> Value {
    match req {
        Value::Map(fields) => Value::Map(
            fields
                .iter()
                .filter(|(k, _)| k != "reqId")
                .cloned()
                .collect(),
        ),
        other => other.clone(),
    }
}

/// `v` with `reqId` set to `id` (replacing any).
pub fn with_req_id(v: Value, id: Value) -> Value {
    let Value::Map(mut fields) = v else {
        return v;
    };
    fields.retain(|(k, _)| k != "reqId");
    fields.push(("reqId".into(), id));
    Value::Map(fields)
}

pub fn error_reply(req_id: Value, message: &str) -> Value {
    with_req_id(
        Value::map(vec![
            ("ok", Value::Bool(false)),
            ("error", Value::str(message)),
        ]),
        req_id,
    )
}

impl Leg {
    fn to(slot: u32, req: Value) -> Leg {
        Leg {
            req,
            target: Target::Slot(slot),
            indices: Vec::new(),
            registered: None,
        }
    }

    fn slot(&self) -> u32 {
        match self.target {
            Target::Slot(s) | Target::Probe { at: s, .. } => s,
        }
    }
}

/// Whether a probe's reply says the job (or scheduler) is not on that slot.
fn keep_looking(cmd: &str, reply: &Value) -> bool {
    match reply.get("ok") {
        Some(Value::Bool(false)) => reply
            .get("error")
            .and_then(Value::as_str)
            .is_some_and(|e| e.to_ascii_lowercase().contains("not found")),
        _ => match cmd {
            "GetState" => reply.get("state").and_then(Value::as_str) == Some("unknown"),
            "GetResult" => reply.field("result").is_none(),
            // An unknown parent has no children's values (`{}`): a flow's parent with a
            // caller-chosen id may be on any slot. A known parent without any gets the
            // same answer from the last slot.
            "GetChildrenValues" => no_values(reply.get("data").and_then(|d| d.get("values"))),
            "GetFailedChildrenValues" | "GetIgnoredChildrenFailures" => {
                no_values(reply.get("values"))
            }
            _ => false,
        },
    }
}

fn no_values(values: Option<&Value>) -> bool {
    matches!(values, Some(Value::Map(m)) if m.is_empty())
}

/// What the transport does next.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Send the client's request, as received, to this slot.
    Forward(u32),
    /// Send this request to this slot.
    Send(u32, Value),
    /// Answer the client with this reply.
    Reply(Value),
    /// The registry's row for this id names slot `from`, but a probe found the job on
    /// slot `to`: move the row there.
    Repair { id: String, from: u32, to: u32 },
}

struct Tracked {
    cmd: String,
    req_id: Value,
    merge: Merge,
    legs: Vec<Leg>,
    replies: Vec<Option<Value>>,
    left: usize,
}

/// One client connection's requests in progress and its remembered Auth.
pub struct Router {
    slots: u32,
    auth: Option<Value>,
    /// The slot whose upstream an Auth leg is about to open: it carries the Auth itself.
    auth_leg_opens: Option<u32>,
    tracked: HashMap<u64, Tracked>,
    next: u64,
}

impl Router {
    pub fn new(slots: u32) -> Router {
        Router {
            slots: slots.max(1),
            auth: None,
            auth_leg_opens: None,
            tracked: HashMap::new(),
            next: 0,
        }
    }

    /// The Auth request to send first on the upstream of `slot`, being opened.
    pub fn auth(&mut self, slot: u32) -> Option<Value> {
        if self.auth_leg_opens == Some(slot) {
            self.auth_leg_opens = None;
            return None;
        }
        let auth = self.auth.clone()?;
        Some(with_req_id(auth, Value::str(format!("{TAG}auth"))))
    }

    /// Requests in progress (the transports bound it).
    pub fn in_progress(&self) -> usize {
        self.tracked.len()
    }

    /// Routes one client request; `open` tells which slots have an upstream already,
    /// `known` the registered slots of its batch's caller-chosen ids.
    pub fn request(
        &mut self,
        req: &Value,
        open: impl Fn(u32) -> bool,
        known: &Known,
    ) -> Vec<Action> {
        let req_id = req.get("reqId").cloned().unwrap_or(Value::Undefined);
        match classify_known(req, self.slots, known) {
            Route::Forward(slot) => vec![Action::Forward(slot)],
            Route::Any => vec![Action::Forward(
                (0..self.slots).find(|&s| open(s)).unwrap_or(0),
            )],
            Route::Auth => {
                self.auth = Some(strip(req));
                let mut legs: Vec<Leg> = (0..self.slots)
                    .filter(|&s| open(s))
                    .map(|s| Leg::to(s, strip(req)))
                    .collect();
                if legs.is_empty() {
                    legs.push(Leg::to(0, strip(req)));
                    self.auth_leg_opens = Some(0);
                }
                self.track("Auth", req_id, legs, Merge::First)
            }
            Route::Legs(legs, merge) => {
                let cmd = req.get("cmd").and_then(Value::as_str).unwrap_or("");
                self.track(cmd, req_id, legs, merge)
            }
        }
    }

    fn track(&mut self, cmd: &str, req_id: Value, legs: Vec<Leg>, merge: Merge) -> Vec<Action> {
        let key = self.next;
        self.next += 1;
        let actions = legs
            .iter()
            .enumerate()
            .map(|(i, leg)| {
                let id = Value::str(format!("{TAG}{key}:{i}"));
                Action::Send(leg.slot(), with_req_id(leg.req.clone(), id))
            })
            .collect();
        self.tracked.insert(
            key,
            Tracked {
                cmd: cmd.to_owned(),
                req_id,
                merge,
                replies: vec![None; legs.len()],
                left: legs.len(),
                legs,
            },
        );
        actions
    }

    /// Whether a reply may belong to a request in progress (else it is passed through
    /// without decoding).
    pub fn tracking(&self) -> bool {
        !self.tracked.is_empty()
    }

    /// Takes an upstream's reply: `None` if it is not a leg's (pass it to the client).
    pub fn reply(&mut self, reply: Value) -> Option<Vec<Action>> {
        let id = reply.get("reqId")?.as_str()?.strip_prefix(TAG)?;
        if id == "auth" {
            return Some(Vec::new()); // a new upstream's Auth: the client did not ask
        }
        let (key, leg) = id.split_once(':')?;
        let (key, leg): (u64, usize) = (key.parse().ok()?, leg.parse().ok()?);
        let t = self.tracked.get_mut(&key)?;
        if t.replies.get(leg)?.is_some() {
            return Some(Vec::new());
        }
        let slots = self.slots;
        let l = &mut t.legs[leg];
        let mut actions = Vec::new();
        if let Target::Probe { at, start } = l.target {
            let next = (at + 1) % slots;
            let missing = keep_looking(&t.cmd, &reply);
            if next != start && missing {
                l.target = Target::Probe { at: next, start };
                let req = with_req_id(l.req.clone(), Value::str(format!("{TAG}{id}")));
                return Some(vec![Action::Send(next, req)]);
            }
            if let Some(id) = l.registered.clone() {
                if at != start && !missing && !is_error(&reply) {
                    actions.push(Action::Repair {
                        id,
                        from: start,
                        to: at,
                    });
                }
            }
        }
        t.replies[leg] = Some(reply);
        t.left -= 1;
        if t.left > 0 {
            return Some(actions);
        }
        let t = self.tracked.remove(&key)?;
        let replies: Vec<Value> = t.replies.into_iter().flatten().collect();
        let merged = merge(t.merge, &t.legs, replies);
        actions.push(Action::Reply(with_req_id(merged, t.req_id)));
        Some(actions)
    }
}

fn is_error(reply: &Value) -> bool {
    reply.get("ok").and_then(Value::as_bool) != Some(true)
}

/// The client's reply from its legs' replies (one per leg, in leg order).
fn merge(how: Merge, legs: &[Leg], mut replies: Vec<Value>) -> Value {
    if let Some(i) = replies.iter().position(is_error) {
        return replies.swap_remove(i);
    }
    let mut replies = replies.into_iter();
    let Some(mut first) = replies.next() else {
        return Value::Nil;
    };
    match how {
        Merge::First => first,
        Merge::Prometheus => {
            let texts: Vec<Value> = std::iter::once(first.clone()).chain(replies).collect();
            let texts: Vec<&str> = texts
                .iter()
                .filter_map(|r| r.get("data")?.get("metrics")?.as_str())
                .collect();
            let merged = crate::http_merge::prometheus(&texts);
            Value::map(vec![
                ("ok", Value::Bool(true)),
                ("data", Value::map(vec![("metrics", Value::Str(merged))])),
            ])
        }
        Merge::Sum => {
            for r in replies {
                combine("", &mut first, r);
            }
            first
        }
        Merge::Batch => {
            let mut ignored: Vec<(usize, Value)> = Vec::new();
            let all = std::iter::once(first.clone()).chain(replies);
            for (leg, r) in legs.iter().zip(all) {
                let data = r.get("data");
                let idx = data.and_then(|d| d.get("ignoredIndices"));
                let ids = data.and_then(|d| d.get("ignoredIds"));
                let (Some(Value::Array(idx)), Some(Value::Array(ids))) = (idx, ids) else {
                    continue;
                };
                for (i, id) in idx.iter().zip(ids) {
                    let client = i
                        .as_number()
                        .and_then(|n| leg.indices.get(n as usize))
                        .copied();
                    if let Some(c) = client {
                        ignored.push((c, id.clone()));
                    }
                }
            }
            if ignored.is_empty() {
                return first;
            }
            ignored.sort_by_key(|(i, _)| *i);
            let (idx, ids): (Vec<Value>, Vec<Value>) = ignored
                .into_iter()
                .map(|(i, id)| (Value::Int(i as i64), id))
                .unzip();
            Value::map(vec![
                ("ok", Value::Bool(true)),
                (
                    "data",
                    Value::map(vec![
                        ("ignoredIndices", Value::Array(idx)),
                        ("ignoredIds", Value::Array(ids)),
                    ]),
                ),
            ])
        }
    }
}

/// Folds `b` into `a`: numbers add (a server's uptime and averages take the larger),
/// booleans or, lists concatenate, maps unite key by key; other values keep `a`'s.
fn combine(key: &str, a: &mut Value, b: Value) {
    let larger = key == "uptime" || key.starts_with("avg");
    match (&mut *a, b) {
        (Value::Int(x), Value::Int(y)) => {
            *x = if larger {
                (*x).max(y)
            } else {
                x.saturating_add(y)
            }
        }
        (Value::Int(_) | Value::Float(_), y @ (Value::Int(_) | Value::Float(_))) => {
            let (x, y) = (a.as_number().unwrap_or(0.0), y.as_number().unwrap_or(0.0));
            *a = Value::Float(if larger { x.max(y) } else { x + y });
        }
        (Value::Bool(x), Value::Bool(y)) => *x = *x || y,
        (Value::Array(x), Value::Array(y)) => x.extend(y),
        (Value::Map(x), Value::Map(y)) => {
            for (k, v) in y {
                match x.iter_mut().find(|(xk, _)| *xk == k) {
                    Some((_, xv)) => combine(&k, xv, v),
                    None => x.push((k, v)),
                }
            }
        }
        (Value::Nil | Value::Undefined, y) => *a = y,
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A generated id tagged with `slot` (UUIDv7 layout, the tag in the last two bytes).
    /// An id as the engine of `slot` tags it (`n` makes ids differ).
    fn tagged(slot: u32, n: u8) -> String {
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&[0x01, 0x89, 0x0a, 0x5d, 0xac, 0x96, 0x77, 0x4b]);
        id[8] = 0xbc;
        id[9] = n;
        hopper_core::cluster_slots::tag_id(&mut id, slot);
        let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
        format!(
            "{}-{}-{}-{}-{}",
            &hex[..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..]
        )
    }

    fn req(fields: Vec<(&'static str, Value)>) -> Value {
        Value::map(fields)
    }

    fn strs(items: &[&str]) -> Value {
        Value::Array(items.iter().map(|s| Value::str(*s)).collect())
    }

    fn queue_in(slot: u32, slots: u32) -> String {
        (0..1000)
            .map(|i| format!("q{i}"))
            .find(|q| queue_slot(q, slots) == slot)
            .expect("a queue of every slot")
    }

    fn sent(actions: &[Action]) -> Vec<(u32, Value)> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Send(s, v) => Some((*s, v.clone())),
                _ => None,
            })
            .collect()
    }

    fn answer(reply: Value, to: &Value) -> Value {
        with_req_id(reply, to.get("reqId").cloned().unwrap())
    }

    fn ok() -> Value {
        Value::map(vec![("ok", Value::Bool(true)), ("id", Value::Undefined)])
    }

    fn err(m: &str) -> Value {
        Value::map(vec![("ok", Value::Bool(false)), ("error", Value::str(m))])
    }

    #[test]
    fn ids_carry_the_slot_used_in_these_tests() {
        assert_eq!(id_slot(&tagged(2, 1), 4), Some(2));
        assert_eq!(id_slot(&tagged(0, 7), 4), Some(0));
    }

    #[test]
    fn commands_that_succeed_for_unknown_ids_ask_every_slot_for_a_chosen_id() {
        for cmd in ["GetLogs", "ClearLogs", "RemoveJobDeduplicationKey"] {
            let custom = req(vec![
                ("cmd", Value::str(cmd)),
                ("id", Value::str("order-1")),
            ]);
            match classify(&custom, 3) {
                Route::Legs(legs, Merge::Sum) => assert_eq!(legs.len(), 3, "{cmd}"),
                other => panic!("{cmd}: {other:?}"),
            }
            let own = req(vec![
                ("cmd", Value::str(cmd)),
                ("id", Value::str(tagged(2, 5))),
            ]);
            assert_eq!(classify(&own, 3), Route::Forward(2), "{cmd}");
        }
    }

    #[test]
    fn queue_and_id_commands_go_to_their_slot() {
        let q = queue_in(2, 3);
        let push = req(vec![("cmd", Value::str("PUSH")), ("queue", Value::str(&q))]);
        assert_eq!(classify(&push, 3), Route::Forward(2));
        let ack = req(vec![
            ("cmd", Value::str("ACK")),
            ("id", Value::str(tagged(1, 3))),
        ]);
        assert_eq!(classify(&ack, 3), Route::Forward(1));
        let custom = req(vec![
            ("cmd", Value::str("GetJob")),
            ("id", Value::str("order-1")),
        ]);
        assert!(
            matches!(classify(&custom, 3), Route::Legs(l, Merge::First) if l.len() == 1 && l[0].target == Target::Probe { at: 0, start: 0 })
        );
        for cmd in ["Ping", "Hello"] {
            let r = req(vec![("cmd", Value::str(cmd))]);
            assert_eq!(classify(&r, 3), Route::Any, "{cmd}");
            let mut router = Router::new(3);
            assert_eq!(
                router.request(&r, |s| s == 2, &Known::new()),
                [Action::Forward(2)]
            );
            assert_eq!(
                router.request(&r, |_| false, &Known::new()),
                [Action::Forward(0)]
            );
        }
        for cmd in ["RegisterWorker", "ListWorkers", "NoSuchCommand"] {
            let r = req(vec![("cmd", Value::str(cmd))]);
            assert_eq!(classify(&r, 3), Route::Forward(0), "{cmd}");
        }
        assert_eq!(classify(&Value::Int(1), 3), Route::Forward(0));
        let auth = req(vec![
            ("cmd", Value::str("Auth")),
            ("token", Value::str("t")),
        ]);
        assert_eq!(classify(&auth, 3), Route::Auth);
        let hook = req(vec![
            ("cmd", Value::str("AddWebhook")),
            ("queue", Value::str(&q)),
        ]);
        assert_eq!(classify(&hook, 3), Route::Forward(0));
        let prometheus = req(vec![("cmd", Value::str("Prometheus"))]);
        assert!(
            matches!(classify(&prometheus, 3), Route::Legs(l, Merge::Prometheus) if l.len() == 3)
        );
        for (cmd, merge) in [
            ("Stats", Merge::Sum),
            ("ListQueues", Merge::Sum),
            ("CronList", Merge::Sum),
            ("SubscribeEvents", Merge::First),
        ] {
            let r = req(vec![("cmd", Value::str(cmd)), ("queue", Value::str(&q))]);
            assert!(
                matches!(classify(&r, 3), Route::Legs(l, m) if l.len() == 3 && m == merge),
                "{cmd}"
            );
        }
    }

    #[test]
    fn the_registry_claims_pushed_ids_registers_batches_and_looks_ids_up() {
        let (a, b) = (queue_in(0, 2), queue_in(1, 2));
        let push = |id: Value| {
            req(vec![
                ("cmd", Value::str("PUSH")),
                ("queue", Value::str(&b)),
                ("jobId", id),
            ])
        };
        assert_eq!(
            registry_step(&push(Value::str("order-1")), 2),
            Some(Step::Claim("order-1".into(), 1))
        );
        // A generated-looking id routes by its tag; an empty one is the server's error.
        assert_eq!(registry_step(&push(Value::str(tagged(1, 1))), 2), None);
        assert_eq!(registry_step(&push(Value::str("")), 2), None);
        let item = |id: &str, queue: &str| {
            req(vec![
                ("customId", Value::str(id)),
                ("id", Value::str(id)),
                ("queue", Value::str(queue)),
            ])
        };
        let batch = req(vec![
            ("cmd", Value::str("PUSHB")),
            ("queue", Value::str(&a)),
            (
                "jobs",
                Value::Array(vec![item("x", &b), req(vec![]), item("y", &b)]),
            ),
        ]);
        assert_eq!(
            registry_step(&batch, 2),
            Some(Step::Register(vec![("x".into(), 0), ("y".into(), 0)]))
        );
        let flow = |jobs: Vec<Value>| {
            req(vec![
                ("cmd", Value::str("PUSHF")),
                ("jobs", Value::Array(jobs)),
            ])
        };
        assert_eq!(
            registry_step(&flow(vec![item("p", &b), item("c", &b)]), 2),
            Some(Step::Register(vec![("p".into(), 1), ("c".into(), 1)]))
        );
        assert_eq!(
            registry_step(&flow(vec![item("p", &a), item("c", &b)]), 2),
            Some(Step::Register(vec![("p".into(), 0), ("c".into(), 1)]))
        );
        let by_id = |cmd: &str, key: &'static str, id: &str| {
            req(vec![("cmd", Value::str(cmd)), (key, Value::str(id))])
        };
        for cmd in ["ACK", "GetJob", "GetState"] {
            assert_eq!(
                registry_step(&by_id(cmd, "id", "order-1"), 2),
                Some(Step::Lookup("order-1".into())),
                "{cmd}"
            );
            assert_eq!(registry_step(&by_id(cmd, "id", &tagged(0, 1)), 2), None);
        }
        assert_eq!(
            registry_step(&by_id("GetJobByCustomId", "customId", "c-1"), 2),
            Some(Step::Lookup("c-1".into()))
        );
        // Routed by its queue, or no job id at all.
        let queued = req(vec![
            ("cmd", Value::str("GetJob")),
            ("id", Value::str("order-1")),
            ("queue", Value::str(&a)),
        ]);
        assert_eq!(registry_step(&queued, 2), None);
        assert_eq!(registry_step(&by_id("CronGet", "name", "nightly"), 2), None);
        // Sent to every slot whatever a row says: no lookup.
        assert_eq!(registry_step(&by_id("GetLogs", "id", "order-1"), 2), None);
        assert!(holds_job(&ok()));
        assert!(!holds_job(&err("Job not found")));
    }

    #[test]
    fn a_batchs_registered_ids_are_probed_from_their_rows() {
        let ackb = req(vec![
            ("cmd", Value::str("ACKB")),
            ("ids", strs(&["mine", &tagged(1, 1), "other"])),
        ]);
        assert_eq!(batch_ids(&ackb, 2), ["mine", "other"]);
        // The tagged id goes to its slot; each caller-chosen one is probed, from its row
        // (a wrong row costs a step, never the job) or from slot 0 without one.
        let one: Known = [("mine".to_string(), 1)].into();
        let mut r = Router::new(2);
        let legs = sent(&r.request(&ackb, |_| true, &one));
        let shape: Vec<(u32, Option<&Value>)> =
            legs.iter().map(|(s, v)| (*s, v.get("ids"))).collect();
        assert_eq!(
            shape,
            [
                (1, Some(&strs(&[&tagged(1, 1)]))),
                (1, Some(&strs(&["mine"]))),
                (0, Some(&strs(&["other"]))),
            ]
        );
        // Renewals of caller-chosen ids go everywhere, rows or not: only the holder renews.
        let renew = req(vec![
            ("cmd", Value::str("JobHeartbeatB")),
            ("ids", strs(&["mine"])),
        ]);
        assert!(batch_ids(&renew, 2).is_empty());
        assert_eq!(sent(&r.request(&renew, |_| true, &one)).len(), 2);
        let get = req(vec![
            ("cmd", Value::str("GetJob")),
            ("ids", strs(&["mine"])),
        ]);
        assert!(batch_ids(&get, 2).is_empty());
    }

    #[test]
    fn a_flow_goes_whole_to_its_first_jobs_slot() {
        let job = |q: &str| req(vec![("queue", Value::str(q))]);
        let flow = |jobs: Vec<Value>| {
            req(vec![
                ("cmd", Value::str("PUSHF")),
                ("jobs", Value::Array(jobs)),
            ])
        };
        let (a, b) = (queue_in(0, 2), queue_in(1, 2));
        assert_eq!(
            classify(&flow(vec![job(&b), job(&b)]), 2),
            Route::Forward(1)
        );
        assert_eq!(
            classify(&flow(vec![job(&b), job(&a)]), 2),
            Route::Forward(1)
        );
        assert_eq!(
            classify(&flow(vec![job(&a), job(&b)]), 2),
            Route::Forward(0)
        );
        // Malformed or empty: slot 0's server answers it.
        assert_eq!(classify(&flow(vec![]), 2), Route::Forward(0));
        assert_eq!(classify(&flow(vec![req(vec![])]), 2), Route::Forward(0));
    }

    #[test]
    fn a_batch_is_split_by_slot_with_its_aligned_arrays() {
        let ids = [tagged(1, 1), tagged(0, 2), tagged(1, 3)];
        let ackb = req(vec![
            ("cmd", Value::str("ACKB")),
            ("reqId", Value::str("9")),
            ("ids", strs(&[&ids[0], &ids[1], &ids[2]])),
            ("tokens", strs(&["t0", "t1", "t2"])),
            (
                "results",
                Value::Array(vec![Value::Int(0), Value::Int(1), Value::Int(2)]),
            ),
        ]);
        let Route::Legs(legs, Merge::Batch) = classify(&ackb, 2) else {
            panic!("split")
        };
        assert_eq!(legs.len(), 2);
        assert_eq!(legs[0].target, Target::Slot(0));
        assert_eq!(legs[0].req.get("ids"), Some(&strs(&[&ids[1]])));
        assert_eq!(legs[0].req.get("tokens"), Some(&strs(&["t1"])));
        assert_eq!(legs[1].indices, vec![0, 2]);
        assert_eq!(
            legs[1].req.get("results"),
            Some(&Value::Array(vec![Value::Int(0), Value::Int(2)]))
        );
        assert_eq!(legs[1].req.get("reqId"), None);
        // All of one slot: forwarded unchanged.
        let one = req(vec![
            ("cmd", Value::str("ACKB")),
            ("ids", strs(&[&ids[0], &ids[2]])),
        ]);
        assert_eq!(classify(&one, 2), Route::Forward(1));
        // A caller's id is probed on its own; in a renewal it goes everywhere.
        let mixed = req(vec![
            ("cmd", Value::str("ACKB")),
            ("ids", strs(&[&ids[0], "mine"])),
        ]);
        let Route::Legs(legs, _) = classify(&mixed, 2) else {
            panic!("split")
        };
        assert_eq!(legs[1].target, Target::Probe { at: 0, start: 0 });
        assert_eq!(legs[1].indices, vec![1]);
        let renew = req(vec![
            ("cmd", Value::str("JobHeartbeatB")),
            ("ids", strs(&[&ids[0], "mine"])),
        ]);
        let Route::Legs(legs, Merge::Sum) = classify(&renew, 2) else {
            panic!("split")
        };
        assert_eq!(legs[0].req.get("ids"), Some(&strs(&["mine"])));
        assert_eq!(legs[1].req.get("ids"), Some(&strs(&[&ids[0], "mine"])));
        // Misaligned arrays: the server's error.
        let bad = req(vec![
            ("cmd", Value::str("ACKB")),
            ("ids", strs(&[&ids[0], &ids[1]])),
            ("tokens", strs(&["t"])),
        ]);
        assert_eq!(classify(&bad, 2), Route::Forward(0));
    }

    #[test]
    fn a_probe_moves_on_while_not_found_and_answers_the_last() {
        let mut r = Router::new(3);
        let get = req(vec![
            ("cmd", Value::str("GetJob")),
            ("id", Value::str("order-1")),
            ("reqId", Value::str("5")),
        ]);
        let a = sent(&r.request(&get, |_| true, &Known::new()));
        assert_eq!(a[0].0, 0);
        let b = sent(&r.reply(answer(err("Job not found"), &a[0].1)).unwrap());
        assert_eq!(b[0].0, 1);
        let found = Value::map(vec![("ok", Value::Bool(true)), ("job", Value::Nil)]);
        let done = r.reply(answer(found.clone(), &b[0].1)).unwrap();
        assert_eq!(
            done,
            vec![Action::Reply(with_req_id(found, Value::str("5")))]
        );
        assert!(!r.tracking());
        // Nowhere: the last slot's answer.
        let a = sent(&r.request(&get, |_| true, &Known::new()));
        let b = sent(&r.reply(answer(err("Job not found"), &a[0].1)).unwrap());
        let c = sent(&r.reply(answer(err("Job not found"), &b[0].1)).unwrap());
        assert_eq!(c[0].0, 2);
        let done = r.reply(answer(err("Job not found"), &c[0].1)).unwrap();
        assert_eq!(
            done,
            vec![Action::Reply(error_reply(Value::str("5"), "Job not found"))]
        );
        // An unknown state is not found either.
        let state = req(vec![
            ("cmd", Value::str("GetState")),
            ("id", Value::str("x")),
        ]);
        let unknown = Value::map(vec![
            ("ok", Value::Bool(true)),
            ("state", Value::str("unknown")),
        ]);
        assert!(keep_looking("GetState", &unknown));
        assert!(!keep_looking("ACK", &ok()));
        // A parent's children's values: none is not found, some are.
        let values = |v: Vec<(&'static str, Value)>| Value::map(vec![("values", Value::map(v))]);
        let data = |v| Value::map(vec![("ok", Value::Bool(true)), ("data", v)]);
        assert!(keep_looking("GetChildrenValues", &data(values(vec![]))));
        let some = values(vec![("q:c1", Value::Int(1))]);
        assert!(!keep_looking("GetChildrenValues", &data(some)));
        let failed = |v| Value::map(vec![("ok", Value::Bool(true)), ("values", v)]);
        assert!(keep_looking(
            "GetFailedChildrenValues",
            &failed(Value::map(vec![]))
        ));
        let some = Value::map(vec![("q:c1", Value::str("boom"))]);
        assert!(!keep_looking("GetIgnoredChildrenFailures", &failed(some)));
        let a = sent(&r.request(&state, |_| true, &Known::new()));
        assert_eq!(sent(&r.reply(answer(unknown, &a[0].1)).unwrap())[0].0, 1);
    }

    #[test]
    fn a_registered_ids_probe_starts_at_its_row_and_wraps_around() {
        let mut r = Router::new(3);
        let ack = req(vec![
            ("cmd", Value::str("ACK")),
            ("id", Value::str("order-1")),
            ("reqId", Value::str("5")),
        ]);
        let row: Known = [("order-1".to_string(), 1)].into();
        // The row is right: one request, no repair.
        let a = sent(&r.request(&ack, |_| true, &row));
        assert_eq!(a[0].0, 1);
        let done = r.reply(answer(ok(), &a[0].1)).unwrap();
        assert_eq!(
            done,
            vec![Action::Reply(with_req_id(ok(), Value::str("5")))]
        );
        // The row is wrong: 1, 2, then 0 holds it, and the row is repaired.
        let a = sent(&r.request(&ack, |_| true, &row));
        let b = sent(&r.reply(answer(err("Job not found"), &a[0].1)).unwrap());
        assert_eq!(b[0].0, 2);
        let c = sent(&r.reply(answer(err("Job not found"), &b[0].1)).unwrap());
        assert_eq!(c[0].0, 0);
        let done = r.reply(answer(ok(), &c[0].1)).unwrap();
        let repair = Action::Repair {
            id: "order-1".into(),
            from: 1,
            to: 0,
        };
        let reply = Action::Reply(with_req_id(ok(), Value::str("5")));
        assert_eq!(done, vec![repair, reply]);
        // Nowhere: every slot asked once, the last one's not-found answers, no repair.
        let a = sent(&r.request(&ack, |_| true, &row));
        let b = sent(&r.reply(answer(err("Job not found"), &a[0].1)).unwrap());
        let c = sent(&r.reply(answer(err("Job not found"), &b[0].1)).unwrap());
        let done = r.reply(answer(err("Job not found"), &c[0].1)).unwrap();
        assert_eq!(
            done,
            vec![Action::Reply(error_reply(Value::str("5"), "Job not found"))]
        );
        assert!(!r.tracking());
    }

    #[test]
    fn replies_not_of_a_leg_pass_through() {
        let mut r = Router::new(2);
        assert_eq!(r.reply(with_req_id(ok(), Value::str("1"))), None);
        assert_eq!(r.reply(ok()), None);
        assert_eq!(
            r.reply(with_req_id(ok(), Value::str(format!("{TAG}77:0")))),
            None
        );
    }

    #[test]
    fn batch_replies_merge_with_client_indices() {
        let ids = [tagged(1, 1), tagged(0, 2), tagged(1, 3)];
        let mut r = Router::new(2);
        let ackb = req(vec![
            ("cmd", Value::str("ACKB")),
            ("reqId", Value::Int(4)),
            ("ids", strs(&[&ids[0], &ids[1], &ids[2]])),
        ]);
        let legs = sent(&r.request(&ackb, |_| true, &Known::new()));
        assert_eq!(legs.len(), 2);
        let ignored = Value::map(vec![
            ("ok", Value::Bool(true)),
            (
                "data",
                Value::map(vec![
                    ("ignoredIndices", Value::Array(vec![Value::Int(1)])),
                    ("ignoredIds", strs(&[&ids[2]])),
                ]),
            ),
        ]);
        // Slot 1's leg holds client items 0 and 2: its index 1 is the client's 2.
        assert_eq!(r.reply(answer(ignored, &legs[1].1)), Some(vec![]));
        let done = r.reply(answer(ok(), &legs[0].1)).unwrap();
        let Action::Reply(v) = &done[0] else {
            panic!("a reply")
        };
        let data = v.get("data").unwrap();
        assert_eq!(
            data.get("ignoredIndices"),
            Some(&Value::Array(vec![Value::Int(2)]))
        );
        assert_eq!(data.get("ignoredIds"), Some(&strs(&[&ids[2]])));
        assert_eq!(v.get("reqId"), Some(&Value::Int(4)));
        // An error anywhere is the answer.
        let legs = sent(&r.request(&ackb, |_| true, &Known::new()));
        r.reply(answer(ok(), &legs[0].1));
        let done = r.reply(answer(err("Invalid or expired lock token"), &legs[1].1));
        assert_eq!(
            done,
            Some(vec![Action::Reply(error_reply(
                Value::Int(4),
                "Invalid or expired lock token"
            ))])
        );
    }

    #[test]
    fn fan_out_replies_sum_concatenate_and_unite() {
        let stats = |waiting: i64, uptime: f64, queues: &[&str]| {
            Value::map(vec![
                ("ok", Value::Bool(true)),
                (
                    "stats",
                    Value::map(vec![
                        ("waiting", Value::Int(waiting)),
                        ("uptime", Value::Float(uptime)),
                        ("pushPerSec", Value::Float(1.5)),
                    ]),
                ),
                ("queues", strs(queues)),
            ])
        };
        let mut r = Router::new(2);
        let s = req(vec![
            ("cmd", Value::str("Stats")),
            ("reqId", Value::str("s")),
        ]);
        let legs = sent(&r.request(&s, |_| false, &Known::new()));
        assert_eq!(legs.iter().map(|l| l.0).collect::<Vec<_>>(), [0, 1]);
        r.reply(answer(stats(2, 10.0, &["a"]), &legs[0].1));
        let done = r.reply(answer(stats(3, 30.0, &["b"]), &legs[1].1)).unwrap();
        let Action::Reply(v) = &done[0] else {
            panic!("a reply")
        };
        let st = v.get("stats").unwrap();
        assert_eq!(st.get("waiting"), Some(&Value::Int(5)));
        assert_eq!(st.get("uptime"), Some(&Value::Float(30.0)));
        assert_eq!(st.get("pushPerSec"), Some(&Value::Float(3.0)));
        assert_eq!(v.get("queues"), Some(&strs(&["a", "b"])));
        assert_eq!(v.get("ok"), Some(&Value::Bool(true)));
        let mut a = Value::map(vec![("x", Value::Nil), ("m", Value::map(vec![]))]);
        combine(
            "",
            &mut a,
            Value::map(vec![
                ("x", Value::Int(1)),
                ("m", Value::map(vec![("k", Value::Bool(true))])),
            ]),
        );
        assert_eq!(a.get("x"), Some(&Value::Int(1)));
        assert_eq!(
            a.get("m").and_then(|m| m.get("k")),
            Some(&Value::Bool(true))
        );
    }

    #[test]
    fn prometheus_expositions_of_every_slot_merge_into_one() {
        let exposition = |n: i64| {
            let text = format!("# HELP jobs Jobs.\n# TYPE jobs counter\njobs {n}\n");
            Value::map(vec![
                ("ok", Value::Bool(true)),
                ("data", Value::map(vec![("metrics", Value::Str(text))])),
            ])
        };
        let mut r = Router::new(2);
        let p = req(vec![
            ("cmd", Value::str("Prometheus")),
            ("reqId", Value::str("p")),
        ]);
        let legs = sent(&r.request(&p, |_| true, &Known::new()));
        assert_eq!(legs.len(), 2);
        r.reply(answer(exposition(2), &legs[0].1));
        let done = r.reply(answer(exposition(3), &legs[1].1)).unwrap();
        let Action::Reply(v) = &done[0] else {
            panic!("a reply")
        };
        let text = v
            .get("data")
            .and_then(|d| d.get("metrics"))
            .and_then(Value::as_str);
        assert_eq!(
            text,
            Some("# HELP jobs Jobs.\n# TYPE jobs counter\njobs 5.0\n")
        );
        assert_eq!(v.get("reqId"), Some(&Value::str("p")));
    }

    #[test]
    fn a_fan_out_with_an_error_answers_the_first_error() {
        let mut r = Router::new(3);
        let list = req(vec![
            ("cmd", Value::str("ListQueues")),
            ("reqId", Value::Int(1)),
        ]);
        let legs = sent(&r.request(&list, |_| true, &Known::new()));
        assert_eq!(r.in_progress(), 1);
        r.reply(answer(err("Not authenticated"), &legs[2].1));
        r.reply(answer(ok(), &legs[0].1));
        // A duplicate reply of a leg is dropped.
        assert_eq!(r.reply(answer(ok(), &legs[0].1)), Some(vec![]));
        let done = r.reply(answer(err("Internal server error"), &legs[1].1));
        assert_eq!(
            done,
            Some(vec![Action::Reply(error_reply(
                Value::Int(1),
                "Internal server error"
            ))])
        );
        assert_eq!(r.in_progress(), 0);
    }

    #[test]
    fn auth_goes_to_the_open_upstreams_and_is_remembered() {
        let mut r = Router::new(3);
        assert_eq!(r.auth(1), None);
        let auth = req(vec![
            ("cmd", Value::str("Auth")),
            ("token", Value::str("secret")),
            ("reqId", Value::str("1")),
        ]);
        let legs = sent(&r.request(&auth, |s| s == 2, &Known::new()));
        assert_eq!(legs.len(), 1);
        assert_eq!(legs[0].0, 2);
        let remembered = r.auth(1).unwrap();
        assert_eq!(remembered.get("token"), Some(&Value::str("secret")));
        assert_eq!(r.reply(answer(ok(), &remembered)), Some(vec![]));
        let done = r.reply(answer(ok(), &legs[0].1)).unwrap();
        assert_eq!(
            done,
            vec![Action::Reply(with_req_id(ok(), Value::str("1")))]
        );
        // None open: slot 0's owner answers, and its upstream opens without another.
        assert_eq!(sent(&r.request(&auth, |_| false, &Known::new()))[0].0, 0);
        assert_eq!(r.auth(0), None);
        assert!(r.auth(0).is_some(), "for an upstream opened later");
    }
}
