//! Where a job sits. Every state change goes through `transition`, which checks the
//! move against the state machine (`docs/state-machine.md`) and moves the job between the
//! per-state indexes (`detach`, then `attach`), so counts and lists can never disagree.
//! Also here: the ready order (`enqueue_ready`) and the bounds on finished sets.

use super::{Engine, TimerKind};
use crate::events::{EventExtra, EventKind};
use crate::job::{Job, JobState};
use crate::options::Removal;
use crate::priority_queue::OrderKey;

/// Why a job changes state: the rule of `docs/state-machine.md` being applied. It names
/// the move in the report of an illegal one, and says whether the job is new.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Cause {
    /// A new job (or a repeat occurrence) takes its first state. Only for a job just
    /// allocated: it is in no index yet, so there is nothing to leave.
    Push,
    /// Its `runAt` was reached.
    DelayEnded,
    Promote,
    Pull,
    Ack,
    /// A failed attempt (or a timeout) with attempts left: back off and run again.
    AttemptFailed,
    /// A lease not renewed in time, below `max_stalls`.
    Stall,
    /// The connection that leased it closed (`release_owner`).
    OwnerGone,
    /// No way forward: last attempt, `max_stalls`, cancel, or a dependency failed or
    /// was removed.
    FailedForGood,
    /// Every dependency completed (or a flow child's failure policy released it).
    DependenciesMet,
    /// An active job found dependencies still pending (`move_to_waiting_children`).
    ChildrenPending,
    Retry,
    /// Put off by request: an active job moved to delayed, a pending job's time changed
    /// (`moves.rs`).
    Deferred,
    /// Recovery creates the job from a log or snapshot record (just allocated, as for
    /// `Push`).
    Load,
    /// Recovery sets an existing job to a record's state.
    Replay,
}

/// Whether the state machine allows a job in `from` (`None`: a new job, in no state yet)
/// to move to `to`. Every legal pair is listed, each with its rule; the transition table
/// of `docs/state-machine.md` lists the same pairs (a test compares them). Removal is not
/// a move: a job leaves every state by `discard`.
fn is_legal(from: Option<JobState>, to: JobState) -> bool {
    use JobState::{Active, Completed, Delayed, Failed, Waiting, WaitingChildren};
    match (from, to) {
        // push: no delay and no pending dependency / a delay / pending dependencies
        (None, Waiting | Delayed | WaitingChildren) => true,
        // pull
        (Some(Waiting), Active) => true,
        // runAt reached, promote
        (Some(Delayed), Waiting) => true,
        // all dependencies completed, by runAt; a dependency failed or was removed
        (Some(WaitingChildren), Waiting | Delayed | Failed) => true,
        // ack
        (Some(Active), Completed) => true,
        // failed attempt with backoff 0, stall below max_stalls, owner gone
        (Some(Active), Waiting) => true,
        // failed attempt with backoff
        (Some(Active), Delayed) => true,
        // last attempt failed or timed out, max_stalls reached, cancel, discard
        (Some(Active), Failed) => true,
        // move to waiting-children: dependencies still pending
        (Some(Active), WaitingChildren) => true,
        // a waiting job's delay changed
        (Some(Waiting), Delayed) => true,
        // discarded before it started
        (Some(Waiting | Delayed), Failed) => true,
        // retry, retry_all, retry_failures
        (Some(Completed | Failed), Waiting) => true,
        _ => false,
    }
}

impl Engine {
    /// Moves a job to `to`: it leaves its current state's index, `change` edits its
    /// fields (those that key an index may change only here), and it enters `to`'s.
    ///
    /// An illegal move is a bug in a rule. Debug builds (and so every test) panic on it.
    /// Release builds make the move anyway and report it on stderr: the indexes stay
    /// consistent for any pair (leaving and entering are exact inverses), whereas
    /// refusing would strand a half-applied rule (say, an active job already stripped of
    /// its lease) for a later `expect` to panic on, and a panic must never reach Python.
    /// Recovery (`Load`, `Replay`) is not checked: a record states a result, not a move.
    pub(super) fn transition(
        &mut self,
        slot: u32,
        to: JobState,
        cause: Cause,
        now: u64,
        change: impl FnOnce(&mut Job),
    ) {
        let from = match cause {
            Cause::Push | Cause::Load => None,
            _ => Some(self.job(slot).state),
        };
        let legal = matches!(cause, Cause::Load | Cause::Replay) || is_legal(from, to);
        debug_assert!(legal, "illegal transition {from:?} -> {to:?} ({cause:?})");
        if !legal {
            eprintln!("hopper-core: bug: illegal move {from:?} -> {to:?} ({cause:?}), made anyway");
        }
        if from.is_some() {
            self.detach(slot);
        }
        change(self.jobs.get_mut(slot).expect("slot holds a job"));
        self.attach(slot, to, now);
    }

    /// Edits fields that key the job's current index (a priority, a lease deadline, a
    /// finished job's footprint) by leaving and re-entering it. Not a state change.
    pub(super) fn refresh(&mut self, slot: u32, now: u64, change: impl FnOnce(&mut Job)) {
        let state = self.job(slot).state;
        self.detach(slot);
        change(self.jobs.get_mut(slot).expect("slot holds a job"));
        self.attach(slot, state, now);
    }

    /// Removes a job from every index and the slab, with no cascade and no event.
    pub(super) fn discard(&mut self, slot: u32) {
        self.detach(slot);
        let job = self.release(slot);
        if let Some(key) = job.unique_key() {
            let q = &mut self.queues[job.queue as usize];
            if q.dedup.get(key) == Some(&slot) {
                q.dedup.remove(key);
            }
        }
    }

