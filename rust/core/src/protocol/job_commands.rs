//! bunqueue's commands on one job (tier 2 of its command table, and the job getters of
//! tier 3): cancel, edit data or priority, promote, delay, discard, renew locks, and
//! find a job by custom id. Errors use the reference's wording, which names what the
//! SDK tests for ("not found").

use super::commands::{
    engine_message, json_text, number, ok, ok_with, opt_string, state_name, string, string_list,
    Res,
};
use super::job_object::job_object;
use super::value::Value;
use crate::engine::Engine;
use crate::error::ErrorKind;
use crate::job::JobState;
use crate::options::MAX_DELAY_MS;

fn token(req: &Value) -> Res<Option<&str>> {
    Ok(opt_string(req, "token")?.filter(|t| !t.is_empty()))
}

fn delay(req: &Value) -> Res<u64> {
    Ok(number(req, "delay", 0.0, MAX_DELAY_MS as f64)?.ok_or("delay must be a number")? as u64)
}

/// Removes a job that has not started (the reference refuses an active one).
pub(super) fn cancel(engine: &mut Engine, req: &Value) -> Res<Value> {
    let id = string(req, "id")?;
    engine
        .cancel_pending(id)
        .map_err(|_| "Job not found or cannot be cancelled".to_string())?;
    Ok(ok())
}

pub(super) fn update(engine: &mut Engine, req: &Value) -> Res<Value> {
    let id = string(req, "id")?;
    let data = json_text(req.get("data"))?.unwrap_or_else(|| "null".into());
    engine.update_data(id, data).map_err(|e| match e.kind {
        ErrorKind::InvalidInput => e.message,
        _ => "Job not found or cannot be updated".to_string(),
    })?;
    Ok(ok())
}

/// A new priority for a job that waits (ready or delayed).
pub(super) fn change_priority(engine: &mut Engine, req: &Value) -> Res<Value> {
    const REFUSED: &str = "Job not found or not in queue";
    let id = string(req, "id")?;
    let priority =
        number(req, "priority", -1_000_000.0, 1_000_000.0)?.ok_or("priority must be a number")?;
    let pending = engine
        .state_by_id(id)
        .is_some_and(|s| matches!(s, JobState::Waiting | JobState::Delayed));
    if !pending {
        return Err(REFUSED.into());
    }
    engine
        .update(id, None, Some(priority as i32))
        .map_err(|_| REFUSED.to_string())?;
    Ok(ok())
}

pub(super) fn promote(engine: &mut Engine, req: &Value) -> Res<Value> {
    let id = string(req, "id")?;
    engine
        .promote(id)
        .map_err(|_| "Job not found or not delayed".to_string())?;
    Ok(ok())
}

pub(super) fn change_delay(engine: &mut Engine, req: &Value) -> Res<Value> {
    let id = string(req, "id")?;
    let delay = delay(req)?;
    engine
        .change_delay(id, token(req)?, delay)
        .map_err(|_| "Job not found or cannot change delay".to_string())?;
    Ok(ok())
}

/// The reference's answer for a move that needs an active job.
fn not_active(engine: &Engine, id: &str) -> String {
    match state_name(engine, id) {
        "unknown" => "Job not found".into(),
        state => format!("Job is not active (current state: {state})"),
    }
}

/// The reference's MoveToDelayed is its ChangeDelay: an active job is put off, a
/// waiting or delayed one gets the new time.
pub(super) fn move_to_delayed(engine: &mut Engine, req: &Value) -> Res<Value> {
    let id = string(req, "id")?;
    let delay = delay(req)?;
    match engine.change_delay(id, token(req)?, delay) {
        Ok(()) => Ok(ok()),
        Err(e) if engine.state_by_id(id) == Some(JobState::Active) => Err(engine_message(e)),
        Err(_) => Err(not_active(engine, id)),
    }
}

pub(super) fn discard(engine: &mut Engine, req: &Value) -> Res<Value> {
    let id = string(req, "id")?;
    match engine.discard_job(id, token(req)?) {
        Ok(()) => Ok(ok()),
        Err(e) if engine.state_by_id(id) == Some(JobState::Active) => Err(engine_message(e)),
        Err(_) => Err("Job not found".into()),
    }
}

fn duration(req: &Value) -> Res<Option<u64>> {
    Ok(number(req, "duration", 1.0, MAX_DELAY_MS as f64)?.map(|v| v as u64))
}

pub(super) fn extend_lock(engine: &mut Engine, req: &Value) -> Res<Value> {
    let id = string(req, "id")?;
    engine
        .extend_lock(id, token(req)?, duration(req)?)
        .map_err(|_| "Lock not found or invalid token".to_string())?;
    Ok(ok())
}

/// The i-th item of an optional per-id list (absent past its end, as in the reference).
fn item(req: &Value, field: &str, i: usize) -> Option<Value> {
    match req.field(field) {
        Some(Value::Array(items)) => items.get(i).cloned(),
        _ => None,
    }
}

/// Renews several locks; answers how many were renewed (a lost one is not an error). A
/// missing token or duration is no token or the default.
pub(super) fn extend_locks(engine: &mut Engine, req: &Value) -> Res<Value> {
    let ids = string_list(req, "ids")?;
    let renewed = (0..ids.len())
        .filter(|&i| {
            let token = item(req, "tokens", i);
            let token = token
                .as_ref()
                .and_then(Value::as_str)
                .filter(|t| !t.is_empty());
            let duration = item(req, "durations", i)
                .and_then(|v| v.as_number())
                .filter(|n| *n >= 1.0)
                .map(|n| n as u64);
            engine.extend_lock(&ids[i], token, duration).is_ok()
        })
        .count();
    Ok(ok_with(vec![("count", Value::Int(renewed as i64))]))
}

pub(super) fn get_job_by_custom_id(engine: &Engine, req: &Value) -> Res<Value> {
    let id = string(req, "customId")?;
    let slot = engine.slot_of(id).ok_or("Job not found")?;
    Ok(ok_with(vec![("job", job_object(engine, slot, true))]))
}

/// The progress of an active job (the reference keeps it only while the job runs).
pub(super) fn get_progress(engine: &Engine, req: &Value) -> Res<Value> {
    let id = string(req, "id")?;
    match engine.slot_of(id) {
        // The job keeps its progress; its message goes out with the event only.
        Some(slot) if engine.state_of(slot) == JobState::Active => Ok(ok_with(vec![
            ("progress", Value::Int(engine.job_at(slot).progress.into())),
            ("message", Value::Nil),
        ])),
        _ => Err(not_active(engine, id)),
    }
}

/// Frees the dedup key the job holds (an unknown job holds none).
pub(super) fn remove_job_dedup_key(engine: &mut Engine, req: &Value) -> Res<Value> {
    let id = string(req, "id")?;
    let removed = engine.release_job_dedup_key(id).unwrap_or(false);
    Ok(super::commands::data(Value::map(vec![(
        "removed",
        Value::Bool(removed),
    )])))
}
