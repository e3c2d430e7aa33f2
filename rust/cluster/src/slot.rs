//! Owning a slot: a lease row per slot (owner, epoch, lease end) plus a session-level
//! advisory lock held by the owner's connection.
//!
//! - Taking a slot bumps its epoch; it is allowed once the lease has ended, or at once
//!   when the slot's advisory lock is free although the row says the owner held it
//!   (the owner's session is gone: a killed process, a closed connection).
//! - The lock only speeds takeover up; the epoch is the safety: every write of the log
//!   checks it under `FOR KEY SHARE` of the slot row in the same statement, which a
//!   takeover's `FOR UPDATE` conflicts with, so a stale owner writes nothing once a
//!   takeover has committed (see `pg_store.rs`), and the new owner reads the log only
//!   after that. A renewal's plain `UPDATE` (no key column) does not conflict with it,
//!   and runs on a connection of its own: a long snapshot insert never delays a renewal
//!   until the lease runs out.
//! - Time is PostgreSQL's clock (`clock_timestamp()`), the same for every broker, unless
//!   the config injects a clock (tests).

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use hopper_core::Clock;
use postgres::{Client, Statement};

use crate::assignment;
use crate::connect::connect;
use crate::error::ClusterError;
use crate::schema::{fix_slot_count, migrate};

/// Milliseconds now: the injected clock's (`$n`), else PostgreSQL's.
macro_rules! now_ms {
    ($n:literal) => {
        concat!(
            "coalesce($",
            $n,
            "::bigint, (extract(epoch from clock_timestamp()) * 1000)::bigint)"
        )
    };
}

/// `SlotConfig::snapshot_chunk_bytes` unless a test wants many chunks.
pub const SNAPSHOT_CHUNK_BYTES: usize = 64 << 20;

#[derive(Clone)]
pub struct SlotConfig {
    /// A libpq-style connection string or `postgresql://` URL.
    pub url: String,
    /// Every row is keyed by it, so several clusters (or tests) can share a database.
    pub namespace: String,
    pub slot: i32,
    /// The cluster's slot count, fixed on its first start (`fix_slot_count`).
    pub slots: u32,
    /// Unique among live brokers.
    pub broker_id: String,
    pub lease_ms: u64,
    /// Where this broker's backends (HTTP, TCP protocol) listen for the fronts that relay
    /// to the owner: recorded on the slot row when it takes the slot.
    pub advertise_http: String,
    pub advertise_tcp: String,
    /// A snapshot is stored in rows of at most this many bytes (a bytea holds 1 GiB).
    pub snapshot_chunk_bytes: usize,
    /// `None`: PostgreSQL's clock; tests inject one.
    pub clock: Option<Arc<dyn Clock>>,
}

/// A slot this broker owns, with the connection that holds its advisory lock and
/// writes its log. Also its `LogStore` (`pg_store.rs`).
#[derive(Clone)]
pub struct Slot {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    client: Mutex<Client>,
    /// Renewals' own connection, opened on first use and reopened after a failure.
    renewer: Mutex<Option<Client>>,
    pub url: String,
    pub namespace: String,
    pub slot: i32,
    slots: u32,
    broker_id: String,
    pub epoch: i64,
    lease_ms: i64,
    pub snapshot_chunk: usize,
    clock: Option<Arc<dyn Clock>>,
    /// `LIVE`, `RELEASED`, or the newer epoch a write found: once not live, every write
    /// fails without asking the database.
    state: AtomicI64,
    /// Whether this session holds the slot's advisory lock.
    locked: AtomicBool,
    /// Where `local_ms` counts from when no clock is injected.
    origin: Instant,
    /// Local time (`local_ms`) at which the lease surely ends: counted from when the
    /// renewal was sent, so never later than the end PostgreSQL recorded. Past it the
    /// owner writes nothing until a renewal succeeds (it stops serving by itself, before
    /// anyone can take over).
    valid_until: AtomicI64,
    pub append: Statement,
    /// The broker this slot should move to (ranked first and settled), once a renewal
    /// found one: the owner hands the slot over by closing.
    handoff: Mutex<Option<String>>,
}

const LIVE: i64 = 0;
const RELEASED: i64 = -1;

