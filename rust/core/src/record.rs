//! The records of the write-ahead log and of snapshots, and their binary encoding.
//!
//! Records are *physical*: a job record carries the job's whole state after a change
//! (not the command that changed it), so applying one is idempotent and needs no clock,
//! random seed or slot layout. That is what lets a snapshot be taken in chunks while the
//! engine keeps running: replaying the log from the snapshot's start fixes anything a
//! chunk saw half-way.
//!
//! Encoding: little-endian base-128 varints for integers (zig-zag for signed), a varint
//! length before strings. A job's queue and name travel as strings, so records do not
//! depend on the engine's interned ids. The bytes are pinned by a test: data directories
//! written by earlier versions must still load. Decoding is in `record/decode.rs`.

use crate::engine::Totals;
use crate::groups::GroupSettings;
use crate::ids::JobId;
use crate::job::{FlowLinks, Job, JobExt, STORED_FLAGS};
use crate::job_logs::LogEntry;
use crate::limits::LimitsConfig;
use crate::metrics::Bucket;
use crate::options::Removal;
use crate::queue_config::{DlqConfig, StallConfig};
use crate::schedulers::SchedulerInfo;

mod decode;

pub use decode::Decoder;

const TAG_JOB_FULL: u8 = 1;
const TAG_JOB_STATE: u8 = 2;
const TAG_JOB_DELETE: u8 = 3;
const TAG_QUEUE_STATE: u8 = 4;
const TAG_QUEUE_DROP: u8 = 5;
const TAG_METRIC: u8 = 6;
const TAG_METRIC_BUCKET: u8 = 7;
const TAG_TOTALS: u8 = 8;
const TAG_SNAPSHOT_BEGIN: u8 = 9;
const TAG_SNAPSHOT_END: u8 = 10;
const TAG_JOB_LOG: u8 = 11;
const TAG_JOB_LOG_TRIM: u8 = 12;
const TAG_QUEUE_LIMITS: u8 = 13;
const TAG_SCHEDULER: u8 = 14;
const TAG_SCHEDULER_DELETE: u8 = 15;
const TAG_GROUP_SETTINGS: u8 = 16;
const TAG_QUEUE_STALL_CONFIG: u8 = 18;
const TAG_QUEUE_DLQ_CONFIG: u8 = 19;
const TAG_METRIC_PUSHES: u8 = 20;
const TAG_OUTBOX_PUT: u8 = 21;
const TAG_OUTBOX_DELIVERED: u8 = 22;
const TAG_INBOX_APPLIED: u8 = 23;

/// Sections after a job's extension when its marker byte is 3.
const EXT_FLOW: u8 = 1;
const EXT_DLQ_RETRIES: u8 = 2;
const EXT_DELAY: u8 = 4;
const EXT_REMOTE: u8 = 8;
const EXT_SECTIONS: u8 = EXT_FLOW | EXT_DLQ_RETRIES | EXT_DELAY | EXT_REMOTE;

/// A job read back from a record: the engine's own `Job` (with what a record does not
/// store zeroed: slot generation, interned queue and name ids, lease owner, engine
/// flags), and the queue and job names as text, which is how records carry them.
#[derive(Debug, Clone, PartialEq)]
pub struct JobImage<'a> {
    pub job: Job,
    /// Borrowed from the record: recovery reads a million of these, and owning the two
    /// names cost an allocation and a free each, only to be interned at once.
    pub queue: &'a str,
    pub name: &'a str,
    /// False for a state-only record: the payload did not change, and `job.data` is
    /// empty.
    pub with_data: bool,
}

