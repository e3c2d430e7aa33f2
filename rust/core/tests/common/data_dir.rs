//! Data directories for the restart tests: a fresh temporary folder per test, removed
//! when dropped, and an engine opened on it with every write synced.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use hopper_core::{EngineConfig, EngineHandle, FsyncPolicy, ManualClock, StorageConfig};

pub struct Dir(pub PathBuf);

impl Dir {
    /// `name` must be unique within its test binary (binaries differ by process id).
    pub fn new(name: &str) -> Dir {
        let p = std::env::temp_dir().join(format!("hopper-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        Dir(p)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An engine on `dir` (recovering what is there), on `clock`, with `config`.
pub fn open_store(dir: &Path, clock: &ManualClock, config: EngineConfig) -> EngineHandle {
    let storage = StorageConfig::new(dir, FsyncPolicy::Always);
    EngineHandle::open(config, Arc::new(clock.clone()), Some(storage))
        .expect("opens")
        .0
}
