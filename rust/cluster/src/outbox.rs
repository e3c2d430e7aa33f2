//! Cross-slot messages, carried between slot owners through PostgreSQL.
//!
//! A slot's engine logs the messages its changes cause for other slots (a flow's child
//! in another slot's queue, a dependency on another slot's job) in its own log,
//! numbered from 1 per target. The relay of an owned slot moves them, on two threads:
//!
//! - **deliver**: the engine hands out messages only once their records are synced;
//!   they are inserted into `hopper_outbox` in one transaction that also notifies the
//!   targets, and only after its commit does the engine log them delivered. A message
//!   delivered again (a crash or failover before that record was synced) is the same
//!   row with the same body: `ON CONFLICT DO NOTHING`.
//! - **receive**: the target's relay applies its rows in (source, seq) order (the engine
//!   skips what it applied already and refuses a gap), syncs its log, and only then
//!   deletes the rows its cursors cover. A fenced ex-owner's sync fails, so it never
//!   deletes a row the new owner has not applied.
//!
//! A third thread sweeps the slot's rows of the id registry (`registry_sweep.rs`).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt::Display;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hopper_core::{Applied, EngineHandle, OutboxEntry};
use postgres::fallible_iterator::FallibleIterator;
use postgres::Client;

use crate::connect::connect;
use crate::error::ClusterError;
use crate::registry_sweep::{sweep, SweepTiming};
use crate::slot::Slot;

/// How long the deliverer waits for the engine's messages before looking at its stop.
const DELIVER_WAIT: Duration = Duration::from_millis(100);
const DELIVER_BATCH: usize = 1000;
/// The receiver reads its rows at least this often, notified or not (a notification is
/// lost while its connection is down).
const RECEIVE_POLL: Duration = Duration::from_millis(200);
const RECEIVE_BATCH: i64 = 1000;
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How long `stop` waits for the threads; one still in a database call is left to end
/// by itself (`STATEMENT_TIMEOUT` bounds it).
const STOP_WAIT: Duration = Duration::from_secs(5);
const STATEMENT_TIMEOUT: &str = "SET statement_timeout = 10000";
/// Names the session `hopper-outbox <namespace>/<slot>` in `pg_stat_activity`.
const NAME_SESSION: &str = "SELECT set_config('application_name', $1, false)";

const INSERT: &str = "INSERT INTO hopper_outbox (namespace, target_slot, source_slot, seq, body)
    SELECT $1, m.target, $2, m.seq, m.body
    FROM unnest($3::integer[], $4::bigint[], $5::bytea[]) AS m(target, seq, body)
    ON CONFLICT DO NOTHING";
const NOTIFY: &str = "SELECT pg_notify($1, t::text) FROM unnest($2::integer[]) AS t";
const READ: &str = "SELECT source_slot, seq, body FROM hopper_outbox
    WHERE namespace = $1 AND target_slot = $2 AND NOT (source_slot = ANY($3))
    ORDER BY source_slot, seq LIMIT $4";
const DELETE: &str = "DELETE FROM hopper_outbox o
    USING unnest($3::integer[], $4::bigint[]) AS c(source, through)
    WHERE o.namespace = $1 AND o.target_slot = $2 AND o.source_slot = c.source
    AND o.seq <= c.through";

