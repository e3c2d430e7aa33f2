//! bunqueue's command table on hopper's engine. Here: tier 1 (the hot path its SDK uses:
//! push, pull, ack, fail, lock renewals, progress, workers, ping, auth, events), the job
//! getters, workers and WaitJob; by topic in their own modules: queue control
//! (`queue_commands.rs`), job control (`job_commands.rs`), dead letters
//! (`dlq_commands.rs`), job logs (`log_commands.rs`), queue limits
//! (`limit_commands.rs`), stall and dead-letter settings (`queue_config_commands.rs`),
//! job schedulers (`cron_commands.rs`) and flows (`flow_commands.rs`). Requests and replies use the reference's field names and
//! shapes; validation and job rules are the engine's own (`docs/compatibility.md` lists
//! where the messages differ).

use super::job_object::{job_object, state_label};
use super::session::{Awaited, Context, Deferred, Encoding, Session};
use super::value::Value;
use super::{
    cron_commands, dlq_commands, flow_commands, group_commands, job_commands, limit_commands,
    log_commands, queue_commands, queue_config_commands,
};
use crate::engine::{Engine, LOCK_TOKEN_REQUIRED};
use crate::error::{EngineError, ErrorKind};
use crate::job::JobState;
use crate::options::{check_queue_name, PushOptions};
use crate::workers::Worker;

/// Longest long poll, in ms (the reference's bound).
pub const MAX_PULL_TIMEOUT_MS: f64 = 60_000.0;
/// Most jobs one PULLB may take.
pub const MAX_PULL_BATCH: f64 = 1000.0;

pub(super) enum Step {
    Reply(Value),
    Error(String),
    Defer(Deferred),
}

pub(super) type Res<T> = std::result::Result<T, String>;

/// What a PULL or PULLB asks for; kept to run again when a long poll wakes.
#[derive(Debug, Clone)]
pub(super) struct PullSpec {
    queue: String,
    /// `None`: PULL (one job); `Some(n)`: PULLB.
    batch: Option<usize>,
    /// The request named a lock owner: the reply carries tokens.
    with_owner: bool,
    detach: bool,
    lock_ms: Option<u64>,
}

// ----- replies -----------------------------------------------------------------------

/// `{ok:true, id:undefined}`: the reference's plain success (the key is on the wire).
pub(super) fn ok() -> Value {
    Value::map(vec![("ok", Value::Bool(true)), ("id", Value::Undefined)])
}

pub(super) fn ok_with(fields: Vec<(&'static str, Value)>) -> Value {
    let mut all = vec![("ok", Value::Bool(true))];
    all.extend(fields);
    Value::map(all)
}

/// `{ok:true, count}`: how many jobs a queue-level command touched or counted.
pub(super) fn count_reply(n: usize) -> Value {
    ok_with(vec![("count", Value::Int(n as i64))])
}

pub(super) fn data(v: Value) -> Value {
    ok_with(vec![("data", v)])
}

/// Adds the request's `reqId`, last, as the reference does (undefined when absent).
pub(super) fn finish(reply: Value, req_id: &Value) -> Value {
    let Value::Map(mut fields) = reply else {
        return reply;
    };
    fields.push(("reqId".into(), req_id.clone()));
    Value::Map(fields)
}

pub(super) fn error_reply(req_id: &Value, message: &str) -> Value {
    finish(
        Value::map(vec![
            ("ok", Value::Bool(false)),
            ("error", Value::str(message)),
        ]),
        req_id,
    )
}

// ----- reading fields ----------------------------------------------------------------

pub(super) fn string<'a>(req: &'a Value, field: &str) -> Res<&'a str> {
    match req.field(field) {
        Some(Value::Str(s)) => Ok(s),
        None => Err(format!("{field} is required")),
        Some(_) => Err(format!("{field} must be a string")),
    }
}

pub(super) fn opt_string<'a>(req: &'a Value, field: &str) -> Res<Option<&'a str>> {
    match req.field(field) {
        None => Ok(None),
        Some(Value::Str(s)) => Ok(Some(s)),
        Some(_) => Err(format!("{field} must be a string")),
    }
}

pub(super) fn queue_name(req: &Value) -> Res<&str> {
    let q = string(req, "queue")?;
    check_queue_name(q).map_err(|e| e.message)?;
    Ok(q)
}

/// A JavaScript number within `lo..=hi` (a BigInt or any other type is refused).
pub(super) fn number(req: &Value, field: &str, lo: f64, hi: f64) -> Res<Option<f64>> {
    let Some(v) = req.field(field) else {
        return Ok(None);
    };
    let n = v
        .as_number()
        .filter(|n| n.is_finite())
        .ok_or_else(|| format!("{field} must be a number"))?;
    if n < lo {
        return Err(format!("{field} must be at least {lo}"));
    }
    if n > hi {
        return Err(format!("{field} must be at most {hi}"));
    }
    Ok(Some(n))
}

pub(super) fn string_list(req: &Value, field: &str) -> Res<Vec<String>> {
    match req.field(field) {
        None => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| format!("{field} must be an array of strings"))
            })
            .collect(),
        Some(_) => Err(format!("{field} must be an array")),
    }
}

