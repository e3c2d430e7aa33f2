//! Flows: a graph of parent and child jobs pushed at once (bunqueue's `PUSHF`), across
//! queues. A parent depends on its children (`dependsOn`), so it waits in
//! waiting-children until they all complete, then runs; what its children returned is
//! copied to it as they complete (keyed `queue:id`), so it can read them whatever
//! retention does to the children. A child that fails for good acts on its parent by
//! the child's policy (`ChildFailure`): by default the parent keeps waiting.

use std::collections::BTreeMap;

use hashbrown::{HashMap, HashSet};

use super::lifecycle::new_job;
use super::placement::Cause;
use super::{Engine, PushOutcome};
use crate::error::{EngineError, Result};
use crate::events::{EventExtra, EventKind};
use crate::ids::JobId;
use crate::job::{set_pair, ChildFailure, FlowLinks, Job, JobState};
use crate::options::{check_queue_name, PushOptions};
use crate::slot_message::{Outcome, PlannedJob, SlotMessage};

/// Most jobs in one flow (the reference's bound).
pub const MAX_FLOW_JOBS: usize = 10_000;

/// What a flow parent's children left: results, and the errors kept by the
/// `continue` and `ignore` policies; each keyed `queue:id`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChildrenValues {
    pub values: Vec<(String, String)>,
    pub failed: Vec<(String, String)>,
    pub ignored: Vec<(String, String)>,
}

fn invalid(message: String) -> EngineError {
    EngineError::invalid(message)
}

impl Engine {
    /// Pushes a flow: `(queue, options)` per job, each with its planned id in `job_id`
    /// and its links in `depends_on` (a parent's children), `children_ids` and
    /// `parent_id`. The whole graph is checked first (ids new and distinct, links
    /// symmetric and inside the flow, no cycle, no repeat or dedup key), then every job
    /// is created in one operation, so one log flush carries them all. The outcomes
    /// follow the order of `jobs`.
    pub fn push_flow(&mut self, mut jobs: Vec<(String, PushOptions)>) -> Result<Vec<PushOutcome>> {
        let now = self.tick();
        let order = self.check_flow(&jobs)?;
        for (queue, opts) in &jobs {
            self.check_job_id_slot(opts.job_id.as_deref(), queue)?;
        }
        // In a cluster, the jobs of other slots' queues are created there: this slot
        // sends them, and keeps its own jobs' links to them.
        let homes: Vec<Option<u32>> = jobs.iter().map(|(q, _)| self.elsewhere(q)).collect();
        for ((queue, _), home) in jobs.iter().zip(&homes) {
            if home.is_none() {
                self.queue_or_create(queue)?;
            }
        }
        let mut remote_dependents = self.link_across_slots(&mut jobs, &homes);
        let mut outcomes: Vec<Option<PushOutcome>> = vec![None; jobs.len()];
        let mut planned: BTreeMap<u32, Vec<PlannedJob>> = BTreeMap::new();
        for i in order {
            let (queue, opts) = std::mem::take(&mut jobs[i]);
            let dependents = std::mem::take(&mut remote_dependents[i]);
            match homes[i] {
                None => {
                    let dependents = dependents
                        .into_iter()
                        .map(|(id, s)| (JobId::parse(&id), s))
                        .collect();
                    let qid = self.queue_id(&queue).expect("created above");
                    outcomes[i] = Some(self.create_flow_job(qid, opts, dependents, now));
                }
                Some(home) => {
                    planned
                        .entry(home)
                        .or_default()
                        .push(PlannedJob::new(&queue, &opts, dependents));
                    outcomes[i] = Some(PushOutcome {
                        id: opts.job_id.clone().expect("checked"),
                        duplicate: false,
                        durable: opts.durable,
                    });
                }
            }
        }
        for (home, jobs) in planned {
            self.send(home, &SlotMessage::CreateJobs { jobs });
        }
        Ok(outcomes.into_iter().map(|o| o.expect("pushed")).collect())
    }

    /// For each job of a flow spanning slots (`homes`: `None` for this slot's jobs), its
    /// dependencies held by another slot than its own go in its `remote_deps`; returns
    /// each job's dependents held by another slot than its own, with their slots.
    fn link_across_slots(
        &self,
        jobs: &mut [(String, PushOptions)],
        homes: &[Option<u32>],
    ) -> Vec<Vec<(String, u32)>> {
        let mut dependents = vec![Vec::new(); jobs.len()];
        let Some((mine, _)) = self.cluster() else {
            return dependents;
        };
        let index: HashMap<String, usize> = jobs
            .iter()
            .enumerate()
            .map(|(i, (_, o))| (o.job_id.clone().expect("checked"), i))
            .collect();
        for i in 0..jobs.len() {
            let home = homes[i].unwrap_or(mine);
            let mut remote = Vec::new();
            for dep in &jobs[i].1.depends_on {
                let d = index[dep.as_str()];
                if homes[d].unwrap_or(mine) != home {
                    remote.push(dep.clone());
                    dependents[d].push((jobs[i].1.job_id.clone().expect("checked"), home));
                }
            }
            jobs[i].1.remote_deps = remote;
        }
        dependents
    }

