//! The load generator behind `hopper bench`.
pub mod config;
pub mod http1;
pub mod msgpack;
pub mod payload;
pub mod record;
pub mod schedule;
pub mod tcp_frames;
pub mod wire;
pub mod ws;

#[derive(Debug)]
pub enum Error {
    Config(String),
    Connect(String),
}
