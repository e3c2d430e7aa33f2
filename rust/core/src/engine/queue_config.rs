//! A queue's stall and dead-letter settings (bunqueue's `SetStallConfig`,
//! `GetStallConfig`, `SetDlqConfig`, `GetDlqConfig`) and where the engine applies them:
//!
//! - stall settings replace the engine-wide `stall_interval_ms` and `max_stalls` for
//!   the queue's leases: a new lease's (or a renewal's) deadline is computed by
//!   `StallConfig::deadline` (interval, grace period, `enabled`), and `stall` fails a
//!   job for good at the queue's `max_stalls`;
//! - dead-letter settings bound the queue's failed set further than retention does
//!   (`max_entries` in `enforce_retention`, `max_age` in the timer's age sweep), and
//!   with `auto_retry` the sweep retries failed jobs when due (`retry_due`), counting
//!   the retries on the job (`JobExt::dlq_retries`, logged with it).
//!
//! Each setting is logged whole (records 18 and 19) and snapshotted with its queue; an
//! obliterated queue loses its settings with the rest of it.

use super::Engine;
use crate::error::Result;
use crate::job::JobState;
use crate::queue_config::{DlqConfig, DlqPatch, QueueSettings, StallConfig, StallPatch};
use crate::record::{encode_queue_dlq_config, encode_queue_stall_config};

/// bunqueue's defaults for what hopper has no engine-wide option for.
const DEFAULT_AUTO_RETRY_INTERVAL_MS: u64 = 3_600_000;
const DEFAULT_MAX_AUTO_RETRIES: u64 = 3;

impl Engine {
    /// The stall settings in force for `queue` (the engine-wide ones until set).
    pub fn stall_config(&self, queue: &str) -> StallConfig {
        self.queue_id(queue)
            .map_or_else(|| self.default_stall(), |qid| self.stall_of(qid))
    }

    /// Merges `patch` into `queue`'s stall settings; returns the result. Leases taken
    /// or renewed from now on follow it; leases already running keep their deadline.
    pub fn set_stall_config(&mut self, queue: &str, patch: &StallPatch) -> Result<StallConfig> {
        self.tick();
        let qid = self.queue_or_create(queue)?;
        let config = self.stall_of(qid).merged(patch);
        self.settings_mut(qid).stall = Some(config);
        self.record_stall_config(qid);
        Ok(config)
    }

    /// The dead-letter settings in force for `queue` (until set: no auto-retry, and
    /// the retention bounds).
    pub fn dlq_config(&self, queue: &str) -> DlqConfig {
        self.queue_id(queue)
            .map_or_else(|| self.default_dlq(), |qid| self.dlq_of(qid))
    }

    /// Merges `patch` into `queue`'s dead-letter settings and applies them at once
    /// (the failed set is trimmed to the new bounds); returns the result.
    pub fn set_dlq_config(&mut self, queue: &str, patch: &DlqPatch) -> Result<DlqConfig> {
        let now = self.tick();
        let qid = self.queue_or_create(queue)?;
        let config = self.dlq_of(qid).merged(patch);
        let settings = self.settings_mut(qid);
        settings.dlq = Some(config);
        settings.next_retry_scan = 0;
        self.record_dlq_config(qid);
        self.enforce_retention(qid, JobState::Failed, None);
        self.expire_failed(qid, now);
        self.auto_retry_queue(qid, now);
        Ok(config)
    }

    /// When the failed job in `slot` is due for an automatic retry, if it gets one.
    pub fn dlq_retry_due(&self, slot: u32) -> Option<u64> {
        let job = self.job(slot);
        if job.state != JobState::Failed {
            return None;
        }
        let retries = job.ext().map_or(0, |e| e.dlq_retries);
        self.settings_of(job.queue)?
            .dlq?
            .retry_due(job.finished_at, retries)
    }

    /// When the failed job in `slot` is dropped by its queue's `max_age` (`None`
    /// without one).
    pub fn dlq_expires_at(&self, slot: u32) -> Option<u64> {
        let job = self.job(slot);
        let age = self.settings_of(job.queue)?.dlq?.max_age_ms?;
        let age = age.min(self.config.retention_age_ms);
        Some(job.finished_at.saturating_add(age))
    }

    fn default_stall(&self) -> StallConfig {
        StallConfig {
            enabled: true,
            stall_interval_ms: self.config.stall_interval_ms,
            max_stalls: u64::from(self.config.max_stalls),
            grace_period_ms: 0,
        }
    }

    fn default_dlq(&self) -> DlqConfig {
        DlqConfig {
            auto_retry: false,
            auto_retry_interval_ms: DEFAULT_AUTO_RETRY_INTERVAL_MS,
            max_auto_retries: DEFAULT_MAX_AUTO_RETRIES,
            max_age_ms: Some(self.config.retention_age_ms),
            max_entries: self.config.retention_count as u64,
        }
    }

    fn settings_of(&self, qid: u32) -> Option<&QueueSettings> {
        self.queues[qid as usize].settings.as_deref()
    }

    fn settings_mut(&mut self, qid: u32) -> &mut QueueSettings {
        self.queues[qid as usize]
            .settings
            .get_or_insert_with(Box::default)
    }

    fn stall_of(&self, qid: u32) -> StallConfig {
        self.settings_of(qid)
            .and_then(|s| s.stall)
            .unwrap_or_else(|| self.default_stall())
    }

    fn dlq_of(&self, qid: u32) -> DlqConfig {
        self.settings_of(qid)
            .and_then(|s| s.dlq)
            .unwrap_or_else(|| self.default_dlq())
    }

