//! What a front knows of the cluster: each slot's owner and where its backends listen,
//! as last read from the slot rows. Published on a watch channel by the front's poller;
//! relays and routers read it to pick a backend and to notice a slot moving.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::directory::SlotOwner;

/// Where a slot's owner's backends listen, under which epoch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    pub epoch: i64,
    pub http: String,
    pub tcp: String,
}

/// Which backend of an owner a connection wants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Port {
    Http,
    Tcp,
}

impl Owner {
    pub fn addr(&self, port: Port) -> &str {
        match port {
            Port::Http => &self.http,
            Port::Tcp => &self.tcp,
        }
    }
}

/// Every slot's owner, `None` for a slot no broker has taken yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotTable {
    owners: Vec<Option<Owner>>,
}

/// The table as the front's poller publishes it.
pub type Table = watch::Receiver<Arc<SlotTable>>;

impl SlotTable {
    pub fn empty(slots: u32) -> SlotTable {
        SlotTable::new(vec![None; slots as usize])
    }

    /// A table naming each slot's owner outright (slot i: `owners[i]`): for a router
    /// tested against servers that poll no database.
    pub fn new(owners: Vec<Option<Owner>>) -> SlotTable {
        let mut table = SlotTable { owners };
        if table.owners.is_empty() {
            table.owners.push(None);
        }
        table
    }

    /// The table of `slots` slots from the rows read; rows of slots beyond the count
    /// (none, since the count is fixed per cluster) are ignored.
    pub fn from_rows(slots: u32, rows: Vec<SlotOwner>) -> SlotTable {
        let mut table = SlotTable::empty(slots);
        // A slot given up (a clean stop, a handoff: its lease ended at 0) has no owner
        // until the next takes it: new connections wait for that one instead of queueing
        // at a backend whose engine is gone.
        for row in rows.into_iter().filter(|r| r.lease_until_ms != 0) {
            if let Some(owner) = usize::try_from(row.slot)
                .ok()
                .and_then(|i| table.owners.get_mut(i))
            {
                *owner = Some(Owner {
                    epoch: row.epoch,
                    http: row.http,
                    tcp: row.tcp,
                });
            }
        }
        table
    }

    pub fn slots(&self) -> u32 {
        self.owners.len() as u32
    }

    pub fn owner(&self, slot: u32) -> Option<&Owner> {
        self.owners.get(slot as usize)?.as_ref()
    }
}

/// Connects to `slot`'s owner's backend, waiting (up to `wait`) for an owner that
/// answers: between a death and the takeover there is none. Returns the owner's epoch
/// with the connection, or `None` once the wait is over or the front stops.
pub async fn connect_owner(
    owners: &mut Table,
    slot: u32,
    port: Port,
    wait: Duration,
) -> Option<(i64, TcpStream)> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let target = owners.borrow_and_update().owner(slot).cloned();
        if let Some(owner) = target.filter(|o| !o.addr(port).is_empty()) {
            let connect = TcpStream::connect(owner.addr(port).to_string());
            if let Ok(Ok(stream)) = tokio::time::timeout(Duration::from_secs(1), connect).await {
                let _ = stream.set_nodelay(true);
                return Some((owner.epoch, stream));
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        // A new owner, or a retry soon: a dead owner's row changes only at takeover.
        let waited = tokio::time::timeout(Duration::from_millis(100), owners.changed()).await;
        if matches!(waited, Ok(Err(_))) {
            return None; // the front is stopping
        }
    }
}

/// Returns once `slot` has an owner of another epoch than `epoch` (or the front stops).
pub async fn moved_from(owners: &mut Table, slot: u32, epoch: i64) {
    loop {
        if owners
            .borrow_and_update()
            .owner(slot)
            .is_some_and(|o| o.epoch != epoch)
        {
            return;
        }
        if owners.changed().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(slot: i32, lease_until_ms: i64) -> SlotOwner {
        SlotOwner {
            slot,
            owner: format!("b{slot}"),
            epoch: 3,
            lease_until_ms,
            http: format!("h{slot}"),
            tcp: format!("t{slot}"),
        }
    }

    #[test]
    fn a_slot_given_up_has_no_owner_until_taken_again() {
        let table = SlotTable::from_rows(3, vec![row(0, 1_000), row(1, 0)]);
        assert_eq!(table.owner(0).map(|o| o.http.as_str()), Some("h0"));
        assert_eq!(
            table.owner(1),
            None,
            "its lease ended at 0: a clean stop or a handoff"
        );
        assert_eq!(table.owner(2), None, "never taken");
    }
}
