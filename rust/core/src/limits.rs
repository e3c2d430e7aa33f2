//! A queue's global limits (bunqueue's `RateLimit` and `SetConcurrency`): how many of
//! its jobs may be handed out per time window, and how many may be active at once.
//!
//! The rate limit is an exact sliding window: a pull is admitted only if fewer than
//! `max` pulls were admitted in the last `duration` ms, so no window of that length, at
//! any offset, ever holds more than `max` (bunqueue refills a token bucket, which lets
//! a full bucket plus a window's refill through in one window). Keeping the times of
//! the newest `max` grants is enough to decide that.

use std::collections::VecDeque;

/// A rate limit as configured (and logged).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitSpec {
    pub max: u64,
    pub duration_ms: u64,
    /// bunqueue's `ttl`: the limit lifts itself at this time (engine clock, ms).
    pub expires_at: Option<u64>,
}

/// What a queue's limits are configured to: the content of their log record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LimitsConfig {
    pub rate: Option<RateLimitSpec>,
    pub concurrency: Option<u64>,
}

impl LimitsConfig {
    pub fn is_empty(&self) -> bool {
        self.rate.is_none() && self.concurrency.is_none()
    }
}

/// A queue's limits and the live state enforcing them (the grant times are not logged:
/// after a restart the window starts empty).
#[derive(Debug, Clone, Default)]
pub(crate) struct QueueLimits {
    pub config: LimitsConfig,
    /// Times of the newest grants, oldest first; at most `max`.
    grants: VecDeque<u64>,
    /// A wake-up is scheduled at this time already (the engine's limit timers).
    pub wake_at: Option<u64>,
}

impl QueueLimits {
    /// The rate limit in force at `now` (`None` once its ttl has passed).
    pub fn rate(&self, now: u64) -> Option<&RateLimitSpec> {
        self.config
            .rate
            .as_ref()
            .filter(|r| r.expires_at.is_none_or(|at| now < at))
    }

    pub fn set_rate(&mut self, rate: Option<RateLimitSpec>) {
        self.config.rate = rate;
        match rate {
            Some(r) => self.keep_newest(r.max),
            None => self.grants.clear(),
        }
    }

    fn keep_newest(&mut self, max: u64) {
        let max = usize::try_from(max).unwrap_or(usize::MAX);
        while self.grants.len() > max {
            self.grants.pop_front();
        }
    }

    /// Grants still inside the window ending at `now`.
    fn in_window(&self, r: &RateLimitSpec, now: u64) -> usize {
        // Grants are in time order: count from the newest back. A grant at `t` counts
        // until `t + duration`.
        let d = r.duration_ms;
        self.grants
            .iter()
            .rev()
            .take_while(|&&t| t.saturating_add(d) > now)
            .count()
    }

    /// `None` if the rate limit admits a pull at `now`; else the time it may admit one
    /// (the oldest counted grant leaves the window, or the limit's ttl ends), or
    /// `u64::MAX` for never (`max` 0 without a ttl).
    pub fn rate_blocked_until(&self, now: u64) -> Option<u64> {
        let r = self.rate(now)?;
        let max = usize::try_from(r.max).unwrap_or(usize::MAX);
        let counted = self.in_window(r, now);
        if counted < max {
            return None;
        }
        let frees = if max == 0 {
            u64::MAX
        } else {
            // The max-th newest grant leaves the window last of those that block.
            self.grants[self.grants.len() - max].saturating_add(r.duration_ms)
        };
        Some(r.expires_at.map_or(frees, |at| frees.min(at)))
    }

    /// Whether `active` jobs fill the concurrency limit.
    pub fn concurrency_full(&self, active: usize) -> bool {
        self.config
            .concurrency
            .is_some_and(|limit| active as u64 >= limit)
    }

    /// Counts a pull admitted at `now` against the rate window.
    pub fn note_grant(&mut self, now: u64) {
        let Some(max) = self.rate(now).map(|r| r.max) else {
            return;
        };
        self.grants.push_back(now);
        self.keep_newest(max);
    }

