//! The write-ahead log: numbered segments in a `LogStore` (files under the data directory
//! by default, where "write" is a `pwrite` and "sync" an `fdatasync`) and the writer
//! thread that does group commit.
//!
//! Operations append their frame to a shared buffer under the engine lock (so the log
//! order is the operation order) and go on; whoever writes next takes everything
//! appended so far in one swap and writes it with one `pwrite`: a caller that must see
//! its record written (`write_now`, an event loop once per batch of requests), or else
//! the writer thread, which also syncs with one `fdatasync` according to the policy.
//! Concurrent operations therefore share writes and syncs.
//! Progress is a byte count of appended frames (the LSN): an operation's record is with
//! the OS once `written_lsn()` reaches the LSN its append returned (a killed process
//! cannot lose it), and on disk once `durable_lsn()` does (an OS crash cannot either).
//!
//! A failed write or sync puts the log in the failed state: new operations are refused
//! (`check_writable`), the unwritten bytes are kept and retried in place (the same file
//! offset, so a partial write is overwritten) until the disk accepts them again.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, TryLockError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::engine::Totals;
use crate::error::{EngineError, Result};
use crate::frame::{begin_frame, finish_frame, header, HEADER_LEN, SEGMENT_MAGIC};
use crate::log_store::{LogStore, SegmentWriter};
use crate::record::encode_totals;

/// How long a failed write waits before it is retried.
const RETRY_MS: u64 = 200;

/// The writer's longest sleep (shorter under a shorter interval): records nobody waits
/// for (leases, timer changes) are written at the latest this long after they were
/// appended (appends that only need writing do not wake the writer).
const NAP: Duration = Duration::from_millis(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// Every operation is answered after its record is synced.
    Always,
    /// Records are written at once and synced at least this often.
    Interval(Duration),
    /// Records are written at once; syncing is left to the OS (and to `durable` pushes).
    Never,
}

impl FsyncPolicy {
    pub fn parse(s: &str, interval_ms: u64) -> std::result::Result<Self, String> {
        match s {
            "always" => Ok(Self::Always),
            "interval" if interval_ms == 0 => {
                Err("fsync_interval_ms must be at least 1".to_string())
            }
            "interval" => Ok(Self::Interval(Duration::from_millis(interval_ms))),
            "never" => Ok(Self::Never),
            other => Err(format!(
                "unknown fsync policy '{other}': expected always, interval or never"
            )),
        }
    }
}

/// What an answer waits for: its record handed to the OS (`write` returned), or synced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Commit {
    pub lsn: u64,
    pub synced: bool,
}

struct Pending {
    buf: Vec<u8>,
    /// LSN: bytes of frames appended so far.
    appended: u64,
    totals: Option<Totals>,
    /// The highest LSN somebody is waiting to see synced.
    sync_wanted: u64,
    /// A requested switch to a new segment: (offset in `buf`, new segment number).
    rotate: Option<(usize, u32)>,
    next_segment: u32,
    writer_idle: bool,
    closing: bool,
}

struct Shared {
    pending: Mutex<Pending>,
    /// The writing side; lock order: `output`, then `pending`.
    output: Mutex<Output>,
    wake_writer: Condvar,
    /// LSN handed to the OS by `pwrite`.
    written: AtomicU64,
    /// LSN synced by `fdatasync`.
    durable: AtomicU64,
    progress_lock: Mutex<()>,
    progress_changed: Condvar,
    /// Threads blocked in `wait`; waking them costs a syscall, so only when there are any.
    blocked: AtomicUsize,
    failed: AtomicBool,
    error: Mutex<Option<String>>,
    /// Bytes written to segments since the last snapshot's rotation.
    log_bytes: AtomicU64,
    /// Set by tests: every write fails as if the disk were full.
    inject_failure: AtomicBool,
    /// Called when the written or durable LSN moves or the log fails, if async waiters
    /// asked.
    on_progress: Box<dyn Fn() + Send + Sync>,
    progress_wanted: AtomicBool,
    policy: FsyncPolicy,
    segment_bytes: u64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn output(&self) -> MutexGuard<'_, Output> {
        self.output.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn failing(&self) -> io::Result<()> {
        if self.inject_failure.load(Ordering::Acquire) {
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                "No space left on device (injected)",
            ));
        }
        Ok(())
    }

    fn set_error(&self, what: &str, e: &io::Error) {
        let msg = format!("storage unavailable: {what} failed: {e}");
        *self.error.lock().unwrap_or_else(|p| p.into_inner()) = Some(msg);
        self.failed.store(true, Ordering::Release);
        self.announce();
    }

    fn clear_error(&self) {
        if self.failed.swap(false, Ordering::AcqRel) {
            *self.error.lock().unwrap_or_else(|p| p.into_inner()) = None;
        }
    }

    /// Wakes the threads blocked in `wait`.
    fn wake_blocked(&self) {
        // SeqCst here and on the LSN stores/loads: either the waiter sees the new LSN or
        // this sees the waiter.
        if self.blocked.load(Ordering::SeqCst) > 0 {
            let _g = self.progress_lock.lock().unwrap_or_else(|p| p.into_inner());
            self.progress_changed.notify_all();
        }
    }

    /// Tells every waiter, blocked threads and event loops, that the log moved.
    fn announce(&self) {
        self.wake_blocked();
        if self.progress_wanted.load(Ordering::Acquire) {
            (self.on_progress)();
        }
    }
}

