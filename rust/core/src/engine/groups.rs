//! Per-group settings (bunqueue's group commands): a group's concurrency and rate
//! limit, pause, and a timed hold (`RateLimitGroup`), enforced by `pull_locked` (the one
//! place a job is leased) through the index of `groups.rs`, which skips a blocked group
//! in one step however many jobs it holds. A queue without group settings pays one
//! `Option` test per pull.
//!
//! Waiters are woken when a group frees: a job of a group leaving `active`
//! (`placement::detach`), a setting lifted or loosened (`change_group`), and the end of
//! a hold or of a full rate window, a timer (`limit_wakes`) planned when a pull or a
//! wake request found the group blocked until then.

use super::Engine;
use crate::error::{EngineError, Result};
use crate::groups::{GroupRate, GroupRule, GroupRules, GroupSettings};
use crate::options::MAX_DELAY_MS;
use crate::record::encode_group_settings;

impl Engine {
    /// Waiting and delayed jobs of `group` in `queue` (bunqueue's group jobs count).
    pub fn group_jobs_count(&self, queue: &str, group: &str) -> u64 {
        self.group_counts(queue, group)
            .map_or(0, |c| c.waiting + c.delayed)
    }

    /// Waiting and delayed jobs of `queue` that have a group.
    pub fn groups_jobs_count(&self, queue: &str) -> u64 {
        self.queue_id(queue).map_or(0, |qid| {
            self.queues[qid as usize]
                .groups
                .values()
                .map(|c| c.waiting + c.delayed)
                .sum()
        })
    }

    /// Active jobs of `group` in `queue`.
    pub fn group_active_count(&self, queue: &str, group: &str) -> u64 {
        self.group_counts(queue, group).map_or(0, |c| c.active)
    }

    fn group_counts(&self, queue: &str, group: &str) -> Option<crate::queue::GroupCounts> {
        let qid = self.queue_id(queue)?;
        self.queues[qid as usize].groups.get(group).copied()
    }

    /// `group`'s settings in `queue` (none set: the default).
    pub fn group_settings(&self, queue: &str, group: &str) -> GroupSettings {
        self.group_rule(queue, group)
            .map_or_else(GroupSettings::default, |r| r.settings)
    }

    fn group_rule(&self, queue: &str, group: &str) -> Option<&GroupRule> {
        let qid = self.queue_id(queue)?;
        self.queues[qid as usize]
            .group_rules
            .as_deref()?
            .rules
            .get(group)
    }

    /// At most `max` pulls of `group` per `duration_ms` (sliding window); replacing a
    /// limit starts a new window.
    pub fn set_group_rate_limit(
        &mut self,
        queue: &str,
        group: &str,
        max: u64,
        duration_ms: u64,
    ) -> Result<()> {
        if max == 0 || duration_ms == 0 || duration_ms > MAX_DELAY_MS {
            return Err(EngineError::invalid(format!(
                "max must be positive and duration between 1 and {MAX_DELAY_MS} ms"
            )));
        }
        let now = self.tick();
        let qid = self.queue_or_create(queue)?;
        let rate = GroupRate { max, duration_ms };
        self.change_group(qid, group, now, |r| r.set_rate(Some(rate)));
        Ok(())
    }

    pub fn group_rate_limit(&self, queue: &str, group: &str) -> Option<GroupRate> {
        self.group_settings(queue, group).rate
    }

    /// Removes `group`'s rate limit; whether it had one.
    pub fn remove_group_rate_limit(&mut self, queue: &str, group: &str) -> bool {
        let now = self.tick();
        self.change_existing(queue, group, now, |r| {
            let had = r.settings.rate.is_some();
            r.set_rate(None);
            had
        })
    }

