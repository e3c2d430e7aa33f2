//! Writing a snapshot: the live state in a file, so the log segments before it can go
//! and start-up time follows the live state, not the history.
//!
//! The engine keeps running while a snapshot is written: the log is rotated under the
//! engine lock (segment N starts exactly here), then jobs are copied out in chunks, each
//! under the lock for a moment. A chunk may see a job in a later state than the
//! rotation point; replaying segment N onwards over the snapshot fixes that, because
//! records state results (see `record.rs`). The file becomes visible (rename) only after
//! the log is synced past the last chunk, so snapshot + log always replay to a state that
//! existed.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::sync::MutexGuard;

use crate::data_dir::{list, snapshot_path};
use crate::engine::Engine;
use crate::frame::{begin_frame, finish_frame, header, SNAPSHOT_MAGIC};
use crate::record::encode_snapshot_end;
use crate::wal::{sync_dir, Wal};

/// Jobs copied per visit under the engine lock.
const CHUNK_JOBS: usize = 4096;

pub struct SnapshotInfo {
    pub number: u32,
    pub jobs: u64,
    pub bytes: u64,
}

/// Writes a snapshot and deletes the segments and snapshots it replaces.
pub fn write_snapshot<'a>(
    dir: &Path,
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
    let path = snapshot_path(dir, number);
    let tmp = path.with_extension("snap.tmp");
    let result = write_file(&tmp, number, buf, wal, &lock);
    let (jobs, bytes) = match result {
        Ok(v) => v,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    std::fs::rename(&tmp, &path)?;
    sync_dir(dir)?;
    // Only now is the snapshot the start of recovery: older files can go.
    let listing = list(dir)?;
    for (n, p) in listing.segments.iter().chain(listing.snapshots.iter()) {
        if *n < number {
            let _ = std::fs::remove_file(p);
        }
    }
    Ok(SnapshotInfo {
        number,
        jobs,
        bytes,
    })
}

fn write_file<'a>(
    tmp: &Path,
    number: u32,
    mut buf: Vec<u8>,
    wal: &Wal,
    lock: &impl Fn() -> MutexGuard<'a, Engine>,
) -> io::Result<(u64, u64)> {
    let mut w = BufWriter::with_capacity(1 << 20, File::create(tmp)?);
    w.write_all(&header(SNAPSHOT_MAGIC, number))?;
    w.write_all(&buf)?;
    let mut bytes = (buf.len() + header(SNAPSHOT_MAGIC, number).len()) as u64;
    let mut jobs = 0u64;
    let mut from = Some(0u32);
    while let Some(slot) = from {
        buf.clear();
        let (next, n) = lock().snapshot_jobs(slot, CHUNK_JOBS, &mut buf);
        w.write_all(&buf)?;
        bytes += buf.len() as u64;
        jobs += n;
        from = next;
    }
    buf.clear();
    let at = begin_frame(&mut buf);
    encode_snapshot_end(&mut buf, jobs);
    finish_frame(&mut buf, at);
    w.write_all(&buf)?;
    bytes += buf.len() as u64;
    let file = w.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    // Whatever a chunk saw must be on disk in the log before the snapshot counts.
    let end = wal.appended_lsn();
    wal.wait(crate::wal::Commit {
        lsn: end,
        synced: true,
    })
    .map_err(|e| io::Error::other(e.message))?;
    Ok((jobs, bytes))
}
