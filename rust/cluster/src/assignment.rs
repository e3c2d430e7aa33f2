//! Which broker should own which slot: the live broker ranked first for the slot by
//! rendezvous hashing (`hopper_core::cluster_slots`), so slots spread over the brokers
//! and a broker joining or leaving moves only its own share.
//!
//! Only brokers that can take the slot are ranked: those with a standby for it running.
//! A standby says so by holding a shared advisory lock keyed by the slot and its broker
//! on its watch session, so a standby that never started (its slot server failed) or
//! whose process died is out of the ranking at once, with no heartbeat to wait for.
//!
//! The ranking only steers; the lease and epoch keep it safe. A standby tries to take
//! a slot only when it is vacant (its owner's lease over, or its owner's session gone),
//! and then at once if its broker ranks first among the live brokers with a standby for
//! the slot, or after the slot stood vacant for `VACANT_GRACE` (the one ranked first
//! may be slow to look). An owner that is no longer ranked first, once the better broker
//! has been up for `SETTLE_MS`, hands the slot over cleanly (`Slot::handoff_to`).

use std::time::{Duration, Instant};

use hopper_core::cluster_slots::preferred_owner;
use postgres::Client;

use crate::connect::connect;
use crate::error::ClusterError;
use crate::schema::{fix_slot_count, migrate};
use crate::slot::{Slot, SlotConfig};

/// A broker whose front refreshed its row (every second) within this is live.
pub const LIVE_MS: i64 = 3_000;
/// A broker up for less than this takes no slot from a live owner (a restart loop would
/// otherwise move slots back and forth).
pub const SETTLE_MS: i64 = 3_000;
/// How long a slot stands vacant before a standby not ranked first takes it.
pub const VACANT_GRACE: Duration = Duration::from_millis(1_000);

const NOW_MS: &str = "(extract(epoch from clock_timestamp()) * 1000)::bigint";

/// The first key of a standby's advisory lock for `slot` (the second is its broker's).
fn standby_key(namespace: &str, slot: u32) -> String {
    format!("{namespace} standby {slot}")
}

/// Live brokers of `namespace` with a standby for `slot` running; with `settled`, only
/// those up for `SETTLE_MS`.
fn live_brokers(
    client: &mut Client,
    namespace: &str,
    slot: u32,
    settled: bool,
) -> Result<Vec<String>, postgres::Error> {
    let rows = client.query(
        &format!(
            "SELECT broker_id FROM hopper_brokers b WHERE namespace = $1
             AND seen_ms >= {NOW_MS} - $2 AND (NOT $3 OR started_ms <= {NOW_MS} - $4)
             AND EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted
                 AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
                 AND classid = hashtext($5)::oid AND objid = hashtext(b.broker_id)::oid
                 AND objsubid = 2)"
        ),
        &[
            &namespace,
            &LIVE_MS,
            &settled,
            &SETTLE_MS,
            &standby_key(namespace, slot),
        ],
    )?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// The broker that should own `slot` among the live ones with a standby for it, and `me`.
pub(crate) fn preferred(
    client: &mut Client,
    namespace: &str,
    me: &str,
    slot: u32,
    settled: bool,
) -> Result<String, postgres::Error> {
    let mut brokers = live_brokers(client, namespace, slot, settled)?;
    brokers.push(me.to_string());
    let best = preferred_owner(brokers.iter().map(String::as_str), slot).unwrap_or(me);
    Ok(best.to_string())
}

/// Who holds the slot while its lease runs and its owner's session lives (the owner,
/// its lease's end); `None` when nobody serves it: no row yet, its lease over, or its
/// owner's session (which holds the slot's advisory lock) gone.
fn holder(
    client: &mut Client,
    config: &SlotConfig,
) -> Result<Option<(String, i64)>, postgres::Error> {
    let now = config.clock.as_ref().map(|c| c.now_ms() as i64);
    let row = client.query_opt(
        &format!(
            "SELECT owner, lease_until_ms FROM hopper_slots WHERE namespace = $1 AND slot = $2
             AND lease_until_ms >= coalesce($3::bigint, {NOW_MS}) AND NOT (owner_locked AND NOT EXISTS (
                 SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted
                 AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
                 AND classid = hashtext($1)::oid AND objid = ($2::integer)::oid AND objsubid = 2))"
        ),
        &[&config.namespace, &config.slot, &now],
    )?;
    Ok(row.map(|r| (r.get(0), r.get(1))))
}

/// A slot server waiting for its slot. It watches on one connection of its own and
/// opens the log's session (`Slot::acquire`) only once the slot is vacant and it is this
/// broker's turn, so a cluster's many standbys cost the database no new session per
/// probe.
#[derive(Default)]
pub struct Standby {
    client: Option<Client>,
    /// Since when this standby has seen the slot vacant (not ranked first, it waits
    /// `VACANT_GRACE`).
    vacant_since: Option<Instant>,
}

impl Standby {
    /// Takes the slot if it is vacant and this broker's turn; else `LeaseHeld` (someone
    /// serves it) or `NotYourTurn` (vacant, but another broker ranks first and the grace
    /// has not passed).
    pub fn take(&mut self, config: &SlotConfig) -> Result<Slot, ClusterError> {
        if self.client.as_ref().is_none_or(|c| c.is_closed()) {
            let mut c = connect(&config.url)?;
            migrate(&mut c)?;
            fix_slot_count(&mut c, &config.namespace, config.slots)?;
            // Held while this session lives: this broker can take the slot.
            let key = standby_key(&config.namespace, config.slot as u32);
            c.execute(
                "SELECT pg_advisory_lock_shared(hashtext($1), hashtext($2))",
                &[&key, &config.broker_id],
            )?;
            self.client = Some(c);
        }
        let waiting = self.waiting(config).inspect_err(|_| self.client = None)?;
        match waiting {
            Some(e) => Err(e),
            None => Slot::acquire(config),
        }
    }

    /// Why not to take the slot now, if so.
    fn waiting(&mut self, config: &SlotConfig) -> Result<Option<ClusterError>, ClusterError> {
        let client = self.client.as_mut().expect("connected by take");
        let (ns, slot) = (&config.namespace, config.slot);
        if let Some((owner, lease_until_ms)) = holder(client, config)? {
            self.vacant_since = None;
            return Ok(Some(ClusterError::LeaseHeld {
                owner,
                lease_until_ms,
            }));
        }
        if config.slots <= 1 {
            return Ok(None); // one slot: whoever is first takes it
        }
        let best = preferred(client, ns, &config.broker_id, slot as u32, false)?;
        let since = *self.vacant_since.get_or_insert_with(Instant::now);
        if best == config.broker_id || since.elapsed() >= VACANT_GRACE {
            Ok(None)
        } else {
            Ok(Some(ClusterError::NotYourTurn { preferred: best }))
        }
    }
}
