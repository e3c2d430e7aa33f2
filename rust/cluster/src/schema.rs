//! The tables, created and migrated when a broker connects. Migrations run in one
//! transaction under a transaction advisory lock, so brokers starting together apply
//! each once; a database newer than this build is refused.

use postgres::Client;

use crate::error::ClusterError;

/// Statements of each schema version, in order; version N is `MIGRATIONS[N - 1]`.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE hopper_slots (
    namespace      text    NOT NULL,
    slot           integer NOT NULL,
    owner          text    NOT NULL,
    epoch          bigint  NOT NULL,
    lease_until_ms bigint  NOT NULL,
    -- whether the owner's session holds the slot's advisory lock: only then does a
    -- free lock mean the owner's session is gone
    owner_locked   boolean NOT NULL,
    PRIMARY KEY (namespace, slot)
);
CREATE TABLE hopper_log (
    namespace text    NOT NULL,
    slot      integer NOT NULL,
    segment   integer NOT NULL,
    "offset"  bigint  NOT NULL,
    epoch     bigint  NOT NULL,
    frames    bytea   NOT NULL,
    PRIMARY KEY (namespace, slot, segment, "offset")
) WITH (autovacuum_vacuum_scale_factor = 0.01);
CREATE TABLE hopper_snapshots (
    namespace text    NOT NULL,
    slot      integer NOT NULL,
    segment   integer NOT NULL,
    epoch     bigint  NOT NULL,
    bytes     bytea   NOT NULL,
    PRIMARY KEY (namespace, slot, segment)
);
"#,
    // Phase 1 forwarding: where the owner's backends listen, so every broker's front can
    // relay to it; and the brokers themselves, for the dashboard.
    r#"
ALTER TABLE hopper_slots
    ADD COLUMN owner_http text NOT NULL DEFAULT '',
    ADD COLUMN owner_tcp  text NOT NULL DEFAULT '';
CREATE TABLE hopper_brokers (
    namespace  text   NOT NULL,
    broker_id  text   NOT NULL,
    http       text   NOT NULL,
    tcp        text   NOT NULL,
    started_ms bigint NOT NULL,
    seen_ms    bigint NOT NULL,
    PRIMARY KEY (namespace, broker_id)
);
"#,
    // A snapshot in chunks: one bytea holds at most 1 GiB.
    r#"
ALTER TABLE hopper_snapshots ADD COLUMN chunk integer NOT NULL DEFAULT 0;
ALTER TABLE hopper_snapshots DROP CONSTRAINT hopper_snapshots_pkey;
ALTER TABLE hopper_snapshots ADD PRIMARY KEY (namespace, slot, segment, chunk);
"#,
    // Several slots: the count is fixed when a cluster first starts, since it decides
    // which slot every queue and id belongs to.
    r#"
CREATE TABLE hopper_cluster (
    namespace text    PRIMARY KEY,
    slots     integer NOT NULL
);
INSERT INTO hopper_cluster SELECT DISTINCT namespace, 1 FROM hopper_slots;
"#,
    // Cross-slot messages: a slot's engine logs messages for other slots, its relay
    // delivers them here, and the target slot's relay applies and then deletes them.
    // Rows come and go, so vacuum early.
    r#"
CREATE TABLE hopper_outbox (
    namespace   text    NOT NULL,
    target_slot integer NOT NULL,
    source_slot integer NOT NULL,
    seq         bigint  NOT NULL,
    body        bytea   NOT NULL,
    PRIMARY KEY (namespace, target_slot, source_slot, seq)
) WITH (autovacuum_vacuum_scale_factor = 0.01);
"#,
    // The registry of caller-chosen job ids: the slot each was pushed to, so fronts
    // route it without asking every owner (`registry.rs`). A hint: rows may be deleted.
    r#"
CREATE TABLE hopper_ids (
    namespace text    NOT NULL,
    job_id    text    NOT NULL,
    slot      integer NOT NULL,
    PRIMARY KEY (namespace, job_id)
);
"#,
    // The webhook registry of a cluster (`webhook_store.rs`): one row per webhook, its
    // document as `webhooks.json` keeps it, read by every slot server.
    r#"
CREATE TABLE hopper_webhooks (
    namespace text  NOT NULL,
    id        text  NOT NULL,
    doc       jsonb NOT NULL,
    PRIMARY KEY (namespace, id)
);
"#,
    // Rows of the id registry that no job holds any more are deleted by their slot's
    // owner (`registry_sweep.rs`) once untouched for a while: every claim and move
    // touches its row, so a row a push is about to use is never swept from under it.
    // The index lets each owner read its own slot's rows.
    r#"
ALTER TABLE hopper_ids ADD COLUMN touched timestamptz NOT NULL DEFAULT now();
CREATE INDEX hopper_ids_by_slot ON hopper_ids (namespace, slot, job_id);
"#,
];

pub const SCHEMA_VERSION: i32 = MIGRATIONS.len() as i32;

/// Brings the database to `SCHEMA_VERSION`.
pub fn migrate(client: &mut Client) -> Result<(), ClusterError> {
    let mut tx = client.transaction()?;
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtext('hopper_schema'))",
        &[],
    )?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS hopper_schema_version (version integer NOT NULL)",
    )?;
    let found: i32 = tx
        .query_one(
            "SELECT coalesce(max(version), 0) FROM hopper_schema_version",
            &[],
        )?
        .get(0);
    if found > SCHEMA_VERSION {
        return Err(ClusterError::SchemaTooNew {
            found,
            known: SCHEMA_VERSION,
        });
    }
    for sql in &MIGRATIONS[found as usize..] {
        tx.batch_execute(sql)?;
    }
    if found < SCHEMA_VERSION {
        tx.execute("DELETE FROM hopper_schema_version", &[])?;
        tx.execute(
            "INSERT INTO hopper_schema_version (version) VALUES ($1)",
            &[&SCHEMA_VERSION],
        )?;
    }
    tx.commit()?;
    Ok(())
}

/// Records `slots` as the cluster's slot count on its first start; later starts must ask
/// for the same count (the slot of every queue and id depends on it).
pub fn fix_slot_count(
    client: &mut Client,
    namespace: &str,
    slots: u32,
) -> Result<(), ClusterError> {
    let asked = slots as i32;
    client.execute(
        "INSERT INTO hopper_cluster (namespace, slots) VALUES ($1, $2)
         ON CONFLICT (namespace) DO NOTHING",
        &[&namespace, &asked],
    )?;
    let fixed: i32 = client
        .query_one(
            "SELECT slots FROM hopper_cluster WHERE namespace = $1",
            &[&namespace],
        )?
        .get(0);
    if fixed != asked {
        return Err(ClusterError::SlotCount { fixed, asked });
    }
    Ok(())
}

/// What a broker checks before it starts: the schema migrated and its slot count the
/// cluster's.
pub fn prepare(url: &str, namespace: &str, slots: u32) -> Result<(), ClusterError> {
    let mut client = crate::connect::connect(url)?;
    migrate(&mut client)?;
    fix_slot_count(&mut client, namespace, slots)
}
