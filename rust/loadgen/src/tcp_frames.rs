//! bunqueue's TCP protocol: a 4-byte big-endian length and one MessagePack map per frame.
//! Requests end with `reqId` as a uint32, so prebuilt ones are copied and patched; replies
//! are matched on it and event frames (`type: "event"`) are skipped.

use crate::msgpack::{self, Reader, Val};
use crate::payload::Payload;
use crate::wire::{Job, Marks, Parsed, Reply, Wire};

pub const MAX_FRAME: usize = 64 * 1024 * 1024;

pub struct Tcp {
    push: Vec<Vec<u8>>,
    bulk: Vec<Vec<u8>>,
    pull: Vec<Vec<(u64, Vec<u8>)>>,
    queues: Vec<String>,
    payload: Payload,
}

/// Starts a frame: the length (filled in by `end`) and a map of `fields` + reqId.
fn begin(out: &mut Vec<u8>, fields: u16) -> usize {
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    msgpack::map(out, fields + 1);
    at
}

fn end(out: &mut Vec<u8>, at: usize, req: u32) {
    msgpack::str(out, b"reqId");
    msgpack::u32(out, req);
    let len = (out.len() - at - 4) as u32;
    out[at..at + 4].copy_from_slice(&len.to_be_bytes());
}

fn kv(out: &mut Vec<u8>, k: &str, v: &[u8]) {
    msgpack::str(out, k.as_bytes());
    msgpack::str(out, v);
}

/// A prebuilt request copied out with its `reqId` (the last 4 bytes) patched.
fn patched(out: &mut Vec<u8>, frame: &[u8], req: u32) {
    out.extend_from_slice(frame);
    let n = out.len();
    out[n - 4..].copy_from_slice(&req.to_be_bytes());
}

/// The `Auth` frame sent first when the run has a token.
pub fn auth(token: &str, req: u32) -> Vec<u8> {
    let mut out = Vec::new();
    let at = begin(&mut out, 2);
    kv(&mut out, "cmd", b"Auth");
    kv(&mut out, "token", token.as_bytes());
    end(&mut out, at, req);
    out
}

impl Tcp {
    pub fn new(queues: &[String], payload: Payload, batch: usize, waits: &[u64]) -> Tcp {
        let (mut push, mut bulk, mut pull) = (vec![], vec![], vec![]);
        for q in queues {
            let mut f = Vec::new();
            let at = begin(&mut f, 3);
            kv(&mut f, "cmd", b"PUSH");
            kv(&mut f, "queue", q.as_bytes());
            msgpack::str(&mut f, b"data");
            payload.write_msgpack(&mut f, None);
            end(&mut f, at, 0);
            push.push(f);
            let mut f = Vec::new();
            let at = begin(&mut f, 3);
            kv(&mut f, "cmd", b"PUSHB");
            kv(&mut f, "queue", q.as_bytes());
            msgpack::str(&mut f, b"jobs");
            msgpack::array(&mut f, batch as u32);
            for _ in 0..batch {
                msgpack::map(&mut f, 1);
                msgpack::str(&mut f, b"data");
                payload.write_msgpack(&mut f, None);
            }
            end(&mut f, at, 0);
            bulk.push(f);
            pull.push(
                waits
                    .iter()
                    .map(|w| {
                        let mut f = Vec::new();
                        let at = begin(&mut f, 2 + u16::from(*w > 0));
                        kv(&mut f, "cmd", b"PULL");
                        kv(&mut f, "queue", q.as_bytes());
                        if *w > 0 {
                            msgpack::str(&mut f, b"timeout");
                            msgpack::u32(&mut f, (*w).min(u32::MAX as u64) as u32);
                        }
                        end(&mut f, at, 0);
                        (*w, f)
                    })
                    .collect(),
            );
        }
        Tcp {
            push,
            bulk,
            pull,
            queues: queues.to_vec(),
            payload,
        }
    }
}

