//! `hopper._engine`: the PyO3 face of hopper-core. It converts types, maps engine errors
//! to Python exceptions in one place (`to_py`), keeps panics from crossing into Python
//! (`guard`), and releases the GIL around blocking waits. No queue logic lives here.

mod allocator;
mod cluster;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use hopper_cluster::{LeaseKeeper, OutboxRelay, Slot, SlotConfig, SNAPSHOT_CHUNK_BYTES};
use hopper_core::cluster_slots::MAX_SLOTS;
use hopper_core::{
    event_frame as encode_event_frame, push_str, write_event, AckRequest, ChildrenValues, Clock,
    Commit, Deferred, DlqConfig, DlqPatch, Encoding, Engine, EngineConfig, EngineError,
    EngineHandle, ErrorKind, Event, FailOutcome, FailRequest, FsyncPolicy, JobState, Location,
    ManualClock, OpenReport, Output, PushOptions, QueueLimitsInfo, SchedulerInfo, SchedulerSpec,
    SearchKind, Session, StallConfig, StallPatch, StorageConfig, SystemClock, DEFAULT_BACKOFF_MS,
    DEFAULT_MAX_ATTEMPTS,
};
use pyo3::create_exception;
use pyo3::exceptions::{PyConnectionError, PyException};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyTuple};

create_exception!(
    _engine,
    HopperError,
    PyException,
    "Base class of every hopper error."
);
create_exception!(
    _engine,
    InvalidInputError,
    HopperError,
    "The input was malformed or out of range."
);
create_exception!(
    _engine,
    NotFoundError,
    HopperError,
    "The job or queue does not exist."
);
create_exception!(
    _engine,
    InvalidStateError,
    HopperError,
    "The job is not in a state that allows this."
);
create_exception!(
    _engine,
    LockError,
    HopperError,
    "The lock token does not match the job's lease."
);
create_exception!(
    _engine,
    UnavailableError,
    HopperError,
    "Storage is unavailable; nothing was applied."
);

fn to_py(e: EngineError) -> PyErr {
    match e.kind {
        ErrorKind::InvalidInput => InvalidInputError::new_err(e.message),
        ErrorKind::NotFound => NotFoundError::new_err(e.message),
        ErrorKind::InvalidState => InvalidStateError::new_err(e.message),
        ErrorKind::LockMismatch => LockError::new_err(e.message),
        ErrorKind::Unavailable => UnavailableError::new_err(e.message),
    }
}

/// The load generator's errors: a bad configuration, a server it cannot reach, a run
/// that could not go on.
fn loadgen_to_py(e: hopper_loadgen::Error) -> PyErr {
    match e {
        hopper_loadgen::Error::Config(m) => InvalidInputError::new_err(m),
        hopper_loadgen::Error::Connect(m) => PyConnectionError::new_err(m),
        hopper_loadgen::Error::Run(m) => HopperError::new_err(m),
    }
}

/// Runs an engine call, turning engine errors and any panic into `HopperError`s.
fn guard<R>(f: impl FnOnce() -> Result<R, EngineError>) -> PyResult<R> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r.map_err(to_py),
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown".into());
            Err(HopperError::new_err(format!(
                "internal engine error (the call was not applied): {what}"
            )))
        }
    }
}

fn parse_state(state: &str) -> Result<JobState, EngineError> {
    JobState::parse(state).ok_or_else(|| {
        EngineError::invalid(format!(
            "Unknown state '{state}': expected waiting, waiting-children, delayed, active, completed or failed"
        ))
    })
}

/// Checks that bytes handed in as JSON really are JSON, so they can be stored raw.
fn json_text(bytes: &[u8], what: &str) -> Result<Box<str>, EngineError> {
    let raw: Box<serde_json::value::RawValue> = serde_json::from_slice(bytes)
        .map_err(|_| EngineError::invalid(format!("{what} must be valid JSON")))?;
    Ok(raw.get().into())
}

/// A pulled job as a tuple: (id, token, data JSON, name, priority, attempts,
/// max_attempts, created_at).
type PulledTuple = (String, String, Py<PyBytes>, String, i32, u16, u16, u64);

/// (key, text) pairs of a flow parent's children: results (JSON), failure errors,
/// ignored errors.
type ChildrenTuple = (
    Vec<(String, String)>,
    Vec<(String, String)>,
    Vec<(String, String)>,
);

fn children_tuple(v: ChildrenValues) -> ChildrenTuple {
    (v.values, v.failed, v.ignored)
}

/// A queue's dead-letter settings: (auto_retry, auto_retry_interval_ms,
/// max_auto_retries, max_age_ms or None, max_entries).
type DlqTuple = (bool, u64, u64, Option<u64>, u64);

fn dlq_tuple(c: DlqConfig) -> DlqTuple {
    (
        c.auto_retry,
        c.auto_retry_interval_ms,
        c.max_auto_retries,
        c.max_age_ms,
        c.max_entries,
    )
}

/// A queue's stall settings: (enabled, stall_interval_ms, max_stalls, grace_period_ms).
type StallTuple = (bool, u64, u64, u64);

fn stall_tuple(c: StallConfig) -> StallTuple {
    (
        c.enabled,
        c.stall_interval_ms,
        c.max_stalls,
        c.grace_period_ms,
    )
}

/// The engine, shared with its timer thread (and, with a data dir, its log writer).
#[pyclass(module = "hopper._engine", frozen)]
struct Core {
    handle: EngineHandle,
    manual_clock: Option<ManualClock>,
    /// Calls that changed state block (GIL released) until their record is written (or
    /// synced) when set; when clear they raise these marks for an event loop to await
    /// (`commit_target`). The marks only grow: a request that awaits them after its calls
    /// is covered even if another request's await ran in between.
    block_on_commit: AtomicBool,
    commit_written: AtomicU64,
    commit_synced: AtomicU64,
    report: Option<OpenReport>,
    slot: Option<Served>,
}

/// The cluster slot an engine serves, the thread renewing its lease, and with several
/// slots the relay of its messages to and from the other slots.
struct Served {
    slot: Slot,
    _keeper: LeaseKeeper,
    relay: Option<OutboxRelay>,
}

impl Served {
    /// Starts the relay (with `several` slots) once `engine` opened on `slot`; if it
    /// cannot start, the engine is closed, which gives the slot up.
    fn start(
        slot: Slot,
        keeper: LeaseKeeper,
        several: bool,
        engine: &EngineHandle,
    ) -> PyResult<Self> {
        let relay = several
            .then(|| OutboxRelay::start(&slot, engine.clone()))
            .transpose()
            .map_err(|e| {
                engine.close();
                UnavailableError::new_err(format!("cannot start the outbox relay: {e}"))
            })?;
        Ok(Served {
            slot,
            _keeper: keeper,
            relay,
        })
    }
}

impl Core {
    fn with<R>(&self, f: impl FnOnce(&mut Engine) -> Result<R, EngineError>) -> PyResult<R> {
        guard(|| self.handle.with(f))
    }

    /// A state-changing call: refused while storage fails, and answered only once its
    /// record is handed to the OS, or synced when the fsync policy or a durable push
    /// requires it.
    fn mutate<R>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut Engine) -> Result<R, EngineError>,
    ) -> PyResult<R> {
        let (out, commit) = guard(|| self.handle.mutate(f))?;
        self.answer_after(py, commit)?;
        Ok(out)
    }

    /// What an answer to a state change waits for: the wait itself when calls block,
    /// else the marks `commit_target` reports.
    fn answer_after(&self, py: Python<'_>, commit: Option<Commit>) -> PyResult<()> {
        if let Some(c) = commit {
            if self.block_on_commit.load(Ordering::Acquire) {
                let handle = &self.handle;
                py.allow_threads(|| guard(|| handle.wait(c)))?;
            } else if c.synced {
                self.commit_synced.fetch_max(c.lsn, Ordering::AcqRel);
            } else {
                self.commit_written.fetch_max(c.lsn, Ordering::AcqRel);
            }
        }
        Ok(())
    }

    /// A lease: refused while storage fails, never waits (a lease lost in a crash only
    /// means the job is delivered again).
    fn lease<R>(&self, f: impl FnOnce(&mut Engine) -> Result<R, EngineError>) -> PyResult<R> {
        guard(|| self.handle.mutate(f)).map(|(out, _)| out)
    }

    /// Stops the relay, then the engine: the relay never works against a closing engine,
    /// and what it had not delivered the slot's next owner delivers.
    fn close_engine(&self) {
        if let Some(relay) = self.slot.as_ref().and_then(|s| s.relay.as_ref()) {
            relay.stop();
        }
        self.handle.close();
    }
}

