//! The load generator behind `hopper bench`.
pub mod config;
mod conn;
pub mod http1;
pub mod msgpack;
pub mod payload;
pub mod record;
pub mod run;
pub mod schedule;
pub mod tcp_frames;
pub mod wire;
pub mod ws;

pub use config::Config;
pub use run::{Report, Run, Snapshot};

#[derive(Debug)]
pub enum Error {
    /// The configuration is not valid.
    Config(String),
    /// A connection could not be opened (or its handshake failed).
    Connect(String),
    /// The run could not go on.
    Run(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Config(m) | Error::Connect(m) | Error::Run(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for Error {}
