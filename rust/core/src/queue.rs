//! The per-queue indexes over the engine's job slab: one structure per state, so counts
//! are sizes (maintained, never scanned) and lists come out in a stable order.

use std::collections::BTreeSet;

use hashbrown::{HashMap, HashSet};
use std::sync::Arc;

use crate::groups::GroupRules;
use crate::job::JobState;
use crate::limits::QueueLimits;
use crate::metrics::QueueMetrics;
use crate::priority_queue::PriorityQueue;
use crate::queue_config::QueueSettings;
use crate::ranked_set::RankedSet;

/// Active, waiting and delayed counts of one `groupId`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupCounts {
    pub active: u64,
    pub waiting: u64,
    pub delayed: u64,
}

#[derive(Debug)]
pub struct Queue {
    pub name: Arc<str>,
    pub ready: PriorityQueue,
    /// (runAt, slot)
    pub delayed: RankedSet<(u64, u32)>,
    /// (startedAt, slot)
    pub active: RankedSet<(u64, u32)>,
    /// (createdAt, slot)
    pub waiting_children: RankedSet<(u64, u32)>,
    /// (finishedAt, slot), oldest first, for retention.
    pub completed: RankedSet<(u64, u32)>,
    pub failed: RankedSet<(u64, u32)>,
    /// Bytes held by retained finished jobs: [completed, failed].
    pub finished_bytes: [usize; 2],
    pub paused: bool,
    pub paused_names: HashSet<u32>,
    /// `uniqueKey` → slot of the live job holding it.
    pub dedup: HashMap<Box<str>, u32>,
    pub groups: HashMap<Box<str>, GroupCounts>,
    pub metrics: QueueMetrics,
    /// Last time a job of this queue changed state.
    pub latest_activity: u64,
    /// Set when a waiter asked to be woken when work arrives (one-shot).
    pub wake_requested: bool,
    /// (createdAt, slot) of jobs with `dependsOn`: the flow parents, for the dashboard.
    pub flow_parents: BTreeSet<(u64, u32)>,
    /// Jobs with a repeat schedule, in any state.
    pub scheduled: usize,
    /// Rate and concurrency limits; `None` (most queues) costs pulls one test.
    pub limits: Option<Box<QueueLimits>>,
    /// Settings of some of its groups and the index pulls use to skip blocked groups
    /// (`groups.rs`); `None` (most queues) costs pulls one test.
    pub group_rules: Option<Box<GroupRules>>,
    /// Stall and dead-letter settings; `None` (most queues): the engine-wide ones.
    pub settings: Option<Box<QueueSettings>>,
}

impl Queue {
    pub fn new(name: Arc<str>) -> Self {
        Self {
            name,
            ready: PriorityQueue::default(),
            delayed: RankedSet::default(),
            active: RankedSet::default(),
            waiting_children: RankedSet::default(),
            completed: RankedSet::default(),
            failed: RankedSet::default(),
            finished_bytes: [0, 0],
            paused: false,
            paused_names: HashSet::new(),
            dedup: HashMap::new(),
            groups: HashMap::new(),
            metrics: QueueMetrics::default(),
            latest_activity: 0,
            wake_requested: false,
            flow_parents: BTreeSet::new(),
            scheduled: 0,
            limits: None,
            group_rules: None,
            settings: None,
        }
    }

    pub fn count(&self, state: JobState) -> usize {
        match state {
            JobState::Waiting => self.ready.len(),
            JobState::Delayed => self.delayed.len(),
            JobState::Active => self.active.len(),
            JobState::WaitingChildren => self.waiting_children.len(),
            JobState::Completed => self.completed.len(),
            JobState::Failed => self.failed.len(),
        }
    }

    /// Slots in `state`, in list order (ready: queue order; finished: newest first).
    pub fn slots(&self, state: JobState) -> Box<dyn Iterator<Item = u32> + '_> {
        match state {
            JobState::Waiting => Box::new(self.ready.iter()),
            JobState::Delayed => Box::new(self.delayed.iter().map(|&(_, s)| s)),
            JobState::Active => Box::new(self.active.iter().map(|&(_, s)| s)),
            JobState::WaitingChildren => Box::new(self.waiting_children.iter().map(|&(_, s)| s)),
            JobState::Completed => Box::new(self.completed.iter().rev().map(|&(_, s)| s)),
            JobState::Failed => Box::new(self.failed.iter().rev().map(|&(_, s)| s)),
        }
    }

    /// At most `take` slots of `slots(state)` from position `start` on: O(log n + take).
    pub fn page(&self, state: JobState, start: usize, take: usize) -> Vec<u32> {
        let slot = |&(_, s): &(u64, u32)| s;
        match state {
            JobState::Waiting => self.ready.iter_from(start).take(take).collect(),
            JobState::Delayed => self.delayed.iter_from(start).take(take).map(slot).collect(),
            JobState::Active => self.active.iter_from(start).take(take).map(slot).collect(),
            JobState::WaitingChildren => (self.waiting_children.iter_from(start))
                .take(take)
                .map(slot)
                .collect(),
            JobState::Completed => (self.completed.iter_rev_from(start))
                .take(take)
                .map(slot)
                .collect(),
            JobState::Failed => self
                .failed
                .iter_rev_from(start)
                .take(take)
                .map(slot)
                .collect(),
        }
    }

    pub fn group_mut(&mut self, group: &str) -> &mut GroupCounts {
        if !self.groups.contains_key(group) {
            self.groups.insert(group.into(), GroupCounts::default());
        }
        self.groups.get_mut(group).expect("inserted above")
    }

    /// Drops a group's entry once it has no jobs, so the map follows live groups only.
    pub fn prune_group(&mut self, group: &str) {
        if self
            .groups
            .get(group)
            .is_some_and(|g| g.active == 0 && g.waiting == 0 && g.delayed == 0)
        {
            self.groups.remove(group);
        }
    }
}
