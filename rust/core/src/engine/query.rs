//! Reads: counts, pages, searches, metrics, links and JSON rendering. Nothing here
//! changes state.

use hashbrown::HashMap;

use super::{sorted_paused_names, Engine, SearchKind, Totals, MAX_PAGE};
use crate::error::{EngineError, Result};
use crate::fold_search::FoldedTerm;
use crate::ids::JobId;
use crate::job::{Job, JobState};
use crate::json_render::write_job;
use crate::metrics::Bucket;
use crate::queue::GroupCounts;

impl Engine {
    pub fn is_paused(&self, queue: &str) -> bool {
        self.queue_id(queue)
            .is_some_and(|q| self.queues[q as usize].paused)
    }

    pub fn paused_names(&self, queue: &str) -> Vec<String> {
        let Some(qid) = self.queue_id(queue) else {
            return Vec::new();
        };
        sorted_paused_names(&self.queues[qid as usize], &self.job_names)
            .into_iter()
            .map(String::from)
            .collect()
    }

    pub fn queue_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.queue_ids.keys().map(|k| k.to_string()).collect();
        names.sort();
        names
    }

    pub fn has_queue(&self, queue: &str) -> bool {
        self.queue_id(queue).is_some()
    }

    /// Counts per state, in `JobState::ALL` order; zeros for a queue never used.
    pub fn counts(&self, queue: &str) -> [usize; 6] {
        let mut out = [0; 6];
        if let Some(qid) = self.queue_id(queue) {
            let q = &self.queues[qid as usize];
            for (i, &s) in JobState::ALL.iter().enumerate() {
                out[i] = q.count(s);
            }
        }
        out
    }

    /// Waiting jobs of `queue` with a non-zero priority (what bunqueue reports as
    /// `prioritized`). Walks the ready set: O(waiting jobs).
    pub fn prioritized_count(&self, queue: &str) -> usize {
        self.queue_id(queue).map_or(0, |qid| {
            self.queues[qid as usize]
                .ready
                .iter()
                .filter(|&s| self.job(s).priority != 0)
                .count()
        })
    }

    /// Counts per state summed over all queues.
    pub fn total_counts(&self) -> [usize; 6] {
        let mut out = [0; 6];
        for &qid in self.queue_ids.values() {
            for (i, &s) in JobState::ALL.iter().enumerate() {
                out[i] += self.queues[qid as usize].count(s);
            }
        }
        out
    }

    pub fn totals(&self) -> Totals {
        self.totals
    }

    pub fn job_count(&self) -> usize {
        self.jobs.len()
    }

    pub fn timer_count(&self) -> usize {
        self.timers.len()
    }

    pub fn latest_activity(&self, queue: &str) -> Option<u64> {
        self.queue_id(queue)
            .map(|q| self.queues[q as usize].latest_activity)
            .filter(|&t| t > 0)
    }

    /// Jobs of `queue` in `state` from `start` to `end` inclusive (at most `MAX_PAGE`),
    /// and the total in that state.
    pub fn list(
        &self,
        queue: &str,
        state: JobState,
        start: usize,
        end: usize,
    ) -> (Vec<u32>, usize) {
        let Some(qid) = self.queue_id(queue) else {
            return (Vec::new(), 0);
        };
        let q = &self.queues[qid as usize];
        let take = end.saturating_sub(start).saturating_add(1).min(MAX_PAGE);
        let slots = if end < start {
            Vec::new()
        } else {
            q.page(state, start, take)
        };
        (slots, q.count(state))
    }

    /// Every job of `queue` in `state`, in that state's index order (ready order,
    /// due time, newest finished first). Empty for an unknown queue.
    pub fn slots_in(&self, queue: &str, state: JobState) -> Vec<u32> {
        self.queue_id(queue)
            .map(|qid| self.queues[qid as usize].slots(state).collect())
            .unwrap_or_default()
    }

    /// Failed jobs of `queue` grouped by error message: (message, count, newest id),
    /// most frequent first. Scans the failed set, which retention bounds.
    pub fn failure_groups(&self, queue: &str) -> Vec<(String, usize, String)> {
        let Some(qid) = self.queue_id(queue) else {
            return Vec::new();
        };
        let mut groups: HashMap<&str, (usize, u32)> = HashMap::new();
        for slot in self.queues[qid as usize].slots(JobState::Failed) {
            let reason = self
                .job(slot)
                .ext()
                .and_then(|e| e.error.as_deref())
                .unwrap_or("");
            groups.entry(reason).or_insert((0, slot)).0 += 1;
        }
        let mut out: Vec<(String, usize, String)> = groups
            .into_iter()
            .map(|(r, (n, s))| (r.to_string(), n, self.job(s).id.to_string()))
            .collect();
        out.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        out
    }

    /// Since when the longest-waiting job of `queue` has been ready (its `runAt`), if any.
    pub fn oldest_waiting(&self, queue: &str) -> Option<u64> {
        let qid = self.queue_id(queue)?;
        self.queues[qid as usize]
            .ready
            .level_elders()
            .into_iter()
            .map(|s| self.job(s).run_at)
            .min()
    }

    /// Jobs with a repeat schedule in `queue`, any state.
    pub fn scheduled_count(&self, queue: &str) -> usize {
        self.queue_id(queue)
            .map_or(0, |q| self.queues[q as usize].scheduled)
    }

    /// Flow parents (jobs with `dependsOn`) of `queue`, newest first, optionally only
    /// those in `state`; at most `limit`.
    pub fn flow_parents(&self, queue: &str, state: Option<JobState>, limit: usize) -> Vec<u32> {
        let Some(qid) = self.queue_id(queue) else {
            return Vec::new();
        };
        self.queues[qid as usize]
            .flow_parents
            .iter()
            .rev()
            .map(|&(_, s)| s)
            .filter(|&s| state.is_none_or(|st| self.job(s).state == st))
            .take(limit)
            .collect()
    }

    pub fn groups(&self, queue: &str) -> Vec<(String, GroupCounts)> {
        let Some(qid) = self.queue_id(queue) else {
            return Vec::new();
        };
        let mut out: Vec<(String, GroupCounts)> = self.queues[qid as usize]
            .groups
            .iter()
            .filter(|(_, v)| v.active > 0 || v.waiting > 0)
            .map(|(k, v)| (k.to_string(), *v))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// (ids this job depends on, ids that depend on it).
    pub fn links(&self, id: &str) -> Result<(Vec<String>, Vec<String>)> {
        let slot = self.slot_or_404(id)?;
        let ext = self.job(slot).ext();
        let strs = |v: Option<&Vec<JobId>>| {
            v.map(|v| v.iter().map(ToString::to_string).collect())
                .unwrap_or_default()
        };
        let mut dependents: Vec<String> = strs(ext.map(|e| &e.dependents));
        if let Some(r) = ext.and_then(|e| e.remote.as_deref()) {
            dependents.extend(r.dependents.iter().map(|(id, _)| id.to_string()));
        }
        Ok((strs(ext.map(|e| &e.depends_on)), dependents))
    }

    /// Finds up to `limit` jobs (or, for `Queue`, queue names) matching `query`.
    /// JobId: an exact id or an id prefix; Payload: a substring of the data's JSON text
    /// within `queue`, in any state, ignoring case.
    pub fn search(
        &self,
        query: &str,
        kind: SearchKind,
        queue: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>> {
        if query.is_empty() {
            return Err(EngineError::invalid("q must not be empty"));
        }
        let in_scope = |j: &Job| queue.is_none_or(|q| &*self.queues[j.queue as usize].name == q);
        let out = match kind {
            SearchKind::Queue => self
                .queue_names()
                .into_iter()
                .filter(|n| n.contains(query))
                .take(limit)
                .collect(),
            SearchKind::JobId => {
                if let Some(slot) = self.slot_of(query).filter(|&s| in_scope(self.job(s))) {
                    vec![self.job(slot).id.to_string()]
                } else {
                    self.jobs
                        .iter()
                        .filter(|j| in_scope(j))
                        .map(|j| j.id.to_string())
                        .filter(|id| id.starts_with(query))
                        .take(limit)
                        .collect()
                }
            }
            SearchKind::Payload => {
                let q = queue
                    .ok_or_else(|| EngineError::invalid("queue is required for payload search"))?;
                let qid = self.existing_queue(q)?;
                let queue = &self.queues[qid as usize];
                let term = FoldedTerm::new(query);
                JobState::ALL
                    .iter()
                    .flat_map(|&s| queue.slots(s))
                    .filter(|&s| term.found_in(&self.job(s).data))
                    .take(limit)
                    .map(|s| self.job(s).id.to_string())
                    .collect()
            }
        };
        Ok(out)
    }

    /// Metric buckets of a queue: (period start, job name, bucket).
    pub fn metrics(
        &self,
        queue: &str,
        from: u64,
        to: u64,
        granularity_ms: u64,
    ) -> Result<Vec<(u64, String, Bucket)>> {
        let qid = self.existing_queue(queue)?;
        Ok(self.queues[qid as usize]
            .metrics
            .query(from, to, granularity_ms.max(60_000))
            .into_iter()
            .map(|(t, n, b)| (t, self.job_names[n as usize].to_string(), b))
            .collect())
    }

    /// The state of the job with this id, if it exists.
    pub fn state_by_id(&self, id: &str) -> Option<JobState> {
        self.slot_of(id).map(|s| self.state_of(s))
    }

    pub fn state_of(&self, slot: u32) -> JobState {
        self.job(slot).state
    }

    pub fn job_at(&self, slot: u32) -> &Job {
        self.job(slot)
    }

    pub fn queue_name_of(&self, slot: u32) -> &str {
        &self.queues[self.job(slot).queue as usize].name
    }

    pub fn job_name_of(&self, slot: u32) -> &str {
        &self.job_names[self.job(slot).name as usize]
    }

    /// Appends the job's JSON (the job server's shape, with `state`).
    pub fn render(&self, slot: u32, out: &mut String) {
        let job = self.job(slot);
        write_job(
            out,
            job,
            &self.queues[job.queue as usize].name,
            &self.job_names[job.name as usize],
        );
    }

    pub fn render_by_id(&self, id: &str) -> Option<String> {
        let slot = self.slot_of(id)?;
        let mut out = String::with_capacity(256);
        self.render(slot, &mut out);
        Some(out)
    }
}
