//! Dedup keys looked up and released by hand (the reference's deduplication commands):
//! a released key no longer stops a push, while the job that held it runs on.

use super::Engine;
use crate::error::Result;

impl Engine {
    /// The id of the live job holding dedup `key` in `queue`.
    pub fn dedup_holder(&self, queue: &str, key: &str) -> Option<String> {
        let qid = self.queue_id(queue)?;
        let slot = *self.queues[qid as usize].dedup.get(key)?;
        Some(self.job(slot).id.to_string())
    }

    /// Frees dedup `key` in `queue`, so that the next push with it creates a job. The
    /// holder loses its key (its record is written again without it, so the release
    /// survives a restart). Returns whether the key was held.
    pub fn release_dedup_key(&mut self, queue: &str, key: &str) -> bool {
        let Some(qid) = self.queue_id(queue) else {
            return false;
        };
        let Some(slot) = self.queues[qid as usize].dedup.remove(key) else {
            return false;
        };
        self.mark_dirty(slot, true);
        if let Some(ext) = self.job_mut(slot).ext.as_deref_mut() {
            ext.unique_key = None;
        }
        true
    }

    /// `release_dedup_key` for the key job `id` holds, if it holds one.
    pub fn release_job_dedup_key(&mut self, id: &str) -> Result<bool> {
        let slot = self.slot_or_404(id)?;
        let job = self.job(slot);
        let Some(key) = job.unique_key().map(Box::<str>::from) else {
            return Ok(false);
        };
        let queue = self.queues[job.queue as usize].name.clone();
        let holds = self.queues[job.queue as usize].dedup.get(&key) == Some(&slot);
        Ok(holds && self.release_dedup_key(&queue, &key))
    }
}
