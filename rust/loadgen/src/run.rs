//! A run: connects every connection (spread over the generator threads, each a
//! single-threaded tokio runtime), fixes the timetable once all are connected, drives
//! them, and sums up. `Run::start` returns at once; the run goes on in its own thread
//! and can be watched with `snapshot` (the live progress line) and collected with `join`.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use crate::config::{Config, Scenario, Transport, PREFILL_CAP};
use crate::conn::{Driver, Lost, Role};
use crate::http1::Http;
use crate::payload::Payload;
use crate::record::{encode, Series};
use crate::schedule::{Budget, Schedule, Window};
use crate::tcp_frames::{self, Tcp};
use crate::wire::{Parsed, Wire};
use crate::ws::{self, Ws};
use crate::Error;

/// What the drivers of one phase (the pre-fill, the run) share.
pub struct Shared {
    pub cfg: Config,
    base: Instant,
    window: OnceLock<Window>,
    pub series: Vec<Series>,
    budgets: Vec<Arc<Budget>>,
    stopped: AtomicBool,
    external_stop: Arc<AtomicBool>,
    stop_reason: Mutex<Option<String>>,
    notes: Mutex<Vec<String>>,
    /// e2e closed loop: one permit per producer lane, back when its job is acked.
    pub permits: Semaphore,
    pub pushed_measured: AtomicU64,
    pub acked_measured: AtomicU64,
    pub foreign: AtomicU64,
    pub worker_pull_errors: AtomicU64,
    producers_left: AtomicUsize,
    drain_deadline: AtomicU64,
    pub mixed_pushers_done: AtomicUsize,
    pub mixed_connections: usize,
}

impl Shared {
    pub fn now(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }

    pub fn instant(&self, ns: u64) -> Instant {
        self.base + Duration::from_nanos(ns)
    }

    /// The run's timetable, fixed once every connection is open.
    pub fn window(&self) -> Window {
        *self
            .window
            .get()
            .expect("the window is set before the drivers run")
    }

    pub fn stopped(&self) -> bool {
        self.stopped.load(Ordering::Relaxed) || self.external_stop.load(Ordering::Relaxed)
    }

    pub fn stop(&self, reason: &str) {
        let mut r = self.stop_reason.lock().unwrap_or_else(|p| p.into_inner());
        if r.is_none() {
            *r = Some(reason.to_string());
        }
        self.stopped.store(true, Ordering::Relaxed);
    }

    pub fn note_once(&self, note: &str) {
        let mut n = self.notes.lock().unwrap_or_else(|p| p.into_inner());
        if !n.iter().any(|x| x == note) {
            n.push(note.to_string());
        }
    }

    /// e2e workers end once the producers are done and every measured job was acked (or
    /// the drain timed out).
    pub fn workers_may_stop(&self, now: u64) -> bool {
        if self.stopped() {
            return true;
        }
        self.producers_left.load(Ordering::Relaxed) == 0
            && (self.acked_measured.load(Ordering::Relaxed)
                >= self.pushed_measured.load(Ordering::Relaxed)
                || now >= self.drain_deadline.load(Ordering::Relaxed))
    }

    pub fn producer_done(&self, now: u64) {
        if self.producers_left.fetch_sub(1, Ordering::Relaxed) == 1 {
            let drain = (self.cfg.timeout_s * 1e9) as u64;
            self.drain_deadline.store(now + drain, Ordering::Relaxed);
        }
    }
}

#[derive(Serialize, Debug)]
pub struct SeriesReport {
    pub name: &'static str,
    /// Compressed V2 HdrHistogram, base64, µs: from the intended start.
    pub hist: String,
    /// Open loop: the same from the actual send.
    pub raw: Option<String>,
    pub ok: u64,
    /// Jobs those ok operations carried (more than `ok` in bulk and pullb).
    pub jobs: u64,
    pub errors: u64,
    pub error_sample: Option<String>,
    pub unmeasured: u64,
    pub empty: u64,
    /// From the end of the warm-up to the last completion.
    pub elapsed_s: f64,
}

#[derive(Serialize, Debug)]
pub struct Report {
    pub series: Vec<SeriesReport>,
    pub notes: Vec<String>,
    /// The measured phase's wall time (connections included) and the CPU time its
    /// generator threads used (user + system).
    pub wall_s: f64,
    pub cpu_s: Option<f64>,
    pub threads: usize,
    pub prefilled: u64,
    pub prefill_s: f64,
}