/// An optional per-item token list: `""` or null means none.
pub(super) fn token_list(
    req: &Value,
    field: &str,
    len: usize,
    cmd: &str,
) -> Res<Vec<Option<String>>> {
    match req.field(field) {
        None => Ok(vec![None; len]),
        Some(Value::Array(items)) => {
            if items.len() != len {
                return Err(format!("{cmd} {field} length must match ids length"));
            }
            Ok(items
                .iter()
                .map(|v| v.as_str().filter(|s| !s.is_empty()).map(str::to_owned))
                .collect())
        }
        Some(_) => Err(format!("{field} must be an array")),
    }
}

/// A value stored as JSON text (results): `undefined` is no value.
pub(super) fn json_text(v: Option<&Value>) -> Res<Option<Box<str>>> {
    match v {
        None | Some(Value::Undefined) => Ok(None),
        Some(v) => {
            check_serialisable(v)?;
            Ok(Some(v.to_json().into()))
        }
    }
}

/// Job data and results are JSON in hopper's log; a BigInt has no JSON form (the
/// reference refuses it the same way).
pub(super) fn check_serialisable(v: &Value) -> Res<()> {
    match v {
        Value::BigInt(_) => Err("Job data must be JSON serializable".into()),
        Value::Array(items) => items.iter().try_for_each(check_serialisable),
        Value::Map(entries) => entries.iter().try_for_each(|(_, v)| check_serialisable(v)),
        _ => Ok(()),
    }
}

pub(super) fn engine_message(e: EngineError) -> String {
    e.message
}

// ----- the table ---------------------------------------------------------------------

