//! Operations on one job or a whole queue, as the management API asks for them: remove,
//! cancel, retry, promote, update, pause, drain, clean, obliterate.

use super::placement::Cause;
use super::Engine;
use crate::error::{EngineError, Result};
use crate::events::{EventExtra, EventKind};
use crate::job::JobState;
use crate::json_depth;
use crate::slot_message::Outcome;

impl Engine {
    /// Removes a job in any state, without checks. Jobs waiting on a removed live job
    /// fail, since what they wait for will never complete.
    pub(super) fn remove_slot(&mut self, slot: u32, now: u64, evented: bool) {
        let state = self.job(slot).state;
        if state.is_live() {
            self.fail_blocked_dependents(slot, "was removed", now);
        }
        if evented {
            self.emit(EventKind::Removed, slot, now, EventExtra::Prev(state));
        }
        self.unlink_from_dependencies(slot);
        self.discard(slot);
    }

    /// Fails the dependents still waiting for `slot`, with `Dependency <id> <why>`.
    fn fail_blocked_dependents(&mut self, slot: u32, why: &str, now: u64) {
        let id = self.job(slot).id.to_string();
        for ds in self.blocked_dependents(slot) {
            self.finish_failed(ds, format!("Dependency {id} {why}"), now);
        }
        // The job goes: its dependents in other slots hear it once.
        let gone = Outcome::Gone { why: why.into() };
        self.tell_remote_dependents(slot, |_, _| gone.clone());
        let ext = self.job_mut(slot).ext.as_deref_mut();
        if let Some(r) = ext.and_then(|e| e.remote.as_deref_mut()) {
            r.dependents.clear();
        }
    }

    /// Removes a job that is not active.
    pub fn remove(&mut self, id: &str) -> Result<()> {
        let now = self.tick();
        let slot = self.slot_or_404(id)?;
        if self.job(slot).state == JobState::Active {
            return Err(EngineError::state("Job is active; cancel it instead"));
        }
        self.remove_slot(slot, now, true);
        Ok(())
    }

    /// Cancels a job: an active job fails for good ("Job cancelled"), any other is removed.
    pub fn cancel(&mut self, id: &str) -> Result<()> {
        let now = self.tick();
        let slot = self.slot_or_404(id)?;
        if self.job(slot).state == JobState::Active {
            self.finish_failed(slot, "Job cancelled".into(), now);
        } else {
            self.remove_slot(slot, now, true);
        }
        Ok(())
    }

    /// Cancels a job that has not started: waiting, delayed or waiting for children.
    /// Active and finished jobs are refused (the job server's `DELETE /jobs/:id`).
    pub fn cancel_pending(&mut self, id: &str) -> Result<()> {
        let now = self.tick();
        let slot = self.slot_or_404(id)?;
        let state = self.job(slot).state;
        if matches!(state, JobState::Active) || state.is_finished() {
            return Err(EngineError::state(format!(
                "Job cannot be cancelled: it is {}",
                state.as_str()
            )));
        }
        self.remove_slot(slot, now, true);
        Ok(())
    }

    pub(super) fn retry_slot(&mut self, slot: u32, now: u64) {
        let job = self.job(slot);
        let (prev, qid, key) = (job.state, job.queue, job.unique_key().map(Box::<str>::from));
        self.enqueue_ready(slot, now, Cause::Retry, |job| {
            job.attempts = 0;
            job.stalls = 0;
            job.progress = 0;
            job.finished_at = 0;
            job.run_at = now;
            if let Some(ext) = job.ext.as_deref_mut() {
                ext.result = None;
                ext.error = None;
                ext.dlq_retries = 0;
            }
        });
        // Take the dedup key back unless another live job holds it now.
        if let Some(key) = key {
            self.queues[qid as usize].dedup.entry(key).or_insert(slot);
        }
        self.totals.retried += 1;
        self.emit(EventKind::Retried, slot, now, EventExtra::Prev(prev));
    }

    /// Runs a failed or completed job again from its first attempt.
    pub fn retry(&mut self, id: &str) -> Result<()> {
        let now = self.tick();
        let slot = self.slot_or_404(id)?;
        if !self.job(slot).state.is_finished() {
            return Err(EngineError::state(
                "Only failed or completed jobs can be retried",
            ));
        }
        self.retry_slot(slot, now);
        Ok(())
    }

