//! Where a job sits. Every state change goes through `transition`, which checks the
//! move against the state machine (`docs/state-machine.md`) and moves the job between the
//! per-state indexes (`detach`, then `attach`), so counts and lists can never disagree.
//! Also here: the ready order (`enqueue_ready`) and the bounds on finished sets.

use super::{Engine, TimerKind};
use crate::events::{EventExtra, EventKind};
use crate::job::JobState;
use crate::options::Removal;
use crate::priority_queue::OrderKey;

impl Engine {
    pub(super) fn detach(&mut self, slot: u32) {
        let job = self.jobs.get(slot).expect("slot holds a job");
        let q = &mut self.queues[job.queue as usize];
        if let Some(ext) = job.ext() {
            if !ext.depends_on.is_empty() {
                q.flow_parents.remove(&(job.created_at, slot));
            }
            if ext.repeat.is_some() {
                q.scheduled -= 1;
            }
        }
        match job.state {
            JobState::Waiting => {
                q.ready.remove(&OrderKey::new(job.priority, job.seq));
                if let Some(g) = job.group_id() {
                    q.group_mut(g).waiting -= 1;
                    q.prune_group(g);
                }
            }
            JobState::Delayed => {
                q.delayed.remove(&(job.run_at, slot));
            }
            JobState::Active => {
                q.active.remove(&(job.started_at, slot));
                if let Some(g) = job.group_id() {
                    q.group_mut(g).active -= 1;
                    q.prune_group(g);
                }
                if let Some(lease) = &job.lease {
                    self.lease_deadlines.remove(&(lease.stall_deadline, slot));
                    if let Some(at) = lease.timeout_deadline {
                        self.timeout_deadlines.remove(&(at, slot));
                    }
                    if let Some(set) = self.owners.get_mut(&lease.owner) {
                        set.remove(&slot);
                        if set.is_empty() {
                            self.owners.remove(&lease.owner);
                        }
                    }
                }
            }
            JobState::WaitingChildren => {
                q.waiting_children.remove(&(job.created_at, slot));
            }
            JobState::Completed | JobState::Failed => {
                let i = usize::from(job.state == JobState::Failed);
                let set = if i == 0 {
                    &mut q.completed
                } else {
                    &mut q.failed
                };
                set.remove(&(job.finished_at, slot));
                q.finished_bytes[i] = q.finished_bytes[i].saturating_sub(job.footprint());
            }
        }
    }

    pub(super) fn attach(&mut self, slot: u32, state: JobState, now: u64) {
        self.mark_dirty(slot, false);
        let job = self.jobs.get_mut(slot).expect("slot holds a job");
        job.state = state;
        let qid = job.queue;
        let q = &mut self.queues[qid as usize];
        q.latest_activity = now;
        if let Some(ext) = job.ext() {
            if !ext.depends_on.is_empty() {
                q.flow_parents.insert((job.created_at, slot));
            }
            if ext.repeat.is_some() {
                q.scheduled += 1;
            }
        }
        match state {
            JobState::Waiting => {
                q.ready.insert(OrderKey::new(job.priority, job.seq), slot);
                if let Some(g) = job.group_id() {
                    q.group_mut(g).waiting += 1;
                }
                if q.wake_requested && !q.paused {
                    q.wake_requested = false;
                    self.woken.push(qid);
                }
                self.work_added = true;
            }
            JobState::Delayed => {
                q.delayed.insert((job.run_at, slot));
                let at = job.run_at;
                self.add_timer(at, TimerKind::Delay, slot);
            }
            JobState::Active => {
                q.active.insert((job.started_at, slot));
                if let Some(g) = job.group_id() {
                    q.group_mut(g).active += 1;
                }
                if let Some(lease) = &job.lease {
                    if lease.owner != 0 {
                        self.owners.entry(lease.owner).or_default().insert(slot);
                    }
                    let (stall_at, timeout_at) = (lease.stall_deadline, lease.timeout_deadline);
                    self.lease_deadlines.insert((stall_at, slot));
                    self.note_deadline(stall_at);
                    if let Some(at) = timeout_at {
                        self.timeout_deadlines.insert((at, slot));
                        self.note_deadline(at);
                    }
                }
            }
            JobState::WaitingChildren => {
                q.waiting_children.insert((job.created_at, slot));
            }
            JobState::Completed | JobState::Failed => {
                // A finished job no longer holds its dedup key.
                if let Some(key) = job.ext.as_ref().and_then(|e| e.unique_key.as_deref()) {
                    if q.dedup.get(key) == Some(&slot) {
                        q.dedup.remove(key);
                    }
                }
                let i = usize::from(state == JobState::Failed);
                let set = if i == 0 {
                    &mut q.completed
                } else {
                    &mut q.failed
                };
                set.insert((job.finished_at, slot));
                q.finished_bytes[i] += job.footprint();
            }
        }
    }

    /// Puts a detached job at the back (or, for lifo, the front) of its priority.
    pub(super) fn enqueue_ready(&mut self, slot: u32, now: u64) {
        self.next_seq += 1;
        let seq = self.next_seq;
        let job = self.job_mut(slot);
        job.seq = if job.lifo() { -seq } else { seq };
        self.attach(slot, JobState::Waiting, now);
    }

    /// A detached job whose dependencies are met goes to delayed or waiting by `runAt`.
    pub(super) fn make_runnable(&mut self, slot: u32, now: u64) {
        let run_at = self.job(slot).run_at;
        if run_at > now {
            self.attach(slot, JobState::Delayed, now);
            self.emit(
                EventKind::Delayed,
                slot,
                now,
                EventExtra::Delay(run_at - now),
            );
        } else {
            self.enqueue_ready(slot, now);
        }
    }

    /// Applies a just-finished job's removeOnComplete/removeOnFail: `Remove` drops that job
    /// alone, `KeepLast(n)` trims its queue's set to the newest `n`. Then the engine's
    /// retention bounds apply.
    pub(super) fn retain_finished(
        &mut self,
        slot: u32,
        qid: u32,
        state: JobState,
        removal: Removal,
        now: u64,
    ) {
        let keep = match removal {
            Removal::Keep => None,
            Removal::Remove => {
                self.remove_slot(slot, now, false);
                None
            }
            Removal::KeepLast(n) => Some(n as usize),
        };
        self.enforce_retention(qid, state, keep);
    }

    /// Trims a finished set to the job's own keep-count and to the engine's retention
    /// bounds, oldest first.
    fn enforce_retention(&mut self, qid: u32, state: JobState, keep: Option<usize>) {
        let i = usize::from(state == JobState::Failed);
        let max_count = keep.unwrap_or(usize::MAX).min(self.config.retention_count);
        loop {
            let q = &self.queues[qid as usize];
            let set = if i == 0 { &q.completed } else { &q.failed };
            let over = set.len() > max_count || q.finished_bytes[i] > self.config.retention_bytes;
            let Some(&(_, oldest)) = set.first().filter(|_| over) else {
                break;
            };
            self.remove_slot(oldest, self.last_now, false);
        }
    }
}
