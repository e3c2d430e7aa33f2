//! Named job schedulers (bunqueue's `Cron`, `CronDelete`, `CronList`, `CronGet`): a
//! scheduler's next run is a deadline on the timer wheel; when `tick` reaches it, the
//! scheduler pushes its job, counts the fire and moves `nextRun` on. Each change is
//! logged as the scheduler's whole state (record 14; 15 for a removal) and snapshotted,
//! and `settle_schedulers` applies the reference's missed-fire rule after recovery.

use super::{Engine, Timer, TimerKind};
use crate::error::Result;
use crate::job::JobState;
use crate::options::PushOptions;
use crate::record::{encode_scheduler, encode_scheduler_delete};
use crate::schedulers::{validate, SchedulerInfo, SchedulerSpec};

impl Engine {
    /// Creates or replaces the scheduler `spec.name` (bunqueue's `addCron`). A replaced
    /// scheduler keeps its execution count; its next run is computed afresh from now.
    /// `immediately` fires a new scheduler at once (on this call's tick).
    pub fn upsert_scheduler(&mut self, spec: SchedulerSpec) -> Result<SchedulerInfo> {
        let now = self.tick();
        crate::options::check_queue_name(&spec.queue)?;
        let explicit_overlap = spec.prevent_overlap == Some(true);
        let immediately = spec.immediately;
        let mut info = validate(spec, now)?;
        PushOptions::from_json(info.push_body().as_bytes(), self.config.max_payload_bytes)?;
        let existing = self
            .schedulers
            .by_name(&info.name)
            .map(|e| e.info.executions);
        if explicit_overlap {
            self.remove_orphaned_fire(&info, now);
        }
        info.executions = existing.unwrap_or(0);
        info.next_run = if immediately && existing.is_none() {
            now
        } else {
            info.next_after(now)
        };
        let reply = info.clone();
        let (slot, gen) = self.schedulers.put(info);
        self.record_scheduler(slot);
        if reply.next_run <= now {
            // `immediately`: the first fire happens within this call; the answer is the
            // scheduler as stored before it (as the reference answers).
            self.fire_scheduler(slot, gen, now);
        } else {
            self.arm_scheduler(slot, gen);
        }
        Ok(reply)
    }

    /// Removes a scheduler; false if there is none of that name. Jobs it pushed stay.
    pub fn remove_scheduler(&mut self, name: &str) -> Result<bool> {
        self.tick();
        if self.schedulers.remove(name).is_none() {
            return Ok(false);
        }
        if self.recording {
            encode_scheduler_delete(&mut self.op_log, name);
        }
        Ok(true)
    }

    /// Every scheduler, in the order they were first registered.
    pub fn schedulers(&mut self) -> Vec<SchedulerInfo> {
        self.tick();
        self.schedulers.infos().cloned().collect()
    }

    pub fn scheduler(&mut self, name: &str) -> Option<SchedulerInfo> {
        self.tick();
        self.schedulers.by_name(name).map(|e| e.info.clone())
    }

    /// bunqueue's `removeOrphanedCronJob`: an upsert with `preventOverlap: true` drops
    /// the job of a previous fire that is still waiting (not one a worker holds), so the
    /// new definition's first fire is not swallowed by its uniqueKey.
    fn remove_orphaned_fire(&mut self, info: &SchedulerInfo, now: u64) {
        let Some(key) = info.job_unique_key() else {
            return;
        };
        let Some(qid) = self.queue_id(&info.queue) else {
            return;
        };
        let Some(&slot) = self.queues[qid as usize].dedup.get(key.as_str()) else {
            return;
        };
        if matches!(self.job(slot).state, JobState::Waiting | JobState::Delayed) {
            self.remove_slot(slot, now, true);
        }
    }

    /// Puts the scheduler's next run on the timer wheel (a run of `u64::MAX` is never).
    fn arm_scheduler(&mut self, slot: u32, gen: u32) {
        let Some(at) = self.schedulers.get(slot).map(|e| e.info.next_run) else {
            return;
        };
        if at == u64::MAX {
            return;
        }
        self.note_deadline(at);
        self.timers.insert(
            at,
            Timer {
                kind: TimerKind::Scheduler,
                slot,
                gen,
            },
        );
    }

    fn record_scheduler(&mut self, slot: u32) {
        if self.recording {
            if let Some(e) = self.schedulers.get(slot) {
                encode_scheduler(&mut self.op_log, &e.info);
            }
        }
    }

