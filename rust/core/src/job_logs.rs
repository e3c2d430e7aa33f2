//! A job's log lines (bunqueue's `AddLog`/`GetLogs`/`ClearLogs`, BullMQ's `job.log`): a
//! bounded list, oldest first.
//!
//! Every line gets a sequence number, one more than the job's previous line, and lines
//! only leave from the front, so the kept lines are always the contiguous run
//! `base+1 ..= last`. That is what makes their log records physical (see `record.rs`): a
//! line record says "line n is …" (applied only if the job has no line n yet) and a trim
//! record says "no line up to n" — both idempotent, so a snapshot chunk that saw later
//! lines than the log position it starts from replays to the same list.

use std::collections::VecDeque;

use crate::error::{EngineError, Result};

/// Longest accepted log message, in bytes: a log line is a note, not a payload.
pub const MAX_LOG_MESSAGE_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Info,
    Warn,
    Error,
}

impl LogLevel {
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "info" => Ok(Self::Info),
            "warn" => Ok(Self::Warn),
            "error" => Ok(Self::Error),
            _ => Err(EngineError::invalid(
                "level must be one of info, warn, error",
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Warn => "warn",
            Self::Error => "error",
        }
    }

    /// The byte a record stores (pinned: data directories hold it).
    pub(crate) fn wire_code(self) -> u8 {
        match self {
            Self::Info => 0,
            Self::Warn => 1,
            Self::Error => 2,
        }
    }

