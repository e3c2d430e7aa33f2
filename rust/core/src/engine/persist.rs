//! The engine's side of durability: recording what each operation changed as log
//! records, writing snapshot chunks, and applying records back at start-up.
//!
//! Recording is cheap bookkeeping on the hot path: a changed job gets a dirty flag and
//! its slot goes on a list; `flush_log` writes each dirty job once, as it is after the
//! operation, in one frame. Removals are written when they happen, because the slot may
//! hold another job by the end of the operation.

use std::sync::Arc;

use super::placement::Cause;
use super::{sorted_paused_names, Engine, TimerKind};
use crate::frame::{begin_frame, finish_frame};
use crate::ids::JobId;
use crate::job::{JobState, FLAG_DIRTY, FLAG_DIRTY_DATA, STORED_FLAGS};
use crate::metrics::{Bucket, MINUTE_MS};
use crate::queue::Queue;
use crate::record::{
    encode_delete, encode_group_settings, encode_job, encode_metric, encode_metric_bucket,
    encode_metric_pushes, encode_queue_drop, encode_queue_limits, encode_queue_state,
    encode_snapshot_begin, encode_totals, JobImage, Record,
};

/// A snapshot chunk stops after this many bytes even before its job count: job logs can
/// make jobs large, and a frame must stay far below `frame::MAX_FRAME`.
const SNAPSHOT_CHUNK_BYTES: usize = 64 << 20;

/// What applying records found that it could not use (counted, not fatal).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RestoreStats {
    pub records: u64,
    /// State-only records for a job no earlier record created.
    pub orphans: u64,
}

impl Engine {
    /// Starts recording changes for the log (a persistent engine, after recovery).
    pub(crate) fn set_recording(&mut self, on: bool) {
        self.recording = on;
    }

    /// Marks a job as changed, so the next flush writes it.
    pub(super) fn mark_dirty(&mut self, slot: u32, data_changed: bool) {
        if !self.recording {
            return;
        }
        let job = self.jobs.get_mut(slot).expect("slot holds a job");
        let bits = FLAG_DIRTY | if data_changed { FLAG_DIRTY_DATA } else { 0 };
        if job.flags & FLAG_DIRTY == 0 {
            self.dirty.push(slot);
        }
        job.flags |= bits;
    }

    pub(super) fn record_delete(&mut self, id: &JobId) {
        if self.recording {
            encode_delete(&mut self.op_log, id);
        }
    }

    pub(super) fn record_metric(&mut self, qid: u32, name: u32, at: u64, ok: bool, took: u64) {
        if self.recording {
            let q = &self.queues[qid as usize].name;
            encode_metric(
                &mut self.op_log,
                q,
                &self.job_names[name as usize],
                at,
                ok,
                took,
            );
        }
    }

    /// Notes a job created in `qid` under job name `name` at `now`, for the next flush.
    pub(super) fn record_push(&mut self, qid: u32, name: u32, now: u64) {
        if !self.recording {
            return;
        }
        let minute = now - now % MINUTE_MS;
        let queue = &self.queues[qid as usize].name;
        match self.pushes.last_mut() {
            Some((q, n, m, count)) if Arc::ptr_eq(q, queue) && *n == name && *m == minute => {
                *count += 1;
            }
            _ => self.pushes.push((queue.clone(), name, minute, 1)),
        }
    }

    pub(super) fn record_queue_state(&mut self, qid: u32) {
        if !self.recording {
            return;
        }
        let q = &self.queues[qid as usize];
        let names = sorted_paused_names(q, &self.job_names);
        encode_queue_state(&mut self.op_log, &q.name, q.paused, &names);
    }

    pub(super) fn record_queue_drop(&mut self, qid: u32) {
        if self.recording {
            encode_queue_drop(&mut self.op_log, &self.queues[qid as usize].name);
        }
    }