    /// The stall deadline of a lease of a `qid` job taken or renewed at `now` for
    /// `lock_ms` (default: the queue's interval); `u64::MAX` for never.
    pub(super) fn lease_deadline(
        &self,
        qid: u32,
        now: u64,
        started_at: u64,
        lock_ms: Option<u64>,
    ) -> u64 {
        match self.settings_of(qid).and_then(|s| s.stall) {
            Some(s) => s.deadline(now, started_at, lock_ms),
            None => {
                let lock = lock_ms.unwrap_or(self.config.stall_interval_ms);
                now + lock.clamp(1, crate::options::MAX_DELAY_MS)
            }
        }
    }

    /// The stall count at which a `qid` job fails for good.
    pub(super) fn max_stalls_of(&self, qid: u32) -> u64 {
        self.settings_of(qid)
            .and_then(|s| s.stall)
            .map_or(u64::from(self.config.max_stalls), |s| s.max_stalls)
    }

    /// The most failed jobs `qid` keeps by its dead-letter settings.
    pub(super) fn dlq_max_entries(&self, qid: u32) -> usize {
        self.settings_of(qid)
            .and_then(|s| s.dlq)
            .map_or(usize::MAX, |d| {
                usize::try_from(d.max_entries).unwrap_or(usize::MAX)
            })
    }

    /// A job of `qid` just failed for good at `now`: its automatic retry, if any, must
    /// be looked at by then.
    pub(super) fn note_dead_letter(&mut self, qid: u32, slot: u32, now: u64) {
        let Some(settings) = self.queues[qid as usize].settings.as_deref() else {
            return;
        };
        let Some(due) = settings.dlq.and_then(|d| {
            let retries = self.jobs.get(slot)?.ext().map_or(0, |e| e.dlq_retries);
            d.retry_due(now, retries)
        }) else {
            return;
        };
        let settings = self.settings_mut(qid);
        if settings.next_retry_scan > due {
            settings.next_retry_scan = due;
        }
    }

    /// The age sweep of `tick`, for one queue's failed set: drops failed jobs older
    /// than its `max_age` (they are ordered by finish time, so this stops at the first
    /// younger one).
    pub(super) fn expire_failed(&mut self, qid: u32, now: u64) {
        let Some(age) = self
            .settings_of(qid)
            .and_then(|s| s.dlq)
            .and_then(|d| d.max_age_ms)
        else {
            return;
        };
        let horizon = now.saturating_sub(age);
        while let Some(&(at, slot)) = self.queues[qid as usize].failed.first() {
            if at > horizon {
                break;
            }
            self.remove_slot(slot, now, false);
        }
    }

    /// The sweep of `tick`: every queue with settings drops its expired failed jobs
    /// and retries those due.
    pub(super) fn sweep_dead_letters(&mut self, now: u64) {
        for qid in 0..self.queues.len() as u32 {
            if self.queues[qid as usize].settings.is_none() {
                continue;
            }
            self.expire_failed(qid, now);
            self.auto_retry_queue(qid, now);
        }
    }

    /// Retries the failed jobs of `qid` whose automatic retry is due. Looks at the
    /// failed set only once the earliest retry it knows of is due, and notes the next.
    fn auto_retry_queue(&mut self, qid: u32, now: u64) {
        let Some(settings) = self.queues[qid as usize].settings.as_deref() else {
            return;
        };
        let Some(dlq) = settings.dlq.filter(|d| d.auto_retry) else {
            return;
        };
        if settings.next_retry_scan > now {
            return;
        }
        let mut due_now = Vec::new();
        let mut next = u64::MAX;
        for &(at, slot) in self.queues[qid as usize].failed.iter() {
            let retries = self.job(slot).ext().map_or(0, |e| e.dlq_retries);
            match dlq.retry_due(at, retries) {
                Some(due) if due <= now => due_now.push((slot, retries)),
                Some(due) => next = next.min(due),
                None => {}
            }
        }
        self.settings_mut(qid).next_retry_scan = next;
        for (slot, retries) in due_now {
            self.retry_slot(slot, now);
            self.job_mut(slot).ext_mut().dlq_retries = retries + 1;
        }
    }

    fn record_stall_config(&mut self, qid: u32) {
        if self.recording {
            let q = &self.queues[qid as usize];
            let config = q.settings.as_deref().and_then(|s| s.stall);
            encode_queue_stall_config(&mut self.op_log, &q.name, config.as_ref());
        }
    }

    fn record_dlq_config(&mut self, qid: u32) {
        if self.recording {
            let q = &self.queues[qid as usize];
            let config = q.settings.as_deref().and_then(|s| s.dlq);
            encode_queue_dlq_config(&mut self.op_log, &q.name, config.as_ref());
        }
    }

    /// Snapshots: the settings of queue `qid`, if it has any.
    pub(super) fn snapshot_queue_config(&self, qid: u32, out: &mut Vec<u8>) {
        let q = &self.queues[qid as usize];
        let Some(s) = q.settings.as_deref() else {
            return;
        };
        if let Some(c) = &s.stall {
            encode_queue_stall_config(out, &q.name, Some(c));
        }
        if let Some(c) = &s.dlq {
            encode_queue_dlq_config(out, &q.name, Some(c));
        }
    }

    /// Recovery: a queue's stall settings record.
    pub(super) fn restore_stall_config(&mut self, queue: &str, config: Option<StallConfig>) {
        if let Ok(qid) = self.queue_or_create(queue) {
            self.settings_mut(qid).stall = config;
        }
    }

    /// Recovery: a queue's dead-letter settings record (the first sweep after start-up
    /// looks at every failed job of the queue).
    pub(super) fn restore_dlq_config(&mut self, queue: &str, config: Option<DlqConfig>) {
        if let Ok(qid) = self.queue_or_create(queue) {
            let settings = self.settings_mut(qid);
            settings.dlq = config;
            settings.next_retry_scan = 0;
        }
    }
}
