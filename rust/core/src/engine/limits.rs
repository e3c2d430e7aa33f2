//! A queue's rate limit and concurrency limit (bunqueue's `RateLimit`, `RateLimitClear`,
//! `SetConcurrency`, `ClearConcurrency`, `GetQueueLimits`), enforced by `pull_locked`,
//! the one place a job is leased, so every pull path (single, batch, blocking, long
//! poll) obeys them. A queue without limits pays one `Option` test per pull.
//!
//! Waiters are woken when a limit frees: a job leaving `active` frees a concurrency slot
//! (`placement::detach`), and the end of a rate window is a timer (`limit_wakes`, fired
//! by `tick`), scheduled whenever a pull or a wake request finds the window full.

use super::Engine;
use crate::error::{EngineError, Result};
use crate::limits::{LimitsConfig, QueueLimits, RateLimitSpec};
use crate::options::MAX_DELAY_MS;
use crate::record::encode_queue_limits;

/// What `GetQueueLimits` answers (bunqueue's `getQueueLimitStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueLimitsInfo {
    /// The rate limit in force, if any.
    pub rate_limit: Option<RateLimitSpec>,
    /// -2 without a rate limit; else ms until the limit lifts (with a ttl) or until a
    /// pull is admitted (0: now).
    pub rate_limit_ttl: i64,
    pub concurrency_limit: Option<u64>,
    /// The queue's active jobs fill its concurrency limit.
    pub maxed: bool,
}

impl Engine {
    /// At most `max` pulls of `queue` per `duration_ms` window (sliding); with
    /// `ttl_ms`, the limit lifts itself after that long.
    pub fn set_rate_limit(
        &mut self,
        queue: &str,
        max: u64,
        duration_ms: u64,
        ttl_ms: Option<u64>,
    ) -> Result<()> {
        if duration_ms == 0 || duration_ms > MAX_DELAY_MS {
            return Err(EngineError::invalid(format!(
                "duration must be between 1 and {MAX_DELAY_MS} ms"
            )));
        }
        let now = self.tick();
        let qid = self.queue_or_create(queue)?;
        let expires_at = ttl_ms.filter(|&t| t > 0).map(|t| now.saturating_add(t));
        let rate = RateLimitSpec {
            max,
            duration_ms,
            expires_at,
        };
        self.change_limits(qid, |l| l.set_rate(Some(rate)));
        Ok(())
    }

    pub fn clear_rate_limit(&mut self, queue: &str) -> Result<()> {
        self.tick();
        if let Some(qid) = self.queue_id(queue) {
            self.change_limits(qid, |l| l.set_rate(None));
        }
        Ok(())
    }

    /// At most `limit` jobs of `queue` active at once.
    pub fn set_concurrency(&mut self, queue: &str, limit: u64) -> Result<()> {
        self.tick();
        let qid = self.queue_or_create(queue)?;
        self.change_limits(qid, |l| l.config.concurrency = Some(limit));
        Ok(())
    }

    pub fn clear_concurrency(&mut self, queue: &str) -> Result<()> {
        self.tick();
        if let Some(qid) = self.queue_id(queue) {
            self.change_limits(qid, |l| l.config.concurrency = None);
        }
        Ok(())
    }

    /// `queue`'s limits and whether they hold pulls back now; `max_jobs` as bunqueue's
    /// `getRateLimitTtl(maxJobs)` (0 until that many pulls are in the window).
    pub fn queue_limits(&mut self, queue: &str, max_jobs: Option<u64>) -> QueueLimitsInfo {
        let now = self.tick();
        let q = self.queue_id(queue).map(|qid| &self.queues[qid as usize]);
        let Some((q, l)) = q.and_then(|q| Some((q, q.limits.as_deref()?))) else {
            return QueueLimitsInfo {
                rate_limit: None,
                rate_limit_ttl: -2,
                concurrency_limit: None,
                maxed: false,
            };
        };
        QueueLimitsInfo {
            rate_limit: l.rate(now).copied(),
            rate_limit_ttl: l.rate_ttl(now, max_jobs),
            concurrency_limit: l.config.concurrency,
            maxed: l.concurrency_full(q.active.len()),
        }
    }

    /// The limits of `qid` as configured (tests and dumps).
    pub(super) fn limits_config(&self, qid: u32) -> LimitsConfig {
        self.queues[qid as usize]
            .limits
            .as_deref()
            .map_or_else(LimitsConfig::default, |l| l.config)
    }

    /// Edits a queue's limits, drops them when none is left (so pulls skip them), logs
    /// the result and wakes waiters, since a limit may have been raised or lifted.
    fn change_limits(&mut self, qid: u32, edit: impl FnOnce(&mut QueueLimits)) {
        let q = &mut self.queues[qid as usize];
        let limits = q.limits.get_or_insert_with(Box::default);
        edit(limits);
        if limits.config.is_empty() {
            q.limits = None;
        }
        self.record_limits(qid);
        self.wake_if_ready(qid);
    }