fn open_report<'py>(py: Python<'py>, r: &OpenReport) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("millis", r.millis)?;
    d.set_item("jobs", r.jobs)?;
    d.set_item("snapshot", r.recovered.snapshot)?;
    d.set_item("segments", r.recovered.segments)?;
    d.set_item("frames", r.recovered.frames)?;
    d.set_item("records", r.recovered.stats.records)?;
    d.set_item("orphans", r.recovered.stats.orphans)?;
    d.set_item("repaired_bytes", r.recovered.repaired_bytes)?;
    d.set_item("warnings", r.recovered.warnings.clone())?;
    Ok(d)
}

/// A job scheduler as a dict: its fields by their Rust names (`repeat_every_ms` for the
/// interval), `data` and `job_options` as JSON text, `next_run` None for never.
fn scheduler_dict<'py>(py: Python<'py>, s: &SchedulerInfo) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("name", &*s.name)?;
    d.set_item("queue", &*s.queue)?;
    d.set_item("job_name", &*s.job_name)?;
    d.set_item("data", &*s.data)?;
    d.set_item("schedule", s.schedule.as_deref())?;
    d.set_item("repeat_every_ms", s.repeat_every)?;
    d.set_item("timezone", s.timezone.as_deref())?;
    d.set_item("priority", s.priority)?;
    d.set_item("max_limit", s.max_limit)?;
    d.set_item("unique_key", s.unique_key.as_deref())?;
    d.set_item("skip_missed_on_restart", s.skip_missed_on_restart)?;
    d.set_item("skip_if_no_worker", s.skip_if_no_worker)?;
    d.set_item("prevent_overlap", s.prevent_overlap)?;
    d.set_item("job_options", s.job_options.as_deref())?;
    d.set_item("next_run", (s.next_run != u64::MAX).then_some(s.next_run))?;
    d.set_item("executions", s.executions)?;
    Ok(d)
}

impl Drop for Core {
    /// The timer thread holds the engine, not this object: stop it with the last reference.
    fn drop(&mut self) {
        self.close_engine();
    }
}

/// The engine's options as Python passes them (None: the engine's default), built into
/// the engine's configuration and checked by the engine's own rules when constructed.
/// One signature for both uses: `Core(options)` opens an engine with them, and the
/// server's main process builds one only to check its configuration before it starts a
/// worker.
#[pyclass(frozen)]
struct EngineOptions {
    config: EngineConfig,
    /// In cluster mode its location is replaced by the slot once `Core` owns it.
    storage: Option<StorageConfig>,
    slot: Option<SlotConfig>,
}

#[pymethods]
impl EngineOptions {
    #[new]
    #[pyo3(signature = (*, max_payload_bytes=None, stall_interval_ms=None, max_stalls=None,
        retention_count=None, retention_age_ms=None, retention_bytes=None,
        data_dir=None, fsync="interval", fsync_interval_ms=10, snapshot_bytes=None,
        segment_bytes=None, repair=false, max_logs_per_job=None, postgres_url=None,
        namespace="default", broker_id="", slot_lease_ms=5000, advertise_http="",
        advertise_tcp="", slot=0, slots=1))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        max_payload_bytes: Option<usize>,
        stall_interval_ms: Option<u64>,
        max_stalls: Option<u16>,
        retention_count: Option<usize>,
        retention_age_ms: Option<u64>,
        retention_bytes: Option<usize>,
        data_dir: Option<std::path::PathBuf>,
        fsync: &str,
        fsync_interval_ms: u64,
        snapshot_bytes: Option<u64>,
        segment_bytes: Option<u64>,
        repair: bool,
        max_logs_per_job: Option<usize>,
        postgres_url: Option<String>,
        namespace: &str,
        broker_id: &str,
        slot_lease_ms: u64,
        advertise_http: &str,
        advertise_tcp: &str,
        slot: u32,
        slots: u32,
    ) -> PyResult<Self> {
        if !(1..=MAX_SLOTS).contains(&slots) || slot >= slots {
            return Err(InvalidInputError::new_err(format!(
                "slots must be between 1 and {MAX_SLOTS}, and slot below slots"
            )));
        }
        let d = EngineConfig::default();
        let config = EngineConfig {
            max_payload_bytes: max_payload_bytes.unwrap_or(d.max_payload_bytes),
            stall_interval_ms: stall_interval_ms.unwrap_or(d.stall_interval_ms),
            max_stalls: max_stalls.unwrap_or(d.max_stalls),
            retention_count: retention_count.unwrap_or(d.retention_count),
            retention_age_ms: retention_age_ms.unwrap_or(d.retention_age_ms),
            retention_bytes: retention_bytes.unwrap_or(d.retention_bytes),
            max_logs_per_job: max_logs_per_job.unwrap_or(d.max_logs_per_job),
            cluster_slot: (slots > 1).then_some((slot, slots)),
            ..d
        };
        config.validate().map_err(to_py)?;
        let policy =
            FsyncPolicy::parse(fsync, fsync_interval_ms).map_err(InvalidInputError::new_err)?;
        let slot = match postgres_url {
            None => None,
            Some(_) if policy == FsyncPolicy::Never => {
                return Err(InvalidInputError::new_err(
                    "fsync never is refused with a PostgreSQL log: nothing would be committed until a segment switch",
                ))
            }
            Some(_) if slot_lease_ms < 3 => {
                return Err(InvalidInputError::new_err(
                    "slot_lease_ms must be at least 3",
                ))
            }
            Some(url) => Some(SlotConfig {
                url,
                namespace: namespace.to_string(),
                slot: slot as i32,
                slots,
                broker_id: match broker_id {
                    "" => format!("pid {}", std::process::id()),
                    id => id.to_string(),
                },
                lease_ms: slot_lease_ms,
                advertise_http: advertise_http.to_string(),
                advertise_tcp: advertise_tcp.to_string(),
                snapshot_chunk_bytes: SNAPSHOT_CHUNK_BYTES,
                clock: None,
            }),
        };
        // In cluster mode no directory is used: `Core` sets the location to the slot.
        let data_dir = data_dir.or_else(|| slot.as_ref().map(|_| Default::default()));
        let storage = match data_dir {
            None => None,
            Some(dir) => {
                let mut s = StorageConfig::new(dir, policy);
                s.snapshot_min_bytes = snapshot_bytes.unwrap_or(s.snapshot_min_bytes);
                s.segment_bytes = segment_bytes.unwrap_or(s.segment_bytes);
                s.repair = repair;
                s.validate().map_err(to_py)?;
                Some(s)
            }
        };
        Ok(Self {
            config,
            storage,
            slot,
        })
    }
}