    /// `tick`: the scheduler in `slot` is due (if `gen` is still its timer). As the
    /// reference's `CronExecution.tick`: a scheduler at its `maxLimit` is dropped; one
    /// whose queue has no worker (with `skipIfNoWorker`) only moves its next run on;
    /// otherwise the fire is counted, the next run computed (cron: the first match after
    /// now; interval: the previous run plus the interval, past now) and the job pushed.
    pub(super) fn fire_scheduler(&mut self, slot: u32, gen: u32, now: u64) {
        let Some(entry) = self.schedulers.get(slot) else {
            return;
        };
        if entry.gen != gen || entry.info.next_run > now {
            return;
        }
        let info = &entry.info;
        if info.at_limit() {
            let name = info.name.clone();
            let _ = self.schedulers.remove(&name);
            if self.recording {
                encode_scheduler_delete(&mut self.op_log, &name);
            }
            return;
        }
        let next = match info.repeat_every.filter(|_| info.schedule.is_none()) {
            Some(every) => {
                let mut next = info.next_run.saturating_add(every);
                if next <= now {
                    next += (now - next) / every * every + every;
                }
                next
            }
            None => info.next_after(now),
        };
        let skip = info.skip_if_no_worker && !self.workers.serves(&info.queue);
        let push = (!skip).then(|| (info.queue.clone(), info.push_body()));
        let gen = self.schedulers.bump(slot);
        if let Some(e) = self.schedulers.get_mut(slot) {
            e.info.next_run = next;
            if !skip {
                e.info.executions += 1;
            }
        }
        self.record_scheduler(slot);
        self.arm_scheduler(slot, gen);
        let Some((queue, body)) = push else { return };
        let max = self.config.max_payload_bytes;
        // Validated when the scheduler was stored; a queue name is valid by then too.
        if let (Ok(opts), Ok(qid)) = (
            PushOptions::from_json(body.as_bytes(), max),
            self.queue_or_create(&queue),
        ) {
            self.insert(qid, opts, now, 1);
        }
    }

    /// After recovery: a scheduler whose run was missed while the server was down moves
    /// its next run past now when it has `skipMissedOnRestart` (the default) or
    /// `skipIfNoWorker`, else it fires once, now (the reference fires it at its first
    /// tick after loading); every scheduler is put on the timer wheel.
    pub(crate) fn settle_schedulers(&mut self) {
        if self.schedulers.is_empty() {
            return;
        }
        let now = self.tick();
        for slot in self.schedulers.slots() {
            let Some(e) = self.schedulers.get_mut(slot) else {
                continue;
            };
            let info = &mut e.info;
            let skip =
                (info.skip_missed_on_restart || info.skip_if_no_worker) && info.next_run < now;
            if skip {
                info.next_run = info.next_after(now);
            }
            let due = info.next_run <= now;
            if skip {
                self.record_scheduler(slot);
            }
            let gen = self.schedulers.bump(slot);
            if due {
                // Fired now rather than on the wheel, which would take it a ms later.
                self.fire_scheduler(slot, gen, now);
            } else {
                self.arm_scheduler(slot, gen);
            }
        }
    }

    /// Recovery: a scheduler record (its whole state) or a removal.
    pub(super) fn restore_scheduler(&mut self, info: SchedulerInfo) {
        self.schedulers.put(info);
    }

    pub(super) fn restore_scheduler_delete(&mut self, name: &str) {
        self.schedulers.remove(name);
    }

    /// Snapshots: every scheduler.
    pub(super) fn snapshot_schedulers(&self, out: &mut Vec<u8>) {
        for info in self.schedulers.infos() {
            encode_scheduler(out, info);
        }
    }

    /// The schedulers, one line each, for `dump_state`.
    pub(super) fn dump_schedulers(&self, out: &mut String) {
        use std::fmt::Write;
        for info in self.schedulers.infos() {
            let _ = writeln!(out, "scheduler {info:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::clock::ManualClock;
    use crate::engine::EngineConfig;
    use crate::workers::Worker;

    /// `skipIfNoWorker`: a fire with no registered worker for the queue only moves the
    /// next run on (not counted); once a worker serves the queue, fires push again.
    #[test]
    fn skip_if_no_worker_waits_for_a_registered_worker() {
        let clock = ManualClock::new(1_000_000);
        let mut e = Engine::new(EngineConfig::default(), Arc::new(clock.clone()));
        let spec = SchedulerSpec {
            name: "w".into(),
            queue: "q".into(),
            data: "1".into(),
            repeat_every: Some(1000),
            skip_if_no_worker: true,
            prevent_overlap: Some(false),
            ..SchedulerSpec::default()
        };
        e.upsert_scheduler(spec).unwrap();
        clock.advance(1000);
        let s = e.scheduler("w").unwrap();
        assert_eq!((s.executions, s.next_run), (0, 1_002_000));
        assert!(!e.has_queue("q") || e.counts("q").iter().all(|&n| n == 0));
        let worker = |queue: &str| Worker {
            id: "w1".into(),
            name: "w1".into(),
            queues: vec![queue.into()],
            concurrency: 1,
            hostname: None,
            pid: None,
            registered_at: 0,
            last_seen: 0,
            active_jobs: 0,
            processed_jobs: 0,
            failed_jobs: 0,
            connection: 0,
        };
        e.workers.register(worker("other")).unwrap();
        clock.advance(1000);
        assert_eq!(e.scheduler("w").unwrap().executions, 0);
        e.workers.register(worker("q")).unwrap();
        clock.advance(1000);
        assert_eq!(e.scheduler("w").unwrap().executions, 1);
        assert_eq!(e.counts("q")[0], 1);
    }
}