#[derive(Serialize, Debug)]
pub struct SeriesSnapshot {
    pub name: &'static str,
    pub finished: u64,
    pub ok: u64,
    pub errors: u64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

#[derive(Serialize, Debug)]
pub struct Snapshot {
    pub phase: &'static str,
    pub elapsed_s: f64,
    pub prefilled: u64,
    pub series: Vec<SeriesSnapshot>,
}

struct Watch {
    started: Instant,
    stop: Arc<AtomicBool>,
    prefill: Mutex<Option<Arc<Shared>>>,
    main: Mutex<Option<Arc<Shared>>>,
    done: AtomicBool,
}

pub struct Run {
    watch: Arc<Watch>,
    thread: Option<JoinHandle<Result<Report, Error>>>,
}

impl Run {
    pub fn start(cfg: Config) -> Result<Run, Error> {
        cfg.check()?;
        let watch = Arc::new(Watch {
            started: Instant::now(),
            stop: Arc::new(AtomicBool::new(false)),
            prefill: Mutex::new(None),
            main: Mutex::new(None),
            done: AtomicBool::new(false),
        });
        let w = watch.clone();
        let thread = std::thread::Builder::new()
            .name("loadgen".into())
            .spawn(move || {
                let r = run(cfg, &w);
                w.done.store(true, Ordering::Relaxed);
                r
            })
            .map_err(|e| Error::Run(format!("cannot start a thread: {e}")))?;
        Ok(Run {
            watch,
            thread: Some(thread),
        })
    }

    pub fn is_finished(&self) -> bool {
        self.watch.done.load(Ordering::Relaxed)
    }

    /// Asks the run to end early (what is in flight is still awaited).
    pub fn stop(&self) {
        self.watch.stop.store(true, Ordering::Relaxed);
    }

    pub fn join(mut self) -> Result<Report, Error> {
        let t = self.thread.take().expect("joined once");
        t.join()
            .unwrap_or_else(|_| Err(Error::Run("the load generator panicked".into())))
    }

    pub fn snapshot(&self) -> Snapshot {
        let w = &self.watch;
        let elapsed_s = w.started.elapsed().as_secs_f64();
        let lock =
            |m: &Mutex<Option<Arc<Shared>>>| m.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let prefill = lock(&w.prefill);
        let prefilled = prefill
            .as_ref()
            .map_or(0, |p| p.series[0].jobs.load(Ordering::Relaxed));
        let Some(main) = lock(&w.main) else {
            let phase = if prefill.is_some() {
                "prefill"
            } else {
                "connecting"
            };
            return Snapshot {
                phase,
                elapsed_s,
                prefilled,
                series: vec![],
            };
        };
        let now = main.now();
        let measure_start = main.window.get().map_or(u64::MAX, |w| w.measure_start);
        let phase = if w.done.load(Ordering::Relaxed) {
            "done"
        } else if main.window.get().is_none() {
            "connecting"
        } else if now < measure_start {
            "warmup"
        } else if main.cfg.scenario == Scenario::E2e
            && main.producers_left.load(Ordering::Relaxed) == 0
        {
            "drain"
        } else {
            "run"
        };
        let series = main
            .series
            .iter()
            .map(|s| {
                let h = s.merged().corrected;
                let at = |p: f64| (!h.is_empty()).then(|| h.value_at_quantile(p) as f64 / 1000.0);
                SeriesSnapshot {
                    name: s.name,
                    finished: s.finished(),
                    ok: s.ok.load(Ordering::Relaxed),
                    errors: s.errors.load(Ordering::Relaxed),
                    p50_ms: at(0.5),
                    p99_ms: at(0.99),
                }
            })
            .collect();
        Snapshot {
            phase,
            elapsed_s,
            prefilled,
            series,
        }
    }
}

fn series_names(s: Scenario) -> &'static [&'static str] {
    match s {
        Scenario::Push => &["push"],
        Scenario::Bulk => &["bulk"],
        Scenario::Pullack => &["pullack"],
        Scenario::Pullb => &["pullb"],
        Scenario::E2e => &["e2e"],
        Scenario::Mixed => &["push", "pullack"],
    }
}

