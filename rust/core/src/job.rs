//! One job as the engine stores it. The hot fields live inline; fields most jobs never
//! use (dedup key, tags, links, results) sit behind one optional box so a plain waiting
//! job stays small.

use crate::ids::JobId;
use crate::options::{Removal, RepeatSpec};

/// Where a job is in its life; `docs/state-machine.md` lists the moves between states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum JobState {
    /// Ready: in its queue's ordered ready set, to be handed to the next `pull`.
    Waiting,
    /// Ready at its `runAt` (a delay, a backoff, or the next slot of a repeat series).
    Delayed,
    /// Leased to a worker, who must ack, fail or renew before the lease stalls.
    Active,
    /// Acked; kept (with its result) until retention or a removal drops it.
    Completed,
    /// Failed for good: the dead-letter set, kept until retry, retention or removal.
    Failed,
    /// Waits for its `dependsOn` jobs to complete.
    WaitingChildren,
}

impl JobState {
    /// Every state, in the order counts and listings report them.
    pub const ALL: [JobState; 6] = [
        JobState::Waiting,
        JobState::WaitingChildren,
        JobState::Delayed,
        JobState::Active,
        JobState::Completed,
        JobState::Failed,
    ];

    /// The byte that stands for this state in log and snapshot records. Fixed forever:
    /// existing data directories hold these numbers (they were once the position in
    /// `ALL`, which is why they do not follow the declaration order).
    pub fn wire_code(self) -> u8 {
        match self {
            JobState::Waiting => 0,
            JobState::WaitingChildren => 1,
            JobState::Delayed => 2,
            JobState::Active => 3,
            JobState::Completed => 4,
            JobState::Failed => 5,
        }
    }

    /// The state a record's byte stands for; `None` for a byte no version wrote.
    pub fn from_wire(code: u8) -> Option<JobState> {
        Some(match code {
            0 => JobState::Waiting,
            1 => JobState::WaitingChildren,
            2 => JobState::Delayed,
            3 => JobState::Active,
            4 => JobState::Completed,
            5 => JobState::Failed,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Waiting => "waiting",
            JobState::Delayed => "delayed",
            JobState::Active => "active",
            JobState::Completed => "completed",
            JobState::Failed => "failed",
            JobState::WaitingChildren => "waiting-children",
        }
    }

    pub fn parse(s: &str) -> Option<JobState> {
        JobState::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Live jobs still hold their dedup key and count as "in the queue".
    pub fn is_live(self) -> bool {
        !matches!(self, JobState::Completed | JobState::Failed)
    }

    pub fn is_finished(self) -> bool {
        !self.is_live()
    }
}

/// The lease a worker holds while a job is active.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub token: [u8; 16],
    /// The connection that pulled the job (0 = none), so closing it can release its jobs.
    pub owner: u64,
    /// When the lease stalls unless renewed.
    pub stall_deadline: u64,
    /// When the attempt times out (`timeout` option), if set.
    pub timeout_deadline: Option<u64>,
    /// Pulled with a lock owner (bunqueue's protocol): an ack, fail or renewal must
    /// present the token. Not stored: after a restart the puller's connection is gone.
    pub token_required: bool,
}

/// Repeat bookkeeping carried from one occurrence to the next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepeatState {
    pub spec: RepeatSpec,
    /// Occurrences created so far, this one included.
    pub count: u32,
    /// This occurrence already pushed its successor, so running it again (a retry)
    /// must not fork the schedule.
    pub successor_scheduled: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobExt {
    pub ttl: Option<u64>,
    pub timeout: Option<u64>,
    pub unique_key: Option<Box<str>>,
    pub tags: Vec<Box<str>>,
    pub group_id: Option<Box<str>>,
    /// Jobs this one waits for (its children in flow terms).
    pub depends_on: Vec<JobId>,
    /// How many of `depends_on` have not completed yet.
    pub pending_deps: u32,
    /// Jobs waiting for this one (its parents in flow terms).
    pub dependents: Vec<JobId>,
    pub remove_on_complete: Removal,
    pub remove_on_fail: Removal,
    pub repeat: Option<RepeatState>,
    pub result: Option<Box<str>>,
    pub error: Option<Box<str>>,
    /// Parent/child links of a flow (`push_flow`); `None` for every other job.
    pub flow: Option<Box<FlowLinks>>,
    /// Automatic retries out of the dead-letter set so far (a queue's `autoRetry`).
    pub dlq_retries: u32,
    /// The `delay` option the job was pushed with (0: none). Only reported: `run_at`
    /// moves with backoffs and promotes, so it cannot tell the delay that was asked for.
    pub delay: u64,
    /// Links to jobs held by other slots of a cluster; `None` for every other job.
    pub remote: Option<Box<RemoteLinks>>,
}

/// A job's links to jobs that other slots of a cluster hold (a flow or a `dependsOn`
/// spanning slots). The other side is reached by messages (`slot_message.rs`), so
/// what is pending here is what those messages have not yet said.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RemoteLinks {
    /// Dependencies (in `depends_on`) held elsewhere, and whether each reported
    /// completing.
    pub deps: Vec<(JobId, bool)>,
    /// Dependents held elsewhere, with their slots: told each time this job settles.
    pub dependents: Vec<(JobId, u32)>,
}

