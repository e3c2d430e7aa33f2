//! Flows over bunqueue's protocol: `PUSHF` (a whole parent/child graph, atomically,
//! across queues), the parent's reads of what its children left
//! (`GetChildrenValues`, `GetFailedChildrenValues`, `GetIgnoredChildrenFailures`),
//! `MoveToWaitingChildren` and `RemoveChildDependency`. The rules are the engine's
//! (`engine/flow_graph.rs`); here only the reference's field names and reply shapes.

use super::commands::{data, engine_message, ok_with, opt_string, push_options, string, Res};
use super::job_object::{job_object, json_value, planned_job_object};
use super::value::{Key, Value};
use crate::engine::Engine;
use crate::error::ErrorKind;

/// `PUSHF {jobs:[{id, queue, input}]}` → `DATA{jobs:[Job]}`, the jobs in request order
/// with the ids as planned by the client.
pub(super) fn push_flow(engine: &mut Engine, req: &Value) -> Res<Value> {
    let Some(Value::Array(items)) = req.field("jobs") else {
        return Err("flow jobs must be an array".into());
    };
    let mut flow = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        if !matches!(item, Value::Map(_)) {
            return Err(format!("flow jobs[{i}] must be an object"));
        }
        let id = match item.field("id") {
            Some(Value::Str(s)) => s.as_str(),
            _ => return Err("flow job id must be a string".into()),
        };
        if id.is_empty() {
            return Err("flow job id is invalid or is not well-formed Unicode".into());
        }
        let queue = match item.field("queue") {
            Some(Value::Str(q)) => q.clone(),
            other => {
                let shown = other.and_then(Value::as_str).unwrap_or("undefined");
                return Err(format!("invalid flow queue: {shown}"));
            }
        };
        let input = match item.field("input") {
            Some(v @ Value::Map(_)) => v,
            _ => return Err(format!("flow job input is invalid: {id}")),
        };
        if let Some(custom) = input.field("customId") {
            if custom.as_str() != Some(id) && !matches!(custom, Value::Nil | Value::Undefined) {
                return Err(format!("custom id does not match planned id: {id}"));
            }
        }
        let mut opts = push_options(engine, input, "customId")?;
        opts.job_id = Some(id.to_string());
        flow.push((queue, opts));
    }
    // Jobs of other slots' queues (a cluster) are created there a moment later: the
    // answer shows them as they will be.
    let planned: Vec<Option<Value>> = flow
        .iter()
        .map(|(queue, opts)| {
            engine.elsewhere(queue).map(|_| {
                let name = opts.name.as_deref().unwrap_or("default");
                planned_job_object(&engine.planned_job(opts), queue, name)
            })
        })
        .collect();
    let outcomes = engine.push_flow(flow).map_err(engine_message)?;
    // Every other job was just created: nothing to miss, and no panic on this path.
    let jobs = outcomes
        .iter()
        .zip(planned)
        .filter_map(|(o, planned)| {
            planned.or_else(|| {
                engine
                    .slot_of(&o.id)
                    .map(|slot| job_object(engine, slot, false))
            })
        })
        .collect();
    Ok(data(Value::map(vec![("jobs", Value::Array(jobs))])))
}

/// A map of `queue:id` keys to values (JSON results, or error strings).
fn keyed(pairs: Vec<(String, String)>, json: bool) -> Value {
    Value::Map(
        pairs
            .into_iter()
            .map(|(k, v)| {
                let v = if json { json_value(&v) } else { Value::Str(v) };
                (Key::from(k), v)
            })
            .collect(),
    )
}

/// What the parent's children left; an unknown job has none (the reference's `{}`).
fn values_of(engine: &Engine, req: &Value) -> Res<crate::engine::ChildrenValues> {
    let id = string(req, "id")?;
    match engine.children_values(id) {
        Ok(v) => Ok(v),
        Err(e) if e.kind == ErrorKind::NotFound => Ok(Default::default()),
        Err(e) => Err(engine_message(e)),
    }
}

