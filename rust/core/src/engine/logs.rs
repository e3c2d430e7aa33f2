//! Job logs: `add_log`, `logs`, `clear_logs`. The lines live beside the job slab, keyed
//! by slot, and go when the job goes (`release` drops them), so a removed, cleaned,
//! expired or removeOnComplete job takes its lines with it. They are logged as their
//! own records (`record.rs`), written after the jobs of the same frame, so never a line
//! for a job the replay has not created yet.

use super::Engine;
use crate::error::{EngineError, Result};
use crate::job_logs::{JobLogs, LogEntry, LogLevel, MAX_LOG_MESSAGE_BYTES};
use crate::record::{encode_job_log, encode_job_log_trim};

/// One page of a job's log, as `GetLogs` answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobLogPage {
    pub entries: Vec<LogEntry>,
    /// Lines the job has in all (not only on this page).
    pub total: usize,
}

impl Engine {
    /// Adds a line to a job's log (`level` default info), stamped with the engine clock;
    /// beyond `max_logs_per_job` lines the oldest goes.
    pub fn add_log(&mut self, id: &str, message: &str, level: Option<&str>) -> Result<()> {
        let level = level.map_or(Ok(LogLevel::Info), LogLevel::parse)?;
        if message.len() > MAX_LOG_MESSAGE_BYTES {
            return Err(EngineError::invalid(format!(
                "log message must be at most {MAX_LOG_MESSAGE_BYTES} bytes"
            )));
        }
        let now = self.tick();
        let slot = self.slot_or_404(id)?;
        let max = self.config.max_logs_per_job;
        self.logs
            .entry(slot)
            .or_default()
            .append(message.into(), level, now, max);
        self.mark_logs_dirty(slot);
        Ok(())
    }

    /// A job's lines from `start` to `end`, both inclusive (bunqueue's `GetLogs`
    /// slicing: see `JobLogs::slice`), and how many it has.
    pub fn logs(&self, id: &str, start: Option<i64>, end: Option<i64>) -> Result<JobLogPage> {
        let slot = self.slot_or_404(id)?;
        Ok(match self.logs.get(&slot) {
            None => JobLogPage {
                entries: Vec::new(),
                total: 0,
            },
            Some(l) => JobLogPage {
                entries: l.slice(start, end),
                total: l.len(),
            },
        })
    }

    /// Clears a job's log, keeping its newest `keep` lines (`None` or 0: none).
    pub fn clear_logs(&mut self, id: &str, keep: Option<u64>) -> Result<()> {
        self.tick();
        let slot = self.slot_or_404(id)?;
        let keep = keep.map_or(0, |k| usize::try_from(k).unwrap_or(usize::MAX));
        let Some(logs) = self.logs.get_mut(&slot) else {
            return Ok(());
        };
        if logs.len() > keep {
            logs.keep_last(keep);
            self.mark_logs_dirty(slot);
        }
        Ok(())
    }

    fn mark_logs_dirty(&mut self, slot: u32) {
        if !self.recording {
            return;
        }
        let logs = self.logs.get_mut(&slot).expect("the job has logs");
        if !logs.dirty {
            logs.dirty = true;
            self.dirty_logs.push(slot);
        }
    }

    /// Appends the records of every log changed since the last flush: for each, the
    /// trim up to its first kept line, then the lines the log has not seen.
    pub(super) fn flush_logs(&mut self, out: &mut Vec<u8>) {
        for slot in std::mem::take(&mut self.dirty_logs) {
            // The job may have gone since (its lines went with it), or the slot may hold
            // another job whose lines were written already.
            let Some(logs) = self.logs.get_mut(&slot).filter(|l| l.dirty) else {
                continue;
            };
            let id = &self.jobs.get(slot).expect("a job with logs").id;
            encode_job_log_trim(out, id, logs.base());
            for e in logs.unflushed() {
                encode_job_log(out, id, e);
            }
            logs.mark_flushed();
        }
    }

    /// A snapshot's records of one job's log: enough to rebuild it from nothing.
    pub(super) fn snapshot_logs(&self, slot: u32, out: &mut Vec<u8>) {
        let Some(logs) = self.logs.get(&slot) else {
            return;
        };
        let id = &self.job(slot).id;
        encode_job_log_trim(out, id, logs.base());
        for e in logs.entries() {
            encode_job_log(out, id, e);
        }
    }

    /// Recovery: a line record. False if its job does not exist.
    pub(super) fn restore_log(&mut self, id: &crate::ids::JobId, entry: LogEntry) -> bool {
        let Some(slot) = self.find(id) else {
            return false;
        };
        let max = self.config.max_logs_per_job;
        self.logs.entry(slot).or_default().restore(entry, max);
        true
    }

    /// Recovery: a trim record. False if its job does not exist.
    pub(super) fn restore_log_trim(&mut self, id: &crate::ids::JobId, through: u64) -> bool {
        let Some(slot) = self.find(id) else {
            return false;
        };
        self.logs.entry(slot).or_default().trim_through(through);
        true
    }