fn run(cfg: Config, watch: &Watch) -> Result<Report, Error> {
    let (mut prefilled, mut prefill_s) = (0, 0.0);
    let pulls = matches!(cfg.scenario, Scenario::Pullack | Scenario::Pullb);
    if pulls && cfg.prefill != Some(0) {
        let pre = prefill_config(&cfg);
        let t0 = Instant::now();
        let phase = Phase::new(pre, watch.stop.clone());
        *watch.prefill.lock().unwrap_or_else(|p| p.into_inner()) = Some(phase.shared.clone());
        let (shared, _) = phase.execute()?;
        prefilled = shared.series[0].jobs.load(Ordering::Relaxed);
        prefill_s = t0.elapsed().as_secs_f64();
        if let Some(e) = shared.series[0].error_sample() {
            if prefilled == 0 {
                return Err(Error::Run(format!("pre-fill failed: {e}")));
            }
        }
    }
    let phase = Phase::new(cfg, watch.stop.clone());
    *watch.main.lock().unwrap_or_else(|p| p.into_inner()) = Some(phase.shared.clone());
    let t0 = Instant::now();
    let (shared, cpu_s) = phase.execute()?;
    let wall_s = t0.elapsed().as_secs_f64();
    let mut notes = std::mem::take(&mut *shared.notes.lock().unwrap_or_else(|p| p.into_inner()));
    if prefilled > 0 {
        notes.insert(
            0,
            format!(
                "{}: pre-filled {prefilled} jobs in {prefill_s:.1} s (unmeasured)",
                series_names(shared.cfg.scenario)[0]
            ),
        );
    }
    if let Some(r) = shared
        .stop_reason
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
    {
        let hint = if r == "queue ran dry" {
            " (use --prefill to push more first)"
        } else {
            ""
        };
        notes.push(format!("stopped early: {r}{hint}"));
    }
    let mut series: Vec<SeriesReport> = shared
        .series
        .iter()
        .map(|s| {
            let h = s.merged();
            let last = s.last_ns.load(Ordering::Relaxed);
            SeriesReport {
                name: s.name,
                hist: encode(&h.corrected),
                raw: h.raw.as_ref().map(encode),
                ok: s.ok.load(Ordering::Relaxed),
                jobs: s.jobs.load(Ordering::Relaxed),
                errors: s.errors.load(Ordering::Relaxed),
                error_sample: s.error_sample(),
                unmeasured: s.unmeasured.load(Ordering::Relaxed),
                empty: s.empty.load(Ordering::Relaxed),
                elapsed_s: last.saturating_sub(shared.window().measure_start) as f64 / 1e9,
            }
        })
        .collect();
    if shared.cfg.scenario == Scenario::E2e {
        let pushed = shared.pushed_measured.load(Ordering::Relaxed);
        let acked = shared.acked_measured.load(Ordering::Relaxed);
        if pushed > acked {
            let lost = pushed - acked;
            series[0].errors += lost;
            series[0].error_sample.get_or_insert_with(|| {
                format!(
                    "{lost} pushed jobs not acked within {} s",
                    shared.cfg.timeout_s
                )
            });
            notes.push(format!("e2e: {lost} measured jobs were not acked in time"));
        }
        let pull_errors = shared.worker_pull_errors.load(Ordering::Relaxed);
        if pull_errors > 0 {
            notes.push(format!("e2e: {pull_errors} worker pulls failed"));
        }
        let foreign = shared.foreign.load(Ordering::Relaxed);
        if foreign > 0 {
            notes.push(format!("e2e: acked {foreign} jobs not pushed by this run"));
        }
    }
    Ok(Report {
        series,
        notes,
        wall_s,
        cpu_s,
        threads: shared.cfg.threads,
        prefilled,
        prefill_s,
    })
}

/// The pushes that fill the queue a pullack run consumes: --prefill jobs; with --rate the
/// timetable's slots (+5 %); closed loop with a count that many (+ one per lane); closed
/// loop for a duration, pushes for as long as the run will last (a push costs less than a
/// pull and an ack, so the queue outlasts the run). A pullb slot takes `batch` jobs, and
/// its queue is filled by bulk pushes of `batch` (whole batches: --prefill rounds up), the
/// cost that matches a PULLB and its ACKB.
fn prefill_config(cfg: &Config) -> Config {
    let bulk = cfg.scenario == Scenario::Pullb;
    let per_slot = if bulk { cfg.batch as u64 } else { 1 };
    let lanes = (cfg.connections * cfg.window()) as f64;
    let mut pre = cfg.clone();
    pre.scenario = if bulk { Scenario::Bulk } else { Scenario::Push };
    pre.rate = None;
    pre.warmup_s = 0.0;
    let run_s = cfg.warmup_s + cfg.duration_s.unwrap_or(0.0);
    let need = match (cfg.prefill, cfg.rate, cfg.count) {
        (Some(n), _, _) => Some(n),
        (None, Some(r), count) => {
            let slots =
                r * cfg.warmup_s + count.map_or(r * cfg.duration_s.unwrap_or(0.0), |n| n as f64);
            Some((slots * 1.05 + lanes) as u64 * per_slot)
        }
        (None, None, Some(n)) => Some((n + lanes as u64) * per_slot),
        (None, None, None) => None,
    };
    match need {
        Some(n) => {
            pre.count = Some(n.min(PREFILL_CAP).div_ceil(per_slot));
            pre.duration_s = None;
        }
        None => {
            pre.count = None;
            pre.duration_s = Some(run_s.max(0.1));
        }
    }
    pre
}

