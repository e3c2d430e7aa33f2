//! Shared harness for the engine integration tests: a manual clock, an engine on it, and
//! helpers that re-check the counts/list invariant after every step.
#![allow(dead_code)]

pub mod data_dir;

use std::sync::Arc;

use hopper_core::Job;
use hopper_core::{
    Engine, EngineConfig, FailOutcome, JobState, ManualClock, PushOptions, PushOutcome, Result,
};
use hopper_core::{EventExtra, EventKind};

/// 2024-01-01T00:00:00Z: minute- and hour-aligned, a Monday.
pub const T0: u64 = 1_704_067_200_000;

pub struct H {
    pub clock: ManualClock,
    pub e: Engine,
}

impl Default for H {
    fn default() -> Self {
        Self::new()
    }
}

impl H {
    pub fn new() -> Self {
        Self::with(EngineConfig::default())
    }

    pub fn with(config: EngineConfig) -> Self {
        let clock = ManualClock::new(T0);
        let e = Engine::new(config, Arc::new(clock.clone()));
        H { clock, e }
    }

    pub fn now(&self) -> u64 {
        use hopper_core::Clock;
        self.clock.now_ms()
    }

    /// Moves time forward and runs due timers.
    pub fn advance(&mut self, ms: u64) {
        self.clock.advance(ms);
        self.e.tick();
        self.check_all();
    }

    /// Runs any engine call, then re-checks the invariants.
    pub fn op<R>(&mut self, f: impl FnOnce(&mut Engine) -> R) -> R {
        let out = f(&mut self.e);
        self.check_all();
        out
    }

    pub fn try_push(&mut self, queue: &str, json: &str) -> Result<PushOutcome> {
        let opts = PushOptions::from_json(json.as_bytes(), 1 << 20).expect("test body parses");
        self.op(|e| e.push(queue, opts))
    }

    pub fn push(&mut self, queue: &str, json: &str) -> PushOutcome {
        self.try_push(queue, json)
            .unwrap_or_else(|e| panic!("push {json}: {e}"))
    }

    /// Pushes and returns the new id (asserting no duplicate).
    pub fn add(&mut self, queue: &str, json: &str) -> String {
        let out = self.push(queue, json);
        assert!(!out.duplicate, "unexpected duplicate for {json}");
        out.id
    }

    pub fn pull_as(&mut self, queue: &str, owner: u64) -> Option<(String, String)> {
        let got = self.op(|e| e.pull(queue, owner)).expect("pull");
        got.map(|(slot, token)| (self.e.job_at(slot).id.to_string(), token))
    }

    pub fn pull(&mut self, queue: &str) -> Option<(String, String)> {
        self.pull_as(queue, 0)
    }

    /// Pulls and returns just the id.
    pub fn pull_id(&mut self, queue: &str) -> Option<String> {
        self.pull(queue).map(|(id, _)| id)
    }

    pub fn ack(&mut self, id: &str, token: &str) {
        self.op(|e| e.ack(id, Some(token), None))
            .unwrap_or_else(|e| panic!("ack {id}: {e}"));
    }

    pub fn fail(&mut self, id: &str, token: &str, error: &str) -> FailOutcome {
        self.op(|e| e.fail(id, Some(token), Some(error.into())))
            .unwrap_or_else(|e| panic!("fail {id}: {e}"))
    }

    /// Pulls the next job, asserts it is `id`, and completes it.
    pub fn run(&mut self, queue: &str, id: &str) {
        let (got, token) = self.pull(queue).expect("a ready job");
        assert_eq!(got, id);
        self.ack(&got, &token);
    }

    pub fn get(&self, id: &str) -> Option<&Job> {
        self.e.slot_of(id).map(|s| self.e.job_at(s))
    }

    pub fn job(&self, id: &str) -> &Job {
        self.get(id).unwrap_or_else(|| panic!("job {id} exists"))
    }

    pub fn state(&self, id: &str) -> Option<JobState> {
        self.e.slot_of(id).map(|s| self.e.state_of(s))
    }

    pub fn error_of(&self, id: &str) -> Option<String> {
        self.job(id)
            .ext()
            .and_then(|x| x.error.as_deref())
            .map(str::to_string)
    }

    pub fn ids(&self, queue: &str, state: JobState) -> Vec<String> {
        let (slots, _) = self.e.list(queue, state, 0, 999);
        slots
            .iter()
            .map(|&s| self.e.job_at(s).id.to_string())
            .collect()
    }

    pub fn count(&self, queue: &str, state: JobState) -> usize {
        let i = JobState::ALL.iter().position(|&s| s == state).unwrap();
        self.e.counts(queue)[i]
    }

    /// Drains events as (kind, job id).
    pub fn events(&mut self) -> Vec<(EventKind, Option<String>, EventExtra)> {
        self.e
            .take_events()
            .into_iter()
            .map(|ev| (ev.kind, ev.job_id.map(|j| j.to_string()), ev.extra))
            .collect()
    }

    /// counts() equals the list() length for every state, every listed job is in that
    /// state and queue, and the slab holds exactly the jobs the indexes count.
    pub fn check(&self, queue: &str) {
        let counts = self.e.counts(queue);
        for (i, &state) in JobState::ALL.iter().enumerate() {
            let (slots, total) = self.e.list(queue, state, 0, 999);
            assert_eq!(
                total,
                counts[i],
                "{queue}/{}: list total vs counts",
                state.as_str()
            );
            assert_eq!(
                slots.len(),
                counts[i],
                "{queue}/{}: list length vs counts",
                state.as_str()
            );
            for &s in &slots {
                assert_eq!(
                    self.e.state_of(s),
                    state,
                    "{queue}: listed job in the wrong state"
                );
                assert_eq!(
                    self.e.queue_name_of(s),
                    queue,
                    "listed job in the wrong queue"
                );
            }
        }
    }

    pub fn check_all(&self) {
        let mut sum = 0;
        for q in self.e.queue_names() {
            self.check(&q);
            sum += self.e.counts(&q).iter().sum::<usize>();
        }
        assert_eq!(
            sum,
            self.e.job_count(),
            "jobs in the slab vs jobs in state indexes"
        );
        assert_eq!(self.e.total_counts().iter().sum::<usize>(), sum);
    }
}