/// `GetChildrenValues{id}` → `DATA{values:{"queue:id": result}}`.
pub(super) fn children_values(engine: &Engine, req: &Value) -> Res<Value> {
    let values = values_of(engine, req)?.values;
    Ok(data(Value::map(vec![("values", keyed(values, true))])))
}

/// `GetFailedChildrenValues{id}` → `{ok, values:{"queue:id": error}}` (not in `data`).
pub(super) fn failed_children_values(engine: &Engine, req: &Value) -> Res<Value> {
    let failed = values_of(engine, req)?.failed;
    Ok(ok_with(vec![("values", keyed(failed, false))]))
}

/// `GetIgnoredChildrenFailures{id}` → `{ok, values:{"queue:id": error}}`.
pub(super) fn ignored_children_failures(engine: &Engine, req: &Value) -> Res<Value> {
    let ignored = values_of(engine, req)?.ignored;
    Ok(ok_with(vec![("values", keyed(ignored, false))]))
}

/// `MoveToWaitingChildren{id, token?}` → `DATA{moved:true}`; a job that is not active
/// (or unknown) is refused as the reference does; a lock mismatch keeps its message (the
/// SDK throws on a token error); with nothing pending the job stays active and the
/// answer is `ok:false` (the SDK's `moveToWaitingChildren` then returns false).
pub(super) fn move_to_waiting_children(engine: &mut Engine, req: &Value) -> Res<Value> {
    let id = string(req, "id")?;
    let token = opt_string(req, "token")?.filter(|t| !t.is_empty());
    match engine.move_to_waiting_children(id, token) {
        Ok(true) => Ok(data(Value::map(vec![("moved", Value::Bool(true))]))),
        Ok(false) => Err("Job has no pending children".into()),
        Err(e) if e.kind == ErrorKind::InvalidState => Err("Job is not active".into()),
        Err(e) => Err(engine_message(e)),
    }
}

