//! bunqueue's queue-limit commands (`RateLimit`, `RateLimitClear`, `SetConcurrency`,
//! `ClearConcurrency`, `GetQueueLimits`) on the engine's limits. Inputs are read as
//! bunqueue 2.9.5's `handlers/advanced/queue.js` reads them (`toFiniteNumber`: a number
//! or a numeric string; `duration` 1000 when absent or not positive, `ttl` none when not
//! positive), and `GetQueueLimits` answers `getQueueLimitStatus`'s shape
//! (`application/queue-manager/limits.js`).

use super::commands::{data, engine_message, number, ok, queue_name, Res};
use super::value::Value;
use crate::engine::Engine;
use crate::options::MAX_DELAY_MS;

/// The largest limit kept: JavaScript's `Number.MAX_SAFE_INTEGER` (a bigger one would
/// come back from `GetQueueLimits` as a different number).
const SAFE: f64 = crate::schedulers::MAX_SAFE_INTEGER as f64;

/// bunqueue's `toFiniteNumber`: a number, or a string `Number()` reads as one.
fn finite(req: &Value, field: &str) -> Option<f64> {
    let n = match req.field(field)? {
        Value::Str(s) if s.trim().is_empty() => 0.0,
        Value::Str(s) => s.trim().parse::<f64>().ok()?,
        v => v.as_number()?,
    };
    n.is_finite().then_some(n)
}

fn limit(req: &Value) -> Res<f64> {
    finite(req, "limit").ok_or_else(|| "limit must be a finite number".to_owned())
}

/// A positive number of ms (whole, at most the longest delay), else `None`.
fn positive_ms(req: &Value, field: &str) -> Option<u64> {
    finite(req, field)
        .filter(|&n| n > 0.0)
        .map(|n| (n.ceil() as u64).min(MAX_DELAY_MS))
}

/// `{queue, limit, duration?, ttl?}` → `OK`: at most `limit` pulls per `duration` ms.
pub(super) fn rate_limit(engine: &mut Engine, req: &Value) -> Res<Value> {
    let queue = queue_name(req)?;
    // bunqueue's bucket admits while it holds a whole token: a fraction rounds down.
    let max = limit(req)?.clamp(0.0, SAFE).floor() as u64;
    let duration = positive_ms(req, "duration").unwrap_or(1000);
    let ttl = positive_ms(req, "ttl");
    engine
        .set_rate_limit(queue, max, duration, ttl)
        .map_err(engine_message)?;
    Ok(ok())
}

/// `{queue}` → `OK`.
pub(super) fn rate_limit_clear(engine: &mut Engine, req: &Value) -> Res<Value> {
    let queue = queue_name(req)?;
    engine.clear_rate_limit(queue).map_err(engine_message)?;
    Ok(ok())
}

/// `{queue, limit}` → `OK`: at most `limit` jobs active at once.
pub(super) fn set_concurrency(engine: &mut Engine, req: &Value) -> Res<Value> {
    let queue = queue_name(req)?;
    // bunqueue admits while `active < limit`: a fraction rounds up.
    let limit = limit(req)?.clamp(0.0, SAFE).ceil() as u64;
    engine
        .set_concurrency(queue, limit)
        .map_err(engine_message)?;
    Ok(ok())
}

/// `{queue}` → `OK`.
pub(super) fn clear_concurrency(engine: &mut Engine, req: &Value) -> Res<Value> {
    let queue = queue_name(req)?;
    engine.clear_concurrency(queue).map_err(engine_message)?;
    Ok(ok())
}

