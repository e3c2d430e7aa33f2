//! Which broker should own which slot: the live broker ranked first for the slot by
//! rendezvous hashing (`hopper_core::cluster_slots`), so slots spread over the brokers
//! and a broker joining or leaving moves only its own share.
//!
//! The ranking only steers; the lease and epoch keep it safe. A standby asks for its
//! turn before it tries to take a slot: it is its turn if it ranks first among the
//! live brokers, or if the slot has stood vacant (its owner's lease over, or its owner's
//! session gone) for `VACANT_GRACE`, since the broker ranked first may be the one that
//! just died (its row looks live for a few seconds more). An owner that is no longer
//! ranked first, once the better broker has been up for `SETTLE_MS`, hands the slot
//! over cleanly (`Slot::handoff_to`).

use std::time::{Duration, Instant};

use hopper_core::cluster_slots::preferred_owner;
use postgres::Client;

/// A broker whose front refreshed its row (every second) within this is live.
pub const LIVE_MS: i64 = 3_000;
/// A broker up for less than this takes no slot from a live owner (a restart loop would
/// otherwise move slots back and forth).
pub const SETTLE_MS: i64 = 3_000;
/// How long a slot stands vacant before a standby not ranked first takes it.
pub const VACANT_GRACE: Duration = Duration::from_millis(1_000);

const NOW_MS: &str = "(extract(epoch from clock_timestamp()) * 1000)::bigint";

/// Live brokers of `namespace`; with `settled`, only those up for `SETTLE_MS`.
fn live_brokers(
    client: &mut Client,
    namespace: &str,
    settled: bool,
) -> Result<Vec<String>, postgres::Error> {
    let rows = client.query(
        &format!(
            "SELECT broker_id FROM hopper_brokers WHERE namespace = $1
             AND seen_ms >= {NOW_MS} - $2 AND (NOT $3 OR started_ms <= {NOW_MS} - $4)"
        ),
        &[&namespace, &LIVE_MS, &settled, &SETTLE_MS],
    )?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// The broker that should own `slot` among the live ones and `me`.
pub(crate) fn preferred(
    client: &mut Client,
    namespace: &str,
    me: &str,
    slot: u32,
    settled: bool,
) -> Result<String, postgres::Error> {
    let mut brokers = live_brokers(client, namespace, settled)?;
    brokers.push(me.to_string());
    let best = preferred_owner(brokers.iter().map(String::as_str), slot).unwrap_or(me);
    Ok(best.to_string())
}

/// Whether nobody serves `slot`: no row yet, its lease over, or its owner's session
/// (which holds the slot's advisory lock) gone.
fn vacant(client: &mut Client, namespace: &str, slot: i32) -> Result<bool, postgres::Error> {
    let row = client.query_one(
        &format!(
            "SELECT coalesce((SELECT lease_until_ms < {NOW_MS} OR (owner_locked AND NOT EXISTS (
                 SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted
                 AND classid = hashtext($1)::oid AND objid = ($2::integer)::oid AND objsubid = 2))
             FROM hopper_slots WHERE namespace = $1 AND slot = $2), true)"
        ),
        &[&namespace, &slot],
    )?;
    Ok(row.get(0))
}

/// A standby's memory between attempts: since when it has seen the slot vacant.
#[derive(Default)]
pub struct Turn {
    vacant_since: Option<Instant>,
}

impl Turn {
    /// Whether this standby should try to take `slot` now; else the broker it waits for.
    pub(crate) fn check(
        &mut self,
        client: &mut Client,
        namespace: &str,
        me: &str,
        slot: i32,
        slots: u32,
    ) -> Result<Result<(), String>, postgres::Error> {
        if slots <= 1 {
            return Ok(Ok(())); // one slot: whoever is first takes it
        }
        let best = preferred(client, namespace, me, slot as u32, false)?;
        if best == me {
            return Ok(Ok(()));
        }
        if !vacant(client, namespace, slot)? {
            self.vacant_since = None;
            return Ok(Err(best));
        }
        let since = *self.vacant_since.get_or_insert_with(Instant::now);
        if since.elapsed() >= VACANT_GRACE {
            Ok(Ok(()))
        } else {
            Ok(Err(best))
        }
    }
}
