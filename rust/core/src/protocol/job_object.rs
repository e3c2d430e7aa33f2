//! A job as bunqueue's protocol shows it: the 47 keys of the reference's job object
//! (what its SDK's worker and `Queue.getJob` read), filled from hopper's job. Keys
//! hopper has no counterpart for carry the reference's defaults.

use super::value::Value;
use crate::engine::Engine;
use crate::ids::JobId;
use crate::job::{ChildFailure, Job, JobState};
use crate::options::Removal;

/// The reference's default `stackTraceLimit`.
const STACK_TRACE_LIMIT: i64 = 10;

fn ms(v: u64) -> Value {
    Value::Int(v as i64)
}

fn opt_ms(v: Option<u64>) -> Value {
    v.map_or(Value::Nil, ms)
}

fn nonzero(v: u64) -> Value {
    if v == 0 {
        Value::Nil
    } else {
        ms(v)
    }
}

fn opt_str(v: Option<&str>) -> Value {
    v.map_or(Value::Nil, Value::str)
}

fn ids(v: &[JobId]) -> Value {
    Value::Array(v.iter().map(|id| Value::Str(id.to_string())).collect())
}

fn removal(r: Removal) -> Value {
    match r {
        Removal::Keep => Value::Bool(false),
        Removal::Remove => Value::Bool(true),
        Removal::KeepLast(n) => Value::Int(i64::from(n)),
    }
}

/// Job data is stored as JSON text; it goes out as the value it encodes.
pub fn json_value(text: &str) -> Value {
    Value::from_json(text.as_bytes()).unwrap_or(Value::Nil)
}

/// bunqueue's name for a job's state: a waiting job with a priority is `prioritized`.
pub fn state_label(engine: &Engine, slot: u32) -> &'static str {
    match engine.state_of(slot) {
        JobState::Waiting if engine.job_at(slot).priority != 0 => "prioritized",
        state => state.as_str(),
    }
}

/// The job object; `with_state` adds `state`, `returnvalue` and `failedReason` (the
/// getters' form).
pub fn job_object(engine: &Engine, slot: u32, with_state: bool) -> Value {
    job_object_as(engine, slot, with_state.then(|| state_label(engine, slot)))
}

/// The job object with `state` set to `label` (and the getters' other fields), or
/// without them for `None`: a listing by state names the state it asked for.
pub fn job_object_as(engine: &Engine, slot: u32, label: Option<&'static str>) -> Value {
    let fields = job_fields(
        engine.job_at(slot),
        engine.queue_name_of(slot),
        engine.job_name_of(slot),
    );
    labelled(engine, slot, fields, label)
}

/// The object of a job another slot of a cluster is about to create (a flow spanning
/// slots): as it will read once created, without a state.
pub fn planned_job_object(job: &Job, queue: &str, name: &str) -> Value {
    Value::map(job_fields(job, queue, name))
}

