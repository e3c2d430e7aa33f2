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
