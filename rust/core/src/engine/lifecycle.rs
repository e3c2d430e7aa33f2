//! A job's life from push to a finish: push, pull and the lease, ack, failed attempts
//! with backoff, stalls, and the final failure that lands it in the dead-letter set.

use super::placement::Cause;
use super::{backoff_delay, Engine, FailOutcome, Pulled, PushOutcome, TimerKind, DEFAULT_NAME_ID};
use crate::error::{EngineError, Result};
use crate::events::{EventExtra, EventKind};
use crate::ids::JobId;
use crate::job::{
    ChildFailure, Job, JobExt, JobState, Lease, RemoteLinks, RepeatState, FLAG_DURABLE, FLAG_LIFO,
};
use crate::json_depth;
use crate::options::{check_queue_name, PushOptions, Removal};

/// Settling a job pulled with a lock owner, without its token.
pub const LOCK_TOKEN_REQUIRED: &str = "Lock token required for this job";

impl Engine {
    /// A repeating job may have `dependsOn` and a `jobId` (the page's own example has
    /// both): they apply to its first occurrence, which waits for the dependencies and
    /// carries the id; later occurrences are plain scheduled runs (`schedule_repeat`).
    /// In a cluster, a `dependsOn` naming another slot's job is kept in
    /// `remote_deps`, and that slot is asked about it once the job exists.
    fn check_push(&self, queue: &str, opts: &mut PushOptions) -> Result<()> {
        self.check_job_id_slot(opts.job_id.as_deref(), queue)?;
        opts.remote_deps = self.split_remote_deps(&opts.depends_on)?;
        Ok(())
    }

    /// Inserts a checked push; a new job with dependencies in other slots asks them.
    fn insert_pushed(&mut self, qid: u32, opts: PushOptions, now: u64) -> PushOutcome {
        let remote = opts.remote_deps.clone();
        let outcome = self.insert(qid, opts, now, 1);
        if !outcome.duplicate && !remote.is_empty() {
            self.watch_remote_deps(&outcome.id, &remote);
        }
        outcome
    }

    pub fn push(&mut self, queue: &str, mut opts: PushOptions) -> Result<PushOutcome> {
        let now = self.tick();
        if let Some(slot) = self.held_in_cluster(&opts) {
            return Ok(self.duplicate_of(slot, now));
        }
        let qid = self.queue_or_create(queue)?;
        self.check_push(queue, &mut opts)?;
        Ok(self.insert_pushed(qid, opts, now))
    }

    /// Pushes a batch atomically: every job is validated before any is added.
    pub fn push_many(
        &mut self,
        queue: &str,
        mut batch: Vec<PushOptions>,
    ) -> Result<Vec<PushOutcome>> {
        let now = self.tick();
        let qid = self.queue_or_create(queue)?;
        for (i, opts) in batch.iter_mut().enumerate() {
            self.check_push(queue, opts).map_err(|e| EngineError {
                kind: e.kind,
                message: format!("job {i}: {}", e.message),
            })?;
        }
        Ok(batch
            .into_iter()
            .map(|o| self.insert_pushed(qid, o, now))
            .collect())
    }

    /// In a cluster of several slots, a push whose `jobId` this slot holds is answered
    /// as a duplicate whatever its queue: the fronts send a push here when the id
    /// registry names this slot for its id, even if its queue lives in another slot
    /// (one server answers a duplicate `jobId` the same way across queues).
    fn held_in_cluster(&self, opts: &PushOptions) -> Option<u32> {
        self.config.cluster_slot?;
        self.slot_of(opts.job_id.as_deref()?)
    }

    fn duplicate_of(&mut self, slot: u32, now: u64) -> PushOutcome {
        self.totals.duplicated += 1;
        self.emit(EventKind::Duplicated, slot, now, EventExtra::None);
        let job = self.job(slot);
        PushOutcome {
            id: job.id.to_string(),
            duplicate: true,
            durable: job.durable(),
        }
    }

