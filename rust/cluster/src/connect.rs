//! Every connection the cluster opens: bounded connect and keepalives, so an unreachable
//! or half-open database is an error within seconds instead of a thread stuck for the
//! kernel's minutes (a standby's probe, a front's poll, a shutdown).

use std::time::Duration;

use postgres::{Client, Config, NoTls};

use crate::error::ClusterError;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const KEEPALIVE_IDLE: Duration = Duration::from_secs(10);

pub fn connect(url: &str) -> Result<Client, ClusterError> {
    let mut config: Config = url.parse()?;
    config
        .connect_timeout(CONNECT_TIMEOUT)
        .keepalives(true)
        .keepalives_idle(KEEPALIVE_IDLE);
    Ok(config.connect(NoTls)?)
}
