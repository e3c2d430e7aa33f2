//! bunqueue's job-scheduler commands (`Cron`, `CronDelete`, `CronList`, `CronGet`) on the
//! engine's schedulers. Inputs are read as bunqueue 2.9.5's `handlers/cron.js` reads them
//! (the job name from `jobName`, else a string `data.name`, which then leaves the data),
//! and a scheduler is answered as its `cronData`: `{name, jobName, queue, schedule,
//! repeatEvery, nextRun, executions, maxLimit, timezone, priority}`, nulls included.

use super::commands::{check_serialisable, engine_message, ok, ok_with, opt_string, string, Res};
use super::value::Value;
use crate::engine::Engine;
use crate::schedulers::{SchedulerInfo, SchedulerSpec};

/// The reference's `cronData`.
fn cron_object(s: &SchedulerInfo) -> Value {
    let opt_str = |v: &Option<Box<str>>| v.as_deref().map_or(Value::Nil, Value::str);
    let opt_int = |v: Option<u64>| v.map_or(Value::Nil, |n| Value::Int(n as i64));
    let next_run = if s.next_run == u64::MAX {
        Value::Int(0)
    } else {
        Value::Int(s.next_run as i64)
    };
    Value::map(vec![
        ("name", Value::str(&*s.name)),
        ("jobName", Value::str(&*s.job_name)),
        ("queue", Value::str(&*s.queue)),
        ("schedule", opt_str(&s.schedule)),
        ("repeatEvery", opt_int(s.repeat_every)),
        ("nextRun", next_run),
        ("executions", Value::Int(s.executions as i64)),
        ("maxLimit", opt_int(s.max_limit)),
        ("timezone", opt_str(&s.timezone)),
        ("priority", Value::Int(i64::from(s.priority))),
    ])
}

/// JavaScript truthiness of an optional flag (`None` when absent, null or undefined).
fn flag(req: &Value, field: &str) -> Option<bool> {
    req.field(field).map(|v| match v {
        Value::Bool(b) => *b,
        Value::Int(i) => *i != 0,
        Value::Float(f) => *f != 0.0 && !f.is_nan(),
        Value::Str(s) => !s.is_empty(),
        _ => true,
    })
}

/// `repeatEvery`: absent, or a whole number of ms (else the reference's message).
fn repeat_every(req: &Value) -> Res<Option<u64>> {
    let Some(v) = req.field("repeatEvery") else {
        return Ok(None);
    };
    match v.as_number() {
        Some(n)
            if n.fract() == 0.0 && n >= 1.0 && n <= crate::schedulers::MAX_SAFE_INTEGER as f64 =>
        {
            Ok(Some(n as u64))
        }
        _ => Err("Cron repeatEvery must be a positive safe integer number of milliseconds".into()),
    }
}

/// `jobOptions` as push-body JSON, keeping the options hopper's jobs have: `maxAttempts`,
/// `backoff` (a number, or `{delay}`), `timeout`, `delay`, `removeOnComplete`,
/// `removeOnFail`. (`stallTimeout` has no per-job equivalent here and is ignored.)
fn job_options(req: &Value) -> Res<Option<Box<str>>> {
    let Some(opts) = req.field("jobOptions") else {
        return Ok(None);
    };
    let Value::Map(entries) = opts else {
        return Err("jobOptions must be an object".into());
    };
    let mut json = String::from("{");
    for (key, value) in entries {
        let key: &str = key;
        const KEPT: [&str; 6] = [
            "maxAttempts",
            "backoff",
            "timeout",
            "delay",
            "removeOnComplete",
            "removeOnFail",
        ];
        if !KEPT.contains(&key) || matches!(value, Value::Nil | Value::Undefined) {
            continue;
        }
        if json.len() > 1 {
            json.push(',');
        }
        crate::json_render::push_str(&mut json, key);
        json.push(':');
        match (key, value) {
            ("backoff", Value::Map(_)) => match value.get("delay").and_then(Value::as_number) {
                Some(d) => Value::Float(d).write_json(&mut json),
                None => return Err("backoff.delay must be a number".into()),
            },
            (_, v) => v.write_json(&mut json),
        }
    }
    json.push('}');
    Ok(Some(json.into()))
}

