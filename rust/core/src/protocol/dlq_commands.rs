//! bunqueue's dead-letter commands on hopper's failed set: a job that failed for good
//! is hopper's dead letter (it stays until retried, removed or trimmed by retention),
//! so `Dlq` lists failed jobs, `RetryDlq` retries them, `PurgeDlq` removes them.
//! `RetryCompleted` runs completed jobs again.

use super::commands::{
    count_reply, data, engine_message, number, ok_with, opt_string, queue_name, Res,
};
use super::job_object::job_object;
use super::value::Value;
use crate::engine::Engine;
use crate::job::JobState;

/// The reference's DLQ reasons, told from hopper's failure message (hopper keeps the
/// message, not a reason code).
fn reason(error: &str) -> &'static str {
    if error.starts_with("Job stalled") {
        "stalled"
    } else if error.starts_with("Job timed out") {
        "timeout"
    } else if error == "Job discarded" {
        "explicit_fail"
    } else {
        "max_attempts_exceeded"
    }
}

fn error_of(engine: &Engine, slot: u32) -> &str {
    engine
        .job_at(slot)
        .ext()
        .and_then(|e| e.error.as_deref())
        .unwrap_or("")
}

/// The failed jobs of `queue` a `filter` keeps (`reason`, `olderThan`, `newerThan`:
/// the entry times are the failure times), newest first.
fn entries(engine: &Engine, queue: &str, req: &Value) -> Res<Vec<u32>> {
    let filter = req.field("filter");
    let want_reason = filter
        .and_then(|f| f.field("reason"))
        .and_then(Value::as_str);
    let older = filter
        .and_then(|f| f.field("olderThan"))
        .and_then(Value::as_number);
    let newer = filter
        .and_then(|f| f.field("newerThan"))
        .and_then(Value::as_number);
    Ok(engine
        .slots_in(queue, JobState::Failed)
        .into_iter()
        .filter(|&slot| {
            let at = engine.job_at(slot).finished_at as f64;
            want_reason.is_none_or(|r| reason(error_of(engine, slot)) == r)
                && older.is_none_or(|t| at < t)
                && newer.is_none_or(|t| at > t)
        })
        .collect())
}

fn entry(engine: &Engine, slot: u32) -> Value {
    let error = error_of(engine, slot);
    Value::map(vec![
        ("job", job_object(engine, slot, false)),
        (
            "enteredAt",
            Value::Int(engine.job_at(slot).finished_at as i64),
        ),
        ("reason", Value::str(reason(error))),
        ("error", Value::str(error)),
        // hopper keeps no per-attempt history.
        ("attempts", Value::Array(Vec::new())),
        (
            "retryCount",
            Value::Int(i64::from(
                engine.job_at(slot).ext().map_or(0, |e| e.dlq_retries),
            )),
        ),
        ("lastRetryAt", Value::Nil),
        // The queue's dead-letter settings: the next automatic retry, and the time
        // `maxAge` drops the job (none without one: retention alone trims it).
        ("nextRetryAt", time_or_nil(engine.dlq_retry_due(slot))),
        ("expiresAt", time_or_nil(engine.dlq_expires_at(slot))),
    ])
}

fn time_or_nil(at: Option<u64>) -> Value {
    at.map_or(Value::Nil, |t| Value::Int(t as i64))
}

fn limit(req: &Value) -> Res<usize> {
    Ok(number(req, "count", 0.0, f64::MAX)?.map_or(usize::MAX, |n| n as usize))
}

pub(super) fn dlq(engine: &Engine, req: &Value) -> Res<Value> {
    let queue = queue_name(req)?;
    let mut slots = entries(engine, queue, req)?;
    slots.truncate(limit(req)?);
    Ok(ok_with(vec![
        (
            "jobs",
            Value::Array(
                slots
                    .iter()
                    .map(|&s| job_object(engine, s, false))
                    .collect(),
            ),
        ),
        (
            "entries",
            Value::Array(slots.iter().map(|&s| entry(engine, s)).collect()),
        ),
    ]))
}

/// Retries one failed job (`jobId`), or up to `count` of those the filter keeps.
pub(super) fn retry_dlq(engine: &mut Engine, req: &Value) -> Res<Value> {
    let queue = queue_name(req)?;
    let ids: Vec<String> = match opt_string(req, "jobId")? {
        Some(id) => vec![id.to_owned()],
        None => {
            let mut slots = entries(engine, queue, req)?;
            slots.truncate(limit(req)?);
            slots
                .into_iter()
                .map(|s| engine.job_at(s).id.to_string())
                .collect()
        }
    };
    Ok(count_reply(retry_each(
        engine,
        queue,
        JobState::Failed,
        &ids,
    )))
}