    /// Appends one frame with everything changed since the last flush to `out`.
    /// Returns `None` if nothing changed, else whether the frame holds a `durable` push
    /// (which must be synced at once).
    pub(crate) fn flush_log(&mut self, out: &mut Vec<u8>) -> Option<bool> {
        if self.dirty.is_empty()
            && self.op_log.is_empty()
            && self.dirty_logs.is_empty()
            && self.pushes.is_empty()
        {
            return None;
        }
        let at = begin_frame(out);
        // Push counts first: they happened before anything of `op_log` could drop their
        // queue, and a drop replayed after them takes their bucket with it.
        for (queue, name, minute, count) in self.pushes.drain(..) {
            let name = &self.job_names[name as usize];
            encode_metric_pushes(out, &queue, name, minute, count);
        }
        out.append(&mut self.op_log);
        for slot in std::mem::take(&mut self.dirty) {
            // A slot freed since it was marked holds nothing, or a job marked on its own.
            let Some(job) = self.jobs.get_mut(slot) else {
                continue;
            };
            if job.flags & FLAG_DIRTY == 0 {
                continue;
            }
            let with_data = job.flags & FLAG_DIRTY_DATA != 0;
            job.flags &= !(FLAG_DIRTY | FLAG_DIRTY_DATA);
            let job = self.jobs.get(slot).expect("slot holds a job");
            let queue = &self.queues[job.queue as usize].name;
            let name = &self.job_names[job.name as usize];
            encode_job(out, job, queue, name, with_data);
        }
        // After the jobs: a line never precedes the record that creates its job.
        if !self.dirty_logs.is_empty() {
            self.flush_logs(out);
        }
        finish_frame(out, at);
        Some(std::mem::take(&mut self.durable_pushed))
    }

    // ----- snapshots ------------------------------------------------------------------

    /// The snapshot's opening frame: counters, queues and metric buckets. Taken under
    /// the same lock as the log rotation, so the log after it continues from here.
    pub(crate) fn snapshot_meta(&self, out: &mut Vec<u8>) {
        let at = begin_frame(out);
        encode_snapshot_begin(out, self.next_seq);
        encode_totals(out, &self.totals);
        for &qid in self.queue_ids.values() {
            let q = &self.queues[qid as usize];
            encode_queue_state(
                out,
                &q.name,
                q.paused,
                &sorted_paused_names(q, &self.job_names),
            );
            for (minute, name, bucket) in q.metrics.buckets() {
                let name = &self.job_names[name as usize];
                encode_metric_bucket(out, &q.name, name, minute, bucket);
                if bucket.pushed > 0 {
                    encode_metric_pushes(out, &q.name, name, minute, bucket.pushed);
                }
            }
            if let Some(l) = q.limits.as_deref() {
                encode_queue_limits(out, &q.name, &l.config);
            }
            for (group, settings) in self.all_group_settings(qid) {
                encode_group_settings(out, &q.name, group, &settings);
            }
            self.snapshot_queue_config(qid, out);
        }
        self.snapshot_schedulers(out);
        self.snapshot_mailbox(out);
        finish_frame(out, at);
    }

    /// Appends a frame with the jobs in slots `from..` (at most `max`); returns the next
    /// slot to continue from (`None` when done) and how many jobs were written.
    pub(crate) fn snapshot_jobs(
        &self,
        from: u32,
        max: usize,
        out: &mut Vec<u8>,
    ) -> (Option<u32>, u64) {
        let high = self.jobs.high();
        let at = begin_frame(out);
        let mut slot = from;
        let mut n = 0u64;
        while slot < high && (n as usize) < max && out.len() - at < SNAPSHOT_CHUNK_BYTES {
            if let Some(job) = self.jobs.get(slot) {
                let queue = &self.queues[job.queue as usize].name;
                let name = &self.job_names[job.name as usize];
                encode_job(out, job, queue, name, true);
                self.snapshot_logs(slot, out);
                n += 1;
            }
            slot += 1;
        }
        finish_frame(out, at);
        ((slot < high).then_some(slot), n)
    }