/// The request as a scheduler definition.
fn spec(req: &Value) -> Res<SchedulerSpec> {
    let name = string(req, "name")?.to_owned();
    let queue = super::commands::queue_name(req)?.to_owned();
    let mut job_name = opt_string(req, "jobName")?.map(str::to_owned);
    let data = match req.field("data") {
        None => "null".to_owned(),
        Some(Value::Map(fields)) if job_name.is_none() => {
            check_serialisable(req.field("data").expect("present"))?;
            // The reference's legacy envelope: a string `data.name` names the jobs.
            let mut fields = fields.clone();
            if let Some(i) = fields
                .iter()
                .position(|(k, v)| k == "name" && v.as_str().is_some())
            {
                job_name = fields.remove(i).1.as_str().map(str::to_owned);
            }
            Value::Map(fields).to_json()
        }
        Some(v) => {
            check_serialisable(v)?;
            v.to_json()
        }
    };
    let priority = match req.field("priority") {
        None => 0,
        Some(v) => {
            let n = v
                .as_number()
                .filter(|n| n.is_finite())
                .ok_or("priority must be a number")?;
            n.trunc().clamp(f64::from(i32::MIN), f64::from(i32::MAX)) as i32
        }
    };
    let max_limit = match req.field("maxLimit") {
        None => None,
        Some(v) => {
            let n = v.as_number().ok_or("maxLimit must be a number")?;
            (n.is_finite() && n > 0.0)
                .then(|| (n.ceil() as u64).min(crate::schedulers::MAX_SAFE_INTEGER))
        }
    };
    Ok(SchedulerSpec {
        name,
        queue,
        job_name,
        data: data.into(),
        schedule: opt_string(req, "schedule")?.map(str::to_owned),
        repeat_every: repeat_every(req)?,
        timezone: opt_string(req, "timezone")?.map(str::to_owned),
        priority,
        max_limit,
        unique_key: opt_string(req, "uniqueKey")?.map(str::to_owned),
        skip_missed_on_restart: flag(req, "skipMissedOnRestart"),
        immediately: flag(req, "immediately").unwrap_or(false),
        skip_if_no_worker: flag(req, "skipIfNoWorker").unwrap_or(false),
        prevent_overlap: flag(req, "preventOverlap"),
        job_options: job_options(req)?,
    })
}

/// `{name, queue, data, schedule | repeatEvery, …}` → `{ok, cron}` (create or replace).
pub(super) fn cron(engine: &mut Engine, req: &Value) -> Res<Value> {
    let spec = spec(req)?;
    let info = engine.upsert_scheduler(spec).map_err(engine_message)?;
    Ok(ok_with(vec![("cron", cron_object(&info))]))
}

/// `{name}` → `OK`, or `Cron job not found`.
pub(super) fn cron_delete(engine: &mut Engine, req: &Value) -> Res<Value> {
    let name = string(req, "name")?;
    match engine.remove_scheduler(name) {
        Ok(true) => Ok(ok()),
        Ok(false) => Err("Cron job not found".into()),
        Err(e) => Err(engine_message(e)),
    }
}

/// `{}` → `{ok, crons: [cron…]}`.
pub(super) fn cron_list(engine: &mut Engine) -> Value {
    let crons = engine.schedulers().iter().map(cron_object).collect();
    ok_with(vec![("crons", Value::Array(crons))])
}

