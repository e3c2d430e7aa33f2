//! The engine shared between the caller's threads and the engine's own threads (timer,
//! and for a persistent engine the log writer and the snapshotter): one lock around the
//! engine, a condition variable for blocking pulls, and the notification fd for event
//! loops. After every call under the lock, what the call changed goes to the log, so the
//! log order is the order of operations.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::clock::Clock;
use crate::engine::{Applied, Engine, EngineConfig, OutboxEntry};
use crate::error::{EngineError, Result};
use crate::notify::Notifier;
use crate::snapshot::SnapshotInfo;
use crate::storage::{OpenReport, Storage, StorageConfig};
use crate::wal::Commit;

/// The timer thread wakes at least this often, so a clock that jumps is noticed.
const MAX_TIMER_SLEEP_MS: u64 = 1000;

struct Shared {
    engine: Mutex<Engine>,
    /// Signalled when a job becomes ready (blocking pulls wait on it).
    work: Condvar,
    /// Threads parked on `work`; signalling it costs a syscall, so only when someone waits.
    waiting: AtomicUsize,
    /// Signalled when a timer earlier than the planned wake-up is added, or on close.
    timer: Condvar,
    /// Signalled when a message for another cluster slot is recorded, or on close.
    outbox: Condvar,
    notifier: Arc<Notifier>,
    closed: AtomicBool,
    storage: Option<Storage>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Engine> {
        // A panic while holding the lock is caught at the binding boundary; the engine's
        // indexes are only ever changed in pairs, so keep serving rather than wedge.
        self.engine
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// After every engine call: log what it changed, and wake whoever it made work for.
    /// Returns what an answer to the call waits for, when it logged something.
    fn after(&self, engine: &mut Engine) -> Option<Commit> {
        let logged = self.storage.as_ref().and_then(|s| {
            let totals = engine.totals();
            s.wal.append(totals, |buf| engine.flush_log(buf))
        });
        if engine.take_work_added() && self.waiting.load(Ordering::Acquire) > 0 {
            self.work.notify_all();
        }
        if engine.has_notifications() {
            self.notifier.signal();
        }
        if engine.take_timers_moved_earlier() {
            self.timer.notify_one();
        }
        if engine.take_outbox_added() {
            self.outbox.notify_all();
        }
        logged
    }
}

#[derive(Clone)]
pub struct EngineHandle {
    shared: Arc<Shared>,
    threads: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

/// How often the snapshotter checks whether a snapshot is due.
const SNAPSHOT_CHECK_MS: u64 = 1000;

impl EngineHandle {
    /// An in-memory engine.
    pub fn new(config: EngineConfig, clock: Arc<dyn Clock>) -> std::io::Result<Self> {
        Self::open(config, clock, None)
            .map(|(h, _)| h)
            .map_err(std::io::Error::other)
    }

    /// An engine, persistent when `storage` is given: the data directory is locked and
    /// recovered before this returns.
    pub fn open(
        config: EngineConfig,
        clock: Arc<dyn Clock>,
        storage: Option<StorageConfig>,
    ) -> std::result::Result<(Self, Option<OpenReport>), String> {
        let manual = clock.is_manual();
        let notifier = Arc::new(Notifier::new().map_err(|e| e.to_string())?);
        let mut engine = Engine::new(config, clock);
        let (storage, report) = match storage {
            Some(cfg) => {
                let n = notifier.clone();
                let (s, r) = Storage::open(cfg, &mut engine, Box::new(move || n.signal()))?;
                (Some(s), Some(r))
            }
            None => (None, None),
        };
        let shared = Arc::new(Shared {
            engine: Mutex::new(engine),
            work: Condvar::new(),
            waiting: AtomicUsize::new(0),
            timer: Condvar::new(),
            outbox: Condvar::new(),
            notifier,
            closed: AtomicBool::new(false),
            storage,
        });
        let spawn = |name: &str, f: fn(&Shared)| {
            let s = shared.clone();
            std::thread::Builder::new()
                .name(name.into())
                .spawn(move || f(&s))
                .map_err(|e| e.to_string())
        };
        let mut threads = Vec::new();
        // With a manual clock, time only moves when the test says so: `tick` runs timers.
        if !manual {
            threads.push(spawn("hopper-timer", timer_loop)?);
        }
        if shared.storage.is_some() {
            threads.push(spawn("hopper-snapshot", snapshot_loop)?);
        }
        let handle = Self {
            shared,
            threads: Arc::new(Mutex::new(threads)),
        };
        // A repaired directory is rewritten at once, so the damaged files are gone.
        if handle.storage().is_some_and(Storage::repaired) {
            handle
                .snapshot_now()
                .map_err(|e| format!("repair: cannot write the new snapshot: {e}"))?;
        }
        Ok((handle, report))
    }

