//! bunqueue's job-log commands (`AddLog`, `GetLogs`, `ClearLogs`) on the engine's job
//! logs. Shapes and wording follow bunqueue 2.9.5's `handlers/monitoring/health.js` and
//! `operations.js`: only `AddLog` reports an unknown job; `GetLogs` answers it with no
//! lines and `ClearLogs` with a plain success.

use super::commands::{data, engine_message, number, ok, opt_string, string, Res};
use super::value::Value;
use crate::engine::Engine;
use crate::error::ErrorKind;
use crate::job_logs::LogEntry;

/// `{id, message, level?}` → `DATA{added:true}`.
pub(super) fn add_log(engine: &mut Engine, req: &Value) -> Res<Value> {
    let id = string(req, "id")?;
    let message = string(req, "message")?;
    let level = opt_string(req, "level")?;
    engine.add_log(id, message, level).map_err(engine_message)?;
    Ok(data(Value::map(vec![("added", Value::Bool(true))])))
}

/// One line as bunqueue's `createLogEntry` builds it.
fn entry_value(e: &LogEntry) -> Value {
    Value::map(vec![
        ("timestamp", Value::Int(e.timestamp as i64)),
        ("level", Value::str(e.level.as_str())),
        ("message", Value::str(&*e.message)),
    ])
}

/// `{id, start?, end?}` (inclusive, `JobLogs::slice`) → `DATA{logs, count}`, `count`
/// being every line the job has.
pub(super) fn get_logs(engine: &mut Engine, req: &Value) -> Res<Value> {
    let id = string(req, "id")?;
    let bound = |field| number(req, field, f64::MIN, f64::MAX).map(|v| v.map(|n| n as i64));
    let (start, end) = (bound("start")?, bound("end")?);
    let (logs, count) = match engine.logs(id, start, end) {
        Ok(page) => (page.entries.iter().map(entry_value).collect(), page.total),
        Err(e) if e.kind == ErrorKind::NotFound => (Vec::new(), 0),
        Err(e) => return Err(e.message),
    };
    Ok(data(Value::map(vec![
        ("logs", Value::Array(logs)),
        ("count", Value::Int(count as i64)),
    ])))
}

/// `{id, keepLogs?}` → `OK`: keeps the newest `keepLogs` lines (none when absent or not
/// positive), as bunqueue's `logs.slice(-keepLogs)`.
pub(super) fn clear_logs(engine: &mut Engine, req: &Value) -> Res<Value> {
    let id = string(req, "id")?;
    let keep = number(req, "keepLogs", f64::MIN, f64::MAX)?;
    let keep = match keep {
        None => None,
        Some(k) if k <= 0.0 => None,
        // `slice(-0.5)` is `slice(0)`: everything stays.
        Some(k) if k < 1.0 => return Ok(ok()),
        Some(k) => Some(k as u64),
    };
    match engine.clear_logs(id, keep) {
        Ok(()) => Ok(ok()),
        Err(e) if e.kind == ErrorKind::NotFound => Ok(ok()),
        Err(e) => Err(e.message),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::clock::ManualClock;
    use crate::engine::EngineConfig;
    use crate::options::PushOptions;

    fn engine() -> (Engine, String) {
        let mut e = Engine::new(EngineConfig::default(), Arc::new(ManualClock::new(5_000)));
        let o = PushOptions::from_json(br#"{"data":1}"#, 1 << 20).unwrap();
        let id = e.push("q", o).unwrap().id;
        (e, id)
    }

    fn req(fields: Vec<(&'static str, Value)>) -> Value {
        Value::map(fields)
    }

    fn messages(reply: &Value) -> Vec<String> {
        let Some(Value::Array(logs)) = reply.get("data").and_then(|d| d.get("logs")) else {
            panic!("no logs in {reply:?}");
        };
        logs.iter()
            .map(|l| l.get("message").unwrap().as_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn add_then_get_answers_bunqueues_shapes() {
        let (mut e, id) = engine();
        let reply = add_log(
            &mut e,
            &req(vec![
                ("id", Value::str(&id)),
                ("message", Value::str("hello")),
            ]),
        )
        .unwrap();
        assert_eq!(reply, data(Value::map(vec![("added", Value::Bool(true))])));
        add_log(
            &mut e,
            &req(vec![
                ("id", Value::str(&id)),
                ("message", Value::str("careful")),
                ("level", Value::str("warn")),
            ]),
        )
        .unwrap();
        let reply = get_logs(&mut e, &req(vec![("id", Value::str(&id))])).unwrap();
        assert_eq!(
            reply,
            data(Value::map(vec![
                (
                    "logs",
                    Value::Array(vec![
                        Value::map(vec![
                            ("timestamp", Value::Int(5_000)),
                            ("level", Value::str("info")),
                            ("message", Value::str("hello")),
                        ]),
                        Value::map(vec![
                            ("timestamp", Value::Int(5_000)),
                            ("level", Value::str("warn")),
                            ("message", Value::str("careful")),
                        ]),
                    ])
                ),
                ("count", Value::Int(2)),
            ]))
        );
        // start/end inclusive; count is every line.
        let reply = get_logs(
            &mut e,
            &req(vec![
                ("id", Value::str(&id)),
                ("start", Value::Int(1)),
                ("end", Value::Int(5)),
            ]),
        )
        .unwrap();
        assert_eq!(messages(&reply), ["careful"]);
        assert_eq!(
            reply.get("data").unwrap().get("count"),
            Some(&Value::Int(2))
        );
    }

    #[test]
    fn unknown_jobs_answer_as_bunqueue_does() {
        let (mut e, _) = engine();
        let unknown = req(vec![
            ("id", Value::str("nope")),
            ("message", Value::str("x")),
        ]);
        assert_eq!(add_log(&mut e, &unknown).unwrap_err(), "Job not found");
        let reply = get_logs(&mut e, &unknown).unwrap();
        assert_eq!(messages(&reply), Vec::<String>::new());
        assert_eq!(
            reply.get("data").unwrap().get("count"),
            Some(&Value::Int(0))
        );
        assert_eq!(clear_logs(&mut e, &unknown).unwrap(), ok());
        assert_eq!(
            add_log(&mut e, &req(vec![("message", Value::str("x"))])).unwrap_err(),
            "id is required"
        );
    }

    #[test]
    fn clear_keeps_the_newest_lines() {
        let (mut e, id) = engine();
        for m in ["a", "b", "c"] {
            add_log(
                &mut e,
                &req(vec![("id", Value::str(&id)), ("message", Value::str(m))]),
            )
            .unwrap();
        }
        let all = req(vec![("id", Value::str(&id))]);
        let keep = |k: Value| req(vec![("id", Value::str(&id)), ("keepLogs", k)]);
        assert_eq!(clear_logs(&mut e, &keep(Value::Float(0.5))).unwrap(), ok());
        assert_eq!(messages(&get_logs(&mut e, &all).unwrap()), ["a", "b", "c"]);
        clear_logs(&mut e, &keep(Value::Int(2))).unwrap();
        assert_eq!(messages(&get_logs(&mut e, &all).unwrap()), ["b", "c"]);
        clear_logs(&mut e, &keep(Value::Int(-1))).unwrap();
        assert_eq!(
            messages(&get_logs(&mut e, &all).unwrap()),
            Vec::<String>::new()
        );
    }
}