    pub(super) fn insert(
        &mut self,
        qid: u32,
        mut opts: PushOptions,
        now: u64,
        repeat_count: u32,
    ) -> PushOutcome {
        let id = match &opts.job_id {
            Some(custom) => {
                let id = JobId::parse(custom);
                if let Some(slot) = self.find(&id) {
                    return self.duplicate_of(slot, now);
                }
                id
            }
            None => JobId::Uuid(self.id_gen.next(now)),
        };
        if let Some(key) = &opts.unique_key {
            if let Some(&slot) = self.queues[qid as usize].dedup.get(key.as_str()) {
                return self.duplicate_of(slot, now);
            }
        }
        // Most jobs have no name: name id 0 is "default", interned at start.
        let name = opts
            .name
            .as_deref()
            .map_or(DEFAULT_NAME_ID, |n| self.intern_name(n));
        let data = std::mem::take(&mut opts.data);
        let job = new_job(&opts, id, data, qid, name, now, repeat_count);
        let slot = self.alloc(job);
        self.durable_pushed |= opts.durable;
        if let Some(key) = opts.unique_key {
            self.queues[qid as usize].dedup.insert(key.into(), slot);
        }
        self.totals.pushed += 1;
        let window = self.config.metrics_window_ms;
        self.queues[qid as usize]
            .metrics
            .record_pushes(now, name, 1, window);
        self.record_push(qid, name, now);
        if self.events.enabled() {
            let data = self.job(slot).data.clone();
            self.emit(EventKind::Pushed, slot, now, EventExtra::Data(data));
        }
        // Link to dependencies: completed ones are satisfied, failed ones fail this job.
        // Dependencies held by other slots are pending until they say otherwise.
        let mut pending = opts.remote_deps.len() as u32;
        let mut failed_dep = None;
        let my_id = self.job(slot).id.clone();
        for dep in &opts.depends_on {
            if opts.remote_deps.contains(dep) {
                continue;
            }
            let Some(dslot) = self.slot_of(dep) else {
                continue;
            };
            match self.job(dslot).state {
                JobState::Completed => {}
                JobState::Failed => failed_dep = Some(dep.clone()),
                _ => {
                    pending += 1;
                    self.job_mut(dslot).ext_mut().dependents.push(my_id.clone());
                }
            }
        }
        if let Some(ttl) = opts.ttl {
            self.add_timer(now.saturating_add(ttl), TimerKind::Ttl, slot);
        }
        if let Some(dep) = failed_dep {
            // It waits for its dependencies first, so that failing is a legal move from
            // a state it is really in.
            self.transition(slot, JobState::WaitingChildren, Cause::Push, now, |job| {
                job.ext_mut().pending_deps = pending;
            });
            self.finish_failed(slot, format!("Dependency {dep} failed"), now);
        } else if pending > 0 {
            self.transition(slot, JobState::WaitingChildren, Cause::Push, now, |job| {
                job.ext_mut().pending_deps = pending;
            });
            self.emit(EventKind::WaitingChildren, slot, now, EventExtra::None);
        } else {
            self.make_runnable(slot, now, Cause::Push, |_| {});
        }
        let job = self.job(slot);
        PushOutcome {
            id: job.id.to_string(),
            duplicate: false,
            durable: job.durable(),
        }
    }

    /// Leases the next ready job of `queue` to `owner` (0 = no connection). Returns the
    /// slot and the lock token.
    pub fn pull(&mut self, queue: &str, owner: u64) -> Result<Option<(u32, String)>> {
        self.pull_locked(queue, owner, None, false)
    }