pub struct WalConfig {
    pub store: Arc<dyn LogStore>,
    pub policy: FsyncPolicy,
    /// A segment is closed and a new one started past this size.
    pub segment_bytes: u64,
    /// The number of the first segment this process writes.
    pub first_segment: u32,
    /// Bytes already in the log that the last snapshot does not cover.
    pub log_bytes: u64,
}

pub struct Wal {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Wal {
    pub fn open(config: WalConfig, on_progress: Box<dyn Fn() + Send + Sync>) -> io::Result<Self> {
        let segment = Segment::create(&*config.store, config.first_segment)?;
        let shared = Arc::new(Shared {
            output: Mutex::new(Output {
                store: config.store,
                segment,
                batch: Vec::with_capacity(1 << 16),
                carry: Vec::with_capacity(1 << 16),
                rotate: None,
                carry_lsn: 0,
                written_lsn: 0,
                last_totals: None,
            }),
            pending: Mutex::new(Pending {
                buf: Vec::with_capacity(1 << 16),
                appended: 0,
                totals: None,
                sync_wanted: 0,
                rotate: None,
                next_segment: config.first_segment + 1,
                writer_idle: false,
                closing: false,
            }),
            wake_writer: Condvar::new(),
            written: AtomicU64::new(0),
            durable: AtomicU64::new(0),
            progress_lock: Mutex::new(()),
            progress_changed: Condvar::new(),
            blocked: AtomicUsize::new(0),
            failed: AtomicBool::new(false),
            error: Mutex::new(None),
            log_bytes: AtomicU64::new(config.log_bytes),
            inject_failure: AtomicBool::new(false),
            on_progress,
            progress_wanted: AtomicBool::new(false),
            policy: config.policy,
            segment_bytes: config.segment_bytes,
        });
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("hopper-wal".into())
            .spawn(move || Writer::new(s).run())?;
        Ok(Self {
            shared,
            thread: Mutex::new(Some(thread)),
        })
    }

    pub fn policy(&self) -> FsyncPolicy {
        self.shared.policy
    }

    /// Appends what `fill` writes (whole frames) and records the counters as of now.
    /// Returns what the operation's answer waits for, or `None` when `fill` wrote
    /// nothing. `fill` returning true asks the writer to sync it at once whatever the
    /// policy (a `durable` push).
    pub fn append(
        &self,
        totals: Totals,
        fill: impl FnOnce(&mut Vec<u8>) -> Option<bool>,
    ) -> Option<Commit> {
        let mut p = self.shared.lock();
        let before = p.buf.len();
        let synced = fill(&mut p.buf)? || self.shared.policy == FsyncPolicy::Always;
        p.appended += (p.buf.len() - before) as u64;
        p.totals = Some(totals);
        let lsn = p.appended;
        // Only a record that must be synced wakes the writer: one that must be written
        // is written by its waiter (`write_now`), and the others by the writer's next nap
        // at the latest. Waking it per batch would cost the event loop a futex call and
        // a race for the output lock.
        if synced {
            p.sync_wanted = lsn;
            if p.writer_idle {
                p.writer_idle = false;
                self.shared.wake_writer.notify_one();
            }
        }
        Some(Commit { lsn, synced })
    }

