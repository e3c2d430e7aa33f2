//! Flows and dependencies that span the slots of a cluster. Each engine holds only its
//! slot's jobs, so a link to a job of another slot is kept as `RemoteLinks` on the job
//! here, and what the other side must learn goes out as a `SlotMessage`:
//!
//! - the mailbox: messages for each other slot, numbered from 1 per target and recorded
//!   in the log with the change that caused them (`OutboxPut`), stay pending until the
//!   transport says they reached the database (`OutboxDelivered`); messages from each
//!   other slot are applied in their order, once (`InboxApplied` holds the last one,
//!   written with the changes the message made, in the same log frame);
//! - the links: a dependency held elsewhere counts as pending until a `Settled` message
//!   says it completed; a job with dependents held elsewhere tells them each time it
//!   settles (completed, failed for good, removed), as a local job would act on them.

use std::collections::BTreeMap;

use hashbrown::HashMap;

use super::placement::Cause;
use super::Engine;
use crate::cluster_slots::{id_slot, queue_slot};
use crate::error::{EngineError, Result};
use crate::ids::JobId;
use crate::job::{set_pair, ChildFailure, JobState, RemoteLinks};
use crate::record::{encode_inbox_applied, encode_outbox_delivered, encode_outbox_put};
use crate::slot_message::{Outcome, SlotMessage};

/// Messages in and out of this engine's slot.
#[derive(Debug, Default)]
pub(super) struct Mailbox {
    /// Per target slot: (the last seq assigned, the last seq delivered).
    sent: HashMap<u32, (u64, u64)>,
    /// Messages not yet delivered, by (target, seq).
    pending: BTreeMap<(u32, u64), Box<[u8]>>,
    /// Per source slot: the last seq applied.
    applied: HashMap<u32, u64>,
    /// A message was recorded since the transport was last woken.
    added: bool,
}

/// A message waiting to be delivered to another slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    pub target: u32,
    pub seq: u64,
    pub body: Vec<u8>,
}

/// What applying a message from another slot did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Done,
    /// Its seq was applied before (a redelivery).
    AlreadyApplied,
    /// An earlier message from that slot has not been applied: apply it first.
    Gap {
        expected: u64,
    },
}

impl Engine {
    /// The slot this engine serves and the slot count, in a cluster of several slots.
    pub(super) fn cluster(&self) -> Option<(u32, u32)> {
        self.config.cluster_slot
    }

    /// The slot of another cluster slot's queue (`None`: this engine's, or no cluster).
    pub fn elsewhere(&self, queue: &str) -> Option<u32> {
        let (mine, slots) = self.cluster()?;
        Some(queue_slot(queue, slots)).filter(|&s| s != mine)
    }

    /// The slot a generated id names, when it is another slot's.
    pub(super) fn id_elsewhere(&self, id: &str) -> Option<u32> {
        let (mine, slots) = self.cluster()?;
        id_slot(id, slots).filter(|&s| s != mine)
    }

    // ----- the mailbox ------------------------------------------------------------------

    pub(super) fn send(&mut self, target: u32, msg: &SlotMessage) {
        let body = msg.encode();
        let sent = self.mailbox.sent.entry(target).or_default();
        sent.0 += 1;
        let seq = sent.0;
        if self.recording {
            encode_outbox_put(&mut self.op_log, target, seq, &body);
        }
        self.mailbox.pending.insert((target, seq), body.into());
        self.mailbox.added = true;
    }

    /// Whether a message was recorded since the last call (the transport waits for it).
    pub(crate) fn take_outbox_added(&mut self) -> bool {
        std::mem::take(&mut self.mailbox.added)
    }

    /// Messages waiting for delivery, by (target, seq), at most `limit`.
    pub fn outbox_pending(&self, limit: usize) -> Vec<OutboxEntry> {
        self.mailbox
            .pending
            .iter()
            .take(limit)
            .map(|(&(target, seq), body)| OutboxEntry {
                target,
                seq,
                body: body.to_vec(),
            })
            .collect()
    }

    pub fn has_outbox(&self) -> bool {
        !self.mailbox.pending.is_empty()
    }

