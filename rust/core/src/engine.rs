//! The engine: every job lifecycle rule, applied to in-memory indexes. Single-threaded
//! (`&mut self`); `handle.rs` adds the lock, the timer thread and the wake-ups.
//!
//! Every state change goes through `detach` (leave the current state's index) and
//! `attach` (enter the new one), so counts and lists can never disagree.

mod persist;

pub use persist::RestoreStats;

use std::collections::BTreeSet;

use hashbrown::{HashMap, HashSet};
use std::sync::Arc;

use hashbrown::{DefaultHashBuilder, HashTable};
use std::hash::BuildHasher;

use crate::clock::Clock;
use crate::cron::CronSchedule;
use crate::error::{EngineError, Result};
use crate::events::{Event, EventBuffer, EventExtra, EventKind};
use crate::ids::{IdGenerator, JobId};
use crate::job::{Job, JobExt, JobState, Lease, RepeatState, FLAG_DURABLE, FLAG_LIFO};
use crate::json_render::write_job;
use crate::metrics::Bucket;
use crate::options::{check_queue_name, PushOptions, Removal, MAX_DELAY_MS};
use crate::priority_queue::OrderKey;
use crate::queue::{GroupCounts, Queue};
use crate::slab::Slab;
use crate::timer_wheel::TimerWheel;

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
    pub seed: u64,
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
            seed: 0x5EED,
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
    last_now: u64,
    jobs: Slab,
    /// (32 bits of the id's hash, slot) for every job.
    index: HashTable<(u32, u32)>,
    hasher: DefaultHashBuilder,
    queues: Vec<Queue>,
    queue_ids: HashMap<Arc<str>, u32>,
    free_queues: Vec<u32>,
    names: Vec<Arc<str>>,
    name_ids: HashMap<Arc<str>, u32>,
    timers: TimerWheel<Timer>,
    /// (stall deadline, slot) of every active job.
    lease_deadlines: BTreeSet<(u64, u32)>,
    /// (timeout deadline, slot) of active jobs with a `timeout`.
    timeout_deadlines: BTreeSet<(u64, u32)>,
    next_retention_sweep: u64,
    /// Earliest time the timer thread has promised to wake; earlier timers must wake it.
    planned_wake: u64,
    timers_moved_earlier: bool,
    ids: IdGenerator,
    next_seq: i64,
    next_gen: u32,
    events: EventBuffer,
    totals: Totals,
    /// Jobs currently leased by each client connection.
    owners: HashMap<u64, HashSet<u32>>,
    /// Queues with a requested wake-up that got work since the last drain.
    woken: Vec<u32>,
    /// Set when any job became ready, so blocked pullers can be signalled.
    work_added: bool,
    fired: Vec<Timer>,
    /// Durability: when on, every change is recorded for the write-ahead log.
    recording: bool,
    /// Records of the current operation not tied to a live job (removals, metrics, queues).
    op_log: Vec<u8>,
    /// Slots changed since the last `flush_log`.
    dirty: Vec<u32>,
    /// A `durable` job was pushed since the last `flush_log`.
    durable_pushed: bool,
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
        let event_capacity = config.event_capacity;
        let mut engine = Self {
            config,
            clock,
            last_now: now,
            jobs: Slab::default(),
            index: HashTable::new(),
            hasher: DefaultHashBuilder::default(),
            queues: Vec::new(),
            queue_ids: HashMap::new(),
            free_queues: Vec::new(),
            names: Vec::new(),
            name_ids: HashMap::new(),
            timers: TimerWheel::new(now),
            lease_deadlines: BTreeSet::new(),
            timeout_deadlines: BTreeSet::new(),
            next_retention_sweep: now + RETENTION_SWEEP_MS,
            planned_wake: u64::MAX,
            timers_moved_earlier: false,
            ids: IdGenerator::new(seed),
            next_seq: 0,
            next_gen: 0,
            events: EventBuffer::new(event_capacity),
            totals: Totals::default(),
            owners: HashMap::new(),
            woken: Vec::new(),
            work_added: false,
            fired: Vec::new(),
            recording: false,
            op_log: Vec::new(),
            dirty: Vec::new(),
            durable_pushed: false,
        };
        let default = engine.intern_name("default");
        debug_assert_eq!(default, DEFAULT_NAME_ID);
        engine
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    // ----- time -------------------------------------------------------------------

    /// Reads the clock (never backwards) and applies every timer that is due.
    pub fn tick(&mut self) -> u64 {
        let now = self.clock.now_ms().max(self.last_now);
        self.last_now = now;
        let mut fired = std::mem::take(&mut self.fired);
        self.timers.advance(now, &mut fired);
        for timer in fired.drain(..) {
            self.fire(timer, now);
        }
        self.fired = fired;
        while let Some(&(at, slot)) = self.lease_deadlines.first() {
            if at > now {
                break;
            }
            self.stall(slot, now);
        }
        while let Some(&(at, slot)) = self.timeout_deadlines.first() {
            if at > now {
                break;
            }
            let ms = self.job(slot).ext().and_then(|e| e.timeout).unwrap_or(0);
            self.fail_attempt(
                slot,
                Some(format!("Job timed out after {ms} ms").into()),
                now,
            );
        }
        if now >= self.next_retention_sweep {
            self.next_retention_sweep = now + RETENTION_SWEEP_MS;
            self.expire_finished(now);
        }
        now
    }

    /// Removes finished jobs older than the retention age, oldest first.
    fn expire_finished(&mut self, now: u64) {
        let horizon = now.saturating_sub(self.config.retention_age_ms);
        for qid in 0..self.queues.len() {
            for failed in [false, true] {
                loop {
                    let q = &self.queues[qid];
                    let set = if failed { &q.failed } else { &q.completed };
                    match set.first() {
                        Some(&(at, slot)) if at <= horizon => self.remove_slot(slot, now, false),
                        _ => break,
                    }
                }
            }
        }
    }

    /// When the timer thread should next wake; it records the promise so that an earlier
    /// timer inserted later can wake it.
    pub(crate) fn plan_wake(&mut self) -> Option<u64> {
        let has_finished = self
            .queues
            .iter()
            .any(|q| !q.completed.is_empty() || !q.failed.is_empty());
        let wake = [
            self.timers.next_wake(),
            self.lease_deadlines.first().map(|&(at, _)| at),
            self.timeout_deadlines.first().map(|&(at, _)| at),
            has_finished.then_some(self.next_retention_sweep),
        ]
        .into_iter()
        .flatten()
        .min();
        self.planned_wake = wake.unwrap_or(u64::MAX);
        self.timers_moved_earlier = false;
        wake
    }

    pub(crate) fn take_timers_moved_earlier(&mut self) -> bool {
        std::mem::take(&mut self.timers_moved_earlier)
    }

    fn add_timer(&mut self, at: u64, kind: TimerKind, slot: u32) {
        let gen = self.job(slot).gen;
        self.note_deadline(at);
        self.timers.insert(at, Timer { kind, slot, gen });
    }

    /// A deadline earlier than the timer thread's planned wake-up must wake it.
    fn note_deadline(&mut self, at: u64) {
        if at < self.planned_wake {
            self.timers_moved_earlier = true;
        }
    }

    fn fire(&mut self, t: Timer, now: u64) {
        let Some(job) = self.jobs.get(t.slot) else {
            return;
        };
        if job.gen != t.gen {
            return; // the job this timer was for is gone; the slot holds another
        }
        match t.kind {
            TimerKind::Delay if job.state == JobState::Delayed && job.run_at <= now => {
                self.detach(t.slot);
                self.enqueue_ready(t.slot, now);
            }
            TimerKind::Ttl
                if matches!(
                    job.state,
                    JobState::Waiting | JobState::Delayed | JobState::WaitingChildren
                ) =>
            {
                self.totals.expired += 1;
                self.remove_slot(t.slot, now, true);
            }
            _ => {}
        }
    }

    // ----- slab and index -------------------------------------------------------------

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
        self.index
            .find(hash, |&(h, s)| {
                h == short && jobs.get(s).is_some_and(|j| &j.id == id)
            })
            .map(|&(_, s)| s)
    }

    /// The slot of a job by its public id.
    pub fn slot_of(&self, id: &str) -> Option<u32> {
        self.find(&JobId::parse(id))
    }

    fn alloc(&mut self, mut job: Job) -> u32 {
        self.next_gen = self.next_gen.wrapping_add(1);
        job.gen = self.next_gen;
        let (short, hash) = self.id_hash(&job.id);
        let slot = self.jobs.insert(job);
        self.index
            .insert_unique(hash, (short, slot), |&(h, _)| spread(h));
        self.mark_dirty(slot, true);
        slot
    }

    fn release(&mut self, slot: u32) -> Job {
        let (_, hash) = self.id_hash(&self.job(slot).id);
        if let Ok(entry) = self.index.find_entry(hash, |&(_, s)| s == slot) {
            entry.remove();
        }
        let job = self.jobs.remove(slot).expect("slot holds a job");
        self.record_delete(&job.id);
        job
    }

    fn intern_name(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.name_ids.get(name) {
            return id;
        }
        let name: Arc<str> = name.into();
        self.names.push(name.clone());
        let id = (self.names.len() - 1) as u32;
        self.name_ids.insert(name, id);
        id
    }

    fn queue_id(&self, name: &str) -> Option<u32> {
        self.queue_ids.get(name).copied()
    }

    fn existing_queue(&self, name: &str) -> Result<u32> {
        self.queue_id(name)
            .ok_or_else(|| EngineError::not_found("Queue not found"))
    }

    fn queue_or_create(&mut self, name: &str) -> Result<u32> {
        if let Some(id) = self.queue_id(name) {
            return Ok(id);
        }
        check_queue_name(name)?;
        let name: Arc<str> = name.into();
        let q = Queue::new(name.clone());
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

    // ----- events -----------------------------------------------------------------

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
    /// true if it has one already (no wake-up is then needed).
    pub fn request_wake(&mut self, queue: &str) -> Result<bool> {
        let qid = self.queue_or_create(queue)?;
        let q = &self.queues[qid as usize];
        // Same eligibility as `pull`: a ready job whose name is not paused.
        let jobs = &self.jobs;
        let pullable = !q.paused
            && q.ready
                .first_where(|s| {
                    jobs.get(s)
                        .is_some_and(|j| !q.paused_names.contains(&j.name))
                })
                .is_some();
        if pullable {
            return Ok(true);
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

    // ----- state indexes ------------------------------------------------------------

    fn detach(&mut self, slot: u32) {
        let job = self.jobs.get(slot).expect("slot holds a job");
        let q = &mut self.queues[job.queue as usize];
        if let Some(ext) = job.ext() {
            if !ext.depends_on.is_empty() {
                q.flow_parents.remove(&(job.created_at, slot));
            }
            if ext.repeat.is_some() {
                q.scheduled -= 1;
            }
        }
        match job.state {
            JobState::Waiting => {
                q.ready.remove(&OrderKey::new(job.priority, job.seq));
                if let Some(g) = job.group_id() {
                    q.group_mut(g).waiting -= 1;
                    q.prune_group(g);
                }
            }
            JobState::Delayed => {
                q.delayed.remove(&(job.run_at, slot));
            }
            JobState::Active => {
                q.active.remove(&(job.started_at, slot));
                if let Some(g) = job.group_id() {
                    q.group_mut(g).active -= 1;
                    q.prune_group(g);
                }
                if let Some(lease) = &job.lease {
                    self.lease_deadlines.remove(&(lease.stall_deadline, slot));
                    if let Some(at) = lease.timeout_deadline {
                        self.timeout_deadlines.remove(&(at, slot));
                    }
                    if let Some(set) = self.owners.get_mut(&lease.owner) {
                        set.remove(&slot);
                        if set.is_empty() {
                            self.owners.remove(&lease.owner);
                        }
                    }
                }
            }
            JobState::WaitingChildren => {
                q.waiting_children.remove(&(job.created_at, slot));
            }
            JobState::Completed | JobState::Failed => {
                let i = usize::from(job.state == JobState::Failed);
                let set = if i == 0 {
                    &mut q.completed
                } else {
                    &mut q.failed
                };
                set.remove(&(job.finished_at, slot));
                q.finished_bytes[i] = q.finished_bytes[i].saturating_sub(job.footprint());
            }
        }
    }

    fn attach(&mut self, slot: u32, state: JobState, now: u64) {
        self.mark_dirty(slot, false);
        let job = self.jobs.get_mut(slot).expect("slot holds a job");
        job.state = state;
        let qid = job.queue;
        let q = &mut self.queues[qid as usize];
        q.latest_activity = now;
        if let Some(ext) = job.ext() {
            if !ext.depends_on.is_empty() {
                q.flow_parents.insert((job.created_at, slot));
            }
            if ext.repeat.is_some() {
                q.scheduled += 1;
            }
        }
        match state {
            JobState::Waiting => {
                q.ready.insert(OrderKey::new(job.priority, job.seq), slot);
                if let Some(g) = job.group_id() {
                    q.group_mut(g).waiting += 1;
                }
                if q.wake_requested && !q.paused {
                    q.wake_requested = false;
                    self.woken.push(qid);
                }
                self.work_added = true;
            }
            JobState::Delayed => {
                q.delayed.insert((job.run_at, slot));
                let at = job.run_at;
                self.add_timer(at, TimerKind::Delay, slot);
            }
            JobState::Active => {
                q.active.insert((job.started_at, slot));
                if let Some(g) = job.group_id() {
                    q.group_mut(g).active += 1;
                }
                if let Some(lease) = &job.lease {
                    if lease.owner != 0 {
                        self.owners.entry(lease.owner).or_default().insert(slot);
                    }
                    let (stall_at, timeout_at) = (lease.stall_deadline, lease.timeout_deadline);
                    self.lease_deadlines.insert((stall_at, slot));
                    self.note_deadline(stall_at);
                    if let Some(at) = timeout_at {
                        self.timeout_deadlines.insert((at, slot));
                        self.note_deadline(at);
                    }
                }
            }
            JobState::WaitingChildren => {
                q.waiting_children.insert((job.created_at, slot));
            }
            JobState::Completed | JobState::Failed => {
                // A finished job no longer holds its dedup key.
                if let Some(key) = job.ext.as_ref().and_then(|e| e.unique_key.as_deref()) {
                    if q.dedup.get(key) == Some(&slot) {
                        q.dedup.remove(key);
                    }
                }
                let i = usize::from(state == JobState::Failed);
                let set = if i == 0 {
                    &mut q.completed
                } else {
                    &mut q.failed
                };
                set.insert((job.finished_at, slot));
                q.finished_bytes[i] += job.footprint();
            }
        }
    }

    /// Puts a detached job at the back (or, for lifo, the front) of its priority.
    fn enqueue_ready(&mut self, slot: u32, now: u64) {
        self.next_seq += 1;
        let seq = self.next_seq;
        let job = self.job_mut(slot);
        job.seq = if job.lifo() { -seq } else { seq };
        self.attach(slot, JobState::Waiting, now);
    }

    /// Applies a just-finished job's removeOnComplete/removeOnFail: `Remove` drops that job
    /// alone, `KeepLast(n)` trims its queue's set to the newest `n`. Then the engine's
    /// retention bounds apply.
    fn retain_finished(
        &mut self,
        slot: u32,
        qid: u32,
        state: JobState,
        removal: Removal,
        now: u64,
    ) {
        let keep = match removal {
            Removal::Keep => None,
            Removal::Remove => {
                self.remove_slot(slot, now, false);
                None
            }
            Removal::KeepLast(n) => Some(n as usize),
        };
        self.enforce_retention(qid, state, keep);
    }

    /// Trims a finished set to the job's own keep-count and to the engine's retention
    /// bounds, oldest first.
    fn enforce_retention(&mut self, qid: u32, state: JobState, keep: Option<usize>) {
        let i = usize::from(state == JobState::Failed);
        let max_count = keep.unwrap_or(usize::MAX).min(self.config.retention_count);
        loop {
            let q = &self.queues[qid as usize];
            let set = if i == 0 { &q.completed } else { &q.failed };
            let over = set.len() > max_count || q.finished_bytes[i] > self.config.retention_bytes;
            let Some(&(_, oldest)) = set.first().filter(|_| over) else {
                break;
            };
            self.remove_slot(oldest, self.last_now, false);
        }
    }

    // ----- push -----------------------------------------------------------------------

    fn check_push(&self, opts: &PushOptions) -> Result<()> {
        if opts.repeat.is_some() && !opts.depends_on.is_empty() {
            return Err(EngineError::invalid("repeat jobs cannot have dependsOn"));
        }
        if opts.repeat.is_some() && opts.job_id.is_some() {
            return Err(EngineError::invalid("repeat jobs cannot use jobId"));
        }
        for dep in &opts.depends_on {
            if self.slot_of(dep).is_none() {
                return Err(EngineError::invalid(format!(
                    "dependsOn references an unknown job: {dep}"
                )));
            }
        }
        Ok(())
    }

    pub fn push(&mut self, queue: &str, opts: PushOptions) -> Result<PushOutcome> {
        let now = self.tick();
        let qid = self.queue_or_create(queue)?;
        self.check_push(&opts)?;
        Ok(self.insert(qid, opts, now, 1))
    }

    /// Pushes a batch atomically: every job is validated before any is added.
    pub fn push_many(&mut self, queue: &str, batch: Vec<PushOptions>) -> Result<Vec<PushOutcome>> {
        let now = self.tick();
        let qid = self.queue_or_create(queue)?;
        for (i, opts) in batch.iter().enumerate() {
            self.check_push(opts).map_err(|e| EngineError {
                kind: e.kind,
                message: format!("job {i}: {}", e.message),
            })?;
        }
        Ok(batch
            .into_iter()
            .map(|o| self.insert(qid, o, now, 1))
            .collect())
    }

    fn duplicate_of(&mut self, slot: u32, now: u64) -> PushOutcome {
        self.totals.duplicated += 1;
        self.emit(EventKind::Duplicated, slot, now, EventExtra::None);
        let job = self.job(slot);
        PushOutcome {
            id: job.id.to_string(),
            duplicate: true,
            durable: job.durable(),
        }
    }

    fn insert(&mut self, qid: u32, opts: PushOptions, now: u64, repeat_count: u32) -> PushOutcome {
        let id = match &opts.job_id {
            Some(custom) => {
                let id = JobId::parse(custom);
                if let Some(slot) = self.find(&id) {
                    return self.duplicate_of(slot, now);
                }
                id
            }
            None => JobId::Uuid(self.ids.next(now)),
        };
        if let Some(key) = &opts.unique_key {
            if let Some(&slot) = self.queues[qid as usize].dedup.get(key.as_str()) {
                return self.duplicate_of(slot, now);
            }
        }
        // Most jobs have no name: name id 0 is "default", interned at start.
        let name = opts
            .name
            .as_deref()
            .map_or(DEFAULT_NAME_ID, |n| self.intern_name(n));
        let needs_ext = opts.ttl.is_some()
            || opts.timeout.is_some()
            || opts.unique_key.is_some()
            || !opts.tags.is_empty()
            || opts.group_id.is_some()
            || !opts.depends_on.is_empty()
            || opts.repeat.is_some()
            || opts.remove_on_complete != Removal::Keep
            || opts.remove_on_fail != Removal::Keep;
        let ext = needs_ext.then(|| {
            Box::new(JobExt {
                ttl: opts.ttl,
                timeout: opts.timeout,
                unique_key: opts.unique_key.as_deref().map(Into::into),
                tags: opts.tags.iter().map(|t| t.as_str().into()).collect(),
                group_id: opts.group_id.as_deref().map(Into::into),
                depends_on: opts.depends_on.iter().map(|d| JobId::parse(d)).collect(),
                pending_deps: 0,
                dependents: Vec::new(),
                remove_on_complete: opts.remove_on_complete,
                remove_on_fail: opts.remove_on_fail,
                repeat: opts.repeat.clone().map(|spec| RepeatState {
                    spec,
                    count: repeat_count,
                    successor_scheduled: false,
                }),
                result: None,
                error: None,
            })
        });
        let flags =
            if opts.lifo { FLAG_LIFO } else { 0 } | if opts.durable { FLAG_DURABLE } else { 0 };
        let job = Job {
            id,
            data: opts.data,
            ext,
            lease: None,
            created_at: now,
            run_at: now + opts.delay,
            started_at: 0,
            finished_at: 0,
            seq: 0,
            gen: 0,
            queue: qid,
            name,
            priority: opts.priority,
            backoff: opts.backoff.min(u32::MAX as u64) as u32,
            attempts: 0,
            max_attempts: opts.max_attempts.min(u16::MAX as u32) as u16,
            stalls: 0,
            progress: 0,
            state: JobState::Waiting,
            flags,
        };
        let slot = self.alloc(job);
        self.durable_pushed |= opts.durable;
        if let Some(key) = opts.unique_key {
            self.queues[qid as usize].dedup.insert(key.into(), slot);
        }
        self.totals.pushed += 1;
        if self.events.enabled() {
            let data = self.job(slot).data.clone();
            self.emit(EventKind::Pushed, slot, now, EventExtra::Data(data));
        }
        // Link to dependencies: completed ones are satisfied, failed ones fail this job.
        let mut pending = 0u32;
        let mut failed_dep = None;
        let my_id = self.job(slot).id.clone();
        for dep in &opts.depends_on {
            let Some(dslot) = self.slot_of(dep) else {
                continue;
            };
            match self.job(dslot).state {
                JobState::Completed => {}
                JobState::Failed => failed_dep = Some(dep.clone()),
                _ => {
                    pending += 1;
                    self.job_mut(dslot).ext_mut().dependents.push(my_id.clone());
                }
            }
        }
        if let Some(ttl) = opts.ttl {
            self.add_timer(now.saturating_add(ttl), TimerKind::Ttl, slot);
        }
        if let Some(dep) = failed_dep {
            self.job_mut(slot).ext_mut().pending_deps = pending;
            // finish_failed detaches from the current state, so enter one first (a
            // never-attached job would "leave" the ready queue and its group count).
            self.attach(slot, JobState::WaitingChildren, now);
            self.finish_failed(slot, format!("Dependency {dep} failed"), now);
        } else if pending > 0 {
            self.job_mut(slot).ext_mut().pending_deps = pending;
            self.attach(slot, JobState::WaitingChildren, now);
            self.emit(EventKind::WaitingChildren, slot, now, EventExtra::None);
        } else {
            self.make_runnable(slot, now);
        }
        let job = self.job(slot);
        PushOutcome {
            id: job.id.to_string(),
            duplicate: false,
            durable: job.durable(),
        }
    }

    /// A detached job whose dependencies are met goes to delayed or waiting by `runAt`.
    fn make_runnable(&mut self, slot: u32, now: u64) {
        let run_at = self.job(slot).run_at;
        if run_at > now {
            self.attach(slot, JobState::Delayed, now);
            self.emit(
                EventKind::Delayed,
                slot,
                now,
                EventExtra::Delay(run_at - now),
            );
        } else {
            self.enqueue_ready(slot, now);
        }
    }

    // ----- pull and lease ---------------------------------------------------------------

    /// Leases the next ready job of `queue` to `owner` (0 = no connection). Returns the
    /// slot and the lock token.
    pub fn pull(&mut self, queue: &str, owner: u64) -> Result<Option<(u32, String)>> {
        let now = self.tick();
        let Some(qid) = self.queue_id(queue) else {
            check_queue_name(queue)?;
            return Ok(None);
        };
        let q = &self.queues[qid as usize];
        if q.paused {
            return Ok(None);
        }
        let slot = if q.paused_names.is_empty() {
            q.ready.first_where(|_| true)
        } else {
            let jobs = &self.jobs;
            q.ready.first_where(|s| {
                !q.paused_names
                    .contains(&jobs.get(s).expect("ready slot").name)
            })
        };
        let Some(slot) = slot else { return Ok(None) };
        self.detach(slot);
        let token = self.ids.next(now);
        let stall_deadline = now + self.config.stall_interval_ms;
        let job = self.job_mut(slot);
        job.started_at = now;
        let timeout_deadline = job
            .ext()
            .and_then(|e| e.timeout)
            .map(|t| now.saturating_add(t));
        job.lease = Some(Box::new(Lease {
            token,
            owner,
            stall_deadline,
            timeout_deadline,
        }));
        self.attach(slot, JobState::Active, now);
        self.totals.pulled += 1;
        self.emit(EventKind::Pulled, slot, now, EventExtra::None);
        if self.queues[qid as usize].ready.is_empty() {
            self.emit_queue(EventKind::Drained, qid, now, EventExtra::None);
        }
        Ok(Some((slot, JobId::Uuid(token).to_string())))
    }

    /// `pull`, returning a copy of what a worker needs.
    pub fn pull_job(&mut self, queue: &str, owner: u64) -> Result<Option<Pulled>> {
        let Some((slot, token)) = self.pull(queue, owner)? else {
            return Ok(None);
        };
        let job = self.job(slot);
        Ok(Some(Pulled {
            id: job.id.to_string(),
            token,
            data: job.data.clone(),
            name: self.names[job.name as usize].to_string(),
            priority: job.priority,
            attempts: job.attempts,
            max_attempts: job.max_attempts,
            created_at: job.created_at,
        }))
    }

    /// `pull`, returning the job's JSON (with `state`) and the lock token.
    pub fn pull_rendered(&mut self, queue: &str, owner: u64) -> Result<Option<(String, String)>> {
        let Some((slot, token)) = self.pull(queue, owner)? else {
            return Ok(None);
        };
        let mut out = String::with_capacity(256 + self.job(slot).data.len());
        self.render(slot, &mut out);
        Ok(Some((out, token)))
    }

    /// The slot of an active job whose lease matches `token` (`None` skips the check, as
    /// the job server's ack/fail without a token do).
    fn leased_slot(&self, id: &str, token: Option<&str>) -> Result<u32> {
        let slot = self
            .slot_of(id)
            .filter(|&s| self.job(s).state == JobState::Active)
            .ok_or_else(|| EngineError::state("Job not found or not active"))?;
        if let Some(token) = token {
            let lease = self
                .job(slot)
                .lease
                .as_ref()
                .expect("active job has a lease");
            if JobId::parse(token) != JobId::Uuid(lease.token) {
                return Err(EngineError::lock("Invalid lock token for this job"));
            }
        }
        Ok(slot)
    }

    pub fn ack(&mut self, id: &str, token: Option<&str>, result: Option<Box<str>>) -> Result<()> {
        let now = self.tick();
        let slot = self.leased_slot(id, token)?;
        self.complete(slot, result, now);
        Ok(())
    }

    pub fn fail(
        &mut self,
        id: &str,
        token: Option<&str>,
        error: Option<Box<str>>,
    ) -> Result<FailOutcome> {
        let now = self.tick();
        let slot = self.leased_slot(id, token)?;
        Ok(self.fail_attempt(slot, error, now))
    }

    /// Renews a lease for `duration_ms` (default: the stall interval).
    pub fn extend_lease(
        &mut self,
        id: &str,
        token: Option<&str>,
        duration_ms: Option<u64>,
    ) -> Result<u64> {
        let now = self.tick();
        let slot = self.leased_slot(id, token)?;
        let duration = duration_ms
            .unwrap_or(self.config.stall_interval_ms)
            .clamp(1, MAX_DELAY_MS);
        let deadline = now + duration;
        // Re-enter the active state so the lease's deadline index moves with it.
        self.detach(slot);
        self.job_mut(slot)
            .lease
            .as_mut()
            .expect("active job has a lease")
            .stall_deadline = deadline;
        self.attach(slot, JobState::Active, now);
        Ok(deadline)
    }

    pub fn progress(&mut self, id: &str, token: Option<&str>, progress: u8) -> Result<()> {
        if progress > 100 {
            return Err(EngineError::invalid("progress must be between 0 and 100"));
        }
        let now = self.tick();
        let slot = self.leased_slot(id, token)?;
        self.job_mut(slot).progress = progress;
        self.emit(
            EventKind::Progress,
            slot,
            now,
            EventExtra::Progress(progress),
        );
        Ok(())
    }

    /// Returns every job leased by `owner` to waiting (a closed connection). Returns how
    /// many were released.
    pub fn release_owner(&mut self, owner: u64) -> usize {
        let now = self.tick();
        let Some(slots) = self.owners.remove(&owner) else {
            return 0;
        };
        for &slot in &slots {
            self.detach(slot);
            self.job_mut(slot).lease = None;
            self.enqueue_ready(slot, now);
            self.emit(
                EventKind::Retried,
                slot,
                now,
                EventExtra::Prev(JobState::Active),
            );
        }
        slots.len()
    }

    fn complete(&mut self, slot: u32, result: Option<Box<str>>, now: u64) {
        self.detach(slot);
        let job = self.job_mut(slot);
        job.lease = None;
        job.finished_at = now;
        let (qid, name, took) = (job.queue, job.name, now.saturating_sub(job.started_at));
        if let Some(r) = result.clone() {
            job.ext_mut().result = Some(r);
        }
        let window = self.config.metrics_window_ms;
        self.queues[qid as usize]
            .metrics
            .record(now, name, true, took, window);
        self.record_metric(qid, name, now, true, took);
        self.totals.completed += 1;
        self.attach(slot, JobState::Completed, now);
        let extra = result.map_or(EventExtra::None, EventExtra::Result);
        self.emit(EventKind::Completed, slot, now, extra);
        self.settle_dependents(slot, now);
        self.schedule_repeat(slot, now);
        let removal = self
            .job(slot)
            .ext()
            .map_or(Removal::Keep, |e| e.remove_on_complete);
        self.retain_finished(slot, qid, JobState::Completed, removal, now);
    }

    fn fail_attempt(&mut self, slot: u32, error: Option<Box<str>>, now: u64) -> FailOutcome {
        let job = self.job_mut(slot);
        job.attempts = job.attempts.saturating_add(1);
        let (attempts, max, backoff) = (job.attempts, job.max_attempts, u64::from(job.backoff));
        if let Some(e) = error.clone() {
            job.ext_mut().error = Some(e);
        }
        let message = error.clone().unwrap_or_else(|| "Job failed".into());
        if attempts >= max {
            self.finish_failed(slot, message.into(), now);
            return FailOutcome::Dead;
        }
        self.emit(EventKind::Failed, slot, now, EventExtra::Error(message));
        let delay = backoff_delay(backoff, attempts);
        self.detach(slot);
        let job = self.job_mut(slot);
        job.lease = None;
        job.run_at = now + delay;
        self.totals.retried += 1;
        self.make_runnable(slot, now);
        FailOutcome::Retrying { delay }
    }

    fn stall(&mut self, slot: u32, now: u64) {
        let job = self.job_mut(slot);
        job.stalls = job.stalls.saturating_add(1);
        let stalls = job.stalls;
        self.totals.stalled += 1;
        self.emit(EventKind::Stalled, slot, now, EventExtra::None);
        if stalls >= self.config.max_stalls {
            let job = self.job_mut(slot);
            job.attempts = job.attempts.saturating_add(1);
            self.finish_failed(slot, "Job stalled more than the allowed limit".into(), now);
        } else {
            self.detach(slot);
            self.job_mut(slot).lease = None;
            self.enqueue_ready(slot, now);
        }
    }

    /// Moves a job to the failed set for good, and fails every job that waits on it.
    fn finish_failed(&mut self, slot: u32, error: String, now: u64) {
        let mut work = vec![(slot, error)];
        while let Some((slot, error)) = work.pop() {
            if self.jobs.get(slot).is_none() {
                continue;
            }
            let state = self.job(slot).state;
            if state.is_finished() {
                continue;
            }
            self.detach(slot);
            let job = self.job_mut(slot);
            job.lease = None;
            job.finished_at = now;
            let (qid, name) = (job.queue, job.name);
            let took = if state == JobState::Active {
                now.saturating_sub(job.started_at)
            } else {
                0
            };
            job.ext_mut().error = Some(error.as_str().into());
            let window = self.config.metrics_window_ms;
            self.queues[qid as usize]
                .metrics
                .record(now, name, false, took, window);
            self.record_metric(qid, name, now, false, took);
            self.totals.failed += 1;
            self.attach(slot, JobState::Failed, now);
            self.emit(
                EventKind::Failed,
                slot,
                now,
                EventExtra::Error(error.as_str().into()),
            );
            let id = self.job(slot).id.to_string();
            for ds in self.blocked_dependents(slot) {
                work.push((ds, format!("Dependency {id} failed")));
            }
            if state == JobState::Active {
                self.schedule_repeat(slot, now);
            }
            let removal = self
                .job(slot)
                .ext()
                .map_or(Removal::Keep, |e| e.remove_on_fail);
            self.retain_finished(slot, qid, JobState::Failed, removal, now);
        }
    }

    /// A completed job releases the jobs that wait on it once all their dependencies are done.
    fn settle_dependents(&mut self, slot: u32, now: u64) {
        let dependents = match self.job(slot).ext() {
            Some(e) if !e.dependents.is_empty() => e.dependents.clone(),
            _ => return,
        };
        for dep in dependents {
            let Some(ds) = self.find(&dep) else { continue };
            if self.job(ds).state != JobState::WaitingChildren {
                continue;
            }
            // Recounted, not decremented: a dependency retried after it completed
            // completes twice, and must not count twice.
            let pending = self.unfinished_dependencies(ds);
            self.job_mut(ds).ext_mut().pending_deps = pending;
            if pending == 0 {
                self.detach(ds);
                self.make_runnable(ds, now);
            }
        }
    }

    /// Dependencies of a job that have not completed (a removed one had completed: a
    /// live one's removal fails its dependents instead).
    fn unfinished_dependencies(&self, slot: u32) -> u32 {
        self.job(slot).ext().map_or(0, |e| {
            e.depends_on
                .iter()
                .filter_map(|d| self.find(d))
                .filter(|&s| self.job(s).state != JobState::Completed)
                .count() as u32
        })
    }

    /// Repeating jobs: when an occurrence finishes (completed, or failed for good), the
    /// next one is pushed as a new job, delayed to its scheduled time.
    fn schedule_repeat(&mut self, slot: u32, now: u64) {
        let job = self.job(slot);
        let Some(state) = job.ext().and_then(|e| e.repeat.clone()) else {
            return;
        };
        if state.successor_scheduled || state.spec.limit.is_some_and(|l| state.count >= l) {
            return;
        }
        let next = match (&state.spec.every, &state.spec.pattern) {
            (Some(every), _) => {
                // Keep the cadence from the previous scheduled time, skipping missed slots.
                let prev = job.run_at;
                let mut next = prev.saturating_add(*every);
                // A slot exactly at `now` is due, not missed: it runs at once.
                if next < now {
                    next += (now - next).div_ceil(*every) * every;
                }
                Some(next)
            }
            (None, Some(p)) => CronSchedule::parse(p).ok().and_then(|c| c.next_after(now)),
            (None, None) => None,
        };
        let Some(next) = next else { return };
        let ext = job.ext().expect("repeat lives in ext");
        let opts = PushOptions {
            name: Some(self.names[job.name as usize].to_string()),
            data: job.data.clone(),
            priority: job.priority,
            delay: next.saturating_sub(now),
            max_attempts: u32::from(job.max_attempts),
            backoff: u64::from(job.backoff),
            ttl: ext.ttl,
            timeout: ext.timeout,
            unique_key: ext.unique_key.as_deref().map(Into::into),
            job_id: None,
            tags: ext.tags.iter().map(|t| t.to_string()).collect(),
            group_id: ext.group_id.as_deref().map(Into::into),
            lifo: job.lifo(),
            remove_on_complete: ext.remove_on_complete,
            remove_on_fail: ext.remove_on_fail,
            durable: job.durable(),
            depends_on: Vec::new(),
            repeat: Some(state.spec.clone()),
        };
        let qid = job.queue;
        if let Some(r) = self.job_mut(slot).ext_mut().repeat.as_mut() {
            r.successor_scheduled = true;
        }
        self.insert(qid, opts, now, state.count + 1);
    }

    // ----- single-job operations ------------------------------------------------------

    fn slot_or_404(&self, id: &str) -> Result<u32> {
        self.slot_of(id).ok_or_else(EngineError::job_not_found)
    }

    /// Removes a job in any state, without checks. Jobs waiting on a removed live job
    /// fail, since what they wait for will never complete.
    fn remove_slot(&mut self, slot: u32, now: u64, evented: bool) {
        let state = self.job(slot).state;
        if state.is_live() {
            let id = self.job(slot).id.to_string();
            for ds in self.blocked_dependents(slot) {
                self.finish_failed(ds, format!("Dependency {id} was removed"), now);
            }
        }
        if evented {
            self.emit(EventKind::Removed, slot, now, EventExtra::Prev(state));
        }
        self.unlink_from_dependencies(slot);
        self.discard(slot);
    }

    /// The jobs still waiting for this one: dependents in waiting-children whose
    /// `dependsOn` names it. (A dependent that already ran is not affected by what
    /// happens to this job later, e.g. a retry.)
    fn blocked_dependents(&self, slot: u32) -> Vec<u32> {
        let job = self.job(slot);
        let Some(ext) = job.ext() else {
            return Vec::new();
        };
        ext.dependents
            .iter()
            .filter_map(|d| self.find(d))
            .filter(|&ds| {
                let dj = self.job(ds);
                dj.state == JobState::WaitingChildren
                    && dj.ext().is_some_and(|e| e.depends_on.contains(&job.id))
            })
            .collect()
    }

    /// A removed job stops being a dependent of the jobs it waited for, so a later job
    /// reusing its id does not inherit the link.
    fn unlink_from_dependencies(&mut self, slot: u32) {
        let Some(deps) = self.job(slot).ext().map(|e| e.depends_on.clone()) else {
            return;
        };
        let id = self.job(slot).id.clone();
        for dep in deps {
            let Some(ds) = self.find(&dep) else { continue };
            // A finished job's footprint is counted in its set's bytes: re-enter the set
            // around the change so the count follows it.
            let state = self.job(ds).state;
            let finished = state.is_finished();
            if finished {
                self.detach(ds);
            }
            if let Some(ext) = self.job_mut(ds).ext.as_deref_mut() {
                ext.dependents.retain(|d| d != &id);
            }
            if finished {
                self.attach(ds, state, self.last_now);
            }
        }
    }

    /// Removes a job that is not active.
    pub fn remove(&mut self, id: &str) -> Result<()> {
        let now = self.tick();
        let slot = self.slot_or_404(id)?;
        if self.job(slot).state == JobState::Active {
            return Err(EngineError::state("Job is active; cancel it instead"));
        }
        self.remove_slot(slot, now, true);
        Ok(())
    }

    /// Cancels a job: an active job fails for good ("Job cancelled"), any other is removed.
    pub fn cancel(&mut self, id: &str) -> Result<()> {
        let now = self.tick();
        let slot = self.slot_or_404(id)?;
        if self.job(slot).state == JobState::Active {
            self.finish_failed(slot, "Job cancelled".into(), now);
        } else {
            self.remove_slot(slot, now, true);
        }
        Ok(())
    }

    /// Cancels a job that has not started: waiting, delayed or waiting for children.
    /// Active and finished jobs are refused (the job server's `DELETE /jobs/:id`).
    pub fn cancel_pending(&mut self, id: &str) -> Result<()> {
        let now = self.tick();
        let slot = self.slot_or_404(id)?;
        let state = self.job(slot).state;
        if matches!(state, JobState::Active) || state.is_finished() {
            return Err(EngineError::state(format!(
                "Job cannot be cancelled: it is {}",
                state.as_str()
            )));
        }
        self.remove_slot(slot, now, true);
        Ok(())
    }

    fn retry_slot(&mut self, slot: u32, now: u64) {
        let prev = self.job(slot).state;
        self.detach(slot);
        let job = self.job_mut(slot);
        job.attempts = 0;
        job.stalls = 0;
        job.progress = 0;
        job.finished_at = 0;
        job.run_at = now;
        let (qid, key) = (job.queue, job.unique_key().map(Box::<str>::from));
        if let Some(ext) = job.ext.as_deref_mut() {
            ext.result = None;
            ext.error = None;
        }
        // Take the dedup key back unless another live job holds it now.
        if let Some(key) = key {
            self.queues[qid as usize].dedup.entry(key).or_insert(slot);
        }
        self.enqueue_ready(slot, now);
        self.totals.retried += 1;
        self.emit(EventKind::Retried, slot, now, EventExtra::Prev(prev));
    }

    /// Runs a failed or completed job again from its first attempt.
    pub fn retry(&mut self, id: &str) -> Result<()> {
        let now = self.tick();
        let slot = self.slot_or_404(id)?;
        if !self.job(slot).state.is_finished() {
            return Err(EngineError::state(
                "Only failed or completed jobs can be retried",
            ));
        }
        self.retry_slot(slot, now);
        Ok(())
    }

    /// Makes a delayed job ready now.
    pub fn promote(&mut self, id: &str) -> Result<()> {
        let now = self.tick();
        let slot = self.slot_or_404(id)?;
        if self.job(slot).state != JobState::Delayed {
            return Err(EngineError::state("Only delayed jobs can be promoted"));
        }
        self.promote_slot(slot, now);
        Ok(())
    }

    fn promote_slot(&mut self, slot: u32, now: u64) {
        self.detach(slot);
        self.job_mut(slot).run_at = now;
        self.enqueue_ready(slot, now);
        self.emit(EventKind::Promoted, slot, now, EventExtra::None);
    }

    /// Replaces the data and/or priority of a job that is not active.
    pub fn update(
        &mut self,
        id: &str,
        data: Option<Box<str>>,
        priority: Option<i32>,
    ) -> Result<()> {
        let now = self.tick();
        let slot = self.slot_or_404(id)?;
        if self.job(slot).state == JobState::Active {
            return Err(EngineError::state("Active jobs cannot be edited"));
        }
        if let Some(d) = &data {
            if d.len() > self.config.max_payload_bytes {
                return Err(EngineError::invalid("data is over the payload size limit"));
            }
        }
        let state = self.job(slot).state;
        self.detach(slot);
        self.mark_dirty(slot, data.is_some());
        let job = self.job_mut(slot);
        if let Some(d) = data {
            job.data = d;
        }
        if let Some(p) = priority {
            job.priority = p;
        }
        self.attach(slot, state, now);
        Ok(())
    }

    // ----- queue operations -------------------------------------------------------------

    /// Pauses a whole queue (`name = None`) or one job name in it.
    pub fn pause(&mut self, queue: &str, name: Option<&str>) -> Result<()> {
        self.set_paused(queue, name, true)
    }

    pub fn resume(&mut self, queue: &str, name: Option<&str>) -> Result<()> {
        self.set_paused(queue, name, false)
    }

    fn set_paused(&mut self, queue: &str, name: Option<&str>, paused: bool) -> Result<()> {
        let now = self.tick();
        let qid = self.queue_or_create(queue)?;
        let name_id = name.map(|n| self.intern_name(n));
        let q = &mut self.queues[qid as usize];
        match name_id {
            None => q.paused = paused,
            Some(n) if paused => {
                q.paused_names.insert(n);
            }
            Some(n) => {
                q.paused_names.remove(&n);
            }
        }
        if !paused && !q.ready.is_empty() {
            self.work_added = true;
            if q.wake_requested {
                q.wake_requested = false;
                self.woken.push(qid);
            }
        }
        self.record_queue_state(qid);
        let kind = if paused {
            EventKind::Paused
        } else {
            EventKind::Resumed
        };
        self.emit_queue(kind, qid, now, EventExtra::Name(name.map(Into::into)));
        Ok(())
    }

    pub fn is_paused(&self, queue: &str) -> bool {
        self.queue_id(queue)
            .is_some_and(|q| self.queues[q as usize].paused)
    }

    pub fn paused_names(&self, queue: &str) -> Vec<String> {
        let Some(qid) = self.queue_id(queue) else {
            return Vec::new();
        };
        sorted_paused_names(&self.queues[qid as usize], &self.names)
            .into_iter()
            .map(String::from)
            .collect()
    }

    /// Removes every waiting and delayed job of a queue. Returns how many.
    pub fn drain(&mut self, queue: &str) -> Result<usize> {
        let now = self.tick();
        let qid = self.existing_queue(queue)?;
        let q = &self.queues[qid as usize];
        let slots: Vec<u32> = q
            .ready
            .iter()
            .chain(q.delayed.iter().map(|&(_, s)| s))
            .collect();
        for &slot in &slots {
            if self.jobs.get(slot).is_some() {
                self.remove_slot(slot, now, false);
            }
        }
        self.emit_queue(EventKind::Drained, qid, now, EventExtra::None);
        Ok(slots.len())
    }

    /// Removes up to `limit` (0 = all) jobs in `state` older than `grace_ms` (by finish
    /// time for finished jobs, by creation time otherwise), oldest first. Returns their ids.
    pub fn clean(
        &mut self,
        queue: &str,
        state: JobState,
        grace_ms: u64,
        limit: usize,
    ) -> Result<Vec<String>> {
        if state == JobState::Active {
            return Err(EngineError::invalid("Active jobs cannot be cleaned"));
        }
        let now = self.tick();
        let qid = self.existing_queue(queue)?;
        let cutoff = now.saturating_sub(grace_ms);
        let limit = if limit == 0 { usize::MAX } else { limit };
        let mut victims: Vec<(u64, u32)> = self.queues[qid as usize]
            .slots(state)
            .map(|s| {
                let j = self.job(s);
                (
                    if state.is_finished() {
                        j.finished_at
                    } else {
                        j.created_at
                    },
                    s,
                )
            })
            .filter(|&(t, _)| t <= cutoff)
            .collect();
        victims.sort_unstable();
        victims.truncate(limit);
        let mut ids = Vec::with_capacity(victims.len());
        for (_, slot) in victims {
            // Removing one victim can fail and, by removeOnFail, remove a later one.
            if self.jobs.get(slot).is_none() {
                continue;
            }
            ids.push(self.job(slot).id.to_string());
            self.remove_slot(slot, now, true);
        }
        Ok(ids)
    }

    /// Retries every failed or completed job of a queue. Returns how many.
    pub fn retry_all(&mut self, queue: &str, state: JobState) -> Result<usize> {
        if !state.is_finished() {
            return Err(EngineError::invalid("state must be failed or completed"));
        }
        let now = self.tick();
        let qid = self.existing_queue(queue)?;
        let slots: Vec<u32> = self.queues[qid as usize].slots(state).collect();
        for &slot in &slots {
            self.retry_slot(slot, now);
        }
        Ok(slots.len())
    }

    /// Makes every delayed job of a queue ready now. Returns how many.
    pub fn promote_all(&mut self, queue: &str) -> Result<usize> {
        let now = self.tick();
        let qid = self.existing_queue(queue)?;
        let slots: Vec<u32> = self.queues[qid as usize].slots(JobState::Delayed).collect();
        for &slot in &slots {
            self.promote_slot(slot, now);
        }
        Ok(slots.len())
    }

    /// Deletes a queue and all its jobs; refused while jobs are active unless `force`.
    pub fn obliterate(&mut self, queue: &str, force: bool) -> Result<usize> {
        let now = self.tick();
        let qid = self.existing_queue(queue)?;
        if !force && !self.queues[qid as usize].active.is_empty() {
            return Err(EngineError::state(
                "Queue has active jobs; pass force to obliterate anyway",
            ));
        }
        let slots: Vec<u32> = JobState::ALL
            .iter()
            .flat_map(|&s| self.queues[qid as usize].slots(s).collect::<Vec<_>>())
            .collect();
        for &slot in &slots {
            if self.jobs.get(slot).is_some() {
                self.remove_slot(slot, now, false);
            }
        }
        self.record_queue_drop(qid);
        // Pullers waiting on this queue must hear of it, or they would sleep through jobs
        // pushed to the queue's next incarnation; woken, they ask again.
        if self.queues[qid as usize].wake_requested {
            self.woken.push(qid);
        }
        self.drop_queue(qid);
        Ok(slots.len())
    }

    // ----- reads ------------------------------------------------------------------------

    pub fn queue_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.queue_ids.keys().map(|k| k.to_string()).collect();
        names.sort();
        names
    }

    pub fn has_queue(&self, queue: &str) -> bool {
        self.queue_id(queue).is_some()
    }

    /// Counts per state, in `JobState::ALL` order; zeros for a queue never used.
    pub fn counts(&self, queue: &str) -> [usize; 6] {
        let mut out = [0; 6];
        if let Some(qid) = self.queue_id(queue) {
            let q = &self.queues[qid as usize];
            for (i, &s) in JobState::ALL.iter().enumerate() {
                out[i] = q.count(s);
            }
        }
        out
    }

    /// Counts per state summed over all queues.
    pub fn total_counts(&self) -> [usize; 6] {
        let mut out = [0; 6];
        for &qid in self.queue_ids.values() {
            for (i, &s) in JobState::ALL.iter().enumerate() {
                out[i] += self.queues[qid as usize].count(s);
            }
        }
        out
    }

    pub fn totals(&self) -> Totals {
        self.totals
    }

    pub fn job_count(&self) -> usize {
        self.jobs.len()
    }

    pub fn timer_count(&self) -> usize {
        self.timers.len()
    }

    pub fn latest_activity(&self, queue: &str) -> Option<u64> {
        self.queue_id(queue)
            .map(|q| self.queues[q as usize].latest_activity)
            .filter(|&t| t > 0)
    }

    /// Jobs of `queue` in `state` from `start` to `end` inclusive (at most `MAX_PAGE`),
    /// and the total in that state.
    pub fn list(
        &self,
        queue: &str,
        state: JobState,
        start: usize,
        end: usize,
    ) -> (Vec<u32>, usize) {
        let Some(qid) = self.queue_id(queue) else {
            return (Vec::new(), 0);
        };
        let q = &self.queues[qid as usize];
        let take = end.saturating_sub(start).saturating_add(1).min(MAX_PAGE);
        let slots = if end < start {
            Vec::new()
        } else {
            q.slots(state).skip(start).take(take).collect()
        };
        (slots, q.count(state))
    }

    /// Failed jobs of `queue` grouped by error message: (message, count, newest id),
    /// most frequent first. Scans the failed set, which retention bounds.
    pub fn failure_groups(&self, queue: &str) -> Vec<(String, usize, String)> {
        let Some(qid) = self.queue_id(queue) else {
            return Vec::new();
        };
        let mut groups: HashMap<&str, (usize, u32)> = HashMap::new();
        for slot in self.queues[qid as usize].slots(JobState::Failed) {
            let reason = self
                .job(slot)
                .ext()
                .and_then(|e| e.error.as_deref())
                .unwrap_or("");
            groups.entry(reason).or_insert((0, slot)).0 += 1;
        }
        let mut out: Vec<(String, usize, String)> = groups
            .into_iter()
            .map(|(r, (n, s))| (r.to_string(), n, self.job(s).id.to_string()))
            .collect();
        out.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        out
    }

    /// Retries every failed job of `queue` whose error is `reason`. Returns how many.
    pub fn retry_failures(&mut self, queue: &str, reason: &str) -> Result<usize> {
        let now = self.tick();
        let qid = self.existing_queue(queue)?;
        let slots: Vec<u32> = self.queues[qid as usize]
            .slots(JobState::Failed)
            .filter(|&s| {
                self.job(s)
                    .ext()
                    .and_then(|e| e.error.as_deref())
                    .unwrap_or("")
                    == reason
            })
            .collect();
        for &slot in &slots {
            self.retry_slot(slot, now);
        }
        Ok(slots.len())
    }

    /// Since when the longest-waiting job of `queue` has been ready (its `runAt`), if any.
    pub fn oldest_waiting(&self, queue: &str) -> Option<u64> {
        let qid = self.queue_id(queue)?;
        self.queues[qid as usize]
            .ready
            .level_elders()
            .into_iter()
            .map(|s| self.job(s).run_at)
            .min()
    }

    /// Jobs with a repeat schedule in `queue`, any state.
    pub fn scheduled_count(&self, queue: &str) -> usize {
        self.queue_id(queue)
            .map_or(0, |q| self.queues[q as usize].scheduled)
    }

    /// Flow parents (jobs with `dependsOn`) of `queue`, newest first, optionally only
    /// those in `state`; at most `limit`.
    pub fn flow_parents(&self, queue: &str, state: Option<JobState>, limit: usize) -> Vec<u32> {
        let Some(qid) = self.queue_id(queue) else {
            return Vec::new();
        };
        self.queues[qid as usize]
            .flow_parents
            .iter()
            .rev()
            .map(|&(_, s)| s)
            .filter(|&s| state.is_none_or(|st| self.job(s).state == st))
            .take(limit)
            .collect()
    }

    pub fn groups(&self, queue: &str) -> Vec<(String, GroupCounts)> {
        let Some(qid) = self.queue_id(queue) else {
            return Vec::new();
        };
        let mut out: Vec<(String, GroupCounts)> = self.queues[qid as usize]
            .groups
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// (ids this job depends on, ids that depend on it).
    pub fn links(&self, id: &str) -> Result<(Vec<String>, Vec<String>)> {
        let slot = self.slot_or_404(id)?;
        let ext = self.job(slot).ext();
        let strs = |v: Option<&Vec<JobId>>| {
            v.map(|v| v.iter().map(ToString::to_string).collect())
                .unwrap_or_default()
        };
        Ok((
            strs(ext.map(|e| &e.depends_on)),
            strs(ext.map(|e| &e.dependents)),
        ))
    }

    /// Finds up to `limit` jobs (or, for `Queue`, queue names) matching `query`.
    /// JobId: an exact id or an id prefix; Payload: a substring of the data's JSON text
    /// within `queue`.
    pub fn search(
        &self,
        query: &str,
        kind: SearchKind,
        queue: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>> {
        if query.is_empty() {
            return Err(EngineError::invalid("q must not be empty"));
        }
        let in_scope = |j: &Job| queue.is_none_or(|q| &*self.queues[j.queue as usize].name == q);
        let out = match kind {
            SearchKind::Queue => self
                .queue_names()
                .into_iter()
                .filter(|n| n.contains(query))
                .take(limit)
                .collect(),
            SearchKind::JobId => {
                if let Some(slot) = self.slot_of(query).filter(|&s| in_scope(self.job(s))) {
                    vec![self.job(slot).id.to_string()]
                } else {
                    self.jobs
                        .iter()
                        .filter(|j| in_scope(j))
                        .map(|j| j.id.to_string())
                        .filter(|id| id.starts_with(query))
                        .take(limit)
                        .collect()
                }
            }
            SearchKind::Payload => {
                let q = queue
                    .ok_or_else(|| EngineError::invalid("queue is required for payload search"))?;
                let qid = self.existing_queue(q)?;
                let queue = &self.queues[qid as usize];
                JobState::ALL
                    .iter()
                    .flat_map(|&s| queue.slots(s))
                    .filter(|&s| self.job(s).data.contains(query))
                    .take(limit)
                    .map(|s| self.job(s).id.to_string())
                    .collect()
            }
        };
        Ok(out)
    }

    /// Metric buckets of a queue: (period start, job name, bucket).
    pub fn metrics(
        &self,
        queue: &str,
        from: u64,
        to: u64,
        granularity_ms: u64,
    ) -> Result<Vec<(u64, String, Bucket)>> {
        let qid = self.existing_queue(queue)?;
        Ok(self.queues[qid as usize]
            .metrics
            .query(from, to, granularity_ms.max(60_000))
            .into_iter()
            .map(|(t, n, b)| (t, self.names[n as usize].to_string(), b))
            .collect())
    }

    pub fn state_of(&self, slot: u32) -> JobState {
        self.job(slot).state
    }

    pub fn job_at(&self, slot: u32) -> &Job {
        self.job(slot)
    }

    pub fn queue_name_of(&self, slot: u32) -> &str {
        &self.queues[self.job(slot).queue as usize].name
    }

    pub fn job_name_of(&self, slot: u32) -> &str {
        &self.names[self.job(slot).name as usize]
    }

    /// Appends the job's JSON (the job server's shape, with `state`).
    pub fn render(&self, slot: u32, out: &mut String) {
        let job = self.job(slot);
        write_job(
            out,
            job,
            &self.queues[job.queue as usize].name,
            &self.names[job.name as usize],
        );
    }

    pub fn render_by_id(&self, id: &str) -> Option<String> {
        let slot = self.slot_of(id)?;
        let mut out = String::with_capacity(256);
        self.render(slot, &mut out);
        Some(out)
    }
}