    /// Everything appended so far.
    pub fn appended_lsn(&self) -> u64 {
        self.shared.lock().appended
    }

    pub fn written_lsn(&self) -> u64 {
        self.shared.written.load(Ordering::SeqCst)
    }

    pub fn durable_lsn(&self) -> u64 {
        self.shared.durable.load(Ordering::SeqCst)
    }

    /// Whether `c` is already satisfied.
    pub fn reached(&self, c: Commit) -> bool {
        let at = if c.synced {
            self.durable_lsn()
        } else {
            self.written_lsn()
        };
        at >= c.lsn
    }

    /// Asks the writer to sync up to `lsn` now, without waiting for it.
    pub fn request_sync(&self, lsn: u64) {
        let mut p = self.shared.lock();
        if lsn > p.sync_wanted {
            p.sync_wanted = lsn;
        }
        if p.writer_idle {
            p.writer_idle = false;
            self.shared.wake_writer.notify_one();
        }
    }

    /// Async waiters want `on_progress` calls from now on.
    pub fn want_progress(&self) {
        self.shared.progress_wanted.store(true, Ordering::Release);
    }

    /// Writes everything appended so far on the caller's thread, one `pwrite`, instead of
    /// waiting for the writer thread to wake: the caller sees its records written at
    /// the cost of the write alone. Blocked threads are woken; an event loop calling this
    /// settles its own waiters. A failure puts the log in the failed state (the writer
    /// thread retries).
    pub fn write_now(&self) {
        // The writer thread holds it only while writing: it then writes what is pending
        // and announces it, so there is no need to queue behind it.
        let mut out = match self.shared.output.try_lock() {
            Ok(out) => out,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => return,
        };
        match out.write_pending(&self.shared, true) {
            Ok(true) => {
                drop(out);
                self.shared.wake_blocked();
                self.wake_writer_for_sync();
            }
            Ok(false) => {}
            // Under the output lock, so the writer thread cannot clear it in between.
            Err(e) => self.shared.set_error("writing the log", &e),
        }
    }

    /// Wakes an idle writer thread if a sync is wanted past what is synced. A caller's
    /// write takes the records out of the buffer before it marks them written, so a
    /// writer that looked in between saw nothing to write and nothing written, went to
    /// sleep for its interval, and a `durable` answer waited that long (seen: 10 ms on
    /// one push in five at one connection).
    fn wake_writer_for_sync(&self) {
        let mut p = self.shared.lock();
        if p.writer_idle && p.sync_wanted > self.shared.durable.load(Ordering::SeqCst) {
            p.writer_idle = false;
            self.shared.wake_writer.notify_one();
        }
    }

    /// Blocks until `c` is reached; an error if the log fails first. A record that
    /// must only be written is written on this thread (or by whoever holds the output
    /// lock, which wakes us), so the wait costs a `pwrite`, not a hand-off.
    pub fn wait(&self, c: Commit) -> Result<()> {
        if c.synced && !self.reached(c) {
            self.request_sync(c.lsn);
        }
        // Counted before every check, so `announce` cannot miss us.
        self.shared.blocked.fetch_add(1, Ordering::SeqCst);
        let out = loop {
            if !c.synced {
                self.write_now();
            }
            if self.reached(c) {
                break Ok(());
            }
            if let Err(e) = self.check_writable() {
                break Err(e);
            }
            let g = self
                .shared
                .progress_lock
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if self.reached(c) {
                break Ok(());
            }
            drop(
                self.shared
                    .progress_changed
                    .wait_timeout(g, Duration::from_millis(RETRY_MS))
                    .unwrap_or_else(|p| p.into_inner()),
            );
        };
        self.shared.blocked.fetch_sub(1, Ordering::SeqCst);
        out
    }

    /// Refuses new operations while the log cannot write.
    pub fn check_writable(&self) -> Result<()> {
        if !self.shared.failed.load(Ordering::Acquire) {
            return Ok(());
        }
        let msg = self
            .shared
            .error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .unwrap_or_else(|| "storage unavailable".into());
        Err(EngineError::unavailable(msg))
    }

    /// Starts a new segment at the current end of the log; returns its number. Call under
    /// the engine lock so that no operation falls between the rotation and what the
    /// caller reads from the engine.
    pub fn rotate(&self) -> u32 {
        let mut p = self.shared.lock();
        let n = p.next_segment;
        p.next_segment += 1;
        p.rotate = Some((p.buf.len(), n));
        self.shared.log_bytes.store(0, Ordering::Release);
        if p.writer_idle {
            p.writer_idle = false;
            self.shared.wake_writer.notify_one();
        }
        n
    }

