//! hopper-core: the job-queue engine in plain Rust (no Python). See `docs/architecture.md`.
//!
//! Modules are private; this file is the crate's API. The Python binding (`rust/py`), the
//! integration tests and the examples use only what is re-exported here, so everything
//! else (indexes, record encoding, the log writer) can change without breaking them.

mod clock;
pub mod cluster_slots;
mod cron;
mod data_dir;
mod engine;
mod error;
mod events;
mod fold_search;
mod frame;
mod groups;
mod handle;
mod ids;
mod job;
mod job_logs;
mod json_depth;
mod json_render;
mod limits;
mod log_store;
mod metrics;
mod notify;
mod options;
mod priority_queue;
mod protocol;
mod queue;
mod queue_config;
mod ranked_set;
mod record;
mod recovery;
mod requests;
mod schedulers;
mod slab;
mod slot_message;
mod snapshot;
mod storage;
mod timer_wheel;
mod wal;
mod workers;

pub use clock::{Clock, ManualClock, SystemClock};
pub use data_dir::{list as list_data_dir, Listing};
pub use engine::{
    backoff_delay, Applied, ChildrenValues, Engine, EngineConfig, FailOutcome, JobLogPage,
    OutboxEntry, Pulled, PushOutcome, QueueLimitsInfo, SearchKind, Totals, MAX_BACKOFF_DELAY_MS,
};
pub use error::{EngineError, ErrorKind, Result};
pub use events::{Event, EventExtra, EventKind};
pub use groups::{GroupRate, GroupSettings};
pub use handle::EngineHandle;
pub use job::{Job, JobState};
pub use job_logs::{LogEntry, LogLevel, MAX_LOG_MESSAGE_BYTES};
pub use json_render::{push_str, write_event};
pub use limits::{LimitsConfig, RateLimitSpec};
pub use log_store::{LogStore, SegmentWriter, SnapshotWriter, StoreListing};
pub use metrics::Bucket;
pub use options::{PushOptions, DEFAULT_BACKOFF_MS, DEFAULT_MAX_ATTEMPTS};
pub use protocol::msgpack::{decode as msgpack_decode, encode as msgpack_encode};
pub use protocol::{event_frame, Deferred, Encoding, Output, Session, Value, MAX_RUNNING};
pub use protocol::{FrameBuffer, FrameNext, MAX_FRAME};
pub use queue::GroupCounts;
pub use queue_config::{DlqConfig, DlqPatch, StallConfig, StallPatch};
pub use requests::{AckRequest, FailRequest};
pub use schedulers::{SchedulerInfo, SchedulerSpec};
pub use storage::{Location, OpenReport, StorageConfig};
pub use wal::{Commit, FsyncPolicy};
