//! Reading records back: the inverse of the encoders in `record.rs`, with every length,
//! tag and number checked, so damaged or foreign bytes give an error, never a panic.

use super::{
    JobImage, Record, EXT_DELAY, EXT_DLQ_RETRIES, EXT_FLOW, EXT_REMOTE, EXT_SECTIONS,
    TAG_GROUP_SETTINGS, TAG_INBOX_APPLIED, TAG_JOB_DELETE, TAG_JOB_FULL, TAG_JOB_LOG,
    TAG_JOB_LOG_TRIM, TAG_JOB_STATE, TAG_METRIC, TAG_METRIC_BUCKET, TAG_METRIC_PUSHES,
    TAG_OUTBOX_DELIVERED, TAG_OUTBOX_PUT, TAG_QUEUE_DLQ_CONFIG, TAG_QUEUE_DROP, TAG_QUEUE_LIMITS,
    TAG_QUEUE_STALL_CONFIG, TAG_QUEUE_STATE, TAG_SCHEDULER, TAG_SCHEDULER_DELETE,
    TAG_SNAPSHOT_BEGIN, TAG_SNAPSHOT_END, TAG_TOTALS,
};
use crate::engine::Totals;
use crate::groups::{GroupRate, GroupSettings};
use crate::ids::JobId;
use crate::job::{ChildFailure, FlowLinks, Job, JobExt, JobState, Lease, RemoteLinks, RepeatState};
use crate::job_logs::{LogEntry, LogLevel};
use crate::limits::{LimitsConfig, RateLimitSpec};
use crate::metrics::Bucket;
use crate::options::{Removal, RepeatSpec};
use crate::queue_config::{DlqConfig, StallConfig};
use crate::schedulers::SchedulerInfo;

/// A record payload that passed its checksum but does not parse (a bug or a file from an
/// incompatible version): recovery treats it as corruption.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(pub &'static str);

type Dec<T> = std::result::Result<T, DecodeError>;