impl Wire for Tcp {
    fn push(&mut self, out: &mut Vec<u8>, req: u32, queue: usize, marks: Option<Marks>) {
        match marks {
            None => patched(out, &self.push[queue], req),
            Some(m) => {
                let at = begin(out, 3);
                kv(out, "cmd", b"PUSH");
                kv(out, "queue", self.queues[queue].as_bytes());
                msgpack::str(out, b"data");
                self.payload.write_msgpack(out, Some(m));
                end(out, at, req);
            }
        }
    }

    fn bulk(&mut self, out: &mut Vec<u8>, req: u32, queue: usize) {
        patched(out, &self.bulk[queue], req);
    }

    fn pull(&mut self, out: &mut Vec<u8>, req: u32, queue: usize, wait_ms: u64) {
        let f = &self.pull[queue]
            .iter()
            .find(|(w, _)| *w == wait_ms)
            .expect("a pull wait the run announced")
            .1;
        patched(out, f, req);
    }

    fn ack(&mut self, out: &mut Vec<u8>, req: u32, job: &Job<'_>) {
        let at = begin(out, 2 + u16::from(job.token.is_some()));
        kv(out, "cmd", b"ACK");
        kv(out, "id", job.id);
        if let Some(t) = job.token {
            kv(out, "token", t);
        }
        end(out, at, req);
    }

    fn parse<'a>(&self, buf: &'a mut [u8], want_marks: bool) -> Result<Parsed<'a>, String> {
        if buf.len() < 4 {
            return Ok(Parsed::Incomplete);
        }
        let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        if len > MAX_FRAME {
            return Err(format!("frame of {len} bytes from the server"));
        }
        if buf.len() < 4 + len {
            return Ok(Parsed::Incomplete);
        }
        let buf: &'a [u8] = buf;
        let reply = decode(&buf[4..4 + len], want_marks).ok_or("malformed reply frame")?;
        Ok(match reply {
            Some(r) => Parsed::Reply(4 + len, r),
            None => Parsed::Skip(4 + len),
        })
    }
}

/// A reply map; Some(None) for an event or a frame without a `reqId`.
fn decode(body: &[u8], want_marks: bool) -> Option<Option<Reply<'_>>> {
    let mut r = Reader::new(body);
    let Val::Map(n) = r.value()? else {
        return None;
    };
    let mut reply = Reply {
        req_id: None,
        ok: false,
        error: None,
        job: None,
    };
    let mut token = None;
    let mut event = false;
    for _ in 0..n {
        let Val::Str(key) = r.value()? else {
            r.skip()?; // a non-string key's value
            continue;
        };
        match key {
            b"reqId" => match r.value()? {
                Val::Int(i) if i >= 0 => reply.req_id = Some(i as u64),
                Val::Array(_) | Val::Map(_) => return None,
                _ => {}
            },
            b"ok" => match r.value()? {
                Val::Bool(b) => reply.ok = b,
                Val::Array(_) | Val::Map(_) => return None,
                _ => {}
            },
            b"type" => {
                let at = r.pos;
                if r.value()? == Val::Str(b"event") {
                    event = true;
                } else {
                    r = Reader::new(body);
                    r.pos = at;
                    r.skip()?;
                }
            }
            b"error" => {
                let at = r.pos;
                r.skip()?;
                reply.error = Some(match Reader::new(&body[at..]).value()? {
                    Val::Str(s) => s,
                    _ => &body[at..r.pos],
                });
            }
            b"token" => {
                let at = r.pos;
                match r.value()? {
                    Val::Str(s) => token = Some(s),
                    Val::Array(_) | Val::Map(_) => {
                        r.pos = at;
                        r.skip()?;
                    }
                    _ => {}
                }
            }
            b"job" => {
                let at = r.pos;
                match r.value()? {
                    Val::Map(m) => reply.job = Some(job(&mut r, m, want_marks)?),
                    Val::Array(_) => {
                        r.pos = at;
                        r.skip()?;
                    }
                    _ => {}
                }
            }
            _ => r.skip()?,
        }
    }
    if let Some(j) = reply.job.as_mut() {
        j.token = token;
    }
    if event || reply.req_id.is_none() {
        return Some(None);
    }
    if reply.ok {
        reply.error = None;
    }
    Some(Some(reply))
}

