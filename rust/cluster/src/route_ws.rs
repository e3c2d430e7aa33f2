//! Placeholder: replaced by the WebSocket router.

use std::time::Duration;

use tokio::net::TcpStream;

use crate::slot_table::Table;

/// Serves a client's `GET /ws` upgrade; `read` holds every byte read from the client so
/// far (the request head, and anything after it).
#[allow(dead_code)] // until the HTTP router calls it
pub async fn serve(_client: TcpStream, _read: Vec<u8>, _owners: Table, _wait: Duration) {}
