//! bunqueue's per-queue stall and dead-letter settings: `SetStallConfig`,
//! `GetStallConfig`, `SetDlqConfig`, `GetDlqConfig` (`handlers/advanced/queue.js`).
//!
//! A `Set…` merges the given fields into the queue's current settings, as the reference
//! does. Numbers are read like its `sanitizeConfigNumbers` (a number, a numeric string
//! or a boolean; anything else leaves the field as it was), then as `DlqShard.setConfig`
//! reads them: whole ms (rounded down), at least 0, `maxEntries` at least 1, `maxAge`
//! `null` for no age bound. Stall settings are read the same way (the reference stores
//! whatever it is given; hopper keeps only values it can apply: booleans for `enabled`,
//! numbers for the rest, and no keys of its own).

use super::commands::{engine_message, ok, ok_with, queue_name, Res};
use super::value::Value;
use crate::engine::Engine;
use crate::queue_config::{DlqConfig, DlqPatch, StallConfig, StallPatch};

/// `toFiniteNumber`: a number, a numeric string (blank is 0) or a boolean (1, 0).
fn finite(v: &Value) -> Option<f64> {
    let n = match v {
        Value::Str(s) if s.trim().is_empty() => 0.0,
        Value::Str(s) => s.trim().parse::<f64>().ok()?,
        Value::Bool(b) => f64::from(u8::from(*b)),
        Value::BigInt(i) => *i as f64,
        v => v.as_number()?,
    };
    n.is_finite().then_some(n)
}

/// A whole, non-negative number of the config field `key` (absent, null or not a
/// number: `None`).
fn whole(config: &Value, key: &str) -> Option<u64> {
    config
        .field(key)
        .and_then(finite)
        .map(|n| n.max(0.0).floor() as u64)
}

fn config_of(req: &Value) -> Option<&Value> {
    req.field("config").filter(|c| matches!(c, Value::Map(_)))
}

/// `{queue, config:{enabled?, stallInterval?, maxStalls?, gracePeriod?}}` → `OK`.
pub(super) fn set_stall_config(engine: &mut Engine, req: &Value) -> Res<Value> {
    let queue = queue_name(req)?;
    // The reference accepts a missing or non-object config and changes nothing.
    let patch = config_of(req).map_or_else(StallPatch::default, |c| StallPatch {
        enabled: c.field("enabled").and_then(Value::as_bool),
        stall_interval_ms: whole(c, "stallInterval"),
        max_stalls: whole(c, "maxStalls"),
        grace_period_ms: whole(c, "gracePeriod"),
    });
    engine
        .set_stall_config(queue, &patch)
        .map_err(engine_message)?;
    Ok(ok())
}

/// `{queue}` → `{ok, config:{enabled, stallInterval, maxStalls, gracePeriod}}`.
pub(super) fn get_stall_config(engine: &Engine, req: &Value) -> Res<Value> {
    let c: StallConfig = engine.stall_config(queue_name(req)?);
    Ok(ok_with(vec![(
        "config",
        Value::map(vec![
            ("enabled", Value::Bool(c.enabled)),
            ("stallInterval", int(c.stall_interval_ms)),
            ("maxStalls", int(c.max_stalls)),
            ("gracePeriod", int(c.grace_period_ms)),
        ]),
    )]))
}

/// `{queue, config:{autoRetry?, autoRetryInterval?, maxAutoRetries?, maxAge?,
/// maxEntries?}}` → `OK`.
pub(super) fn set_dlq_config(engine: &mut Engine, req: &Value) -> Res<Value> {
    let queue = queue_name(req)?;
    let Some(c) = req.field("config") else {
        // The reference reads a field of the missing config and fails.
        return Err("config is required".into());
    };
    let patch = DlqPatch {
        auto_retry: c.field("autoRetry").and_then(Value::as_bool),
        auto_retry_interval_ms: whole(c, "autoRetryInterval"),
        max_auto_retries: whole(c, "maxAutoRetries"),
        max_age_ms: match c.get("maxAge") {
            Some(Value::Nil) => Some(None),
            _ => whole(c, "maxAge").map(Some),
        },
        max_entries: whole(c, "maxEntries"),
    };
    engine
        .set_dlq_config(queue, &patch)
        .map_err(engine_message)?;
    Ok(ok())
}

/// `{queue}` → `{ok, config:{autoRetry, autoRetryInterval, maxAutoRetries, maxAge,
/// maxEntries}}`.
pub(super) fn get_dlq_config(engine: &Engine, req: &Value) -> Res<Value> {
    let c: DlqConfig = engine.dlq_config(queue_name(req)?);
    Ok(ok_with(vec![(
        "config",
        Value::map(vec![
            ("autoRetry", Value::Bool(c.auto_retry)),
            ("autoRetryInterval", int(c.auto_retry_interval_ms)),
            ("maxAutoRetries", int(c.max_auto_retries)),
            ("maxAge", c.max_age_ms.map_or(Value::Nil, int)),
            ("maxEntries", int(c.max_entries)),
        ]),
    )]))
}

fn int(v: u64) -> Value {
    Value::Int(i64::try_from(v).unwrap_or(i64::MAX))
}
