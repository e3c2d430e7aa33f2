//! The engine: every job lifecycle rule, applied to in-memory indexes. Single-threaded
//! (`&mut self`); `handle.rs` adds the lock, the timer thread and the wake-ups.
//!
//! This file holds the state (`Engine`), its configuration and constructor, and the
//! small helpers every part shares: the job slab and id index, interned queue and job
//! names, events and wake-up requests. The rules live in one child module per concern,
//! each with its own `impl Engine`:
//!
//! - `placement`: the one `transition` between states and the per-state indexes;
//! - `timers`: `tick` and the deadlines it applies;
//! - `lifecycle`: push, pull and the lease, ack, fail, stalls;
//! - `flows`: dependencies and repeat series;
//! - `flow_graph`: flows (parent and child jobs pushed at once, across queues);
//! - `cross_slot`: flows and dependencies spanning a cluster's slots, and the messages
//!   between slots that carry them out;
//! - `admin`: job and queue operations (remove, cancel, retry, pause, drain, clean…);
//! - `query`: reads (counts, lists, search, metrics, rendering);
//! - `logs`: the lines a worker adds to a job's log;
//! - `limits`: a queue's rate and concurrency limits, enforced by pull;
//! - `schedulers`: named job schedulers (crons) firing off the timer wheel;
//! - `queue_config`: a queue's stall and dead-letter settings;
//! - `persist`: log records, snapshots and recovery.

mod admin;
mod cross_slot;
mod dedup;
mod flow_graph;
mod flows;
mod groups;
mod lifecycle;
mod limits;
mod logs;
mod moves;
mod persist;
mod placement;
mod query;
mod queue_config;
mod schedulers;
mod timers;

pub use cross_slot::{Applied, OutboxEntry};
pub use flow_graph::ChildrenValues;
pub use lifecycle::LOCK_TOKEN_REQUIRED;
pub use limits::QueueLimitsInfo;
pub use logs::JobLogPage;
pub use persist::RestoreStats;

use std::collections::BTreeSet;

use hashbrown::{HashMap, HashSet};
use std::sync::Arc;

use hashbrown::{DefaultHashBuilder, HashTable};
use std::hash::BuildHasher;

use crate::clock::Clock;
use crate::cluster_slots::{id_slot, queue_slot};
use crate::error::{EngineError, Result};
use crate::events::{Event, EventBuffer, EventExtra, EventKind};
use crate::ids::{IdGenerator, JobId};
use crate::job::Job;
use crate::job_logs::JobLogs;
use crate::options::check_queue_name;
use crate::queue::Queue;
use crate::schedulers::SchedulerSet;
use crate::slab::Slab;
use crate::timer_wheel::TimerWheel;
use crate::workers::WorkerRegistry;

/// Retry delays never exceed this, whatever the backoff and attempt count.
pub const MAX_BACKOFF_DELAY_MS: u64 = 3_600_000;
/// At most this many jobs in one list page.
pub const MAX_PAGE: usize = 1000;
/// Name id of "default", the name of jobs pushed without one.
const DEFAULT_NAME_ID: u32 = 0;
/// How often finished jobs are checked against the retention age.
const RETENTION_SWEEP_MS: u64 = 1000;

#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Largest accepted `data`, in bytes of JSON text.
    pub max_payload_bytes: usize,
    /// A lease not renewed within this many ms stalls.
    pub stall_interval_ms: u64,
    /// A job that stalls this many times fails for good.
    pub max_stalls: u16,
    /// Finished jobs kept per queue and state, by count, age and bytes.
    pub retention_count: usize,
    pub retention_age_ms: u64,
    pub retention_bytes: usize,
    /// How long per-minute metric buckets are kept.
    pub metrics_window_ms: u64,
    /// Bound of the undrained event buffer.
    pub event_capacity: usize,
    /// Lines kept in one job's log (the oldest go first).
    pub max_logs_per_job: usize,
    pub seed: u64,
    /// In a cluster of several slots, (the slot this engine serves, the slot count): its
    /// generated ids carry the slot, and it holds only the queues of its slot
    /// (`cluster_slots`).
    pub cluster_slot: Option<(u32, u32)>,
}

