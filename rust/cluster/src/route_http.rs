//! Placeholder: replaced by the router.

use std::time::Duration;

use tokio::net::TcpStream;

use crate::slot_table::Table;

pub async fn serve(_client: TcpStream, _owners: Table, _wait: Duration) {}