fn job<'a>(r: &mut Reader<'a>, fields: u32, want_marks: bool) -> Option<Job<'a>> {
    let mut job = Job {
        id: b"",
        token: None,
        marks: None,
    };
    for _ in 0..fields {
        let at = r.pos;
        match r.value()? {
            Val::Str(b"id") => {
                if let Val::Str(s) = r.value()? {
                    job.id = s;
                } else {
                    return None;
                }
            }
            Val::Str(b"data") if want_marks => {
                let at = r.pos;
                r.skip()?;
                job.marks = marks(r.clone_at(at)?);
            }
            Val::Array(_) | Val::Map(_) => {
                r.pos = at;
                r.skip()?; // the key
                r.skip()?;
            }
            _ => r.skip()?,
        }
    }
    Some(job)
}

fn marks(mut r: Reader<'_>) -> Option<Marks> {
    let Val::Map(n) = r.value()? else {
        return None;
    };
    for _ in 0..n {
        if r.value()? == Val::Str(b"bench") {
            let Val::Array(3) = r.value()? else {
                return None;
            };
            let (i, s, m) = (
                r.value()?.number()?,
                r.value()?.number()?,
                r.value()?.number()?,
            );
            return Some(Marks {
                intended: i as u64,
                sent: s as u64,
                measured: m != 0.0,
            });
        }
        r.skip()?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_patch_the_req_id() {
        let mut t = Tcp::new(&["q".into()], Payload::new(0), 2, &[0, 1000]);
        let mut out = Vec::new();
        t.push(&mut out, 0x01020304, 0, None);
        let len = u32::from_be_bytes(out[..4].try_into().unwrap()) as usize;
        assert_eq!(out.len(), 4 + len);
        assert!(out.ends_with(&[0xa5, b'r', b'e', b'q', b'I', b'd', 0xce, 1, 2, 3, 4]));
        let mut r = Reader::new(&out[4..]);
        assert_eq!(r.value(), Some(Val::Map(4)));
        r.pos = 0;
        r.skip().unwrap();
        assert_eq!(r.pos, len);
    }

    fn frame(build: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
        let mut body = Vec::new();
        build(&mut body);
        let mut f = (body.len() as u32).to_be_bytes().to_vec();
        f.extend_from_slice(&body);
        f
    }

    #[test]
    fn replies_and_events() {
        let t = Tcp::new(&["q".into()], Payload::new(0), 1, &[0]);
        let mut pulled = frame(|b| {
            msgpack::map(b, 4);
            kv(b, "token", b"tk");
            msgpack::str(b, b"job");
            msgpack::map(b, 2);
            kv(b, "id", b"j1");
            msgpack::str(b, b"data");
            Payload::new(0).write_msgpack(
                b,
                Some(Marks {
                    intended: 5_000_000_000_000,
                    sent: 6,
                    measured: true,
                }),
            );
            kv(b, "ok", &[]);
            b.pop();
            b.push(0xc3);
            msgpack::str(b, b"reqId");
            b.push(9);
        });
        // `kv(b, "ok", &[])` wrote an empty string value: replaced by `true` above
        let n = pulled.len();
        match t.parse(&mut pulled, true).unwrap() {
            Parsed::Reply(used, r) => {
                assert_eq!((used, r.ok, r.req_id), (n, true, Some(9)));
                let j = r.job.unwrap();
                assert_eq!((j.id, j.token), (&b"j1"[..], Some(&b"tk"[..])));
                assert_eq!(j.marks.unwrap().intended, 5_000_000_000_000);
            }
            other => panic!("{other:?}"),
        }
        let mut event = frame(|b| {
            msgpack::map(b, 1);
            kv(b, "type", b"event");
        });
        assert!(matches!(
            t.parse(&mut event, false).unwrap(),
            Parsed::Skip(_)
        ));
        assert!(matches!(
            t.parse(&mut event[..3].to_vec(), false).unwrap(),
            Parsed::Incomplete
        ));
    }
}