    /// The messages for `target` through `through` reached the database.
    pub fn outbox_delivered(&mut self, target: u32, through: u64) {
        self.restore_delivered(target, through);
        if self.recording {
            encode_outbox_delivered(&mut self.op_log, target, through);
        }
    }

    /// The last seq applied from `source` (0: none).
    pub fn inbox_cursor(&self, source: u32) -> u64 {
        self.mailbox.applied.get(&source).copied().unwrap_or(0)
    }

    /// Applies message `seq` from slot `source`, once and in order. A message that
    /// cannot be read is passed over (its seq counts as applied, so the ones after it
    /// are not held up) and reported as an error.
    pub fn apply_slot_message(&mut self, source: u32, seq: u64, body: &[u8]) -> Result<Applied> {
        let now = self.tick();
        let last = self.inbox_cursor(source);
        if seq <= last {
            return Ok(Applied::AlreadyApplied);
        }
        if seq > last + 1 {
            return Ok(Applied::Gap { expected: last + 1 });
        }
        self.mailbox.applied.insert(source, seq);
        if self.recording {
            encode_inbox_applied(&mut self.op_log, source, seq);
        }
        match SlotMessage::decode(body)? {
            SlotMessage::CreateJobs { jobs } => self.create_planned(jobs, now),
            SlotMessage::Watch {
                dependency,
                dependent,
                slot,
            } => self.watch(&dependency, dependent, slot),
            SlotMessage::Settled {
                dependency,
                dependent,
                outcome,
            } => self.settled(&dependency, &dependent, outcome, now),
            SlotMessage::Detach { parent, child } => self.detach_remote_child(&parent, &child, now),
        }
        Ok(Applied::Done)
    }

    pub(super) fn restore_outbox_put(&mut self, target: u32, seq: u64, body: Box<[u8]>) {
        let sent = self.mailbox.sent.entry(target).or_default();
        sent.0 = sent.0.max(seq);
        if seq > sent.1 {
            self.mailbox.pending.insert((target, seq), body);
        }
    }

    pub(super) fn restore_delivered(&mut self, target: u32, through: u64) {
        let sent = self.mailbox.sent.entry(target).or_default();
        sent.0 = sent.0.max(through);
        sent.1 = sent.1.max(through);
        let done: Vec<(u32, u64)> = self
            .mailbox
            .pending
            .range((target, 0)..=(target, through))
            .map(|(&k, _)| k)
            .collect();
        for k in done {
            self.mailbox.pending.remove(&k);
        }
    }

    pub(super) fn restore_applied(&mut self, source: u32, seq: u64) {
        let last = self.mailbox.applied.entry(source).or_default();
        *last = (*last).max(seq);
    }

    /// The mailbox in a snapshot: per target what was delivered, then what was not; per
    /// source what was applied.
    pub(super) fn snapshot_mailbox(&self, out: &mut Vec<u8>) {
        let mut targets: Vec<(&u32, &(u64, u64))> = self.mailbox.sent.iter().collect();
        targets.sort_unstable();
        for (&target, &(_, delivered)) in targets {
            encode_outbox_delivered(out, target, delivered);
        }
        for (&(target, seq), body) in &self.mailbox.pending {
            encode_outbox_put(out, target, seq, body);
        }
        let mut sources: Vec<(&u32, &u64)> = self.mailbox.applied.iter().collect();
        sources.sort_unstable();
        for (&source, &seq) in sources {
            encode_inbox_applied(out, source, seq);
        }
    }

    /// The mailbox as text, for `dump_state`.
    pub(super) fn dump_mailbox(&self) -> String {
        let mut sent: Vec<_> = self.mailbox.sent.iter().collect();
        sent.sort_unstable();
        let mut applied: Vec<_> = self.mailbox.applied.iter().collect();
        applied.sort_unstable();
        let pending: Vec<_> = self.mailbox.pending.keys().collect();
        format!("mailbox sent={sent:?} pending={pending:?} applied={applied:?}")
    }

    // ----- links ------------------------------------------------------------------------

    fn remote_mut(&mut self, slot: u32) -> &mut RemoteLinks {
        self.job_mut(slot)
            .ext_mut()
            .remote
            .get_or_insert_with(Default::default)
    }