    /// bunqueue's `getRateLimitTtl`: -2 without a rate limit; with a ttl, the ms until
    /// the limit lifts; else the ms until a pull is admitted (0 now), and with
    /// `max_jobs`, 0 while fewer than that many pulls are in the window.
    pub fn rate_ttl(&self, now: u64, max_jobs: Option<u64>) -> i64 {
        let Some(r) = self.rate(now) else {
            return -2;
        };
        if let Some(at) = r.expires_at {
            return at.saturating_sub(now) as i64;
        }
        if max_jobs.is_some_and(|m| (self.in_window(r, now) as u64) < m) {
            return 0;
        }
        match self.rate_blocked_until(now) {
            None => 0,
            Some(u64::MAX) => i64::MAX,
            Some(at) => at.saturating_sub(now) as i64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(max: u64, duration_ms: u64) -> QueueLimits {
        let mut l = QueueLimits::default();
        l.set_rate(Some(RateLimitSpec {
            max,
            duration_ms,
            expires_at: None,
        }));
        l
    }

    /// Admits and counts like a pull would.
    fn admit(l: &mut QueueLimits, now: u64) -> bool {
        let ok = l.rate_blocked_until(now).is_none();
        if ok {
            l.note_grant(now);
        }
        ok
    }

    /// No window of `duration` ms, at any offset, holds more than `max` grants.
    #[test]
    fn the_window_slides_exactly() {
        let mut l = rate(2, 1000);
        assert!(admit(&mut l, 0) && admit(&mut l, 999));
        assert!(!admit(&mut l, 999));
        assert_eq!(l.rate_blocked_until(999), Some(1000));
        assert!(admit(&mut l, 1000), "the grant at 0 left the window");
        assert!(!admit(&mut l, 1998));
        assert_eq!(l.rate_blocked_until(1998), Some(1999));
        assert!(admit(&mut l, 1999));
        // Brute force: every 1000 ms window over a dense schedule.
        let mut l = rate(3, 1000);
        let mut granted = Vec::new();
        for t in (0..5000).step_by(7) {
            if admit(&mut l, t) {
                granted.push(t);
            }
        }
        for start in 0..5000u64 {
            let n = granted
                .iter()
                .filter(|&&t| t >= start && t < start + 1000)
                .count();
            assert!(n <= 3, "{n} grants in [{start}, {})", start + 1000);
        }
        assert!(granted.len() >= 15);
    }

    #[test]
    fn a_ttl_lifts_the_limit() {
        let mut l = QueueLimits::default();
        l.set_rate(Some(RateLimitSpec {
            max: 0,
            duration_ms: 1000,
            expires_at: Some(5000),
        }));
        assert_eq!(l.rate_blocked_until(10), Some(5000));
        assert_eq!(l.rate_ttl(10, None), 4990);
        assert_eq!(l.rate_blocked_until(5000), None);
        assert_eq!(l.rate_ttl(5000, None), -2);
    }

    #[test]
    fn ttl_reports_follow_bunqueue() {
        let mut l = rate(2, 1000);
        assert_eq!(l.rate_ttl(0, None), 0);
        admit(&mut l, 0);
        assert_eq!(l.rate_ttl(0, Some(2)), 0, "fewer than maxJobs consumed");
        admit(&mut l, 100);
        assert_eq!(l.rate_ttl(200, None), 800);
        assert_eq!(l.rate_ttl(200, Some(2)), 800);
        assert_eq!(QueueLimits::default().rate_ttl(0, None), -2);
    }

    #[test]
    fn concurrency_is_full_at_the_limit() {
        let l = QueueLimits {
            config: LimitsConfig {
                rate: None,
                concurrency: Some(2),
            },
            ..QueueLimits::default()
        };
        assert!(!l.concurrency_full(1));
        assert!(l.concurrency_full(2));
        assert!(!QueueLimits::default().concurrency_full(100));
    }
}