    fn record_limits(&mut self, qid: u32) {
        if self.recording {
            let config = self.limits_config(qid);
            encode_queue_limits(&mut self.op_log, &self.queues[qid as usize].name, &config);
        }
    }

    /// Recovery: a queue's limits record.
    pub(super) fn restore_limits(&mut self, queue: &str, config: LimitsConfig) {
        let Ok(qid) = self.queue_or_create(queue) else {
            return;
        };
        let q = &mut self.queues[qid as usize];
        if config.is_empty() {
            q.limits = None;
        } else {
            let l = q.limits.get_or_insert_with(Box::default);
            l.set_rate(config.rate);
            l.config.concurrency = config.concurrency;
        }
    }

    /// Whether `qid`'s limits hold a pull back at `now` (call only when it has limits).
    /// A full rate window schedules a wake-up for when it frees.
    pub(super) fn limits_block(&mut self, qid: u32, now: u64) -> bool {
        let q = &self.queues[qid as usize];
        let l = q.limits.as_deref().expect("the queue has limits");
        if l.concurrency_full(q.active.len()) {
            return true;
        }
        let Some(at) = l.rate_blocked_until(now) else {
            return false;
        };
        self.schedule_limit_wake(qid, at);
        true
    }

    /// Counts a pull of `qid` at `now` against its rate window.
    pub(super) fn note_limited_pull(&mut self, qid: u32, now: u64) {
        if let Some(l) = self.queues[qid as usize].limits.as_deref_mut() {
            l.note_grant(now);
        }
    }

    fn schedule_limit_wake(&mut self, qid: u32, at: u64) {
        if at == u64::MAX {
            return; // a limit of 0 without a ttl never frees by itself
        }
        let l = self.queues[qid as usize]
            .limits
            .as_deref_mut()
            .expect("the queue has limits");
        if l.wake_at.is_some_and(|w| w <= at) {
            return;
        }
        l.wake_at = Some(at);
        self.limit_wakes.insert((at, qid));
        self.note_deadline(at);
    }

    /// `tick`: the rate windows that ended by `now` wake their queues' waiters.
    pub(super) fn fire_limit_wakes(&mut self, now: u64) {
        while let Some(&(at, qid)) = self.limit_wakes.first() {
            if at > now {
                break;
            }
            self.limit_wakes.pop_first();
            // The queue may have been dropped (and its id reused): a spare wake-up only
            // makes a waiter ask again.
            let q = &mut self.queues[qid as usize];
            if let Some(l) = q.limits.as_deref_mut() {
                if l.wake_at == Some(at) {
                    l.wake_at = None;
                }
            }
            if let Some(g) = q.group_rules.as_deref_mut() {
                if g.wake_at == Some(at) {
                    g.wake_at = None;
                }
            }
            self.wake_if_ready(qid);
        }
    }

