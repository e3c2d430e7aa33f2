//! Job ids and lock tokens. Generated ids are UUIDv7 (time-ordered, so they sort by
//! creation) and stored as 16 bytes; only caller-chosen `jobId`s are kept as strings.

use std::fmt;
use std::hash::{Hash, Hasher};

/// A job's public id: a UUIDv7 we generated, or the caller's `jobId`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum JobId {
    Uuid([u8; 16]),
    Custom(Box<str>),
}

impl JobId {
    /// Parses a public id string; canonical UUID text maps back to the compact form so that
    /// lookups by a generated id's string find the job.
    pub fn parse(s: &str) -> JobId {
        parse_uuid(s)
            .map(JobId::Uuid)
            .unwrap_or_else(|| JobId::Custom(s.into()))
    }

    pub fn write_to(&self, out: &mut String) {
        match self {
            JobId::Uuid(b) => write_uuid(b, out),
            JobId::Custom(s) => out.push_str(s),
        }
    }

    /// Heap bytes owned by this id (for retention accounting).
    pub fn heap_bytes(&self) -> usize {
        match self {
            JobId::Uuid(_) => 0,
            JobId::Custom(s) => s.len(),
        }
    }
}

impl Hash for JobId {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Hash the textual form's identity: both variants hash their bytes, and `parse`
        // guarantees one canonical variant per string.
        match self {
            JobId::Uuid(b) => b.hash(state),
            JobId::Custom(s) => s.as_bytes().hash(state),
        }
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = String::with_capacity(36);
        self.write_to(&mut s);
        f.write_str(&s)
    }
}

fn write_uuid(b: &[u8; 16], out: &mut String) {
    // Hot path (every push and pull renders ids): a table, not `write!` per byte.
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut buf = [0u8; 36];
    let mut pos = 0;
    for (i, byte) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            buf[pos] = b'-';
            pos += 1;
        }
        buf[pos] = HEX[usize::from(byte >> 4)];
        buf[pos + 1] = HEX[usize::from(byte & 0x0F)];
        pos += 2;
    }
    // ASCII by construction, so the conversion cannot fail.
    out.push_str(std::str::from_utf8(&buf).unwrap_or_default());
}

fn parse_uuid(s: &str) -> Option<[u8; 16]> {
    let bytes = s.as_bytes();
    if bytes.len() != 36 || [8, 13, 18, 23].iter().any(|&i| bytes[i] != b'-') {
        return None;
    }
    // Only lowercase hex is canonical; anything else stays a custom id.
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        }
    }
    let mut out = [0u8; 16];
    let mut pos = 0;
    for byte in out.iter_mut() {
        if matches!(pos, 8 | 13 | 18 | 23) {
            pos += 1;
        }
        *byte = (nibble(bytes[pos])? << 4) | nibble(bytes[pos + 1])?;
        pos += 2;
    }
    Some(out)
}

/// Makes UUIDv7 values: 48-bit ms timestamp, a 12-bit counter for order within a
/// millisecond, and 62 pseudo-random bits (SplitMix64; ids need uniqueness, not secrecy).
#[derive(Debug)]
pub struct IdGenerator {
    last_ms: u64,
    counter: u16,
    rng: u64,
    /// A cluster slot written into every id (`cluster_slots::tag_id`).
    slot_tag: Option<u32>,
}

impl IdGenerator {
    pub fn new(seed: u64) -> Self {
        Self {
            last_ms: 0,
            counter: 0,
            rng: seed ^ 0x9E37_79B9_7F4A_7C15,
            slot_tag: None,
        }
    }

    /// Ids that carry `slot`, so a broker's front can route them to this engine's slot.
    pub fn tagged(seed: u64, slot: Option<u32>) -> Self {
        Self {
            slot_tag: slot,
            ..Self::new(seed)
        }
    }

    fn next_random(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn next(&mut self, now_ms: u64) -> [u8; 16] {
        // Keep ids monotonic even if the clock steps back or the counter overflows.
        if now_ms > self.last_ms {
            self.last_ms = now_ms;
            self.counter = 0;
        } else {
            self.counter += 1;
            if self.counter > 0x0FFF {
                self.last_ms += 1;
                self.counter = 0;
            }
        }
        let ms = self.last_ms & 0xFFFF_FFFF_FFFF;
        let rand = self.next_random();
        let mut b = [0u8; 16];
        b[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
        b[6] = 0x70 | ((self.counter >> 8) as u8 & 0x0F);
        b[7] = self.counter as u8;
        b[8..].copy_from_slice(&rand.to_be_bytes());
        b[8] = 0x80 | (b[8] & 0x3F);
        if let Some(slot) = self.slot_tag {
            crate::cluster_slots::tag_id(&mut b, slot);
        }
        b
    }

    /// Makes every later id sort after `id` (one restored from disk), so a restart
    /// cannot hand out an id again even if the clock stepped back across it.
    pub fn observe(&mut self, id: &[u8; 16]) {
        if id[6] >> 4 != 7 {
            return; // not one of ours
        }
        let mut ms = [0u8; 8];
        ms[2..].copy_from_slice(&id[..6]);
        let ms = u64::from_be_bytes(ms);
        let counter = (u16::from(id[6] & 0x0F) << 8) | u16::from(id[7]);
        if ms > self.last_ms || (ms == self.last_ms && counter > self.counter) {
            self.last_ms = ms;
            self.counter = counter;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_v7_ordered_and_round_trip() {
        let mut g = IdGenerator::new(42);
        let a = g.next(1_700_000_000_000);
        let b = g.next(1_700_000_000_000);
        let c = g.next(1_699_000_000_000);
        assert!(a < b && b < c, "monotonic even when the clock steps back");
        let text = JobId::Uuid(a).to_string();
        assert_eq!(text.len(), 36);
        assert_eq!(&text[14..15], "7");
        assert_eq!(JobId::parse(&text), JobId::Uuid(a));
    }

    #[test]
    fn ids_after_an_observed_one_sort_after_it() {
        let mut first = IdGenerator::new(1);
        let old = first.next(1_700_000_000_500);
        let mut g = IdGenerator::new(1);
        g.observe(&old);
        let next = g.next(1_700_000_000_000);
        assert!(next > old, "even with the clock behind and the same seed");
    }

    #[test]
    fn custom_ids_stay_custom() {
        assert_eq!(JobId::parse("order-1"), JobId::Custom("order-1".into()));
        let upper = "0192F5A0-7B3C-7DEF-8A12-3456789ABCDE";
        assert_eq!(JobId::parse(upper).to_string(), upper);
    }
}
