//! Named job schedulers (bunqueue's crons): a definition stored apart from jobs that
//! pushes a job to its queue on a cron pattern or every N ms. The plain types and their
//! validation live here; firing, persistence and recovery are `engine/schedulers.rs`.
//!
//! Semantics follow bunqueue 2.9.5 (`domain/types/cron.js`, `infrastructure/scheduler/
//! cron/*.js`, `application/queue-manager/services.js`); `docs/compatibility.md` lists
//! where hopper differs.

use std::sync::Arc;

use hashbrown::HashMap;

use crate::cron::CronSchedule;
use crate::error::{EngineError, Result};
use crate::options::MAX_NAME_LEN;

/// JavaScript's `Number.MAX_SAFE_INTEGER`: the largest `repeatEvery` the reference takes.
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// Time zones the cron evaluator supports (it works in UTC only).
const UTC_NAMES: [&str; 4] = ["UTC", "Etc/UTC", "GMT", "Etc/GMT"];

/// What a caller asks for (bunqueue's `Cron` command / `upsertJobScheduler`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SchedulerSpec {
    pub name: String,
    pub queue: String,
    /// The pushed jobs' name ("default" when absent).
    pub job_name: Option<String>,
    /// The pushed jobs' payload, as raw JSON text ("null" when empty).
    pub data: Box<str>,
    /// A cron pattern (5 or 6 fields, or `@daily`-style shortcut); wins over `repeat_every`.
    pub schedule: Option<String>,
    pub repeat_every: Option<u64>,
    pub timezone: Option<String>,
    pub priority: i32,
    /// At most this many fires (0: no limit).
    pub max_limit: Option<u64>,
    pub unique_key: Option<String>,
    /// Default true: a fire missed while the server was down is skipped.
    pub skip_missed_on_restart: Option<bool>,
    /// The first fire happens at once (only when the scheduler is new).
    pub immediately: bool,
    /// A fire is skipped while no registered worker serves the queue.
    pub skip_if_no_worker: bool,
    /// Default true: the pushed jobs carry `uniqueKey` `cron:<name>` (unless a
    /// `unique_key` is given), so a fire is a no-op while the previous job is live. Set
    /// explicitly to true, an upsert also removes that job if it is still waiting.
    pub prevent_overlap: Option<bool>,
    /// Push options for the jobs, as a JSON object in the push body's spelling
    /// (`maxAttempts`, `backoff`, `timeout`, `delay`, `removeOnComplete`, `removeOnFail`).
    pub job_options: Option<Box<str>>,
}

/// A scheduler as stored, logged and answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchedulerInfo {
    pub name: Box<str>,
    pub queue: Box<str>,
    pub job_name: Box<str>,
    pub data: Box<str>,
    pub schedule: Option<Box<str>>,
    pub repeat_every: Option<u64>,
    pub timezone: Option<Box<str>>,
    pub priority: i32,
    pub max_limit: Option<u64>,
    pub unique_key: Option<Box<str>>,
    pub skip_missed_on_restart: bool,
    pub skip_if_no_worker: bool,
    pub prevent_overlap: bool,
    pub job_options: Option<Box<str>>,
    /// When it fires next (ms since the epoch; `u64::MAX`: never).
    pub next_run: u64,
    /// Fires so far (skipped ones not counted); kept across upserts.
    pub executions: u64,
}

impl SchedulerInfo {
    /// `maxLimit` reached: the scheduler goes away at its next due time.
    pub fn at_limit(&self) -> bool {
        self.max_limit.is_some_and(|m| self.executions >= m)
    }

    /// The uniqueKey its jobs carry, if any.
    pub fn job_unique_key(&self) -> Option<String> {
        match &self.unique_key {
            Some(k) => Some(k.to_string()),
            None if self.prevent_overlap => Some(format!("cron:{}", self.name)),
            None => None,
        }
    }

    /// The parsed pattern, when it has one.
    pub(crate) fn cron(&self) -> Option<CronSchedule> {
        self.schedule
            .as_deref()
            .and_then(|s| CronSchedule::parse(expand_shortcut(s)).ok())
    }

    /// The first run strictly after `from` (cron), or `from + repeatEvery`.
    pub(crate) fn next_after(&self, from: u64) -> u64 {
        if self.schedule.is_some() {
            return self
                .cron()
                .and_then(|c| c.next_after(from))
                .unwrap_or(u64::MAX);
        }
        from.saturating_add(self.repeat_every.unwrap_or(0).max(1))
    }

