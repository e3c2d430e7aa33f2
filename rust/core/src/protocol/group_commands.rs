//! bunqueue's group commands (`GetGroupsJobsCount`, `GetGroupJobsCount`,
//! `GetGroupActiveCount`, the group rate limit, concurrency, pause and
//! `RateLimitGroup`) on the engine's group settings. Inputs are checked as bunqueue
//! 2.9.5's `handlers/groups.js` checks them: the queue name, then `groupId`
//! (`domain/types/group.js`'s `validateGroupId`), then the numbers
//! (`validatePositiveSafeInteger`: no strings, no fractions); replies have its shapes
//! (`removed` is 1 or 0, `changed` and `paused` booleans).

use super::commands::{data, engine_message, ok, queue_name, Res};
use super::value::Value;
use crate::engine::Engine;
use crate::options::MAX_DELAY_MS;

/// JavaScript's `Number.MAX_SAFE_INTEGER`.
const MAX_SAFE: f64 = 9_007_199_254_740_991.0;

/// bunqueue's `validateGroupId(value, true)` (lengths in UTF-16 units, as JavaScript
/// counts them).
pub(super) fn group_id(req: &Value) -> Res<&str> {
    match req.field("groupId") {
        None => Err("groupId is required".into()),
        Some(Value::Str(s)) => {
            if s.is_empty() {
                Err("groupId must be a non-empty string".into())
            } else if s.encode_utf16().count() > 256 {
                Err("groupId must be at most 256 characters".into())
            } else if s.contains('\0') {
                Err("groupId must not contain NUL characters".into())
            } else {
                Ok(s)
            }
        }
        Some(_) => Err("groupId must be a string".into()),
    }
}

/// bunqueue's `validatePositiveSafeInteger(value, name)`.
pub(super) fn positive_int(v: Option<&Value>, name: &str) -> Res<u64> {
    let n = match v {
        Some(Value::Int(_) | Value::Float(_)) => v.and_then(Value::as_number),
        _ => None,
    };
    match n {
        Some(n) if n.fract() == 0.0 && n > 0.0 && n <= MAX_SAFE => Ok(n as u64),
        _ => Err(format!("{name} must be a positive safe integer")),
    }
}

/// `{queue, groupId}`, checked in bunqueue's order.
fn target(req: &Value) -> Res<(&str, &str)> {
    let queue = queue_name(req)?;
    Ok((queue, group_id(req)?))
}

fn count(n: u64) -> Value {
    data(Value::map(vec![("count", Value::Int(n as i64))]))
}

/// `{queue, maxCount?}` → `DATA{count}`: waiting and delayed jobs that have a group
/// (bunqueue ignores `maxCount`).
pub(super) fn groups_jobs_count(engine: &mut Engine, req: &Value) -> Res<Value> {
    let queue = queue_name(req)?;
    Ok(count(engine.groups_jobs_count(queue)))
}

/// `{queue, groupId}` → `DATA{count}`: the group's waiting and delayed jobs.
pub(super) fn group_jobs_count(engine: &mut Engine, req: &Value) -> Res<Value> {
    let (queue, group) = target(req)?;
    Ok(count(engine.group_jobs_count(queue, group)))
}

/// `{queue, groupId}` → `DATA{count}`: the group's active jobs.
pub(super) fn group_active_count(engine: &mut Engine, req: &Value) -> Res<Value> {
    let (queue, group) = target(req)?;
    Ok(count(engine.group_active_count(queue, group)))
}

/// `{queue, groupId, max, duration}` → `OK`.
pub(super) fn set_group_rate_limit(engine: &mut Engine, req: &Value) -> Res<Value> {
    let (queue, group) = target(req)?;
    let max = positive_int(req.field("max"), "max");
    let duration = positive_int(req.field("duration"), "duration");
    let (max, duration) = (max?, duration?);
    engine
        .set_group_rate_limit(queue, group, max, duration.min(MAX_DELAY_MS))
        .map_err(engine_message)?;
    Ok(ok())
}