/// One connection before its driver exists: its socket, bytes read past a handshake, and
/// its wire.
struct Opened {
    sock: TcpStream,
    leftover: Vec<u8>,
    role: RoleAt,
}

#[derive(Clone, Copy)]
struct RoleAt {
    kind: RoleKind,
    /// Its index among the connections of its kind, and their number.
    index: usize,
    of: usize,
}

#[derive(Clone, Copy, PartialEq)]
enum RoleKind {
    Push,
    Bulk,
    PullAck,
    PullB,
    Producer,
    Worker,
    Mixed,
}

struct Phase {
    shared: Arc<Shared>,
    roles: Vec<RoleAt>,
}

impl Phase {
    fn new(cfg: Config, external_stop: Arc<AtomicBool>) -> Phase {
        let open = cfg.rate.is_some();
        let threads = cfg.threads;
        let series: Vec<Series> = series_names(cfg.scenario)
            .iter()
            .map(|n| Series::new(n, threads, open))
            .collect();
        let c = cfg.connections;
        let kinds: Vec<(RoleKind, usize)> = match cfg.scenario {
            Scenario::Push => vec![(RoleKind::Push, c)],
            Scenario::Bulk => vec![(RoleKind::Bulk, c)],
            Scenario::Pullack => vec![(RoleKind::PullAck, c)],
            Scenario::Pullb => vec![(RoleKind::PullB, c)],
            Scenario::E2e => vec![(RoleKind::Producer, c), (RoleKind::Worker, cfg.workers)],
            Scenario::Mixed => vec![(RoleKind::Mixed, c)],
        };
        let roles = kinds
            .iter()
            .flat_map(|(kind, n)| {
                (0..*n).map(move |index| RoleAt {
                    kind: *kind,
                    index,
                    of: *n,
                })
            })
            .collect();
        let permits = if cfg.scenario == Scenario::E2e && !open {
            c * cfg.window()
        } else {
            0
        };
        let shared = Arc::new(Shared {
            base: Instant::now(),
            window: OnceLock::new(),
            budgets: (0..series.len())
                .map(|_| Arc::new(Budget::default()))
                .collect(),
            series,
            stopped: AtomicBool::new(false),
            external_stop,
            stop_reason: Mutex::new(None),
            notes: Mutex::new(Vec::new()),
            permits: Semaphore::new(permits),
            pushed_measured: AtomicU64::new(0),
            acked_measured: AtomicU64::new(0),
            foreign: AtomicU64::new(0),
            worker_pull_errors: AtomicU64::new(0),
            producers_left: AtomicUsize::new(if cfg.scenario == Scenario::E2e { c } else { 0 }),
            drain_deadline: AtomicU64::new(u64::MAX),
            mixed_pushers_done: AtomicUsize::new(0),
            mixed_connections: c,
            cfg,
        });
        Phase { shared, roles }
    }

    /// Connects, runs and joins the threads; the shared state and the threads' CPU time.
    fn execute(self) -> Result<(Arc<Shared>, Option<f64>), Error> {
        let threads = self.shared.cfg.threads.min(self.roles.len()).max(1);
        let barrier = Arc::new(Barrier::new(threads));
        let connect_error: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
        let mut handles = Vec::new();
        for t in 0..threads {
            let mine: Vec<RoleAt> = self
                .roles
                .iter()
                .enumerate()
                .filter(|(i, _)| i % threads == t)
                .map(|(_, r)| *r)
                .collect();
            let (shared, barrier, connect_error) =
                (self.shared.clone(), barrier.clone(), connect_error.clone());
            let h = std::thread::Builder::new()
                .name(format!("loadgen-{t}"))
                .spawn(move || thread_main(t, mine, shared, barrier, connect_error))
                .map_err(|e| Error::Run(format!("cannot start a thread: {e}")))?;
            handles.push(h);
        }
        let mut cpu = Some(0.0);
        for h in handles {
            match h.join() {
                Ok(c) => cpu = cpu.zip(c).map(|(a, b)| a + b),
                Err(_) => return Err(Error::Run("a load generator thread panicked".into())),
            }
        }
        if let Some(e) = connect_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            return Err(Error::Connect(e));
        }
        Ok((self.shared, cpu))
    }
}