/// `RemoveChildDependency{id}` (the child's id) → `{ok, removed}`.
pub(super) fn remove_child_dependency(engine: &mut Engine, req: &Value) -> Res<Value> {
    let id = string(req, "id")?;
    let removed = engine.remove_child_dependency(id).map_err(engine_message)?;
    Ok(ok_with(vec![("removed", Value::Bool(removed))]))
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

    fn s(v: &str) -> Value {
        Value::str(v)
    }

    fn ids(v: &[&str]) -> Value {
        Value::Array(v.iter().map(|i| s(i)).collect())
    }

    /// The request `FlowProducer.add` sends for a parent `p` (queue `pq`) with children
    /// `c1` (queue `a`) and `c2` (queue `b`).
    fn pushf() -> Value {
        let child = |id: &str, queue: &str| {
            Value::map(vec![
                ("id", s(id)),
                ("queue", s(queue)),
                (
                    "input",
                    Value::map(vec![
                        ("name", s(id)),
                        (
                            "data",
                            Value::map(vec![
                                ("n", Value::Int(1)),
                                ("__parentId", s("p")),
                                ("__parentQueue", s("pq")),
                            ]),
                        ),
                        ("parentId", s("p")),
                        ("dependsOn", Value::Undefined),
                        ("removeOnComplete", Value::Bool(false)),
                        ("removeOnFail", Value::Bool(false)),
                    ]),
                ),
            ])
        };
        let parent = Value::map(vec![
            ("id", s("p")),
            ("queue", s("pq")),
            (
                "input",
                Value::map(vec![
                    ("name", s("p")),
                    (
                        "data",
                        Value::map(vec![("__childrenIds", ids(&["c1", "c2"]))]),
                    ),
                    ("dependsOn", ids(&["c1", "c2"])),
                    ("childrenIds", ids(&["c1", "c2"])),
                ]),
            ),
        ]);
        Value::map(vec![
            ("cmd", s("PUSHF")),
            (
                "jobs",
                Value::Array(vec![child("c1", "a"), child("c2", "b"), parent]),
            ),
        ])
    }

    fn by_id(id: &str) -> Value {
        Value::map(vec![("id", s(id))])
    }

    #[test]
    fn pushf_answers_the_jobs_with_their_links_in_request_order() {
        let mut e = engine();
        let reply = push_flow(&mut e, &pushf()).unwrap();
        let Some(Value::Array(jobs)) = reply.get("data").and_then(|d| d.get("jobs")) else {
            panic!("{reply:?}");
        };
        let field = |j: &Value, k: &str| j.get(k).cloned().unwrap();
        let got: Vec<Value> = jobs.iter().map(|j| field(j, "id")).collect();
        assert_eq!(got, [s("c1"), s("c2"), s("p")]);
        assert_eq!(field(&jobs[0], "queue"), s("a"));
        assert_eq!(field(&jobs[0], "parentId"), s("p"));
        assert_eq!(field(&jobs[2], "childrenIds"), ids(&["c1", "c2"]));
        assert_eq!(field(&jobs[2], "dependsOn"), ids(&["c1", "c2"]));
        assert_eq!(field(&jobs[2], "parentId"), Value::Nil);
        assert_eq!(jobs[0].get("state"), None, "created jobs carry no state");
        // The same ids again: refused as a whole, with the reference's message.
        assert_eq!(
            push_flow(&mut e, &pushf()).unwrap_err(),
            "Flow job c1 already exists"
        );
    }

    #[test]
    fn children_values_are_keyed_by_queue_and_id() {
        let mut e = engine();
        push_flow(&mut e, &pushf()).unwrap();
        let empty = Value::Map(Vec::new());
        let values = |v: Value| data(Value::map(vec![("values", v)]));
        assert_eq!(
            children_values(&e, &by_id("p")).unwrap(),
            values(empty.clone())
        );
        assert_eq!(
            children_values(&e, &by_id("nope")).unwrap(),
            values(empty.clone())
        );
        let (slot, token) = e.pull("b", 0).unwrap().unwrap();
        let id = e.job_at(slot).id.to_string();
        e.ack(&id, Some(&token), Some(r#"{"v":2}"#.into())).unwrap();
        assert_eq!(
            children_values(&e, &by_id("p")).unwrap(),
            values(Value::Map(vec![(
                "b:c2".into(),
                Value::map(vec![("v", Value::Int(2))])
            )]))
        );
        assert_eq!(
            failed_children_values(&e, &by_id("p")).unwrap(),
            ok_with(vec![("values", empty.clone())])
        );
        assert_eq!(
            ignored_children_failures(&e, &by_id("p")).unwrap(),
            ok_with(vec![("values", empty)])
        );
    }

    #[test]
    fn move_to_waiting_children_and_remove_child_dependency_answer_like_the_reference() {
        let mut e = engine();
        push_flow(&mut e, &pushf()).unwrap();
        assert_eq!(
            move_to_waiting_children(&mut e, &by_id("p")).unwrap_err(),
            "Job is not active"
        );
        assert_eq!(
            move_to_waiting_children(&mut e, &by_id("nope")).unwrap_err(),
            "Job is not active"
        );
        assert_eq!(
            remove_child_dependency(&mut e, &by_id("nope")).unwrap_err(),
            "Job not found: nope"
        );
        assert_eq!(
            remove_child_dependency(&mut e, &by_id("p")).unwrap_err(),
            "Job p has no parent"
        );
        assert_eq!(
            remove_child_dependency(&mut e, &by_id("c1")).unwrap(),
            ok_with(vec![("removed", Value::Bool(true))])
        );
        // A job with no children has nothing to wait for: it stays active.
        let (slot, _) = e.pull("a", 0).unwrap().unwrap();
        assert_eq!(e.job_at(slot).id.to_string(), "c1");
        let reply = move_to_waiting_children(&mut e, &by_id("c1"));
        assert_eq!(reply.unwrap_err(), "Job has no pending children");
    }
}
