//! Where a persistent engine keeps its log segments and snapshots: the data directory
//! (`FileStore`, the default) or another store behind the same trait (the cluster crate
//! keeps a slot's log in PostgreSQL).
//!
//! The log writer, the snapshotter and recovery see numbered segments and snapshots as
//! byte strings laid out as `frame.rs` describes, whatever holds them; so group commit,
//! the fsync policies, snapshot + tail replay and damage handling are one code for every
//! store. A store only decides what "written" and "synced" mean: for files, `pwrite` and
//! `fdatasync`; for a database, kept in memory and committed.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::data_dir::{list, snapshot_path, DirLock};

/// The numbers of the segments and snapshots a store holds, ascending.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct StoreListing {
    pub segments: Vec<u32>,
    pub snapshots: Vec<u32>,
}

/// A store of log segments and snapshots. Every method may fail with an I/O error; a
/// store that lost the right to write (a cluster slot taken over) fails every write.
pub trait LogStore: Send + Sync {
    /// Names the store in messages ("data directory ./data").
    fn describe(&self) -> String;
    /// Names segment `number` in messages (a file path, a database row range).
    fn segment_name(&self, number: u32) -> String;
    fn snapshot_name(&self, number: u32) -> String;
    fn list(&self) -> io::Result<StoreListing>;
    /// Removes leftovers of a snapshot that was never finished; returns their names.
    fn remove_unfinished(&self) -> io::Result<Vec<String>>;
    fn read_segment(&self, number: u32) -> io::Result<Vec<u8>>;
    fn read_snapshot(&self, number: u32) -> io::Result<Vec<u8>>;
    /// Cuts a segment's torn end at `len` (recovery after a crash mid-write).
    fn truncate_segment(&self, number: u32, len: u64) -> io::Result<()>;
    fn remove_segment(&self, number: u32) -> io::Result<()>;
    fn remove_snapshot(&self, number: u32) -> io::Result<()>;
    /// Creates segment `number` holding `header`, durably, ready for appends after it.
    fn create_segment(&self, number: u32, header: &[u8]) -> io::Result<Arc<dyn SegmentWriter>>;
    /// Starts snapshot `number`; it counts for recovery only once published.
    fn create_snapshot(&self, number: u32) -> io::Result<Box<dyn SnapshotWriter>>;
    /// Whether the store takes writes now. Checked before every change, so a store that
    /// lost the right to write (a cluster slot whose lease ran out or was taken over)
    /// stops the engine serving at once, not at its next write.
    fn check_writable(&self) -> io::Result<()> {
        Ok(())
    }
    /// Gives the store up once the log is closed (a file store unlocks its directory),
    /// so another engine may open it while this object lives on. Idempotent.
    fn release(&self);
}

impl std::fmt::Debug for dyn LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

/// The open end of the log. `write_at` is called with the output lock held (by the
/// writer thread or a caller's thread), `sync` by the writer thread without it, so both
/// may run at once.
pub trait SegmentWriter: Send + Sync {
    /// Writes `bytes` at `offset`: the segment's end, or, after a failure, the same
    /// offset again (over any partial write).
    fn write_at(&self, bytes: &[u8], offset: u64) -> io::Result<()>;
    /// Makes everything written so far durable.
    fn sync(&self) -> io::Result<()>;
}

/// A snapshot being written: invisible to recovery until `publish`.
pub trait SnapshotWriter: Send {
    fn write(&mut self, bytes: &[u8]) -> io::Result<()>;
    /// Makes the bytes durable; the snapshot still does not count.
    fn finish(&mut self) -> io::Result<()>;
    /// Makes the snapshot the start of recovery. Called once the log is synced past
    /// everything the snapshot saw.
    fn publish(self: Box<Self>) -> io::Result<()>;
}

fn segment_path(dir: &Path, number: u32) -> PathBuf {
    dir.join(format!("wal-{number:010}.log"))
}

/// Makes a file's creation or rename durable: the directory entry must be synced too.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The data directory, locked until released.
pub(crate) struct FileStore {
    dir: PathBuf,
    lock: Mutex<Option<DirLock>>,
}

impl FileStore {
    /// Creates the directory if needed and locks it (see `DirLock`).
    pub fn open(dir: &Path) -> Result<FileStore, String> {
        let lock = DirLock::acquire(dir)?;
        Ok(FileStore {
            dir: dir.to_path_buf(),
            lock: Mutex::new(Some(lock)),
        })
    }
}

