//! Time: `tick` applies every due deadline (end of a delay, ttl, lease stall, attempt
//! timeout, the retention-age sweep with the dead-letter settings' age and retries); `plan_wake` tells the timer thread when to return.

use super::placement::Cause;
use super::{Engine, Timer, TimerKind, RETENTION_SWEEP_MS};
use crate::job::JobState;

impl Engine {
    /// Reads the clock (never backwards) and applies every timer that is due.
    pub fn tick(&mut self) -> u64 {
        let now = self.clock.now_ms().max(self.last_now);
        self.last_now = now;
        let mut fired = std::mem::take(&mut self.due_timers);
        self.timers.advance(now, &mut fired);
        for (deadline, timer) in fired.drain(..) {
            self.fire(timer, deadline, now);
        }
        self.due_timers = fired;
        while let Some(&(at, slot)) = self.lease_deadlines.first() {
            if at > now {
                break;
            }
            self.stall(slot, now);
        }
        while let Some(&(at, slot)) = self.timeout_deadlines.first() {
            if at > now {
                break;
            }
            let ms = self.job(slot).ext().and_then(|e| e.timeout).unwrap_or(0);
            self.fail_attempt(
                slot,
                Some(format!("Job timed out after {ms} ms").into()),
                now,
            );
        }
        if !self.limit_wakes.is_empty() {
            self.fire_limit_wakes(now);
        }
        if now >= self.next_retention_sweep {
            self.next_retention_sweep = now + RETENTION_SWEEP_MS;
            self.expire_finished(now);
            self.sweep_dead_letters(now);
        }
        now
    }

    /// Removes finished jobs older than the retention age, oldest first.
    fn expire_finished(&mut self, now: u64) {
        let horizon = now.saturating_sub(self.config.retention_age_ms);
        for qid in 0..self.queues.len() {
            for failed in [false, true] {
                loop {
                    let q = &self.queues[qid];
                    let set = if failed { &q.failed } else { &q.completed };
                    match set.first() {
                        Some(&(at, slot)) if at <= horizon => self.remove_slot(slot, now, false),
                        _ => break,
                    }
                }
            }
        }
    }

    /// When the timer thread should next wake; it records the promise so that an earlier
    /// timer inserted later can wake it.
    pub(crate) fn plan_wake(&mut self) -> Option<u64> {
        let has_finished = self
            .queues
            .iter()
            .any(|q| !q.completed.is_empty() || !q.failed.is_empty());
        let wake = [
            self.timers.next_wake(),
            self.lease_deadlines.first().map(|&(at, _)| at),
            self.timeout_deadlines.first().map(|&(at, _)| at),
            has_finished.then_some(self.next_retention_sweep),
            self.limit_wakes.first().map(|&(at, _)| at),
        ]
        .into_iter()
        .flatten()
        .min();
        self.planned_wake = wake.unwrap_or(u64::MAX);
        self.timers_moved_earlier = false;
        wake
    }

    pub(crate) fn take_timers_moved_earlier(&mut self) -> bool {
        std::mem::take(&mut self.timers_moved_earlier)
    }

    pub(super) fn add_timer(&mut self, at: u64, kind: TimerKind, slot: u32) {
        let gen = self.job(slot).gen;
        self.note_deadline(at);
        self.timers.insert(at, Timer { kind, slot, gen });
    }

    /// A deadline earlier than the timer thread's planned wake-up must wake it.
    pub(super) fn note_deadline(&mut self, at: u64) {
        if at < self.planned_wake {
            self.timers_moved_earlier = true;
        }
    }

    fn fire(&mut self, t: Timer, deadline: u64, now: u64) {
        if t.kind == TimerKind::Scheduler {
            self.fire_scheduler(t.slot, t.gen, now);
            return;
        }
        let Some(job) = self.jobs.get(t.slot) else {
            return;
        };
        if job.gen != t.gen {
            return; // the job this timer was for is gone; the slot holds another
        }
        match t.kind {
            // A delay timer set before the job was re-timed later (change_delay, a promote
            // then a new delay) is stale: promoting on it would put the job ahead of jobs
            // due before it when one tick covers both deadlines.
            TimerKind::Delay
                if job.state == JobState::Delayed
                    && job.run_at <= now
                    && deadline >= job.run_at =>
            {
                self.enqueue_ready(t.slot, now, Cause::DelayEnded, |_| {});
            }
            TimerKind::Ttl
                if matches!(
                    job.state,
                    JobState::Waiting | JobState::Delayed | JobState::WaitingChildren
                ) =>
            {
                self.totals.expired += 1;
                self.remove_slot(t.slot, now, true);
            }
            _ => {}
        }
    }
}