#[pymethods]
impl Core {
    #[new]
    #[pyo3(signature = (options, *, clock_ms=None))]
    fn new(py: Python<'_>, options: &EngineOptions, clock_ms: Option<u64>) -> PyResult<Self> {
        let (config, mut storage) = (options.config.clone(), options.storage.clone());
        let mut owned = None;
        if let (Some(cfg), Some(s)) = (&options.slot, storage.as_mut()) {
            let slot = cluster::own_slot(py, cfg)?;
            let keeper = slot.keep_lease().map_err(|e| {
                UnavailableError::new_err(format!("cannot start the lease thread: {e}"))
            })?;
            s.location = Location::Store(Arc::new(slot.clone()));
            owned = Some((slot, keeper, cfg.slots > 1));
        }
        let manual_clock = clock_ms.map(ManualClock::new);
        let clock: Arc<dyn Clock> = match &manual_clock {
            Some(c) => Arc::new(c.clone()),
            None => Arc::new(SystemClock),
        };
        // Recovery reads the whole data directory: let other Python threads run meanwhile.
        let (handle, report) = py
            .allow_threads(|| {
                catch_unwind(AssertUnwindSafe(|| {
                    EngineHandle::open(config, clock, storage)
                }))
                .unwrap_or_else(|_| Err("internal engine error while opening".into()))
            })
            .map_err(|e| UnavailableError::new_err(format!("cannot start the engine: {e}")))?;
        let served = owned
            .map(|(slot, keeper, several)| Served::start(slot, keeper, several, &handle))
            .transpose()?;
        Ok(Self {
            handle,
            manual_clock,
            block_on_commit: AtomicBool::new(true),
            commit_written: AtomicU64::new(0),
            commit_synced: AtomicU64::new(0),
            report,
            slot: served,
        })
    }

