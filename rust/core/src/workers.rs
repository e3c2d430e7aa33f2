//! The workers registry: who said they process which queues, and when they last said
//! so. Live bookkeeping only (the reference keeps it in memory too): a worker registers
//! again after every reconnect, and its entry goes when its connection closes.

use hashbrown::HashMap;

#[derive(Debug, Clone, PartialEq)]
pub struct Worker {
    pub id: String,
    pub name: String,
    pub queues: Vec<String>,
    pub concurrency: u32,
    pub hostname: Option<String>,
    pub pid: Option<f64>,
    pub registered_at: u64,
    pub last_seen: u64,
    pub active_jobs: u64,
    pub processed_jobs: u64,
    pub failed_jobs: u64,
    /// The connection that registered it (0 = none), so a close can remove it.
    pub connection: u64,
}

#[derive(Debug, Default)]
pub struct WorkerRegistry {
    workers: HashMap<String, Worker>,
}

/// Most workers kept: a client that registers without end cannot grow memory forever.
pub const MAX_WORKERS: usize = 100_000;

impl WorkerRegistry {
    /// Adds or replaces a worker (a reconnecting worker registers under its old id).
    pub fn register(&mut self, worker: Worker) -> Result<&Worker, &'static str> {
        if self.workers.len() >= MAX_WORKERS && !self.workers.contains_key(&worker.id) {
            return Err("Too many workers registered");
        }
        let id = worker.id.clone();
        self.workers.insert(id.clone(), worker);
        Ok(&self.workers[&id])
    }

    pub fn heartbeat(
        &mut self,
        id: &str,
        now: u64,
        active: Option<u64>,
        processed: Option<u64>,
        failed: Option<u64>,
    ) -> bool {
        let Some(w) = self.workers.get_mut(id) else {
            return false;
        };
        w.last_seen = now;
        if let Some(v) = active {
            w.active_jobs = v;
        }
        if let Some(v) = processed {
            w.processed_jobs = v;
        }
        if let Some(v) = failed {
            w.failed_jobs = v;
        }
        true
    }

    pub fn unregister(&mut self, id: &str) -> bool {
        self.workers.remove(id).is_some()
    }

    /// Removes the workers a closed connection registered; returns how many.
    pub fn drop_connection(&mut self, connection: u64) -> usize {
        let before = self.workers.len();
        self.workers.retain(|_, w| w.connection != connection);
        before - self.workers.len()
    }

    /// Whether a registered worker serves `queue` (a scheduler's `skipIfNoWorker`).
    pub fn serves(&self, queue: &str) -> bool {
        self.workers
            .values()
            .any(|w| w.queues.iter().any(|q| q == queue))
    }

    /// Every worker, oldest registration first.
    pub fn list(&self) -> Vec<&Worker> {
        let mut all: Vec<&Worker> = self.workers.values().collect();
        all.sort_by(|a, b| (a.registered_at, &a.id).cmp(&(b.registered_at, &b.id)));
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker(id: &str, connection: u64) -> Worker {
        Worker {
            id: id.into(),
            name: "w".into(),
            queues: vec!["q".into()],
            concurrency: 1,
            hostname: None,
            pid: None,
            registered_at: 1,
            last_seen: 1,
            active_jobs: 0,
            processed_jobs: 0,
            failed_jobs: 0,
            connection,
        }
    }

    #[test]
    fn a_closed_connection_takes_its_workers_with_it() {
        let mut r = WorkerRegistry::default();
        r.register(worker("a", 1)).unwrap();
        r.register(worker("b", 2)).unwrap();
        assert!(r.heartbeat("a", 5, Some(3), None, None));
        assert!(!r.heartbeat("zz", 5, None, None, None));
        assert_eq!(r.list()[0].active_jobs, 3);
        assert_eq!(r.drop_connection(1), 1);
        assert_eq!(r.list().len(), 1);
        assert!(r.unregister("b") && !r.unregister("b"));
    }
}