/// One generator thread: connect its connections, wait for the others, run them.
fn thread_main(
    t: usize,
    mine: Vec<RoleAt>,
    shared: Arc<Shared>,
    barrier: Arc<Barrier>,
    connect_error: Arc<Mutex<Option<String>>>,
) -> Option<f64> {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            *connect_error.lock().unwrap_or_else(|p| p.into_inner()) =
                Some(format!("runtime: {e}"));
            barrier.wait();
            barrier.wait();
            return None;
        }
    };
    let opened = rt.block_on(async {
        let mut out = Vec::with_capacity(mine.len());
        for (i, role) in mine.iter().enumerate() {
            out.push(connect(&shared.cfg, *role, (t * 1_000_003 + i) as u64).await?);
        }
        Ok::<_, String>(out)
    });
    let opened = match opened {
        Ok(o) => o,
        Err(e) => {
            connect_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get_or_insert(e);
            shared.stop("could not connect");
            Vec::new()
        }
    };
    if barrier.wait().is_leader() {
        let _ = shared.window.set(timetable(&shared));
    }
    barrier.wait();
    let win = shared.window();
    let cpu0 = thread_cpu();
    rt.block_on(async {
        let mut tasks = Vec::with_capacity(opened.len());
        for o in opened {
            tasks.push(tokio::spawn(drive(o, shared.clone(), t, win)));
        }
        for task in tasks {
            let _ = task.await;
        }
    });
    cpu0.zip(thread_cpu()).map(|(a, b)| b - a)
}

/// The window of the run, fixed now that every connection is open.
fn timetable(shared: &Shared) -> Window {
    let cfg = &shared.cfg;
    let start = shared.now();
    let measure_start = start + (cfg.warmup_s * 1e9) as u64;
    Window {
        start,
        measure_start,
        end: cfg.duration_s.map(|d| measure_start + (d * 1e9) as u64),
        hard_end: start + (cfg.limit_s() * 1e9) as u64,
    }
}

async fn drive(o: Opened, shared: Arc<Shared>, thread: usize, win: Window) {
    let cfg = &shared.cfg;
    let split = |share: u64, total: u64, x: u64| -> u64 { (x * share).div_ceil(total.max(1)) };
    let (p, q) = (cfg.mix.0 as u64, cfg.mix.1 as u64);
    let sched = |series: usize, rate: Option<f64>, count: Option<u64>| match rate {
        Some(r) => Schedule::open(win, r, count, o.role.index as u64, o.role.of as u64),
        None => Schedule::closed(win, count, shared.budgets[series].clone()),
    };
    // the roles with one series: push, bulk, pull (+ ack), e2e producer
    let single = |role| (role, [Some(sched(0, cfg.rate, cfg.count)), None]);
    let (role, scheds) = match o.role.kind {
        RoleKind::Push => single(Role::Push { bulk: false }),
        RoleKind::Bulk => single(Role::Push { bulk: true }),
        RoleKind::PullAck => single(Role::PullAck { batch: false }),
        RoleKind::PullB => single(Role::PullAck { batch: true }),
        RoleKind::Producer => single(Role::Producer),
        RoleKind::Worker => (Role::Worker, [None, None]),
        RoleKind::Mixed => {
            let push_count = cfg.count.map(|n| split(p, p + q, n));
            let pull_count = cfg.count.map(|n| n - push_count.unwrap_or(0).min(n));
            let rate = |share: u64| cfg.rate.map(|r| r * share as f64 / (p + q) as f64);
            (
                Role::Mixed,
                [
                    (p > 0).then(|| sched(0, rate(p), push_count)),
                    (q > 0).then(|| sched(1, rate(q), pull_count)),
                ],
            )
        }
    };
    let in_order = cfg.transport == Transport::Http;
    let queues = &cfg.queues;
    let payload = || Payload::new(cfg.payload_bytes);
    let waits = [0, cfg.poll_ms];
    let seed = (thread as u64) << 32 | o.role.index as u64;
    // One driver loop, monomorphised per transport (the wire codec is a type parameter).
    macro_rules! drive {
        ($wire:expr) => {
            Driver::new(
                o.sock,
                &o.leftover,
                $wire,
                shared.clone(),
                thread,
                role,
                scheds,
                in_order,
            )
            .run()
            .await
        };
    }
    let result = match cfg.transport {
        Transport::Http => drive!(Http::new(
            &cfg.host,
            cfg.port,
            cfg.token.as_deref(),
            queues,
            payload(),
            cfg.batch,
            &waits,
        )),
        Transport::Ws => drive!(Ws::new(queues, payload(), cfg.batch, &waits, seed)),
        Transport::Tcp => drive!(Tcp::new(queues, payload(), cfg.batch, &waits, seed)),
    };
    if let Err(Lost(why)) = result {
        shared.note_once(&format!("a connection ended early: {why}"));
    }
}