    /// bunqueue's `getGroupRateLimitTtl`: ms left of a hold; else -2 when no pull of
    /// the group is counted in its rate window, 0 while fewer than `max_jobs` are, else
    /// ms until the oldest counted pull leaves the window.
    pub fn group_rate_limit_ttl(&mut self, queue: &str, group: &str, max_jobs: Option<u64>) -> i64 {
        let now = self.tick();
        self.group_rule(queue, group)
            .map_or(-2, |r| r.rate_ttl(now, max_jobs))
    }

    /// At most `limit` jobs of `group` active at once.
    pub fn set_group_concurrency(&mut self, queue: &str, group: &str, limit: u64) -> Result<()> {
        if limit == 0 {
            return Err(EngineError::invalid("concurrency must be positive"));
        }
        let now = self.tick();
        let qid = self.queue_or_create(queue)?;
        self.change_group(qid, group, now, |r| r.settings.concurrency = Some(limit));
        Ok(())
    }

    pub fn group_concurrency(&self, queue: &str, group: &str) -> Option<u64> {
        self.group_settings(queue, group).concurrency
    }

    /// Removes `group`'s concurrency limit; whether it had one.
    pub fn remove_group_concurrency(&mut self, queue: &str, group: &str) -> bool {
        let now = self.tick();
        self.change_existing(queue, group, now, |r| {
            r.settings.concurrency.take().is_some()
        })
    }

    /// Pulls skip `group`'s jobs until it is resumed; whether it was not paused.
    pub fn pause_group(&mut self, queue: &str, group: &str) -> Result<bool> {
        let now = self.tick();
        let qid = self.queue_or_create(queue)?;
        Ok(self.change_group(qid, group, now, |r| {
            !std::mem::replace(&mut r.settings.paused, true)
        }))
    }

    /// Whether `group` was paused.
    pub fn resume_group(&mut self, queue: &str, group: &str) -> bool {
        let now = self.tick();
        self.change_existing(queue, group, now, |r| {
            std::mem::replace(&mut r.settings.paused, false)
        })
    }

    pub fn is_group_paused(&self, queue: &str, group: &str) -> bool {
        self.group_settings(queue, group).paused
    }

    /// bunqueue's `rateLimitGroup`: no job of `group` is pulled for `duration_ms` from
    /// now (replacing any earlier hold).
    pub fn hold_group(&mut self, queue: &str, group: &str, duration_ms: u64) -> Result<()> {
        if duration_ms == 0 || duration_ms > MAX_DELAY_MS {
            return Err(EngineError::invalid(format!(
                "duration must be between 1 and {MAX_DELAY_MS} ms"
            )));
        }
        let now = self.tick();
        let qid = self.queue_or_create(queue)?;
        let until = now + duration_ms;
        self.change_group(qid, group, now, |r| r.settings.held_until = Some(until));
        Ok(())
    }

    /// `change_group` on a group that has settings already; else `T::default()`.
    fn change_existing<T: Default>(
        &mut self,
        queue: &str,
        group: &str,
        now: u64,
        edit: impl FnOnce(&mut GroupRule) -> T,
    ) -> T {
        if self.group_rule(queue, group).is_none() {
            return T::default();
        }
        let qid = self.queue_id(queue).expect("the group has settings");
        self.change_group(qid, group, now, edit)
    }

    /// Edits a group's settings (giving it a lane first if it has none), drops them
    /// when nothing is left set, logs the result and wakes waiters (a setting may have
    /// been lifted).
    fn change_group<T>(
        &mut self,
        qid: u32,
        group: &str,
        now: u64,
        edit: impl FnOnce(&mut GroupRule) -> T,
    ) -> T {
        let out = self.apply_group(qid, group, now, edit);
        if self.recording {
            let settings = self.group_settings_of(qid, group);
            let name = self.queues[qid as usize].name.clone();
            encode_group_settings(&mut self.op_log, &name, group, &settings);
        }
        self.wake_if_ready(qid);
        out
    }

    fn group_settings_of(&self, qid: u32, group: &str) -> GroupSettings {
        self.queues[qid as usize]
            .group_rules
            .as_deref()
            .and_then(|g| g.rules.get(group))
            .map_or_else(GroupSettings::default, |r| r.settings)
    }