impl EngineConfig {
    /// Refuses values the engine cannot work with, naming the option: the one check of
    /// the embedded API's and the server's options alike (nothing is clamped silently).
    pub fn validate(&self) -> Result<()> {
        let positive = [
            ("max_payload_bytes", self.max_payload_bytes as u64),
            ("stall_interval_ms", self.stall_interval_ms),
            ("max_stalls", u64::from(self.max_stalls)),
            ("max_logs_per_job", self.max_logs_per_job as u64),
        ];
        for (name, value) in positive {
            if value == 0 {
                return Err(EngineError::invalid(format!("{name} must be at least 1")));
            }
        }
        Ok(())
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            max_payload_bytes: 10 * 1024 * 1024,
            stall_interval_ms: 30_000,
            max_stalls: 3,
            retention_count: 10_000,
            retention_age_ms: 24 * 3_600_000,
            retention_bytes: 64 * 1024 * 1024,
            metrics_window_ms: 24 * 3_600_000,
            event_capacity: 100_000,
            max_logs_per_job: 1000,
            seed: 0x5EED,
            cluster_slot: None,
        }
    }
}

/// Lifetime counters, as `/stats` and `/metrics` report them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub pushed: u64,
    pub pulled: u64,
    pub completed: u64,
    pub failed: u64,
    pub retried: u64,
    pub stalled: u64,
    pub duplicated: u64,
    pub expired: u64,
}

/// Deadlines that usually fire (a delay ends, a TTL lapses) live on the timer wheel.
/// Lease and timeout deadlines are usually cancelled (the job is acked first), so they
/// live in ordered sets where cancelling removes them instead of leaving garbage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TimerKind {
    Delay,
    Ttl,
    /// A scheduler's next run: `slot` and `gen` are the scheduler's, not a job's.
    Scheduler,
}

#[derive(Debug, Clone, Copy)]
struct Timer {
    kind: TimerKind,
    slot: u32,
    gen: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushOutcome {
    pub id: String,
    /// The push matched a live `uniqueKey` or an existing `jobId`; no job was created.
    pub duplicate: bool,
    pub durable: bool,
}

/// A pulled job, copied out under the lock for a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pulled {
    pub id: String,
    pub token: String,
    pub data: Box<str>,
    pub name: String,
    pub priority: i32,
    pub attempts: u16,
    pub max_attempts: u16,
    pub created_at: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailOutcome {
    /// Another attempt is scheduled after `delay` ms.
    Retrying { delay: u64 },
    /// No attempts left: the job is in the failed set (dead-letter).
    Dead,
}

/// What `search` looks in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchKind {
    JobId,
    Queue,
    Payload,
}

pub struct Engine {
    config: EngineConfig,
    clock: Arc<dyn Clock>,
    /// The latest clock reading: time never goes back, even if the clock does.
    last_now: u64,
    /// Every job, by slot.
    jobs: Slab,
    /// (32 bits of the id's hash, slot) for every job.
    id_index: HashTable<(u32, u32)>,
    hasher: DefaultHashBuilder,
    /// Queues by id; a dropped queue's entry is reset and its id reused.
    queues: Vec<Queue>,
    queue_ids: HashMap<Arc<str>, u32>,
    free_queues: Vec<u32>,
    /// Job names, interned: a job stores the index (0 is "default").
    job_names: Vec<Arc<str>>,
    job_name_ids: HashMap<Arc<str>, u32>,
    /// Delay and ttl deadlines.
    timers: TimerWheel<Timer>,
    /// (stall deadline, slot) of every active job.
    lease_deadlines: BTreeSet<(u64, u32)>,
    /// (timeout deadline, slot) of active jobs with a `timeout`.
    timeout_deadlines: BTreeSet<(u64, u32)>,
    /// When `tick` next checks finished jobs against the retention age.
    next_retention_sweep: u64,
    /// Earliest time the timer thread has promised to wake; earlier timers must wake it.
    planned_wake: u64,
    /// A deadline earlier than `planned_wake` was added: the timer thread must replan.
    timers_moved_earlier: bool,
    /// Job ids and lease tokens (UUIDv7).
    id_gen: IdGenerator,
    /// The last ready-order sequence number handed out.
    next_seq: i64,
    /// The last slot generation handed out.
    next_gen: u32,
    events: EventBuffer,
    totals: Totals,
    /// Jobs currently leased by each client connection.
    owners: HashMap<u64, HashSet<u32>>,
    /// Workers that announced themselves (live bookkeeping, not logged).
    pub workers: WorkerRegistry,
    /// Queues with a requested wake-up that got work since the last drain.
    woken: Vec<u32>,
    /// Set once a puller waited on a queue that did not exist (`request_wake`, which
    /// does not create queues): from then on a new queue reports its first ready job.
    wake_new_queues: bool,
    /// Set when any job became ready, so blocked pullers can be signalled.
    work_added: bool,
    /// The timers `tick` takes off the wheel; kept so that a tick allocates nothing.
    due_timers: Vec<(u64, Timer)>,
    /// Durability: when on, every change is recorded for the write-ahead log.
    recording: bool,
    /// Records of the current operation not tied to a live job (removals, metrics, queues).
    op_log: Vec<u8>,
    /// Slots changed since the last `flush_log`.
    dirty: Vec<u32>,
    /// Jobs created since the last `flush_log`, as (queue, job name id, minute, count)
    /// runs: one metric record per run instead of one per push.
    pushes: Vec<(Arc<str>, u32, u64, u64)>,
    /// A `durable` job was pushed since the last `flush_log`.
    durable_pushed: bool,
    /// Job logs, by slot (dropped with the job in `release`).
    logs: HashMap<u32, JobLogs>,
    /// Slots whose logs changed since the last `flush_log`.
    dirty_logs: Vec<u32>,
    /// (time, queue id): a rate window ends, waiters on the queue must be woken.
    limit_wakes: BTreeSet<(u64, u32)>,
    /// Named job schedulers (crons).
    schedulers: SchedulerSet,
    /// Messages to and from the other slots of a cluster.
    mailbox: cross_slot::Mailbox,
}

