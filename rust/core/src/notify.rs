//! The one notification fd of DESIGN.md: engine threads write a byte when something is
//! ready for Python (events, woken queues); the event loop watches the read end with
//! `add_reader` and drains everything in one call. A flag keeps it to one byte per batch.

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Debug)]
pub struct Notifier {
    reader: UnixStream,
    writer: UnixStream,
    signalled: AtomicBool,
}

impl Notifier {
    pub fn new() -> std::io::Result<Self> {
        let (reader, writer) = UnixStream::pair()?;
        reader.set_nonblocking(true)?;
        writer.set_nonblocking(true)?;
        Ok(Self {
            reader,
            writer,
            signalled: AtomicBool::new(false),
        })
    }

    pub fn fd(&self) -> i32 {
        self.reader.as_raw_fd()
    }

    /// Makes the fd readable unless it already is.
    pub fn signal(&self) {
        if !self.signalled.swap(true, Ordering::AcqRel) {
            // A full socket buffer means the reader is already woken; nothing is lost.
            let _ = (&self.writer).write(&[1]);
        }
    }

    /// Clears readiness. Call before collecting the work, so a signal raised meanwhile
    /// produces a fresh wake-up instead of being lost.
    pub fn clear(&self) {
        // Drain before resetting the flag: resetting first would let a signal's byte be
        // drained while the flag stays set, and no later signal would ever write again.
        let mut buf = [0u8; 64];
        while let Ok(n) = (&self.reader).read(&mut buf) {
            if n == 0 {
                break;
            }
        }
        self.signalled.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_byte_per_batch_and_clear_resets() {
        let n = Notifier::new().unwrap();
        n.signal();
        n.signal();
        let mut buf = [0u8; 8];
        assert_eq!((&n.reader).read(&mut buf).unwrap(), 1);
        n.clear();
        n.signal();
        assert_eq!((&n.reader).read(&mut buf).unwrap(), 1);
        assert!(n.fd() >= 0);
    }
}
