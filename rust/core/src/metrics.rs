//! Per-queue metric buckets: one per (minute, job name) with push, completed and failed
//! counts and processing time, kept for a bounded window; hourly views are summed on read.

use std::collections::BTreeMap;

pub const MINUTE_MS: u64 = 60_000;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Bucket {
    /// Jobs created (pushes, repeat runs, flow jobs); the rest is about finished ones.
    pub pushed: u64,
    pub completed: u64,
    pub failed: u64,
    pub total_process_ms: u64,
    pub min_process_ms: u64,
    pub max_process_ms: u64,
}

impl Bucket {
    fn record(&mut self, ok: bool, process_ms: u64) {
        if self.completed + self.failed == 0 || process_ms < self.min_process_ms {
            self.min_process_ms = process_ms;
        }
        self.max_process_ms = self.max_process_ms.max(process_ms);
        self.total_process_ms += process_ms;
        if ok {
            self.completed += 1;
        } else {
            self.failed += 1;
        }
    }

    pub fn merge(&mut self, other: &Bucket) {
        self.pushed += other.pushed;
        if other.completed + other.failed == 0 {
            return;
        }
        if self.completed + self.failed == 0 || other.min_process_ms < self.min_process_ms {
            self.min_process_ms = other.min_process_ms;
        }
        self.max_process_ms = self.max_process_ms.max(other.max_process_ms);
        self.total_process_ms += other.total_process_ms;
        self.completed += other.completed;
        self.failed += other.failed;
    }
}

#[derive(Debug, Default)]
pub struct QueueMetrics {
    /// (minute start ms, job name id) → bucket.
    buckets: BTreeMap<(u64, u32), Bucket>,
}

impl QueueMetrics {
    /// Counts a finished job (completed if `ok`) at `now`.
    pub fn record(&mut self, now: u64, name: u32, ok: bool, process_ms: u64, keep_ms: u64) {
        self.bucket(now, name, keep_ms).record(ok, process_ms);
    }

    /// Counts `count` jobs created at `now`.
    pub fn record_pushes(&mut self, now: u64, name: u32, count: u64, keep_ms: u64) {
        self.bucket(now, name, keep_ms).pushed += count;
    }

    /// The bucket of `now`'s minute, after dropping those older than `keep_ms`.
    fn bucket(&mut self, now: u64, name: u32, keep_ms: u64) -> &mut Bucket {
        let horizon = now.saturating_sub(keep_ms);
        while let Some((&(m, _), _)) = self.buckets.first_key_value() {
            if m >= horizon {
                break;
            }
            self.buckets.pop_first();
        }
        self.buckets
            .entry((now - now % MINUTE_MS, name))
            .or_default()
    }

    /// Buckets of width `granularity_ms` (a multiple of a minute) with start in
    /// `[from, to)`, per job name, in time order.
    pub fn query(&self, from: u64, to: u64, granularity_ms: u64) -> Vec<(u64, u32, Bucket)> {
        let mut out: BTreeMap<(u64, u32), Bucket> = BTreeMap::new();
        let lo = from - from % MINUTE_MS;
        for (&(minute, name), b) in self.buckets.range((lo, 0)..(to, 0)) {
            let start = minute - minute % granularity_ms;
            if start + granularity_ms <= from && minute < from {
                continue;
            }
            out.entry((start, name)).or_default().merge(b);
        }
        out.into_iter().map(|((s, n), b)| (s, n, b)).collect()
    }

    /// Every minute bucket: (minute start, name id, bucket), for snapshots.
    pub fn buckets(&self) -> impl Iterator<Item = (u64, u32, &Bucket)> {
        self.buckets.iter().map(|(&(m, n), b)| (m, n, b))
    }

    /// Adds a bucket read back from a snapshot.
    pub fn restore_bucket(&mut self, minute: u64, name: u32, bucket: &Bucket) {
        self.buckets
            .entry((minute, name))
            .or_default()
            .merge(bucket);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_by_minute_roll_up_by_hour_and_expire() {
        let mut m = QueueMetrics::default();
        let t0 = 3_600_000 * 100;
        m.record(t0 + 1_000, 0, true, 10, 86_400_000);
        m.record(t0 + 2_000, 0, false, 30, 86_400_000);
        m.record(t0 + MINUTE_MS + 5, 0, true, 5, 86_400_000);
        let minutes = m.query(t0, t0 + 3_600_000, MINUTE_MS);
        assert_eq!(minutes.len(), 2);
        let b = minutes[0].2;
        assert_eq!(
            (
                b.completed,
                b.failed,
                b.total_process_ms,
                b.min_process_ms,
                b.max_process_ms
            ),
            (1, 1, 40, 10, 30)
        );
        let hours = m.query(t0, t0 + 3_600_000, 3_600_000);
        assert_eq!(hours.len(), 1);
        assert_eq!(hours[0].2.completed, 2);
        assert_eq!(hours[0].2.min_process_ms, 5);
        m.record(t0 + 2 * 86_400_000, 0, true, 1, 86_400_000);
        assert_eq!(m.query(0, u64::MAX, MINUTE_MS).len(), 1);
    }

    #[test]
    fn pushes_are_counted_beside_finishes_and_merge_alone() {
        let mut m = QueueMetrics::default();
        let t0 = 3_600_000 * 100;
        m.record_pushes(t0 + 1, 0, 3, 86_400_000);
        m.record_pushes(t0 + MINUTE_MS, 0, 2, 86_400_000);
        m.record(t0 + MINUTE_MS + 1, 0, true, 7, 86_400_000);
        let minutes = m.query(t0, t0 + 3_600_000, MINUTE_MS);
        assert_eq!(
            minutes[0].2,
            Bucket {
                pushed: 3,
                ..Bucket::default()
            }
        );
        assert_eq!((minutes[1].2.pushed, minutes[1].2.completed), (2, 1));
        let hour = m.query(t0, t0 + 3_600_000, 3_600_000)[0].2;
        // A bucket of pushes alone adds its pushes, not a minimum time of 0.
        assert_eq!(
            (hour.pushed, hour.completed, hour.min_process_ms),
            (5, 1, 7)
        );
    }
}