const TRY_LOCK: &str = "SELECT pg_try_advisory_lock(hashtext($1), $2)";
const UNLOCK: &str = "SELECT pg_advisory_unlock(hashtext($1), $2)";

/// Inserts the batch if the slot's epoch is still `$3`; answers the current epoch and
/// whether a row went in (none on a retried batch that is already there).
const APPEND: &str = r#"
WITH s AS (SELECT epoch FROM hopper_slots WHERE namespace = $1 AND slot = $2 FOR KEY SHARE),
     i AS (INSERT INTO hopper_log (namespace, slot, segment, "offset", epoch, frames)
           SELECT $1, $2, $4, $5, $3, $6 FROM s WHERE s.epoch = $3
           ON CONFLICT DO NOTHING RETURNING 1)
SELECT (SELECT epoch FROM s), (SELECT count(*) FROM i)"#;

impl Slot {
    /// Connects, migrates the schema and takes the slot (epoch + 1), or says who holds it.
    pub fn acquire(config: &SlotConfig) -> Result<Slot, ClusterError> {
        let mut client = connect(&config.url)?;
        migrate(&mut client)?;
        fix_slot_count(&mut client, &config.namespace, config.slots)?;
        let (ns, slot) = (&config.namespace, &config.slot);
        let locked: bool = client.query_one(TRY_LOCK, &[ns, slot])?.get(0);
        let origin = Instant::now();
        let sent = local_ms(&config.clock, origin);
        let taken = take_over(&mut client, config, locked);
        let epoch = match taken {
            Ok(epoch) => epoch,
            Err(e) => {
                if locked {
                    let _ = client.query_one(UNLOCK, &[ns, slot]);
                }
                return Err(e);
            }
        };
        let append = client.prepare(APPEND)?;
        Ok(Slot {
            inner: Arc::new(Inner {
                client: Mutex::new(client),
                renewer: Mutex::new(None),
                url: config.url.clone(),
                namespace: config.namespace.clone(),
                slot: config.slot,
                slots: config.slots,
                broker_id: config.broker_id.clone(),
                epoch,
                lease_ms: config.lease_ms as i64,
                snapshot_chunk: config.snapshot_chunk_bytes.max(1),
                clock: config.clock.clone(),
                state: AtomicI64::new(LIVE),
                locked: AtomicBool::new(locked),
                origin,
                valid_until: AtomicI64::new(sent + config.lease_ms as i64),
                append,
                handoff: Mutex::new(None),
            }),
        })
    }

    /// The broker this slot should move to, if the last renewal found one.
    pub fn handoff_to(&self) -> Option<String> {
        let held = self.inner.handoff.lock().unwrap_or_else(|p| p.into_inner());
        held.clone()
    }

    /// After a renewal: notes whether a settled live broker now ranks first for the slot.
    pub(crate) fn check_handoff(&self) -> Result<(), ClusterError> {
        let i = &self.inner;
        if i.slots <= 1 {
            return Ok(());
        }
        let best = i.on_renewer(|c| {
            assignment::preferred(c, &i.namespace, &i.broker_id, i.slot as u32, true)
        })?;
        *i.handoff.lock().unwrap_or_else(|p| p.into_inner()) =
            (best != i.broker_id).then_some(best);
        Ok(())
    }

    pub fn epoch(&self) -> i64 {
        self.inner.epoch
    }

    pub fn lease_ms(&self) -> u64 {
        self.inner.lease_ms as u64
    }

    /// Why this broker can no longer serve the slot, if so: fenced, given up, or its
    /// session (and the advisory lock with it) gone. A lapsed lease is not lost: a
    /// renewal may still succeed. The session is pinged when idle: the driver notices a
    /// cut connection only when it next uses it, and once the lock is gone another
    /// broker may take the slot at once. Never waits for the log's connection: busy, it
    /// is in use, and a failure there fails the log.
    pub fn lost(&self) -> Option<String> {
        if let Err(e) = self.inner.check_state() {
            return Some(e.to_string());
        }
        let Ok(mut c) = self.inner.client.try_lock() else {
            return None;
        };
        let gone = c.is_closed() || c.simple_query("SELECT 1").is_err();
        gone.then(|| "the connection to PostgreSQL was lost".into())
    }