pub(super) fn run(engine: &mut Engine, ctx: &mut Context, cmd: &str, req: &Value) -> Step {
    let mutating = matches!(
        cmd,
        "PUSH"
            | "PUSHB"
            | "PULL"
            | "PULLB"
            | "ACK"
            | "ACKB"
            | "FAIL"
            | "JobHeartbeat"
            | "JobHeartbeatB"
            | "Progress"
            | "MoveToWait"
            | "Cancel"
            | "Update"
            | "ChangePriority"
            | "Promote"
            | "PromoteJobs"
            | "ChangeDelay"
            | "MoveToDelayed"
            | "Discard"
            | "ExtendLock"
            | "ExtendLocks"
            | "Pause"
            | "Resume"
            | "Drain"
            | "Obliterate"
            | "Clean"
            | "RetryDlq"
            | "PurgeDlq"
            | "RemoveDlqJob"
            | "RemoveDeduplicationKey"
            | "RemoveJobDeduplicationKey"
            | "RetryCompleted"
            | "AddLog"
            | "ClearLogs"
            | "RateLimit"
            | "RateLimitClear"
            | "SetConcurrency"
            | "ClearConcurrency"
            | "SetStallConfig"
            | "SetDlqConfig"
            | "Cron"
            | "CronDelete"
            | "PUSHF"
            | "MoveToWaitingChildren"
            | "RemoveChildDependency"
            | "SetGroupRateLimit"
            | "RemoveGroupRateLimit"
            | "SetGroupConcurrency"
            | "RemoveGroupConcurrency"
            | "PauseGroup"
            | "ResumeGroup"
            | "RateLimitGroup"
    );
    if mutating {
        if let Err(e) = ctx.writable {
            return Step::Error(e.message.clone());
        }
    }
    let json = ctx.session.encoding == Encoding::Json;
    let result = match cmd {
        "PUSH" => push(engine, req),
        "PUSHB" => push_batch(engine, req),
        "PULL" | "PULLB" => return pull(engine, ctx, req, cmd == "PULLB"),
        "ACK" => ack(engine, req),
        "ACKB" => ack_batch(engine, req),
        "FAIL" => fail(engine, req),
        "JobHeartbeat" => heartbeat_job(engine, req),
        "JobHeartbeatB" => heartbeat_jobs(engine, req),
        "Progress" => progress(engine, req),
        "MoveToWait" => move_to_wait(engine, req),
        "PUSHF" => flow_commands::push_flow(engine, req),
        "GetChildrenValues" => flow_commands::children_values(engine, req),
        "GetFailedChildrenValues" => flow_commands::failed_children_values(engine, req),
        "GetIgnoredChildrenFailures" => flow_commands::ignored_children_failures(engine, req),
        "MoveToWaitingChildren" => flow_commands::move_to_waiting_children(engine, req),
        "RemoveChildDependency" => flow_commands::remove_child_dependency(engine, req),
        "GetJob" => get_job(engine, req),
        "GetState" => get_state(engine, req),
        "GetResult" => get_result(engine, req),
        "GetJobCounts" => job_counts(engine, req),
        "GetJobs" => queue_commands::get_jobs(engine, req),
        "Count" => queue_commands::count_jobs(engine, req),
        "GetCountsPerPriority" => queue_commands::counts_per_priority(engine, req),
        "GetJobByCustomId" => job_commands::get_job_by_custom_id(engine, req),
        "GetProgress" => job_commands::get_progress(engine, req),
        "Cancel" => job_commands::cancel(engine, req),
        "Update" => job_commands::update(engine, req),
        "ChangePriority" => job_commands::change_priority(engine, req),
        "Promote" => job_commands::promote(engine, req),
        "PromoteJobs" => queue_commands::promote_jobs(engine, req),
        "ChangeDelay" => job_commands::change_delay(engine, req),
        "MoveToDelayed" => job_commands::move_to_delayed(engine, req),
        "Discard" => job_commands::discard(engine, req),
        "ExtendLock" => job_commands::extend_lock(engine, req),
        "ExtendLocks" => job_commands::extend_locks(engine, req),
        "Pause" => queue_commands::pause(engine, req),
        "Resume" => queue_commands::resume(engine, req),
        "IsPaused" => queue_commands::is_paused(engine, req),
        "Drain" => queue_commands::drain(engine, req),
        "Obliterate" => queue_commands::obliterate(engine, req),
        "Clean" => queue_commands::clean(engine, req),
        "ListQueues" => Ok(queue_commands::list_queues(engine)),
        "Dlq" => dlq_commands::dlq(engine, req),
        "RetryDlq" => dlq_commands::retry_dlq(engine, req),
        "PurgeDlq" => dlq_commands::purge_dlq(engine, req),
        "RemoveDlqJob" => dlq_commands::remove_dlq_job(engine, req),
        "GetDlqStats" => dlq_commands::dlq_stats(engine, req),
        "GetDeduplicationJobId" => queue_commands::dedup_job_id(engine, req),
        "RemoveDeduplicationKey" => queue_commands::remove_dedup_key(engine, req),
        "RemoveJobDeduplicationKey" => job_commands::remove_job_dedup_key(engine, req),
        "RetryCompleted" => dlq_commands::retry_completed(engine, req),
        "ListWorkers" => Ok(list_workers(engine, ctx.now)),
        "WaitJob" => return wait_job(engine, req),
        "Stats" => return server_command("Stats", req),
        "Prometheus" => return server_command("Prometheus", req),
        "AddWebhook" => return server_command("AddWebhook", req),
        "RemoveWebhook" => return server_command("RemoveWebhook", req),
        "ListWebhooks" => return server_command("ListWebhooks", req),
        "SetWebhookEnabled" => return server_command("SetWebhookEnabled", req),
        "Metrics" if req.field("queue").is_none() => return server_command("Metrics", req),
        "Metrics" => Err("Metrics by queue is not supported".into()),
        "Hello" => Ok(hello()),
        "StorageStatus" => Ok(storage_status(ctx.writable)),
        "RegisterWorker" => register_worker(engine, ctx, req),
        "Heartbeat" => worker_heartbeat(engine, ctx, req),
        "UnregisterWorker" => unregister_worker(engine, req),
        "AddLog" => log_commands::add_log(engine, req),
        "GetLogs" => log_commands::get_logs(engine, req),
        "ClearLogs" => log_commands::clear_logs(engine, req),
        "RateLimit" => limit_commands::rate_limit(engine, req),
        "RateLimitClear" => limit_commands::rate_limit_clear(engine, req),
        "SetConcurrency" => limit_commands::set_concurrency(engine, req),
        "ClearConcurrency" => limit_commands::clear_concurrency(engine, req),
        "GetQueueLimits" => limit_commands::get_queue_limits(engine, req),
        "GetGroupsJobsCount" => group_commands::groups_jobs_count(engine, req),
        "GetGroupJobsCount" => group_commands::group_jobs_count(engine, req),
        "GetGroupActiveCount" => group_commands::group_active_count(engine, req),
        "SetGroupRateLimit" => group_commands::set_group_rate_limit(engine, req),
        "GetGroupRateLimit" => group_commands::group_rate_limit(engine, req),
        "RemoveGroupRateLimit" => group_commands::remove_group_rate_limit(engine, req),
        "GetGroupRateLimitTtl" => group_commands::group_rate_limit_ttl(engine, req),
        "SetGroupConcurrency" => group_commands::set_group_concurrency(engine, req),
        "GetGroupConcurrency" => group_commands::group_concurrency(engine, req),
        "RemoveGroupConcurrency" => group_commands::remove_group_concurrency(engine, req),
        "PauseGroup" => group_commands::pause_group(engine, req),
        "ResumeGroup" => group_commands::resume_group(engine, req),
        "IsGroupPaused" => group_commands::is_group_paused(engine, req),
        "RateLimitGroup" => group_commands::rate_limit_group(engine, req),
        "SetStallConfig" => queue_config_commands::set_stall_config(engine, req),
        "GetStallConfig" => queue_config_commands::get_stall_config(engine, req),
        "SetDlqConfig" => queue_config_commands::set_dlq_config(engine, req),
        "GetDlqConfig" => queue_config_commands::get_dlq_config(engine, req),
        "Cron" => cron_commands::cron(engine, req),
        "CronDelete" => cron_commands::cron_delete(engine, req),
        "CronList" => Ok(cron_commands::cron_list(engine)),
        "CronGet" => cron_commands::cron_get(engine, req),
        "Ping" => Ok(data(Value::map(vec![
            ("pong", Value::Bool(true)),
            ("time", Value::Float(ctx.now as f64)),
        ]))),
        "Auth" => auth(ctx.session, req),
        // On the WebSocket every socket already receives events (the reference answers
        // these two as unknown there).
        "SubscribeEvents" if !json => queue_name(req).map(|q| {
            ctx.out.subscription = Some(Some(q.to_owned()));
            ok()
        }),
        "UnsubscribeEvents" if !json => {
            ctx.out.subscription = Some(None);
            Ok(ok())
        }
        _ => Err(format!("Unknown command: {cmd}")),
    };
    match result {
        Ok(v) => Step::Reply(v),
        Err(e) => Step::Error(e),
    }
}