/// `{queue, groupId}` → `DATA{limit: {max, duration} | null}`.
pub(super) fn group_rate_limit(engine: &mut Engine, req: &Value) -> Res<Value> {
    let (queue, group) = target(req)?;
    let limit = engine
        .group_rate_limit(queue, group)
        .map_or(Value::Nil, |r| {
            Value::map(vec![
                ("max", Value::Int(r.max as i64)),
                ("duration", Value::Int(r.duration_ms as i64)),
            ])
        });
    Ok(data(Value::map(vec![("limit", limit)])))
}

fn removed(had: bool) -> Value {
    data(Value::map(vec![("removed", Value::Int(i64::from(had)))]))
}

/// `{queue, groupId}` → `DATA{removed: 1 | 0}`.
pub(super) fn remove_group_rate_limit(engine: &mut Engine, req: &Value) -> Res<Value> {
    let (queue, group) = target(req)?;
    Ok(removed(engine.remove_group_rate_limit(queue, group)))
}

/// `{queue, groupId, maxJobs?}` → `DATA{ttl}`.
pub(super) fn group_rate_limit_ttl(engine: &mut Engine, req: &Value) -> Res<Value> {
    let (queue, group) = target(req)?;
    // bunqueue compares `count < maxJobs`: a non-number never holds.
    let max_jobs = req.field("maxJobs").and_then(Value::as_number).map(|n| {
        if n > 0.0 {
            n.ceil() as u64
        } else {
            0
        }
    });
    let ttl = engine.group_rate_limit_ttl(queue, group, max_jobs);
    Ok(data(Value::map(vec![("ttl", Value::Int(ttl))])))
}

/// `{queue, groupId, concurrency}` → `OK`.
pub(super) fn set_group_concurrency(engine: &mut Engine, req: &Value) -> Res<Value> {
    let (queue, group) = target(req)?;
    let limit = positive_int(req.field("concurrency"), "concurrency")?;
    engine
        .set_group_concurrency(queue, group, limit)
        .map_err(engine_message)?;
    Ok(ok())
}

/// `{queue, groupId}` → `DATA{concurrency: n | null}`.
pub(super) fn group_concurrency(engine: &mut Engine, req: &Value) -> Res<Value> {
    let (queue, group) = target(req)?;
    let c = engine
        .group_concurrency(queue, group)
        .map_or(Value::Nil, |c| Value::Int(c as i64));
    Ok(data(Value::map(vec![("concurrency", c)])))
}

/// `{queue, groupId}` → `DATA{removed: 1 | 0}`.
pub(super) fn remove_group_concurrency(engine: &mut Engine, req: &Value) -> Res<Value> {
    let (queue, group) = target(req)?;
    Ok(removed(engine.remove_group_concurrency(queue, group)))
}

fn changed(c: bool) -> Value {
    data(Value::map(vec![("changed", Value::Bool(c))]))
}

/// `{queue, groupId}` → `DATA{changed}`.
pub(super) fn pause_group(engine: &mut Engine, req: &Value) -> Res<Value> {
    let (queue, group) = target(req)?;
    let c = engine.pause_group(queue, group).map_err(engine_message)?;
    Ok(changed(c))
}

/// `{queue, groupId}` → `DATA{changed}`.
pub(super) fn resume_group(engine: &mut Engine, req: &Value) -> Res<Value> {
    let (queue, group) = target(req)?;
    Ok(changed(engine.resume_group(queue, group)))
}

/// `{queue, groupId}` → `DATA{paused}`.
pub(super) fn is_group_paused(engine: &mut Engine, req: &Value) -> Res<Value> {
    let (queue, group) = target(req)?;
    let p = engine.is_group_paused(queue, group);
    Ok(data(Value::map(vec![("paused", Value::Bool(p))])))
}

