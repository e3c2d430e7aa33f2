//! Messages between the engines of a cluster's slots: how a flow or a `dependsOn` that
//! spans slots is carried out. A message is recorded in the sender's log with the
//! change that caused it, carried by the database, and applied once by the receiver
//! (numbered per sender and receiver: `engine/cross_slot.rs`). JSON, since a few are
//! sent per spanning flow or dependency and none for plain jobs.

use serde::{Deserialize, Serialize};

use crate::error::{EngineError, Result};
use crate::job::ChildFailure;
use crate::options::{PushOptions, Removal};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SlotMessage {
    /// Jobs of a flow that another slot accepted, for this slot to create in this
    /// order (each after the jobs it depends on).
    CreateJobs { jobs: Vec<PlannedJob> },
    /// `dependent`, held by slot `slot`, waits for `dependency`, held here.
    Watch {
        dependency: String,
        dependent: String,
        slot: u32,
    },
    /// `dependency` settled; its `dependent`, held here, hears how.
    Settled {
        dependency: String,
        dependent: String,
        outcome: Outcome,
    },
    /// Flow child `child`, held elsewhere, was detached from its `parent`, held here.
    Detach { parent: String, child: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "as", rename_all = "snake_case")]
pub enum Outcome {
    /// `key` is the dependency's `queue:id`, under which a flow parent keeps `result`.
    Completed { key: String, result: Option<String> },
    /// Failed for good. `policy` (a `ChildFailure` wire code) is set when the
    /// dependent is the failed job's flow parent, which then acts by it.
    Failed {
        key: String,
        error: String,
        policy: Option<u8>,
    },
    /// Removed, drained, or unknown while the dependent waited: the dependent fails
    /// with `Dependency <id> <why>`.
    Gone { why: String },
}

/// One job of a flow as planned by the slot that accepted the flow: its options, and
/// its links to jobs held by slots other than the one creating it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedJob {
    pub queue: String,
    pub id: String,
    pub name: Option<String>,
    /// The payload as JSON text.
    pub data: String,
    pub priority: i32,
    pub delay: u64,
    pub max_attempts: u32,
    pub backoff: u64,
    pub ttl: Option<u64>,
    pub timeout: Option<u64>,
    pub tags: Vec<String>,
    pub group_id: Option<String>,
    pub lifo: bool,
    /// `Removal` as (0 keep, 1 remove, 2 keep the last n; n).
    pub remove_on_complete: (u8, u32),
    pub remove_on_fail: (u8, u32),
    pub durable: bool,
    pub depends_on: Vec<String>,
    pub parent_id: Option<String>,
    pub children_ids: Vec<String>,
    pub on_child_failure: u8,
    /// Of `depends_on`, the jobs held by other slots than this job's.
    pub remote_deps: Vec<String>,
    /// Jobs held by other slots that depend on this one, with their slots.
    pub remote_dependents: Vec<(String, u32)>,
}

/// Jobs held by other slots that depend on a job, with their slots.
pub type RemoteDependents = Vec<(String, u32)>;

fn removal_wire(r: Removal) -> (u8, u32) {
    match r {
        Removal::Keep => (0, 0),
        Removal::Remove => (1, 0),
        Removal::KeepLast(n) => (2, n),
    }
}

fn removal_from_wire((code, n): (u8, u32)) -> Result<Removal> {
    match code {
        0 => Ok(Removal::Keep),
        1 => Ok(Removal::Remove),
        2 => Ok(Removal::KeepLast(n)),
        _ => Err(EngineError::invalid(format!("bad removal code {code}"))),
    }
}

