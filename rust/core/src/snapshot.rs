//! Writing a snapshot: the live state in the store (a file by default), so the log segments before it can go
//! and start-up time follows the live state, not the history.
//!
//! The engine keeps running while a snapshot is written: the log is rotated under the
//! engine lock (segment N starts exactly here), then jobs are copied out in chunks, each
//! under the lock for a moment. A chunk may see a job in a later state than the
//! rotation point; replaying segment N onwards over the snapshot fixes that, because
//! records state results (see `record.rs`). The snapshot is published (renamed) only after
//! the log is synced past the last chunk, so snapshot + log always replay to a state that
//! existed.

use std::io;
use std::sync::MutexGuard;

use crate::engine::Engine;
use crate::frame::{begin_frame, finish_frame, header, SNAPSHOT_MAGIC};
use crate::log_store::{LogStore, SnapshotWriter};
use crate::record::encode_snapshot_end;
use crate::wal::Wal;

/// Jobs copied per visit under the engine lock.
const CHUNK_JOBS: usize = 4096;

pub struct SnapshotInfo {
    pub number: u32,
    pub jobs: u64,
    pub bytes: u64,
}

/// Writes a snapshot and deletes the segments and snapshots it replaces.
pub fn write_snapshot<'a>(
    store: &dyn LogStore,
    wal: &Wal,
    lock: impl Fn() -> MutexGuard<'a, Engine>,
) -> io::Result<SnapshotInfo> {
    let mut buf = Vec::with_capacity(1 << 20);
    let number = {
        let engine = lock();
        let n = wal.rotate();
        engine.snapshot_meta(&mut buf);
        n
    };
    // Dropped unpublished on an error, the store discards it.
    let mut out = store.create_snapshot(number)?;
    let (jobs, bytes) = write_chunks(&mut *out, number, buf, wal, &lock)?;
    out.publish()?;
    // Only now is the snapshot the start of recovery: older segments and snapshots go.
    let listing = store.list()?;
    for n in listing.segments.iter().filter(|n| **n < number) {
        let _ = store.remove_segment(*n);
    }
    for n in listing.snapshots.iter().filter(|n| **n < number) {
        let _ = store.remove_snapshot(*n);
    }
    Ok(SnapshotInfo {
        number,
        jobs,
        bytes,
    })
}

fn write_chunks<'a>(
    out: &mut dyn SnapshotWriter,
    number: u32,
    mut buf: Vec<u8>,
    wal: &Wal,
    lock: &impl Fn() -> MutexGuard<'a, Engine>,
) -> io::Result<(u64, u64)> {
    out.write(&header(SNAPSHOT_MAGIC, number))?;
    out.write(&buf)?;
    let mut bytes = (buf.len() + header(SNAPSHOT_MAGIC, number).len()) as u64;
    let mut jobs = 0u64;
    let mut from = Some(0u32);
    while let Some(slot) = from {
        buf.clear();
        let (next, n) = lock().snapshot_jobs(slot, CHUNK_JOBS, &mut buf);
        out.write(&buf)?;
        bytes += buf.len() as u64;
        jobs += n;
        from = next;
    }
    buf.clear();
    let at = begin_frame(&mut buf);
    encode_snapshot_end(&mut buf, jobs);
    finish_frame(&mut buf, at);
    out.write(&buf)?;
    bytes += buf.len() as u64;
    out.finish()?;
    // Whatever a chunk saw must be durable in the log before the snapshot counts.
    let end = wal.appended_lsn();
    wal.wait(crate::wal::Commit {
        lsn: end,
        synced: true,
    })
    .map_err(|e| io::Error::other(e.message))?;
    Ok((jobs, bytes))
}