/// `{queue, groupId, duration}` → `OK`: the group's jobs wait `duration` ms.
pub(super) fn rate_limit_group(engine: &mut Engine, req: &Value) -> Res<Value> {
    let (queue, group) = target(req)?;
    let duration = positive_int(req.field("duration"), "duration")?;
    engine
        .hold_group(queue, group, duration.min(MAX_DELAY_MS))
        .map_err(engine_message)?;
    Ok(ok())
}

/// PULL's `group` option as bunqueue's `validateGroupPullOptions` checks it:
/// `{affinity?: string | null, concurrency?, limit?: {max, duration}}`. Checked, not
/// applied (`docs/compatibility.md`).
pub(super) fn check_pull_group(req: &Value) -> Res<()> {
    let Some(g) = req.field("group") else {
        return Ok(());
    };
    if !matches!(g, Value::Map(_)) {
        return Err("group must be an object".into());
    }
    match g.field("affinity") {
        None | Some(Value::Nil | Value::Str(_)) => {}
        Some(_) => return Err("group.affinity must be a string or null".into()),
    }
    if let Some(c) = g.field("concurrency") {
        positive_int(Some(c), "group.concurrency")?;
    }
    if let Some(l) = g.field("limit") {
        if !matches!(l, Value::Map(_)) {
            return Err("group.limit must be an object".into());
        }
        positive_int(l.field("max"), "group.limit.max")?;
        positive_int(l.field("duration"), "group.limit.duration")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::clock::ManualClock;
    use crate::engine::EngineConfig;

    fn engine() -> Engine {
        Engine::new(EngineConfig::default(), Arc::new(ManualClock::new(5_000)))
    }

    fn req(fields: Vec<(&'static str, Value)>) -> Value {
        let mut all = vec![("queue", Value::str("q")), ("groupId", Value::str("g"))];
        all.extend(fields);
        Value::map(all)
    }

    fn field(reply: Value, key: &str) -> Value {
        reply.get("data").unwrap().get(key).unwrap().clone()
    }

    #[test]
    fn group_ids_and_numbers_are_checked_as_bunqueue_checks_them() {
        let mut e = engine();
        let base = |g: Value| Value::map(vec![("queue", Value::str("q")), ("groupId", g)]);
        let q_only = Value::map(vec![("queue", Value::str("q"))]);
        assert_eq!(
            group_jobs_count(&mut e, &q_only).unwrap_err(),
            "groupId is required"
        );
        for (g, msg) in [
            (Value::Int(5), "groupId must be a string"),
            (Value::str(""), "groupId must be a non-empty string"),
            (
                Value::str("a\0b"),
                "groupId must not contain NUL characters",
            ),
            (
                Value::str("x".repeat(257)),
                "groupId must be at most 256 characters",
            ),
        ] {
            assert_eq!(is_group_paused(&mut e, &base(g)).unwrap_err(), msg);
        }
        for bad in [
            Value::Int(0),
            Value::Float(1.5),
            Value::str("2"),
            Value::Int(-1),
        ] {
            assert_eq!(
                set_group_concurrency(&mut e, &req(vec![("concurrency", bad)])).unwrap_err(),
                "concurrency must be a positive safe integer"
            );
        }
        assert_eq!(
            set_group_rate_limit(&mut e, &req(vec![("max", Value::Int(2))])).unwrap_err(),
            "duration must be a positive safe integer"
        );
        assert_eq!(
            set_group_rate_limit(&mut e, &req(vec![])).unwrap_err(),
            "max must be a positive safe integer"
        );
        assert_eq!(
            rate_limit_group(&mut e, &req(vec![])).unwrap_err(),
            "duration must be a positive safe integer"
        );
    }

    #[test]
    fn replies_have_bunqueues_shapes() {
        let mut e = engine();
        assert_eq!(
            field(group_rate_limit(&mut e, &req(vec![])).unwrap(), "limit"),
            Value::Nil
        );
        let set = req(vec![
            ("max", Value::Int(2)),
            ("duration", Value::Float(1000.0)),
        ]);
        assert_eq!(set_group_rate_limit(&mut e, &set).unwrap(), ok());
        assert_eq!(
            field(group_rate_limit(&mut e, &req(vec![])).unwrap(), "limit"),
            Value::map(vec![("max", Value::Int(2)), ("duration", Value::Int(1000))])
        );
        assert_eq!(
            field(group_rate_limit_ttl(&mut e, &req(vec![])).unwrap(), "ttl"),
            Value::Int(-2)
        );
        assert_eq!(
            field(
                remove_group_rate_limit(&mut e, &req(vec![])).unwrap(),
                "removed"
            ),
            Value::Int(1)
        );
        assert_eq!(
            field(
                remove_group_rate_limit(&mut e, &req(vec![])).unwrap(),
                "removed"
            ),
            Value::Int(0)
        );
        set_group_concurrency(&mut e, &req(vec![("concurrency", Value::Int(3))])).unwrap();
        assert_eq!(
            field(
                group_concurrency(&mut e, &req(vec![])).unwrap(),
                "concurrency"
            ),
            Value::Int(3)
        );
        assert_eq!(
            field(
                remove_group_concurrency(&mut e, &req(vec![])).unwrap(),
                "removed"
            ),
            Value::Int(1)
        );
        assert_eq!(
            field(
                group_concurrency(&mut e, &req(vec![])).unwrap(),
                "concurrency"
            ),
            Value::Nil
        );
        assert_eq!(
            field(pause_group(&mut e, &req(vec![])).unwrap(), "changed"),
            Value::Bool(true)
        );
        assert_eq!(
            field(pause_group(&mut e, &req(vec![])).unwrap(), "changed"),
            Value::Bool(false)
        );
        assert_eq!(
            field(is_group_paused(&mut e, &req(vec![])).unwrap(), "paused"),
            Value::Bool(true)
        );
        assert_eq!(
            field(resume_group(&mut e, &req(vec![])).unwrap(), "changed"),
            Value::Bool(true)
        );
        assert_eq!(
            field(resume_group(&mut e, &req(vec![])).unwrap(), "changed"),
            Value::Bool(false)
        );
        rate_limit_group(&mut e, &req(vec![("duration", Value::Int(5000))])).unwrap();
        assert_eq!(
            field(group_rate_limit_ttl(&mut e, &req(vec![])).unwrap(), "ttl"),
            Value::Int(5000)
        );
        assert_eq!(
            field(group_jobs_count(&mut e, &req(vec![])).unwrap(), "count"),
            Value::Int(0)
        );
        let q = Value::map(vec![("queue", Value::str("q"))]);
        assert_eq!(
            field(groups_jobs_count(&mut e, &q).unwrap(), "count"),
            Value::Int(0)
        );
    }

    #[test]
    fn pull_group_options_are_checked() {
        let pull = |g: Value| Value::map(vec![("queue", Value::str("q")), ("group", g)]);
        assert_eq!(
            check_pull_group(&pull(Value::Int(5))).unwrap_err(),
            "group must be an object"
        );
        assert_eq!(
            check_pull_group(&pull(Value::map(vec![("affinity", Value::Int(3))]))).unwrap_err(),
            "group.affinity must be a string or null"
        );
        assert_eq!(
            check_pull_group(&pull(Value::map(vec![("concurrency", Value::Int(0))]))).unwrap_err(),
            "group.concurrency must be a positive safe integer"
        );
        assert_eq!(
            check_pull_group(&pull(Value::map(vec![(
                "limit",
                Value::map(vec![("max", Value::Int(1))])
            )])))
            .unwrap_err(),
            "group.limit.duration must be a positive safe integer"
        );
        assert!(check_pull_group(&pull(Value::map(vec![("affinity", Value::Nil)]))).is_ok());
        assert!(check_pull_group(&Value::map(vec![("queue", Value::str("q"))])).is_ok());
    }
}