    /// Everything recovery must reproduce, as canonical text: counters, and per queue its
    /// pause state, counts, every job in index order with every stored field, the dedup
    /// keys, groups and metric buckets. Tests compare it before a restart and after.
    /// Not included: lease owners (connections do not survive a restart) and the
    /// queue's latest-activity time (recomputed from job timestamps).
    pub fn dump_state(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let _ = writeln!(out, "totals {:?}", self.totals);
        let _ = writeln!(out, "{}", self.dump_mailbox());
        self.dump_schedulers(&mut out);
        for name in self.queue_names() {
            let qid = self.queue_ids[name.as_str()];
            let q = &self.queues[qid as usize];
            let paused = sorted_paused_names(q, &self.job_names);
            let _ = writeln!(out, "queue {name} paused={} names={paused:?}", q.paused);
            for state in JobState::ALL {
                let _ = writeln!(out, " {} count={}", state.as_str(), q.count(state));
                for slot in q.slots(state) {
                    let job = self.job(slot);
                    let mut buf = Vec::new();
                    encode_job(
                        &mut buf,
                        job,
                        &q.name,
                        &self.job_names[job.name as usize],
                        true,
                    );
                    let mut d = crate::record::Decoder::new(&buf);
                    if let Ok(Some(Record::Job(mut img))) = d.next_record() {
                        if let Some(l) = img.job.lease.as_mut() {
                            l.owner = 0;
                        }
                        let _ = writeln!(out, "  {img:?}");
                    }
                    if let Some(logs) = self.job_logs(slot) {
                        let lines: Vec<_> = logs.entries().collect();
                        let _ = writeln!(out, "   logs base={} {lines:?}", logs.base());
                    }
                }
            }
            let mut keys: Vec<(&str, String)> = q
                .dedup
                .iter()
                .map(|(k, &s)| (&**k, self.job(s).id.to_string()))
                .collect();
            keys.sort_unstable();
            let _ = writeln!(out, " dedup {keys:?}");
            let _ = writeln!(out, " groups {:?}", self.groups(&name));
            let _ = writeln!(out, " limits {:?}", self.limits_config(qid));
            let _ = writeln!(out, " group settings {:?}", self.all_group_settings(qid));
            if let Some(s) = q.settings.as_deref() {
                let _ = writeln!(out, " settings {:?} {:?}", s.stall, s.dlq);
            }
            let mut buckets: Vec<(u64, &str, _)> = q
                .metrics
                .buckets()
                .map(|(m, n, b)| (m, &*self.job_names[n as usize], b))
                .collect();
            buckets.sort_unstable_by_key(|&(m, n, _)| (m, n));
            for (minute, name, b) in buckets {
                let _ = writeln!(out, " metric {minute} {name} {b:?}");
            }
        }
        out
    }

    // ----- recovery -------------------------------------------------------------------

    /// Applies one record read back from a snapshot or the log. Idempotent: the record
    /// states the result, not the change.
    pub(crate) fn apply(&mut self, rec: Record<'_>, stats: &mut RestoreStats) {
        stats.records += 1;
        match rec {
            Record::Job(image) => {
                if !self.restore_job(image) {
                    stats.orphans += 1;
                }
            }
            Record::JobDelete(id) => {
                if let Some(slot) = self.find(&id) {
                    self.discard(slot);
                }
            }
            Record::QueueState {
                queue,
                paused,
                paused_names,
            } => {
                let Ok(qid) = self.queue_or_create(&queue) else {
                    return;
                };
                let names: Vec<u32> = paused_names.iter().map(|n| self.intern_name(n)).collect();
                let q = &mut self.queues[qid as usize];
                q.paused = paused;
                q.paused_names = names.into_iter().collect();
            }
            Record::QueueDrop(queue) => {
                if let Some(qid) = self.queue_id(&queue) {
                    let slots: Vec<u32> = JobState::ALL
                        .iter()
                        .flat_map(|&s| self.queues[qid as usize].slots(s).collect::<Vec<_>>())
                        .collect();
                    for slot in slots {
                        self.discard(slot);
                    }
                    self.drop_queue(qid);
                }
            }
            Record::Metric {
                queue,
                name,
                at,
                ok,
                took,
            } => {
                if let Ok(qid) = self.queue_or_create(&queue) {
                    let name = self.intern_name(&name);
                    let window = self.config.metrics_window_ms;
                    self.queues[qid as usize]
                        .metrics
                        .record(at, name, ok, took, window);
                }
            }
            Record::MetricPushes {
                queue,
                name,
                minute,
                count,
            } => {
                if let Ok(qid) = self.queue_or_create(&queue) {
                    let name = self.intern_name(&name);
                    let pushes = Bucket {
                        pushed: count,
                        ..Bucket::default()
                    };
                    self.queues[qid as usize]
                        .metrics
                        .restore_bucket(minute, name, &pushes);
                }
            }
            Record::MetricBucket {
                queue,
                name,
                minute,
                bucket,
            } => {
                if let Ok(qid) = self.queue_or_create(&queue) {
                    let name = self.intern_name(&name);
                    self.queues[qid as usize]
                        .metrics
                        .restore_bucket(minute, name, &bucket);
                }
            }
            Record::Totals(t) => self.totals = t,
            Record::SnapshotBegin { next_seq } => self.next_seq = self.next_seq.max(next_seq),
            Record::SnapshotEnd { .. } => {}
            Record::JobLog { id, entry } => {
                if !self.restore_log(&id, entry) {
                    stats.orphans += 1;
                }
            }
            Record::JobLogTrim { id, through } => {
                if !self.restore_log_trim(&id, through) {
                    stats.orphans += 1;
                }
            }
            Record::QueueLimits { queue, limits } => self.restore_limits(&queue, limits),
            Record::QueueStallConfig { queue, config } => {
                self.restore_stall_config(&queue, config);
            }
            Record::QueueDlqConfig { queue, config } => self.restore_dlq_config(&queue, config),
            Record::Scheduler(info) => self.restore_scheduler(*info),
            Record::SchedulerDelete(name) => self.restore_scheduler_delete(&name),
            Record::GroupSettings {
                queue,
                group,
                settings,
            } => self.restore_group(&queue, &group, settings),
            Record::OutboxPut { target, seq, body } => self.restore_outbox_put(target, seq, body),
            Record::OutboxDelivered { target, through } => self.restore_delivered(target, through),
            Record::InboxApplied { source, seq } => self.restore_applied(source, seq),
        }
    }