    pub fn log_bytes(&self) -> u64 {
        self.shared.log_bytes.load(Ordering::Acquire)
    }

    pub fn inject_failure(&self, on: bool) {
        self.shared.inject_failure.store(on, Ordering::Release);
        if !on {
            self.request_sync(0);
        }
    }

    /// Writes and syncs everything appended, then stops the writer. Idempotent.
    pub fn close(&self) {
        {
            let mut p = self.shared.lock();
            p.closing = true;
            self.shared.wake_writer.notify_one();
        }
        let thread = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = thread {
            let _ = t.join();
        }
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        self.close();
    }
}

struct Segment {
    /// Shared with the writer thread while it syncs.
    file: Arc<dyn SegmentWriter>,
    len: u64,
}

impl Segment {
    fn create(store: &dyn LogStore, number: u32) -> io::Result<Segment> {
        Ok(Segment {
            file: store.create_segment(number, &header(SEGMENT_MAGIC, number))?,
            len: HEADER_LEN as u64,
        })
    }
}

/// The writing side: the open segment and the bytes taken from the buffer but not yet
/// written. Held by whoever writes: the writer thread or a `write_now` caller.
struct Output {
    store: Arc<dyn LogStore>,
    segment: Segment,
    /// Swapped with the shared buffer, so taking it copies nothing.
    batch: Vec<u8>,
    /// Bytes taken from the buffer but not yet written (kept across failures).
    carry: Vec<u8>,
    /// A rotation inside `carry`: (offset, new segment number).
    rotate: Option<(usize, u32)>,
    /// LSN covered by `carry` once written.
    carry_lsn: u64,
    written_lsn: u64,
    last_totals: Option<Totals>,
}

impl Output {
    /// Takes everything appended and writes it. Returns whether the written LSN moved.
    /// `inline` (a caller's thread, maybe an event loop) leaves a segment switch, which
    /// syncs and creates files for milliseconds, to the writer thread: nothing is
    /// written then, and the writer announces it when done.
    fn write_pending(&mut self, shared: &Shared, inline: bool) -> io::Result<bool> {
        if !self.take(shared, inline) {
            return Ok(false);
        }
        self.write_carry(shared)?;
        if self.written_lsn <= shared.written.load(Ordering::SeqCst) {
            return Ok(false);
        }
        shared.written.store(self.written_lsn, Ordering::SeqCst);
        Ok(true)
    }

    /// Moves everything appended into `carry`; false (nothing moved) when `inline` and
    /// a segment switch is due.
    fn take(&mut self, shared: &Shared, inline: bool) -> bool {
        let mut p = shared.lock();
        let switch =
            p.rotate.is_some() || self.rotate.is_some() || self.segment.len >= shared.segment_bytes;
        if inline && switch {
            if p.writer_idle {
                p.writer_idle = false;
                shared.wake_writer.notify_one();
            }
            return false;
        }
        std::mem::swap(&mut p.buf, &mut self.batch);
        if let Some((at, n)) = p.rotate.take() {
            self.rotate = Some((self.carry.len() + at, n));
        } else if self.rotate.is_none() && self.segment.len >= shared.segment_bytes {
            let n = p.next_segment;
            p.next_segment += 1;
            self.rotate = Some((self.carry.len(), n));
        }
        let totals = p.totals;
        self.carry_lsn = p.appended;
        drop(p);
        self.carry.append(&mut self.batch);
        // The counters as of the last operation taken, once per batch.
        if let Some(t) = totals.filter(|_| totals != self.last_totals) {
            let at = begin_frame(&mut self.carry);
            encode_totals(&mut self.carry, &t);
            finish_frame(&mut self.carry, at);
            self.last_totals = totals;
        }
        true
    }

    fn write_carry(&mut self, shared: &Shared) -> io::Result<()> {
        if let Some((at, number)) = self.rotate {
            self.write_prefix(shared, at)?;
            // The old segment is complete: sync it before anything goes to the next one.
            shared.failing()?;
            self.segment.file.sync()?;
            self.segment = Segment::create(&*self.store, number)?;
            self.rotate = None;
        }
        self.write_prefix(shared, self.carry.len())?;
        self.written_lsn = self.carry_lsn;
        Ok(())
    }