async fn connect(cfg: &Config, role: RoleAt, seed: u64) -> Result<Opened, String> {
    let addr = format!("{}:{}", cfg.host, cfg.port);
    let what = match cfg.transport {
        Transport::Http => format!("http://{addr}"),
        Transport::Ws => format!("ws://{addr}{}", cfg.ws_path),
        Transport::Tcp => format!("tcp://{addr}"),
    };
    let fail = |e: &dyn std::fmt::Display| format!("cannot open {what}: {e}");
    let timeout = Duration::from_secs_f64(cfg.timeout_s);
    let mut sock = tokio::time::timeout(timeout, TcpStream::connect(&addr))
        .await
        .map_err(|_| fail(&"timed out"))?
        .map_err(|e| fail(&e))?;
    sock.set_nodelay(true).map_err(|e| fail(&e))?;
    let mut leftover = Vec::new();
    match cfg.transport {
        Transport::Http => {}
        Transport::Ws => {
            let req = ws::handshake(
                &cfg.host,
                cfg.port,
                &cfg.ws_path,
                cfg.token.as_deref(),
                seed,
            );
            sock.write_all(&req).await.map_err(|e| fail(&e))?;
            let head = read_until(&mut sock, &mut leftover, timeout, |b| {
                b.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
            })
            .await
            .map_err(|e| fail(&e))?;
            let status = String::from_utf8_lossy(&leftover[..head]);
            let line = status.lines().next().unwrap_or("").to_string();
            if line.split(' ').nth(1) != Some("101") {
                return Err(fail(&format!("the server answered {line}")));
            }
            leftover.drain(..head);
        }
        Transport::Tcp => {
            if let Some(token) = &cfg.token {
                sock.write_all(&tcp_frames::auth(token, 0))
                    .await
                    .map_err(|e| fail(&e))?;
                let tcp = Tcp::new(&[], Payload::new(0), 1, &[], 0);
                let mut ok = None;
                let used = read_until(&mut sock, &mut leftover, timeout, |b| {
                    let mut copy = b.to_vec();
                    match tcp.parse(&mut copy, false) {
                        Ok(Parsed::Reply(n, r)) => {
                            ok = Some(r.ok);
                            Some(n)
                        }
                        Ok(Parsed::Skip(n)) => {
                            ok = Some(false);
                            Some(n)
                        }
                        _ => None,
                    }
                })
                .await
                .map_err(|e| fail(&e))?;
                if ok != Some(true) {
                    return Err(fail(&"Auth refused"));
                }
                leftover.drain(..used);
            }
        }
    }
    Ok(Opened {
        sock,
        leftover,
        role,
    })
}

async fn read_until(
    sock: &mut TcpStream,
    buf: &mut Vec<u8>,
    timeout: Duration,
    mut done: impl FnMut(&[u8]) -> Option<usize>,
) -> Result<usize, String> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(n) = done(buf) {
            return Ok(n);
        }
        let n = tokio::time::timeout_at(deadline, sock.read(&mut chunk))
            .await
            .map_err(|_| "no answer to the handshake".to_string())?
            .map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("closed during the handshake".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// User + system CPU time of the calling thread, in seconds.
#[cfg(target_os = "linux")]
fn thread_cpu() -> Option<f64> {
    let mut ru = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a rusage into the pointer it is given.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_THREAD, ru.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: initialized by the successful call above.
    let ru = unsafe { ru.assume_init() };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Some(secs(ru.ru_utime) + secs(ru.ru_stime))
}

#[cfg(not(target_os = "linux"))]
fn thread_cpu() -> Option<f64> {
    None
}