/// What a flow child does to its parent when it fails for good (bunqueue's four
/// mutually exclusive options; none set: the parent keeps waiting).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ChildFailure {
    /// The parent stays in waiting-children (the reference's default).
    #[default]
    Wait,
    /// `failParentOnFailure`: the parent fails for good.
    FailParent,
    /// `continueParentOnFailure`: the parent runs at once; the error is kept in its
    /// failed children values.
    Continue,
    /// `ignoreDependencyOnFailure`: the child stops counting as a dependency; the error
    /// is kept in the parent's ignored failures.
    Ignore,
    /// `removeDependencyOnFailure`: the child stops counting as a dependency.
    Remove,
}

impl ChildFailure {
    /// The byte that stands for the policy in records (fixed forever).
    pub fn wire_code(self) -> u8 {
        match self {
            ChildFailure::Wait => 0,
            ChildFailure::FailParent => 1,
            ChildFailure::Continue => 2,
            ChildFailure::Ignore => 3,
            ChildFailure::Remove => 4,
        }
    }

    pub fn from_wire(code: u8) -> Option<ChildFailure> {
        Some(match code {
            0 => ChildFailure::Wait,
            1 => ChildFailure::FailParent,
            2 => ChildFailure::Continue,
            3 => ChildFailure::Ignore,
            4 => ChildFailure::Remove,
            _ => return None,
        })
    }
}

/// A flow job's links: its parent (a child's), its children (a parent's), and what its
/// children left behind, keyed `queue:id` as the reference keys them. A child's result
/// is copied to its parent when it completes, so the parent reads it whatever retention
/// does to the child.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlowLinks {
    pub parent: Option<JobId>,
    pub on_failure: ChildFailure,
    pub children: Vec<JobId>,
    /// (`queue:id`, result JSON) of completed children.
    pub values: Vec<(Box<str>, Box<str>)>,
    /// (`queue:id`, error) of children that failed under `Continue`.
    pub failed: Vec<(Box<str>, Box<str>)>,
    /// (`queue:id`, error) of children that failed under `Ignore`.
    pub ignored: Vec<(Box<str>, Box<str>)>,
}

impl FlowLinks {
    fn heap_bytes(&self) -> usize {
        let pairs = |v: &[(Box<str>, Box<str>)]| {
            v.iter().map(|(k, x)| k.len() + x.len() + 32).sum::<usize>()
        };
        std::mem::size_of::<FlowLinks>()
            + self.children.len() * 24
            + pairs(&self.values)
            + pairs(&self.failed)
            + pairs(&self.ignored)
    }
}

/// Sets `key` to `value` in a list of pairs (replacing an earlier value).
pub fn set_pair(list: &mut Vec<(Box<str>, Box<str>)>, key: &str, value: &str) {
    match list.iter_mut().find(|(k, _)| &**k == key) {
        Some(entry) => entry.1 = value.into(),
        None => list.push((key.into(), value.into())),
    }
}