    /// Puts a job into exactly the stored state, creating it if needed. False for a
    /// state-only record of a job that does not exist.
    fn restore_job(&mut self, img: JobImage<'_>) -> bool {
        let JobImage {
            job: mut stored,
            queue,
            name,
            with_data,
        } = img;
        let Ok(qid) = self.queue_or_create(queue) else {
            return false;
        };
        stored.queue = qid;
        stored.name = if name.is_empty() {
            0
        } else {
            self.intern_name(name)
        };
        stored.flags &= STORED_FLAGS;
        let touched = [
            stored.created_at,
            stored.run_at,
            stored.started_at,
            stored.finished_at,
        ]
        .into_iter()
        .max()
        .unwrap_or(0);
        self.next_seq = self.next_seq.max(stored.seq.saturating_abs());
        if let JobId::Uuid(b) = &stored.id {
            self.id_gen.observe(b);
        }
        if let Some(l) = &stored.lease {
            self.id_gen.observe(&l.token);
        }
        let state = stored.state;
        let key = stored.unique_key().map(Box::<str>::from);
        let slot = match self.find(&stored.id) {
            Some(slot) => {
                // A key the job held and no longer holds (released, or the job ended)
                // is free again.
                let old = self.job(slot);
                let old_queue = old.queue as usize;
                if let Some(old_key) = old.unique_key().map(Box::<str>::from) {
                    let dedup = &mut self.queues[old_queue].dedup;
                    let kept = state.is_live() && key.as_deref() == Some(&*old_key);
                    if !kept && dedup.get(&old_key) == Some(&slot) {
                        dedup.remove(&old_key);
                    }
                }
                self.transition(slot, state, Cause::Replay, touched, |job| {
                    if !with_data {
                        stored.data = std::mem::take(&mut job.data);
                    }
                    stored.gen = job.gen;
                    *job = stored;
                });
                slot
            }
            None if !with_data => return false,
            None => {
                let ttl = stored.ext().and_then(|e| e.ttl);
                let created_at = stored.created_at;
                let slot = self.alloc(stored);
                if let Some(ttl) = ttl.filter(|_| state.is_live()) {
                    self.add_timer(created_at.saturating_add(ttl), TimerKind::Ttl, slot);
                }
                self.transition(slot, state, Cause::Load, touched, |_| {});
                slot
            }
        };
        if let Some(key) = key.filter(|_| state.is_live()) {
            self.queues[qid as usize].dedup.entry(key).or_insert(slot);
        }
        true
    }

    /// Forgets an emptied queue; its id is reused by the next new queue.
    pub(super) fn drop_queue(&mut self, qid: u32) {
        let name: Arc<str> = self.queues[qid as usize].name.clone();
        self.queue_ids.remove(&name);
        self.queues[qid as usize] = Queue::new(name);
        self.free_queues.push(qid);
    }
}