/// `{name}` → `{ok, cron}`, or `Cron job not found`.
pub(super) fn cron_get(engine: &mut Engine, req: &Value) -> Res<Value> {
    let name = string(req, "name")?;
    engine
        .scheduler(name)
        .map(|s| ok_with(vec![("cron", cron_object(&s))]))
        .ok_or_else(|| "Cron job not found".into())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::clock::ManualClock;
    use crate::engine::EngineConfig;
    use crate::job::JobState;

    const T0: u64 = 1_704_067_200_000;

    fn engine() -> (Engine, ManualClock) {
        let clock = ManualClock::new(T0);
        let e = Engine::new(EngineConfig::default(), Arc::new(clock.clone()));
        (e, clock)
    }

    fn req(json: &str) -> Value {
        Value::from_json(json.as_bytes()).expect("test JSON")
    }

    #[test]
    fn cron_answers_the_reference_shape() {
        let (mut e, _) = engine();
        let r = cron(
            &mut e,
            &req(r#"{"name":"a","queue":"q","data":{"x":1},"schedule":"*/5 * * * *"}"#),
        )
        .unwrap();
        assert_eq!(
            r.to_json(),
            format!(
                r#"{{"ok":true,"cron":{{"name":"a","jobName":"default","queue":"q","schedule":"*/5 * * * *","repeatEvery":null,"nextRun":{},"executions":0,"maxLimit":null,"timezone":null,"priority":0}}}}"#,
                T0 + 300_000
            )
        );
        // A legacy `data.name` names the jobs and leaves the data; immediately fires now
        // but answers the scheduler as stored before the fire.
        let r = cron(
            &mut e,
            &req(
                r#"{"name":"b","queue":"q","data":{"name":"legacy","y":2},"repeatEvery":2000,
                "maxLimit":2,"immediately":true,"priority":5,"timezone":"UTC"}"#,
            ),
        )
        .unwrap();
        assert_eq!(
            r.to_json(),
            format!(
                r#"{{"ok":true,"cron":{{"name":"b","jobName":"legacy","queue":"q","schedule":null,"repeatEvery":2000,"nextRun":{T0},"executions":0,"maxLimit":2,"timezone":"UTC","priority":5}}}}"#
            )
        );
        let jobs: Vec<(String, String)> = e
            .slots_in("q", JobState::Waiting)
            .into_iter()
            .map(|s| (e.job_name_of(s).to_owned(), e.job_at(s).data.to_string()))
            .collect();
        assert_eq!(jobs, vec![("legacy".to_owned(), r#"{"y":2}"#.to_owned())]);
        let list = cron_list(&mut e).to_json();
        assert!(
            list.starts_with(r#"{"ok":true,"crons":[{"name":"a""#),
            "{list}"
        );
        assert!(list.contains(r#""name":"b","jobName":"legacy""#), "{list}");
        assert!(list.contains(r#""executions":1"#), "{list}");
    }

    #[test]
    fn errors_are_the_references() {
        let (mut e, _) = engine();
        let err = |e: &mut Engine, j: &str| cron(e, &req(j)).unwrap_err();
        assert_eq!(
            err(&mut e, r#"{"name":"c","queue":"q","repeatEvery":0}"#),
            "Cron repeatEvery must be a positive safe integer number of milliseconds"
        );
        assert_eq!(
            err(&mut e, r#"{"name":"c","queue":"q","repeatEvery":1.5}"#),
            "Cron repeatEvery must be a positive safe integer number of milliseconds"
        );
        assert_eq!(
            err(&mut e, r#"{"name":"c","queue":"q"}"#),
            "Cron job must have either schedule or repeatEvery"
        );
        assert!(err(&mut e, r#"{"name":"c","queue":"q","schedule":"bad"}"#)
            .starts_with("Invalid cron expression: "));
        assert!(err(
            &mut e,
            r#"{"name":"c","queue":"q","schedule":"0 * * * *","timezone":"Europe/Rome"}"#
        )
        .starts_with("Invalid cron expression: "));
        assert_eq!(
            cron_get(&mut e, &req(r#"{"name":"zz"}"#)).unwrap_err(),
            "Cron job not found"
        );
        assert_eq!(
            cron_delete(&mut e, &req(r#"{"name":"zz"}"#)).unwrap_err(),
            "Cron job not found"
        );
        cron(
            &mut e,
            &req(r#"{"name":"d","queue":"q","schedule":"@daily"}"#),
        )
        .unwrap();
        let got = cron_get(&mut e, &req(r#"{"name":"d"}"#)).unwrap().to_json();
        assert!(
            got.contains(&format!(r#""nextRun":{}"#, T0 + 86_400_000)),
            "{got}"
        );
        assert_eq!(
            cron_delete(&mut e, &req(r#"{"name":"d"}"#))
                .unwrap()
                .to_json(),
            r#"{"ok":true}"#
        );
        assert_eq!(cron_list(&mut e).to_json(), r#"{"ok":true,"crons":[]}"#);
    }

    #[test]
    fn job_options_reach_the_pushed_jobs() {
        let (mut e, clock) = engine();
        cron(
            &mut e,
            &req(
                r#"{"name":"o","queue":"q","data":7,"repeatEvery":1000,"preventOverlap":false,
                "jobOptions":{"maxAttempts":9,"backoff":{"type":"fixed","delay":50},
                "stallTimeout":5,"removeOnComplete":true}}"#,
            ),
        )
        .unwrap();
        clock.advance(1000);
        let (slot, _) = e.pull("q", 0).unwrap().expect("a fired job");
        let job = e.job_at(slot);
        assert_eq!((job.max_attempts, job.backoff), (9, 50));
        assert!(job.ext().is_none_or(|x| x.unique_key.is_none()));
    }
}