    /// Wakes `qid`'s waiters if it has ready jobs: a limit that held them back freed.
    pub(super) fn wake_if_ready(&mut self, qid: u32) {
        let q = &mut self.queues[qid as usize];
        if q.paused || q.ready.is_empty() {
            return;
        }
        self.work_added = true;
        if q.wake_requested {
            q.wake_requested = false;
            self.woken.push(qid);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::clock::ManualClock;
    use crate::engine::EngineConfig;
    use crate::options::PushOptions;

    fn engine() -> (Engine, ManualClock) {
        let clock = ManualClock::new(10_000);
        (
            Engine::new(EngineConfig::default(), Arc::new(clock.clone())),
            clock,
        )
    }

    fn push_n(e: &mut Engine, queue: &str, n: usize) {
        for i in 0..n {
            let o = PushOptions::from_json(format!(r#"{{"data":{i}}}"#).as_bytes(), 1 << 20);
            e.push(queue, o.unwrap()).unwrap();
        }
    }

    fn pull(e: &mut Engine) -> Option<String> {
        e.pull_job("q", 0).unwrap().map(|p| p.id)
    }

    #[test]
    fn concurrency_caps_active_jobs_until_an_ack_or_fail_frees_a_slot() {
        let (mut e, _) = engine();
        push_n(&mut e, "q", 6);
        e.set_concurrency("q", 2).unwrap();
        let a = pull(&mut e).unwrap();
        let b = pull(&mut e).unwrap();
        assert_eq!(pull(&mut e), None, "two active: the limit");
        assert_eq!(e.pull_rendered("q", 0).unwrap(), None);
        assert!(e.queue_limits("q", None).maxed);
        e.ack(&a, None, None).unwrap();
        let c = pull(&mut e).unwrap();
        assert_eq!(pull(&mut e), None);
        // (b backs off: it is delayed, not ready.)
        e.fail(&b, None, Some("x".into())).unwrap();
        let _d = pull(&mut e).unwrap();
        assert_eq!(pull(&mut e), None);
        // Raising the limit admits more at once; clearing it, all.
        e.set_concurrency("q", 3).unwrap();
        assert!(pull(&mut e).is_some());
        assert_eq!(pull(&mut e), None);
        e.clear_concurrency("q").unwrap();
        assert!(e.queues[e.queue_id("q").unwrap() as usize].limits.is_none());
        assert!(pull(&mut e).is_some());
        let _ = c;
    }

    /// With a manual clock: exactly `max` per window, the next admitted the moment the
    /// oldest grant leaves the window, and never more in any window.
    #[test]
    fn the_rate_window_is_exact_on_the_engine_clock() {
        let (mut e, clock) = engine();
        push_n(&mut e, "q", 20);
        e.set_rate_limit("q", 3, 1000, None).unwrap();
        let mut granted = Vec::new();
        for _ in 0..400 {
            if let Some(id) = pull(&mut e) {
                granted.push(clock_now(&clock));
                e.ack(&id, None, None).unwrap();
            }
            clock.advance(9);
        }
        assert!(granted.len() >= 9, "{granted:?}");
        for (i, &t) in granted.iter().enumerate() {
            let in_window = granted[i..].iter().take_while(|&&u| u < t + 1000).count();
            assert!(in_window <= 3, "{in_window} pulls in [{t}, {})", t + 1000);
        }
        // The first three go at once, the fourth exactly 1000 ms after the first.
        assert_eq!(
            granted[3] - granted[0],
            1008,
            "the first grid point at or after +1000"
        );
    }

    fn clock_now(c: &ManualClock) -> u64 {
        use crate::clock::Clock;
        c.now_ms()
    }

    #[test]
    fn limits_answer_as_bunqueue_reports_them() {
        let (mut e, clock) = engine();
        let none = e.queue_limits("nowhere", None);
        assert_eq!(
            (
                none.rate_limit,
                none.rate_limit_ttl,
                none.concurrency_limit,
                none.maxed
            ),
            (None, -2, None, false)
        );
        push_n(&mut e, "q", 3);
        e.set_rate_limit("q", 1, 500, None).unwrap();
        e.set_concurrency("q", 5).unwrap();
        let l = e.queue_limits("q", None);
        assert_eq!(l.rate_limit.map(|r| (r.max, r.duration_ms)), Some((1, 500)));
        assert_eq!(
            (l.rate_limit_ttl, l.concurrency_limit, l.maxed),
            (0, Some(5), false)
        );
        pull(&mut e).unwrap();
        clock.advance(100);
        assert_eq!(e.queue_limits("q", None).rate_limit_ttl, 400);
        // A ttl lifts the limit by itself.
        e.set_rate_limit("q", 0, 1000, Some(300)).unwrap();
        assert_eq!(e.queue_limits("q", None).rate_limit_ttl, 300);
        assert_eq!(pull(&mut e), None);
        clock.advance(300);
        assert!(pull(&mut e).is_some());
        assert_eq!(e.queue_limits("q", None).rate_limit, None);
        e.clear_rate_limit("q").unwrap();
        e.clear_concurrency("q").unwrap();
        e.clear_concurrency("never-made").unwrap();
        assert!(e.queue_id("never-made").is_none());
        assert!(e.set_rate_limit("q", 1, 0, None).is_err());
    }

    /// A long-poll waiter is woken when a rate window ends (a timer the engine plans)
    /// and when an ack frees a concurrency slot.
    #[test]
    fn waiters_are_woken_when_a_limit_frees() {
        let (mut e, clock) = engine();
        push_n(&mut e, "q", 5);
        e.set_rate_limit("q", 1, 1000, None).unwrap();
        let a = pull(&mut e).unwrap();
        assert_eq!(pull(&mut e), None);
        assert!(!e.request_wake("q").unwrap(), "ready jobs, but held back");
        assert_eq!(e.plan_wake(), Some(11_000), "the window's end");
        clock.advance(999);
        e.tick();
        assert!(e.take_woken().is_empty());
        clock.advance(1);
        e.tick();
        assert_eq!(e.take_woken(), vec![Arc::<str>::from("q")]);
        assert!(e.take_work_added());
        e.clear_rate_limit("q").unwrap();

        e.set_concurrency("q", 2).unwrap();
        let _b = pull(&mut e).unwrap();
        assert_eq!(pull(&mut e), None);
        assert!(!e.request_wake("q").unwrap());
        e.take_work_added();
        e.ack(&a, None, None).unwrap();
        assert_eq!(e.take_woken(), vec![Arc::<str>::from("q")]);
        assert!(e.take_work_added());
        assert!(pull(&mut e).is_some());
    }

    /// Obliterating a queue forgets its limits: the next queue of that name has none.
    #[test]
    fn obliterate_clears_limits() {
        let (mut e, _) = engine();
        push_n(&mut e, "q", 1);
        e.set_concurrency("q", 0).unwrap();
        assert_eq!(pull(&mut e), None);
        e.obliterate("q", true).unwrap();
        push_n(&mut e, "q", 1);
        assert_eq!(e.queue_limits("q", None).concurrency_limit, None);
        assert!(pull(&mut e).is_some());
    }
}