    fn apply_group<T>(
        &mut self,
        qid: u32,
        group: &str,
        now: u64,
        edit: impl FnOnce(&mut GroupRule) -> T,
    ) -> T {
        let q = &mut self.queues[qid as usize];
        let ready = &q.ready;
        let rules = q.group_rules.get_or_insert_with(|| {
            Box::new(GroupRules {
                free: ready.entries().collect(),
                ..GroupRules::default()
            })
        });
        if !rules.rules.contains_key(group) {
            // Its ready jobs leave `free` for the group's lane.
            let has_ready = q.groups.get(group).is_some_and(|c| c.waiting > 0);
            let jobs = &self.jobs;
            let mine: Vec<_> = if has_ready {
                rules
                    .free
                    .iter()
                    .filter(|&(_, &s)| jobs.get(s).and_then(|j| j.group_id()) == Some(group))
                    .map(|(&k, &s)| (k, s))
                    .collect()
            } else {
                Vec::new()
            };
            rules.add_rule(group, mine);
        }
        let rule = rules.rules.get_mut(group).expect("added above");
        let out = edit(rule);
        if rule.settings.is_empty(now) {
            rules.remove_rule(group);
            if rules.rules.is_empty() {
                q.group_rules = None;
            }
        }
        out
    }

    /// Recovery: a group's settings record (all empty: none).
    pub(super) fn restore_group(&mut self, queue: &str, group: &str, settings: GroupSettings) {
        let Ok(qid) = self.queue_or_create(queue) else {
            return;
        };
        let now = self.last_now;
        self.apply_group(qid, group, now, |r| {
            if r.settings.rate != settings.rate {
                r.set_rate(settings.rate);
            }
            r.settings = settings;
        });
    }

    /// Every group with settings, as `(queue, group, settings)` (snapshots, dumps).
    pub(super) fn all_group_settings(&self, qid: u32) -> Vec<(&str, GroupSettings)> {
        let mut out: Vec<(&str, GroupSettings)> = self.queues[qid as usize]
            .group_rules
            .as_deref()
            .map(|g| g.rules.iter().map(|(k, r)| (&**k, r.settings)).collect())
            .unwrap_or_default();
        out.sort_unstable_by(|a, b| a.0.cmp(b.0));
        out
    }

    /// The next job a pull of `qid` takes at `now` when the queue has group settings
    /// (call only then): the first ready job, in ready order, whose name is not paused
    /// and whose group is not blocked. When none is, a group blocked until a time plans
    /// a wake-up for then.
    pub(super) fn pick_grouped(&mut self, qid: u32, now: u64) -> Option<u32> {
        let q = &self.queues[qid as usize];
        let rules = q
            .group_rules
            .as_deref()
            .expect("the queue has group settings");
        let jobs = &self.jobs;
        let mut wake = u64::MAX;
        let mut blocked = |group: Option<&str>| -> bool {
            let Some((g, rule)) = group.and_then(|g| rules.rules.get_key_value(g)) else {
                return false;
            };
            let active = q.groups.get(g).map_or(0, |c| c.active);
            match rule.blocked_until(now, active) {
                None => false,
                Some(at) => {
                    wake = wake.min(at);
                    true
                }
            }
        };
        let group_of = |s: u32| jobs.get(s).expect("ready slot").group_id();
        let picked = if q.paused_names.is_empty() {
            // The first of `free`, unless the head of an unblocked lane sorts first.
            let mut chosen = rules.free.first_key_value().map(|(&k, &s)| (k, s));
            for (&k, &s) in &rules.heads {
                if chosen.is_some_and(|(c, _)| c < k) {
                    break;
                }
                if !blocked(group_of(s)) {
                    chosen = Some((k, s));
                    break;
                }
            }
            chosen.map(|(_, s)| s)
        } else {
            // Paused job names already make pulls walk the ready set: filter both.
            q.ready.first_where(|s| {
                let j = jobs.get(s).expect("ready slot");
                !q.paused_names.contains(&j.name) && !blocked(j.group_id())
            })
        };
        if picked.is_none() && wake != u64::MAX {
            self.schedule_group_wake(qid, wake);
        }
        picked
    }

