//! The cluster as the database records it: each slot's owner and where its backends
//! listen, and the brokers that announced themselves. Read by every broker's front (to
//! relay to the owner) and by the management API (the dashboard's brokers view).

use postgres::Client;

use crate::connect::connect;

use crate::error::ClusterError;

/// A slot's row: who owns it, under which epoch, and where its backends listen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotOwner {
    pub slot: i32,
    pub owner: String,
    pub epoch: i64,
    pub lease_until_ms: i64,
    pub http: String,
    pub tcp: String,
}

/// A broker's announcement, refreshed by its front while it runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Broker {
    pub broker_id: String,
    /// Where clients reach it (its front).
    pub http: String,
    pub tcp: String,
    pub started_ms: i64,
    pub seen_ms: i64,
}

#[derive(Clone, Debug)]
pub struct ClusterView {
    /// PostgreSQL's clock when read, to judge `seen_ms` and `lease_until_ms` against.
    pub now_ms: i64,
    pub slots: Vec<SlotOwner>,
    pub brokers: Vec<Broker>,
}

const NOW_MS: &str = "(extract(epoch from clock_timestamp()) * 1000)::bigint";

/// Every slot and broker of `namespace` (the schema must exist: a broker migrates it).
pub fn read_view(client: &mut Client, namespace: &str) -> Result<ClusterView, ClusterError> {
    let now_ms: i64 = client.query_one(&format!("SELECT {NOW_MS}"), &[])?.get(0);
    let slots = read_slots(client, namespace)?;
    let brokers = client
        .query(
            "SELECT broker_id, http, tcp, started_ms, seen_ms FROM hopper_brokers
             WHERE namespace = $1 ORDER BY broker_id",
            &[&namespace],
        )?
        .iter()
        .map(|r| Broker {
            broker_id: r.get(0),
            http: r.get(1),
            tcp: r.get(2),
            started_ms: r.get(3),
            seen_ms: r.get(4),
        })
        .collect();
    Ok(ClusterView {
        now_ms,
        slots,
        brokers,
    })
}

/// Every slot row of `namespace` (those some broker ever took): what a front polls (the
/// whole view also reads the clock and every broker).
pub fn read_slots(client: &mut Client, namespace: &str) -> Result<Vec<SlotOwner>, ClusterError> {
    let rows = client.query(
        &format!("SELECT {SLOT_COLUMNS} FROM hopper_slots WHERE namespace = $1 ORDER BY slot"),
        &[&namespace],
    )?;
    Ok(rows.iter().map(slot_owner_of).collect())
}

const SLOT_COLUMNS: &str = "slot, owner, epoch, lease_until_ms, owner_http, owner_tcp";

fn slot_owner_of(r: &postgres::Row) -> SlotOwner {
    SlotOwner {
        slot: r.get(0),
        owner: r.get(1),
        epoch: r.get(2),
        lease_until_ms: r.get(3),
        http: r.get(4),
        tcp: r.get(5),
    }
}

/// `read_view` on a connection of its own (the management API's occasional reads).
pub fn fetch_view(url: &str, namespace: &str) -> Result<ClusterView, ClusterError> {
    let mut client = connect(url)?;
    read_view(&mut client, namespace)
}

/// Records (or refreshes) this broker's row: `seen_ms` is PostgreSQL's now, and so is
/// `started_ms` on a broker's `first` announcement (a restart under the same id).
pub fn announce(
    client: &mut Client,
    namespace: &str,
    broker: (&str, &str, &str),
    first: bool,
) -> Result<(), ClusterError> {
    let (broker_id, http, tcp) = broker;
    client.execute(
        &format!(
            "INSERT INTO hopper_brokers VALUES ($1, $2, $3, $4, {NOW_MS}, {NOW_MS})
             ON CONFLICT (namespace, broker_id)
             DO UPDATE SET http = $3, tcp = $4, seen_ms = {NOW_MS},
             started_ms = CASE WHEN $5 THEN {NOW_MS} ELSE hopper_brokers.started_ms END"
        ),
        &[&namespace, &broker_id, &http, &tcp, &first],
    )?;
    // A killed broker never withdraws its row: forget the ones long unseen, so brokers
    // named host:pid do not pile up across restarts.
    client.execute(
        &format!("DELETE FROM hopper_brokers WHERE namespace = $1 AND seen_ms < {NOW_MS} - $2"),
        &[&namespace, &FORGET_UNSEEN_MS],
    )?;
    Ok(())
}

/// How long a broker's row outlives its last refresh (a broker that was killed).
pub const FORGET_UNSEEN_MS: i64 = 3_600_000;

/// Removes this broker's row (a clean stop).
pub fn withdraw(client: &mut Client, namespace: &str, broker_id: &str) -> Result<(), ClusterError> {
    client.execute(
        "DELETE FROM hopper_brokers WHERE namespace = $1 AND broker_id = $2",
        &[&namespace, &broker_id],
    )?;
    Ok(())
}