    /// Adds dependents held by other slots to the job in `slot`.
    pub(super) fn add_remote_dependents(&mut self, slot: u32, dependents: Vec<(JobId, u32)>) {
        if dependents.is_empty() {
            return;
        }
        let remote = self.remote_mut(slot);
        for d in dependents {
            if !remote.dependents.contains(&d) {
                remote.dependents.push(d);
            }
        }
    }

    /// Whether `id` is among the job's dependencies held by other slots.
    pub(super) fn is_remote_dep(&self, slot: u32, id: &JobId) -> bool {
        self.job(slot)
            .ext()
            .and_then(|e| e.remote.as_deref())
            .is_some_and(|r| r.deps.iter().any(|(d, _)| d == id))
    }

    /// The job in `slot` settled: its dependents held by other slots hear how.
    /// `outcome` is given the dependent's id (a flow parent hears its child's policy).
    pub(super) fn tell_remote_dependents(
        &mut self,
        slot: u32,
        outcome: impl Fn(&Self, &JobId) -> Outcome,
    ) {
        let dependents = match self.job(slot).ext().and_then(|e| e.remote.as_deref()) {
            Some(r) if !r.dependents.is_empty() => r.dependents.clone(),
            _ => return,
        };
        let dependency = self.job(slot).id.to_string();
        for (dependent, target) in dependents {
            let msg = SlotMessage::Settled {
                dependency: dependency.clone(),
                dependent: dependent.to_string(),
                outcome: outcome(self, &dependent),
            };
            self.send(target, &msg);
        }
    }

    /// How the job in `slot`, failed for good with `error`, settles for `dependent`.
    pub(super) fn failed_outcome(&self, slot: u32, error: &str, dependent: &JobId) -> Outcome {
        let flow = self.job(slot).flow();
        let policy = flow
            .filter(|f| f.parent.as_ref() == Some(dependent))
            .map(|f| f.on_failure.wire_code());
        Outcome::Failed {
            key: self.child_key(slot),
            error: error.to_string(),
            policy,
        }
    }

    /// How the completed job in `slot` settles for any dependent.
    pub(super) fn completed_outcome(&self, slot: u32) -> Outcome {
        Outcome::Completed {
            key: self.child_key(slot),
            result: self
                .job(slot)
                .ext()
                .and_then(|e| e.result.as_deref())
                .map(str::to_string),
        }
    }

    /// `Watch`: a job elsewhere waits for `dependency`; told at once if it settled.
    pub(super) fn watch(&mut self, dependency: &str, dependent: String, target: u32) {
        let outcome = match self.slot_of(dependency) {
            None => Some(Outcome::Gone {
                why: "is unknown".into(),
            }),
            Some(ds) => match self.job(ds).state {
                JobState::Completed => Some(self.completed_outcome(ds)),
                JobState::Failed => {
                    let error = self
                        .job(ds)
                        .ext()
                        .and_then(|e| e.error.as_deref())
                        .unwrap_or("")
                        .to_string();
                    Some(self.failed_outcome(ds, &error, &JobId::parse(&dependent)))
                }
                _ => {
                    self.add_remote_dependents(ds, vec![(JobId::parse(&dependent), target)]);
                    None
                }
            },
        };
        if let Some(outcome) = outcome {
            let msg = SlotMessage::Settled {
                dependency: dependency.to_string(),
                dependent,
                outcome,
            };
            self.send(target, &msg);
        }
    }