impl PlannedJob {
    /// A flow job as the accepting slot planned it (`opts.job_id` is its id).
    pub fn new(queue: &str, opts: &PushOptions, remote_dependents: Vec<(String, u32)>) -> Self {
        Self {
            queue: queue.to_string(),
            id: opts.job_id.clone().unwrap_or_default(),
            name: opts.name.clone(),
            data: opts.data.to_string(),
            priority: opts.priority,
            delay: opts.delay,
            max_attempts: opts.max_attempts,
            backoff: opts.backoff,
            ttl: opts.ttl,
            timeout: opts.timeout,
            tags: opts.tags.clone(),
            group_id: opts.group_id.clone(),
            lifo: opts.lifo,
            remove_on_complete: removal_wire(opts.remove_on_complete),
            remove_on_fail: removal_wire(opts.remove_on_fail),
            durable: opts.durable,
            depends_on: opts.depends_on.clone(),
            parent_id: opts.parent_id.clone(),
            children_ids: opts.children_ids.clone(),
            on_child_failure: opts.on_child_failure.wire_code(),
            remote_deps: opts.remote_deps.clone(),
            remote_dependents,
        }
    }

    /// The queue, the push options back, and the remote dependents.
    pub fn into_options(self) -> Result<(String, PushOptions, RemoteDependents)> {
        let on_child_failure = ChildFailure::from_wire(self.on_child_failure)
            .ok_or_else(|| EngineError::invalid(String::from("bad child failure policy")))?;
        let opts = PushOptions {
            name: self.name,
            data: self.data.into(),
            priority: self.priority,
            delay: self.delay,
            max_attempts: self.max_attempts,
            backoff: self.backoff,
            ttl: self.ttl,
            timeout: self.timeout,
            job_id: Some(self.id),
            tags: self.tags,
            group_id: self.group_id,
            lifo: self.lifo,
            remove_on_complete: removal_from_wire(self.remove_on_complete)?,
            remove_on_fail: removal_from_wire(self.remove_on_fail)?,
            durable: self.durable,
            depends_on: self.depends_on,
            parent_id: self.parent_id,
            children_ids: self.children_ids,
            on_child_failure,
            remote_deps: self.remote_deps,
            ..PushOptions::default()
        };
        Ok((self.queue, opts, self.remote_dependents))
    }
}

impl SlotMessage {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a message is plain data")
    }

    /// A body that does not decode is refused whole (a sender of another version).
    pub fn decode(body: &[u8]) -> Result<Self> {
        serde_json::from_slice(body)
            .map_err(|e| EngineError::invalid(format!("unreadable message from another slot: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_planned_job_keeps_every_option_through_its_encoding() {
        let opts = PushOptions {
            name: Some("resize".into()),
            data: r#"{"w":3}"#.into(),
            priority: -4,
            delay: 50,
            max_attempts: 7,
            backoff: 300,
            ttl: Some(9_000),
            timeout: Some(1_000),
            job_id: Some("child-1".into()),
            tags: vec!["a".into()],
            group_id: Some("g".into()),
            lifo: true,
            remove_on_complete: Removal::KeepLast(5),
            remove_on_fail: Removal::Remove,
            durable: true,
            depends_on: vec!["grandchild".into()],
            parent_id: Some("root".into()),
            children_ids: vec!["grandchild".into()],
            on_child_failure: ChildFailure::Ignore,
            remote_deps: vec!["grandchild".into()],
            ..PushOptions::default()
        };
        let msg = SlotMessage::CreateJobs {
            jobs: vec![PlannedJob::new("q", &opts, vec![("root".into(), 3)])],
        };
        let back = SlotMessage::decode(&msg.encode()).unwrap();
        assert_eq!(back, msg);
        let SlotMessage::CreateJobs { mut jobs } = back else {
            unreachable!()
        };
        let (queue, o, dependents) = jobs.pop().unwrap().into_options().unwrap();
        assert_eq!(
            (queue.as_str(), dependents),
            ("q", vec![("root".into(), 3)])
        );
        assert_eq!(format!("{o:?}"), format!("{opts:?}"));
    }

    #[test]
    fn an_unreadable_body_is_an_error_not_a_panic() {
        assert!(SlotMessage::decode(b"{\"kind\":\"nope\"}").is_err());
        assert!(SlotMessage::decode(b"\xff").is_err());
    }
}