/// Reads records one after another out of a frame's payload.
pub struct Decoder<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Decoder<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    fn byte(&mut self) -> Dec<u8> {
        let b = *self
            .buf
            .get(self.pos)
            .ok_or(DecodeError("record ends early"))?;
        self.pos += 1;
        Ok(b)
    }

    fn bytes(&mut self, n: usize) -> Dec<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or(DecodeError("record ends early"))?;
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn u64(&mut self) -> Dec<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7F) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(DecodeError("varint too long"))
    }

    fn small<T: TryFrom<u64>>(&mut self) -> Dec<T> {
        T::try_from(self.u64()?).map_err(|_| DecodeError("number out of range"))
    }

    fn i64(&mut self) -> Dec<i64> {
        let z = self.u64()?;
        Ok(((z >> 1) as i64) ^ -((z & 1) as i64))
    }

    fn bool(&mut self) -> Dec<bool> {
        match self.byte()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError("bad flag byte")),
        }
    }

    fn str(&mut self) -> Dec<Box<str>> {
        self.borrowed_str().map(Into::into)
    }

    fn borrowed_str(&mut self) -> Dec<&'a str> {
        let n = self.small::<usize>()?;
        let raw = self.bytes(n)?;
        std::str::from_utf8(raw).map_err(|_| DecodeError("string is not UTF-8"))
    }

    fn opt_str(&mut self) -> Dec<Option<Box<str>>> {
        Ok(if self.bool()? {
            Some(self.str()?)
        } else {
            None
        })
    }

    fn opt_u64(&mut self) -> Dec<Option<u64>> {
        Ok(if self.bool()? {
            Some(self.u64()?)
        } else {
            None
        })
    }

    fn id(&mut self) -> Dec<JobId> {
        match self.byte()? {
            0 => {
                let mut b = [0u8; 16];
                b.copy_from_slice(self.bytes(16)?);
                Ok(JobId::Uuid(b))
            }
            1 => Ok(JobId::Custom(self.str()?)),
            _ => Err(DecodeError("bad id tag")),
        }
    }

    fn ids(&mut self) -> Dec<Vec<JobId>> {
        let n = self.small::<usize>()?;
        (0..n).map(|_| self.id()).collect()
    }

    fn removal(&mut self) -> Dec<Removal> {
        match self.byte()? {
            0 => Ok(Removal::Keep),
            1 => Ok(Removal::Remove),
            2 => Ok(Removal::KeepLast(self.small()?)),
            _ => Err(DecodeError("bad removal tag")),
        }
    }

    fn job(&mut self, with_data: bool) -> Dec<JobImage<'a>> {
        let id = self.id()?;
        let queue = self.borrowed_str()?;
        let name = self.borrowed_str()?;
        let data = if with_data {
            self.str()?
        } else {
            Box::default()
        };
        let state = JobState::from_wire(self.byte()?).ok_or(DecodeError("bad state"))?;
        let flags = self.byte()?;
        let priority =
            i32::try_from(self.i64()?).map_err(|_| DecodeError("priority out of range"))?;
        let seq = self.i64()?;
        let (created_at, run_at, started_at, finished_at) =
            (self.u64()?, self.u64()?, self.u64()?, self.u64()?);
        let backoff = self.small()?;
        let (attempts, max_attempts, stalls) = (self.small()?, self.small()?, self.small()?);
        let progress = self.byte()?;
        let lease = if self.bool()? {
            let mut token = [0u8; 16];
            token.copy_from_slice(self.bytes(16)?);
            Some(Lease {
                token,
                owner: 0,
                stall_deadline: self.u64()?,
                timeout_deadline: self.opt_u64()?,
                token_required: false,
            })
        } else {
            None
        };
        let ext = match self.byte()? {
            0 => None,
            1 => Some(self.ext()?),
            2 => {
                let mut ext = self.ext()?;
                ext.flow = Some(Box::new(self.flow()?));
                Some(ext)
            }
            3 => {
                let sections = self.byte()?;
                if sections & !EXT_SECTIONS != 0 {
                    return Err(DecodeError("bad extension sections"));
                }
                let mut ext = self.ext()?;
                if sections & EXT_FLOW != 0 {
                    ext.flow = Some(Box::new(self.flow()?));
                }
                if sections & EXT_DLQ_RETRIES != 0 {
                    ext.dlq_retries =
                        u32::try_from(self.u64()?).map_err(|_| DecodeError("bad retry count"))?;
                }
                if sections & EXT_DELAY != 0 {
                    ext.delay = self.u64()?;
                }
                if sections & EXT_REMOTE != 0 {
                    ext.remote = Some(Box::new(RemoteLinks {
                        deps: {
                            let n = self.small::<usize>()?;
                            (0..n)
                                .map(|_| Ok((self.id()?, self.bool()?)))
                                .collect::<Dec<Vec<_>>>()?
                        },
                        dependents: {
                            let n = self.small::<usize>()?;
                            (0..n)
                                .map(|_| Ok((self.id()?, self.small()?)))
                                .collect::<Dec<Vec<_>>>()?
                        },
                    }));
                }
                Some(ext)
            }
            _ => return Err(DecodeError("bad flag byte")),
        };
        let job = Job {
            id,
            data,
            ext: ext.map(Box::new),
            lease: lease.map(Box::new),
            created_at,
            run_at,
            started_at,
            finished_at,
            seq,
            gen: 0,
            queue: 0,
            name: 0,
            priority,
            backoff,
            attempts,
            max_attempts,
            stalls,
            progress,
            state,
            flags,
        };
        Ok(JobImage {
            job,
            queue,
            name,
            with_data,
        })
    }

    fn pairs(&mut self) -> Dec<Vec<(Box<str>, Box<str>)>> {
        let n = self.small::<usize>()?;
        (0..n).map(|_| Ok((self.str()?, self.str()?))).collect()
    }

    fn flow(&mut self) -> Dec<FlowLinks> {
        let parent = if self.bool()? { Some(self.id()?) } else { None };
        let on_failure =
            ChildFailure::from_wire(self.byte()?).ok_or(DecodeError("bad child failure policy"))?;
        Ok(FlowLinks {
            parent,
            on_failure,
            children: self.ids()?,
            values: self.pairs()?,
            failed: self.pairs()?,
            ignored: self.pairs()?,
        })
    }

    fn ext(&mut self) -> Dec<JobExt> {
        let ttl = self.opt_u64()?;
        let timeout = self.opt_u64()?;
        let unique_key = self.opt_str()?;
        let n = self.small::<usize>()?;
        let tags = (0..n).map(|_| self.str()).collect::<Dec<Vec<_>>>()?;
        let group_id = self.opt_str()?;
        let depends_on = self.ids()?;
        let pending_deps = self.small()?;
        let dependents = self.ids()?;
        let remove_on_complete = self.removal()?;
        let remove_on_fail = self.removal()?;
        let repeat = if self.bool()? {
            let every = self.opt_u64()?;
            let pattern = self.opt_str()?.map(String::from);
            let limit = self.opt_u64()?.map(u32::try_from).transpose();
            let limit = limit.map_err(|_| DecodeError("repeat limit out of range"))?;
            Some(RepeatState {
                spec: RepeatSpec {
                    every,
                    pattern,
                    limit,
                },
                count: self.small()?,
                successor_scheduled: self.bool()?,
            })
        } else {
            None
        };
        Ok(JobExt {
            ttl,
            timeout,
            unique_key,
            tags,
            group_id,
            depends_on,
            pending_deps,
            dependents,
            remove_on_complete,
            remove_on_fail,
            repeat,
            result: self.opt_str()?,
            error: self.opt_str()?,
            flow: None,
            dlq_retries: 0,
            delay: 0,
            remote: None,
        })
    }

    fn scheduler(&mut self) -> Dec<SchedulerInfo> {
        let name = self.str()?;
        let queue = self.str()?;
        let job_name = self.str()?;
        let data = self.str()?;
        let schedule = self.opt_str()?;
        let repeat_every = self.opt_u64()?;
        let timezone = self.opt_str()?;
        let priority =
            i32::try_from(self.i64()?).map_err(|_| DecodeError("priority out of range"))?;
        let max_limit = self.opt_u64()?;
        let unique_key = self.opt_str()?;
        let flags = self.byte()?;
        if flags & !7 != 0 {
            return Err(DecodeError("bad scheduler flags"));
        }
        Ok(SchedulerInfo {
            name,
            queue,
            job_name,
            data,
            schedule,
            repeat_every,
            timezone,
            priority,
            max_limit,
            unique_key,
            skip_missed_on_restart: flags & 1 != 0,
            skip_if_no_worker: flags & 2 != 0,
            prevent_overlap: flags & 4 != 0,
            job_options: self.opt_str()?,
            next_run: self.u64()?,
            executions: self.u64()?,
        })
    }

    /// The next record, or `None` at the end of the payload.
    pub fn next_record(&mut self) -> Dec<Option<Record<'a>>> {
        if self.pos == self.buf.len() {
            return Ok(None);
        }
        let rec = match self.byte()? {
            TAG_JOB_FULL => Record::Job(self.job(true)?),
            TAG_JOB_STATE => Record::Job(self.job(false)?),
            TAG_JOB_DELETE => Record::JobDelete(self.id()?),
            TAG_QUEUE_STATE => {
                let queue = self.str()?;
                let paused = self.bool()?;
                let n = self.small::<usize>()?;
                let paused_names = (0..n).map(|_| self.str()).collect::<Dec<Vec<_>>>()?;
                Record::QueueState {
                    queue,
                    paused,
                    paused_names,
                }
            }
            TAG_QUEUE_DROP => Record::QueueDrop(self.str()?),
            TAG_METRIC => Record::Metric {
                queue: self.str()?,
                name: self.str()?,
                at: self.u64()?,
                ok: self.bool()?,
                took: self.u64()?,
            },
            TAG_METRIC_PUSHES => Record::MetricPushes {
                queue: self.str()?,
                name: self.str()?,
                minute: self.u64()?,
                count: self.u64()?,
            },
            TAG_METRIC_BUCKET => Record::MetricBucket {
                queue: self.str()?,
                name: self.str()?,
                minute: self.u64()?,
                bucket: Bucket {
                    pushed: 0,
                    completed: self.u64()?,
                    failed: self.u64()?,
                    total_process_ms: self.u64()?,
                    min_process_ms: self.u64()?,
                    max_process_ms: self.u64()?,
                },
            },
            TAG_TOTALS => Record::Totals(Totals {
                pushed: self.u64()?,
                pulled: self.u64()?,
                completed: self.u64()?,
                failed: self.u64()?,
                retried: self.u64()?,
                stalled: self.u64()?,
                duplicated: self.u64()?,
                expired: self.u64()?,
            }),
            TAG_SNAPSHOT_BEGIN => Record::SnapshotBegin {
                next_seq: self.i64()?,
            },
            TAG_SNAPSHOT_END => Record::SnapshotEnd { jobs: self.u64()? },
            TAG_JOB_LOG => Record::JobLog {
                id: self.id()?,
                entry: {
                    let seq = self.u64()?;
                    let level =
                        LogLevel::from_wire(self.byte()?).ok_or(DecodeError("bad log level"))?;
                    LogEntry {
                        seq,
                        level,
                        timestamp: self.u64()?,
                        message: self.str()?,
                    }
                },
            },
            TAG_JOB_LOG_TRIM => Record::JobLogTrim {
                id: self.id()?,
                through: self.u64()?,
            },
            TAG_QUEUE_LIMITS => Record::QueueLimits {
                queue: self.str()?,
                limits: LimitsConfig {
                    rate: if self.bool()? {
                        Some(RateLimitSpec {
                            max: self.u64()?,
                            duration_ms: self.u64()?,
                            expires_at: self.opt_u64()?,
                        })
                    } else {
                        None
                    },
                    concurrency: self.opt_u64()?,
                },
            },
            TAG_SCHEDULER => Record::Scheduler(Box::new(self.scheduler()?)),
            TAG_SCHEDULER_DELETE => Record::SchedulerDelete(self.str()?),
            TAG_OUTBOX_PUT => Record::OutboxPut {
                target: self.small()?,
                seq: self.u64()?,
                body: {
                    let n = self.small::<usize>()?;
                    self.bytes(n)?.into()
                },
            },
            TAG_OUTBOX_DELIVERED => Record::OutboxDelivered {
                target: self.small()?,
                through: self.u64()?,
            },
            TAG_INBOX_APPLIED => Record::InboxApplied {
                source: self.small()?,
                seq: self.u64()?,
            },
            TAG_GROUP_SETTINGS => Record::GroupSettings {
                queue: self.str()?,
                group: self.str()?,
                settings: GroupSettings {
                    rate: if self.bool()? {
                        Some(GroupRate {
                            max: self.u64()?,
                            duration_ms: self.u64()?,
                        })
                    } else {
                        None
                    },
                    concurrency: self.opt_u64()?,
                    paused: self.bool()?,
                    held_until: self.opt_u64()?,
                },
            },
            TAG_QUEUE_STALL_CONFIG => Record::QueueStallConfig {
                queue: self.str()?,
                config: if self.bool()? {
                    Some(StallConfig {
                        enabled: self.bool()?,
                        stall_interval_ms: self.u64()?,
                        max_stalls: self.u64()?,
                        grace_period_ms: self.u64()?,
                    })
                } else {
                    None
                },
            },
            TAG_QUEUE_DLQ_CONFIG => Record::QueueDlqConfig {
                queue: self.str()?,
                config: if self.bool()? {
                    Some(DlqConfig {
                        auto_retry: self.bool()?,
                        auto_retry_interval_ms: self.u64()?,
                        max_auto_retries: self.u64()?,
                        max_age_ms: self.opt_u64()?,
                        max_entries: self.u64()?,
                    })
                } else {
                    None
                },
            },
            _ => return Err(DecodeError("unknown record tag")),
        };
        Ok(Some(rec))
    }
}
