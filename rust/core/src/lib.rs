//! hopper-core: the job-queue engine in plain Rust (no Python). See `docs/architecture.md`.

pub mod clock;
pub mod cron;
pub mod data_dir;
pub mod engine;
pub mod error;
pub mod events;
pub mod frame;
pub mod handle;
pub mod ids;
pub mod job;
pub mod json_render;
pub mod metrics;
pub mod notify;
pub mod options;
pub mod priority_queue;
pub mod queue;
pub mod record;
pub mod recovery;
pub mod requests;
pub mod slab;
pub mod snapshot;
pub mod storage;
pub mod timer_wheel;
pub mod wal;

pub use clock::{Clock, ManualClock, SystemClock};
pub use engine::{Engine, EngineConfig, FailOutcome, PushOutcome, SearchKind, Totals};
pub use error::{EngineError, ErrorKind, Result};
pub use handle::EngineHandle;
pub use job::JobState;
pub use options::PushOptions;
pub use storage::StorageConfig;
pub use wal::FsyncPolicy;
