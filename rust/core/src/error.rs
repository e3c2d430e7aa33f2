//! Every way an engine call can be refused. The bindings map each kind to one Python
//! exception class, and the servers map each kind to one HTTP status, in one place each.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorKind {
    /// The caller sent something malformed or out of range (HTTP 400).
    InvalidInput,
    /// The job or queue does not exist (HTTP 404).
    NotFound,
    /// The job exists but is not in a state that allows the operation (HTTP 400/409).
    InvalidState,
    /// The lock token does not match the job's current lease.
    LockMismatch,
    /// A storage failure: the operation was not applied (HTTP 503).
    Unavailable,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineError {
    pub kind: ErrorKind,
    pub message: String,
}

impl EngineError {
    pub fn invalid(message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::InvalidInput,
            message: message.into(),
        }
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::NotFound,
            message: message.into(),
        }
    }
    pub fn state(message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::InvalidState,
            message: message.into(),
        }
    }
    pub fn lock(message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::LockMismatch,
            message: message.into(),
        }
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::Unavailable,
            message: message.into(),
        }
    }
    pub fn job_not_found() -> Self {
        Self::not_found("Job not found")
    }
}

impl fmt::Display for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for EngineError {}

pub type Result<T> = std::result::Result<T, EngineError>;