    /// `Settled`: a dependency held elsewhere settled; its dependent here acts as it
    /// would for a local one.
    fn settled(&mut self, dependency: &str, dependent: &str, outcome: Outcome, now: u64) {
        let dep = JobId::parse(dependency);
        let Some(ds) = self.slot_of(dependent) else {
            return;
        };
        // A flow child's result reaches its parent even once the parent stopped
        // waiting for it (as `hand_result_to_parent` does for a local child).
        let is_child = self
            .job(ds)
            .flow()
            .is_some_and(|f| f.children.contains(&dep));
        if !is_child && !self.is_remote_dep(ds, &dep) {
            return;
        }
        match outcome {
            Outcome::Completed { key, result } => {
                if let Some(r) = self.job_mut(ds).ext_mut().remote.as_deref_mut() {
                    for (d, done) in &mut r.deps {
                        if *d == dep {
                            *done = true;
                        }
                    }
                }
                if let (true, Some(result)) = (is_child, result) {
                    if !self.job(ds).state.is_finished() {
                        set_pair(&mut self.job_mut(ds).flow_mut().values, &key, &result);
                    }
                }
                if self.job(ds).state == JobState::WaitingChildren {
                    let pending = self.unfinished_dependencies(ds);
                    self.job_mut(ds).ext_mut().pending_deps = pending;
                    if pending == 0 {
                        self.make_runnable(ds, now, Cause::DependenciesMet, |_| {});
                    }
                }
            }
            Outcome::Failed { key, error, policy } => {
                if !self.blocked_on(ds, &dep) {
                    return;
                }
                let failure = match policy.and_then(ChildFailure::from_wire) {
                    Some(policy) => self.child_failed(ds, &dep, &key, policy, &error, now),
                    None => Some(format!("Dependency {dependency} failed")),
                };
                if let Some(e) = failure {
                    self.finish_failed(ds, e, now);
                }
            }
            Outcome::Gone { why } => {
                if self.blocked_on(ds, &dep) {
                    self.finish_failed(ds, format!("Dependency {dependency} {why}"), now);
                }
            }
        }
    }

    /// The job in `ds` waits in waiting-children and `dep` is still among what it waits for.
    fn blocked_on(&self, ds: u32, dep: &JobId) -> bool {
        self.job(ds).state == JobState::WaitingChildren
            && self
                .job(ds)
                .ext()
                .is_some_and(|e| e.depends_on.contains(dep))
    }

    /// `Detach`: flow child `child`, held elsewhere, left its parent here.
    fn detach_remote_child(&mut self, parent: &str, child: &str, now: u64) {
        let child = JobId::parse(child);
        let Some(ps) = self.slot_of(parent) else {
            return;
        };
        if !self.blocked_on(ps, &child) {
            return;
        }
        if let Some(f) = self.job_mut(ps).ext_mut().flow.as_deref_mut() {
            f.children.retain(|c| c != &child);
        }
        self.drop_dependency(ps, &child, now);
    }

    /// `RemoveChildDependency` of a child whose parent another slot holds: the child
    /// lets go of it here, and the parent's slot is told to stop waiting. False if the
    /// child finished (or its parent is not held elsewhere).
    pub(super) fn detach_from_remote_parent(&mut self, slot: u32, parent: &JobId) -> bool {
        let target = self
            .job(slot)
            .ext()
            .and_then(|e| e.remote.as_deref())
            .and_then(|r| r.dependents.iter().find(|(d, _)| d == parent))
            .map(|&(_, s)| s);
        let Some(target) = target else {
            return false;
        };
        if self.job(slot).state.is_finished() {
            return false;
        }
        let child = self.job(slot).id.to_string();
        self.job_mut(slot).flow_mut().parent = None;
        if let Some(r) = self.job_mut(slot).ext_mut().remote.as_deref_mut() {
            r.dependents.retain(|(d, _)| d != parent);
        }
        let msg = SlotMessage::Detach {
            parent: parent.to_string(),
            child,
        };
        self.send(target, &msg);
        true
    }

    /// A dependency check for a push: a `dependsOn` naming another slot's generated id
    /// is a link to that slot, checked there (`Watch`); any other id must be held here.
    pub(super) fn split_remote_deps(&self, depends_on: &[String]) -> Result<Vec<String>> {
        let mut remote = Vec::new();
        for dep in depends_on {
            if self.id_elsewhere(dep).is_some() {
                remote.push(dep.clone());
            } else if self.slot_of(dep).is_none() {
                return Err(EngineError::invalid(format!(
                    "dependsOn references an unknown job: {dep}"
                )));
            }
        }
        Ok(remote)
    }

    /// After a push with dependencies held by other slots: each holder is asked to
    /// tell this job when its dependency settles.
    pub(super) fn watch_remote_deps(&mut self, id: &str, remote_deps: &[String]) {
        let Some((mine, _)) = self.cluster() else {
            return;
        };
        for dep in remote_deps {
            if let Some(target) = self.id_elsewhere(dep) {
                let msg = SlotMessage::Watch {
                    dependency: dep.clone(),
                    dependent: id.to_string(),
                    slot: mine,
                };
                self.send(target, &msg);
            }
        }
    }
}
