//! bunqueue's queue-level commands (tier 2 of its command table): pause and resume,
//! drain, obliterate, clean, the queue list and counts, listing jobs by state, and
//! promoting delayed jobs. An unknown queue is an empty one, as in the reference.

use super::commands::{count_reply, engine_message, number, ok, ok_with, queue_name, Res};
use super::job_object::{job_object_as, state_label};
use super::value::Value;
use crate::engine::Engine;
use crate::job::JobState;

/// The reference's default page of `GetJobs`, and of `Clean`'s limit.
const DEFAULT_PAGE: f64 = 100.0;
const DEFAULT_CLEAN_LIMIT: f64 = 1000.0;
/// Most jobs one `GetJobs` returns.
const MAX_PAGE: f64 = 10_000.0;

pub(super) fn pause(engine: &mut Engine, req: &Value) -> Res<Value> {
    engine
        .pause(queue_name(req)?, None)
        .map_err(engine_message)?;
    Ok(ok())
}

pub(super) fn resume(engine: &mut Engine, req: &Value) -> Res<Value> {
    engine
        .resume(queue_name(req)?, None)
        .map_err(engine_message)?;
    Ok(ok())
}

pub(super) fn is_paused(engine: &Engine, req: &Value) -> Res<Value> {
    let paused = engine.is_paused(queue_name(req)?);
    Ok(ok_with(vec![("paused", Value::Bool(paused))]))
}

pub(super) fn drain(engine: &mut Engine, req: &Value) -> Res<Value> {
    let queue = queue_name(req)?;
    let n = if engine.has_queue(queue) {
        engine.drain(queue).map_err(engine_message)?
    } else {
        0
    };
    Ok(count_reply(n))
}

/// Deletes the queue and every job in it, active ones included (the reference's
/// obliterate does not wait for workers; their late acks find no job).
pub(super) fn obliterate(engine: &mut Engine, req: &Value) -> Res<Value> {
    let queue = queue_name(req)?;
    if engine.has_queue(queue) {
        engine.obliterate(queue, true).map_err(engine_message)?;
    }
    Ok(ok())
}

pub(super) fn list_queues(engine: &Engine) -> Value {
    let names = engine.queue_names().into_iter().map(Value::Str).collect();
    ok_with(vec![("queues", Value::Array(names))])
}

/// Jobs not yet started and not waiting for children: the reference's queue size.
pub(super) fn count_jobs(engine: &Engine, req: &Value) -> Res<Value> {
    let queue = queue_name(req)?;
    let counts = engine.counts(queue);
    let of = |state: JobState| counts[JobState::ALL.iter().position(|&s| s == state).unwrap_or(0)];
    Ok(count_reply(of(JobState::Waiting) + of(JobState::Delayed)))
}

/// Waiting and delayed jobs by priority, keyed by the priority's decimal text in
/// ascending order (how a JavaScript object orders integer keys).
pub(super) fn counts_per_priority(engine: &Engine, req: &Value) -> Res<Value> {
    let queue = queue_name(req)?;
    let mut by_priority = std::collections::BTreeMap::<i32, i64>::new();
    for state in [JobState::Waiting, JobState::Delayed] {
        for slot in engine.slots_in(queue, state) {
            *by_priority.entry(engine.job_at(slot).priority).or_default() += 1;
        }
    }
    let counts = by_priority
        .into_iter()
        .map(|(p, n)| (p.to_string().into(), Value::Int(n)))
        .collect();
    Ok(ok_with(vec![
        ("queue", Value::str(queue)),
        ("counts", Value::Map(counts)),
    ]))
}

/// The jobs of `queue` a bunqueue state name selects. While the queue is paused its
/// ready jobs are `paused`, not `waiting` or `prioritized`.
fn select(engine: &Engine, queue: &str, label: &str) -> Vec<u32> {
    let paused = engine.is_paused(queue);
    let ready = |prioritized: bool| -> Vec<u32> {
        if paused {
            return Vec::new();
        }
        engine
            .slots_in(queue, JobState::Waiting)
            .into_iter()
            .filter(|&s| (engine.job_at(s).priority != 0) == prioritized)
            .collect()
    };
    match label {
        "waiting" => ready(false),
        "prioritized" => ready(true),
        "paused" if paused => engine.slots_in(queue, JobState::Waiting),
        "delayed" => engine.slots_in(queue, JobState::Delayed),
        "active" => engine.slots_in(queue, JobState::Active),
        "completed" => engine.slots_in(queue, JobState::Completed),
        "failed" => engine.slots_in(queue, JobState::Failed),
        "waiting-children" => engine.slots_in(queue, JobState::WaitingChildren),
        _ => Vec::new(),
    }
}

