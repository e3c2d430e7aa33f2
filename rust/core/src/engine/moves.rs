//! Moves a worker or an operator asks for by name (the reference's job control
//! commands): an active job put off for later without spending an attempt, a pending
//! job's time changed, and a job discarded to failed with no retry.

use super::placement::Cause;
use super::Engine;
use crate::error::{EngineError, Result};
use crate::job::JobState;
use crate::options::MAX_DELAY_MS;

impl Engine {
    /// An active job runs again after `delay_ms`, its attempt not counted (a processor
    /// that defers its job, the reference's `DelayedError`). The lease ends.
    pub fn move_to_delayed(&mut self, id: &str, token: Option<&str>, delay_ms: u64) -> Result<()> {
        let now = self.tick();
        let slot = self.leased_slot(id, token)?;
        self.job_mut(slot).run_at = now + delay_ms.min(MAX_DELAY_MS);
        self.make_runnable(slot, now, Cause::Deferred, |job| job.lease = None);
        Ok(())
    }

    /// Runs a job `delay_ms` from now: a waiting or delayed job gets the new time (0
    /// makes it ready), an active one is moved to delayed as by `move_to_delayed`.
    pub fn change_delay(&mut self, id: &str, token: Option<&str>, delay_ms: u64) -> Result<()> {
        let slot = self.slot_or_404(id)?;
        match self.job(slot).state {
            JobState::Active => self.move_to_delayed(id, token, delay_ms),
            JobState::Waiting | JobState::Delayed => {
                let now = self.tick();
                let run_at = now + delay_ms.min(MAX_DELAY_MS);
                match self.job(slot).state {
                    JobState::Delayed if run_at > now => {
                        self.refresh(slot, now, |job| job.run_at = run_at);
                    }
                    JobState::Delayed => self.promote_slot(slot, now),
                    _ if run_at <= now => {}
                    _ => {
                        // A waiting job is in no index keyed by `runAt`: set it, then move.
                        self.job_mut(slot).run_at = run_at;
                        self.make_runnable(slot, now, Cause::Deferred, |_| {});
                    }
                }
                Ok(())
            }
            state => Err(EngineError::state(format!(
                "Cannot change the delay of a {} job",
                state.as_str()
            ))),
        }
    }

    /// Fails a job for good, at once and whatever attempts it has left: an active job
    /// (with its lease's token) or one that has not started.
    pub fn discard_job(&mut self, id: &str, token: Option<&str>) -> Result<()> {
        let slot = self.slot_or_404(id)?;
        let slot = match self.job(slot).state {
            JobState::Active => self.leased_slot(id, token)?,
            JobState::Waiting | JobState::Delayed | JobState::WaitingChildren => slot,
            state => {
                return Err(EngineError::state(format!(
                    "Cannot discard a {} job",
                    state.as_str()
                )))
            }
        };
        let now = self.tick();
        self.finish_failed(slot, "Job discarded".into(), now);
        Ok(())
    }
}
