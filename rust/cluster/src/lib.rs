//! hopper-cluster: several hopper servers on one PostgreSQL (see `docs/cluster.md`).
//!
//! Phase 1's storage: a slot's owner runs the unchanged engine with its log and
//! snapshots in PostgreSQL (`Slot` is a hopper-core `LogStore`), ownership by a lease row
//! and an advisory lock, every write fenced by the owner's epoch. Kept out of hopper-core
//! so the engine crate has no network or database dependency. Every broker's `Front`
//! relays its clients to the owner.

mod assignment;
mod command_route;
mod connect;
mod directory;
mod error;
mod front;
mod http_merge;
mod http_wire;
mod keeper;
mod outbox;
mod pg_store;
mod registry;
mod registry_sweep;
mod route_http;
mod route_tcp;
mod route_ws;
mod schema;
mod slot;
mod slot_table;
mod webhook_store;

pub use assignment::Standby;
pub use directory::{fetch_view, read_view, Broker, ClusterView, SlotOwner};
pub use error::ClusterError;
pub use front::{Front, FrontConfig};
pub use keeper::LeaseKeeper;
pub use outbox::OutboxRelay;
pub use registry::Registry;
pub use registry_sweep::SweepTiming;
pub use route_http::serve as serve_http_router;
/// The routers, for tests that run them on a slot table of their own (no front).
pub use route_tcp::serve as serve_tcp_routed;
pub use route_ws::serve as serve_ws_routed;
pub use schema::{fix_slot_count, prepare, SCHEMA_VERSION};
pub use slot::{Slot, SlotConfig, SNAPSHOT_CHUNK_BYTES};
pub use slot_table::{Owner, SlotTable, Table};
pub use webhook_store::WebhookStore;
