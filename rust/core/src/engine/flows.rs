//! Links between jobs: dependencies (`dependsOn`) released or failed as their jobs
//! finish or go away, and repeat series pushing their next occurrence.

use hashbrown::HashSet;

use super::placement::Cause;
use super::Engine;
use crate::cron::CronSchedule;
use crate::ids::JobId;
use crate::job::{Job, JobState};
use crate::options::PushOptions;

impl Engine {
    /// A completed job releases the jobs that wait on it once all their dependencies are done.
    pub(super) fn settle_dependents(&mut self, slot: u32, now: u64) {
        let dependents = match self.job(slot).ext() {
            Some(e) if !e.dependents.is_empty() => e.dependents.clone(),
            _ => return,
        };
        for dep in dependents {
            let Some(ds) = self.find(&dep) else { continue };
            if self.job(ds).state != JobState::WaitingChildren {
                continue;
            }
            // Recounted, not decremented: a dependency retried after it completed
            // completes twice, and must not count twice.
            let pending = self.unfinished_dependencies(ds);
            self.job_mut(ds).ext_mut().pending_deps = pending;
            if pending == 0 {
                self.make_runnable(ds, now, Cause::DependenciesMet, |_| {});
            }
        }
    }

    /// Dependencies of a job that have not completed (a removed one had completed: a
    /// live one's removal fails its dependents instead), here and in other slots.
    pub(super) fn unfinished_dependencies(&self, slot: u32) -> u32 {
        let Some(e) = self.job(slot).ext() else {
            return 0;
        };
        // `remote.deps` follows `depends_on` (`drop_dependency`, `child_failed`); an empty
        // set is looked into without hashing.
        let remote = e.remote.as_deref();
        let elsewhere: HashSet<&JobId> = remote
            .map(|r| r.deps.iter().map(|(d, _)| d).collect())
            .unwrap_or_default();
        let here = e
            .depends_on
            .iter()
            .filter(|d| !elsewhere.contains(d))
            .filter_map(|d| self.find(d))
            .filter(|&s| self.job(s).state != JobState::Completed)
            .count();
        let there = remote.map_or(0, |r| r.deps.iter().filter(|(_, done)| !done).count());
        (here + there) as u32
    }

    /// Repeating jobs: when an occurrence finishes (completed, or failed for good), the
    /// next one is pushed as a new job, delayed to its scheduled time.
    pub(super) fn schedule_repeat(&mut self, slot: u32, now: u64) {
        let job = self.job(slot);
        let Some(state) = job.ext().and_then(|e| e.repeat.clone()) else {
            return;
        };
        if state.successor_scheduled || state.spec.limit.is_some_and(|l| state.count >= l) {
            return;
        }
        let next = match (&state.spec.every, &state.spec.pattern) {
            (Some(every), _) => {
                // Keep the cadence from the previous scheduled time, skipping missed slots.
                let prev = job.run_at;
                let mut next = prev.saturating_add(*every);
                // A slot exactly at `now` is due, not missed: it runs at once.
                if next < now {
                    next += (now - next).div_ceil(*every) * every;
                }
                Some(next)
            }
            (None, Some(p)) => CronSchedule::parse(p).ok().and_then(|c| c.next_after(now)),
            (None, None) => None,
        };
        let Some(next) = next else { return };
        let ext = job.ext().expect("repeat lives in ext");
        let opts = PushOptions {
            name: Some(self.job_names[job.name as usize].to_string()),
            data: job.data.clone(),
            priority: job.priority,
            delay: next.saturating_sub(now),
            max_attempts: u32::from(job.max_attempts),
            backoff: u64::from(job.backoff),
            ttl: ext.ttl,
            timeout: ext.timeout,
            unique_key: ext.unique_key.as_deref().map(Into::into),
            job_id: None,
            tags: ext.tags.iter().map(|t| t.to_string()).collect(),
            group_id: ext.group_id.as_deref().map(Into::into),
            lifo: job.lifo(),
            remove_on_complete: ext.remove_on_complete,
            remove_on_fail: ext.remove_on_fail,
            durable: job.durable(),
            depends_on: Vec::new(),
            repeat: Some(state.spec.clone()),
            ..PushOptions::default()
        };
        let qid = job.queue;
        if let Some(r) = self.job_mut(slot).ext_mut().repeat.as_mut() {
            r.successor_scheduled = true;
        }
        self.insert(qid, opts, now, state.count + 1);
    }

    /// The jobs still waiting for this one: dependents in waiting-children whose
    /// `dependsOn` names it. (A dependent that already ran is not affected by what
    /// happens to this job later, e.g. a retry.)
    pub(super) fn blocked_dependents(&self, slot: u32) -> Vec<u32> {
        let job = self.job(slot);
        let Some(ext) = job.ext() else {
            return Vec::new();
        };
        ext.dependents
            .iter()
            .filter_map(|d| self.find(d))
            .filter(|&ds| {
                let dj = self.job(ds);
                dj.state == JobState::WaitingChildren
                    && dj.ext().is_some_and(|e| e.depends_on.contains(&job.id))
            })
            .collect()
    }

    /// A removed job stops being a dependent of the jobs it waited for, so a later job
    /// reusing its id does not inherit the link.
    pub(super) fn unlink_from_dependencies(&mut self, slot: u32) {
        let Some(deps) = self.job(slot).ext().map(|e| e.depends_on.clone()) else {
            return;
        };
        let id = self.job(slot).id.clone();
        for dep in deps {
            let Some(ds) = self.find(&dep) else { continue };
            let unlink = |job: &mut Job| {
                if let Some(ext) = job.ext.as_deref_mut() {
                    ext.dependents.retain(|d| d != &id);
                }
            };
            // A finished job's footprint is counted in its set's bytes: re-enter the set
            // around the change so the count follows it.
            if self.job(ds).state.is_finished() {
                self.refresh(ds, self.last_now, unlink);
            } else {
                unlink(self.job_mut(ds));
            }
        }
    }
}