fn auth(session: &mut Session, req: &Value) -> Res<Value> {
    let token = req.field("token").and_then(Value::as_str).unwrap_or("");
    if session.check_token(token.as_bytes()) {
        Ok(ok())
    } else {
        Err("Invalid token".into())
    }
}

// ----- push --------------------------------------------------------------------------

/// Keys of a push request that are not job options.
const NOT_OPTIONS: [&str; 4] = ["cmd", "reqId", "queue", "jobs"];

/// A push request (PUSH, or one PUSHB item) as the engine's push options: the same
/// parser and rules as the HTTP API, after the protocol's spellings are mapped (`customId`
/// in batches, a `{type, delay}` backoff, the job name taken from `data.name`).
pub(super) fn push_options(engine: &Engine, req: &Value, id_key: &str) -> Res<PushOptions> {
    let Value::Map(entries) = req else {
        return Err("job must be an object".into());
    };
    let mut name_from_data: Option<String> = None;
    let has_name = req.field("name").is_some();
    let mut json = String::with_capacity(128);
    json.push('{');
    let mut first = true;
    let mut saw_data = false;
    for (key, value) in entries {
        let key: &str = key;
        if NOT_OPTIONS.contains(&key) || matches!(value, Value::Undefined | Value::Nil) {
            continue;
        }
        if matches!(value, Value::BigInt(_)) {
            return Err(format!("{key} must be a number"));
        }
        let key = match key {
            k if k == id_key => "jobId",
            "jobId" => continue, // the other spelling is not an id in this command
            k => k,
        };
        if !first {
            json.push(',');
        }
        first = false;
        crate::json_render::push_str(&mut json, key);
        json.push(':');
        match (key, value) {
            ("data", Value::Map(fields)) if !has_name => {
                check_serialisable(value)?;
                // The reference's legacy rule: a string `data.name` names the job and
                // leaves the data.
                let mut fields = fields.clone();
                if let Some(i) = fields
                    .iter()
                    .position(|(k, v)| k == "name" && v.as_str().is_some())
                {
                    name_from_data = fields.remove(i).1.as_str().map(str::to_owned);
                }
                Value::Map(fields).write_json(&mut json);
                saw_data = true;
            }
            ("data", v) => {
                check_serialisable(v)?;
                v.write_json(&mut json);
                saw_data = true;
            }
            ("backoff", Value::Map(_)) => match value.get("delay").and_then(Value::as_number) {
                Some(d) => Value::Float(d).write_json(&mut json),
                None => return Err("backoff.delay must be a number".into()),
            },
            (_, v) => v.write_json(&mut json),
        }
    }
    if !saw_data {
        if !first {
            json.push(',');
        }
        json.push_str("\"data\":null");
    }
    if let Some(name) = name_from_data {
        json.push_str(",\"name\":");
        crate::json_render::push_str(&mut json, &name);
    }
    json.push('}');
    PushOptions::from_json(json.as_bytes(), engine.config().max_payload_bytes)
        .map_err(engine_message)
}

fn push(engine: &mut Engine, req: &Value) -> Res<Value> {
    let queue = queue_name(req)?;
    let opts = push_options(engine, req, "jobId")?;
    let outcome = engine.push(queue, opts).map_err(engine_message)?;
    Ok(ok_with(vec![("id", Value::Str(outcome.id))]))
}

fn push_batch(engine: &mut Engine, req: &Value) -> Res<Value> {
    let queue = queue_name(req)?;
    let Some(Value::Array(items)) = req.field("jobs") else {
        return Err("jobs must be an array".into());
    };
    let batch = items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            push_options(engine, item, "customId").map_err(|e| format!("jobs[{i}]: {e}"))
        })
        .collect::<Res<Vec<_>>>()?;
    // The engine names a batch item `job i:`; the reference says `jobs[i]:`.
    let outcomes = engine.push_many(queue, batch).map_err(|e| {
        let message = e.message;
        match message
            .strip_prefix("job ")
            .and_then(|rest| rest.split_once(": "))
        {
            Some((i, reason)) if i.bytes().all(|b| b.is_ascii_digit()) => {
                format!("jobs[{i}]: {reason}")
            }
            _ => message,
        }
    })?;
    Ok(ok_with(vec![(
        "ids",
        Value::Array(outcomes.into_iter().map(|o| Value::Str(o.id)).collect()),
    )]))
}