    fn storage(&self) -> Option<&Storage> {
        self.shared.storage.as_ref()
    }

    /// Runs `f` on the engine under the lock, then logs and delivers what it caused.
    pub fn with<R>(&self, f: impl FnOnce(&mut Engine) -> R) -> R {
        let mut engine = self.shared.lock();
        let out = f(&mut engine);
        self.shared.after(&mut engine);
        out
    }

    /// `with` for an operation that changes state: refused while storage is failing, and
    /// returns what its answer must wait for (its record written, or synced under
    /// `always` and for a `durable` push); `None` when it logged nothing.
    pub fn mutate<R>(
        &self,
        f: impl FnOnce(&mut Engine) -> Result<R>,
    ) -> Result<(R, Option<Commit>)> {
        self.check_writable()?;
        let mut engine = self.shared.lock();
        let out = f(&mut engine);
        let logged = self.shared.after(&mut engine);
        drop(engine);
        Ok((out?, logged))
    }

    /// `with` for a batch of operations, each of which may or may not change state
    /// (protocol frames): returns what their answers must wait for, if anything logged.
    pub fn apply<R>(&self, f: impl FnOnce(&mut Engine) -> R) -> (R, Option<Commit>) {
        let mut engine = self.shared.lock();
        let out = f(&mut engine);
        let logged = self.shared.after(&mut engine);
        (out, logged)
    }

    /// Refuses state changes while storage is failing.
    pub fn check_writable(&self) -> Result<()> {
        let Some(s) = self.storage() else {
            return Ok(());
        };
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(EngineError::unavailable(
                "the engine is closed: its data directory is released",
            ));
        }
        s.check_writable()
    }

    /// Blocks until `c` is reached (no-op for an in-memory engine).
    pub fn wait(&self, c: Commit) -> Result<()> {
        match self.storage() {
            Some(s) => s.wal.wait(c),
            None => Ok(()),
        }
    }

    /// Writes everything appended so far on this thread (see `Wal::write_now`).
    pub fn write_now(&self) {
        if let Some(s) = self.storage() {
            s.wal.write_now();
        }
    }

    /// Waits until everything logged so far is synced (no-op for an in-memory engine).
    pub fn sync_all(&self) -> Result<()> {
        let Some(s) = self.storage() else {
            return Ok(());
        };
        let lsn = s.wal.appended_lsn();
        s.wal.wait(Commit { lsn, synced: true })
    }

    // ----- a cluster's messages between slots (`engine/cross_slot.rs`) -----------------

    /// Undelivered messages for other slots, at most `limit`, by (target, seq); handed
    /// out only once their records are synced (this waits for that), so a message in
    /// the database is always one the slot's next owner recovers too.
    pub fn outbox_pending(&self, limit: usize) -> Result<Vec<OutboxEntry>> {
        let pending = self.with(|e| e.outbox_pending(limit));
        if !pending.is_empty() {
            self.sync_all()?;
        }
        Ok(pending)
    }

    /// Records that the messages for `target` through `through` are in the database.
    pub fn outbox_delivered(&self, target: u32, through: u64) -> Result<()> {
        self.mutate(|e| {
            e.outbox_delivered(target, through);
            Ok(())
        })
        .map(|_| ())
    }