    /// Whether this broker still owns the slot: neither fenced nor given up (a lapsed
    /// lease may still be renewed).
    pub(crate) fn serving(&self) -> bool {
        self.inner.check_state().is_ok()
    }

    /// Whether this session holds the slot's advisory lock.
    pub fn holds_lock(&self) -> bool {
        self.inner.locked.load(Ordering::Acquire)
    }

    /// Extends the lease (and takes the advisory lock if it could not before). Returns
    /// the new lease end; `Fenced` once another broker took the slot.
    pub fn renew(&self) -> Result<i64, ClusterError> {
        let i = &self.inner;
        i.check_state()?;
        let sent = i.local_ms();
        if !i.locked.load(Ordering::Acquire) {
            // The lock must belong to the log's session, which dies with the process;
            // while that session is busy (a snapshot insert), try at the next renewal.
            if let Ok(mut c) = i.client.try_lock() {
                let got: bool = c.query_one(TRY_LOCK, &[&i.namespace, &i.slot])?.get(0);
                i.locked.store(got, Ordering::Release);
            }
        }
        let renewed = i.on_renewer(|c| {
            c.query_opt(
                concat!(
                    "UPDATE hopper_slots SET lease_until_ms = ",
                    now_ms!(4),
                    " + $5, owner_locked = owner_locked OR $6",
                    " WHERE namespace = $1 AND slot = $2 AND epoch = $3 RETURNING lease_until_ms"
                ),
                &[
                    &i.namespace,
                    &i.slot,
                    &i.epoch,
                    &i.now(),
                    &i.lease_ms,
                    &i.locked.load(Ordering::Acquire),
                ],
            )
        })?;
        match renewed {
            Some(row) => {
                i.valid_until.store(sent + i.lease_ms, Ordering::Release);
                Ok(row.get(0))
            }
            None => {
                let mut c = i.client();
                let current = current_epoch(&mut c, &i.namespace, i.slot)?;
                Err(i.fence(&mut c, current))
            }
        }
    }
}

/// The takeover transaction: decides under the row lock whether the slot is free.
fn take_over(client: &mut Client, config: &SlotConfig, locked: bool) -> Result<i64, ClusterError> {
    let now = config.clock.as_ref().map(|c| c.now_ms() as i64);
    let (ns, slot) = (&config.namespace, &config.slot);
    let mut tx = client.transaction()?;
    tx.execute(
        "INSERT INTO hopper_slots (namespace, slot, owner, epoch, lease_until_ms, owner_locked)
         VALUES ($1, $2, '', 0, 0, false) ON CONFLICT DO NOTHING",
        &[ns, slot],
    )?;
    let row = tx.query_one(
        concat!(
            "SELECT owner, lease_until_ms, owner_locked, ",
            now_ms!(3),
            " FROM hopper_slots WHERE namespace = $1 AND slot = $2 FOR UPDATE"
        ),
        &[ns, slot, &now],
    )?;
    let (owner, lease_until_ms, owner_locked, now_ms): (String, i64, bool, i64) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    let owner_gone = locked && owner_locked;
    if lease_until_ms > now_ms && !owner_gone {
        return Err(ClusterError::LeaseHeld {
            owner,
            lease_until_ms,
        });
    }
    let epoch: i64 = tx
        .query_one(
            "UPDATE hopper_slots SET owner = $3, epoch = epoch + 1, lease_until_ms = $4::bigint + $5::bigint,
             owner_locked = $6, owner_http = $7, owner_tcp = $8
             WHERE namespace = $1 AND slot = $2 RETURNING epoch",
            &[
                ns,
                slot,
                &config.broker_id,
                &now_ms,
                &(config.lease_ms as i64),
                &locked,
                &config.advertise_http,
                &config.advertise_tcp,
            ],
        )?
        .get(0);
    tx.commit()?;
    Ok(epoch)
}

fn local_ms(clock: &Option<Arc<dyn Clock>>, origin: Instant) -> i64 {
    match clock {
        Some(c) => c.now_ms() as i64,
        None => origin.elapsed().as_millis() as i64,
    }
}

