//! `/ws` commands (JSON, numeric `reqId`) in RFC 6455 frames: client frames are masked,
//! server frames are not. Messages without a `reqId` (broadcast events) are skipped
//! unparsed.

use crate::payload::Payload;
use crate::wire::{json_reply, json_str, Job, Marks, Parsed, Reply, Wire};

pub struct Ws {
    /// Per queue, each up to (and with) `"reqId":`.
    push: Vec<Vec<u8>>,
    bulk: Vec<Vec<u8>>,
    pull: Vec<Vec<(u64, Vec<u8>)>>,
    queue_json: Vec<String>,
    payload: Payload,
    msg: Vec<u8>,
    rng: u64,
}

/// The handshake request (the token, if any, as a bearer header).
pub fn handshake(host: &str, port: u16, path: &str, token: Option<&str>, seed: u64) -> Vec<u8> {
    use base64::Engine as _;
    let mut key = [0u8; 16];
    let mut r = seed | 1;
    for b in key.iter_mut() {
        r = xorshift(r);
        *b = r as u8;
    }
    let key = base64::engine::general_purpose::STANDARD.encode(key);
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{auth}\r\n"
    )
    .into_bytes()
}

fn xorshift(mut x: u64) -> u64 {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x
}

impl Ws {
    pub fn new(queues: &[String], payload: Payload, batch: usize, waits: &[u64], seed: u64) -> Ws {
        let (mut push, mut bulk, mut pull, mut queue_json) = (vec![], vec![], vec![], vec![]);
        for q in queues {
            let qj = json_str(q);
            let mut m = format!("{{\"cmd\":\"PUSH\",\"queue\":{qj},\"data\":").into_bytes();
            payload.write_json(&mut m, None);
            m.extend_from_slice(b",\"reqId\":");
            push.push(m);
            let mut m = format!("{{\"cmd\":\"PUSHB\",\"queue\":{qj},\"jobs\":").into_bytes();
            payload.write_json_jobs(&mut m, batch);
            m.extend_from_slice(b",\"reqId\":");
            bulk.push(m);
            pull.push(
                waits
                    .iter()
                    .map(|w| {
                        let t = if *w > 0 {
                            format!(",\"timeout\":{w}")
                        } else {
                            String::new()
                        };
                        let m = format!("{{\"cmd\":\"PULL\",\"queue\":{qj}{t},\"reqId\":");
                        (*w, m.into_bytes())
                    })
                    .collect(),
            );
            queue_json.push(qj);
        }
        Ws {
            push,
            bulk,
            pull,
            queue_json,
            payload,
            msg: Vec::new(),
            rng: seed | 1,
        }
    }

    /// `self.msg` + req + `}` as one masked text frame.
    fn frame(&mut self, out: &mut Vec<u8>, req: u32) {
        self.msg
            .extend_from_slice(itoa::Buffer::new().format(req).as_bytes());
        self.msg.push(b'}');
        let n = self.msg.len();
        out.push(0x81); // FIN, text
        if n < 126 {
            out.push(0x80 | n as u8);
        } else if n <= u16::MAX as usize {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        } else {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
        self.rng = xorshift(self.rng);
        let key = (self.rng as u32).to_ne_bytes();
        out.extend_from_slice(&key);
        out.extend(self.msg.iter().enumerate().map(|(i, b)| b ^ key[i & 3]));
        self.msg.clear();
    }
}

impl Wire for Ws {
    fn push(&mut self, out: &mut Vec<u8>, req: u32, queue: usize, marks: Option<Marks>) {
        match marks {
            None => self.msg.extend_from_slice(&self.push[queue]),
            Some(m) => {
                self.msg.extend_from_slice(b"{\"cmd\":\"PUSH\",\"queue\":");
                self.msg
                    .extend_from_slice(self.queue_json[queue].as_bytes());
                self.msg.extend_from_slice(b",\"data\":");
                self.payload.write_json(&mut self.msg, Some(m));
                self.msg.extend_from_slice(b",\"reqId\":");
            }
        }
        self.frame(out, req);
    }

    fn bulk(&mut self, out: &mut Vec<u8>, req: u32, queue: usize) {
        self.msg.extend_from_slice(&self.bulk[queue]);
        self.frame(out, req);
    }

    fn pull(&mut self, out: &mut Vec<u8>, req: u32, queue: usize, wait_ms: u64) {
        let m = &self.pull[queue]
            .iter()
            .find(|(w, _)| *w == wait_ms)
            .expect("a pull wait the run announced")
            .1;
        self.msg.extend_from_slice(m);
        self.frame(out, req);
    }

