//! Per-group settings of a queue (bunqueue's group commands: a group's concurrency and
//! rate limit, pause, and a timed hold) and the index that lets a pull skip the jobs of
//! blocked groups without scanning them.
//!
//! # Why an index, and which one
//! The ready set (`Queue::ready`) is one ordered index over all of a queue's waiting
//! jobs. Skipping a blocked group by walking it would cost a pull one step per job of
//! that group ahead of the answer: a paused group of a million jobs at the head would
//! make every pull scan a million entries. So a queue that has group settings
//! (`Queue::group_rules`, `None` for every other queue: their pulls pay one branch)
//! splits its ready jobs, as a second index beside `ready` (which stays complete, for
//! counts and lists), into:
//! - `free`: the ready jobs of every group without settings, and of no group, in ready
//!   order; no job here is ever blocked by a group;
//! - one **lane** per group with settings: that group's ready jobs, in ready order;
//! - `heads`: the first job of each non-empty lane, in ready order.
//!
//! A pull takes the first of `free` and walks `heads` in order up to it, taking the
//! first head whose group is not blocked. Its cost is O(log n + b), b being the number
//! of blocked groups whose best job sorts ahead of the answer: a blocked group costs one
//! step however many jobs it holds. Only groups with settings are lanes, so a queue with
//! a thousand plain groups and one limited one keeps a single lane. Keeping a blocked
//! group's jobs out of the index instead would move all of them whenever the group
//! flips (a concurrency of 1 flips on every pull and ack); heads move one entry.
//!
//! Giving a group its first setting moves its ready jobs from `free` to a new lane (one
//! pass over the queue's ready jobs when that group has any), dropping its last one
//! moves them back; settings change rarely, pulls often.

use std::collections::{BTreeMap, VecDeque};

use hashbrown::HashMap;

use crate::priority_queue::OrderKey;

/// A group's rate limit: at most `max` pulls per `duration_ms` (sliding window).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupRate {
    pub max: u64,
    pub duration_ms: u64,
}

/// One group's settings, as logged (a record with none removes the group's entry).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupSettings {
    pub rate: Option<GroupRate>,
    pub concurrency: Option<u64>,
    pub paused: bool,
    /// `RateLimitGroup`: no pull of the group before this time (engine clock, ms).
    pub held_until: Option<u64>,
}

impl GroupSettings {
    /// Nothing set that can block the group at `now` (an ended hold counts as none).
    pub fn is_empty(&self, now: u64) -> bool {
        self.rate.is_none()
            && self.concurrency.is_none()
            && !self.paused
            && self.held_until.is_none_or(|t| t <= now)
    }
}

/// A group with settings: the settings, its rate window and its lane of ready jobs.
#[derive(Debug, Default)]
pub(crate) struct GroupRule {
    pub settings: GroupSettings,
    /// Times of the newest grants, oldest first; at most the rate's `max` (not logged:
    /// after a restart the window starts empty, as a queue's does).
    grants: VecDeque<u64>,
    /// The group's ready jobs in ready order.
    lane: BTreeMap<OrderKey, u32>,
}

impl GroupRule {
    fn in_window(&self, r: &GroupRate, now: u64) -> usize {
        self.grants
            .iter()
            .rev()
            .take_while(|&&t| t.saturating_add(r.duration_ms) > now)
            .count()
    }

    /// `None` if a job of this group may be pulled at `now` with `active` of its jobs
    /// active; else when it may be (`u64::MAX`: not by the clock alone: paused, or at
    /// its concurrency until a job of it finishes).
    pub fn blocked_until(&self, now: u64, active: u64) -> Option<u64> {
        let s = &self.settings;
        if s.paused {
            return Some(u64::MAX);
        }
        if let Some(t) = s.held_until.filter(|&t| t > now) {
            return Some(t);
        }
        if s.concurrency.is_some_and(|c| active >= c) {
            return Some(u64::MAX);
        }
        let r = s.rate.as_ref()?;
        let max = usize::try_from(r.max).unwrap_or(usize::MAX);
        if self.in_window(r, now) < max {
            return None;
        }
        // The max-th newest grant leaves the window first of those that block.
        Some(self.grants[self.grants.len() - max].saturating_add(r.duration_ms))
    }

    /// Counts a pull at `now` against the rate window.
    pub fn note_grant(&mut self, now: u64) {
        if let Some(r) = self.settings.rate {
            self.grants.push_back(now);
            self.keep_newest(r.max);
        }
    }

    fn keep_newest(&mut self, max: u64) {
        let max = usize::try_from(max).unwrap_or(usize::MAX);
        while self.grants.len() > max {
            self.grants.pop_front();
        }
    }

    /// Sets (or removes) the rate limit; a new limit starts a new window, as bunqueue's
    /// `setRateLimit` does.
    pub fn set_rate(&mut self, rate: Option<GroupRate>) {
        self.settings.rate = rate;
        self.grants.clear();
    }

    /// bunqueue's `getGroupRateLimitTtl`: a hold's remaining ms; else -2 when no pull
    /// is counted in the window; else 0 while fewer than `max_jobs` are, else the ms
    /// until the oldest counted pull leaves the window.
    pub fn rate_ttl(&self, now: u64, max_jobs: Option<u64>) -> i64 {
        if let Some(t) = self.settings.held_until.filter(|&t| t > now) {
            return (t - now) as i64;
        }
        let Some(r) = self.settings.rate.as_ref() else {
            return -2;
        };
        let counted = self.in_window(r, now);
        if counted == 0 {
            return -2;
        }
        if max_jobs.is_some_and(|m| (counted as u64) < m) {
            return 0;
        }
        let oldest = self.grants[self.grants.len() - counted];
        (oldest + r.duration_ms - now) as i64
    }