    /// What start-up recovered (None for an in-memory engine).
    fn recovery_report<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        self.report.as_ref().map(|r| open_report(py, r)).transpose()
    }

    /// True: calls that changed state block until their record is written (or synced).
    /// False: they leave it to `commit_target`, and an event loop awaits it through the
    /// notification fd, which from then on also fires when the log moves.
    fn set_block_on_commit(&self, on: bool) {
        self.block_on_commit.store(on, Ordering::Release);
        if !on {
            self.handle.want_progress();
        }
    }

    /// (LSN to see written, LSN to see synced) covering every call so far, or None when
    /// both are reached already (the common case for a request that changed nothing).
    fn commit_target(&self) -> Option<(u64, u64)> {
        let written = self.commit_written.load(Ordering::Acquire);
        let synced = self.commit_synced.load(Ordering::Acquire);
        let pending = |lsn, synced| !self.handle.reached(Commit { lsn, synced });
        (pending(written, false) || pending(synced, true)).then_some((written, synced))
    }

    /// (written LSN, synced LSN); 2**64-1 for an in-memory engine.
    fn log_progress(&self) -> (u64, u64) {
        (self.handle.written_lsn(), self.handle.durable_lsn())
    }

    /// Writes everything appended so far on this thread, one `pwrite`: an event loop
    /// calls it once per batch of requests that wait for their records. The GIL stays
    /// held: a page-cache write takes microseconds, less than handing the GIL over.
    fn write_log(&self) -> PyResult<()> {
        guard(|| {
            self.handle.write_now();
            Ok(())
        })
    }

    /// Asks for a sync up to `lsn` now.
    fn request_sync(&self, lsn: u64) {
        self.handle.request_sync(lsn);
    }

    /// Blocks (GIL released) until `lsn` is synced.
    fn wait_durable(&self, py: Python<'_>, lsn: u64) -> PyResult<()> {
        let handle = &self.handle;
        py.allow_threads(|| guard(|| handle.wait(Commit { lsn, synced: true })))
    }

    /// Why writes are refused now (disk full, I/O error), or None.
    fn storage_error(&self) -> Option<String> {
        self.handle.storage_error()
    }

    /// Why this engine can no longer serve its cluster slot (fenced, given up, its
    /// database session or its log gone), if so; None outside cluster mode and while
    /// it serves (a lease being renewed included). A server exits on it and starts over
    /// as a standby.
    fn slot_lost(&self, py: Python<'_>) -> Option<String> {
        let slot = &self.slot.as_ref()?.slot;
        py.allow_threads(|| slot.lost())
            .or_else(|| self.handle.log_failed())
    }

    /// The broker this engine's slot should move to (it ranks first for the slot among
    /// the settled live brokers), if the last lease renewal found one.
    fn slot_handoff(&self) -> Option<String> {
        self.slot.as_ref()?.slot.handoff_to()
    }

    /// Log and snapshot figures of a persistent engine, or None.
    fn storage_info<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        let Some((appended, written, durable, log_bytes, snapshots, policy)) =
            self.handle.storage_info()
        else {
            return Ok(None);
        };
        let d = PyDict::new(py);
        d.set_item("appended_lsn", appended)?;
        d.set_item("written_lsn", written)?;
        d.set_item("durable_lsn", durable)?;
        d.set_item("log_bytes", log_bytes)?;
        d.set_item("snapshots", snapshots)?;
        d.set_item("fsync", policy)?;
        d.set_item("error", self.handle.storage_error())?;
        Ok(Some(d))
    }

    /// Writes a snapshot now (compaction). Returns (number, jobs, bytes), or None in memory.
    fn snapshot(&self, py: Python<'_>) -> PyResult<Option<(u32, u64, u64)>> {
        let handle = &self.handle;
        let info = py.allow_threads(|| {
            guard(|| {
                handle
                    .snapshot_now()
                    .map_err(|e| EngineError::unavailable(format!("snapshot failed: {e}")))
            })
        })?;
        Ok(info.map(|i| (i.number, i.jobs, i.bytes)))
    }

    /// The canonical dump of everything a restart must preserve (tests compare it).
    fn dump_state(&self) -> PyResult<String> {
        self.with(|e| Ok(e.dump_state()))
    }

    /// Makes every log write fail as a full disk would, or stops doing so (tests).
    fn _inject_io_error(&self, on: bool) -> PyResult<()> {
        guard(|| self.handle.inject_io_failure(on))
    }

    /// Pushes one job from a push body (JSON bytes). Returns (id, duplicate, durable).
    fn push_body(
        &self,
        py: Python<'_>,
        queue: &str,
        body: &[u8],
    ) -> PyResult<(String, bool, bool)> {
        self.mutate(py, |e| {
            let opts = PushOptions::from_json(body, e.config().max_payload_bytes)?;
            let out = e.push(queue, opts)?;
            Ok((out.id, out.duplicate, out.durable))
        })
    }

    /// `push_body` for a server's reply: the id as a JSON string (escaped: a caller's
    /// `jobId` may hold any character).
    fn push_body_json(&self, py: Python<'_>, queue: &str, body: &[u8]) -> PyResult<Py<PyBytes>> {
        let (id, _duplicate, _durable) = self.push_body(py, queue, body)?;
        let mut out = String::with_capacity(id.len() + 2);
        push_str(&mut out, &id);
        Ok(PyBytes::new(py, out.as_bytes()).unbind())
    }

    /// Pushes a JSON array of push bodies atomically. Returns the ids in order.
    fn push_many_body(&self, py: Python<'_>, queue: &str, body: &[u8]) -> PyResult<Vec<String>> {
        self.mutate(py, |e| {
            let batch = PushOptions::many_from_json(body, e.config().max_payload_bytes)?;
            Ok(e.push_many(queue, batch)?
                .into_iter()
                .map(|o| o.id)
                .collect())
        })
    }

    /// `push_many`, returning the ids as a JSON array (bytes) for the servers.
    fn push_many_body_json(
        &self,
        py: Python<'_>,
        queue: &str,
        body: &[u8],
    ) -> PyResult<Py<PyBytes>> {
        let ids = self.push_many_body(py, queue, body)?;
        let mut out = String::with_capacity(2 + ids.len() * 39);
        out.push('[');
        for (i, id) in ids.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            push_str(&mut out, id);
        }
        out.push(']');
        Ok(PyBytes::new(py, out.as_bytes()).unbind())
    }

    /// Leases the next job, waiting up to `timeout_ms` (GIL released while waiting).
    #[pyo3(signature = (queue, owner=0, timeout_ms=0))]
    fn pull(
        &self,
        py: Python<'_>,
        queue: &str,
        owner: u64,
        timeout_ms: u64,
    ) -> PyResult<Option<PulledTuple>> {
        let pulled = if timeout_ms == 0 {
            self.lease(|e| e.pull_job(queue, owner))?
        } else {
            let handle = self.handle.clone();
            py.allow_threads(|| {
                guard(|| {
                    handle.check_writable()?;
                    handle.wait_for(timeout_ms, |e| e.pull_job(queue, owner))
                })
            })?
        };
        Ok(pulled.map(|p| {
            (
                p.id,
                p.token,
                PyBytes::new(py, p.data.as_bytes()).unbind(),
                p.name,
                p.priority,
                p.attempts,
                p.max_attempts,
                p.created_at,
            )
        }))
    }

    /// Leases the next job and returns (job JSON, token), for the servers.
    #[pyo3(signature = (queue, owner=0))]
    fn pull_json(
        &self,
        py: Python<'_>,
        queue: &str,
        owner: u64,
    ) -> PyResult<Option<(Py<PyBytes>, String)>> {
        let got = self.lease(|e| e.pull_rendered(queue, owner))?;
        Ok(got.map(|(json, token)| (PyBytes::new(py, json.as_bytes()).unbind(), token)))
    }

    #[pyo3(signature = (id, token=None, result=None))]
    fn ack(
        &self,
        py: Python<'_>,
        id: &str,
        token: Option<&str>,
        result: Option<&[u8]>,
    ) -> PyResult<()> {
        self.mutate(py, |e| {
            let result = result.map(|r| json_text(r, "result")).transpose()?;
            e.ack(id, token, result)
        })
    }

    /// Fails the current attempt. Returns the retry delay in ms, or None if the job is dead.
    #[pyo3(signature = (id, token=None, error=None))]
    fn fail(
        &self,
        py: Python<'_>,
        id: &str,
        token: Option<&str>,
        error: Option<&str>,
    ) -> PyResult<Option<u64>> {
        self.mutate(py, |e| {
            Ok(match e.fail(id, token, error.map(Into::into))? {
                FailOutcome::Retrying { delay } => Some(delay),
                FailOutcome::Dead => None,
            })
        })
    }

    /// Acks from a job-server body `{result?, token?}` (raw bytes; empty = `{}`).
    fn ack_body(&self, py: Python<'_>, id: &str, body: &[u8]) -> PyResult<()> {
        self.mutate(py, |e| {
            let req = AckRequest::from_json(body, e.config().max_payload_bytes)?;
            e.ack(id, req.token.as_deref(), req.result)
        })
    }

    /// Fails from a job-server body `{error?, token?}`. Returns the retry delay, or None.
    fn fail_body(&self, py: Python<'_>, id: &str, body: &[u8]) -> PyResult<Option<u64>> {
        self.mutate(py, |e| {
            let req = FailRequest::from_json(body, e.config().max_payload_bytes)?;
            Ok(
                match e.fail(id, req.token.as_deref(), req.error.map(Into::into))? {
                    FailOutcome::Retrying { delay } => Some(delay),
                    FailOutcome::Dead => None,
                },
            )
        })
    }

    #[pyo3(signature = (id, token=None, duration_ms=None))]
    fn extend_lease(
        &self,
        py: Python<'_>,
        id: &str,
        token: Option<&str>,
        duration_ms: Option<u64>,
    ) -> PyResult<u64> {
        self.mutate(py, |e| e.extend_lease(id, token, duration_ms))
    }

    #[pyo3(signature = (id, progress, token=None))]
    fn progress(
        &self,
        py: Python<'_>,
        id: &str,
        progress: u8,
        token: Option<&str>,
    ) -> PyResult<()> {
        self.mutate(py, |e| e.progress(id, token, progress))
    }

    fn release_owner(&self, owner: u64) -> PyResult<usize> {
        self.with(|e| Ok(e.release_owner(owner)))
    }

    /// The job's JSON (the job server's shape, with `state`), or None.
    fn get_json(&self, py: Python<'_>, id: &str) -> PyResult<Option<Py<PyBytes>>> {
        self.with(|e| {
            Ok(e.render_by_id(id)
                .map(|s| PyBytes::new(py, s.as_bytes()).unbind()))
        })
    }

    fn cancel(&self, py: Python<'_>, id: &str) -> PyResult<()> {
        self.mutate(py, |e| e.cancel(id))
    }

    fn cancel_pending(&self, py: Python<'_>, id: &str) -> PyResult<()> {
        self.mutate(py, |e| e.cancel_pending(id))
    }

    fn remove(&self, py: Python<'_>, id: &str) -> PyResult<()> {
        self.mutate(py, |e| e.remove(id))
    }

    fn retry(&self, py: Python<'_>, id: &str) -> PyResult<()> {
        self.mutate(py, |e| e.retry(id))
    }

    fn promote(&self, py: Python<'_>, id: &str) -> PyResult<()> {
        self.mutate(py, |e| e.promote(id))
    }

    #[pyo3(signature = (id, data=None, priority=None))]
    fn update(
        &self,
        py: Python<'_>,
        id: &str,
        data: Option<&[u8]>,
        priority: Option<i64>,
    ) -> PyResult<()> {
        self.mutate(py, |e| {
            let data = data.map(|d| json_text(d, "data")).transpose()?;
            let priority = priority
                .map(|p| {
                    i32::try_from(p).map_err(|_| EngineError::invalid("priority is out of range"))
                })
                .transpose()?;
            e.update(id, data, priority)
        })
    }

    /// An active job runs again after `delay_ms`, its attempt not counted; the lease ends.
    #[pyo3(signature = (id, delay_ms, token=None))]
    fn move_to_delayed(
        &self,
        py: Python<'_>,
        id: &str,
        delay_ms: u64,
        token: Option<&str>,
    ) -> PyResult<()> {
        self.mutate(py, |e| e.move_to_delayed(id, token, delay_ms))
    }

    /// Runs a waiting, delayed or active job `delay_ms` from now.
    #[pyo3(signature = (id, delay_ms, token=None))]
    fn change_delay(
        &self,
        py: Python<'_>,
        id: &str,
        delay_ms: u64,
        token: Option<&str>,
    ) -> PyResult<()> {
        self.mutate(py, |e| e.change_delay(id, token, delay_ms))
    }

    /// Fails a job for good, whatever attempts it has left.
    #[pyo3(signature = (id, token=None))]
    fn discard_job(&self, py: Python<'_>, id: &str, token: Option<&str>) -> PyResult<()> {
        self.mutate(py, |e| e.discard_job(id, token))
    }

    /// Replaces the data of a job in any state.
    fn update_data(&self, py: Python<'_>, id: &str, data: &[u8]) -> PyResult<()> {
        self.mutate(py, |e| {
            let data = json_text(data, "data")?;
            e.update_data(id, data)
        })
    }

    /// Renews a lease; a given token must match, none is needed. Returns the deadline.
    #[pyo3(signature = (id, token=None, duration_ms=None))]
    fn extend_lock(
        &self,
        py: Python<'_>,
        id: &str,
        token: Option<&str>,
        duration_ms: Option<u64>,
    ) -> PyResult<u64> {
        self.mutate(py, |e| e.extend_lock(id, token, duration_ms))
    }

    #[pyo3(signature = (id, message, level=None))]
    fn add_log(
        &self,
        py: Python<'_>,
        id: &str,
        message: &str,
        level: Option<&str>,
    ) -> PyResult<()> {
        self.mutate(py, |e| e.add_log(id, message, level))
    }

    /// ([(message, level, timestamp ms, line number)], lines in all); `start`/`end`
    /// inclusive, as bunqueue's GetLogs slices them.
    #[pyo3(signature = (id, start=None, end=None))]
    #[allow(clippy::type_complexity)]
    fn logs(
        &self,
        id: &str,
        start: Option<i64>,
        end: Option<i64>,
    ) -> PyResult<(Vec<(String, &'static str, u64, u64)>, usize)> {
        self.with(|e| {
            let page = e.logs(id, start, end)?;
            let entries = page
                .entries
                .into_iter()
                .map(|l| (l.message.into(), l.level.as_str(), l.timestamp, l.seq))
                .collect();
            Ok((entries, page.total))
        })
    }

    /// Clears a job's log but for its newest `keep` lines.
    #[pyo3(signature = (id, keep=None))]
    fn clear_logs(&self, py: Python<'_>, id: &str, keep: Option<u64>) -> PyResult<()> {
        self.mutate(py, |e| e.clear_logs(id, keep))
    }

    #[pyo3(signature = (queue, max, duration_ms, ttl_ms=None))]
    fn set_rate_limit(
        &self,
        py: Python<'_>,
        queue: &str,
        max: u64,
        duration_ms: u64,
        ttl_ms: Option<u64>,
    ) -> PyResult<()> {
        self.mutate(py, |e| e.set_rate_limit(queue, max, duration_ms, ttl_ms))
    }

    fn clear_rate_limit(&self, py: Python<'_>, queue: &str) -> PyResult<()> {
        self.mutate(py, |e| e.clear_rate_limit(queue))
    }

    fn set_concurrency(&self, py: Python<'_>, queue: &str, limit: u64) -> PyResult<()> {
        self.mutate(py, |e| e.set_concurrency(queue, limit))
    }

    fn clear_concurrency(&self, py: Python<'_>, queue: &str) -> PyResult<()> {
        self.mutate(py, |e| e.clear_concurrency(queue))
    }

    /// ((max, duration ms, expires at ms or None) or None, rate limit ttl, concurrency
    /// limit or None, concurrency full).
    #[pyo3(signature = (queue, max_jobs=None))]
    #[allow(clippy::type_complexity)]
    fn queue_limits(
        &self,
        queue: &str,
        max_jobs: Option<u64>,
    ) -> PyResult<(Option<(u64, u64, Option<u64>)>, i64, Option<u64>, bool)> {
        let info: QueueLimitsInfo = self.with(|e| Ok(e.queue_limits(queue, max_jobs)))?;
        Ok((
            info.rate_limit
                .map(|r| (r.max, r.duration_ms, r.expires_at)),
            info.rate_limit_ttl,
            info.concurrency_limit,
            info.maxed,
        ))
    }

    /// The workers registry, oldest registration first, one dict each.
    fn workers<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyDict>>> {
        let workers = self.with(|e| {
            Ok(e.workers
                .list()
                .into_iter()
                .map(|w| {
                    (
                        w.id.clone(),
                        w.name.clone(),
                        w.queues.clone(),
                        w.concurrency,
                        w.hostname.clone(),
                        w.pid,
                        [
                            w.registered_at,
                            w.last_seen,
                            w.active_jobs,
                            w.processed_jobs,
                            w.failed_jobs,
                        ],
                    )
                })
                .collect::<Vec<_>>())
        })?;
        workers
            .into_iter()
            .map(|(id, name, queues, concurrency, hostname, pid, numbers)| {
                let d = PyDict::new(py);
                d.set_item("id", id)?;
                d.set_item("name", name)?;
                d.set_item("queues", queues)?;
                d.set_item("concurrency", concurrency)?;
                d.set_item("hostname", hostname)?;
                d.set_item("pid", pid)?;
                let keys = [
                    "registered_at",
                    "last_seen",
                    "active_jobs",
                    "processed_jobs",
                    "failed_jobs",
                ];
                for (k, v) in keys.into_iter().zip(numbers) {
                    d.set_item(k, v)?;
                }
                Ok(d)
            })
            .collect()
    }

    /// Every job scheduler, first registration first, one dict each.
    fn schedulers<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyDict>>> {
        let all = self.with(|e| Ok(e.schedulers()))?;
        all.iter().map(|s| scheduler_dict(py, s)).collect()
    }

    /// The job scheduler `name`, or None.
    fn scheduler<'py>(&self, py: Python<'py>, name: &str) -> PyResult<Option<Bound<'py, PyDict>>> {
        let got = self.with(|e| Ok(e.scheduler(name)))?;
        got.as_ref().map(|s| scheduler_dict(py, s)).transpose()
    }

    /// Creates or replaces the job scheduler `name` (bunqueue's `Cron`); `data` and
    /// `job_options` are JSON (the options in the push body's spelling). Returns the
    /// scheduler as stored (before an `immediately` fire).
    #[pyo3(signature = (name, queue, data, *, job_name=None, schedule=None,
        repeat_every_ms=None, timezone=None, priority=0, max_limit=None, unique_key=None,
        immediately=false, skip_missed_on_restart=None, skip_if_no_worker=false,
        prevent_overlap=None, job_options=None))]
    #[allow(clippy::too_many_arguments)]
    fn upsert_scheduler<'py>(
        &self,
        py: Python<'py>,
        name: String,
        queue: String,
        data: &[u8],
        job_name: Option<String>,
        schedule: Option<String>,
        repeat_every_ms: Option<u64>,
        timezone: Option<String>,
        priority: i32,
        max_limit: Option<u64>,
        unique_key: Option<String>,
        immediately: bool,
        skip_missed_on_restart: Option<bool>,
        skip_if_no_worker: bool,
        prevent_overlap: Option<bool>,
        job_options: Option<&[u8]>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let info = self.mutate(py, |e| {
            let spec = SchedulerSpec {
                name,
                queue,
                job_name,
                data: json_text(data, "data")?,
                schedule,
                repeat_every: repeat_every_ms,
                timezone,
                priority,
                max_limit,
                unique_key,
                skip_missed_on_restart,
                immediately,
                skip_if_no_worker,
                prevent_overlap,
                job_options: job_options
                    .map(|o| json_text(o, "job_options"))
                    .transpose()?,
            };
            e.upsert_scheduler(spec)
        })?;
        scheduler_dict(py, &info)
    }

    /// Removes the job scheduler `name`; false if there is none. Its jobs stay.
    fn remove_scheduler(&self, py: Python<'_>, name: &str) -> PyResult<bool> {
        self.mutate(py, |e| e.remove_scheduler(name))
    }

    /// Pushes a flow atomically: (queue, push body JSON) per job, each with its `jobId`
    /// and its links (`dependsOn`/`childrenIds` on a parent, `parentId` and a failure
    /// policy on a child). Returns the ids in the order given.
    fn push_flow(&self, py: Python<'_>, jobs: Vec<(String, Vec<u8>)>) -> PyResult<Vec<String>> {
        self.mutate(py, |e| {
            let max = e.config().max_payload_bytes;
            let jobs = jobs
                .into_iter()
                .map(|(queue, body)| Ok((queue, PushOptions::from_json(&body, max)?)))
                .collect::<Result<Vec<_>, EngineError>>()?;
            Ok(e.push_flow(jobs)?.into_iter().map(|o| o.id).collect())
        })
    }

    /// What flow parent `id`'s children left: (results, failed, ignored), each
    /// [(`queue:id`, text)], results as JSON text.
    fn children_values(&self, id: &str) -> PyResult<ChildrenTuple> {
        self.with(|e| e.children_values(id).map(children_tuple))
    }

    /// An active job with pending dependencies goes back to waiting-children and loses
    /// its lease; false (still active) if none is pending.
    #[pyo3(signature = (id, token=None))]
    fn move_to_waiting_children(
        &self,
        py: Python<'_>,
        id: &str,
        token: Option<&str>,
    ) -> PyResult<bool> {
        self.mutate(py, |e| e.move_to_waiting_children(id, token))
    }

    /// Detaches flow child `id` from its parent; false if there was nothing to detach.
    fn remove_child_dependency(&self, py: Python<'_>, id: &str) -> PyResult<bool> {
        self.mutate(py, |e| e.remove_child_dependency(id))
    }

    /// Merges the fields given into `queue`'s dead-letter settings (`clear_max_age`:
    /// no age bound) and returns them.
    #[pyo3(signature = (queue, *, auto_retry=None, auto_retry_interval_ms=None,
        max_auto_retries=None, max_age_ms=None, clear_max_age=false, max_entries=None))]
    #[allow(clippy::too_many_arguments)]
    fn set_dlq_config(
        &self,
        py: Python<'_>,
        queue: &str,
        auto_retry: Option<bool>,
        auto_retry_interval_ms: Option<u64>,
        max_auto_retries: Option<u64>,
        max_age_ms: Option<u64>,
        clear_max_age: bool,
        max_entries: Option<u64>,
    ) -> PyResult<DlqTuple> {
        let patch = DlqPatch {
            auto_retry,
            auto_retry_interval_ms,
            max_auto_retries,
            max_age_ms: if clear_max_age {
                Some(None)
            } else {
                max_age_ms.map(Some)
            },
            max_entries,
        };
        self.mutate(py, |e| e.set_dlq_config(queue, &patch).map(dlq_tuple))
    }

    fn dlq_config(&self, queue: &str) -> PyResult<DlqTuple> {
        self.with(|e| Ok(dlq_tuple(e.dlq_config(queue))))
    }

    /// Merges the fields given into `queue`'s stall settings and returns them.
    #[pyo3(signature = (queue, *, enabled=None, stall_interval_ms=None, max_stalls=None,
        grace_period_ms=None))]
    fn set_stall_config(
        &self,
        py: Python<'_>,
        queue: &str,
        enabled: Option<bool>,
        stall_interval_ms: Option<u64>,
        max_stalls: Option<u64>,
        grace_period_ms: Option<u64>,
    ) -> PyResult<StallTuple> {
        let patch = StallPatch {
            enabled,
            stall_interval_ms,
            max_stalls,
            grace_period_ms,
        };
        self.mutate(py, |e| e.set_stall_config(queue, &patch).map(stall_tuple))
    }

    fn stall_config(&self, queue: &str) -> PyResult<StallTuple> {
        self.with(|e| Ok(stall_tuple(e.stall_config(queue))))
    }

    /// Pulls skip `group`'s jobs until it is resumed; whether it was not paused.
    fn pause_group(&self, py: Python<'_>, queue: &str, group: &str) -> PyResult<bool> {
        self.mutate(py, |e| e.pause_group(queue, group))
    }

    /// Whether `group` was paused.
    fn resume_group(&self, py: Python<'_>, queue: &str, group: &str) -> PyResult<bool> {
        self.mutate(py, |e| Ok(e.resume_group(queue, group)))
    }

    fn is_group_paused(&self, queue: &str, group: &str) -> PyResult<bool> {
        self.with(|e| Ok(e.is_group_paused(queue, group)))
    }

    fn set_group_concurrency(
        &self,
        py: Python<'_>,
        queue: &str,
        group: &str,
        limit: u64,
    ) -> PyResult<()> {
        self.mutate(py, |e| e.set_group_concurrency(queue, group, limit))
    }

    /// Whether `group` had a concurrency limit.
    fn remove_group_concurrency(&self, py: Python<'_>, queue: &str, group: &str) -> PyResult<bool> {
        self.mutate(py, |e| Ok(e.remove_group_concurrency(queue, group)))
    }

    fn group_concurrency(&self, queue: &str, group: &str) -> PyResult<Option<u64>> {
        self.with(|e| Ok(e.group_concurrency(queue, group)))
    }

    fn set_group_rate_limit(
        &self,
        py: Python<'_>,
        queue: &str,
        group: &str,
        max: u64,
        duration_ms: u64,
    ) -> PyResult<()> {
        self.mutate(py, |e| {
            e.set_group_rate_limit(queue, group, max, duration_ms)
        })
    }

    /// Whether `group` had a rate limit.
    fn remove_group_rate_limit(&self, py: Python<'_>, queue: &str, group: &str) -> PyResult<bool> {
        self.mutate(py, |e| Ok(e.remove_group_rate_limit(queue, group)))
    }

    /// (max, duration ms) of `group`'s rate limit, or None.
    fn group_rate_limit(&self, queue: &str, group: &str) -> PyResult<Option<(u64, u64)>> {
        self.with(|e| {
            Ok(e.group_rate_limit(queue, group)
                .map(|r| (r.max, r.duration_ms)))
        })
    }

    #[pyo3(signature = (queue, name=None))]
    fn pause(&self, py: Python<'_>, queue: &str, name: Option<&str>) -> PyResult<()> {
        self.mutate(py, |e| e.pause(queue, name))
    }

    #[pyo3(signature = (queue, name=None))]
    fn resume(&self, py: Python<'_>, queue: &str, name: Option<&str>) -> PyResult<()> {
        self.mutate(py, |e| e.resume(queue, name))
    }

    fn is_paused(&self, queue: &str) -> PyResult<bool> {
        self.with(|e| Ok(e.is_paused(queue)))
    }

    fn paused_names(&self, queue: &str) -> PyResult<Vec<String>> {
        self.with(|e| Ok(e.paused_names(queue)))
    }

    fn drain_queue(&self, py: Python<'_>, queue: &str) -> PyResult<usize> {
        self.mutate(py, |e| e.drain(queue))
    }

    #[pyo3(signature = (queue, state, grace_ms=0, limit=0))]
    fn clean(
        &self,
        py: Python<'_>,
        queue: &str,
        state: &str,
        grace_ms: u64,
        limit: usize,
    ) -> PyResult<Vec<String>> {
        self.mutate(py, |e| e.clean(queue, parse_state(state)?, grace_ms, limit))
    }

    fn retry_all(&self, py: Python<'_>, queue: &str, state: &str) -> PyResult<usize> {
        self.mutate(py, |e| e.retry_all(queue, parse_state(state)?))
    }

    fn promote_all(&self, py: Python<'_>, queue: &str) -> PyResult<usize> {
        self.mutate(py, |e| e.promote_all(queue))
    }

    /// Makes up to `limit` delayed jobs of `queue` ready now, those due soonest first.
    fn promote_first(&self, py: Python<'_>, queue: &str, limit: usize) -> PyResult<usize> {
        self.mutate(py, |e| e.promote_first(queue, limit))
    }

    #[pyo3(signature = (queue, force=false))]
    fn obliterate(&self, py: Python<'_>, queue: &str, force: bool) -> PyResult<usize> {
        self.mutate(py, |e| e.obliterate(queue, force))
    }

    fn has_queue(&self, queue: &str) -> PyResult<bool> {
        self.with(|e| Ok(e.has_queue(queue)))
    }

    fn queue_names(&self) -> PyResult<Vec<String>> {
        self.with(|e| Ok(e.queue_names()))
    }

    /// Counts per state for one queue, or summed over all queues when `queue` is None.
    #[pyo3(signature = (queue=None))]
    fn counts<'py>(&self, py: Python<'py>, queue: Option<&str>) -> PyResult<Bound<'py, PyDict>> {
        let counts = self.with(|e| Ok(queue.map_or_else(|| e.total_counts(), |q| e.counts(q))))?;
        let d = PyDict::new(py);
        for (state, n) in JobState::ALL.iter().zip(counts) {
            d.set_item(state.as_str(), n)?;
        }
        Ok(d)
    }

    /// (job JSON list, total in that state); `end` is inclusive.
    fn list_jobs(
        &self,
        py: Python<'_>,
        queue: &str,
        state: &str,
        start: usize,
        end: usize,
    ) -> PyResult<(Vec<Py<PyBytes>>, usize)> {
        self.with(|e| {
            let (slots, total) = e.list(queue, parse_state(state)?, start, end);
            let mut out = Vec::with_capacity(slots.len());
            let mut buf = String::with_capacity(256);
            for slot in slots {
                buf.clear();
                e.render(slot, &mut buf);
                out.push(PyBytes::new(py, buf.as_bytes()).unbind());
            }
            Ok((out, total))
        })
    }

    /// [(error message, failed jobs with it, newest such job id)], most frequent first.
    fn failure_groups(&self, queue: &str) -> PyResult<Vec<(String, usize, String)>> {
        self.with(|e| Ok(e.failure_groups(queue)))
    }

    /// Retries the failed jobs of `queue` whose error is `reason`. Returns how many.
    fn retry_failures(&self, py: Python<'_>, queue: &str, reason: &str) -> PyResult<usize> {
        self.mutate(py, |e| e.retry_failures(queue, reason))
    }

    /// Since when (ms) the longest-waiting job of `queue` has been ready, or None.
    fn oldest_waiting(&self, queue: &str) -> PyResult<Option<u64>> {
        self.with(|e| Ok(e.oldest_waiting(queue)))
    }

    /// Jobs with a repeat schedule in `queue`, any state.
    fn scheduled_count(&self, queue: &str) -> PyResult<usize> {
        self.with(|e| Ok(e.scheduled_count(queue)))
    }

    /// Flow parents (jobs with dependsOn) of `queue` as job JSON, newest first.
    #[pyo3(signature = (queue, state=None, limit=100))]
    fn flow_parents(
        &self,
        py: Python<'_>,
        queue: &str,
        state: Option<&str>,
        limit: usize,
    ) -> PyResult<Vec<Py<PyBytes>>> {
        self.with(|e| {
            let state = state.map(parse_state).transpose()?;
            let mut buf = String::with_capacity(256);
            Ok(e.flow_parents(queue, state, limit)
                .into_iter()
                .map(|slot| {
                    buf.clear();
                    e.render(slot, &mut buf);
                    PyBytes::new(py, buf.as_bytes()).unbind()
                })
                .collect())
        })
    }

    /// [(groupId, active, waiting)]
    fn groups(&self, queue: &str) -> PyResult<Vec<(String, u64, u64)>> {
        self.with(|e| {
            Ok(e.groups(queue)
                .into_iter()
                .map(|(g, c)| (g, c.active, c.waiting))
                .collect())
        })
    }

    /// (ids this job depends on, ids that depend on it)
    fn links(&self, id: &str) -> PyResult<(Vec<String>, Vec<String>)> {
        self.with(|e| e.links(id))
    }

    #[pyo3(signature = (query, kind, queue=None, limit=100))]
    fn search(
        &self,
        query: &str,
        kind: &str,
        queue: Option<&str>,
        limit: usize,
    ) -> PyResult<Vec<String>> {
        self.with(|e| {
            let kind = match kind {
                "job" => SearchKind::JobId,
                "queue" => SearchKind::Queue,
                "payload" => SearchKind::Payload,
                other => {
                    return Err(EngineError::invalid(format!(
                        "Unknown search type '{other}': expected job, queue or payload"
                    )))
                }
            };
            e.search(query, kind, queue, limit)
        })
    }

    /// [(period start ms, job name, completed, failed, total ms, min ms, max ms, pushed)]
    #[allow(clippy::type_complexity)]
    fn metrics(
        &self,
        queue: &str,
        from_ms: u64,
        to_ms: u64,
        granularity_ms: u64,
    ) -> PyResult<Vec<(u64, String, u64, u64, u64, u64, u64, u64)>> {
        self.with(|e| {
            Ok(e.metrics(queue, from_ms, to_ms, granularity_ms)?
                .into_iter()
                .map(|(t, n, b)| {
                    (
                        t,
                        n,
                        b.completed,
                        b.failed,
                        b.total_process_ms,
                        b.min_process_ms,
                        b.max_process_ms,
                        b.pushed,
                    )
                })
                .collect())
        })
    }

    fn latest_activity(&self, queue: &str) -> PyResult<Option<u64>> {
        self.with(|e| Ok(e.latest_activity(queue)))
    }

    /// Lifetime counters and index sizes.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let (t, jobs, timers, dropped) = self.with(|e| {
            Ok((
                e.totals(),
                e.job_count(),
                e.timer_count(),
                e.events_dropped(),
            ))
        })?;
        let d = PyDict::new(py);
        for (k, v) in [
            ("pushed", t.pushed),
            ("pulled", t.pulled),
            ("completed", t.completed),
            ("failed", t.failed),
            ("retried", t.retried),
            ("stalled", t.stalled),
            ("duplicated", t.duplicated),
            ("expired", t.expired),
            ("jobs", jobs as u64),
            ("timers", timers as u64),
            ("events_dropped", dropped),
        ] {
            d.set_item(k, v)?;
        }
        Ok(d)
    }

    fn set_events_enabled(&self, on: bool) -> PyResult<()> {
        self.with(|e| {
            e.set_events_enabled(on);
            Ok(())
        })
    }

    /// Returns true if `queue` has a ready job now; otherwise arranges for it to be
    /// reported by `take_notifications` when one arrives.
    fn request_wake(&self, queue: &str) -> PyResult<bool> {
        self.with(|e| e.request_wake(queue))
    }

    /// The fd that becomes readable when `take_notifications` has something.
    fn notify_fd(&self) -> i32 {
        self.handle.notify_fd()
    }

    /// Clears the fd and returns ([(eventType, queue, event JSON)], [woken queue]).
    #[allow(clippy::type_complexity)]
    fn take_notifications(
        &self,
        py: Python<'_>,
    ) -> PyResult<(Vec<(&'static str, String, Py<PyBytes>)>, Vec<String>)> {
        self.handle.clear_notifications();
        let (events, woken): (Vec<Event>, _) =
            self.with(|e| Ok((e.take_events(), e.take_woken())))?;
        let mut out = Vec::with_capacity(events.len());
        let mut buf = String::with_capacity(256);
        for ev in &events {
            buf.clear();
            write_event(&mut buf, ev);
            out.push((
                ev.kind.as_str(),
                ev.queue.to_string(),
                PyBytes::new(py, buf.as_bytes()).unbind(),
            ));
        }
        Ok((out, woken.into_iter().map(|q| q.to_string()).collect()))
    }

    /// Moves a manual clock forward and applies due timers.
    fn advance_clock(&self, ms: u64) -> PyResult<()> {
        let clock = self.manual_clock.as_ref().ok_or_else(|| {
            InvalidStateError::new_err("advance_clock needs an engine built with clock_ms")
        })?;
        clock.advance(ms);
        guard(|| {
            self.handle.tick();
            Ok(())
        })
    }

    /// The engine clock's current time in ms.
    fn now_ms(&self) -> PyResult<u64> {
        self.with(|e| Ok(e.tick()))
    }

    /// Blocks (GIL released) until the relay's threads (up to a poll period) and the
    /// engine's have stopped.
    fn close(&self, py: Python<'_>) {
        py.allow_threads(|| self.close_engine());
    }

    /// Panics inside the engine lock: lets tests prove a panic never escapes as anything
    /// but a `HopperError`, and that the engine keeps serving afterwards.
    fn _panic_for_test(&self) -> PyResult<()> {
        self.with(|_| -> Result<(), EngineError> { panic!("deliberate test panic") })
    }
}