impl JobExt {
    fn heap_bytes(&self) -> usize {
        std::mem::size_of::<JobExt>()
            + self.unique_key.as_deref().map_or(0, str::len)
            + self.tags.iter().map(|t| t.len() + 16).sum::<usize>()
            + self.group_id.as_deref().map_or(0, str::len)
            + (self.depends_on.len() + self.dependents.len()) * 24
            + self.result.as_deref().map_or(0, str::len)
            + self.error.as_deref().map_or(0, str::len)
            + self.flow.as_deref().map_or(0, FlowLinks::heap_bytes)
            + self.remote.as_deref().map_or(0, |r| {
                (r.deps.len() + r.dependents.len()) * 32 + std::mem::size_of::<RemoteLinks>()
            })
    }
}

pub const FLAG_LIFO: u8 = 1;
pub const FLAG_DURABLE: u8 = 2;
/// Engine bookkeeping, never stored: the job changed since the last log flush (and
/// whether its payload did), so the flush writes it once however often it changed.
pub const FLAG_DIRTY: u8 = 4;
pub const FLAG_DIRTY_DATA: u8 = 8;
/// The flags a record stores.
pub const STORED_FLAGS: u8 = FLAG_LIFO | FLAG_DURABLE;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub id: JobId,
    /// The payload exactly as the producer sent it (JSON text).
    pub data: Box<str>,
    pub ext: Option<Box<JobExt>>,
    pub lease: Option<Box<Lease>>,
    pub created_at: u64,
    pub run_at: u64,
    /// 0 until first pulled.
    pub started_at: u64,
    /// 0 until completed or failed for good.
    pub finished_at: u64,
    /// Order within its priority (negative for lifo).
    pub seq: i64,
    /// Distinguishes this job from later ones reusing its slot, so stale timers are ignored.
    pub gen: u32,
    pub queue: u32,
    pub name: u32,
    pub priority: i32,
    pub backoff: u32,
    /// Attempts that ended in failure (a pulled job starts its attempt `attempts + 1`).
    pub attempts: u16,
    pub max_attempts: u16,
    pub stalls: u16,
    pub progress: u8,
    pub state: JobState,
    pub flags: u8,
}

impl Job {
    pub fn ext(&self) -> Option<&JobExt> {
        self.ext.as_deref()
    }

    pub fn ext_mut(&mut self) -> &mut JobExt {
        self.ext.get_or_insert_with(Default::default)
    }

    /// The job's flow links, if it is part of a flow.
    pub fn flow(&self) -> Option<&FlowLinks> {
        self.ext().and_then(|e| e.flow.as_deref())
    }

    pub fn flow_mut(&mut self) -> &mut FlowLinks {
        self.ext_mut().flow.get_or_insert_with(Default::default)
    }

    pub fn lifo(&self) -> bool {
        self.flags & FLAG_LIFO != 0
    }

    pub fn durable(&self) -> bool {
        self.flags & FLAG_DURABLE != 0
    }

    pub fn unique_key(&self) -> Option<&str> {
        self.ext().and_then(|e| e.unique_key.as_deref())
    }

    pub fn group_id(&self) -> Option<&str> {
        self.ext().and_then(|e| e.group_id.as_deref())
    }

    /// Approximate bytes this job holds, for byte-bounded retention.
    pub fn footprint(&self) -> usize {
        std::mem::size_of::<Job>()
            + self.data.len()
            + self.id.heap_bytes()
            + self.ext().map_or(0, JobExt::heap_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_stays_compact_and_states_round_trip() {
        assert!(
            std::mem::size_of::<Job>() <= 128,
            "{}",
            std::mem::size_of::<Job>()
        );
        for st in JobState::ALL {
            assert_eq!(JobState::parse(st.as_str()), Some(st));
        }
        assert!(JobState::WaitingChildren.is_live() && JobState::Failed.is_finished());
    }

    #[test]
    fn state_bytes_are_the_ones_data_directories_hold() {
        // The codes written before `wire_code` existed (then each state's position in
        // `ALL`). Changing one makes existing data directories load wrong.
        let pinned = [
            (JobState::Waiting, 0),
            (JobState::WaitingChildren, 1),
            (JobState::Delayed, 2),
            (JobState::Active, 3),
            (JobState::Completed, 4),
            (JobState::Failed, 5),
        ];
        for (st, code) in pinned {
            assert_eq!(st.wire_code(), code, "{st:?}");
            assert_eq!(JobState::from_wire(code), Some(st));
        }
        assert_eq!(JobState::from_wire(6), None);
    }
}