    /// The body of the job one fire pushes (the push endpoint's JSON).
    pub(crate) fn push_body(&self) -> String {
        let mut out = String::with_capacity(64 + self.data.len());
        out.push_str("{\"name\":");
        crate::json_render::push_str(&mut out, &self.job_name);
        out.push_str(",\"data\":");
        out.push_str(&self.data);
        out.push_str(&format!(",\"priority\":{}", self.priority));
        if let Some(key) = self.job_unique_key() {
            out.push_str(",\"uniqueKey\":");
            crate::json_render::push_str(&mut out, &key);
        }
        if let Some(opts) = self.job_options.as_deref() {
            let inner = opts.trim().trim_start_matches('{').trim_end_matches('}');
            if !inner.trim().is_empty() {
                out.push(',');
                out.push_str(inner);
            }
        }
        out.push('}');
        out
    }
}

/// bunqueue's `CRON_SHORTCUTS`.
pub(crate) fn expand_shortcut(pattern: &str) -> &str {
    match pattern.trim().to_ascii_lowercase().as_str() {
        "@yearly" | "@annually" => "0 0 1 1 *",
        "@monthly" => "0 0 1 * *",
        "@weekly" => "0 0 * * 0",
        "@daily" | "@midnight" => "0 0 * * *",
        "@hourly" => "0 * * * *",
        _ => pattern,
    }
}

/// Checks a spec and turns it into the stored form, with `next_run` and `executions`
/// left for the engine to set. Messages are the reference's where it has one.
pub(crate) fn validate(spec: SchedulerSpec, now: u64) -> Result<SchedulerInfo> {
    if spec.name.is_empty() {
        return Err(EngineError::invalid("name is required"));
    }
    if let Some(every) = spec.repeat_every {
        if every == 0 || every > MAX_SAFE_INTEGER {
            return Err(EngineError::invalid(
                "Cron repeatEvery must be a positive safe integer number of milliseconds",
            ));
        }
    }
    if spec.schedule.as_deref().is_none_or(str::is_empty) && spec.repeat_every.is_none() {
        return Err(EngineError::invalid(
            "Cron job must have either schedule or repeatEvery",
        ));
    }
    let schedule = spec.schedule.filter(|s| !s.is_empty());
    if let Some(pattern) = &schedule {
        let bad = |m: &str| EngineError::invalid(format!("Invalid cron expression: {m}"));
        if let Some(tz) = spec.timezone.as_deref() {
            if !UTC_NAMES.contains(&tz) {
                return Err(bad(&format!(
                    "unsupported timezone \"{tz}\" (hopper evaluates cron patterns in UTC)"
                )));
            }
        }
        let cron = CronSchedule::parse(expand_shortcut(pattern)).map_err(|e| bad(&e.message))?;
        if cron.next_after(now).is_none() {
            return Err(bad("Cron expression has no future occurrences"));
        }
    }
    let job_name = spec.job_name.unwrap_or_else(|| "default".into());
    if job_name.is_empty() || job_name.chars().count() > MAX_NAME_LEN {
        return Err(EngineError::invalid(
            "Job name must be a non-empty string of at most 256 characters",
        ));
    }
    if let Some(opts) = spec.job_options.as_deref() {
        if !opts.trim_start().starts_with('{') {
            return Err(EngineError::invalid("jobOptions must be an object"));
        }
    }
    let data = if spec.data.trim().is_empty() {
        "null".into()
    } else {
        spec.data
    };
    Ok(SchedulerInfo {
        name: spec.name.into(),
        queue: spec.queue.into(),
        job_name: job_name.into(),
        data,
        schedule: schedule.map(Into::into),
        repeat_every: spec.repeat_every,
        timezone: spec.timezone.map(Into::into),
        priority: spec.priority,
        max_limit: spec.max_limit.filter(|&m| m > 0),
        unique_key: spec.unique_key.map(Into::into),
        skip_missed_on_restart: spec.skip_missed_on_restart.unwrap_or(true),
        skip_if_no_worker: spec.skip_if_no_worker,
        prevent_overlap: spec.prevent_overlap.unwrap_or(true),
        job_options: spec.job_options,
        next_run: 0,
        executions: 0,
    })
}

/// One registered scheduler: its definition and state, the generation of its pending
/// timer (a timer of an older generation is stale) and its place in the listing.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub info: SchedulerInfo,
    pub gen: u32,
    pub order: u64,
}

/// The schedulers by name, addressed by a slot that timers carry.
#[derive(Debug, Default)]
pub(crate) struct SchedulerSet {
    entries: Vec<Option<Entry>>,
    by_name: HashMap<Arc<str>, u32>,
    free: Vec<u32>,
    next_gen: u32,
    next_order: u64,
}

impl SchedulerSet {
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    pub fn slot(&self, name: &str) -> Option<u32> {
        self.by_name.get(name).copied()
    }

    pub fn get(&self, slot: u32) -> Option<&Entry> {
        self.entries.get(slot as usize).and_then(Option::as_ref)
    }

    pub fn get_mut(&mut self, slot: u32) -> Option<&mut Entry> {
        self.entries.get_mut(slot as usize).and_then(Option::as_mut)
    }

