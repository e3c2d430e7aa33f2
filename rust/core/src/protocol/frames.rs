//! bunqueue's TCP framing: a 4-byte big-endian body length, then the body. Bytes arrive
//! in arbitrary pieces; whole frames come out in order.

/// Largest body either side may send (the reference's cap, both directions).
pub const MAX_FRAME: usize = 64 * 1024 * 1024;

#[derive(Default)]
pub struct FrameBuffer {
    buf: Vec<u8>,
    /// Bytes of `buf` already handed out as frames.
    read: usize,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// A whole frame body: `buf[start..end]`, until the next call.
    Frame(usize, usize),
    /// More bytes are needed.
    Partial,
    /// The header announces a body over `MAX_FRAME`: the connection cannot continue.
    TooLarge(u64),
}

impl FrameBuffer {
    pub fn extend(&mut self, data: &[u8]) {
        if self.read == self.buf.len() {
            self.buf.clear();
            self.read = 0;
        } else if self.read > 0 && self.read >= self.buf.len() / 2 {
            // Move the unread tail to the front once it is at most half of the buffer,
            // so the copy is paid for by the frames already consumed.
            self.buf.drain(..self.read);
            self.read = 0;
        }
        self.buf.extend_from_slice(data);
    }

    #[allow(clippy::should_implement_trait)] // not an iterator: a frame borrows the buffer
    pub fn next(&mut self) -> Next {
        let rest = &self.buf[self.read..];
        let Some(header) = rest.get(..4) else {
            return Next::Partial;
        };
        let len = u32::from_be_bytes(header.try_into().expect("4 bytes")) as usize;
        if len > MAX_FRAME {
            return Next::TooLarge(len as u64);
        }
        if rest.len() < 4 + len {
            return Next::Partial;
        }
        let start = self.read + 4;
        self.read = start + len;
        Next::Frame(start, start + len)
    }

    pub fn body(&self, start: usize, end: usize) -> &[u8] {
        &self.buf[start..end]
    }

    /// Bytes received that are not yet a whole frame (a partial frame when non-zero).
    pub fn pending(&self) -> usize {
        self.buf.len() - self.read
    }
}

/// Appends a frame: the length header, then what `body` writes.
pub fn write_frame(out: &mut Vec<u8>, body: impl FnOnce(&mut Vec<u8>)) {
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    body(out);
    let len = (out.len() - at - 4) as u32;
    out[at..at + 4].copy_from_slice(&len.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_and_packed_come_out_whole() {
        let mut wire = Vec::new();
        write_frame(&mut wire, |o| o.extend_from_slice(b"abc"));
        write_frame(&mut wire, |o| o.extend_from_slice(b""));
        write_frame(&mut wire, |o| o.extend_from_slice(b"hello"));
        let mut fb = FrameBuffer::default();
        let mut got = Vec::new();
        for byte in &wire {
            fb.extend(std::slice::from_ref(byte));
            while let Next::Frame(s, e) = fb.next() {
                got.push(fb.body(s, e).to_vec());
            }
        }
        assert_eq!(got, [b"abc".to_vec(), vec![], b"hello".to_vec()]);
        assert_eq!(fb.pending(), 0);
        fb.extend(&wire);
        assert!(matches!(fb.next(), Next::Frame(..)));
        assert_eq!(fb.pending(), wire.len() - 7);
    }

    #[test]
    fn an_oversized_header_is_refused_before_buffering() {
        let mut fb = FrameBuffer::default();
        fb.extend(&(MAX_FRAME as u32 + 1).to_be_bytes());
        assert_eq!(fb.next(), Next::TooLarge(MAX_FRAME as u64 + 1));
        let mut fb = FrameBuffer::default();
        fb.extend(&(MAX_FRAME as u32).to_be_bytes());
        assert_eq!(fb.next(), Next::Partial);
    }
}