#[pymodule]
fn _engine(m: &Bound<'_, PyModule>) -> PyResult<()> {
    allocator::no_huge_pages();
    let py = m.py();
    m.add_class::<Core>()?;
    m.add_class::<EngineOptions>()?;
    m.add_class::<ProtocolSession>()?;
    m.add_class::<PendingPull>()?;
    m.add_class::<LoadGen>()?;
    m.add_class::<cluster::Front>()?;
    m.add_class::<cluster::PyWebhookStore>()?;
    m.add_function(wrap_pyfunction!(cluster::cluster_view, m)?)?;
    m.add_function(wrap_pyfunction!(cluster::queue_slot, m)?)?;
    m.add_function(wrap_pyfunction!(cluster::id_slot, m)?)?;
    m.add_function(wrap_pyfunction!(cluster::preferred_broker, m)?)?;
    m.add_function(wrap_pyfunction!(event_frame, m)?)?;
    m.add_function(wrap_pyfunction!(allocator::allocator_committed, m)?)?;
    m.add_function(wrap_pyfunction!(allocator::allocator_release, m)?)?;
    m.add("HopperError", py.get_type::<HopperError>())?;
    m.add("InvalidInputError", py.get_type::<InvalidInputError>())?;
    m.add("NotFoundError", py.get_type::<NotFoundError>())?;
    m.add("InvalidStateError", py.get_type::<InvalidStateError>())?;
    m.add("LockError", py.get_type::<LockError>())?;
    m.add("UnavailableError", py.get_type::<UnavailableError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    // The engine's own names and defaults, so Python spells them once: the states in
    // display order, and the push defaults a job shows when it was given none.
    let states: Vec<&str> = JobState::ALL.iter().map(|s| s.as_str()).collect();
    m.add("STATES", PyTuple::new(py, states)?)?;
    m.add("DEFAULT_MAX_ATTEMPTS", DEFAULT_MAX_ATTEMPTS)?;
    m.add("DEFAULT_BACKOFF_MS", DEFAULT_BACKOFF_MS)?;
    Ok(())
}

// ----- bunqueue's protocol -------------------------------------------------------------

/// A waiting command of a protocol session, a long poll or a WaitJob (opaque to Python
/// but for what it waits on).
#[pyclass(module = "hopper._engine", frozen)]
struct PendingPull {
    inner: Deferred,
}

#[pymethods]
impl PendingPull {
    #[getter]
    fn queue(&self) -> &str {
        &self.inner.queue
    }

    #[getter]
    fn timeout_ms(&self) -> u64 {
        self.inner.timeout_ms
    }

    #[getter]
    fn waits_for_completion(&self) -> bool {
        self.inner.waits_for_completion()
    }

    #[getter]
    fn server_command(&self) -> Option<&'static str> {
        self.inner.server_command()
    }

    #[getter]
    fn server_request<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, self.inner.server_request().as_bytes())
    }
}