/// `{queue, maxJobs?}` → `DATA{limits:{rateLimit:{max,duration}|null, rateLimitTtl,
/// concurrencyLimit|null, maxed}}`.
pub(super) fn get_queue_limits(engine: &mut Engine, req: &Value) -> Res<Value> {
    let queue = queue_name(req)?;
    let max_jobs = number(req, "maxJobs", f64::MIN, f64::MAX)?.map(|n| n.max(0.0).ceil() as u64);
    let l = engine.queue_limits(queue, max_jobs);
    let rate = l.rate_limit.map_or(Value::Nil, |r| {
        Value::map(vec![
            ("max", Value::Int(r.max as i64)),
            ("duration", Value::Int(r.duration_ms as i64)),
        ])
    });
    let concurrency = l
        .concurrency_limit
        .map_or(Value::Nil, |c| Value::Int(c as i64));
    Ok(data(Value::map(vec![(
        "limits",
        Value::map(vec![
            ("rateLimit", rate),
            ("rateLimitTtl", Value::Int(l.rate_limit_ttl)),
            ("concurrencyLimit", concurrency),
            ("maxed", Value::Bool(l.maxed)),
        ]),
    )])))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::clock::ManualClock;
    use crate::engine::EngineConfig;
    use crate::options::PushOptions;

    fn engine() -> Engine {
        let mut e = Engine::new(EngineConfig::default(), Arc::new(ManualClock::new(5_000)));
        for i in 0..3 {
            let o = PushOptions::from_json(format!(r#"{{"data":{i}}}"#).as_bytes(), 1 << 20);
            e.push("q", o.unwrap()).unwrap();
        }
        e
    }

    fn req(fields: Vec<(&'static str, Value)>) -> Value {
        Value::map(fields)
    }

    fn limits(e: &mut Engine) -> Value {
        let reply = get_queue_limits(e, &req(vec![("queue", Value::str("q"))])).unwrap();
        reply.get("data").unwrap().get("limits").unwrap().clone()
    }

    #[test]
    fn no_limits_read_as_bunqueue_reports_them() {
        let mut e = engine();
        assert_eq!(
            limits(&mut e),
            Value::map(vec![
                ("rateLimit", Value::Nil),
                ("rateLimitTtl", Value::Int(-2)),
                ("concurrencyLimit", Value::Nil),
                ("maxed", Value::Bool(false)),
            ])
        );
    }

    #[test]
    fn set_read_and_clear() {
        let mut e = engine();
        let q = ("queue", Value::str("q"));
        let reply = rate_limit(&mut e, &req(vec![q.clone(), ("limit", Value::Int(1))])).unwrap();
        assert_eq!(reply, ok());
        set_concurrency(&mut e, &req(vec![q.clone(), ("limit", Value::str("1"))])).unwrap();
        assert!(e.pull_job("q", 0).unwrap().is_some());
        assert!(e.pull_job("q", 0).unwrap().is_none());
        assert_eq!(
            limits(&mut e),
            Value::map(vec![
                (
                    "rateLimit",
                    Value::map(vec![("max", Value::Int(1)), ("duration", Value::Int(1000)),])
                ),
                ("rateLimitTtl", Value::Int(1000)),
                ("concurrencyLimit", Value::Int(1)),
                ("maxed", Value::Bool(true)),
            ])
        );
        assert_eq!(
            rate_limit_clear(&mut e, &req(vec![q.clone()])).unwrap(),
            ok()
        );
        assert_eq!(
            clear_concurrency(&mut e, &req(vec![q.clone()])).unwrap(),
            ok()
        );
        assert_eq!(limits(&mut e).get("rateLimitTtl"), Some(&Value::Int(-2)));
        assert!(e.pull_job("q", 0).unwrap().is_some());
    }

    #[test]
    fn durations_and_ttls_read_as_bunqueue_reads_them() {
        let mut e = engine();
        let q = ("queue", Value::str("q"));
        rate_limit(
            &mut e,
            &req(vec![
                q.clone(),
                ("limit", Value::Float(2.7)),
                ("duration", Value::Int(-5)),
                ("ttl", Value::Int(250)),
            ]),
        )
        .unwrap();
        let l = limits(&mut e);
        assert_eq!(
            l.get("rateLimit"),
            Some(&Value::map(vec![
                ("max", Value::Int(2)),
                ("duration", Value::Int(1000)),
            ]))
        );
        assert_eq!(l.get("rateLimitTtl"), Some(&Value::Int(250)));
    }

    #[test]
    fn a_missing_limit_is_refused_with_bunqueues_message() {
        let mut e = engine();
        let q = ("queue", Value::str("q"));
        for bad in [
            vec![q.clone()],
            vec![q.clone(), ("limit", Value::str("many"))],
        ] {
            assert_eq!(
                rate_limit(&mut e, &req(bad.clone())).unwrap_err(),
                "limit must be a finite number"
            );
            assert_eq!(
                set_concurrency(&mut e, &req(bad)).unwrap_err(),
                "limit must be a finite number"
            );
        }
    }
}