/// The relay of one owned slot's cross-slot messages, and the sweeper of its id
/// registry rows; stops when the slot is fenced or given up (the engine closing gives it
/// up), when the engine's log fails, or on `stop` (also run when dropped).
pub struct OutboxRelay {
    control: Arc<Control>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl OutboxRelay {
    /// Starts delivering `engine`'s messages, receiving those for `slot`, and sweeping
    /// its registry rows.
    pub fn start(slot: &Slot, engine: EngineHandle) -> std::io::Result<OutboxRelay> {
        OutboxRelay::start_with(slot, engine, SweepTiming::default())
    }

    /// `start`, sweeping on `timing`.
    pub fn start_with(
        slot: &Slot,
        engine: EngineHandle,
        timing: SweepTiming,
    ) -> std::io::Result<OutboxRelay> {
        let control = Arc::new(Control::default());
        let relay = OutboxRelay {
            control: control.clone(),
            threads: Mutex::new(Vec::new()),
        };
        for run in [deliver_loop as fn(Worker), receive_loop, sweep_loop] {
            let worker = Worker::new(slot, engine.clone(), control.clone(), timing);
            let thread = std::thread::Builder::new()
                .name("hopper-outbox".into())
                .spawn(move || run(worker))?;
            relay.threads().push(thread);
        }
        Ok(relay)
    }

    /// Stops both threads and joins them, waiting at most `STOP_WAIT`. Idempotent.
    pub fn stop(&self) {
        let threads = std::mem::take(&mut *self.threads());
        let mut state = self.control.lock();
        state.stopped = true;
        self.control.cv.notify_all();
        let (state, _) = self
            .control
            .cv
            .wait_timeout_while(state, STOP_WAIT, |s| s.exited < threads.len())
            .unwrap_or_else(|p| p.into_inner());
        let all = state.exited >= threads.len();
        drop(state);
        for t in threads {
            if all || t.is_finished() {
                let _ = t.join();
            }
        }
    }

    fn threads(&self) -> MutexGuard<'_, Vec<JoinHandle<()>>> {
        self.threads.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for OutboxRelay {
    fn drop(&mut self) {
        self.stop();
    }
}

#[derive(Default)]
pub(crate) struct Control {
    state: Mutex<State>,
    cv: Condvar,
}

#[derive(Default)]
struct State {
    stopped: bool,
    /// Threads that ended, so `stop` knows when it can join them all.
    exited: usize,
}

impl Control {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn stopped(&self) -> bool {
        self.lock().stopped
    }

    /// Sleeps `d`, or less if stopped meanwhile.
    pub(crate) fn nap(&self, d: Duration) {
        let state = self.lock();
        let _ = self.cv.wait_timeout_while(state, d, |s| !s.stopped);
    }
}

/// What each thread holds: its own connection, its backoff, and the kinds of failure it
/// reported already (each is said once until that step succeeds again).
pub(crate) struct Worker {
    slot: Slot,
    pub(crate) engine: EngineHandle,
    pub(crate) control: Arc<Control>,
    pub(crate) namespace: String,
    pub(crate) me: i32,
    channel: String,
    client: Option<Client>,
    pub(crate) sweep: SweepTiming,
    backoff: Duration,
    said: HashSet<&'static str>,
    /// The receiver's sources that could not go on last round (a gap, or a message the
    /// engine refused), left out of the next round so that their rows cannot fill every
    /// batch and starve the other sources; read again the round after.
    skip: Vec<i32>,
}

impl Worker {
    fn new(slot: &Slot, engine: EngineHandle, control: Arc<Control>, sweep: SweepTiming) -> Worker {
        let namespace = slot.inner.namespace.clone();
        Worker {
            slot: slot.clone(),
            engine,
            control,
            channel: channel(&namespace),
            namespace,
            me: slot.inner.slot,
            client: None,
            sweep,
            backoff: BACKOFF_MIN,
            said: HashSet::new(),
            skip: Vec::new(),
        }
    }

    /// Whether to go on: not stopped, the slot still ours, its log not failed.
    pub(crate) fn running(&self) -> bool {
        !self.control.stopped() && self.slot.serving() && self.engine.log_failed().is_none()
    }

    /// The thread's connection, opened (and, for the receiver, listening) if needed.
    pub(crate) fn client(&mut self, listen: bool) -> Result<&mut Client, String> {
        if let Some(c) = self.client.take().filter(|c| !c.is_closed()) {
            return Ok(self.client.insert(c));
        }
        let mut c = connect(&self.slot.inner.url).map_err(|e| e.to_string())?;
        let name = format!("hopper-outbox {}/{}", self.namespace, self.me);
        c.batch_execute(STATEMENT_TIMEOUT)
            .and_then(|()| c.execute(NAME_SESSION, &[&name]))
            .and_then(|_| match listen {
                true => c.batch_execute(&format!("LISTEN {}", self.channel)),
                false => Ok(()),
            })
            .map_err(|e| ClusterError::Db(e).to_string())?;
        Ok(self.client.insert(c))
    }

    /// Says on stderr that `what` failed, once until it succeeds again.
    fn say(&mut self, what: &'static str, e: impl Display) {
        if self.said.insert(what) {
            eprintln!(
                "hopper: slot {} of namespace '{}': {what} failed (will retry): {e}",
                self.me, self.namespace
            );
        }
    }

    /// A failed step: said once, then a pause that doubles while failures go on.
    pub(crate) fn failed(&mut self, what: &'static str, e: impl Display) {
        self.say(what, e);
        self.control.nap(self.backoff);
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
    }

    pub(crate) fn succeeded(&mut self, what: &'static str) {
        self.said.remove(what);
    }

    /// A whole round went through: the next failure pauses briefly again.
    pub(crate) fn round_done(&mut self) {
        self.backoff = BACKOFF_MIN;
    }

    /// A database failure: the connection is dropped, so the next step reconnects.
    pub(crate) fn db_failed(&mut self, what: &'static str, e: postgres::Error) {
        self.client = None;
        self.failed(what, ClusterError::Db(e));
    }
}

/// A channel name is an identifier of at most 63 bytes: the namespace's hash (FNV-1a)
/// stands for it. A collision only wakes another cluster's receivers for nothing.
fn channel(namespace: &str) -> String {
    let hash = namespace.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("hopper_outbox_{hash:016x}")
}

/// Counts its thread out when it ends, however it ends, so `stop` knows when to join.
struct Exit(Arc<Control>);

impl Drop for Exit {
    fn drop(&mut self) {
        self.0.lock().exited += 1;
        self.0.cv.notify_all();
    }
}

/// Runs `round` until the relay stops. A panic (an engine bug) fails the round like
/// an error, so the thread goes on instead of leaving the slot's messages stuck.
fn relay_loop(mut w: Worker, what: &'static str, round: fn(&mut Worker)) {
    let _exit = Exit(w.control.clone());
    while w.running() {
        if catch_unwind(AssertUnwindSafe(|| round(&mut w))).is_err() {
            w.client = None;
            w.failed(what, "internal error");
        }
    }
}

fn deliver_loop(w: Worker) {
    relay_loop(w, "relaying cross-slot messages out", deliver);
}

fn sweep_loop(w: Worker) {
    relay_loop(w, "sweeping the id registry", sweep);
}

fn receive_loop(w: Worker) {
    relay_loop(w, "relaying cross-slot messages in", |w| {
        if !receive(w) {
            wait_notified(w);
        }
    });
}

/// Waits briefly for the engine's messages and delivers a batch of them.
fn deliver(w: &mut Worker) {
    if !w.engine.outbox_wait(DELIVER_WAIT) {
        return;
    }
    let batch = match w.engine.outbox_pending(DELIVER_BATCH) {
        Ok(b) => b,
        Err(e) => return w.failed("reading the engine's outbox", e),
    };
    w.succeeded("reading the engine's outbox");
    if batch.is_empty() {
        // Waited for and gone (delivered by a call racing this one): not a spin.
        return w.control.nap(DELIVER_WAIT);
    }
    let (ns, me, channel) = (w.namespace.clone(), w.me, w.channel.clone());
    let inserted = w
        .client(false)
        .and_then(|c| insert(c, &ns, me, &channel, &batch).map_err(|e| e.to_string()));
    if let Err(e) = inserted {
        w.client = None;
        return w.failed("delivering cross-slot messages", e);
    }
    w.succeeded("delivering cross-slot messages");
    let marked = last_seqs(&batch)
        .into_iter()
        .try_for_each(|(target, through)| w.engine.outbox_delivered(target, through));
    match marked {
        Ok(()) => {
            w.succeeded("recording cross-slot messages delivered");
            w.round_done();
        }
        // Handed out again next round: delivered twice, applied once.
        Err(e) => w.failed("recording cross-slot messages delivered", e),
    }
}

/// Inserts the batch and notifies its targets, in one transaction.
fn insert(
    client: &mut Client,
    namespace: &str,
    source: i32,
    channel: &str,
    batch: &[OutboxEntry],
) -> Result<(), ClusterError> {
    let targets: Vec<i32> = batch.iter().map(|m| m.target as i32).collect();
    let seqs: Vec<i64> = batch.iter().map(|m| m.seq as i64).collect();
    let bodies: Vec<&[u8]> = batch.iter().map(|m| m.body.as_slice()).collect();
    let notified: Vec<i32> = targets
        .iter()
        .copied()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut tx = client.transaction()?;
    tx.execute(INSERT, &[&namespace, &source, &targets, &seqs, &bodies])?;
    tx.execute(NOTIFY, &[&channel, &notified])?;
    tx.commit()?;
    Ok(())
}

/// The last seq of each target in the batch.
fn last_seqs(batch: &[OutboxEntry]) -> BTreeMap<u32, u64> {
    let mut last = BTreeMap::new();
    for m in batch {
        let seq = last.entry(m.target).or_insert(m.seq);
        *seq = (*seq).max(m.seq);
    }
    last
}

/// Applies one batch of this slot's rows and deletes what the synced cursors cover.
/// Whether to go on at once (a full batch that made progress).
fn receive(w: &mut Worker) -> bool {
    let (ns, me) = (w.namespace.clone(), w.me);
    let skip = std::mem::take(&mut w.skip);
    let rows = match w.client(true) {
        Ok(c) => c.query(READ, &[&ns, &me, &skip, &RECEIVE_BATCH]),
        Err(e) => {
            w.failed("connecting to receive cross-slot messages", e);
            return false;
        }
    };
    let rows = match rows {
        Ok(r) => r,
        Err(e) => {
            w.db_failed("reading cross-slot messages", e);
            return false;
        }
    };
    w.succeeded("connecting to receive cross-slot messages");
    w.succeeded("reading cross-slot messages");
    if rows.is_empty() {
        w.round_done();
        return false;
    }
    let mut sources = BTreeSet::new();
    let mut blocked = BTreeSet::new();
    let mut applied = 0;
    for row in &rows {
        let (source, seq, body): (i32, i64, &[u8]) = (row.get(0), row.get(1), row.get(2));
        if blocked.contains(&source) {
            continue;
        }
        sources.insert(source);
        match w.engine.apply_slot_message(source as u32, seq as u64, body) {
            Ok(Applied::Done | Applied::AlreadyApplied) => applied += 1,
            Ok(Applied::Gap { expected }) => {
                blocked.insert(source);
                w.say(
                    "receiving cross-slot messages in order",
                    format!("message {seq} of slot {source} arrived before {expected}"),
                );
            }
            Err(e) => {
                blocked.insert(source);
                w.say("applying a cross-slot message", e);
            }
        }
    }
    w.skip = blocked.into_iter().collect();
    // Read before the sync, so the sync covers every message they count.
    let (synced, through): (Vec<i32>, Vec<i64>) = sources
        .iter()
        .map(|&s| (s, w.engine.inbox_cursor(s as u32) as i64))
        .filter(|&(_, cursor)| cursor > 0)
        .unzip();
    if let Err(e) = w.engine.sync_all() {
        w.failed("syncing applied cross-slot messages", e);
        return false;
    }
    w.succeeded("syncing applied cross-slot messages");
    if synced.is_empty() {
        w.round_done();
        return false;
    }
    let deleted = match w.client(true) {
        Ok(c) => c.execute(DELETE, &[&ns, &me, &synced, &through]),
        Err(e) => {
            w.failed("connecting to receive cross-slot messages", e);
            return false;
        }
    };
    if let Err(e) = deleted {
        // Kept rows are applied again as `AlreadyApplied` and deleted next round.
        w.db_failed("deleting applied cross-slot messages", e);
        return false;
    }
    w.succeeded("deleting applied cross-slot messages");
    w.round_done();
    applied > 0 && rows.len() as i64 == RECEIVE_BATCH
}

/// Waits up to `RECEIVE_POLL` for a notification naming this slot.
fn wait_notified(w: &mut Worker) {
    let Some(client) = w.client.as_mut() else {
        w.control.nap(RECEIVE_POLL);
        return;
    };
    if let Err(e) = notified(client, &w.me.to_string(), Instant::now() + RECEIVE_POLL) {
        w.db_failed("waiting for cross-slot messages", e);
    }
}

/// Returns at the first notification whose payload is `mine`, or at `deadline`.
fn notified(client: &mut Client, mine: &str, deadline: Instant) -> Result<(), postgres::Error> {
    let mut notes = client.notifications();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        match notes.timeout_iter(left).next()? {
            Some(n) if n.payload() != mine => {}
            _ => return Ok(()),
        }
    }
}