/// One decoded record. Not boxed: a job is most records, and each is applied at once.
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)]
pub enum Record<'a> {
    Job(JobImage<'a>),
    JobDelete(JobId),
    QueueState {
        queue: Box<str>,
        paused: bool,
        paused_names: Vec<Box<str>>,
    },
    QueueDrop(Box<str>),
    /// One finished attempt, for the per-minute metrics.
    Metric {
        queue: Box<str>,
        name: Box<str>,
        at: u64,
        ok: bool,
        took: u64,
    },
    /// Jobs created in a queue under a job name in one minute: added to that bucket's
    /// push count (a bucket record of a snapshot carries no pushes: this follows it).
    MetricPushes {
        queue: Box<str>,
        name: Box<str>,
        minute: u64,
        count: u64,
    },
    /// A whole metric bucket (snapshots only).
    MetricBucket {
        queue: Box<str>,
        name: Box<str>,
        minute: u64,
        bucket: Bucket,
    },
    Totals(Totals),
    SnapshotBegin {
        next_seq: i64,
    },
    SnapshotEnd {
        jobs: u64,
    },
    /// Line `entry.seq` of a job's log (applied only if the job lacks it).
    JobLog {
        id: JobId,
        entry: LogEntry,
    },
    /// A job's log has no line numbered `through` or lower.
    JobLogTrim {
        id: JobId,
        through: u64,
    },
    /// A queue's limits, whole (empty: none).
    QueueLimits {
        queue: Box<str>,
        limits: LimitsConfig,
    },
    /// A job scheduler, whole: definition, next run and executions.
    Scheduler(Box<SchedulerInfo>),
    /// A job scheduler removed: its name.
    SchedulerDelete(Box<str>),
    /// One group's settings in a queue, whole (empty: none).
    GroupSettings {
        queue: Box<str>,
        group: Box<str>,
        settings: GroupSettings,
    },
    /// A queue's stall settings, whole (`None`: the engine-wide ones).
    QueueStallConfig {
        queue: Box<str>,
        config: Option<StallConfig>,
    },
    /// A queue's dead-letter settings, whole (`None`: the defaults).
    QueueDlqConfig {
        queue: Box<str>,
        config: Option<DlqConfig>,
    },
    /// A message for slot `target` of the cluster, numbered `seq` among those for it.
    OutboxPut {
        target: u32,
        seq: u64,
        body: Box<[u8]>,
    },
    /// The messages for `target` through `seq` reached the database.
    OutboxDelivered {
        target: u32,
        through: u64,
    },
    /// The messages from slot `source` through `seq` were applied here.
    InboxApplied {
        source: u32,
        seq: u64,
    },
}

// ----- encoding ---------------------------------------------------------------------

