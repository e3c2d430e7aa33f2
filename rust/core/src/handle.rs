//! The engine shared between the caller's threads and the engine's own timer thread:
//! one lock around the engine, a condition variable for blocking pulls, and the
//! notification fd for event loops.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::clock::Clock;
use crate::engine::{Engine, EngineConfig};
use crate::error::Result;
use crate::notify::Notifier;

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
    notifier: Notifier,
    closed: AtomicBool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Engine> {
        // A panic while holding the lock is caught at the binding boundary; the engine's
        // indexes are only ever changed in pairs, so keep serving rather than wedge.
        self.engine
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// After every engine call: wake whoever the call made work for.
    fn after(&self, engine: &mut Engine) {
        if engine.take_work_added() && self.waiting.load(Ordering::Acquire) > 0 {
            self.work.notify_all();
        }
        if engine.has_notifications() {
            self.notifier.signal();
        }
        if engine.take_timers_moved_earlier() {
            self.timer.notify_one();
        }
    }
}

#[derive(Clone)]
pub struct EngineHandle {
    shared: Arc<Shared>,
    timer_thread: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl EngineHandle {
    pub fn new(config: EngineConfig, clock: Arc<dyn Clock>) -> std::io::Result<Self> {
        let manual = clock.is_manual();
        let shared = Arc::new(Shared {
            engine: Mutex::new(Engine::new(config, clock)),
            work: Condvar::new(),
            waiting: AtomicUsize::new(0),
            timer: Condvar::new(),
            notifier: Notifier::new()?,
            closed: AtomicBool::new(false),
        });
        // With a manual clock, time only moves when the test says so: `tick` runs timers.
        let timer_thread = if manual {
            None
        } else {
            let s = shared.clone();
            Some(
                std::thread::Builder::new()
                    .name("hopper-timer".into())
                    .spawn(move || timer_loop(&s))?,
            )
        };
        Ok(Self {
            shared,
            timer_thread: Arc::new(Mutex::new(timer_thread)),
        })
    }

    /// Runs `f` on the engine under the lock, then delivers the wake-ups it caused.
    pub fn with<R>(&self, f: impl FnOnce(&mut Engine) -> R) -> R {
        let mut engine = self.shared.lock();
        let out = f(&mut engine);
        self.shared.after(&mut engine);
        out
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

    /// Stops the timer thread and wakes blocked pullers. Idempotent.
    pub fn close(&self) {
        self.shared.closed.store(true, Ordering::Release);
        self.shared.timer.notify_all();
        self.shared.work.notify_all();
        let thread = self
            .timer_thread
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(t) = thread {
            let _ = t.join();
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