fn current_epoch(c: &mut Client, namespace: &str, slot: i32) -> Result<i64, ClusterError> {
    let row = c.query_opt(
        "SELECT epoch FROM hopper_slots WHERE namespace = $1 AND slot = $2",
        &[&namespace, &slot],
    )?;
    Ok(row.map_or(0, |r| r.get(0)))
}

impl Inner {
    pub fn client(&self) -> MutexGuard<'_, Client> {
        self.client.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the renewals' connection, opening it if needed; a failure drops it,
    /// so the next renewal reconnects.
    fn on_renewer<R>(
        &self,
        f: impl FnOnce(&mut Client) -> Result<R, postgres::Error>,
    ) -> Result<R, ClusterError> {
        let mut held = self.renewer.lock().unwrap_or_else(|p| p.into_inner());
        let client = match held.take().filter(|c| !c.is_closed()) {
            Some(c) => held.insert(c),
            None => held.insert(connect(&self.url)?),
        };
        let out = f(client);
        if out.is_err() {
            *held = None;
        }
        Ok(out?)
    }

    /// The injected clock's time, for `now_ms!`.
    pub fn now(&self) -> Option<i64> {
        self.clock.as_ref().map(|c| c.now_ms() as i64)
    }

    /// Milliseconds on the injected clock, or since `origin`.
    fn local_ms(&self) -> i64 {
        local_ms(&self.clock, self.origin)
    }

    /// Refuses a write once the slot is fenced or released, or while the lease has
    /// run out unrenewed.
    pub fn check_writable(&self) -> Result<(), ClusterError> {
        self.check_state()?;
        if self.local_ms() >= self.valid_until.load(Ordering::Acquire) {
            return Err(ClusterError::LeaseLapsed);
        }
        Ok(())
    }

    fn check_state(&self) -> Result<(), ClusterError> {
        match self.state.load(Ordering::Acquire) {
            LIVE => Ok(()),
            RELEASED => Err(ClusterError::Released),
            current => Err(ClusterError::Fenced {
                mine: self.epoch,
                current,
            }),
        }
    }

    /// Records that the slot moved on to `current`: this broker stops writing and lets
    /// the advisory lock go, so the new owner can hold it.
    pub fn fence(&self, c: &mut Client, current: i64) -> ClusterError {
        self.state.store(current, Ordering::Release);
        if self.locked.swap(false, Ordering::AcqRel) {
            let _ = c.query_one(UNLOCK, &[&self.namespace, &self.slot]);
        }
        ClusterError::Fenced {
            mine: self.epoch,
            current,
        }
    }

    /// Runs `f` in a transaction that holds the slot row `FOR KEY SHARE` and has checked the
    /// epoch, so a takeover waits for it or it sees the takeover and writes nothing.
    pub fn fenced_tx<R>(
        &self,
        f: impl FnOnce(&mut postgres::Transaction<'_>) -> Result<R, postgres::Error>,
    ) -> Result<R, ClusterError> {
        self.check_writable()?;
        let mut c = self.client();
        let mut tx = c.transaction()?;
        let current: Option<i64> = tx
            .query_opt(
                "SELECT epoch FROM hopper_slots WHERE namespace = $1 AND slot = $2 FOR KEY SHARE",
                &[&self.namespace, &self.slot],
            )?
            .map(|r| r.get(0));
        if current != Some(self.epoch) {
            drop(tx);
            return Err(self.fence(&mut c, current.unwrap_or(0)));
        }
        let out = f(&mut tx)?;
        tx.commit()?;
        Ok(out)
    }

    /// Ends the lease at once and drops the advisory lock, so another broker can take
    /// the slot without waiting (a clean shutdown). Best effort: a fenced or
    /// disconnected owner has nothing to give up.
    pub fn give_up(&self) {
        if self.state.swap(RELEASED, Ordering::AcqRel) != LIVE {
            return;
        }
        let mut c = self.client();
        let _ = c.execute(
            "UPDATE hopper_slots SET lease_until_ms = 0 WHERE namespace = $1 AND slot = $2 AND epoch = $3",
            &[&self.namespace, &self.slot, &self.epoch],
        );
        if self.locked.swap(false, Ordering::AcqRel) {
            let _ = c.query_one(UNLOCK, &[&self.namespace, &self.slot]);
        }
    }

    pub fn broker_id(&self) -> &str {
        &self.broker_id
    }
}