/// Retries the jobs of `queue` among `ids` that are in `state`; returns how many.
fn retry_each(engine: &mut Engine, queue: &str, state: JobState, ids: &[String]) -> usize {
    ids.iter()
        .filter(|id| {
            engine.state_by_id(id) == Some(state)
                && engine
                    .slot_of(id)
                    .is_some_and(|s| engine.queue_name_of(s) == queue)
                && engine.retry(id).is_ok()
        })
        .count()
}

pub(super) fn purge_dlq(engine: &mut Engine, req: &Value) -> Res<Value> {
    let queue = queue_name(req)?;
    let n = if engine.has_queue(queue) {
        engine
            .clean(queue, JobState::Failed, 0, 0)
            .map_err(engine_message)?
            .len()
    } else {
        0
    };
    Ok(count_reply(n))
}

pub(super) fn remove_dlq_job(engine: &mut Engine, req: &Value) -> Res<Value> {
    let queue = queue_name(req)?;
    let id = super::commands::string(req, "jobId")?;
    let in_dlq = engine.state_by_id(id) == Some(JobState::Failed)
        && engine
            .slot_of(id)
            .is_some_and(|s| engine.queue_name_of(s) == queue);
    let removed = in_dlq && engine.remove(id).is_ok();
    Ok(data(Value::map(vec![("removed", Value::Bool(removed))])))
}

/// Runs completed jobs again: one (`id`), or up to `count` (all by default), newest
/// first; with `timestamp`, only those completed at or after it.
pub(super) fn retry_completed(engine: &mut Engine, req: &Value) -> Res<Value> {
    let queue = queue_name(req)?;
    let since = number(req, "timestamp", 0.0, f64::MAX)?.unwrap_or(0.0);
    let ids: Vec<String> = match opt_string(req, "id")? {
        Some(id) => vec![id.to_owned()],
        None => engine
            .slots_in(queue, JobState::Completed)
            .into_iter()
            .filter(|&s| engine.job_at(s).finished_at as f64 >= since)
            .take(limit(req)?)
            .map(|s| engine.job_at(s).id.to_string())
            .collect(),
    };
    Ok(count_reply(retry_each(
        engine,
        queue,
        JobState::Completed,
        &ids,
    )))
}

/// Counts of the queue's dead letters by reason, and their oldest and newest times.
pub(super) fn dlq_stats(engine: &Engine, req: &Value) -> Res<Value> {
    let queue = queue_name(req)?;
    let slots = engine.slots_in(queue, JobState::Failed);
    let reasons = [
        "explicit_fail",
        "max_attempts_exceeded",
        "timeout",
        "stalled",
        "ttl_expired",
        "worker_lost",
        "unknown",
    ];
    let mut by_reason = [0i64; 7];
    for &slot in &slots {
        let r = reason(error_of(engine, slot));
        by_reason[reasons.iter().position(|&x| x == r).unwrap_or(6)] += 1;
    }
    let times = slots.iter().map(|&s| engine.job_at(s).finished_at);
    let (oldest, newest) = (times.clone().min(), times.max());
    let at = |t: Option<u64>| t.map_or(Value::Nil, |t| Value::Int(t as i64));
    let pending = slots
        .iter()
        .filter(|&&s| engine.dlq_retry_due(s).is_some())
        .count();
    let stats = Value::map(vec![
        ("total", Value::Int(slots.len() as i64)),
        (
            "byReason",
            Value::Map(
                reasons
                    .iter()
                    .zip(by_reason)
                    .map(|(&r, n)| (r.into(), Value::Int(n)))
                    .collect(),
            ),
        ),
        (
            "byQueue",
            Value::Map(vec![(
                queue.to_owned().into(),
                Value::Int(slots.len() as i64),
            )]),
        ),
        // Jobs with an automatic retry ahead; expired jobs are dropped when they expire.
        ("pendingRetry", Value::Int(pending as i64)),
        ("expired", Value::Int(0)),
        ("oldestEntry", at(oldest)),
        ("newestEntry", at(newest)),
    ]);
    Ok(data(Value::map(vec![("stats", stats)])))
}