    /// Makes a delayed job ready now.
    pub fn promote(&mut self, id: &str) -> Result<()> {
        let now = self.tick();
        let slot = self.slot_or_404(id)?;
        if self.job(slot).state != JobState::Delayed {
            return Err(EngineError::state("Only delayed jobs can be promoted"));
        }
        self.promote_slot(slot, now);
        Ok(())
    }

    pub(super) fn promote_slot(&mut self, slot: u32, now: u64) {
        self.enqueue_ready(slot, now, Cause::Promote, |job| job.run_at = now);
        self.emit(EventKind::Promoted, slot, now, EventExtra::None);
    }

    /// Replaces the data and/or priority of a job that is not active.
    pub fn update(
        &mut self,
        id: &str,
        data: Option<Box<str>>,
        priority: Option<i32>,
    ) -> Result<()> {
        let slot = self.slot_or_404(id)?;
        if self.job(slot).state == JobState::Active {
            return Err(EngineError::state("Active jobs cannot be edited"));
        }
        self.edit(slot, data, priority)
    }

    /// Replaces the data of a job in any state: a processor may rewrite the data of the
    /// job it holds (the reference's `job.updateData`).
    pub fn update_data(&mut self, id: &str, data: Box<str>) -> Result<()> {
        let slot = self.slot_or_404(id)?;
        self.edit(slot, Some(data), None)
    }

    fn edit(&mut self, slot: u32, data: Option<Box<str>>, priority: Option<i32>) -> Result<()> {
        let now = self.tick();
        if let Some(d) = &data {
            if d.len() > self.config.max_payload_bytes {
                return Err(EngineError::invalid("data is over the payload size limit"));
            }
            json_depth::check(d, "data")?;
        }
        self.mark_dirty(slot, data.is_some());
        self.refresh(slot, now, |job| {
            if let Some(d) = data {
                job.data = d;
            }
            if let Some(p) = priority {
                job.priority = p;
            }
        });
        Ok(())
    }

    /// Pauses a whole queue (`name = None`) or one job name in it.
    pub fn pause(&mut self, queue: &str, name: Option<&str>) -> Result<()> {
        self.set_paused(queue, name, true)
    }

    pub fn resume(&mut self, queue: &str, name: Option<&str>) -> Result<()> {
        self.set_paused(queue, name, false)
    }

    fn set_paused(&mut self, queue: &str, name: Option<&str>, paused: bool) -> Result<()> {
        let now = self.tick();
        let qid = self.queue_or_create(queue)?;
        let name_id = name.map(|n| self.intern_name(n));
        let q = &mut self.queues[qid as usize];
        match name_id {
            None => q.paused = paused,
            Some(n) if paused => {
                q.paused_names.insert(n);
            }
            Some(n) => {
                q.paused_names.remove(&n);
            }
        }
        if !paused && !q.ready.is_empty() {
            self.work_added = true;
            if q.wake_requested {
                q.wake_requested = false;
                self.woken.push(qid);
            }
        }
        self.record_queue_state(qid);
        let kind = if paused {
            EventKind::Paused
        } else {
            EventKind::Resumed
        };
        self.emit_queue(kind, qid, now, EventExtra::Name(name.map(Into::into)));
        Ok(())
    }

    /// Removes every waiting and delayed job of a queue. Returns how many.
    pub fn drain(&mut self, queue: &str) -> Result<usize> {
        let now = self.tick();
        let qid = self.existing_queue(queue)?;
        let q = &self.queues[qid as usize];
        // The jobs waiting for dependencies go first and with the rest: removed after
        // their dependencies, they would fail ("Dependency … was removed") instead.
        let slots: Vec<u32> = q
            .slots(JobState::WaitingChildren)
            .chain(q.ready.iter())
            .chain(q.delayed.iter().map(|&(_, s)| s))
            .collect();
        // Dependents in other queues cannot run without what was drained: they fail, and
        // their reason names the drain (the drained jobs leave no trace of their own).
        let why = format!("was removed by a drain of queue {queue}");
        for &slot in &slots {
            if self.jobs.get(slot).is_some() {
                self.fail_blocked_dependents(slot, &why, now);
                self.remove_slot(slot, now, false);
            }
        }
        self.emit_queue(EventKind::Drained, qid, now, EventExtra::None);
        Ok(slots.len())
    }

