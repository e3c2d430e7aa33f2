//! A slot's log and snapshots in PostgreSQL, behind hopper-core's `LogStore`: the engine's
//! writer, snapshotter and recovery run unchanged on top.
//!
//! - A segment is the rows of `hopper_log` with its number, ordered by byte offset; each
//!   row is one group commit's frames (the header is the row at offset 0). "Written"
//!   means buffered in this process; "synced" means the batch's row is committed, so
//!   under `always` (and for `durable` pushes) an answer waits for the commit.
//! - Every write is fenced by the owner's epoch (`slot.rs`); a fenced write writes
//!   nothing and fails, which puts the engine's log in the failed state: the slot is no
//!   longer served by this broker.
//! - A snapshot is a run of `hopper_snapshots` rows (chunks, a bytea holding at most
//!   1 GiB), inserted at publish in the same transaction that deletes the log rows and
//!   snapshots it covers.

use std::io;
use std::sync::{Arc, Mutex};

use hopper_core::{LogStore, SegmentWriter, SnapshotWriter, StoreListing};

use crate::error::ClusterError;
use crate::slot::{Inner, Slot};

impl Slot {
    fn place(&self) -> String {
        format!(
            "slot {} of namespace '{}'",
            self.inner.slot, self.inner.namespace
        )
    }

    /// Runs a read on the slot's connection.
    fn read<R>(
        &self,
        f: impl FnOnce(&mut postgres::Client) -> Result<R, postgres::Error>,
    ) -> io::Result<R> {
        f(&mut self.inner.client()).map_err(|e| ClusterError::Db(e).into())
    }
}

impl LogStore for Slot {
    fn describe(&self) -> String {
        format!(
            "PostgreSQL ({}, epoch {}, broker '{}')",
            self.place(),
            self.inner.epoch,
            self.inner.broker_id()
        )
    }

    fn segment_name(&self, number: u32) -> String {
        format!("log segment {number} of {}", self.place())
    }

    fn snapshot_name(&self, number: u32) -> String {
        format!("snapshot {number} of {}", self.place())
    }

    fn list(&self) -> io::Result<StoreListing> {
        let (ns, slot) = (&self.inner.namespace, &self.inner.slot);
        let numbers = |c: &mut postgres::Client, sql: &str| -> Result<Vec<u32>, postgres::Error> {
            Ok(c.query(sql, &[ns, slot])?
                .iter()
                .map(|r| r.get::<_, i32>(0) as u32)
                .collect())
        };
        self.read(|c| {
            Ok(StoreListing {
                segments: numbers(
                    c,
                    "SELECT DISTINCT segment FROM hopper_log WHERE namespace = $1 AND slot = $2 ORDER BY 1",
                )?,
                snapshots: numbers(
                    c,
                    "SELECT DISTINCT segment FROM hopper_snapshots WHERE namespace = $1 AND slot = $2 ORDER BY 1",
                )?,
            })
        })
    }

    /// A snapshot's rows are written in one transaction: nothing is ever left unfinished.
    fn remove_unfinished(&self) -> io::Result<Vec<String>> {
        Ok(Vec::new())
    }

    fn read_segment(&self, number: u32) -> io::Result<Vec<u8>> {
        let rows = self.read(|c| {
            c.query(
                r#"SELECT "offset", frames FROM hopper_log
                   WHERE namespace = $1 AND slot = $2 AND segment = $3 ORDER BY "offset""#,
                &[&self.inner.namespace, &self.inner.slot, &(number as i32)],
            )
        })?;
        let mut out = Vec::new();
        for row in rows {
            let offset: i64 = row.get(0);
            if offset != out.len() as i64 {
                // Rows are committed in order, each after the one before: a gap is damage.
                return Err(io::Error::other(format!(
                    "{} has no row for bytes {}..{offset}",
                    self.segment_name(number),
                    out.len()
                )));
            }
            out.extend_from_slice(row.get::<_, &[u8]>(1));
        }
        Ok(out)
    }

    fn read_snapshot(&self, number: u32) -> io::Result<Vec<u8>> {
        let rows = self.read(|c| {
            c.query(
                "SELECT chunk, bytes FROM hopper_snapshots
                 WHERE namespace = $1 AND slot = $2 AND segment = $3 ORDER BY chunk",
                &[&self.inner.namespace, &self.inner.slot, &(number as i32)],
            )
        })?;
        let mut out = Vec::new();
        for (i, row) in rows.iter().enumerate() {
            if row.get::<_, i32>(0) != i as i32 {
                // Chunks are inserted together in one transaction: a gap is damage.
                return Err(io::Error::other(format!(
                    "{} has no chunk {i}",
                    self.snapshot_name(number)
                )));
            }
            out.extend_from_slice(row.get::<_, &[u8]>(1));
        }
        Ok(out)
    }

    /// Rows are committed whole, so a damaged end is not a torn write: refuse to cut it.
    fn truncate_segment(&self, number: u32, len: u64) -> io::Result<()> {
        Err(io::Error::other(format!(
            "{} is damaged at byte {len}; its rows were committed whole, so this is not an interrupted write",
            self.segment_name(number)
        )))
    }

    fn remove_segment(&self, number: u32) -> io::Result<()> {
        let i = &self.inner;
        i.fenced_tx(|tx| {
            tx.execute(
                "DELETE FROM hopper_log WHERE namespace = $1 AND slot = $2 AND segment = $3",
                &[&i.namespace, &i.slot, &(number as i32)],
            )
        })?;
        Ok(())
    }