    pub(crate) fn from_wire(b: u8) -> Option<Self> {
        match b {
            0 => Some(Self::Info),
            1 => Some(Self::Warn),
            2 => Some(Self::Error),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    pub message: Box<str>,
    pub level: LogLevel,
    /// Engine clock, ms.
    pub timestamp: u64,
    /// The line's number within its job (1 = the first line ever added).
    pub seq: u64,
}

/// The lines of one job, and what of them the log has not seen yet.
#[derive(Debug, Clone, Default)]
pub(crate) struct JobLogs {
    entries: VecDeque<LogEntry>,
    /// Number of the newest line ever added (also when it has been dropped since).
    last_seq: u64,
    /// Lines up to this number are in the log already.
    pub flushed_seq: u64,
    /// On the engine's list of jobs whose lines must be written.
    pub dirty: bool,
}

impl JobLogs {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn entries(&self) -> impl Iterator<Item = &LogEntry> {
        self.entries.iter()
    }

    /// Every line up to this number is gone (or never existed).
    pub fn base(&self) -> u64 {
        self.entries.front().map_or(self.last_seq, |e| e.seq - 1)
    }

    /// Lines not yet written to the log.
    pub fn unflushed(&self) -> impl Iterator<Item = &LogEntry> {
        let skip = self.flushed_seq.saturating_sub(self.base()) as usize;
        self.entries.iter().skip(skip)
    }

    pub fn mark_flushed(&mut self) {
        self.flushed_seq = self.last_seq;
        self.dirty = false;
    }

    /// Adds a line at the back, dropping the oldest beyond `max`.
    pub fn append(&mut self, message: Box<str>, level: LogLevel, timestamp: u64, max: usize) {
        self.last_seq += 1;
        self.entries.push_back(LogEntry {
            message,
            level,
            timestamp,
            seq: self.last_seq,
        });
        self.bound(max);
    }

    /// Recovery: line `entry.seq` from a record, unless the job has had it already.
    pub fn restore(&mut self, entry: LogEntry, max: usize) {
        if entry.seq <= self.last_seq {
            return;
        }
        // Lines are contiguous; a gap can only mean the ones between were dropped.
        if entry.seq != self.last_seq + 1 {
            self.entries.clear();
        }
        self.last_seq = entry.seq;
        self.flushed_seq = entry.seq;
        self.entries.push_back(entry);
        self.bound(max);
    }

    /// Drops every line numbered `through` or lower.
    pub fn trim_through(&mut self, through: u64) {
        while self.entries.front().is_some_and(|e| e.seq <= through) {
            self.entries.pop_front();
        }
        self.last_seq = self.last_seq.max(through);
        self.flushed_seq = self.flushed_seq.max(through);
    }

    /// Keeps the newest `keep` lines (none when 0), as `ClearLogs{keepLogs}` does.
    pub fn keep_last(&mut self, keep: usize) {
        self.bound(keep);
    }

    fn bound(&mut self, max: usize) {
        while self.entries.len() > max {
            self.entries.pop_front();
        }
    }

    /// The lines `GetLogs` answers for `start`/`end`, both inclusive. bunqueue 2.9.5
    /// answers `all.slice(start ?? 0, (end ?? total - 1) + 1)` (JavaScript `slice`:
    /// a negative bound counts from the end), or every line when both are absent. So
    /// `end: -1` gives no lines there (`slice(s, 0)`), and here too.
    pub fn slice(&self, start: Option<i64>, end: Option<i64>) -> Vec<LogEntry> {
        let len = self.entries.len() as i64;
        let resolve = |i: i64| {
            if i < 0 {
                (len + i).max(0)
            } else {
                i.min(len)
            }
        };
        let from = resolve(start.unwrap_or(0));
        let to = resolve(end.map_or(len, |e| e.saturating_add(1)));
        if from >= to {
            return Vec::new();
        }
        self.entries
            .range(from as usize..to as usize)
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logs(n: u64, max: usize) -> JobLogs {
        let mut l = JobLogs::default();
        for i in 1..=n {
            l.append(format!("m{i}").into(), LogLevel::Info, i, max);
        }
        l
    }

    fn messages(v: &[LogEntry]) -> Vec<&str> {
        v.iter().map(|e| &*e.message).collect()
    }

    /// The bound drops the oldest lines, and numbering goes on where it was.
    #[test]
    fn the_bound_keeps_the_newest_lines_in_order() {
        let l = logs(5, 3);
        assert_eq!(messages(&l.slice(None, None)), ["m3", "m4", "m5"]);
        assert_eq!(l.base(), 2);
        assert_eq!(l.entries().map(|e| e.seq).collect::<Vec<_>>(), [3, 4, 5]);
    }

    /// `GetLogs` slices exactly as bunqueue's `Array.prototype.slice` call does.
    #[test]
    fn slicing_follows_bunqueue() {
        let l = logs(5, 10);
        let s = |a, b| messages(&l.slice(a, b)).join(",");
        assert_eq!(s(None, None), "m1,m2,m3,m4,m5");
        assert_eq!(s(Some(1), Some(2)), "m2,m3");
        assert_eq!(s(Some(3), None), "m4,m5");
        assert_eq!(s(None, Some(0)), "m1");
        assert_eq!(s(Some(-2), None), "m4,m5");
        assert_eq!(s(Some(0), Some(-2)), "m1,m2,m3,m4");
        assert_eq!(s(Some(0), Some(-1)), "", "slice(0, 0) in bunqueue");
        assert_eq!(s(Some(0), Some(100)), "m1,m2,m3,m4,m5");
        assert_eq!(s(Some(4), Some(2)), "");
        assert_eq!(s(Some(-100), Some(i64::MAX)), "m1,m2,m3,m4,m5");
    }

    #[test]
    fn keep_last_keeps_the_newest() {
        let mut l = logs(5, 10);
        l.keep_last(2);
        assert_eq!(messages(&l.slice(None, None)), ["m4", "m5"]);
        l.keep_last(0);
        assert_eq!(l.len(), 0);
        assert_eq!(l.base(), 5, "numbering is not reused after a clear");
    }

    /// Replaying line and trim records over a list that already has them changes
    /// nothing, whatever the order they come back in.
    #[test]
    fn restoring_is_idempotent() {
        let live = {
            let mut l = logs(6, 10);
            l.keep_last(3);
            l
        };
        let mut r = logs(6, 10);
        r.trim_through(3);
        // Replayed again: the old trim and lines it already has.
        r.trim_through(2);
        for e in logs(6, 10).entries() {
            r.restore(e.clone(), 10);
        }
        r.trim_through(3);
        assert_eq!(r.slice(None, None), live.slice(None, None));
        assert_eq!(r.base(), live.base());
    }

    #[test]
    fn unflushed_lines_are_those_after_the_last_flush() {
        let mut l = logs(3, 10);
        l.mark_flushed();
        l.append("m4".into(), LogLevel::Warn, 4, 10);
        l.append("m5".into(), LogLevel::Error, 5, 10);
        let got: Vec<&str> = l.unflushed().map(|e| &*e.message).collect();
        assert_eq!(got, ["m4", "m5"]);
        l.keep_last(1);
        let got: Vec<&str> = l.unflushed().map(|e| &*e.message).collect();
        assert_eq!(got, ["m5"]);
    }

    #[test]
    fn levels_parse_and_round_trip() {
        for l in [LogLevel::Info, LogLevel::Warn, LogLevel::Error] {
            assert_eq!(LogLevel::parse(l.as_str()).unwrap(), l);
            assert_eq!(LogLevel::from_wire(l.wire_code()), Some(l));
        }
        assert!(LogLevel::parse("debug").is_err());
    }
}