/// What one call gives the server: (reply bytes, whether they wait for the log, long
/// polls, subscription changed, the queue subscribed to, close the connection).
type Fed = (
    Py<PyBytes>,
    bool,
    Vec<PendingPull>,
    bool,
    Option<String>,
    bool,
);

/// One client connection of bunqueue's protocol (`hopper_core::Session`): bytes in,
/// reply bytes out, with the engine's commit marks raised for what the replies wait on.
#[pyclass(module = "hopper._engine")]
struct ProtocolSession {
    core: Py<Core>,
    inner: Session,
}

impl ProtocolSession {
    fn run(
        &mut self,
        py: Python<'_>,
        f: impl FnOnce(&mut Session, &EngineHandle) -> Output,
    ) -> PyResult<Fed> {
        let core = self.core.get();
        let inner = &mut self.inner;
        let out = guard(|| Ok(f(inner, &core.handle)))?;
        let waits = out.commit.is_some();
        core.answer_after(py, out.commit)?;
        let (changed, queue) = match out.subscription {
            Some(q) => (true, q),
            None => (false, None),
        };
        let pending = out
            .deferred
            .into_iter()
            .map(|inner| PendingPull { inner })
            .collect();
        Ok((
            PyBytes::new(py, &out.bytes).unbind(),
            waits,
            pending,
            changed,
            queue,
            out.close,
        ))
    }
}