    /// The lines of the job in `slot`, for state dumps.
    pub(super) fn job_logs(&self, slot: u32) -> Option<&JobLogs> {
        self.logs.get(&slot)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::clock::ManualClock;
    use crate::engine::EngineConfig;
    use crate::error::ErrorKind;
    use crate::options::PushOptions;

    fn engine(max_logs: usize) -> (Engine, ManualClock) {
        let clock = ManualClock::new(1_000);
        let config = EngineConfig {
            max_logs_per_job: max_logs,
            ..EngineConfig::default()
        };
        (Engine::new(config, Arc::new(clock.clone())), clock)
    }

    fn push(e: &mut Engine, json: &str) -> String {
        let o = PushOptions::from_json(json.as_bytes(), 1 << 20).unwrap();
        e.push("q", o).unwrap().id
    }

    fn messages(p: &JobLogPage) -> Vec<&str> {
        p.entries.iter().map(|e| &*e.message).collect()
    }

    #[test]
    fn lines_keep_their_order_level_and_time() {
        let (mut e, clock) = engine(10);
        let id = push(&mut e, r#"{"data":1}"#);
        e.add_log(&id, "a", None).unwrap();
        clock.advance(5);
        e.add_log(&id, "b", Some("warn")).unwrap();
        e.add_log(&id, "c", Some("error")).unwrap();
        let page = e.logs(&id, None, None).unwrap();
        assert_eq!(messages(&page), ["a", "b", "c"]);
        assert_eq!(page.total, 3);
        let levels: Vec<_> = page.entries.iter().map(|l| l.level.as_str()).collect();
        assert_eq!(levels, ["info", "warn", "error"]);
        assert_eq!(page.entries[0].timestamp, 1_000);
        assert_eq!(page.entries[1].timestamp, 1_005);
        let page = e.logs(&id, Some(1), Some(1)).unwrap();
        assert_eq!((messages(&page), page.total), (vec!["b"], 3));
    }

    /// A job keeps at most `max_logs_per_job` lines: the newest.
    #[test]
    fn the_per_job_bound_drops_the_oldest() {
        let (mut e, _) = engine(3);
        let id = push(&mut e, r#"{"data":1}"#);
        for i in 0..5 {
            e.add_log(&id, &format!("m{i}"), None).unwrap();
        }
        let page = e.logs(&id, None, None).unwrap();
        assert_eq!(messages(&page), ["m2", "m3", "m4"]);
        assert_eq!(page.total, 3);
    }

    #[test]
    fn bad_input_and_unknown_jobs_are_refused() {
        let (mut e, _) = engine(3);
        let id = push(&mut e, r#"{"data":1}"#);
        let err = e.add_log("nope", "x", None).unwrap_err();
        assert_eq!(err.kind, ErrorKind::NotFound);
        assert_eq!(err.message, "Job not found");
        assert_eq!(
            e.logs("nope", None, None).unwrap_err().kind,
            ErrorKind::NotFound
        );
        assert_eq!(
            e.clear_logs("nope", None).unwrap_err().kind,
            ErrorKind::NotFound
        );
        let err = e.add_log(&id, "x", Some("debug")).unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidInput);
        let long = "x".repeat(MAX_LOG_MESSAGE_BYTES + 1);
        assert_eq!(
            e.add_log(&id, &long, None).unwrap_err().kind,
            ErrorKind::InvalidInput
        );
        e.add_log(&id, &long[1..], None).unwrap();
    }

    #[test]
    fn clearing_keeps_the_newest_lines_asked_for() {
        let (mut e, _) = engine(10);
        let id = push(&mut e, r#"{"data":1}"#);
        for i in 0..5 {
            e.add_log(&id, &format!("m{i}"), None).unwrap();
        }
        e.clear_logs(&id, Some(2)).unwrap();
        assert_eq!(messages(&e.logs(&id, None, None).unwrap()), ["m3", "m4"]);
        e.clear_logs(&id, Some(5)).unwrap();
        assert_eq!(e.logs(&id, None, None).unwrap().total, 2);
        e.clear_logs(&id, None).unwrap();
        assert_eq!(e.logs(&id, None, None).unwrap().total, 0);
        e.add_log(&id, "again", None).unwrap();
        assert_eq!(messages(&e.logs(&id, None, None).unwrap()), ["again"]);
    }

    /// Lines belong to the job, not its slot: a removed job's lines are gone, and the
    /// job that reuses the slot starts with none.
    #[test]
    fn lines_die_with_their_job() {
        let (mut e, _) = engine(10);
        let id = push(&mut e, r#"{"data":1}"#);
        e.add_log(&id, "old", None).unwrap();
        e.remove(&id).unwrap();
        assert!(e.logs.is_empty());
        let again = push(&mut e, r#"{"data":2}"#);
        assert_eq!(e.logs(&again, None, None).unwrap().total, 0);
        // removeOnComplete: the ack removes the job and its lines.
        let gone = push(&mut e, r#"{"data":3,"removeOnComplete":true}"#);
        e.add_log(&gone, "x", None).unwrap();
        let (slot, token) = loop {
            let (slot, token) = e.pull("q", 0).unwrap().unwrap();
            if e.job_at(slot).id.to_string() == gone {
                break (slot, token);
            }
        };
        assert!(e.logs.contains_key(&slot));
        e.ack(&gone, Some(&token), None).unwrap();
        assert!(e.logs.is_empty());
        // Obliterating the queue frees the lines of every job in it.
        e.add_log(&again, "y", None).unwrap();
        e.obliterate("q", true).unwrap();
        assert!(e.logs.is_empty());
    }
}