const ALL_LABELS: [&str; 8] = [
    "waiting",
    "prioritized",
    "paused",
    "delayed",
    "active",
    "completed",
    "failed",
    "waiting-children",
];

/// A page of the jobs in the given states (all when none), ordered by creation time
/// (`asc`, the default, oldest first). Each job carries its state. Costs a sort of the
/// selected jobs per call.
pub(super) fn get_jobs(engine: &Engine, req: &Value) -> Res<Value> {
    let queue = queue_name(req)?;
    let labels: Vec<&str> = match req.field("state") {
        None => ALL_LABELS.to_vec(),
        Some(Value::Str(s)) => vec![s.as_str()],
        Some(Value::Array(items)) if items.is_empty() => ALL_LABELS.to_vec(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .ok_or("state must be a string or an array of strings")
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err("state must be a string or an array of strings".into()),
    };
    let limit = number(req, "limit", 0.0, MAX_PAGE)?.unwrap_or(DEFAULT_PAGE) as usize;
    let offset = number(req, "offset", 0.0, f64::MAX)?.unwrap_or(0.0) as usize;
    let asc = req.field("asc").and_then(Value::as_bool).unwrap_or(true);
    let mut seen = Vec::with_capacity(labels.len());
    let mut picked: Vec<(u64, u32, &'static str)> = Vec::new();
    for label in labels {
        if seen.contains(&label) {
            continue; // a state asked for twice lists its jobs once
        }
        seen.push(label);
        for slot in select(engine, queue, label) {
            let shown = if label == "paused" {
                "paused"
            } else {
                state_label(engine, slot)
            };
            picked.push((engine.job_at(slot).created_at, slot, shown));
        }
    }
    picked.sort_unstable_by_key(|&(created, slot, _)| (created, engine.job_at(slot).seq));
    if !asc {
        picked.reverse();
    }
    let jobs = picked
        .into_iter()
        .skip(offset)
        .take(limit)
        .map(|(_, slot, label)| job_object_as(engine, slot, Some(label)))
        .collect();
    Ok(ok_with(vec![("jobs", Value::Array(jobs))]))
}

pub(super) fn promote_jobs(engine: &mut Engine, req: &Value) -> Res<Value> {
    let queue = queue_name(req)?;
    let limit = number(req, "count", 0.0, f64::MAX)?.map_or(usize::MAX, |n| n as usize);
    let n = if engine.has_queue(queue) {
        engine.promote_first(queue, limit).map_err(engine_message)?
    } else {
        0
    };
    Ok(count_reply(n))
}

/// Removes jobs older than `grace` ms in one state: `completed`, `failed`, or (no
/// state, or any not-started state) waiting and delayed jobs; at most `limit` (1000 by
/// default). Active jobs are never cleaned.
pub(super) fn clean(engine: &mut Engine, req: &Value) -> Res<Value> {
    let queue = queue_name(req)?;
    let grace = number(req, "grace", 0.0, f64::MAX)?.unwrap_or(0.0) as u64;
    let limit = number(req, "limit", 0.0, f64::MAX)?.unwrap_or(DEFAULT_CLEAN_LIMIT) as usize;
    let state = super::commands::opt_string(req, "state")?;
    let states: &[JobState] = match state {
        None | Some("waiting" | "wait" | "delayed" | "prioritized" | "paused") => {
            &[JobState::Waiting, JobState::Delayed]
        }
        Some("completed") => &[JobState::Completed],
        Some("failed") => &[JobState::Failed],
        Some(_) => &[],
    };
    let mut ids = Vec::new();
    if engine.has_queue(queue) {
        for &s in states {
            let left = limit - ids.len();
            if left == 0 {
                break;
            }
            ids.extend(
                engine
                    .clean(queue, s, grace, left)
                    .map_err(engine_message)?,
            );
        }
    }
    Ok(ok_with(vec![
        ("count", Value::Int(ids.len() as i64)),
        (
            "ids",
            Value::Array(ids.into_iter().map(Value::Str).collect()),
        ),
    ]))
}

pub(super) fn dedup_job_id(engine: &Engine, req: &Value) -> Res<Value> {
    let queue = queue_name(req)?;
    let key = super::commands::string(req, "deduplicationId")?;
    let holder = engine
        .dedup_holder(queue, key)
        .map_or(Value::Nil, Value::Str);
    Ok(super::commands::data(Value::map(vec![("jobId", holder)])))
}

pub(super) fn remove_dedup_key(engine: &mut Engine, req: &Value) -> Res<Value> {
    let queue = queue_name(req)?;
    let key = super::commands::string(req, "deduplicationId")?;
    let n = i64::from(engine.release_dedup_key(queue, key));
    Ok(super::commands::data(Value::map(vec![(
        "count",
        Value::Int(n),
    )])))
}
