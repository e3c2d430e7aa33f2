//! Why a slot cannot be served: typed, so a caller can tell "someone else owns it" from
//! "the database is unreachable".

use std::fmt;

#[derive(Debug)]
pub enum ClusterError {
    /// Another broker holds an unexpired lease on the slot.
    LeaseHeld {
        owner: String,
        lease_until_ms: i64,
    },
    /// The slot was taken over: this broker's epoch is stale, and it must stop serving
    /// the slot. Nothing was written.
    Fenced {
        mine: i64,
        current: i64,
    },
    /// This broker gave the slot up (its engine closed); nothing more is written.
    Released,
    /// The lease ran out before a renewal succeeded: nothing is written until one does.
    LeaseLapsed,
    /// The database's schema is newer than this build knows.
    SchemaTooNew {
        found: i32,
        known: i32,
    },
    /// Another broker ranks first for the slot, which is not vacant long enough for this
    /// one to take it (a standby waits).
    NotYourTurn {
        preferred: String,
    },
    /// The cluster was created with another slot count than this broker asks for.
    SlotCount {
        fixed: i32,
        asked: i32,
    },
    Db(postgres::Error),
}

impl fmt::Display for ClusterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::LeaseHeld {
                owner,
                lease_until_ms,
            } => write!(
                f,
                "the slot is owned by broker '{owner}' until {lease_until_ms} ms"
            ),
            Self::Fenced { mine, current } => write!(
                f,
                "fenced: the slot was taken over (epoch {current}, this broker had {mine}); stop serving it"
            ),
            Self::LeaseLapsed => write!(
                f,
                "the slot's lease ran out unrenewed: not serving it until a renewal succeeds"
            ),
            Self::Released => write!(
                f,
                "the slot was given up: this broker no longer serves it"
            ),
            Self::SchemaTooNew { found, known } => write!(
                f,
                "the database's hopper schema is version {found}, newer than this build's {known}: upgrade hopper"
            ),
            Self::NotYourTurn { preferred } => write!(
                f,
                "broker '{preferred}' ranks first for the slot: waiting while it serves it"
            ),
            Self::SlotCount { fixed, asked } => write!(
                f,
                "this cluster has {fixed} slots (fixed when it was created), not {asked}: set HOPPER_SLOTS={fixed}, or use another namespace"
            ),
            // The driver's own text is terse ("db error"): say what the server said.
            Self::Db(e) => match (e.as_db_error(), std::error::Error::source(e)) {
                (Some(db), _) => write!(f, "PostgreSQL: {} ({})", db.message(), db.code().code()),
                (None, Some(cause)) => write!(f, "PostgreSQL: {e}: {cause}"),
                (None, None) => write!(f, "PostgreSQL: {e}"),
            },
        }
    }
}

impl ClusterError {
    /// Whether waiting may cure it: the database unreachable, restarting or full, as
    /// opposed to a refused login, a missing database or a schema too new.
    pub fn is_transient(&self) -> bool {
        let Self::Db(e) = self else { return false };
        match e.code() {
            // I/O (refused, reset, timed out) or a closed connection; not a bad URL or a
            // missing password, which have no I/O cause.
            None => e.is_closed() || io_cause(e),
            Some(code) => {
                let code = code.code();
                code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03" | "53300")
            }
        }
    }
}

fn io_cause(e: &postgres::Error) -> bool {
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        if c.is::<std::io::Error>() {
            return true;
        }
        cause = c.source();
    }
    false
}

impl std::error::Error for ClusterError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Db(e) => Some(e),
            _ => None,
        }
    }
}

impl From<postgres::Error> for ClusterError {
    fn from(e: postgres::Error) -> Self {
        Self::Db(e)
    }
}

impl From<ClusterError> for std::io::Error {
    /// The engine's log writer reports I/O errors; a fence or a lost database puts its
    /// log in the failed state ("storage unavailable"), so the slot stops serving.
    fn from(e: ClusterError) -> Self {
        std::io::Error::other(e)
    }
}