    fn ack(&mut self, out: &mut Vec<u8>, req: u32, job: &Job<'_>) {
        self.msg.extend_from_slice(b"{\"cmd\":\"ACK\",\"id\":");
        self.msg.extend_from_slice(job.id);
        if let Some(t) = job.token {
            self.msg.extend_from_slice(b",\"token\":");
            self.msg.extend_from_slice(t);
        }
        self.msg.extend_from_slice(b",\"reqId\":");
        self.frame(out, req);
    }

    fn parse<'a>(&self, buf: &'a mut [u8], want_marks: bool) -> Result<Parsed<'a>, String> {
        if buf.len() < 2 {
            return Ok(Parsed::Incomplete);
        }
        let (b0, b1) = (buf[0], buf[1]);
        let (fin, opcode, masked) = (b0 & 0x80 != 0, b0 & 0x0f, b1 & 0x80 != 0);
        let (len, mut at) = match b1 & 0x7f {
            126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
            127 if buf.len() >= 10 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(&buf[2..10]);
                (u64::from_be_bytes(b) as usize, 10)
            }
            126 | 127 => return Ok(Parsed::Incomplete),
            n => (n as usize, 2),
        };
        let mut key = [0u8; 4];
        if masked {
            if buf.len() < at + 4 {
                return Ok(Parsed::Incomplete);
            }
            key.copy_from_slice(&buf[at..at + 4]);
            at += 4;
        }
        let total = at.checked_add(len).ok_or("frame too large")?;
        if buf.len() < total {
            return Ok(Parsed::Incomplete);
        }
        if masked {
            for (i, b) in buf[at..total].iter_mut().enumerate() {
                *b ^= key[i & 3];
            }
        }
        match opcode {
            0x8 => return Err("socket closed by the server".into()),
            0x9 | 0xa => return Ok(Parsed::Skip(total)),
            0x1 | 0x2 if fin => {}
            _ => return Err("fragmented WebSocket messages are not supported".into()),
        }
        let body: &'a [u8] = &buf[at..total];
        if memchr::memmem::find(body, b"\"reqId\"").is_none() {
            return Ok(Parsed::Skip(total)); // a broadcast event
        }
        let reply: Reply<'a> = json_reply(body, true, want_marks)?;
        if reply.req_id.is_none() {
            return Ok(Parsed::Skip(total));
        }
        Ok(Parsed::Reply(total, reply))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unmask(frame: &[u8]) -> serde_json::Value {
        assert_eq!(frame[0], 0x81);
        let (len, at) = match frame[1] & 0x7f {
            126 => (u16::from_be_bytes([frame[2], frame[3]]) as usize, 4),
            n => (n as usize, 2),
        };
        let key = &frame[at..at + 4];
        let body: Vec<u8> = frame[at + 4..at + 4 + len]
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ key[i & 3])
            .collect();
        assert_eq!(frame.len(), at + 4 + len);
        serde_json::from_slice(&body).unwrap()
    }

    #[test]
    fn masked_commands() {
        let mut ws = Ws::new(&["q".into()], Payload::new(0), 3, &[0, 500], 42);
        let mut out = Vec::new();
        ws.push(&mut out, 7, 0, None);
        let v = unmask(&out);
        assert_eq!(
            (v["cmd"].as_str(), v["reqId"].as_u64()),
            (Some("PUSH"), Some(7))
        );
        out.clear();
        ws.bulk(&mut out, 8, 0);
        assert_eq!(unmask(&out)["jobs"].as_array().unwrap().len(), 3);
        out.clear();
        ws.pull(&mut out, 9, 0, 500);
        assert_eq!(unmask(&out)["timeout"], 500);
        out.clear();
        ws.ack(
            &mut out,
            10,
            &Job {
                id: b"\"x\"",
                token: None,
                marks: None,
            },
        );
        assert_eq!(
            unmask(&out),
            serde_json::json!({"cmd": "ACK", "id": "x", "reqId": 10})
        );
    }

    #[test]
    fn server_frames() {
        let ws = Ws::new(&["q".into()], Payload::new(0), 1, &[0], 1);
        let body = br#"{"ok":true,"id":"a","reqId":3}"#;
        let mut f = vec![0x81, body.len() as u8];
        f.extend_from_slice(body);
        f.extend_from_slice(&[0x81, 2, b'{', b'}']);
        match ws.parse(&mut f.clone(), false).unwrap() {
            Parsed::Reply(n, r) => assert!(n == body.len() + 2 && r.ok && r.req_id == Some(3)),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            ws.parse(&mut f[..5].to_vec(), false).unwrap(),
            Parsed::Incomplete
        ));
        assert!(matches!(
            ws.parse(&mut f[body.len() + 2..].to_vec(), false).unwrap(),
            Parsed::Skip(4)
        ));
        assert!(ws.parse(&mut [0x88, 0], false).is_err());
    }
}