    /// `pull` with a lease of `lock_ms` (default: the stall interval) before it stalls;
    /// `token_required`: settling or renewing it needs the token.
    pub fn pull_locked(
        &mut self,
        queue: &str,
        owner: u64,
        lock_ms: Option<u64>,
        token_required: bool,
    ) -> Result<Option<(u32, String)>> {
        let now = self.tick();
        let Some(qid) = self.queue_id(queue) else {
            check_queue_name(queue)?;
            return Ok(None);
        };
        let q = &self.queues[qid as usize];
        if q.paused {
            return Ok(None);
        }
        let limited = q.limits.is_some();
        if limited && self.limits_block(qid, now) {
            return Ok(None);
        }
        let q = &self.queues[qid as usize];
        let grouped = q.group_rules.is_some();
        let slot = if grouped {
            self.pick_grouped(qid, now)
        } else if q.paused_names.is_empty() {
            q.ready.first_where(|_| true)
        } else {
            let jobs = &self.jobs;
            q.ready.first_where(|s| {
                !q.paused_names
                    .contains(&jobs.get(s).expect("ready slot").name)
            })
        };
        let Some(slot) = slot else { return Ok(None) };
        let token = self.id_gen.next(now);
        let stall_deadline = self.lease_deadline(qid, now, now, lock_ms);
        self.transition(slot, JobState::Active, Cause::Pull, now, |job| {
            job.started_at = now;
            let timeout_deadline = job
                .ext()
                .and_then(|e| e.timeout)
                .map(|t| now.saturating_add(t));
            job.lease = Some(Box::new(Lease {
                token,
                owner,
                stall_deadline,
                timeout_deadline,
                token_required,
            }));
        });
        if limited {
            self.note_limited_pull(qid, now);
        }
        if grouped {
            self.note_group_pull(qid, slot, now);
        }
        self.totals.pulled += 1;
        self.emit(EventKind::Pulled, slot, now, EventExtra::None);
        if self.queues[qid as usize].ready.is_empty() {
            self.emit_queue(EventKind::Drained, qid, now, EventExtra::None);
        }
        Ok(Some((slot, JobId::Uuid(token).to_string())))
    }

    /// `pull`, returning a copy of what a worker needs.
    pub fn pull_job(&mut self, queue: &str, owner: u64) -> Result<Option<Pulled>> {
        let Some((slot, token)) = self.pull(queue, owner)? else {
            return Ok(None);
        };
        let job = self.job(slot);
        Ok(Some(Pulled {
            id: job.id.to_string(),
            token,
            data: job.data.clone(),
            name: self.job_names[job.name as usize].to_string(),
            priority: job.priority,
            attempts: job.attempts,
            max_attempts: job.max_attempts,
            created_at: job.created_at,
        }))
    }

    /// `pull`, returning the job's JSON (with `state`) and the lock token.
    pub fn pull_rendered(&mut self, queue: &str, owner: u64) -> Result<Option<(String, String)>> {
        let Some((slot, token)) = self.pull(queue, owner)? else {
            return Ok(None);
        };
        let mut out = String::with_capacity(256 + self.job(slot).data.len());
        self.render(slot, &mut out);
        Ok(Some((out, token)))
    }

    /// The slot of an active job whose lease matches `token` (`None` skips the check, as
    /// the job server's ack/fail without a token do).
    pub(super) fn leased_slot(&self, id: &str, token: Option<&str>) -> Result<u32> {
        self.leased_slot_for(id, token, true)
    }

    /// `leased_slot`; `settling`: an ack, fail or renewal, which a lease pulled with a
    /// lock owner allows only with its token (progress reports do not need it).
    fn leased_slot_for(&self, id: &str, token: Option<&str>, settling: bool) -> Result<u32> {
        let slot = self
            .slot_of(id)
            .filter(|&s| self.job(s).state == JobState::Active)
            .ok_or_else(|| EngineError::state("Job not found or not active"))?;
        let lease = self
            .job(slot)
            .lease
            .as_ref()
            .expect("active job has a lease");
        match token {
            Some(token) if JobId::parse(token) != JobId::Uuid(lease.token) => {
                return Err(EngineError::lock("Invalid lock token for this job"));
            }
            None if settling && lease.token_required => {
                return Err(EngineError::lock(LOCK_TOKEN_REQUIRED));
            }
            _ => {}
        }
        Ok(slot)
    }

    pub fn ack(&mut self, id: &str, token: Option<&str>, result: Option<Box<str>>) -> Result<()> {
        if let Some(r) = &result {
            json_depth::check(r, "result")?;
        }
        let now = self.tick();
        let slot = self.leased_slot(id, token)?;
        self.complete(slot, result, now);
        Ok(())
    }

    pub fn fail(
        &mut self,
        id: &str,
        token: Option<&str>,
        error: Option<Box<str>>,
    ) -> Result<FailOutcome> {
        let now = self.tick();
        let slot = self.leased_slot(id, token)?;
        Ok(self.fail_attempt(slot, error, now))
    }