// ----- pull --------------------------------------------------------------------------

fn pull(engine: &mut Engine, ctx: &mut Context, req: &Value, batch: bool) -> Step {
    let spec = (|| -> Res<(PullSpec, u64)> {
        let queue = queue_name(req)?.to_owned();
        group_commands::check_pull_group(req)?;
        let timeout = number(req, "timeout", 0.0, MAX_PULL_TIMEOUT_MS)?.unwrap_or(0.0);
        let count = if batch {
            let n = number(req, "count", 1.0, MAX_PULL_BATCH)?
                .ok_or("count must be a number between 1 and 1000")?;
            Some(n as usize)
        } else {
            None
        };
        let with_owner = opt_string(req, "owner")?.is_some();
        let lock_ms = number(req, "lockTtl", 1.0, 86_400_000.0)?.map(|v| v as u64);
        let detach = req
            .field("detach")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        Ok((
            PullSpec {
                queue,
                batch: count,
                with_owner,
                detach,
                lock_ms,
            },
            timeout as u64,
        ))
    })();
    let (spec, timeout_ms) = match spec {
        Ok(s) => s,
        Err(e) => return Step::Error(e),
    };
    match pull_now(engine, ctx.session, &spec, ctx.now) {
        Ok(Some(reply)) => Step::Reply(reply),
        Ok(None) if timeout_ms > 0 => Step::Defer(Deferred {
            req_id: Value::Undefined,
            queue: spec.queue.clone(),
            timeout_ms,
            awaited: Awaited::Pull(spec),
        }),
        Ok(None) => Step::Reply(empty_pull(&spec)),
        Err(e) => Step::Error(e.message),
    }
}

/// Runs a pull: the reply when it got a job (or jobs), None when the queue had none.
pub(super) fn pull_now(
    engine: &mut Engine,
    session: &Session,
    spec: &PullSpec,
    _now: u64,
) -> crate::error::Result<Option<Value>> {
    let owner = if spec.detach { 0 } else { session.owner };
    let want = spec.batch.unwrap_or(1);
    let mut jobs = Vec::with_capacity(want.min(64));
    let mut tokens = Vec::with_capacity(want.min(64));
    while jobs.len() < want {
        let pulled = engine.pull_locked(&spec.queue, owner, spec.lock_ms, spec.with_owner)?;
        let Some((slot, token)) = pulled else {
            break;
        };
        jobs.push(job_object(engine, slot, false));
        tokens.push(Value::Str(token));
    }
    if jobs.is_empty() {
        return Ok(None);
    }
    Ok(Some(match (spec.batch, spec.with_owner) {
        (None, true) => ok_with(vec![
            ("job", jobs.pop().expect("one job")),
            ("token", tokens.pop().expect("one token")),
        ]),
        (None, false) => ok_with(vec![("job", jobs.pop().expect("one job"))]),
        (Some(_), true) => ok_with(vec![
            ("jobs", Value::Array(jobs)),
            ("tokens", Value::Array(tokens)),
        ]),
        (Some(_), false) => ok_with(vec![("jobs", Value::Array(jobs))]),
    }))
}

pub(super) fn empty_pull(spec: &PullSpec) -> Value {
    match (spec.batch, spec.with_owner) {
        (None, true) => ok_with(vec![("job", Value::Nil), ("token", Value::Nil)]),
        (None, false) => ok_with(vec![("job", Value::Nil)]),
        (Some(_), true) => ok_with(vec![
            ("jobs", Value::Array(Vec::new())),
            ("tokens", Value::Array(Vec::new())),
        ]),
        (Some(_), false) => ok_with(vec![("jobs", Value::Array(Vec::new()))]),
    }
}

// ----- finishing jobs ----------------------------------------------------------------

/// The reference's wording for an ack or fail that finds no active job or a wrong lock.
fn settle_error(e: EngineError, id: &str) -> String {
    match e.kind {
        ErrorKind::LockMismatch if e.message == LOCK_TOKEN_REQUIRED => {
            format!("Lock token required for job {id}")
        }
        ErrorKind::LockMismatch => format!("Invalid or expired lock token for job {id}"),
        ErrorKind::NotFound | ErrorKind::InvalidState => {
            format!("Job not found or not in processing state: {id}")
        }
        _ => e.message,
    }
}

/// A job whose attempt the server already ended (its timeout failed it: it waits,
/// delayed, for its retry): a late outcome is reported, not an error, as the reference
/// does. Unknown, finished and released (waiting) jobs are errors.
fn already_finalized(engine: &Engine, id: &str, e: &EngineError) -> bool {
    matches!(e.kind, ErrorKind::NotFound | ErrorKind::InvalidState)
        && engine.state_by_id(id) == Some(JobState::Delayed)
}

fn late() -> Value {
    data(Value::map(vec![
        ("applied", Value::Bool(false)),
        ("reason", Value::str("already-finalized")),
    ]))
}