    /// Blocks up to `timeout` until messages wait for delivery; true if some do.
    pub fn outbox_wait(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut engine = self.shared.lock();
        loop {
            if engine.has_outbox() {
                return true;
            }
            let now = Instant::now();
            if now >= deadline || self.shared.closed.load(Ordering::Acquire) {
                return false;
            }
            engine = self
                .shared
                .outbox
                .wait_timeout(engine, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Applies message `seq` from slot `source` (`Engine::apply_slot_message`). Its
    /// effects are logged with it; `sync_all` makes them durable.
    pub fn apply_slot_message(&self, source: u32, seq: u64, body: &[u8]) -> Result<Applied> {
        self.mutate(|e| e.apply_slot_message(source, seq, body))
            .map(|(applied, _)| applied)
    }

    /// The last seq applied from slot `source` (0: none).
    pub fn inbox_cursor(&self, source: u32) -> u64 {
        self.with(|e| e.inbox_cursor(source))
    }

    /// Whether `c` is reached already (always, for an in-memory engine).
    pub fn reached(&self, c: Commit) -> bool {
        self.storage().is_none_or(|s| s.wal.reached(c))
    }

    /// The synced LSN (`u64::MAX` for an in-memory engine: nothing to wait for).
    pub fn durable_lsn(&self) -> u64 {
        self.storage().map_or(u64::MAX, |s| s.wal.durable_lsn())
    }

    /// The LSN handed to the OS (`u64::MAX` for an in-memory engine).
    pub fn written_lsn(&self) -> u64 {
        self.storage().map_or(u64::MAX, |s| s.wal.written_lsn())
    }

    /// From now on the notification fd is signalled when the written or synced LSN
    /// moves or storage fails, so an event loop can await commits.
    pub fn want_progress(&self) {
        if let Some(s) = self.storage() {
            s.wal.want_progress();
        }
    }

    /// Asks for `lsn` to be synced now.
    pub fn request_sync(&self, lsn: u64) {
        if let Some(s) = self.storage() {
            s.wal.request_sync(lsn);
        }
    }

    /// Why the log refuses every write for good (it failed), if it does; unlike
    /// `storage_error`, not a store's passing refusal (a cluster lease being renewed).
    pub fn log_failed(&self) -> Option<String> {
        self.storage()
            .and_then(|s| s.wal.check_writable().err().map(|e| e.message))
    }

    /// Why writes are refused now, if they are.
    pub fn storage_error(&self) -> Option<String> {
        self.storage()
            .and_then(|s| s.check_writable().err().map(|e| e.message))
    }

    pub fn snapshot_now(&self) -> std::io::Result<Option<SnapshotInfo>> {
        match self.storage() {
            Some(s) => s.snapshot(|| self.shared.lock()).map(Some),
            None => Ok(None),
        }
    }

    /// (appended LSN, written LSN, synced LSN, log bytes since the last snapshot,
    /// snapshots taken, fsync policy) of a persistent engine.
    pub fn storage_info(&self) -> Option<(u64, u64, u64, u64, u64, &'static str)> {
        self.storage().map(|s| {
            let policy = match s.wal.policy() {
                crate::wal::FsyncPolicy::Always => "always",
                crate::wal::FsyncPolicy::Interval(_) => "interval",
                crate::wal::FsyncPolicy::Never => "never",
            };
            (
                s.wal.appended_lsn(),
                s.wal.written_lsn(),
                s.wal.durable_lsn(),
                s.wal.log_bytes(),
                s.snapshots_taken(),
                policy,
            )
        })
    }

    /// Makes every log write fail as a full disk would (tests).
    pub fn inject_io_failure(&self, on: bool) -> Result<()> {
        let s = self
            .storage()
            .ok_or_else(|| EngineError::state("the engine has no data directory"))?;
        s.wal.inject_failure(on);
        Ok(())
    }

    /// Applies due timers now (tests with a manual clock call this after advancing it).
    pub fn tick(&self) {
        self.with(|e| {
            e.tick();
        });
    }

    /// Retries `attempt` (typically a pull) until it yields something or `timeout_ms`
    /// passes, sleeping on the work condition variable in between, so the result is taken
    /// under the same lock that found it. Call without holding any other lock; the
    /// bindings release the GIL around it.
    pub fn wait_for<R>(
        &self,
        timeout_ms: u64,
        mut attempt: impl FnMut(&mut Engine) -> Result<Option<R>>,
    ) -> Result<Option<R>> {
        let deadline = Instant::now() + Duration::from_millis(timeout_ms);
        let mut engine = self.shared.lock();
        loop {
            let got = attempt(&mut engine);
            self.shared.after(&mut engine);
            match got {
                Ok(None) => {}
                other => return other,
            }
            let now = Instant::now();
            if now >= deadline || self.shared.closed.load(Ordering::Acquire) {
                return Ok(None);
            }
            // Counted under the lock, so a job made ready after this check will notify us.
            self.shared.waiting.fetch_add(1, Ordering::AcqRel);
            engine = self
                .shared
                .work
                .wait_timeout(engine, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
            self.shared.waiting.fetch_sub(1, Ordering::AcqRel);
        }
    }

    pub fn notify_fd(&self) -> i32 {
        self.shared.notifier.fd()
    }

    /// Clears the notification fd; call before draining events and woken queues.
    pub fn clear_notifications(&self) {
        self.shared.notifier.clear();
    }

    /// Stops the engine's threads, wakes blocked pullers, and writes and syncs the rest
    /// of the log. Idempotent.
    pub fn close(&self) {
        self.shared.closed.store(true, Ordering::Release);
        self.shared.timer.notify_all();
        self.shared.work.notify_all();
        self.shared.outbox.notify_all();
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|p| p.into_inner()));
        for t in threads {
            t.thread().unpark();
            let _ = t.join();
        }
        if let Some(s) = self.storage() {
            s.close();
        }
    }
}

fn snapshot_loop(shared: &Shared) {
    let Some(storage) = shared.storage.as_ref() else {
        return;
    };
    while !shared.closed.load(Ordering::Acquire) {
        std::thread::park_timeout(Duration::from_millis(SNAPSHOT_CHECK_MS));
        if shared.closed.load(Ordering::Acquire) || !storage.snapshot_due() {
            continue;
        }
        // A failure (disk full) is retried at the next check; the log keeps everything.
        if let Err(e) = storage.snapshot(|| shared.lock()) {
            eprintln!("hopper: snapshot failed (will retry): {e}");
        }
    }
}

fn timer_loop(shared: &Shared) {
    let mut engine = shared.lock();
    while !shared.closed.load(Ordering::Acquire) {
        let now = engine.tick();
        shared.after(&mut engine);
        let sleep = engine
            .plan_wake()
            .map_or(MAX_TIMER_SLEEP_MS, |w| w.saturating_sub(now))
            .clamp(1, MAX_TIMER_SLEEP_MS);
        engine = shared
            .timer
            .wait_timeout(engine, Duration::from_millis(sleep))
            .unwrap_or_else(|p| p.into_inner())
            .0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SystemClock;
    use crate::options::PushOptions;

    fn opts(delay: u64) -> PushOptions {
        PushOptions {
            data: "1".into(),
            delay,
            max_attempts: 3,
            backoff: 10,
            ..Default::default()
        }
    }

    #[test]
    fn timer_thread_promotes_delayed_jobs_and_wakes_a_blocked_pull() {
        let h = EngineHandle::new(EngineConfig::default(), Arc::new(SystemClock)).unwrap();
        let pushed = h.with(|e| e.push("q", opts(50))).unwrap();
        let start = Instant::now();
        let got = h
            .wait_for(5000, |e| e.pull_job("q", 0))
            .unwrap()
            .expect("delayed job arrives");
        assert!(start.elapsed() >= Duration::from_millis(45));
        assert!(start.elapsed() < Duration::from_millis(4000));
        assert_eq!(got.id, pushed.id);
        h.close();
    }

    #[test]
    fn blocking_pull_times_out_empty() {
        let h = EngineHandle::new(EngineConfig::default(), Arc::new(SystemClock)).unwrap();
        let start = Instant::now();
        assert!(h.wait_for(30, |e| e.pull("q", 0)).unwrap().is_none());
        assert!(start.elapsed() >= Duration::from_millis(30));
        h.close();
        h.close();
    }
}