    pub fn by_name(&self, name: &str) -> Option<&Entry> {
        self.slot(name).and_then(|s| self.get(s))
    }

    /// Stores `info` under its name (replacing, but keeping the listing position) with a
    /// new timer generation; returns (slot, generation).
    pub fn put(&mut self, info: SchedulerInfo) -> (u32, u32) {
        self.next_gen = self.next_gen.wrapping_add(1);
        let gen = self.next_gen;
        if let Some(slot) = self.slot(&info.name) {
            let e = self.get_mut(slot).expect("named slot holds an entry");
            e.info = info;
            e.gen = gen;
            return (slot, gen);
        }
        self.next_order += 1;
        let name: Arc<str> = Arc::from(&*info.name);
        let entry = Entry {
            info,
            gen,
            order: self.next_order,
        };
        let slot = match self.free.pop() {
            Some(s) => {
                self.entries[s as usize] = Some(entry);
                s
            }
            None => {
                self.entries.push(Some(entry));
                (self.entries.len() - 1) as u32
            }
        };
        self.by_name.insert(name, slot);
        (slot, gen)
    }

    /// A new timer generation for `slot` (its older timers become stale).
    pub fn bump(&mut self, slot: u32) -> u32 {
        self.next_gen = self.next_gen.wrapping_add(1);
        let gen = self.next_gen;
        if let Some(e) = self.get_mut(slot) {
            e.gen = gen;
        }
        gen
    }

    pub fn remove(&mut self, name: &str) -> Option<SchedulerInfo> {
        let slot = self.by_name.remove(name)?;
        self.free.push(slot);
        self.entries[slot as usize].take().map(|e| e.info)
    }

    /// Slots in listing order (first registration first).
    pub fn slots(&self) -> Vec<u32> {
        let mut v: Vec<(u64, u32)> = self
            .by_name
            .values()
            .filter_map(|&s| self.get(s).map(|e| (e.order, s)))
            .collect();
        v.sort_unstable();
        v.into_iter().map(|(_, s)| s).collect()
    }

    pub fn infos(&self) -> impl Iterator<Item = &SchedulerInfo> + '_ {
        self.slots()
            .into_iter()
            .filter_map(|s| self.get(s).map(|e| &e.info))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const JAN1: u64 = 1_704_067_200_000;

    fn spec() -> SchedulerSpec {
        SchedulerSpec {
            name: "s".into(),
            queue: "q".into(),
            data: r#"{"a":1}"#.into(),
            repeat_every: Some(1000),
            ..Default::default()
        }
    }

    #[test]
    fn validation_follows_the_reference() {
        let msg = |s: SchedulerSpec| validate(s, JAN1).unwrap_err().message;
        assert_eq!(
            msg(SchedulerSpec {
                repeat_every: None,
                ..spec()
            }),
            "Cron job must have either schedule or repeatEvery"
        );
        assert_eq!(
            msg(SchedulerSpec {
                repeat_every: Some(0),
                ..spec()
            }),
            "Cron repeatEvery must be a positive safe integer number of milliseconds"
        );
        assert!(msg(SchedulerSpec {
            schedule: Some("61 * * * *".into()),
            ..spec()
        })
        .starts_with("Invalid cron expression: "));
        assert!(msg(SchedulerSpec {
            schedule: Some("0 0 30 2 *".into()),
            ..spec()
        })
        .ends_with("has no future occurrences"));
        assert!(msg(SchedulerSpec {
            schedule: Some("0 * * * *".into()),
            timezone: Some("Europe/Rome".into()),
            ..spec()
        })
        .contains("unsupported timezone"));
        let ok = validate(
            SchedulerSpec {
                schedule: Some("@daily".into()),
                timezone: Some("UTC".into()),
                max_limit: Some(0),
                ..spec()
            },
            JAN1,
        )
        .unwrap();
        assert_eq!(ok.max_limit, None, "0 means no limit");
        assert!(ok.skip_missed_on_restart && ok.prevent_overlap);
        assert_eq!(&*ok.job_name, "default");
        assert_eq!(ok.next_after(JAN1), JAN1 + 86_400_000, "schedule wins");
    }

    #[test]
    fn push_body_carries_name_data_key_and_options() {
        let mut info = validate(
            SchedulerSpec {
                job_name: Some("j".into()),
                priority: 3,
                job_options: Some(r#"{"maxAttempts":5,"delay":10}"#.into()),
                ..spec()
            },
            JAN1,
        )
        .unwrap();
        assert_eq!(
            info.push_body(),
            r#"{"name":"j","data":{"a":1},"priority":3,"uniqueKey":"cron:s","maxAttempts":5,"delay":10}"#
        );
        info.prevent_overlap = false;
        info.job_options = Some("{}".into());
        assert_eq!(
            info.push_body(),
            r#"{"name":"j","data":{"a":1},"priority":3}"#
        );
    }
}