    /// Renews a lease for `duration_ms` (default: the queue's stall interval); returns the
    /// new stall deadline (`u64::MAX`: none, stalls are off for the queue). A renewed job is
    /// no longer tied to the connection that pulled it: if that connection closes, the
    /// job stays active until its lease runs out (the reference's rule, which lets a
    /// worker that reconnects finish what it holds).
    pub fn extend_lease(
        &mut self,
        id: &str,
        token: Option<&str>,
        duration_ms: Option<u64>,
    ) -> Result<u64> {
        self.renew(id, token, duration_ms, true)
    }

    /// `extend_lease` where a lease pulled with a lock owner may be renewed without its
    /// token (a given token must still match): the reference's ExtendLock.
    pub fn extend_lock(
        &mut self,
        id: &str,
        token: Option<&str>,
        duration_ms: Option<u64>,
    ) -> Result<u64> {
        self.renew(id, token, duration_ms, false)
    }

    fn renew(
        &mut self,
        id: &str,
        token: Option<&str>,
        duration_ms: Option<u64>,
        token_checked: bool,
    ) -> Result<u64> {
        let now = self.tick();
        let slot = self.leased_slot_for(id, token, token_checked)?;
        let job = self.job(slot);
        let deadline = self.lease_deadline(job.queue, now, job.started_at, duration_ms);
        // Re-enter the active state so the lease's deadline index moves with it.
        self.refresh(slot, now, |job| {
            let lease = job.lease.as_mut().expect("active job has a lease");
            lease.stall_deadline = deadline;
            lease.owner = 0;
        });
        Ok(deadline)
    }

    /// Fails an active job for good, whatever attempts it has left (an unrecoverable
    /// error).
    pub fn fail_for_good(
        &mut self,
        id: &str,
        token: Option<&str>,
        error: Option<Box<str>>,
    ) -> Result<()> {
        let now = self.tick();
        let slot = self.leased_slot(id, token)?;
        let job = self.job_mut(slot);
        job.attempts = job.attempts.saturating_add(1);
        let message = error.map_or_else(|| "Job failed".to_string(), String::from);
        self.finish_failed(slot, message, now);
        Ok(())
    }

    /// Gives an active job back to its queue without counting an attempt (a worker that
    /// closes returns what it buffered), promotes a delayed one and retries a failed
    /// one; a waiting job stays as it is.
    pub fn move_to_wait(&mut self, id: &str, token: Option<&str>) -> Result<()> {
        let now = self.tick();
        let slot = self
            .slot_of(id)
            .ok_or_else(|| EngineError::not_found(format!("Job not found: {id}")))?;
        match self.job(slot).state {
            JobState::Waiting => Ok(()),
            JobState::Active => {
                let slot = self.leased_slot(id, token)?;
                self.give_back(slot, now);
                Ok(())
            }
            JobState::Delayed => self.promote(id),
            JobState::Failed => self.retry(id),
            state => Err(EngineError::state(format!(
                "Cannot move job from state '{}' to waiting",
                state.as_str()
            ))),
        }
    }

    pub fn progress(&mut self, id: &str, token: Option<&str>, progress: u8) -> Result<()> {
        self.progress_noted(id, token, progress, None)
    }

    /// `progress` with the message a worker sent along (carried by the event only).
    pub fn progress_noted(
        &mut self,
        id: &str,
        token: Option<&str>,
        progress: u8,
        message: Option<Box<str>>,
    ) -> Result<()> {
        if progress > 100 {
            return Err(EngineError::invalid("progress must be between 0 and 100"));
        }
        let now = self.tick();
        let slot = self.leased_slot_for(id, token, false)?;
        self.job_mut(slot).progress = progress;
        self.emit(
            EventKind::Progress,
            slot,
            now,
            EventExtra::Progress(progress, message),
        );
        Ok(())
    }

    /// Returns every job leased by `owner` to waiting (a closed connection). Returns how
    /// many were released.
    pub fn release_owner(&mut self, owner: u64) -> usize {
        let now = self.tick();
        let Some(slots) = self.owners.remove(&owner) else {
            return 0;
        };
        for &slot in &slots {
            self.give_back(slot, now);
        }
        slots.len()
    }