    /// Removes up to `limit` (0 = all) jobs in `state` older than `grace_ms` (by finish
    /// time for finished jobs, by creation time otherwise), oldest first. Returns their ids.
    pub fn clean(
        &mut self,
        queue: &str,
        state: JobState,
        grace_ms: u64,
        limit: usize,
    ) -> Result<Vec<String>> {
        if state == JobState::Active {
            return Err(EngineError::invalid("Active jobs cannot be cleaned"));
        }
        let now = self.tick();
        let qid = self.existing_queue(queue)?;
        let cutoff = now.saturating_sub(grace_ms);
        let limit = if limit == 0 { usize::MAX } else { limit };
        let mut victims: Vec<(u64, u32)> = self.queues[qid as usize]
            .slots(state)
            .map(|s| {
                let j = self.job(s);
                (
                    if state.is_finished() {
                        j.finished_at
                    } else {
                        j.created_at
                    },
                    s,
                )
            })
            .filter(|&(t, _)| t <= cutoff)
            .collect();
        victims.sort_unstable();
        victims.truncate(limit);
        let mut ids = Vec::with_capacity(victims.len());
        for (_, slot) in victims {
            // Removing one victim can fail and, by removeOnFail, remove a later one.
            if self.jobs.get(slot).is_none() {
                continue;
            }
            ids.push(self.job(slot).id.to_string());
            self.remove_slot(slot, now, true);
        }
        Ok(ids)
    }

    /// Retries every failed or completed job of a queue. Returns how many.
    pub fn retry_all(&mut self, queue: &str, state: JobState) -> Result<usize> {
        if !state.is_finished() {
            return Err(EngineError::invalid("state must be failed or completed"));
        }
        let now = self.tick();
        let qid = self.existing_queue(queue)?;
        let slots: Vec<u32> = self.queues[qid as usize].slots(state).collect();
        for &slot in &slots {
            self.retry_slot(slot, now);
        }
        Ok(slots.len())
    }

    /// Makes every delayed job of a queue ready now. Returns how many.
    pub fn promote_all(&mut self, queue: &str) -> Result<usize> {
        self.promote_first(queue, usize::MAX)
    }

    /// Makes up to `limit` delayed jobs of a queue ready now, those due soonest first.
    /// Returns how many.
    pub fn promote_first(&mut self, queue: &str, limit: usize) -> Result<usize> {
        let now = self.tick();
        let qid = self.existing_queue(queue)?;
        let slots: Vec<u32> = self.queues[qid as usize]
            .slots(JobState::Delayed)
            .take(limit)
            .collect();
        for &slot in &slots {
            self.promote_slot(slot, now);
        }
        Ok(slots.len())
    }

    /// Retries every failed job of `queue` whose error is `reason`. Returns how many.
    pub fn retry_failures(&mut self, queue: &str, reason: &str) -> Result<usize> {
        let now = self.tick();
        let qid = self.existing_queue(queue)?;
        let slots: Vec<u32> = self.queues[qid as usize]
            .slots(JobState::Failed)
            .filter(|&s| {
                self.job(s)
                    .ext()
                    .and_then(|e| e.error.as_deref())
                    .unwrap_or("")
                    == reason
            })
            .collect();
        for &slot in &slots {
            self.retry_slot(slot, now);
        }
        Ok(slots.len())
    }

    /// Deletes a queue and all its jobs; refused while jobs are active unless `force`.
    pub fn obliterate(&mut self, queue: &str, force: bool) -> Result<usize> {
        let now = self.tick();
        let qid = self.existing_queue(queue)?;
        if !force && !self.queues[qid as usize].active.is_empty() {
            return Err(EngineError::state(
                "Queue has active jobs; pass force to obliterate anyway",
            ));
        }
        let slots: Vec<u32> = JobState::ALL
            .iter()
            .flat_map(|&s| self.queues[qid as usize].slots(s).collect::<Vec<_>>())
            .collect();
        for &slot in &slots {
            if self.jobs.get(slot).is_some() {
                self.remove_slot(slot, now, false);
            }
        }
        self.record_queue_drop(qid);
        // Pullers waiting on this queue must hear of it, or they would sleep through jobs
        // pushed to the queue's next incarnation; woken, they ask again.
        if self.queues[qid as usize].wake_requested {
            self.woken.push(qid);
        }
        self.drop_queue(qid);
        Ok(slots.len())
    }
}