/// Spreads a 32-bit hash over 64 bits: the table takes bucket bits from the bottom and
/// tag bits from the top, and both must vary.
fn spread(short: u32) -> u64 {
    u64::from(short).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// The job names paused in `q`, sorted (for answers, records and dumps alike).
fn sorted_paused_names<'a>(q: &'a Queue, names: &'a [Arc<str>]) -> Vec<&'a str> {
    let mut out: Vec<&str> = q
        .paused_names
        .iter()
        .map(|&n| &*names[n as usize])
        .collect();
    out.sort_unstable();
    out
}

/// Retry delay after the `attempts`-th failed attempt: `backoff × 2^(attempts−1)`, capped.
pub fn backoff_delay(backoff: u64, attempts: u16) -> u64 {
    let exp = u32::from(attempts.saturating_sub(1)).min(40);
    backoff
        .saturating_mul(1u64 << exp)
        .min(MAX_BACKOFF_DELAY_MS)
}

impl Engine {
    pub fn new(config: EngineConfig, clock: Arc<dyn Clock>) -> Self {
        let now = clock.now_ms();
        let seed = config.seed ^ now;
        let cluster_slot = config.cluster_slot;
        let event_capacity = config.event_capacity;
        let mut engine = Self {
            config,
            clock,
            last_now: now,
            jobs: Slab::default(),
            id_index: HashTable::new(),
            hasher: DefaultHashBuilder::default(),
            queues: Vec::new(),
            queue_ids: HashMap::new(),
            free_queues: Vec::new(),
            job_names: Vec::new(),
            job_name_ids: HashMap::new(),
            timers: TimerWheel::new(now),
            lease_deadlines: BTreeSet::new(),
            timeout_deadlines: BTreeSet::new(),
            next_retention_sweep: now + RETENTION_SWEEP_MS,
            planned_wake: u64::MAX,
            timers_moved_earlier: false,
            id_gen: IdGenerator::tagged(seed, cluster_slot.map(|(slot, _)| slot)),
            next_seq: 0,
            next_gen: 0,
            events: EventBuffer::new(event_capacity),
            totals: Totals::default(),
            owners: HashMap::new(),
            workers: WorkerRegistry::default(),
            woken: Vec::new(),
            wake_new_queues: false,
            work_added: false,
            due_timers: Vec::new(),
            recording: false,
            op_log: Vec::new(),
            dirty: Vec::new(),
            pushes: Vec::new(),
            durable_pushed: false,
            logs: HashMap::new(),
            dirty_logs: Vec::new(),
            limit_wakes: BTreeSet::new(),
            schedulers: SchedulerSet::default(),
            mailbox: cross_slot::Mailbox::default(),
        };
        let default = engine.intern_name("default");
        debug_assert_eq!(default, DEFAULT_NAME_ID);
        engine
    }

    /// A fresh UUIDv7 (for ids the engine hands out besides job ids: workers).
    pub fn new_uuid(&mut self) -> String {
        let now = self.tick();
        JobId::Uuid(self.id_gen.next(now)).to_string()
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    // ----- slab, id index and interned names ------------------------------------------

    fn job(&self, slot: u32) -> &Job {
        self.jobs.get(slot).expect("slot holds a job")
    }

    fn job_mut(&mut self, slot: u32) -> &mut Job {
        self.mark_dirty(slot, false);
        self.jobs.get_mut(slot).expect("slot holds a job")
    }

    /// (stored 32-bit hash, table hash). The index keeps 32 bits of each id's hash next to
    /// its slot, so growing the table re-derives hashes without touching the jobs (a cache
    /// miss per job), and a probe compares hashes before looking at a job.
    fn id_hash(&self, id: &JobId) -> (u32, u64) {
        let short = (self.hasher.hash_one(id) >> 32) as u32;
        (short, spread(short))
    }

    fn find(&self, id: &JobId) -> Option<u32> {
        let (short, hash) = self.id_hash(id);
        let jobs = &self.jobs;
        self.id_index
            .find(hash, |&(h, s)| {
                h == short && jobs.get(s).is_some_and(|j| &j.id == id)
            })
            .map(|&(_, s)| s)
    }

    /// The slot of a job by its public id.
    pub fn slot_of(&self, id: &str) -> Option<u32> {
        self.find(&JobId::parse(id))
    }

    fn slot_or_404(&self, id: &str) -> Result<u32> {
        self.slot_of(id).ok_or_else(EngineError::job_not_found)
    }

    fn alloc(&mut self, mut job: Job) -> u32 {
        self.next_gen = self.next_gen.wrapping_add(1);
        job.gen = self.next_gen;
        let (short, hash) = self.id_hash(&job.id);
        let slot = self.jobs.insert(job);
        self.id_index
            .insert_unique(hash, (short, slot), |&(h, _)| spread(h));
        self.mark_dirty(slot, true);
        slot
    }

    fn release(&mut self, slot: u32) -> Job {
        let (_, hash) = self.id_hash(&self.job(slot).id);
        if let Ok(entry) = self.id_index.find_entry(hash, |&(_, s)| s == slot) {
            entry.remove();
        }
        let job = self.jobs.remove(slot).expect("slot holds a job");
        if !self.logs.is_empty() {
            self.logs.remove(&slot);
        }
        self.record_delete(&job.id);
        job
    }

    fn intern_name(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.job_name_ids.get(name) {
            return id;
        }
        let name: Arc<str> = name.into();
        self.job_names.push(name.clone());
        let id = (self.job_names.len() - 1) as u32;
        self.job_name_ids.insert(name, id);
        id
    }

    fn queue_id(&self, name: &str) -> Option<u32> {
        self.queue_ids.get(name).copied()
    }

    fn existing_queue(&self, name: &str) -> Result<u32> {
        self.queue_id(name)
            .ok_or_else(|| EngineError::not_found("Queue not found"))
    }

    /// In a cluster of several slots, a caller-chosen id must not read as an id
    /// generated by another slot (UUIDv7 text whose last bytes name that slot): fronts
    /// route such ids by their tag, so the job could never be found.
    fn check_job_id_slot(&self, id: Option<&str>, queue: &str) -> Result<()> {
        let (Some(id), Some((_, slots))) = (id, self.config.cluster_slot) else {
            return Ok(());
        };
        let slot = queue_slot(queue, slots);
        match id_slot(id, slots) {
            Some(tagged) if tagged != slot => Err(EngineError::invalid(format!(
                "jobId {id} has the form of an id generated for slot {tagged} of this cluster, and its queue is in slot {slot}: choose another jobId"
            ))),
            _ => Ok(()),
        }
    }

    fn queue_or_create(&mut self, name: &str) -> Result<u32> {
        if let Some(id) = self.queue_id(name) {
            return Ok(id);
        }
        check_queue_name(name)?;
        if let Some((slot, slots)) = self.config.cluster_slot {
            // A queue of another slot here would be invisible to every front (they route
            // by the queue's slot): a request that bypassed the fronts. (Flows and
            // dependencies spanning slots reach the other slot by message instead.)
            let home = queue_slot(name, slots);
            if home != slot {
                return Err(EngineError::invalid(format!(
                    "queue '{name}' belongs to slot {home} of this cluster, and this server serves slot {slot}: send requests through a broker's public ports"
                )));
            }
        }
        let name: Arc<str> = name.into();
        let mut q = Queue::new(name.clone());
        // A puller may be waiting for this queue's first job (see `wake_new_queues`); a
        // wake-up nobody waits for costs the waiters' loop one look.
        q.wake_requested = self.wake_new_queues;
        let id = match self.free_queues.pop() {
            Some(id) => {
                self.queues[id as usize] = q;
                id
            }
            None => {
                self.queues.push(q);
                (self.queues.len() - 1) as u32
            }
        };
        self.queue_ids.insert(name, id);
        Ok(id)
    }

    // ----- events and wake-ups -----------------------------------------------------------

    pub fn set_events_enabled(&mut self, on: bool) {
        self.events.set_enabled(on);
    }

    fn emit(&mut self, kind: EventKind, slot: u32, now: u64, extra: EventExtra) {
        if !self.events.enabled() {
            return;
        }
        let job = self.job(slot);
        let event = Event {
            kind,
            queue: self.queues[job.queue as usize].name.clone(),
            job_id: Some(job.id.clone()),
            timestamp: now,
            extra,
        };
        self.events.push(event);
    }

    fn emit_queue(&mut self, kind: EventKind, qid: u32, now: u64, extra: EventExtra) {
        if !self.events.enabled() {
            return;
        }
        let queue = self.queues[qid as usize].name.clone();
        self.events.push(Event {
            kind,
            queue,
            job_id: None,
            timestamp: now,
            extra,
        });
    }

    pub fn take_events(&mut self) -> Vec<Event> {
        self.events.take()
    }

    pub fn events_dropped(&self) -> u64 {
        self.events.dropped()
    }

    /// Whether anything is waiting for Python to drain (events or woken queues).
    pub(crate) fn has_notifications(&self) -> bool {
        !self.events.is_empty() || !self.woken.is_empty()
    }

    /// Asks for `queue` to be reported by `take_woken` once it has a ready job. Returns
    /// true if it has one already (no wake-up is then needed). A queue that does not
    /// exist is not created (a poll on a made-up name must not leave a queue behind):
    /// new queues report their first ready job instead (`queue_or_create`).
    pub fn request_wake(&mut self, queue: &str) -> Result<bool> {
        let Some(qid) = self.queue_id(queue) else {
            check_queue_name(queue)?;
            self.wake_new_queues = true;
            return Ok(false);
        };
        let q = &self.queues[qid as usize];
        if q.group_rules.is_some() && !q.paused {
            // Same eligibility as `pull`: its pick skips blocked groups (and plans the
            // wake-up for a group blocked until a time).
            let now = self.tick();
            let pullable = self.queues[qid as usize].group_rules.is_some()
                && self.pick_grouped(qid, now).is_some();
            let limited = self.queues[qid as usize].limits.is_some();
            if pullable && !(limited && self.limits_block(qid, now)) {
                return Ok(true);
            }
            self.queues[qid as usize].wake_requested = true;
            return Ok(false);
        }
        // Same eligibility as `pull`: a ready job whose name is not paused.
        let jobs = &self.jobs;
        let pullable = !q.paused
            && q.ready
                .first_where(|s| {
                    jobs.get(s)
                        .is_some_and(|j| !q.paused_names.contains(&j.name))
                })
                .is_some();
        if pullable && q.limits.is_none() {
            return Ok(true);
        }
        if pullable {
            let now = self.tick();
            if !self.limits_block(qid, now) {
                return Ok(true);
            }
        }
        let q = &mut self.queues[qid as usize];
        q.wake_requested = true;
        Ok(false)
    }

    pub fn take_woken(&mut self) -> Vec<Arc<str>> {
        let woken = std::mem::take(&mut self.woken);
        woken
            .into_iter()
            .map(|q| self.queues[q as usize].name.clone())
            .collect()
    }

    pub(crate) fn take_work_added(&mut self) -> bool {
        std::mem::take(&mut self.work_added)
    }
}