    /// An active job back to waiting without counting an attempt: its holder let go.
    fn give_back(&mut self, slot: u32, now: u64) {
        self.enqueue_ready(slot, now, Cause::OwnerGone, |job| job.lease = None);
        self.emit(
            EventKind::Retried,
            slot,
            now,
            EventExtra::Prev(JobState::Active),
        );
    }

    fn complete(&mut self, slot: u32, result: Option<Box<str>>, now: u64) {
        let job = self.job(slot);
        let (qid, took) = (job.queue, now.saturating_sub(job.started_at));
        self.count_finish(slot, true, took, now);
        let stored = result.clone();
        self.transition(slot, JobState::Completed, Cause::Ack, now, |job| {
            job.lease = None;
            job.finished_at = now;
            if let Some(r) = stored {
                job.ext_mut().result = Some(r);
            }
        });
        let extra = result.map_or(EventExtra::None, EventExtra::Result);
        self.emit(EventKind::Completed, slot, now, extra);
        self.hand_result_to_parent(slot);
        self.settle_dependents(slot, now);
        self.tell_remote_dependents(slot, |e, _| e.completed_outcome(slot));
        self.schedule_repeat(slot, now);
        self.retain_finished(slot, qid, JobState::Completed, now);
    }

    pub(super) fn fail_attempt(
        &mut self,
        slot: u32,
        error: Option<Box<str>>,
        now: u64,
    ) -> FailOutcome {
        let job = self.job_mut(slot);
        job.attempts = job.attempts.saturating_add(1);
        let (attempts, max, backoff) = (job.attempts, job.max_attempts, u64::from(job.backoff));
        if let Some(e) = error.clone() {
            job.ext_mut().error = Some(e);
        }
        let message = error.clone().unwrap_or_else(|| "Job failed".into());
        if attempts >= max {
            self.finish_failed(slot, message.into(), now);
            return FailOutcome::Dead;
        }
        self.emit(EventKind::Failed, slot, now, EventExtra::Error(message));
        let delay = backoff_delay(backoff, attempts);
        self.totals.retried += 1;
        // `runAt` keys only the delayed index, so it may change while the job is active;
        // `make_runnable` reads it to choose between delayed and waiting.
        self.job_mut(slot).run_at = now + delay;
        self.make_runnable(slot, now, Cause::AttemptFailed, |job| job.lease = None);
        FailOutcome::Retrying { delay }
    }

    pub(super) fn stall(&mut self, slot: u32, now: u64) {
        let job = self.job_mut(slot);
        job.stalls = job.stalls.saturating_add(1);
        let (stalls, qid) = (job.stalls, job.queue);
        self.totals.stalled += 1;
        self.emit(EventKind::Stalled, slot, now, EventExtra::None);
        if u64::from(stalls) >= self.max_stalls_of(qid) {
            let job = self.job_mut(slot);
            job.attempts = job.attempts.saturating_add(1);
            self.finish_failed(slot, "Job stalled more than the allowed limit".into(), now);
        } else {
            self.enqueue_ready(slot, now, Cause::Stall, |job| job.lease = None);
        }
    }

    /// Counts a job's finish (completed if `ok`, else failed for good) in the totals and
    /// its queue's per-minute metrics, and records the metric for the log.
    fn count_finish(&mut self, slot: u32, ok: bool, took: u64, now: u64) {
        let job = self.job(slot);
        let (qid, name) = (job.queue, job.name);
        let window = self.config.metrics_window_ms;
        self.queues[qid as usize]
            .metrics
            .record(now, name, ok, took, window);
        self.record_metric(qid, name, now, ok, took);
        if ok {
            self.totals.completed += 1;
        } else {
            self.totals.failed += 1;
        }
    }