    /// Counts a pull of `slot` at `now` against its group's rate window.
    pub(super) fn note_group_pull(&mut self, qid: u32, slot: u32, now: u64) {
        let Some(g) = self.jobs.get(slot).and_then(|j| j.group_id()) else {
            return;
        };
        if let Some(rule) = self.queues[qid as usize]
            .group_rules
            .as_deref_mut()
            .and_then(|r| r.rules.get_mut(g))
        {
            rule.note_grant(now);
        }
    }

    fn schedule_group_wake(&mut self, qid: u32, at: u64) {
        let rules = self.queues[qid as usize]
            .group_rules
            .as_deref_mut()
            .expect("the queue has group settings");
        if rules.wake_at.is_some_and(|w| w <= at && w > self.last_now) {
            return;
        }
        rules.wake_at = Some(at);
        self.limit_wakes.insert((at, qid));
        self.note_deadline(at);
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

    /// Pushes a job of `group` (none: ungrouped) with `data`; returns its id.
    fn push(e: &mut Engine, group: Option<&str>, data: u32, extra: &str) -> String {
        let g = group.map_or(String::new(), |g| format!(r#","groupId":"{g}""#));
        let o = PushOptions::from_json(
            format!(r#"{{"data":{data}{g}{extra}}}"#).as_bytes(),
            1 << 20,
        );
        e.push("q", o.unwrap()).unwrap().id
    }

    /// The data of the next pulled job, and its id.
    fn pull(e: &mut Engine) -> Option<(String, String)> {
        e.pull_job("q", 0)
            .unwrap()
            .map(|p| (p.data.to_string(), p.id))
    }

    fn data(e: &mut Engine) -> Option<String> {
        pull(e).map(|p| p.0)
    }

    #[test]
    fn counts_follow_waiting_delayed_and_active_jobs() {
        let (mut e, _) = engine();
        push(&mut e, Some("a"), 1, "");
        push(&mut e, Some("a"), 2, r#","delay":100000"#);
        push(&mut e, Some("b"), 3, "");
        push(&mut e, None, 4, "");
        assert_eq!(e.group_jobs_count("q", "a"), 2);
        assert_eq!(e.groups_jobs_count("q"), 3);
        assert_eq!(e.group_active_count("q", "a"), 0);
        assert_eq!(data(&mut e).as_deref(), Some("1"));
        assert_eq!(e.group_jobs_count("q", "a"), 1);
        assert_eq!(e.group_active_count("q", "a"), 1);
        assert_eq!(e.group_jobs_count("nowhere", "a"), 0);
        assert!(e.queue_id("nowhere").is_none());
        // The dashboard's list keeps showing only groups with waiting or active jobs.
        assert_eq!(e.groups("q").len(), 2);
    }

    /// A paused group is skipped, the others are served in ready order; resuming it
    /// serves it again, from where it was.
    #[test]
    fn a_paused_group_is_skipped_while_others_are_served() {
        let (mut e, _) = engine();
        for i in 0..1000 {
            push(&mut e, Some("big"), i, "");
        }
        push(&mut e, Some("b"), 5000, "");
        push(&mut e, None, 5001, "");
        push(&mut e, Some("c"), 5002, r#","priority":5"#);
        assert!(e.pause_group("q", "big").unwrap());
        assert!(!e.pause_group("q", "big").unwrap(), "already paused");
        assert!(e.is_group_paused("q", "big"));
        assert_eq!(data(&mut e).as_deref(), Some("5002"), "priority first");
        assert_eq!(data(&mut e).as_deref(), Some("5000"));
        assert_eq!(data(&mut e).as_deref(), Some("5001"));
        assert_eq!(data(&mut e), None);
        // The skip costs a step per blocked group, not per job: the index holds one
        // head for the paused group.
        let q = &e.queues[e.queue_id("q").unwrap() as usize];
        let rules = q.group_rules.as_deref().unwrap();
        assert_eq!((rules.heads.len(), rules.free.len()), (1, 0));
        assert!(e.resume_group("q", "big"));
        assert!(!e.resume_group("q", "big"));
        assert!(
            e.queues[e.queue_id("q").unwrap() as usize]
                .group_rules
                .is_none(),
            "no settings left: the queue pays nothing"
        );
        assert_eq!(data(&mut e).as_deref(), Some("0"));
        assert_eq!(data(&mut e).as_deref(), Some("1"));
    }

    #[test]
    fn group_concurrency_is_freed_by_ack_and_fail() {
        let (mut e, _) = engine();
        for i in 0..4 {
            push(&mut e, Some("a"), i, "");
        }
        push(&mut e, Some("b"), 10, "");
        e.set_group_concurrency("q", "a", 2).unwrap();
        assert_eq!(e.group_concurrency("q", "a"), Some(2));
        let (_, a0) = pull(&mut e).unwrap();
        let (_, a1) = pull(&mut e).unwrap();
        assert_eq!(
            data(&mut e).as_deref(),
            Some("10"),
            "a is full: b is served"
        );
        assert_eq!(data(&mut e), None);
        e.ack(&a0, None, None).unwrap();
        assert_eq!(data(&mut e).as_deref(), Some("2"));
        assert_eq!(data(&mut e), None);
        e.fail(&a1, None, Some("x".into())).unwrap();
        assert_eq!(data(&mut e).as_deref(), Some("3"));
        assert_eq!(data(&mut e), None);
        assert!(e.remove_group_concurrency("q", "a"));
        assert!(!e.remove_group_concurrency("q", "a"));
        assert_eq!(e.group_concurrency("q", "a"), None);
        assert!(e.set_group_concurrency("q", "a", 0).is_err());
    }

    /// Exactly `max` pulls of the group per window on the manual clock, the next one
    /// the moment the oldest leaves the window; other groups are not held back.
    #[test]
    fn the_group_rate_window_is_exact() {
        let (mut e, clock) = engine();
        for i in 0..10 {
            push(&mut e, Some("a"), i, "");
        }
        push(&mut e, Some("b"), 100, "");
        e.set_group_rate_limit("q", "a", 2, 1000).unwrap();
        assert_eq!(
            e.group_rate_limit("q", "a"),
            Some(GroupRate {
                max: 2,
                duration_ms: 1000
            })
        );
        assert_eq!(e.group_rate_limit_ttl("q", "a", None), -2);
        assert_eq!(data(&mut e).as_deref(), Some("0"));
        clock.advance(300);
        assert_eq!(data(&mut e).as_deref(), Some("1"));
        assert_eq!(e.group_rate_limit_ttl("q", "a", None), 700);
        assert_eq!(e.group_rate_limit_ttl("q", "a", Some(3)), 0);
        assert_eq!(data(&mut e).as_deref(), Some("100"), "b is not limited");
        assert_eq!(data(&mut e), None);
        clock.advance(699);
        assert_eq!(data(&mut e), None);
        clock.advance(1);
        assert_eq!(data(&mut e).as_deref(), Some("2"), "the pull at +0 left");
        assert_eq!(data(&mut e), None);
        clock.advance(300);
        assert_eq!(data(&mut e).as_deref(), Some("3"));
        assert!(e.remove_group_rate_limit("q", "a"));
        assert!(!e.remove_group_rate_limit("q", "a"));
        assert_eq!(data(&mut e).as_deref(), Some("4"));
        assert!(e.set_group_rate_limit("q", "a", 0, 10).is_err());
    }

    #[test]
    fn a_hold_ends_by_itself() {
        let (mut e, clock) = engine();
        push(&mut e, Some("a"), 1, "");
        e.hold_group("q", "a", 500).unwrap();
        assert_eq!(e.group_rate_limit_ttl("q", "a", None), 500);
        assert_eq!(data(&mut e), None);
        clock.advance(499);
        assert_eq!(data(&mut e), None);
        clock.advance(1);
        assert_eq!(data(&mut e).as_deref(), Some("1"));
        assert_eq!(e.group_rate_limit_ttl("q", "a", None), -2);
    }

    /// A long-poll waiter is woken when a hold or a full window ends (a planned timer),
    /// when a job of a full group finishes, and when a group is resumed.
    #[test]
    fn waiters_are_woken_when_a_group_frees() {
        let (mut e, clock) = engine();
        for i in 0..4 {
            push(&mut e, Some("a"), i, "");
        }
        let woken = |e: &mut Engine| {
            e.tick();
            e.take_woken() == vec![Arc::<str>::from("q")]
        };
        e.hold_group("q", "a", 1000).unwrap();
        assert!(!e.request_wake("q").unwrap(), "ready jobs, but held back");
        assert_eq!(e.plan_wake(), Some(11_000), "the hold's end");
        clock.advance(999);
        assert!(!woken(&mut e));
        clock.advance(1);
        assert!(woken(&mut e));

        e.set_group_rate_limit("q", "a", 1, 1000).unwrap();
        let (_, first) = pull(&mut e).unwrap();
        assert!(!e.request_wake("q").unwrap());
        assert_eq!(e.plan_wake(), Some(12_000), "the window's end");
        clock.advance(1000);
        assert!(woken(&mut e));
        e.remove_group_rate_limit("q", "a");

        e.set_group_concurrency("q", "a", 1).unwrap();
        assert!(!e.request_wake("q").unwrap());
        e.ack(&first, None, None).unwrap();
        assert!(woken(&mut e));

        e.pause_group("q", "a").unwrap();
        assert!(!e.request_wake("q").unwrap());
        e.resume_group("q", "a");
        assert!(woken(&mut e));
        assert!(e.request_wake("q").unwrap());
    }

    /// Jobs entering and leaving the ready set (priority changes, delays, removal)
    /// keep the lanes exact: the pull order with settings matches the ready order
    /// without blocked groups.
    #[test]
    fn lanes_follow_every_move_of_a_ready_job() {
        let (mut e, clock) = engine();
        let mut ids = Vec::new();
        for i in 0..30 {
            let g = ["a", "b", "c"][i % 3];
            ids.push(push(
                &mut e,
                Some(g),
                i as u32,
                &format!(r#","priority":{}"#, i % 4),
            ));
        }
        push(&mut e, None, 99, r#","delay":50"#);
        e.set_group_concurrency("q", "a", 100).unwrap();
        e.hold_group("q", "c", 1).unwrap();
        e.update(&ids[3], None, Some(9)).unwrap();
        e.remove(&ids[6]).unwrap();
        clock.advance(60);
        // Expected: every ready job in ready order ("c"'s hold is over).
        let qid = e.queue_id("q").unwrap() as usize;
        let expected: Vec<String> = e.queues[qid]
            .ready
            .iter()
            .map(|s| e.jobs.get(s).unwrap().data.to_string())
            .collect();
        let mut got = Vec::new();
        while let Some(d) = data(&mut e) {
            got.push(d);
        }
        assert_eq!(got.len(), 30);
        assert_eq!(got[..expected.len()], expected[..]);
    }

    #[test]
    fn obliterate_clears_group_settings() {
        let (mut e, _) = engine();
        push(&mut e, Some("a"), 1, "");
        e.pause_group("q", "a").unwrap();
        e.set_group_concurrency("q", "a", 3).unwrap();
        e.obliterate("q", true).unwrap();
        push(&mut e, Some("a"), 2, "");
        assert_eq!(e.group_settings("q", "a"), GroupSettings::default());
        assert_eq!(data(&mut e).as_deref(), Some("2"));
    }
}
