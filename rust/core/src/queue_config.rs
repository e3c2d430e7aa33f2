//! A queue's stall and dead-letter settings (bunqueue's `SetStallConfig`/`GetStallConfig`,
//! `SetDlqConfig`/`GetDlqConfig`): what they hold, how a partial update merges into the
//! current settings, and the auto-retry schedule. The engine applies them in
//! `engine/queue_config.rs`.
//!
//! A queue without settings follows the engine-wide options; the first update of a
//! queue's settings starts from those (so `Get…` always answers what is in force).

use crate::options::MAX_DELAY_MS;

/// How a queue's leases stall.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StallConfig {
    /// Off: leases of the queue taken without an explicit lock duration never stall.
    pub enabled: bool,
    /// A lease not renewed within this many ms stalls.
    pub stall_interval_ms: u64,
    /// A job that stalls this many times fails for good (0 acts as 1).
    pub max_stalls: u64,
    /// No stall counts before a job has been active this long (ms).
    pub grace_period_ms: u64,
}

/// A partial `StallConfig`: the fields an update sets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StallPatch {
    pub enabled: Option<bool>,
    pub stall_interval_ms: Option<u64>,
    pub max_stalls: Option<u64>,
    pub grace_period_ms: Option<u64>,
}

impl StallConfig {
    /// The settings with `patch` applied; intervals are clamped to the longest delay.
    pub fn merged(self, patch: &StallPatch) -> Self {
        Self {
            enabled: patch.enabled.unwrap_or(self.enabled),
            stall_interval_ms: patch
                .stall_interval_ms
                .unwrap_or(self.stall_interval_ms)
                .clamp(1, MAX_DELAY_MS),
            max_stalls: patch.max_stalls.unwrap_or(self.max_stalls),
            grace_period_ms: patch
                .grace_period_ms
                .unwrap_or(self.grace_period_ms)
                .min(MAX_DELAY_MS),
        }
    }

    /// The stall deadline of a lease renewed at `now` for `lock_ms` (the interval when
    /// `None`) of a job that started at `started_at`; `u64::MAX` for never.
    pub fn deadline(&self, now: u64, started_at: u64, lock_ms: Option<u64>) -> u64 {
        let Some(lock) = lock_ms.or(self.enabled.then_some(self.stall_interval_ms)) else {
            return u64::MAX;
        };
        let lease_end = now + lock.clamp(1, MAX_DELAY_MS);
        lease_end.max(started_at.saturating_add(self.grace_period_ms))
    }
}

/// What a queue does with the jobs in its dead-letter (failed) set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DlqConfig {
    /// Failed jobs are retried by themselves, `max_auto_retries` times at most each.
    pub auto_retry: bool,
    /// The first automatic retry comes this long after the failure; each later one
    /// waits twice as long as the one before.
    pub auto_retry_interval_ms: u64,
    pub max_auto_retries: u64,
    /// Failed jobs older than this are dropped (`None`: only the retention age).
    pub max_age_ms: Option<u64>,
    /// At most this many failed jobs are kept, the oldest dropped first.
    pub max_entries: u64,
}

/// A partial `DlqConfig`: the fields an update sets (`max_age_ms: Some(None)` clears
/// the age bound).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DlqPatch {
    pub auto_retry: Option<bool>,
    pub auto_retry_interval_ms: Option<u64>,
    pub max_auto_retries: Option<u64>,
    pub max_age_ms: Option<Option<u64>>,
    pub max_entries: Option<u64>,
}

impl DlqConfig {
    /// The settings with `patch` applied (`max_entries` at least 1, as the reference).
    pub fn merged(self, patch: &DlqPatch) -> Self {
        Self {
            auto_retry: patch.auto_retry.unwrap_or(self.auto_retry),
            auto_retry_interval_ms: patch
                .auto_retry_interval_ms
                .unwrap_or(self.auto_retry_interval_ms)
                .min(MAX_DELAY_MS),
            max_auto_retries: patch.max_auto_retries.unwrap_or(self.max_auto_retries),
            max_age_ms: patch.max_age_ms.unwrap_or(self.max_age_ms),
            max_entries: patch.max_entries.unwrap_or(self.max_entries).max(1),
        }
    }