    /// Moves a job to the failed set for good, and fails every job that waits on it.
    pub(super) fn finish_failed(&mut self, slot: u32, error: String, now: u64) {
        let mut work = vec![(slot, error)];
        while let Some((slot, error)) = work.pop() {
            if self.jobs.get(slot).is_none() {
                continue;
            }
            let state = self.job(slot).state;
            if state.is_finished() {
                continue;
            }
            let job = self.job(slot);
            let qid = job.queue;
            let took = if state == JobState::Active {
                now.saturating_sub(job.started_at)
            } else {
                0
            };
            self.count_finish(slot, false, took, now);
            self.transition(slot, JobState::Failed, Cause::FailedForGood, now, |job| {
                job.lease = None;
                job.finished_at = now;
                job.ext_mut().error = Some(error.as_str().into());
            });
            self.emit(
                EventKind::Failed,
                slot,
                now,
                EventExtra::Error(error.as_str().into()),
            );
            let id = self.job(slot).id.to_string();
            let parent = self.job(slot).flow().and_then(|f| f.parent.clone());
            for ds in self.blocked_dependents(slot) {
                // A flow child acts on its parent by its own policy.
                if parent.as_ref() == Some(&self.job(ds).id) {
                    let child = self.job(slot).id.clone();
                    let key = self.child_key(slot);
                    let policy = self
                        .job(slot)
                        .flow()
                        .map_or(ChildFailure::Wait, |f| f.on_failure);
                    if let Some(e) = self.child_failed(ds, &child, &key, policy, &error, now) {
                        work.push((ds, e));
                    }
                    continue;
                }
                work.push((ds, format!("Dependency {id} failed")));
            }
            self.tell_remote_dependents(slot, |e, d| e.failed_outcome(slot, &error, d));
            if state == JobState::Active {
                self.schedule_repeat(slot, now);
            }
            self.retain_finished(slot, qid, JobState::Failed, now);
            self.note_dead_letter(qid, slot, now);
        }
    }
}

/// A new job as a push creates it (waiting; `insert` places it), in queue `qid` under
/// job name id `name`.
pub(super) fn new_job(
    opts: &PushOptions,
    id: JobId,
    data: Box<str>,
    qid: u32,
    name: u32,
    now: u64,
    repeat_count: u32,
) -> Job {
    let needs_ext = opts.ttl.is_some()
        || opts.timeout.is_some()
        || opts.unique_key.is_some()
        || !opts.tags.is_empty()
        || opts.group_id.is_some()
        || !opts.depends_on.is_empty()
        || opts.repeat.is_some()
        || opts.remove_on_complete != Removal::Keep
        || opts.remove_on_fail != Removal::Keep
        || opts.delay > 0;
    let ext = needs_ext.then(|| {
        Box::new(JobExt {
            ttl: opts.ttl,
            timeout: opts.timeout,
            unique_key: opts.unique_key.as_deref().map(Into::into),
            tags: opts.tags.iter().map(|t| t.as_str().into()).collect(),
            group_id: opts.group_id.as_deref().map(Into::into),
            depends_on: opts.depends_on.iter().map(|d| JobId::parse(d)).collect(),
            pending_deps: 0,
            dependents: Vec::new(),
            remove_on_complete: opts.remove_on_complete,
            remove_on_fail: opts.remove_on_fail,
            repeat: opts.repeat.clone().map(|spec| RepeatState {
                spec,
                count: repeat_count,
                successor_scheduled: false,
            }),
            result: None,
            error: None,
            flow: None,
            dlq_retries: 0,
            delay: opts.delay,
            remote: (!opts.remote_deps.is_empty()).then(|| {
                Box::new(RemoteLinks {
                    deps: opts
                        .remote_deps
                        .iter()
                        .map(|d| (JobId::parse(d), false))
                        .collect(),
                    dependents: Vec::new(),
                })
            }),
        })
    });
    let flags = if opts.lifo { FLAG_LIFO } else { 0 } | if opts.durable { FLAG_DURABLE } else { 0 };
    Job {
        id,
        data,
        ext,
        lease: None,
        created_at: now,
        run_at: now + opts.delay,
        started_at: 0,
        finished_at: 0,
        seq: 0,
        gen: 0,
        queue: qid,
        name,
        priority: opts.priority,
        backoff: opts.backoff.min(u32::MAX as u64) as u32,
        attempts: 0,
        max_attempts: opts.max_attempts.min(u16::MAX as u32) as u16,
        stalls: 0,
        progress: 0,
        state: JobState::Waiting,
        flags,
    }
}