#[pymethods]
impl ProtocolSession {
    /// `owner`: the lease owner id of this connection. `json`: WebSocket JSON messages
    /// instead of TCP MessagePack frames. `tokens`: accepted auth tokens (empty: none
    /// needed), `authenticated`: already checked (a WebSocket upgrade). `rate`: at most
    /// (frames, per window ms).
    #[new]
    #[pyo3(signature = (core, owner, *, json=false, tokens=Vec::new(), authenticated=false, rate=None))]
    fn new(
        core: Py<Core>,
        owner: u64,
        json: bool,
        tokens: Vec<Vec<u8>>,
        authenticated: bool,
        rate: Option<(usize, u64)>,
    ) -> Self {
        let encoding = if json {
            Encoding::Json
        } else {
            Encoding::MessagePack
        };
        let tokens: Vec<Box<[u8]>> = tokens.into_iter().map(Vec::into_boxed_slice).collect();
        Self {
            core,
            inner: Session::new(owner, encoding, tokens.into(), authenticated, rate),
        }
    }

    /// TCP bytes in: every whole frame is run (up to the running-commands limit).
    fn feed(&mut self, py: Python<'_>, data: &[u8]) -> PyResult<Fed> {
        self.run(py, |s, h| s.feed(h, data))
    }

    /// One WebSocket text message in.
    fn message(&mut self, py: Python<'_>, data: &[u8]) -> PyResult<Fed> {
        self.run(py, |s, h| s.message(h, data))
    }

