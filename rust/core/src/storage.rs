//! A persistent engine's storage: the locked data directory, recovery at open, the log,
//! and when to snapshot.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, MutexGuard};
use std::time::Instant;

use crate::engine::Engine;
use crate::log_store::{FileStore, LogStore};
use crate::recovery::{recover, Recovered};
use crate::snapshot::{write_snapshot, SnapshotInfo};
use crate::wal::{FsyncPolicy, Wal, WalConfig};

/// Where the log and snapshots live.
#[derive(Debug, Clone)]
pub enum Location {
    /// A data directory, locked by the engine (the default).
    Dir(PathBuf),
    /// A store opened by the caller (a cluster slot's log in PostgreSQL).
    Store(Arc<dyn LogStore>),
}

#[derive(Debug, Clone)]
pub struct StorageConfig {
    pub location: Location,
    pub policy: FsyncPolicy,
    pub segment_bytes: u64,
    /// A snapshot is taken once the log since the last one is this large, or as large as
    /// the last snapshot, whichever is more (so compaction cost stays proportional).
    pub snapshot_min_bytes: u64,
    /// Skip damaged records instead of refusing to start.
    pub repair: bool,
}

/// The smallest log segment: a frame header and some records must fit.
pub const MIN_SEGMENT_BYTES: u64 = 4096;

impl StorageConfig {
    /// Refuses values the storage cannot work with, naming the option.
    pub fn validate(&self) -> crate::Result<()> {
        if self.snapshot_min_bytes == 0 {
            return Err(crate::EngineError::invalid(
                "snapshot_bytes must be at least 1",
            ));
        }
        if self.segment_bytes < MIN_SEGMENT_BYTES {
            return Err(crate::EngineError::invalid(format!(
                "segment_bytes must be at least {MIN_SEGMENT_BYTES}"
            )));
        }
        Ok(())
    }

    /// Storage in a data directory.
    pub fn new(dir: impl Into<PathBuf>, policy: FsyncPolicy) -> Self {
        Self::at(Location::Dir(dir.into()), policy)
    }

    /// Storage in a store the caller opened (a cluster slot's).
    pub fn in_store(store: Arc<dyn LogStore>, policy: FsyncPolicy) -> Self {
        Self::at(Location::Store(store), policy)
    }

    fn at(location: Location, policy: FsyncPolicy) -> Self {
        Self {
            location,
            policy,
            segment_bytes: 64 << 20,
            snapshot_min_bytes: 64 << 20,
            repair: false,
        }
    }
}

/// What opening found, for logs and `/stats`.
#[derive(Debug, Default)]
pub struct OpenReport {
    pub recovered: Recovered,
    pub millis: u64,
    pub jobs: usize,
}

pub struct Storage {
    pub wal: Wal,
    store: Arc<dyn LogStore>,
    config: StorageConfig,
    last_snapshot_bytes: AtomicU64,
    snapshots: AtomicU64,
}

impl Storage {
    /// Opens the store (locks a directory) and rebuilds `engine` from it, then starts
    /// recording and opens the log for new records.
    pub fn open(
        config: StorageConfig,
        engine: &mut Engine,
        on_progress: Box<dyn Fn() + Send + Sync>,
    ) -> Result<(Storage, OpenReport), String> {
        let started = Instant::now();
        let store: Arc<dyn LogStore> = match &config.location {
            Location::Dir(dir) => Arc::new(FileStore::open(dir)?),
            Location::Store(store) => store.clone(),
        };
        let recovered = recover(&*store, engine, config.repair)?;
        engine.set_recording(true);
        // Missed scheduler runs (skipped or due now), logged like any change.
        engine.settle_schedulers();
        let wal = Wal::open(
            WalConfig {
                store: store.clone(),
                policy: config.policy,
                segment_bytes: config.segment_bytes,
                first_segment: recovered.next_segment,
                log_bytes: recovered.log_bytes,
            },
            on_progress,
        )
        .map_err(|e| format!("cannot open the log in {}: {e}", store.describe()))?;
        let report = OpenReport {
            jobs: engine.job_count(),
            millis: started.elapsed().as_millis() as u64,
            recovered,
        };
        Ok((
            Storage {
                wal,
                store,
                config,
                last_snapshot_bytes: AtomicU64::new(0),
                snapshots: AtomicU64::new(0),
            },
            report,
        ))
    }

    /// Refuses changes while the log cannot write or the store refuses writes.
    pub fn check_writable(&self) -> crate::Result<()> {
        self.wal.check_writable()?;
        self.store
            .check_writable()
            .map_err(|e| crate::EngineError::unavailable(format!("storage unavailable: {e}")))
    }

    pub fn snapshot_due(&self) -> bool {
        let threshold = self
            .config
            .snapshot_min_bytes
            .max(self.last_snapshot_bytes.load(Ordering::Acquire));
        self.wal.log_bytes() >= threshold
    }

    pub fn snapshot<'a>(
        &self,
        lock: impl Fn() -> MutexGuard<'a, Engine>,
    ) -> std::io::Result<SnapshotInfo> {
        let info = write_snapshot(&*self.store, &self.wal, lock)?;
        self.last_snapshot_bytes
            .store(info.bytes, Ordering::Release);
        self.snapshots.fetch_add(1, Ordering::AcqRel);
        Ok(info)
    }

    pub fn snapshots_taken(&self) -> u64 {
        self.snapshots.load(Ordering::Acquire)
    }

    /// Writes and syncs the rest of the log, then releases the store. Idempotent.
    pub fn close(&self) {
        self.wal.close();
        self.store.release();
    }

    pub fn repaired(&self) -> bool {
        self.config.repair
    }
}