    fn remove_snapshot(&self, number: u32) -> io::Result<()> {
        let i = &self.inner;
        i.fenced_tx(|tx| {
            tx.execute(
                "DELETE FROM hopper_snapshots WHERE namespace = $1 AND slot = $2 AND segment = $3",
                &[&i.namespace, &i.slot, &(number as i32)],
            )
        })?;
        Ok(())
    }

    fn create_segment(&self, number: u32, header: &[u8]) -> io::Result<Arc<dyn SegmentWriter>> {
        let segment = PgSegment {
            slot: self.inner.clone(),
            number: number as i32,
            pending: Mutex::new(Pending {
                offset: 0,
                bytes: header.to_vec(),
            }),
        };
        segment.sync()?;
        Ok(Arc::new(segment))
    }

    fn create_snapshot(&self, number: u32) -> io::Result<Box<dyn SnapshotWriter>> {
        Ok(Box::new(PgSnapshot {
            slot: self.inner.clone(),
            number: number as i32,
            bytes: Vec::new(),
        }))
    }

    fn check_writable(&self) -> io::Result<()> {
        Ok(self.inner.check_writable()?)
    }

    fn release(&self) {
        self.inner.give_up();
    }
}

/// Bytes written but not yet committed, and the segment offset they start at.
struct Pending {
    offset: i64,
    bytes: Vec<u8>,
}

struct PgSegment {
    slot: Arc<Inner>,
    number: i32,
    pending: Mutex<Pending>,
}

impl PgSegment {
    fn pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Inserts one row, fenced by the epoch (see `slot.rs`'s `APPEND`).
    fn insert(&self, offset: i64, frames: &[u8]) -> Result<(), ClusterError> {
        let s = &self.slot;
        s.check_writable()?;
        let mut c = s.client();
        let row = c.query_one(
            &s.append,
            &[
                &s.namespace,
                &s.slot,
                &s.epoch,
                &self.number,
                &offset,
                &frames,
            ],
        )?;
        let current: Option<i64> = row.get(0);
        if current != Some(s.epoch) {
            return Err(s.fence(&mut c, current.unwrap_or(0)));
        }
        Ok(())
    }
}

impl SegmentWriter for PgSegment {
    fn write_at(&self, bytes: &[u8], offset: u64) -> io::Result<()> {
        self.slot.check_writable()?;
        let mut p = self.pending();
        let end = p.offset as u64 + p.bytes.len() as u64;
        if offset != end {
            return Err(io::Error::other(format!(
                "write at byte {offset} of a segment that ends at {end}"
            )));
        }
        p.bytes.extend_from_slice(bytes);
        Ok(())
    }

    /// Commits what is buffered as one row. Writes go on meanwhile; on a failure the
    /// batch goes back in front of them and the next sync retries it (a row that did
    /// commit although the answer was lost is found by its key and not inserted twice).
    fn sync(&self) -> io::Result<()> {
        let (offset, batch) = {
            let mut p = self.pending();
            if p.bytes.is_empty() {
                return Ok(());
            }
            let offset = p.offset;
            let batch = std::mem::take(&mut p.bytes);
            p.offset += batch.len() as i64;
            (offset, batch)
        };
        if let Err(e) = self.insert(offset, &batch) {
            let mut p = self.pending();
            let mut back = batch;
            back.append(&mut p.bytes);
            p.bytes = back;
            p.offset = offset;
            return Err(e.into());
        }
        Ok(())
    }
}

/// A snapshot collected in memory and stored at publish, in rows of at most
/// `snapshot_chunk` bytes (one row, empty, for an empty snapshot).
struct PgSnapshot {
    slot: Arc<Inner>,
    number: i32,
    bytes: Vec<u8>,
}

impl SnapshotWriter for PgSnapshot {
    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.bytes.extend_from_slice(bytes);
        Ok(())
    }

    /// Nothing to do: the row is committed whole at publish.
    fn finish(&mut self) -> io::Result<()> {
        Ok(())
    }

    fn publish(self: Box<Self>) -> io::Result<()> {
        let s = &self.slot;
        let key: [&(dyn postgres::types::ToSql + Sync); 3] = [&s.namespace, &s.slot, &self.number];
        s.fenced_tx(|tx| {
            let insert = tx.prepare(
                "INSERT INTO hopper_snapshots (namespace, slot, segment, epoch, bytes, chunk)
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )?;
            let chunks = self.bytes.chunks(s.snapshot_chunk);
            for (i, chunk) in chunks
                .chain(self.bytes.is_empty().then_some(&[][..]))
                .enumerate()
            {
                let values: [&(dyn postgres::types::ToSql + Sync); 6] = [
                    &s.namespace,
                    &s.slot,
                    &self.number,
                    &s.epoch,
                    &chunk,
                    &(i as i32),
                ];
                tx.execute(&insert, &values)?;
            }
            tx.execute(
                "DELETE FROM hopper_log WHERE namespace = $1 AND slot = $2 AND segment < $3",
                &key,
            )?;
            tx.execute(
                "DELETE FROM hopper_snapshots WHERE namespace = $1 AND slot = $2 AND segment < $3",
                &key,
            )
        })?;
        Ok(())
    }
}