    /// A long poll tries again: its reply bytes, or None to keep waiting.
    fn retry(&mut self, py: Python<'_>, pending: &PendingPull) -> PyResult<Option<Py<PyBytes>>> {
        let core = self.core.get();
        let inner = &mut self.inner;
        let reply = guard(|| Ok(inner.retry(&core.handle, &pending.inner)))?;
        Ok(reply.map(|b| PyBytes::new(py, &b).unbind()))
    }

    /// The server's answer (a JSON object) to a server command: its reply bytes.
    fn answer(
        &mut self,
        py: Python<'_>,
        pending: &PendingPull,
        reply: &[u8],
    ) -> PyResult<Py<PyBytes>> {
        let inner = &mut self.inner;
        let bytes = guard(|| Ok(inner.answer(&pending.inner, reply)))?;
        Ok(PyBytes::new(py, &bytes).unbind())
    }

    /// A long poll's time is up: its empty reply.
    fn expire(&mut self, py: Python<'_>, pending: &PendingPull) -> PyResult<Py<PyBytes>> {
        let inner = &mut self.inner;
        let bytes = guard(|| Ok(inner.expire(&pending.inner)))?;
        Ok(PyBytes::new(py, &bytes).unbind())
    }

    /// The connection closed: releases its unrenewed leases and its workers. Returns
    /// how many jobs went back to waiting.
    fn close(&mut self) -> PyResult<usize> {
        let core = self.core.get();
        let inner = &mut self.inner;
        guard(|| Ok(inner.close(&core.handle)))
    }

    /// Bytes of a partial frame waiting for the rest.
    #[getter]
    fn partial_bytes(&self) -> usize {
        self.inner.partial_bytes()
    }

    /// Whole frames wait for a running long poll to end.
    #[getter]
    fn blocked(&self) -> bool {
        self.inner.blocked()
    }
}

/// An engine event (its JSON) as a TCP event frame, or None if it is not an event.
#[pyfunction]
fn event_frame(py: Python<'_>, event: &[u8]) -> PyResult<Option<Py<PyBytes>>> {
    let frame = guard(|| Ok(encode_event_frame(event)))?;
    Ok(frame.map(|b| PyBytes::new(py, &b).unbind()))
}

// ----- the load generator of `hopper bench` ---------------------------------------------

/// A run of the load generator (hopper-loadgen), started at once in its own threads.
/// Configuration in and results out are JSON text; `join` waits without the GIL.
#[pyclass(module = "hopper._engine", frozen)]
struct LoadGen {
    run: std::sync::Mutex<Option<hopper_loadgen::Run>>,
}

impl LoadGen {
    fn with<R>(&self, f: impl FnOnce(&hopper_loadgen::Run) -> R) -> PyResult<R> {
        let run = self.run.lock().unwrap_or_else(|p| p.into_inner());
        match run.as_ref() {
            Some(r) => Ok(f(r)),
            None => Err(HopperError::new_err("the run was already joined")),
        }
    }
}

#[pymethods]
impl LoadGen {
    #[new]
    fn new(config: &str) -> PyResult<Self> {
        let cfg = hopper_loadgen::Config::from_json(config).map_err(loadgen_to_py)?;
        let run = hopper_loadgen::Run::start(cfg).map_err(loadgen_to_py)?;
        Ok(LoadGen {
            run: std::sync::Mutex::new(Some(run)),
        })
    }

    /// The progress so far, as JSON.
    fn snapshot(&self) -> PyResult<String> {
        self.with(|r| serde_json::to_string(&r.snapshot()).expect("a snapshot serializes"))
    }

    fn finished(&self) -> PyResult<bool> {
        self.with(|r| r.is_finished())
    }

    /// Asks the run to end early; `join` still returns what was measured.
    fn stop(&self) -> PyResult<()> {
        self.with(|r| r.stop())
    }

    /// Waits for the end of the run (without the GIL); the report as JSON.
    fn join(&self, py: Python<'_>) -> PyResult<String> {
        let run = self.run.lock().unwrap_or_else(|p| p.into_inner()).take();
        let run = run.ok_or_else(|| HopperError::new_err("the run was already joined"))?;
        let report = py.allow_threads(|| run.join()).map_err(loadgen_to_py)?;
        Ok(serde_json::to_string(&report).expect("a report serializes"))
    }
}