    /// When a job that failed at `failed_at` after `retries` automatic retries is due
    /// for its next one; `None` if it gets none.
    pub fn retry_due(&self, failed_at: u64, retries: u32) -> Option<u64> {
        if !self.auto_retry || u64::from(retries) >= self.max_auto_retries {
            return None;
        }
        let wait = self
            .auto_retry_interval_ms
            .saturating_mul(1u64 << retries.min(40))
            .min(MAX_DELAY_MS);
        Some(failed_at.saturating_add(wait))
    }
}

/// A queue's settings, each `None` until first set. Live bookkeeping beside them:
/// `next_retry_scan`, the earliest time an automatic retry may be due (0: look now).
#[derive(Debug, Clone, Default)]
pub(crate) struct QueueSettings {
    pub stall: Option<StallConfig>,
    pub dlq: Option<DlqConfig>,
    pub next_retry_scan: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stall() -> StallConfig {
        StallConfig {
            enabled: true,
            stall_interval_ms: 1000,
            max_stalls: 3,
            grace_period_ms: 0,
        }
    }

    #[test]
    fn a_patch_changes_only_what_it_sets() {
        let s = stall().merged(&StallPatch {
            max_stalls: Some(5),
            ..StallPatch::default()
        });
        assert_eq!(
            (s.stall_interval_ms, s.max_stalls, s.enabled),
            (1000, 5, true)
        );
        let s = s.merged(&StallPatch {
            stall_interval_ms: Some(0),
            ..StallPatch::default()
        });
        assert_eq!(s.stall_interval_ms, 1, "at least 1 ms");
        let d = DlqConfig {
            auto_retry: false,
            auto_retry_interval_ms: 100,
            max_auto_retries: 3,
            max_age_ms: Some(10),
            max_entries: 5,
        };
        let d2 = d.merged(&DlqPatch {
            max_age_ms: Some(None),
            max_entries: Some(0),
            ..DlqPatch::default()
        });
        assert_eq!(
            (d2.max_age_ms, d2.max_entries, d2.auto_retry),
            (None, 1, false)
        );
        assert_eq!(d.merged(&DlqPatch::default()), d);
    }

    #[test]
    fn deadlines_follow_interval_grace_and_enabled() {
        let s = stall();
        assert_eq!(s.deadline(100, 100, None), 1100);
        assert_eq!(s.deadline(100, 100, Some(50)), 150);
        let g = StallConfig {
            grace_period_ms: 5000,
            ..s
        };
        assert_eq!(
            g.deadline(100, 100, None),
            5100,
            "no stall inside the grace"
        );
        assert_eq!(g.deadline(9000, 100, None), 10_000);
        let off = StallConfig {
            enabled: false,
            ..s
        };
        assert_eq!(off.deadline(100, 100, None), u64::MAX);
        assert_eq!(
            off.deadline(100, 100, Some(50)),
            150,
            "an explicit lock expires"
        );
    }

    #[test]
    fn auto_retries_back_off_and_stop() {
        let d = DlqConfig {
            auto_retry: true,
            auto_retry_interval_ms: 100,
            max_auto_retries: 3,
            max_age_ms: None,
            max_entries: 10,
        };
        assert_eq!(d.retry_due(1000, 0), Some(1100));
        assert_eq!(d.retry_due(1000, 1), Some(1200));
        assert_eq!(d.retry_due(1000, 2), Some(1400));
        assert_eq!(d.retry_due(1000, 3), None);
        let off = DlqConfig {
            auto_retry: false,
            ..d
        };
        assert_eq!(off.retry_due(1000, 0), None);
    }
}