    /// Leaves the current state's index (and the flow, repeat, group, lease and owner
    /// indexes that follow it).
    fn detach(&mut self, slot: u32) {
        let mut freed_qid = None;
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
                let key = OrderKey::new(job.priority, job.seq);
                q.ready.remove(&key);
                if let Some(rules) = q.group_rules.as_deref_mut() {
                    rules.remove_ready(job.group_id(), &key);
                }
                if let Some(g) = job.group_id() {
                    q.group_mut(g).waiting -= 1;
                    q.prune_group(g);
                }
            }
            JobState::Delayed => {
                q.delayed.remove(&(job.run_at, slot));
                if let Some(g) = job.group_id() {
                    q.group_mut(g).delayed -= 1;
                    q.prune_group(g);
                }
            }
            JobState::Active => {
                q.active.remove(&(job.started_at, slot));
                // A concurrency slot frees: waiters held back by it may pull again.
                if q.limits.is_some() || q.group_rules.is_some() {
                    freed_qid = Some(job.queue);
                }
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
        if let Some(qid) = freed_qid {
            self.wake_if_ready(qid);
        }
    }

    /// Enters `state` and its indexes; the only place a job's state is assigned.
    fn attach(&mut self, slot: u32, state: JobState, now: u64) {
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
                let key = OrderKey::new(job.priority, job.seq);
                q.ready.insert(key, slot);
                if let Some(rules) = q.group_rules.as_deref_mut() {
                    rules.insert_ready(job.group_id(), key, slot);
                }
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
                if let Some(g) = job.group_id() {
                    q.group_mut(g).delayed += 1;
                }
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
                    // A lease that never stalls (stalls disabled for its queue) has no
                    // deadline to keep.
                    if stall_at != u64::MAX {
                        self.lease_deadlines.insert((stall_at, slot));
                        self.note_deadline(stall_at);
                    }
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

    /// Moves a job to waiting, at the back (or, for lifo, the front) of its priority.
    pub(super) fn enqueue_ready(
        &mut self,
        slot: u32,
        now: u64,
        cause: Cause,
        change: impl FnOnce(&mut Job),
    ) {
        self.next_seq += 1;
        let seq = self.next_seq;
        self.transition(slot, JobState::Waiting, cause, now, |job| {
            change(job);
            job.seq = if job.lifo() { -seq } else { seq };
        });
    }

    /// Moves a job that may run (new, dependencies met, or backing off) to delayed or
    /// waiting by its `runAt`.
    pub(super) fn make_runnable(
        &mut self,
        slot: u32,
        now: u64,
        cause: Cause,
        change: impl FnOnce(&mut Job),
    ) {
        let run_at = self.job(slot).run_at;
        if run_at > now {
            self.transition(slot, JobState::Delayed, cause, now, change);
            self.emit(
                EventKind::Delayed,
                slot,
                now,
                EventExtra::Delay(run_at - now),
            );
        } else {
            self.enqueue_ready(slot, now, cause, change);
        }
    }

    /// Applies a job's removeOnComplete (or, finished in `state` failed, removeOnFail):
    /// `Remove` drops that job alone, `KeepLast(n)` trims its queue's set to the newest
    /// `n`. Then the engine's retention bounds apply.
    pub(super) fn retain_finished(&mut self, slot: u32, qid: u32, state: JobState, now: u64) {
        let removal = self.job(slot).ext().map_or(Removal::Keep, |e| {
            if state == JobState::Failed {
                e.remove_on_fail
            } else {
                e.remove_on_complete
            }
        });
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
    /// For the failed set, the queue's dead-letter `max_entries` bounds it too.
    pub(super) fn enforce_retention(&mut self, qid: u32, state: JobState, keep: Option<usize>) {
        let i = usize::from(state == JobState::Failed);
        let mut max_count = keep.unwrap_or(usize::MAX).min(self.config.retention_count);
        if i == 1 {
            max_count = max_count.min(self.dlq_max_entries(qid));
        }
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

#[cfg(test)]
mod tests {
    use super::is_legal;
    use crate::job::JobState;

    /// The (from, to) pairs of the transition table in `docs/state-machine.md`.
    fn documented_moves() -> Vec<(Option<JobState>, JobState)> {
        let doc = include_str!("../../../../docs/state-machine.md");
        let table = doc
            .split("## Transitions")
            .nth(1)
            .expect("the doc has a Transitions section");
        let state = |cell: &str| {
            let name = cell.trim().trim_matches('`');
            (name != "(new)").then(|| JobState::parse(name).expect("a state name"))
        };
        table
            .lines()
            .take_while(|l| !l.starts_with("## "))
            .filter_map(|l| {
                let cells: Vec<&str> = l.split('|').collect();
                let from = cells.get(1)?.trim();
                (from == "(new)" || from.starts_with('`')).then(|| {
                    let to = state(cells[2]).expect("a move goes to a state");
                    (state(from), to)
                })
            })
            .collect()
    }

    #[test]
    fn legal_moves_are_exactly_the_documented_ones() {
        let documented = documented_moves();
        assert_eq!(documented.len(), 18, "{documented:?}");
        let froms = std::iter::once(None).chain(JobState::ALL.map(Some));
        for from in froms {
            for to in JobState::ALL {
                assert_eq!(
                    is_legal(from, to),
                    documented.contains(&(from, to)),
                    "{from:?} -> {to:?}"
                );
            }
        }
    }
}
