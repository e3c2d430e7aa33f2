//! Deletes the id registry's rows (`hopper_ids`) that name this slot for ids its engine
//! no longer holds (the job was removed, cleaned or never made), so the table follows
//! the jobs alive rather than every id ever pushed. A thread of the slot's relay
//! (`outbox.rs`), so it runs only while this broker owns the slot.
//!
//! Why a row is never swept from under a push: every claim, move and batch registration
//! touches its row before the push goes to the slot, and only rows untouched for
//! `min_age` are deleted, with that condition checked again by the `DELETE` itself
//! (under the row's lock). A push whose claim commits before the delete keeps its row; a
//! claim after it inserts a fresh one. What `min_age` must cover is the time from a
//! claim to its job's creation: a front's forward (bounded by its routing wait) or, for
//! a flow's children, their cross-slot message.

use std::time::Duration;

use crate::outbox::Worker;

/// When and what to sweep. `OutboxRelay::start` uses the default; tests shorten it.
#[derive(Debug, Clone, Copy)]
pub struct SweepTiming {
    /// Between two passes over the slot's rows.
    pub every: Duration,
    /// A row touched more recently than this is kept, held or not.
    pub min_age: Duration,
}

impl Default for SweepTiming {
    fn default() -> Self {
        SweepTiming {
            every: Duration::from_secs(60),
            min_age: Duration::from_secs(600),
        }
    }
}

/// Rows read (and checked against the engine under one lock) per statement.
const PAGE: i64 = 500;

const PAGE_OF_ROWS: &str = "SELECT job_id FROM hopper_ids
    WHERE namespace = $1 AND slot = $2 AND job_id > $3
    AND touched < now() - make_interval(secs => $4)
    ORDER BY job_id LIMIT $5";
const DELETE_ROWS: &str = "DELETE FROM hopper_ids
    WHERE namespace = $1 AND slot = $2 AND job_id = ANY($3)
    AND touched < now() - make_interval(secs => $4)";

/// A pause of `every`, then one pass over the slot's old rows, a page at a time. The
/// pause comes first so that a new owner applies the cross-slot messages waiting for it
/// (children of flows, whose rows may be old) before its first pass.
pub(crate) fn sweep(w: &mut Worker) {
    w.control.nap(w.sweep.every);
    let (ns, me) = (w.namespace.clone(), w.me);
    let age = w.sweep.min_age.as_secs_f64();
    let mut after = String::new();
    while w.running() {
        let client = match w.client(false) {
            Ok(c) => c,
            Err(e) => return w.failed("connecting to sweep the id registry", e),
        };
        let ids: Vec<String> = match client.query(PAGE_OF_ROWS, &[&ns, &me, &after, &age, &PAGE]) {
            Ok(rows) => rows.iter().map(|r| r.get(0)).collect(),
            Err(e) => return w.db_failed("reading the id registry", e),
        };
        let Some(last) = ids.last() else { break };
        after = last.clone();
        let gone: Vec<&String> = w.engine.with(|e| {
            ids.iter()
                .filter(|id| e.state_by_id(id).is_none())
                .collect()
        });
        if !gone.is_empty() {
            let deleted = match w.client(false) {
                Ok(c) => c.execute(DELETE_ROWS, &[&ns, &me, &gone, &age]),
                Err(e) => return w.failed("connecting to sweep the id registry", e),
            };
            if let Err(e) = deleted {
                return w.db_failed("sweeping the id registry", e);
            }
        }
        if (ids.len() as i64) < PAGE {
            break;
        }
    }
    w.succeeded("connecting to sweep the id registry");
    w.succeeded("reading the id registry");
    w.succeeded("sweeping the id registry");
    w.round_done();
}