impl LogStore for FileStore {
    fn describe(&self) -> String {
        format!("data directory {}", self.dir.display())
    }

    fn release(&self) {
        self.lock.lock().unwrap_or_else(|p| p.into_inner()).take();
    }

    fn segment_name(&self, number: u32) -> String {
        segment_path(&self.dir, number).display().to_string()
    }

    fn snapshot_name(&self, number: u32) -> String {
        snapshot_path(&self.dir, number).display().to_string()
    }

    fn list(&self) -> io::Result<StoreListing> {
        let l = list(&self.dir)?;
        Ok(StoreListing {
            segments: l.segments.iter().map(|s| s.0).collect(),
            snapshots: l.snapshots.iter().map(|s| s.0).collect(),
        })
    }

    fn remove_unfinished(&self) -> io::Result<Vec<String>> {
        let mut removed = Vec::new();
        for tmp in list(&self.dir)?.temporaries {
            let _ = std::fs::remove_file(&tmp);
            removed.push(tmp.display().to_string());
        }
        Ok(removed)
    }

    fn read_segment(&self, number: u32) -> io::Result<Vec<u8>> {
        std::fs::read(segment_path(&self.dir, number))
    }

    fn read_snapshot(&self, number: u32) -> io::Result<Vec<u8>> {
        std::fs::read(snapshot_path(&self.dir, number))
    }

    fn truncate_segment(&self, number: u32, len: u64) -> io::Result<()> {
        let f = OpenOptions::new()
            .write(true)
            .open(segment_path(&self.dir, number))?;
        f.set_len(len)?;
        f.sync_all()
    }

    fn remove_segment(&self, number: u32) -> io::Result<()> {
        std::fs::remove_file(segment_path(&self.dir, number))
    }

    fn remove_snapshot(&self, number: u32) -> io::Result<()> {
        std::fs::remove_file(snapshot_path(&self.dir, number))
    }

    fn create_segment(&self, number: u32, header: &[u8]) -> io::Result<Arc<dyn SegmentWriter>> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(segment_path(&self.dir, number))?;
        file.write_all_at(header, 0)?;
        file.sync_all()?;
        sync_dir(&self.dir)?;
        Ok(Arc::new(SegmentFile(file)))
    }

    fn create_snapshot(&self, number: u32) -> io::Result<Box<dyn SnapshotWriter>> {
        let path = snapshot_path(&self.dir, number);
        let tmp = path.with_extension("snap.tmp");
        let out = BufWriter::with_capacity(1 << 20, File::create(&tmp)?);
        Ok(Box::new(SnapshotFile {
            dir: self.dir.clone(),
            tmp,
            path,
            out: Some(out),
        }))
    }
}

struct SegmentFile(File);

impl SegmentWriter for SegmentFile {
    fn write_at(&self, bytes: &[u8], offset: u64) -> io::Result<()> {
        self.0.write_all_at(bytes, offset)
    }

    fn sync(&self) -> io::Result<()> {
        self.0.sync_data()
    }
}

/// A snapshot written to `*.snap.tmp` and renamed into place when published; dropped
/// unpublished, the temporary file goes.
struct SnapshotFile {
    dir: PathBuf,
    tmp: PathBuf,
    path: PathBuf,
    out: Option<BufWriter<File>>,
}

impl SnapshotFile {
    fn out(&mut self) -> io::Result<&mut BufWriter<File>> {
        self.out
            .as_mut()
            .ok_or_else(|| io::Error::other("the snapshot is already finished"))
    }
}

impl SnapshotWriter for SnapshotFile {
    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out()?.write_all(bytes)
    }

    fn finish(&mut self) -> io::Result<()> {
        let out = self.out()?;
        out.flush()?;
        out.get_ref().sync_all()
    }

    fn publish(mut self: Box<Self>) -> io::Result<()> {
        self.out = None;
        std::fs::rename(&self.tmp, &self.path)?;
        sync_dir(&self.dir)?;
        // Renamed: nothing left for `drop` to remove.
        self.tmp.clear();
        Ok(())
    }
}

impl Drop for SnapshotFile {
    fn drop(&mut self) {
        if !self.tmp.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}
