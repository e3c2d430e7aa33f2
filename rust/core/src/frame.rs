//! Frames: how records sit in log segments and snapshots. A frame is
//! `[payload length u32 LE][CRC32C of payload u32 LE][payload]`; one frame holds every
//! record of one engine operation, so an operation is on disk whole or not at all.

/// Every log segment and snapshot starts with 8 magic bytes naming the format version.
pub const SEGMENT_MAGIC: &[u8; 8] = b"HOPRWAL1";
pub const SNAPSHOT_MAGIC: &[u8; 8] = b"HOPRSNP1";
pub const HEADER_LEN: usize = 12;
/// No frame is larger (payloads are capped far below this); a larger length is damage.
pub const MAX_FRAME: usize = 1 << 30;

/// Starts a frame whose payload the caller appends next; `finish_frame` fills the header.
pub fn begin_frame(out: &mut Vec<u8>) -> usize {
    let at = out.len();
    out.extend_from_slice(&[0; 8]);
    at
}

/// Completes a frame begun at `at`; an empty payload is dropped again.
pub fn finish_frame(out: &mut Vec<u8>, at: usize) -> bool {
    let payload_len = out.len() - at - 8;
    if payload_len == 0 {
        out.truncate(at);
        return false;
    }
    let crc = crc32c::crc32c(&out[at + 8..]);
    out[at..at + 4].copy_from_slice(&(payload_len as u32).to_le_bytes());
    out[at + 4..at + 8].copy_from_slice(&crc.to_le_bytes());
    true
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// The bytes end inside the frame (a write cut short by a crash).
    Short,
    /// The length is impossible or the checksum does not match.
    Damaged,
}

/// Reads the frame at `pos`: its payload and the offset after it. `Ok(None)` at the end.
pub fn read_frame(buf: &[u8], pos: usize) -> Result<Option<(&[u8], usize)>, FrameError> {
    if pos == buf.len() {
        return Ok(None);
    }
    if buf.len() - pos < 8 {
        return Err(FrameError::Short);
    }
    let len = u32::from_le_bytes(buf[pos..pos + 4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(buf[pos + 4..pos + 8].try_into().expect("4 bytes"));
    if len == 0 || len > MAX_FRAME {
        return Err(FrameError::Damaged);
    }
    let end = pos + 8 + len;
    if end > buf.len() {
        return Err(FrameError::Short);
    }
    let payload = &buf[pos + 8..end];
    if crc32c::crc32c(payload) != crc {
        return Err(FrameError::Damaged);
    }
    Ok(Some((payload, end)))
}

/// Whether any whole, valid frame starts after `from`: if one does, the damage at `from`
/// is in the middle of the data, not a torn tail.
pub fn valid_frame_after(buf: &[u8], from: usize) -> Option<usize> {
    (from + 1..buf.len().saturating_sub(8)).find(|&p| matches!(read_frame(buf, p), Ok(Some(_))))
}

/// The 12-byte header of a segment or snapshot: magic and its sequence number.
pub fn header(magic: &[u8; 8], number: u32) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..8].copy_from_slice(magic);
    h[8..].copy_from_slice(&number.to_le_bytes());
    h
}

/// The sequence number in a header, if the magic matches.
pub fn parse_header(buf: &[u8], magic: &[u8; 8]) -> Option<u32> {
    if buf.len() < HEADER_LEN || &buf[..8] != magic {
        return None;
    }
    Some(u32::from_le_bytes(buf[8..12].try_into().expect("4 bytes")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_damage_is_classified() {
        let mut buf = Vec::new();
        let at = begin_frame(&mut buf);
        buf.extend_from_slice(b"hello");
        assert!(finish_frame(&mut buf, at));
        let at = begin_frame(&mut buf);
        buf.extend_from_slice(b"world!");
        assert!(finish_frame(&mut buf, at));
        let at = begin_frame(&mut buf);
        assert!(!finish_frame(&mut buf, at), "empty frames are dropped");

        let (p, next) = read_frame(&buf, 0).unwrap().unwrap();
        assert_eq!(p, b"hello");
        let (p, end) = read_frame(&buf, next).unwrap().unwrap();
        assert_eq!(p, b"world!");
        assert_eq!(read_frame(&buf, end).unwrap(), None);

        assert_eq!(read_frame(&buf[..end - 1], next), Err(FrameError::Short));
        let mut bad = buf.clone();
        bad[10] ^= 1;
        assert_eq!(read_frame(&bad, 0), Err(FrameError::Damaged));
        assert_eq!(valid_frame_after(&bad, 0), Some(next));
        assert_eq!(valid_frame_after(&buf, next), None);

        let h = header(SEGMENT_MAGIC, 7);
        assert_eq!(parse_header(&h, SEGMENT_MAGIC), Some(7));
        assert_eq!(parse_header(&h, SNAPSHOT_MAGIC), None);
    }
}