pub fn put_u64(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_i64(out: &mut Vec<u8>, v: i64) {
    put_u64(out, ((v << 1) ^ (v >> 63)) as u64);
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_u64(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

fn put_opt_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        None => out.push(0),
        Some(s) => {
            out.push(1);
            put_str(out, s);
        }
    }
}

fn put_opt_u64(out: &mut Vec<u8>, v: Option<u64>) {
    match v {
        None => out.push(0),
        Some(v) => {
            out.push(1);
            put_u64(out, v);
        }
    }
}

fn put_id(out: &mut Vec<u8>, id: &JobId) {
    match id {
        JobId::Uuid(b) => {
            out.push(0);
            out.extend_from_slice(b);
        }
        JobId::Custom(s) => {
            out.push(1);
            put_str(out, s);
        }
    }
}

fn put_removal(out: &mut Vec<u8>, r: Removal) {
    match r {
        Removal::Keep => out.push(0),
        Removal::Remove => out.push(1),
        Removal::KeepLast(n) => {
            out.push(2);
            put_u64(out, u64::from(n));
        }
    }
}

/// Appends a job record, in `queue` under the job name `name`: `with_data` a full
/// record, else a state-only one (the payload did not change).
pub fn encode_job(out: &mut Vec<u8>, j: &Job, queue: &str, name: &str, with_data: bool) {
    out.push(if with_data {
        TAG_JOB_FULL
    } else {
        TAG_JOB_STATE
    });
    put_id(out, &j.id);
    put_str(out, queue);
    put_str(out, name);
    if with_data {
        put_str(out, &j.data);
    }
    out.push(j.state.wire_code());
    out.push(j.flags & STORED_FLAGS);
    put_i64(out, i64::from(j.priority));
    put_i64(out, j.seq);
    for v in [j.created_at, j.run_at, j.started_at, j.finished_at] {
        put_u64(out, v);
    }
    put_u64(out, u64::from(j.backoff));
    for v in [j.attempts, j.max_attempts, j.stalls] {
        put_u64(out, u64::from(v));
    }
    out.push(j.progress);
    match j.lease.as_deref() {
        None => out.push(0),
        Some(l) => {
            out.push(1);
            out.extend_from_slice(&l.token);
            put_u64(out, l.stall_deadline);
            put_opt_u64(out, l.timeout_deadline);
        }
    }
    match j.ext.as_deref() {
        None => out.push(0),
        // 2: the extension is followed by flow links (a byte earlier versions never
        // wrote, so their records read the same). 3: a byte of `EXT_*` bits follows
        // saying which sections come after the extension (flow links, the automatic
        // retry count, the pushed delay, the links to other slots, in that order);
        // written only when one of the last three is set, so the bytes of every other
        // job stay those of earlier versions.
        Some(e) if e.dlq_retries > 0 || e.delay > 0 || e.remote.is_some() => {
            let mut sections = 0;
            for (bit, set) in [
                (EXT_FLOW, e.flow.is_some()),
                (EXT_DLQ_RETRIES, e.dlq_retries > 0),
                (EXT_DELAY, e.delay > 0),
                (EXT_REMOTE, e.remote.is_some()),
            ] {
                if set {
                    sections |= bit;
                }
            }
            out.push(3);
            out.push(sections);
            encode_ext(out, e);
            if let Some(f) = e.flow.as_deref() {
                encode_flow(out, f);
            }
            if e.dlq_retries > 0 {
                put_u64(out, u64::from(e.dlq_retries));
            }
            if e.delay > 0 {
                put_u64(out, e.delay);
            }
            if let Some(r) = e.remote.as_deref() {
                put_u64(out, r.deps.len() as u64);
                for (id, done) in &r.deps {
                    put_id(out, id);
                    out.push(u8::from(*done));
                }
                put_u64(out, r.dependents.len() as u64);
                for (id, slot) in &r.dependents {
                    put_id(out, id);
                    put_u64(out, u64::from(*slot));
                }
            }
        }
        Some(e) => {
            out.push(if e.flow.is_some() { 2 } else { 1 });
            encode_ext(out, e);
            if let Some(f) = e.flow.as_deref() {
                encode_flow(out, f);
            }
        }
    }
}

fn encode_flow(out: &mut Vec<u8>, f: &FlowLinks) {
    match &f.parent {
        None => out.push(0),
        Some(p) => {
            out.push(1);
            put_id(out, p);
        }
    }
    out.push(f.on_failure.wire_code());
    put_u64(out, f.children.len() as u64);
    for c in &f.children {
        put_id(out, c);
    }
    for pairs in [&f.values, &f.failed, &f.ignored] {
        put_u64(out, pairs.len() as u64);
        for (k, v) in pairs {
            put_str(out, k);
            put_str(out, v);
        }
    }
}

fn encode_ext(out: &mut Vec<u8>, e: &JobExt) {
    put_opt_u64(out, e.ttl);
    put_opt_u64(out, e.timeout);
    put_opt_str(out, e.unique_key.as_deref());
    put_u64(out, e.tags.len() as u64);
    for t in &e.tags {
        put_str(out, t);
    }
    put_opt_str(out, e.group_id.as_deref());
    put_u64(out, e.depends_on.len() as u64);
    for d in &e.depends_on {
        put_id(out, d);
    }
    put_u64(out, u64::from(e.pending_deps));
    put_u64(out, e.dependents.len() as u64);
    for d in &e.dependents {
        put_id(out, d);
    }
    put_removal(out, e.remove_on_complete);
    put_removal(out, e.remove_on_fail);
    match &e.repeat {
        None => out.push(0),
        Some(r) => {
            out.push(1);
            put_opt_u64(out, r.spec.every);
            put_opt_str(out, r.spec.pattern.as_deref());
            put_opt_u64(out, r.spec.limit.map(u64::from));
            put_u64(out, u64::from(r.count));
            out.push(u8::from(r.successor_scheduled));
        }
    }
    put_opt_str(out, e.result.as_deref());
    put_opt_str(out, e.error.as_deref());
}

pub fn encode_delete(out: &mut Vec<u8>, id: &JobId) {
    out.push(TAG_JOB_DELETE);
    put_id(out, id);
}

pub fn encode_queue_state(out: &mut Vec<u8>, queue: &str, paused: bool, names: &[&str]) {
    out.push(TAG_QUEUE_STATE);
    put_str(out, queue);
    out.push(u8::from(paused));
    put_u64(out, names.len() as u64);
    for n in names {
        put_str(out, n);
    }
}

pub fn encode_queue_drop(out: &mut Vec<u8>, queue: &str) {
    out.push(TAG_QUEUE_DROP);
    put_str(out, queue);
}

pub fn encode_metric(out: &mut Vec<u8>, queue: &str, name: &str, at: u64, ok: bool, took: u64) {
    out.push(TAG_METRIC);
    put_str(out, queue);
    put_str(out, name);
    put_u64(out, at);
    out.push(u8::from(ok));
    put_u64(out, took);
}

pub fn encode_metric_pushes(out: &mut Vec<u8>, queue: &str, name: &str, minute: u64, count: u64) {
    out.push(TAG_METRIC_PUSHES);
    put_str(out, queue);
    put_str(out, name);
    put_u64(out, minute);
    put_u64(out, count);
}

pub fn encode_metric_bucket(out: &mut Vec<u8>, queue: &str, name: &str, minute: u64, b: &Bucket) {
    out.push(TAG_METRIC_BUCKET);
    put_str(out, queue);
    put_str(out, name);
    put_u64(out, minute);
    for v in [
        b.completed,
        b.failed,
        b.total_process_ms,
        b.min_process_ms,
        b.max_process_ms,
    ] {
        put_u64(out, v);
    }
}

pub fn encode_totals(out: &mut Vec<u8>, t: &Totals) {
    out.push(TAG_TOTALS);
    for v in [
        t.pushed,
        t.pulled,
        t.completed,
        t.failed,
        t.retried,
        t.stalled,
        t.duplicated,
        t.expired,
    ] {
        put_u64(out, v);
    }
}

pub fn encode_snapshot_begin(out: &mut Vec<u8>, next_seq: i64) {
    out.push(TAG_SNAPSHOT_BEGIN);
    put_i64(out, next_seq);
}

pub fn encode_snapshot_end(out: &mut Vec<u8>, jobs: u64) {
    out.push(TAG_SNAPSHOT_END);
    put_u64(out, jobs);
}

pub fn encode_job_log(out: &mut Vec<u8>, id: &JobId, e: &LogEntry) {
    out.push(TAG_JOB_LOG);
    put_id(out, id);
    put_u64(out, e.seq);
    out.push(e.level.wire_code());
    put_u64(out, e.timestamp);
    put_str(out, &e.message);
}

pub fn encode_job_log_trim(out: &mut Vec<u8>, id: &JobId, through: u64) {
    out.push(TAG_JOB_LOG_TRIM);
    put_id(out, id);
    put_u64(out, through);
}

pub fn encode_queue_limits(out: &mut Vec<u8>, queue: &str, l: &LimitsConfig) {
    out.push(TAG_QUEUE_LIMITS);
    put_str(out, queue);
    match &l.rate {
        None => out.push(0),
        Some(r) => {
            out.push(1);
            put_u64(out, r.max);
            put_u64(out, r.duration_ms);
            put_opt_u64(out, r.expires_at);
        }
    }
    put_opt_u64(out, l.concurrency);
}

pub fn encode_group_settings(out: &mut Vec<u8>, queue: &str, group: &str, g: &GroupSettings) {
    out.push(TAG_GROUP_SETTINGS);
    put_str(out, queue);
    put_str(out, group);
    match &g.rate {
        None => out.push(0),
        Some(r) => {
            out.push(1);
            put_u64(out, r.max);
            put_u64(out, r.duration_ms);
        }
    }
    put_opt_u64(out, g.concurrency);
    out.push(u8::from(g.paused));
    put_opt_u64(out, g.held_until);
}

pub fn encode_queue_stall_config(out: &mut Vec<u8>, queue: &str, c: Option<&StallConfig>) {
    out.push(TAG_QUEUE_STALL_CONFIG);
    put_str(out, queue);
    let Some(c) = c else {
        out.push(0);
        return;
    };
    out.push(1);
    out.push(u8::from(c.enabled));
    put_u64(out, c.stall_interval_ms);
    put_u64(out, c.max_stalls);
    put_u64(out, c.grace_period_ms);
}

pub fn encode_queue_dlq_config(out: &mut Vec<u8>, queue: &str, c: Option<&DlqConfig>) {
    out.push(TAG_QUEUE_DLQ_CONFIG);
    put_str(out, queue);
    let Some(c) = c else {
        out.push(0);
        return;
    };
    out.push(1);
    out.push(u8::from(c.auto_retry));
    put_u64(out, c.auto_retry_interval_ms);
    put_u64(out, c.max_auto_retries);
    put_opt_u64(out, c.max_age_ms);
    put_u64(out, c.max_entries);
}

/// Bits of a scheduler record's flag byte.
const SCHED_SKIP_MISSED: u8 = 1;
const SCHED_SKIP_NO_WORKER: u8 = 2;
const SCHED_PREVENT_OVERLAP: u8 = 4;

pub fn encode_scheduler(out: &mut Vec<u8>, s: &SchedulerInfo) {
    out.push(TAG_SCHEDULER);
    put_str(out, &s.name);
    put_str(out, &s.queue);
    put_str(out, &s.job_name);
    put_str(out, &s.data);
    put_opt_str(out, s.schedule.as_deref());
    put_opt_u64(out, s.repeat_every);
    put_opt_str(out, s.timezone.as_deref());
    put_i64(out, i64::from(s.priority));
    put_opt_u64(out, s.max_limit);
    put_opt_str(out, s.unique_key.as_deref());
    let flags = [
        (s.skip_missed_on_restart, SCHED_SKIP_MISSED),
        (s.skip_if_no_worker, SCHED_SKIP_NO_WORKER),
        (s.prevent_overlap, SCHED_PREVENT_OVERLAP),
    ]
    .into_iter()
    .filter(|&(on, _)| on)
    .fold(0, |acc, (_, bit)| acc | bit);
    out.push(flags);
    put_opt_str(out, s.job_options.as_deref());
    put_u64(out, s.next_run);
    put_u64(out, s.executions);
}

pub fn encode_scheduler_delete(out: &mut Vec<u8>, name: &str) {
    out.push(TAG_SCHEDULER_DELETE);
    put_str(out, name);
}

pub fn encode_outbox_put(out: &mut Vec<u8>, target: u32, seq: u64, body: &[u8]) {
    out.push(TAG_OUTBOX_PUT);
    put_u64(out, u64::from(target));
    put_u64(out, seq);
    put_u64(out, body.len() as u64);
    out.extend_from_slice(body);
}

pub fn encode_outbox_delivered(out: &mut Vec<u8>, target: u32, through: u64) {
    out.push(TAG_OUTBOX_DELIVERED);
    put_u64(out, u64::from(target));
    put_u64(out, through);
}

pub fn encode_inbox_applied(out: &mut Vec<u8>, source: u32, seq: u64) {
    out.push(TAG_INBOX_APPLIED);
    put_u64(out, u64::from(source));
    put_u64(out, seq);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::{JobState, Lease, RepeatState};
    use crate::options::RepeatSpec;

    fn image() -> JobImage<'static> {
        let job = Job {
            id: JobId::Custom("order-7".into()),
            data: r#"{"to":"a@b.c"}"#.into(),
            ext: Some(Box::new(JobExt {
                flow: None,
                ttl: Some(60_000),
                timeout: Some(1000),
                unique_key: Some("k".into()),
                tags: vec!["a".into(), "b".into()],
                group_id: Some("g".into()),
                depends_on: vec![JobId::Uuid([1; 16])],
                pending_deps: 1,
                dependents: vec![JobId::Custom("p".into())],
                remove_on_complete: Removal::KeepLast(10),
                remove_on_fail: Removal::Remove,
                repeat: Some(RepeatState {
                    spec: RepeatSpec {
                        every: None,
                        pattern: Some("*/5 * * * *".into()),
                        limit: Some(3),
                    },
                    count: 2,
                    successor_scheduled: true,
                }),
                result: Some("1".into()),
                error: Some("boom".into()),
                dlq_retries: 0,
                delay: 0,
                remote: None,
            })),
            lease: Some(Box::new(Lease {
                token: [7; 16],
                owner: 0,
                stall_deadline: 1_700_000_031_000,
                timeout_deadline: Some(1_700_000_002_000),
                token_required: false,
            })),
            created_at: 1_700_000_000_000,
            run_at: 1_700_000_000_500,
            started_at: 1_700_000_001_000,
            finished_at: 0,
            seq: -42,
            gen: 0,
            queue: 0,
            name: 0,
            priority: -5,
            backoff: 1000,
            attempts: 2,
            max_attempts: 5,
            stalls: 1,
            progress: 40,
            state: JobState::Active,
            flags: 3,
        };
        JobImage {
            job,
            queue: "emails",
            name: "welcome",
            with_data: true,
        }
    }

    fn bucket() -> Bucket {
        Bucket {
            pushed: 0,
            completed: 1,
            failed: 2,
            total_process_ms: 3,
            min_process_ms: 4,
            max_process_ms: 5,
        }
    }

    fn totals(expired: u64) -> Totals {
        Totals {
            pushed: 1,
            pulled: 2,
            completed: 3,
            failed: 4,
            retried: 5,
            stalled: 6,
            duplicated: 7,
            expired,
        }
    }

    fn encode_image(out: &mut Vec<u8>, j: &JobImage, with_data: bool) {
        encode_job(out, &j.job, j.queue, j.name, with_data);
    }

    #[test]
    fn every_record_round_trips() {
        let img = image();
        let mut out = Vec::new();
        encode_image(&mut out, &img, true);
        encode_image(&mut out, &img, false);
        encode_delete(&mut out, &JobId::Uuid([9; 16]));
        encode_queue_state(&mut out, "q", true, &["n1", "n2"]);
        encode_queue_drop(&mut out, "q");
        encode_metric(&mut out, "q", "n", 123, false, 45);
        let b = bucket();
        encode_metric_bucket(&mut out, "q", "n", 60_000, &b);
        encode_metric_pushes(&mut out, "q", "n", 60_000, 300);
        let t = totals(u64::MAX);
        encode_totals(&mut out, &t);
        encode_snapshot_begin(&mut out, i64::MIN + 1);
        encode_snapshot_end(&mut out, 99);

        let mut d = Decoder::new(&out);
        let mut got = Vec::new();
        while let Some(r) = d.next_record().unwrap() {
            got.push(r);
        }
        let state_only = JobImage {
            job: Job {
                data: Box::default(),
                ..img.job.clone()
            },
            with_data: false,
            ..img.clone()
        };
        assert_eq!(
            got,
            vec![
                Record::Job(img),
                Record::Job(state_only),
                Record::JobDelete(JobId::Uuid([9; 16])),
                Record::QueueState {
                    queue: "q".into(),
                    paused: true,
                    paused_names: vec!["n1".into(), "n2".into()]
                },
                Record::QueueDrop("q".into()),
                Record::Metric {
                    queue: "q".into(),
                    name: "n".into(),
                    at: 123,
                    ok: false,
                    took: 45
                },
                Record::MetricBucket {
                    queue: "q".into(),
                    name: "n".into(),
                    minute: 60_000,
                    bucket: b
                },
                Record::MetricPushes {
                    queue: "q".into(),
                    name: "n".into(),
                    minute: 60_000,
                    count: 300
                },
                Record::Totals(t),
                Record::SnapshotBegin {
                    next_seq: i64::MIN + 1
                },
                Record::SnapshotEnd { jobs: 99 },
            ]
        );
    }

    #[test]
    fn truncated_and_garbage_payloads_are_errors_not_panics() {
        let mut out = Vec::new();
        encode_image(&mut out, &image(), true);
        for cut in 0..out.len() {
            let mut d = Decoder::new(&out[..cut]);
            assert!(cut == 0 || d.next_record().is_err(), "cut at {cut}");
        }
        let mut d = Decoder::new(&[200, 1, 2]);
        assert!(d.next_record().is_err());
        let mut d = Decoder::new(&[TAG_TOTALS, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]);
        assert!(d.next_record().is_err());
    }

    /// Log lines, log trims and queue limits come back as written, and their bytes are
    /// pinned like the others'.
    #[test]
    fn log_and_limit_records_round_trip_and_are_pinned() {
        use crate::job_logs::LogLevel;
        use crate::limits::RateLimitSpec;
        let entry = LogEntry {
            message: "hi".into(),
            level: LogLevel::Warn,
            timestamp: 300,
            seq: 7,
        };
        let limits = LimitsConfig {
            rate: Some(RateLimitSpec {
                max: 5,
                duration_ms: 1000,
                expires_at: Some(9),
            }),
            concurrency: Some(2),
        };
        let id = JobId::Custom("j".into());
        let mut out = Vec::new();
        encode_job_log(&mut out, &id, &entry);
        encode_job_log_trim(&mut out, &id, 6);
        encode_queue_limits(&mut out, "q", &limits);
        encode_queue_limits(&mut out, "q", &LimitsConfig::default());
        let hex: String = out.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            concat!(
                "0b01016a0701ac02026869",
                "0c01016a06",
                "0d01710105e80701090102",
                "0d01710000",
            )
        );
        let mut d = Decoder::new(&out);
        let mut got = Vec::new();
        while let Some(r) = d.next_record().unwrap() {
            got.push(r);
        }
        assert_eq!(
            got,
            vec![
                Record::JobLog {
                    id: id.clone(),
                    entry
                },
                Record::JobLogTrim { id, through: 6 },
                Record::QueueLimits {
                    queue: "q".into(),
                    limits
                },
                Record::QueueLimits {
                    queue: "q".into(),
                    limits: LimitsConfig::default()
                },
            ]
        );
    }

    /// Group settings records come back as written, and their bytes are pinned.
    #[test]
    fn group_settings_records_round_trip_and_are_pinned() {
        use crate::groups::GroupRate;
        let full = GroupSettings {
            rate: Some(GroupRate {
                max: 5,
                duration_ms: 1000,
            }),
            concurrency: Some(2),
            paused: true,
            held_until: Some(300),
        };
        let mut out = Vec::new();
        encode_group_settings(&mut out, "q", "g", &full);
        encode_group_settings(&mut out, "q", "g", &GroupSettings::default());
        let hex: String = out.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            concat!(
                "1001710167",
                "0105e807",
                "0102",
                "01",
                "01ac02",
                "100171016700000000",
            )
        );
        let mut d = Decoder::new(&out);
        let mut got = Vec::new();
        while let Some(r) = d.next_record().unwrap() {
            got.push(r);
        }
        let rec = |settings| Record::GroupSettings {
            queue: "q".into(),
            group: "g".into(),
            settings,
        };
        assert_eq!(got, vec![rec(full), rec(GroupSettings::default())]);
    }

    /// Stall and dead-letter settings records come back as written, and their bytes are
    /// pinned; so are the bytes of a job with an automatic retry count.
    #[test]
    fn queue_config_records_round_trip_and_are_pinned() {
        let stall = StallConfig {
            enabled: false,
            stall_interval_ms: 1000,
            max_stalls: 3,
            grace_period_ms: 5,
        };
        let dlq = DlqConfig {
            auto_retry: true,
            auto_retry_interval_ms: 200,
            max_auto_retries: 2,
            max_age_ms: Some(7),
            max_entries: 10,
        };
        let mut out = Vec::new();
        encode_queue_stall_config(&mut out, "q", Some(&stall));
        encode_queue_stall_config(&mut out, "q", None);
        encode_queue_dlq_config(&mut out, "q", Some(&dlq));
        encode_queue_dlq_config(
            &mut out,
            "q",
            Some(&DlqConfig {
                max_age_ms: None,
                ..dlq
            }),
        );
        encode_queue_dlq_config(&mut out, "q", None);
        let hex: String = out.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            concat!(
                "120171",
                "0100e8070305",
                "12017100",
                "130171",
                "0101c8010201070a",
                "130171",
                "0101c80102000a",
                "13017100",
            )
        );
        let mut d = Decoder::new(&out);
        let mut got = Vec::new();
        while let Some(r) = d.next_record().unwrap() {
            got.push(r);
        }
        let q = || Box::<str>::from("q");
        assert_eq!(
            got,
            vec![
                Record::QueueStallConfig {
                    queue: q(),
                    config: Some(stall)
                },
                Record::QueueStallConfig {
                    queue: q(),
                    config: None
                },
                Record::QueueDlqConfig {
                    queue: q(),
                    config: Some(dlq)
                },
                Record::QueueDlqConfig {
                    queue: q(),
                    config: Some(DlqConfig {
                        max_age_ms: None,
                        ..dlq
                    })
                },
                Record::QueueDlqConfig {
                    queue: q(),
                    config: None
                },
            ]
        );

        // A job with a retry count: marker 3, the sections byte, the count last.
        let mut img = image();
        img.job.ext.as_mut().unwrap().dlq_retries = 2;
        let mut out = Vec::new();
        encode_job(&mut out, &img.job, img.queue, img.name, true);
        let mut plain = Vec::new();
        img.job.ext.as_mut().unwrap().dlq_retries = 0;
        encode_job(&mut plain, &img.job, img.queue, img.name, true);
        let marker = plain.len() - 1 - ext_len(&img.job);
        assert_eq!(plain[marker], 1);
        assert_eq!(&out[marker..marker + 2], &[3, 2]);
        assert_eq!(&out[marker + 2..out.len() - 1], &plain[marker + 1..]);
        assert_eq!(out[out.len() - 1], 2);
        img.job.ext.as_mut().unwrap().dlq_retries = 2;
        let mut d = Decoder::new(&out);
        match d.next_record().unwrap() {
            Some(Record::Job(got)) => assert_eq!(got.job.ext, img.job.ext),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_pushed_delay_is_a_section_after_the_retry_count() {
        let mut img = image();
        let mut plain = Vec::new();
        encode_job(&mut plain, &img.job, img.queue, img.name, true);
        let marker = plain.len() - 1 - ext_len(&img.job);
        let ext = img.job.ext.as_mut().unwrap();
        ext.dlq_retries = 2;
        ext.delay = 300;
        let mut out = Vec::new();
        encode_job(&mut out, &img.job, img.queue, img.name, true);
        assert_eq!(&out[marker..marker + 2], &[3, EXT_DLQ_RETRIES | EXT_DELAY]);
        // The count (one byte), then the delay (300 as a two-byte varint).
        assert_eq!(&out[out.len() - 3..], &[2, 0xac, 0x02]);
        img.job.ext.as_mut().unwrap().dlq_retries = 0;
        let mut delay_only = Vec::new();
        encode_job(&mut delay_only, &img.job, img.queue, img.name, true);
        assert_eq!(&delay_only[marker..marker + 2], &[3, EXT_DELAY]);
        for (bytes, retries) in [(&out, 2), (&delay_only, 0)] {
            img.job.ext.as_mut().unwrap().dlq_retries = retries;
            match Decoder::new(bytes).next_record().unwrap() {
                Some(Record::Job(got)) => assert_eq!(got.job.ext, img.job.ext),
                other => panic!("{other:?}"),
            }
        }
    }

    /// Bytes of a job's extension alone.
    fn ext_len(j: &Job) -> usize {
        let mut out = Vec::new();
        encode_ext(&mut out, j.ext.as_deref().unwrap());
        out.len()
    }

    /// Scheduler records come back as written, and their bytes are pinned.
    #[test]
    fn scheduler_records_round_trip_and_are_pinned() {
        let info = SchedulerInfo {
            name: "s".into(),
            queue: "q".into(),
            job_name: "j".into(),
            data: "1".into(),
            schedule: Some("* * * * *".into()),
            repeat_every: Some(1000),
            timezone: Some("UTC".into()),
            priority: -2,
            max_limit: Some(3),
            unique_key: None,
            skip_missed_on_restart: true,
            skip_if_no_worker: false,
            prevent_overlap: true,
            job_options: Some("{}".into()),
            next_run: 300,
            executions: 2,
        };
        let mut out = Vec::new();
        encode_scheduler(&mut out, &info);
        encode_scheduler_delete(&mut out, "s");
        let hex: String = out.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            concat!(
                "0e01730171016a013101092a202a202a202a202a01e8070103555443030103000501027b7dac0202",
                "0f0173",
            )
        );
        let mut d = Decoder::new(&out);
        assert_eq!(
            d.next_record().unwrap(),
            Some(Record::Scheduler(Box::new(info)))
        );
        assert_eq!(
            d.next_record().unwrap(),
            Some(Record::SchedulerDelete("s".into()))
        );
        assert_eq!(d.next_record().unwrap(), None);
        let mut bad = out.clone();
        bad[32] = 0x80; // the flag byte
        assert!(Decoder::new(&bad).next_record().is_err());
    }

    /// What `write` appends, in hex.
    fn encoded(write: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut out = Vec::new();
        write(&mut out);
        out.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The exact bytes of one record of each kind, as existing data directories hold
    /// them: a reordered enum, a renumbered tag or a changed field order fails here.
    #[test]
    fn encodings_are_pinned() {
        let img = image();
        let full = encoded(|o| encode_image(o, &img, true));
        let state_only = encoded(|o| encode_image(o, &img, false));
        assert_eq!(
            full,
            concat!(
                "0101076f726465722d3706656d61696c730777656c636f6d650e7b22746f223a226140622e63227d",
                "0303095380d095ffbc31f4d395ffbc31e8d795ffbc3100e807020501280107070707070707070707",
                "07070707070798c297ffbc3101d0df95ffbc310101e0d40301e80701016b02016101620101670100",
                "010101010101010101010101010101010101010170020a010100010b2a2f35202a202a202a202a01",
                "0302010101310104626f6f6d",
            )
        );
        assert_eq!(
            state_only,
            concat!(
                "0201076f726465722d3706656d61696c730777656c636f6d650303095380d095ffbc31f4d395ffbc",
                "31e8d795ffbc3100e80702050128010707070707070707070707070707070798c297ffbc3101d0df",
                "95ffbc310101e0d40301e80701016b02016101620101670100010101010101010101010101010101",
                "010101010170020a010100010b2a2f35202a202a202a202a010302010101310104626f6f6d",
            )
        );
        let b = bucket();
        let t = totals(300);
        let others = [
            (
                encoded(|o| encode_delete(o, &JobId::Uuid([9; 16]))),
                "030009090909090909090909090909090909",
            ),
            (
                encoded(|o| encode_queue_state(o, "q", true, &["n1", "n2"])),
                "0401710102026e31026e32",
            ),
            (encoded(|o| encode_queue_drop(o, "q")), "050171"),
            (
                encoded(|o| encode_metric(o, "q", "n", 123, false, 45)),
                "060171016e7b002d",
            ),
            (
                encoded(|o| encode_metric_bucket(o, "q", "n", 60_000, &b)),
                "070171016ee0d4030102030405",
            ),
            (
                encoded(|o| encode_metric_pushes(o, "q", "n", 60_000, 300)),
                "140171016ee0d403ac02",
            ),
            (encoded(|o| encode_totals(o, &t)), "0801020304050607ac02"),
            (encoded(|o| encode_snapshot_begin(o, -42)), "0953"),
            (encoded(|o| encode_snapshot_end(o, 99)), "0a63"),
        ];
        for (got, want) in others {
            assert_eq!(got, want);
        }
    }
}