    /// Writes `carry[..n]` at the segment's end and drops it from `carry`. A failure
    /// leaves `carry` and the segment length as they were, so the retry writes the same
    /// bytes at the same offset (over any partial write).
    fn write_prefix(&mut self, shared: &Shared, n: usize) -> io::Result<()> {
        if n == 0 {
            return Ok(());
        }
        shared.failing()?;
        self.segment
            .file
            .write_at(&self.carry[..n], self.segment.len)?;
        self.segment.len += n as u64;
        shared.log_bytes.fetch_add(n as u64, Ordering::AcqRel);
        self.carry.drain(..n);
        if let Some((at, _)) = self.rotate.as_mut() {
            *at -= n;
        }
        Ok(())
    }
}

/// The writer thread: writes what no caller wrote, syncs by the policy, retries failures.
/// It wakes for records that must be synced, rotations, sync requests and closing, and
/// otherwise every `NAP`.
struct Writer {
    shared: Arc<Shared>,
    last_sync: Instant,
}

impl Writer {
    fn new(shared: Arc<Shared>) -> Self {
        Self {
            shared,
            last_sync: Instant::now(),
        }
    }

    fn run(mut self) {
        let shared = self.shared.clone();
        loop {
            let (closing, sync_wanted) = self.wait_for_work();
            let mut out = shared.output();
            let wrote = out.write_pending(&shared, false);
            // Synced without the output lock, so callers' writes go on meanwhile.
            let (file, written) = (out.segment.file.clone(), out.written_lsn);
            drop(out);
            match wrote {
                Ok(moved) => {
                    // Under `always` every waiter needs the sync that follows at once.
                    if moved && shared.policy != FsyncPolicy::Always {
                        shared.announce();
                    }
                }
                Err(e) => {
                    shared.set_error("writing the log", &e);
                    if closing {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(RETRY_MS));
                    continue;
                }
            }
            let durable = shared.durable.load(Ordering::SeqCst);
            let due = match shared.policy {
                FsyncPolicy::Always => true,
                FsyncPolicy::Interval(d) => self.last_sync.elapsed() >= d,
                FsyncPolicy::Never => false,
            };
            if written > durable && (due || closing || sync_wanted > durable) {
                if let Err(e) = self.sync(&*file, written) {
                    shared.set_error("syncing the log", &e);
                    if closing {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(RETRY_MS));
                    continue;
                }
            }
            // Under the output lock: bytes a caller failed to write meanwhile keep it.
            let out = shared.output();
            if out.carry.is_empty() {
                shared.clear_error();
            }
            drop(out);
            if closing {
                return;
            }
        }
    }

    /// Sleeps until there is something to write or sync. Returns (closing, LSN to sync).
    fn wait_for_work(&self) -> (bool, u64) {
        let shared = &self.shared;
        let mut p = shared.lock();
        loop {
            let durable = shared.durable.load(Ordering::SeqCst);
            let unsynced = shared.written.load(Ordering::SeqCst) > durable;
            let has_work = !p.buf.is_empty()
                || p.rotate.is_some()
                || p.closing
                || shared.failed.load(Ordering::Acquire)
                || (unsynced && p.sync_wanted > durable);
            if has_work {
                break;
            }
            let wait = match shared.policy {
                FsyncPolicy::Interval(d) if unsynced => {
                    let left = d.saturating_sub(self.last_sync.elapsed());
                    if left.is_zero() {
                        break;
                    }
                    left.min(NAP)
                }
                // A caller's write does not wake the writer: look again within the
                // interval, so its sync is never later than that.
                FsyncPolicy::Interval(d) => d.min(NAP),
                _ => NAP,
            };
            p.writer_idle = true;
            p = shared
                .wake_writer
                .wait_timeout(p, wait)
                .unwrap_or_else(|e| e.into_inner())
                .0;
            p.writer_idle = false;
        }
        (p.closing, p.sync_wanted)
    }

    fn sync(&mut self, file: &dyn SegmentWriter, written: u64) -> io::Result<()> {
        self.shared.failing()?;
        file.sync()?;
        self.last_sync = Instant::now();
        self.shared.durable.fetch_max(written, Ordering::SeqCst);
        self.shared.announce();
        Ok(())
    }
}