    /// Creates one job of a flow here, with its flow links and its dependents held by
    /// other slots.
    fn create_flow_job(
        &mut self,
        qid: u32,
        opts: PushOptions,
        remote_dependents: Vec<(JobId, u32)>,
        now: u64,
    ) -> PushOutcome {
        let links = flow_links(&opts);
        let outcome = self.insert(qid, opts, now, 1);
        let slot = self.slot_of(&outcome.id).expect("just inserted");
        if links.parent.is_some() || !links.children.is_empty() {
            self.job_mut(slot).ext_mut().flow = Some(Box::new(links));
        }
        self.add_remote_dependents(slot, remote_dependents);
        outcome
    }

    /// `CreateJobs`: jobs of a flow another slot accepted, created here in their order.
    /// A job whose id this slot already holds stands for the planned one (as a repeated
    /// push of a `jobId` answers the existing job): its dependents elsewhere are told
    /// about it as for a `dependsOn`. A job that cannot be created here fails its
    /// dependents elsewhere, naming why.
    pub(super) fn create_planned(&mut self, jobs: Vec<PlannedJob>, now: u64) {
        for planned in jobs {
            let (queue, opts, dependents) = match planned.into_options() {
                Ok(parts) => parts,
                Err(_) => continue,
            };
            let id = opts.job_id.clone().expect("planned jobs carry their id");
            if self.slot_of(&id).is_some() {
                for (dependent, slot) in dependents {
                    self.watch(&id, dependent, slot);
                }
                continue;
            }
            match self.queue_or_create(&queue) {
                Ok(qid) => {
                    let dependents = dependents
                        .into_iter()
                        .map(|(d, s)| (JobId::parse(&d), s))
                        .collect();
                    self.create_flow_job(qid, opts, dependents, now);
                }
                Err(e) => {
                    for (dependent, slot) in dependents {
                        let outcome = Outcome::Gone {
                            why: format!("could not be created: {}", e.message),
                        };
                        self.send(
                            slot,
                            &SlotMessage::Settled {
                                dependency: id.clone(),
                                dependent,
                                outcome,
                            },
                        );
                    }
                }
            }
        }
    }

    /// The job a flow job will be once its slot creates it, for the answer to the
    /// push (`queue` and `name` are rendered from the request).
    pub fn planned_job(&self, opts: &PushOptions) -> Job {
        let id = JobId::parse(opts.job_id.as_deref().unwrap_or_default());
        let mut job = new_job(opts, id, opts.data.clone(), 0, 0, self.last_now, 1);
        let links = flow_links(opts);
        if links.parent.is_some() || !links.children.is_empty() {
            job.ext_mut().flow = Some(Box::new(links));
        }
        job
    }