fn ack(engine: &mut Engine, req: &Value) -> Res<Value> {
    let id = string(req, "id")?;
    let token = opt_string(req, "token")?.filter(|t| !t.is_empty());
    let result = json_text(req.get("result"))?;
    match engine.ack(id, token, result) {
        Ok(()) => Ok(ok()),
        Err(e) if already_finalized(engine, id, &e) => Ok(late()),
        Err(e) => Err(settle_error(e, id)),
    }
}

/// A batch's `ids`: required, an array of strings.
pub(super) fn id_list(req: &Value) -> Res<Vec<String>> {
    if req.field("ids").is_none() {
        return Err("ids must be an array".into());
    }
    string_list(req, "ids")
}

fn ack_batch(engine: &mut Engine, req: &Value) -> Res<Value> {
    let ids = id_list(req)?;
    let tokens = token_list(req, "tokens", ids.len(), "ACKB")?;
    let results = match req.field("results") {
        None => vec![None; ids.len()],
        Some(Value::Array(items)) if items.len() == ids.len() => items
            .iter()
            .map(|v| json_text(Some(v)))
            .collect::<Res<Vec<_>>>()?,
        Some(Value::Array(_)) => return Err("ACKB results length must match ids length".into()),
        Some(_) => return Err("results must be an array".into()),
    };
    // Like the reference, every item is tried; the first error is the answer.
    let mut ignored = Vec::new();
    let mut first_error = None;
    for (i, ((id, token), result)) in ids.iter().zip(tokens).zip(results).enumerate() {
        match engine.ack(id, token.as_deref(), result) {
            Ok(()) => {}
            Err(e) if already_finalized(engine, id, &e) => ignored.push(i),
            Err(e) => {
                first_error.get_or_insert_with(|| settle_error(e, id));
            }
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    if ignored.is_empty() {
        return Ok(ok());
    }
    Ok(data(Value::map(vec![
        (
            "ignoredIndices",
            Value::Array(ignored.iter().map(|&i| Value::Int(i as i64)).collect()),
        ),
        (
            "ignoredIds",
            Value::Array(ignored.iter().map(|&i| Value::str(&ids[i])).collect()),
        ),
    ])))
}

fn fail(engine: &mut Engine, req: &Value) -> Res<Value> {
    let id = string(req, "id")?;
    let token = opt_string(req, "token")?.filter(|t| !t.is_empty());
    let error = opt_string(req, "error")?.map(Into::into);
    let unrecoverable = req.field("unrecoverable").and_then(Value::as_bool) == Some(true);
    let done = if unrecoverable {
        engine.fail_for_good(id, token, error)
    } else {
        engine.fail(id, token, error).map(|_| ())
    };
    match done {
        Ok(()) => Ok(ok()),
        Err(e) if already_finalized(engine, id, &e) => Ok(late()),
        Err(e) => Err(settle_error(e, id)),
    }
}

// ----- locks and progress ------------------------------------------------------------

fn heartbeat_job(engine: &mut Engine, req: &Value) -> Res<Value> {
    let id = string(req, "id")?;
    let token = opt_string(req, "token")?.filter(|t| !t.is_empty());
    let duration = number(req, "duration", 1.0, 86_400_000.0)?.map(|v| v as u64);
    engine
        .extend_lease(id, token, duration)
        .map_err(|_| "Job not found or not active (or invalid token)".to_string())?;
    Ok(data(Value::map(vec![("ok", Value::Bool(true))])))
}

fn heartbeat_jobs(engine: &mut Engine, req: &Value) -> Res<Value> {
    let ids = id_list(req)?;
    let tokens = token_list(req, "tokens", ids.len(), "JobHeartbeatB")?;
    let renewed = ids
        .iter()
        .zip(&tokens)
        .filter(|(id, token)| engine.extend_lease(id, token.as_deref(), None).is_ok())
        .count();
    Ok(data(Value::map(vec![
        ("ok", Value::Bool(true)),
        ("count", Value::Int(renewed as i64)),
    ])))
}

fn progress(engine: &mut Engine, req: &Value) -> Res<Value> {
    let id = string(req, "id")?;
    let value = number(req, "progress", 0.0, 100.0)?.ok_or("progress must be a number")?;
    let message = opt_string(req, "message")?.map(Into::into);
    match engine.progress_noted(id, None, value.round() as u8, message) {
        Ok(()) => Ok(ok()),
        Err(e) if e.kind == ErrorKind::InvalidState => {
            let state = engine.state_by_id(id).map_or("unknown", |s| s.as_str());
            if state == "unknown" {
                Err("Job not found".into())
            } else {
                Err(format!("Job is not active (current state: {state})"))
            }
        }
        Err(e) => Err(e.message),
    }
}

fn move_to_wait(engine: &mut Engine, req: &Value) -> Res<Value> {
    let id = string(req, "id")?;
    let token = opt_string(req, "token")?.filter(|t| !t.is_empty());
    engine.move_to_wait(id, token).map_err(engine_message)?;
    Ok(ok())
}

// ----- getters -----------------------------------------------------------------------

fn get_job(engine: &Engine, req: &Value) -> Res<Value> {
    let id = string(req, "id")?;
    let slot = engine.slot_of(id).ok_or("Job not found")?;
    Ok(ok_with(vec![("job", job_object(engine, slot, true))]))
}

pub(super) fn state_name(engine: &Engine, id: &str) -> &'static str {
    engine
        .slot_of(id)
        .map_or("unknown", |slot| state_label(engine, slot))
}

fn get_state(engine: &Engine, req: &Value) -> Res<Value> {
    let id = string(req, "id")?;
    Ok(ok_with(vec![
        ("id", Value::str(id)),
        ("state", Value::str(state_name(engine, id))),
    ]))
}

fn get_result(engine: &Engine, req: &Value) -> Res<Value> {
    let id = string(req, "id")?;
    let result = engine
        .slot_of(id)
        .and_then(|s| engine.job_at(s).ext().and_then(|e| e.result.as_deref()))
        .map_or(Value::Undefined, super::job_object::json_value);
    Ok(ok_with(vec![("id", Value::str(id)), ("result", result)]))
}

/// Counts by bunqueue's states. While the queue is paused its ready jobs count as
/// `paused` only (not twice).
fn job_counts(engine: &Engine, req: &Value) -> Res<Value> {
    let queue = queue_name(req)?;
    let counts = engine.counts(queue);
    let count = |st: JobState| {
        let i = JobState::ALL
            .iter()
            .position(|&s| s == st)
            .expect("a state");
        counts[i] as i64
    };
    let prioritized = engine.prioritized_count(queue) as i64;
    let waiting = count(JobState::Waiting) - prioritized;
    let paused = engine.is_paused(queue);
    let (waiting, prioritized, paused) = if paused {
        (0, 0, waiting + prioritized)
    } else {
        (waiting, prioritized, 0)
    };
    Ok(ok_with(vec![(
        "counts",
        Value::map(vec![
            ("waiting", Value::Int(waiting)),
            ("prioritized", Value::Int(prioritized)),
            ("delayed", Value::Int(count(JobState::Delayed))),
            ("active", Value::Int(count(JobState::Active))),
            ("completed", Value::Int(count(JobState::Completed))),
            ("failed", Value::Int(count(JobState::Failed))),
            (
                "waiting-children",
                Value::Int(count(JobState::WaitingChildren)),
            ),
            ("paused", Value::Int(paused)),
        ]),
    )]))
}

/// A command the server process answers: it knows uptime, rates and its metrics, and
/// runs the webhooks.
fn server_command(cmd: &'static str, req: &Value) -> Step {
    Step::Defer(Deferred {
        req_id: Value::Undefined,
        queue: String::new(),
        timeout_ms: 0,
        awaited: Awaited::Server(cmd, req.to_json()),
    })
}

/// The protocol handshake: version 3, as the reference, naming hopper as the server.
fn hello() -> Value {
    ok_with(vec![
        ("protocolVersion", Value::Int(3)),
        (
            "capabilities",
            Value::Array(vec![
                Value::str("pipelining"),
                Value::str("separate-job-name"),
            ]),
        ),
        ("server", Value::str("hopper")),
        ("version", Value::str(env!("CARGO_PKG_VERSION"))),
    ])
}

/// Whether storage takes writes: the error that refuses them now, if any.
fn storage_status(writable: &crate::error::Result<()>) -> Value {
    let (full, error) = match writable {
        Ok(()) => (false, Value::Nil),
        Err(e) => (
            e.message.contains("No space") || e.message.contains("ENOSPC"),
            Value::str(&e.message),
        ),
    };
    data(Value::map(vec![
        ("diskFull", Value::Bool(full)),
        ("error", error),
        ("since", Value::Nil),
    ]))
}

/// Longest WaitJob, in ms (the reference's bound), and its default.
const MAX_WAIT_MS: f64 = 600_000.0;
const DEFAULT_WAIT_MS: f64 = 30_000.0;

/// Answers at once for a completed job, else waits (up to `timeout` ms) for it to
/// complete; a job that fails is waited for until the time is up, as in the reference.
fn wait_job(engine: &Engine, req: &Value) -> Step {
    let found = (|| -> Res<(String, String, u64)> {
        let id = string(req, "id")?;
        let timeout = number(req, "timeout", 0.0, MAX_WAIT_MS)?.unwrap_or(DEFAULT_WAIT_MS);
        let slot = engine.slot_of(id).ok_or("Job not found")?;
        let queue = engine.queue_name_of(slot).to_owned();
        Ok((id.to_owned(), queue, timeout as u64))
    })();
    match found {
        Err(e) => Step::Error(e),
        Ok((id, queue, timeout_ms)) => match completion(engine, &id) {
            Some(reply) => Step::Reply(reply),
            None if timeout_ms == 0 => Step::Reply(not_completed()),
            None => Step::Defer(Deferred {
                req_id: Value::Undefined,
                queue,
                timeout_ms,
                awaited: Awaited::Completion(id),
            }),
        },
    }
}

/// WaitJob's answer once `id` completed (None while it has not). A job that is gone
/// (removed, or removed on completion) is answered not completed: hopper keeps no
/// record of a removed job's outcome.
pub(super) fn completion(engine: &Engine, id: &str) -> Option<Value> {
    let Some(slot) = engine.slot_of(id) else {
        return Some(not_completed());
    };
    if engine.state_of(slot) != JobState::Completed {
        return None;
    }
    let result = engine
        .job_at(slot)
        .ext()
        .and_then(|e| e.result.as_deref())
        .map_or(Value::Undefined, super::job_object::json_value);
    Some(ok_with(vec![
        ("completed", Value::Bool(true)),
        ("result", result),
    ]))
}

pub(super) fn not_completed() -> Value {
    ok_with(vec![("completed", Value::Bool(false))])
}

// ----- workers -----------------------------------------------------------------------

/// A worker as RegisterWorker answers it (`id_key` "workerId") or ListWorkers lists it
/// ("id").
fn worker_value(w: &Worker, id_key: &'static str) -> Value {
    Value::map(vec![
        (id_key, Value::str(&w.id)),
        ("name", Value::str(&w.name)),
        (
            "queues",
            Value::Array(w.queues.iter().map(Value::str).collect()),
        ),
        ("concurrency", Value::Int(w.concurrency.into())),
        (
            "hostname",
            w.hostname.as_deref().map_or(Value::Nil, Value::str),
        ),
        ("pid", w.pid.map_or(Value::Nil, Value::Float)),
        ("status", Value::str("active")),
        ("registeredAt", Value::Int(w.registered_at as i64)),
        ("lastSeen", Value::Int(w.last_seen as i64)),
        ("activeJobs", Value::Int(w.active_jobs as i64)),
        ("processedJobs", Value::Int(w.processed_jobs as i64)),
        ("failedJobs", Value::Int(w.failed_jobs as i64)),
        ("currentJob", Value::Nil),
    ])
}

fn register_worker(engine: &mut Engine, ctx: &mut Context, req: &Value) -> Res<Value> {
    let name = string(req, "name")?;
    let queues = string_list(req, "queues")?;
    let concurrency = number(req, "concurrency", 1.0, 1_000_000.0)?.unwrap_or(1.0);
    let id = match opt_string(req, "workerId")? {
        Some(id) => id.to_owned(),
        None => engine.new_uuid(),
    };
    let worker = Worker {
        id,
        name: name.to_owned(),
        queues,
        concurrency: concurrency as u32,
        hostname: opt_string(req, "hostname")?.map(str::to_owned),
        pid: req.field("pid").and_then(Value::as_number),
        registered_at: ctx.now,
        last_seen: ctx.now,
        active_jobs: 0,
        processed_jobs: 0,
        failed_jobs: 0,
        connection: ctx.session.owner,
    };
    let w = engine.workers.register(worker)?;
    Ok(data(worker_value(w, "workerId")))
}

fn worker_heartbeat(engine: &mut Engine, ctx: &Context, req: &Value) -> Res<Value> {
    let id = string(req, "id")?;
    let count = |f| number(req, f, 0.0, 1e15).map(|v| v.map(|v| v as u64));
    let (active, processed, failed) = (count("activeJobs")?, count("processed")?, count("failed")?);
    if !engine
        .workers
        .heartbeat(id, ctx.now, active, processed, failed)
    {
        return Err("Worker not found".into());
    }
    Ok(data(Value::map(vec![("ok", Value::Bool(true))])))
}

fn unregister_worker(engine: &mut Engine, req: &Value) -> Res<Value> {
    let id = string(req, "workerId")?;
    if !engine.workers.unregister(id) {
        return Err("Worker not found".into());
    }
    Ok(data(Value::map(vec![("removed", Value::Bool(true))])))
}

/// The registry and its totals (`Queue.getWorkers`). A listed worker names its id `id`
/// and adds its `uptime` (ms since it registered), as the reference lists them.
fn list_workers(engine: &Engine, now: u64) -> Value {
    let workers = engine.workers.list();
    // Heartbeats report the counts: saturate rather than overflow on absurd ones.
    let sum = |f: fn(&Worker) -> u64| {
        let total = workers.iter().fold(0u64, |n, w| n.saturating_add(f(w)));
        Value::Int(i64::try_from(total).unwrap_or(i64::MAX))
    };
    let stats = Value::map(vec![
        ("total", Value::Int(workers.len() as i64)),
        ("active", Value::Int(workers.len() as i64)),
        ("totalProcessed", sum(|w| w.processed_jobs)),
        ("totalFailed", sum(|w| w.failed_jobs)),
        ("activeJobs", sum(|w| w.active_jobs)),
        ("concurrencySlots", sum(|w| u64::from(w.concurrency))),
    ]);
    data(Value::map(vec![
        (
            "workers",
            Value::Array(
                workers
                    .into_iter()
                    .map(|w| {
                        let mut listed = worker_value(w, "id");
                        if let Value::Map(fields) = &mut listed {
                            let uptime = now.saturating_sub(w.registered_at) as i64;
                            fields.push(("uptime".into(), Value::Int(uptime)));
                        }
                        listed
                    })
                    .collect(),
            ),
        ),
        ("stats", stats),
    ]))
}
