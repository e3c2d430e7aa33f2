//! The job payload every push carries: the same ~90-byte object as `bench/server.py`,
//! padded to `payload_bytes` of JSON when asked, and in e2e a `bench` mark
//! `[intended ns, sent ns, measured]` (ns since the run's base instant) that the worker
//! reads back to time push -> ack.

use crate::msgpack;
use crate::wire::Marks;

const FIELDS: [(&str, &str); 3] = [
    ("to", "user@example.com"),
    ("subject", "Welcome aboard!!!"),
    ("template", "welcome-v2-2026"),
];

pub struct Payload {
    /// The padding string (empty: none).
    pad: Vec<u8>,
}

impl Payload {
    pub fn new(payload_bytes: usize) -> Payload {
        let base = Payload { pad: Vec::new() }.json(None).len();
        // `,"pad":""` costs 9 bytes before the padding itself
        let pad = payload_bytes.saturating_sub(base + 9);
        let pad = if payload_bytes > base {
            vec![b'x'; pad]
        } else {
            Vec::new()
        };
        Payload { pad }
    }

    /// Appends the payload as JSON.
    pub fn write_json(&self, out: &mut Vec<u8>, marks: Option<Marks>) {
        out.push(b'{');
        for (k, v) in FIELDS {
            out.push(b'"');
            out.extend_from_slice(k.as_bytes());
            out.extend_from_slice(b"\":\"");
            out.extend_from_slice(v.as_bytes());
            out.extend_from_slice(b"\",");
        }
        out.extend_from_slice(b"\"n\":1");
        if !self.pad.is_empty() {
            out.extend_from_slice(b",\"pad\":\"");
            out.extend_from_slice(&self.pad);
            out.push(b'"');
        }
        if let Some(m) = marks {
            let mut b = itoa::Buffer::new();
            out.extend_from_slice(b",\"bench\":[");
            out.extend_from_slice(b.format(m.intended).as_bytes());
            out.push(b',');
            out.extend_from_slice(b.format(m.sent).as_bytes());
            out.extend_from_slice(if m.measured { b",1]" } else { b",0]" });
        }
        out.push(b'}');
    }

    fn json(&self, marks: Option<Marks>) -> Vec<u8> {
        let mut v = Vec::new();
        self.write_json(&mut v, marks);
        v
    }

    /// Appends the same object as MessagePack.
    /// `batch` push bodies as a JSON array, `[{"data":…},…]` (a bulk request's jobs).
    pub fn write_json_jobs(&self, out: &mut Vec<u8>, batch: usize) {
        out.push(b'[');
        for i in 0..batch {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"data\":");
            self.write_json(out, None);
            out.push(b'}');
        }
        out.push(b']');
    }

    pub fn write_msgpack(&self, out: &mut Vec<u8>, marks: Option<Marks>) {
        let n = 4 + u16::from(!self.pad.is_empty()) + u16::from(marks.is_some());
        msgpack::map(out, n);
        for (k, v) in FIELDS {
            msgpack::str(out, k.as_bytes());
            msgpack::str(out, v.as_bytes());
        }
        msgpack::str(out, b"n");
        out.push(1);
        if !self.pad.is_empty() {
            msgpack::str(out, b"pad");
            msgpack::str(out, &self.pad);
        }
        if let Some(m) = marks {
            msgpack::str(out, b"bench");
            msgpack::array(out, 3);
            msgpack::f64(out, m.intended as f64);
            msgpack::f64(out, m.sent as f64);
            out.push(u8::from(m.measured));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_and_padded_json() {
        let p = Payload::new(0);
        let v: serde_json::Value = serde_json::from_slice(&p.json(None)).unwrap();
        assert_eq!(v["n"], 1);
        let p = Payload::new(1000);
        assert_eq!(p.json(None).len(), 1000);
        let m = Marks {
            intended: 5,
            sent: 7,
            measured: true,
        };
        let v: serde_json::Value = serde_json::from_slice(&p.json(Some(m))).unwrap();
        assert_eq!(v["bench"], serde_json::json!([5, 7, 1]));
    }
}