    /// Checks a flow as a whole; returns the order to create its jobs in (children
    /// before their parents).
    fn check_flow(&self, jobs: &[(String, PushOptions)]) -> Result<Vec<usize>> {
        if jobs.len() > MAX_FLOW_JOBS {
            return Err(invalid(format!(
                "flow exceeds the {MAX_FLOW_JOBS} job limit"
            )));
        }
        let mut index: HashMap<&str, usize> = HashMap::with_capacity(jobs.len());
        for (i, (queue, opts)) in jobs.iter().enumerate() {
            let id = opts
                .job_id
                .as_deref()
                .ok_or_else(|| invalid(format!("flow jobs[{i}]: id is required")))?;
            if id.contains(':') {
                return Err(invalid("flow job id cannot contain a colon".into()));
            }
            if index.insert(id, i).is_some() {
                return Err(invalid(format!("duplicate flow job id: {id}")));
            }
            check_queue_name(queue)?;
            if self.slot_of(id).is_some() {
                return Err(invalid(format!("Flow job {id} already exists")));
            }
            if opts.repeat.is_some() {
                return Err(invalid(
                    "repeat is not supported inside an atomic flow".into(),
                ));
            }
            if opts.unique_key.is_some() {
                return Err(invalid(
                    "deduplication is not supported inside an atomic flow".into(),
                ));
            }
            if opts.on_child_failure != ChildFailure::Wait && opts.parent_id.is_none() {
                return Err(invalid("a flow failure policy requires a parent".into()));
            }
        }
        let id_of = |i: usize| jobs[i].1.job_id.as_deref().expect("checked");
        // Edges: dependency -> dependents, and how many dependencies each job has.
        let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); jobs.len()];
        let mut remaining: Vec<usize> = vec![0; jobs.len()];
        for (i, (_, opts)) in jobs.iter().enumerate() {
            let id = id_of(i);
            let deps: HashSet<&str> = opts.depends_on.iter().map(String::as_str).collect();
            if deps.len() != opts.depends_on.len() {
                return Err(invalid(format!("duplicate dependency in flow job: {id}")));
            }
            for dep in &opts.depends_on {
                let &d = index
                    .get(dep.as_str())
                    .ok_or_else(|| invalid(format!("flow dependency not found: {dep}")))?;
                if d == i {
                    return Err(invalid(format!("flow job cannot depend on itself: {id}")));
                }
                dependents[d].push(i);
                remaining[i] += 1;
            }
            let children: HashSet<&str> = opts.children_ids.iter().map(String::as_str).collect();
            if children.len() != opts.children_ids.len() {
                return Err(invalid(format!("duplicate child in flow job: {id}")));
            }
            for child in &opts.children_ids {
                if !deps.contains(child.as_str()) {
                    return Err(invalid(format!(
                        "flow child is missing from dependencies: {child}"
                    )));
                }
                let c = index[child.as_str()];
                if jobs[c].1.parent_id.as_deref() != Some(id) {
                    return Err(invalid(format!(
                        "flow child {child} does not point back to parent {id}"
                    )));
                }
            }
            if let Some(parent) = opts.parent_id.as_deref() {
                let &p = index
                    .get(parent)
                    .ok_or_else(|| invalid(format!("flow parent not found: {parent}")))?;
                if !jobs[p].1.children_ids.iter().any(|c| c == id) {
                    return Err(invalid(format!(
                        "flow parent {parent} does not own child {id}"
                    )));
                }
            }
        }
        // Kahn's order: a job comes after every job it depends on.
        let mut ready: Vec<usize> = (0..jobs.len()).filter(|&i| remaining[i] == 0).collect();
        ready.reverse();
        let mut order = Vec::with_capacity(jobs.len());
        while let Some(i) = ready.pop() {
            order.push(i);
            for &d in &dependents[i] {
                remaining[d] -= 1;
                if remaining[d] == 0 {
                    ready.push(d);
                }
            }
        }
        if order.len() != jobs.len() {
            return Err(invalid("flow contains a dependency cycle".into()));
        }
        Ok(order)
    }

    /// `queue:id`, the key of a child in its parent's values.
    pub(super) fn child_key(&self, slot: u32) -> String {
        format!("{}:{}", self.queue_name_of(slot), self.job(slot).id)
    }

    /// A completed flow child hands its result to its parent (if the parent still
    /// waits or runs; a finished parent reads nothing more).
    pub(super) fn hand_result_to_parent(&mut self, slot: u32) {
        let job = self.job(slot);
        let Some(parent) = job.flow().and_then(|f| f.parent.clone()) else {
            return;
        };
        let Some(result) = job.ext().and_then(|e| e.result.clone()) else {
            return;
        };
        let Some(ps) = self.find(&parent) else { return };
        if self.job(ps).state.is_finished() {
            return;
        }
        let key = self.child_key(slot);
        set_pair(&mut self.job_mut(ps).flow_mut().values, &key, &result);
    }

    /// A flow child (`child_id`, keyed `key`, held here or by another slot) failed for
    /// good while its parent (`ps`, in waiting-children) waits for it: applies the
    /// child's policy. Returns the error to fail the parent with, for
    /// `failParentOnFailure`.
    pub(super) fn child_failed(
        &mut self,
        ps: u32,
        child_id: &JobId,
        key: &str,
        policy: ChildFailure,
        error: &str,
        now: u64,
    ) -> Option<String> {
        let (child_id, key) = (child_id.clone(), key.to_string());
        match policy {
            ChildFailure::Wait => None,
            ChildFailure::FailParent => Some(format!("Child job {child_id} failed: {error}")),
            ChildFailure::Continue => {
                set_pair(&mut self.job_mut(ps).flow_mut().failed, &key, error);
                self.make_runnable(ps, now, Cause::DependenciesMet, |job| {
                    let ext = job.ext_mut();
                    ext.depends_on.clear();
                    if let Some(r) = ext.remote.as_deref_mut() {
                        r.deps.clear();
                    }
                    ext.pending_deps = 0;
                });
                None
            }
            ChildFailure::Ignore | ChildFailure::Remove => {
                if policy == ChildFailure::Ignore {
                    set_pair(&mut self.job_mut(ps).flow_mut().ignored, &key, error);
                }
                self.drop_dependency(ps, &child_id, now);
                None
            }
        }
    }

    /// `ps` stops depending on `dep`; it runs if nothing else is pending.
    pub(super) fn drop_dependency(&mut self, ps: u32, dep: &JobId, now: u64) {
        self.refresh(ps, now, |job| {
            let ext = job.ext_mut();
            ext.depends_on.retain(|d| d != dep);
            if let Some(r) = ext.remote.as_deref_mut() {
                r.deps.retain(|(d, _)| d != dep);
            }
        });
        let pending = self.unfinished_dependencies(ps);
        self.job_mut(ps).ext_mut().pending_deps = pending;
        if pending == 0 && self.job(ps).state == JobState::WaitingChildren {
            self.make_runnable(ps, now, Cause::DependenciesMet, |_| {});
        }
    }

    /// What the children of flow parent `id` left (`GetChildrenValues` and the failed
    /// and ignored variants).
    pub fn children_values(&self, id: &str) -> Result<ChildrenValues> {
        let slot = self.slot_or_404(id)?;
        let pairs = |v: &[(Box<str>, Box<str>)]| {
            v.iter()
                .map(|(k, x)| (k.to_string(), x.to_string()))
                .collect::<Vec<_>>()
        };
        Ok(self
            .job(slot)
            .flow()
            .map_or_else(ChildrenValues::default, |f| ChildrenValues {
                values: pairs(&f.values),
                failed: pairs(&f.failed),
                ignored: pairs(&f.ignored),
            }))
    }

    /// An active job with dependencies that have not completed goes back to
    /// waiting-children and gives up its lease (a parent that finds children it must
    /// wait for). Returns false, leaving the job active, if nothing is pending.
    pub fn move_to_waiting_children(&mut self, id: &str, token: Option<&str>) -> Result<bool> {
        let now = self.tick();
        let slot = self.leased_slot(id, token)?;
        let pending = self.unfinished_dependencies(slot);
        if pending == 0 {
            return Ok(false);
        }
        // Each pending dependency must know this job waits for it, to release it.
        let my_id = self.job(slot).id.clone();
        let deps = self
            .job(slot)
            .ext()
            .map(|e| e.depends_on.clone())
            .unwrap_or_default();
        for dep in deps {
            let Some(ds) = self.find(&dep) else { continue };
            if self.job(ds).state == JobState::Completed {
                continue;
            }
            if !self
                .job(ds)
                .ext()
                .is_some_and(|e| e.dependents.contains(&my_id))
            {
                self.job_mut(ds).ext_mut().dependents.push(my_id.clone());
            }
        }
        self.transition(
            slot,
            JobState::WaitingChildren,
            Cause::ChildrenPending,
            now,
            |job| {
                job.lease = None;
                job.ext_mut().pending_deps = pending;
            },
        );
        self.emit(EventKind::WaitingChildren, slot, now, EventExtra::None);
        Ok(true)
    }

    /// Detaches flow child `id` from its parent, which stops waiting for it (and runs
    /// if nothing else is pending). Returns false if there was nothing to detach: the
    /// parent is gone or finished, or the child already finished or is not among what
    /// the parent waits for.
    pub fn remove_child_dependency(&mut self, id: &str) -> Result<bool> {
        let now = self.tick();
        let slot = self
            .slot_of(id)
            .ok_or_else(|| EngineError::not_found(format!("Job not found: {id}")))?;
        let Some(parent) = self.job(slot).flow().and_then(|f| f.parent.clone()) else {
            return Err(EngineError::invalid(format!("Job {id} has no parent")));
        };
        let child_id = self.job(slot).id.clone();
        let Some(ps) = self.find(&parent) else {
            return Ok(self.detach_from_remote_parent(slot, &parent));
        };
        let waits = self.job(ps).state == JobState::WaitingChildren
            && self
                .job(ps)
                .ext()
                .is_some_and(|e| e.depends_on.contains(&child_id));
        if !waits || self.job(slot).state.is_finished() {
            return Ok(false);
        }
        self.job_mut(slot).flow_mut().parent = None;
        if let Some(f) = self.job_mut(ps).ext_mut().flow.as_deref_mut() {
            f.children.retain(|c| c != &child_id);
        }
        if let Some(ext) = self.job_mut(slot).ext.as_deref_mut() {
            ext.dependents.retain(|d| d != &parent);
        }
        self.drop_dependency(ps, &child_id, now);
        Ok(true)
    }
}

/// A flow job's links to its parent and children, from its options.
fn flow_links(opts: &PushOptions) -> FlowLinks {
    FlowLinks {
        parent: opts.parent_id.as_deref().map(JobId::parse),
        on_failure: opts.on_child_failure,
        children: opts.children_ids.iter().map(|c| JobId::parse(c)).collect(),
        ..FlowLinks::default()
    }
}