fn job_fields(job: &Job, queue: &str, name: &str) -> Vec<(&'static str, Value)> {
    let ext = job.ext();
    let custom = match &job.id {
        JobId::Custom(s) => Value::str(&**s),
        JobId::Uuid(_) => Value::Nil,
    };
    let depends = ext.map_or(&[][..], |e| &e.depends_on[..]);
    let dependents = ext.map_or(&[][..], |e| &e.dependents[..]);
    let finished = |st| (job.state == st).then_some(job.finished_at);
    let flow = job.flow();
    let policy = |p| Value::Bool(flow.is_some_and(|f| f.on_failure == p));
    let repeat = match ext.and_then(|e| e.repeat.as_ref()) {
        None => Value::Nil,
        Some(r) => Value::map(vec![
            ("every", opt_ms(r.spec.every)),
            ("pattern", opt_str(r.spec.pattern.as_deref())),
            (
                "limit",
                r.spec.limit.map_or(Value::Nil, |l| Value::Int(l.into())),
            ),
            ("count", Value::Int(r.count.into())),
        ]),
    };
    let last_heartbeat = job
        .lease
        .as_ref()
        .map_or(Value::Nil, |_| nonzero(job.started_at));
    vec![
        ("id", Value::Str(job.id.to_string())),
        ("queue", Value::str(queue)),
        ("name", Value::str(name)),
        ("data", json_value(&job.data)),
        ("priority", Value::Int(job.priority.into())),
        ("createdAt", ms(job.created_at)),
        ("runAt", ms(job.run_at)),
        ("startedAt", nonzero(job.started_at)),
        ("completedAt", opt_ms(finished(JobState::Completed))),
        ("attempts", Value::Int(job.attempts.into())),
        ("maxAttempts", Value::Int(job.max_attempts.into())),
        ("backoff", ms(u64::from(job.backoff))),
        (
            "backoffConfig",
            Value::map(vec![
                ("type", Value::str("exponential")),
                ("delay", ms(u64::from(job.backoff))),
            ]),
        ),
        ("ttl", opt_ms(ext.and_then(|e| e.ttl))),
        ("timeout", opt_ms(ext.and_then(|e| e.timeout))),
        ("uniqueKey", opt_str(job.unique_key())),
        ("customId", custom),
        ("dependsOn", ids(depends)),
        (
            "parentId",
            flow.and_then(|f| f.parent.as_ref())
                .or(dependents.first())
                .map_or(Value::Nil, |p| Value::Str(p.to_string())),
        ),
        (
            "childrenIds",
            ids(flow.map_or(&[][..], |f| &f.children[..])),
        ),
        (
            "childrenCompleted",
            Value::Int(flow.map_or(0, |f| f.values.len() as i64)),
        ),
        (
            "tags",
            Value::Array(
                ext.map_or(&[][..], |e| &e.tags[..])
                    .iter()
                    .map(|t| Value::str(&**t))
                    .collect(),
            ),
        ),
        ("groupId", opt_str(job.group_id())),
        ("progress", Value::Int(job.progress.into())),
        ("progressMessage", Value::Nil),
        ("stacktrace", Value::Nil),
        (
            "removeOnComplete",
            removal(ext.map_or(Removal::Keep, |e| e.remove_on_complete)),
        ),
        (
            "removeOnFail",
            removal(ext.map_or(Removal::Keep, |e| e.remove_on_fail)),
        ),
        ("repeat", repeat),
        ("lastHeartbeat", last_heartbeat),
        ("stallTimeout", Value::Nil),
        ("stallCount", Value::Int(job.stalls.into())),
        ("stackTraceLimit", Value::Int(STACK_TRACE_LIMIT)),
        ("keepLogs", Value::Nil),
        ("sizeLimit", Value::Nil),
        ("failParentOnFailure", policy(ChildFailure::FailParent)),
        ("removeDependencyOnFailure", policy(ChildFailure::Remove)),
        ("continueParentOnFailure", policy(ChildFailure::Continue)),
        ("ignoreDependencyOnFailure", policy(ChildFailure::Ignore)),
        ("deduplicationTtl", Value::Nil),
        ("deduplicationExtend", Value::Bool(false)),
        ("deduplicationReplace", Value::Bool(false)),
        ("debounceId", Value::Nil),
        ("debounceTtl", Value::Nil),
        ("durable", Value::Bool(job.durable())),
        ("lifo", Value::Bool(job.lifo())),
        ("timeline", Value::Array(Vec::new())),
    ]
}

/// The fields with `state` set to `label` and the getters' other fields.
fn labelled(
    engine: &Engine,
    slot: u32,
    mut fields: Vec<(&'static str, Value)>,
    label: Option<&'static str>,
) -> Value {
    if let Some(label) = label {
        let ext = engine.job_at(slot).ext();
        fields.push(("state", Value::str(label)));
        fields.push((
            "returnvalue",
            ext.and_then(|e| e.result.as_deref())
                .map_or(Value::Nil, json_value),
        ));
        fields.push((
            "failedReason",
            opt_str(ext.and_then(|e| e.error.as_deref())),
        ));
    }
    Value::map(fields)
}