    pub fn head(&self) -> Option<(OrderKey, u32)> {
        self.lane.first_key_value().map(|(&k, &s)| (k, s))
    }
}

/// The groups with settings of one queue, and the split of its ready jobs (above).
#[derive(Debug, Default)]
pub(crate) struct GroupRules {
    pub rules: HashMap<Box<str>, GroupRule>,
    /// Ready jobs of no group or of a group without settings.
    pub free: BTreeMap<OrderKey, u32>,
    /// The first ready job of each lane.
    pub heads: BTreeMap<OrderKey, u32>,
    /// A wake-up is planned at this time already (the engine's limit timers).
    pub wake_at: Option<u64>,
}

impl GroupRules {
    /// A job entering the ready set.
    pub fn insert_ready(&mut self, group: Option<&str>, key: OrderKey, slot: u32) {
        match group.and_then(|g| self.rules.get_mut(g)) {
            Some(rule) => {
                let old = rule.head();
                rule.lane.insert(key, slot);
                if old.is_none_or(|(k, _)| key < k) {
                    if let Some((k, _)) = old {
                        self.heads.remove(&k);
                    }
                    self.heads.insert(key, slot);
                }
            }
            None => {
                self.free.insert(key, slot);
            }
        }
    }

    /// A job leaving the ready set.
    pub fn remove_ready(&mut self, group: Option<&str>, key: &OrderKey) {
        match group.and_then(|g| self.rules.get_mut(g)) {
            Some(rule) => {
                let was_head = rule.head().is_some_and(|(k, _)| k == *key);
                rule.lane.remove(key);
                if was_head {
                    self.heads.remove(key);
                    if let Some((k, s)) = rule.head() {
                        self.heads.insert(k, s);
                    }
                }
            }
            None => {
                self.free.remove(key);
            }
        }
    }

    /// Gives `group` a lane, moving `ready` (its ready jobs) out of `free`.
    pub fn add_rule(&mut self, group: &str, ready: impl IntoIterator<Item = (OrderKey, u32)>) {
        let mut rule = GroupRule::default();
        for (k, s) in ready {
            self.free.remove(&k);
            rule.lane.insert(k, s);
        }
        if let Some((k, s)) = rule.head() {
            self.heads.insert(k, s);
        }
        self.rules.insert(group.into(), rule);
    }

    /// Drops `group`'s lane, its jobs going back to `free`.
    pub fn remove_rule(&mut self, group: &str) {
        if let Some(rule) = self.rules.remove(group) {
            if let Some((k, _)) = rule.head() {
                self.heads.remove(&k);
            }
            self.free.extend(rule.lane);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rated(max: u64, duration_ms: u64) -> GroupRule {
        let mut r = GroupRule::default();
        r.set_rate(Some(GroupRate { max, duration_ms }));
        r
    }

    fn admit(r: &mut GroupRule, now: u64) -> bool {
        let ok = r.blocked_until(now, 0).is_none();
        if ok {
            r.note_grant(now);
        }
        ok
    }

    #[test]
    fn the_group_window_slides_exactly() {
        let mut r = rated(2, 1000);
        assert!(admit(&mut r, 0) && admit(&mut r, 999));
        assert!(!admit(&mut r, 999));
        assert_eq!(r.blocked_until(999, 0), Some(1000));
        assert!(admit(&mut r, 1000));
        assert_eq!(r.blocked_until(1998, 0), Some(1999));
        assert_eq!(r.rate_ttl(1500, None), 499);
        assert_eq!(r.rate_ttl(1500, Some(3)), 0);
        assert_eq!(r.rate_ttl(5000, None), -2);
    }

    #[test]
    fn pause_hold_and_concurrency_block() {
        let mut r = GroupRule::default();
        assert_eq!(r.blocked_until(0, 100), None);
        r.settings.concurrency = Some(2);
        assert_eq!(r.blocked_until(0, 1), None);
        assert_eq!(r.blocked_until(0, 2), Some(u64::MAX));
        r.settings.held_until = Some(50);
        assert_eq!(r.blocked_until(10, 0), Some(50));
        assert_eq!(r.rate_ttl(10, None), 40);
        assert_eq!(r.blocked_until(50, 0), None);
        r.settings.paused = true;
        assert_eq!(r.blocked_until(60, 0), Some(u64::MAX));
        assert!(!r.settings.is_empty(60));
    }

    #[test]
    fn lanes_keep_their_heads() {
        let k = |seq| OrderKey::new(0, seq);
        let mut g = GroupRules::default();
        g.insert_ready(Some("a"), k(1), 1);
        g.insert_ready(None, k(2), 2);
        g.insert_ready(Some("a"), k(3), 3);
        g.add_rule("a", [(k(1), 1), (k(3), 3)]);
        assert_eq!(g.free.len(), 1);
        assert_eq!(g.heads.values().copied().collect::<Vec<_>>(), vec![1]);
        g.insert_ready(Some("a"), k(0), 9);
        assert_eq!(g.heads.values().copied().collect::<Vec<_>>(), vec![9]);
        g.remove_ready(Some("a"), &k(0));
        g.remove_ready(Some("a"), &k(1));
        assert_eq!(g.heads.values().copied().collect::<Vec<_>>(), vec![3]);
        g.remove_rule("a");
        assert!(g.heads.is_empty());
        assert_eq!(g.free.values().copied().collect::<Vec<_>>(), vec![2, 3]);
    }
}
