//! bunqueue's client protocol: the binary TCP protocol of its SDK (length-prefixed
//! MessagePack frames) and the same commands as JSON over WebSocket. Decoding, the
//! command table and encoding all run here, next to the engine, so a frame's payload
//! never becomes Python objects: the server hands in bytes and writes out bytes.

mod commands;
mod cron_commands;
mod dlq_commands;
mod flow_commands;
mod frames;
mod group_commands;
mod job_commands;
mod job_object;
mod limit_commands;
mod log_commands;
pub mod msgpack;
mod queue_commands;
mod queue_config_commands;
mod session;
mod value;

pub use frames::{FrameBuffer, Next as FrameNext, MAX_FRAME};
pub use session::{event_frame, Deferred, Encoding, Output, Session, MAX_RUNNING};
pub use value::Value;
