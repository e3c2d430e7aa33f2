//! bunqueue's TCP protocol: a 4-byte big-endian length and one MessagePack map per frame.
//! Requests end with `reqId` as a uint32, so prebuilt ones are copied and patched; replies
//! are matched on it and event frames (`type: "event"`) are skipped.

use crate::msgpack::{self, Reader, Val};
use crate::payload::Payload;
use crate::wire::{Job, Jobs, Marks, Parsed, Reply, Wire};

pub const MAX_FRAME: usize = 64 * 1024 * 1024;
/// The lock a PULLB takes, as the SDK's Worker and the Bun raw client ask for it.
const LOCK_TTL_MS: u32 = 30_000;

pub struct Tcp {
    push: Vec<Vec<u8>>,
    bulk: Vec<Vec<u8>>,
    pull: Vec<Vec<(u64, Vec<u8>)>>,
    pull_batch: Vec<Vec<u8>>,
    queues: Vec<String>,
    payload: Payload,
    /// An ACKB's `ids`, gathered while its `tokens` are written (one pass over the jobs).
    ids: Vec<u8>,
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

/// A prebuilt request `{cmd, queue, <more fields written by rest>, reqId: 0}`.
fn prebuilt(cmd: &[u8], queue: &str, more: u16, rest: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut f = Vec::new();
    let at = begin(&mut f, 2 + more);
    kv(&mut f, "cmd", cmd);
    kv(&mut f, "queue", queue.as_bytes());
    rest(&mut f);
    end(&mut f, at, 0);
    f
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
    /// `seed` names the connection's lock owner (PULLB answers lock tokens to an owner).
    pub fn new(queues: &[String], payload: Payload, batch: usize, waits: &[u64], seed: u64) -> Tcp {
        let (mut push, mut bulk, mut pull, mut pull_batch) = (vec![], vec![], vec![], vec![]);
        let owner = format!("hopper-bench-{seed:x}");
        for q in queues {
            push.push(prebuilt(b"PUSH", q, 1, |f| {
                msgpack::str(f, b"data");
                payload.write_msgpack(f, None);
            }));
            bulk.push(prebuilt(b"PUSHB", q, 1, |f| {
                msgpack::str(f, b"jobs");
                msgpack::array(f, batch as u32);
                for _ in 0..batch {
                    msgpack::map(f, 1);
                    msgpack::str(f, b"data");
                    payload.write_msgpack(f, None);
                }
            }));
            pull.push(
                waits
                    .iter()
                    .map(|&w| {
                        let f = prebuilt(b"PULL", q, u16::from(w > 0), |f| {
                            if w > 0 {
                                msgpack::str(f, b"timeout");
                                msgpack::u32(f, w.min(u32::MAX as u64) as u32);
                            }
                        });
                        (w, f)
                    })
                    .collect(),
            );
            pull_batch.push(prebuilt(b"PULLB", q, 4, |f| {
                msgpack::str(f, b"count");
                msgpack::u32(f, batch as u32);
                msgpack::str(f, b"timeout");
                msgpack::u32(f, 0);
                kv(f, "owner", owner.as_bytes());
                msgpack::str(f, b"lockTtl");
                msgpack::u32(f, LOCK_TTL_MS);
            }));
        }
        Tcp {
            push,
            bulk,
            pull,
            pull_batch,
            queues: queues.to_vec(),
            payload,
            ids: Vec::new(),
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

    fn pull_batch(&mut self, out: &mut Vec<u8>, req: u32, queue: usize) {
        patched(out, &self.pull_batch[queue], req);
    }

    /// `tokens` ("" for a job without one) and `ids`, in one pass over the jobs.
    fn ack_batch(&mut self, out: &mut Vec<u8>, req: u32, jobs: &Jobs<'_>) {
        let n = jobs.len() as u32;
        let at = begin(out, 3);
        kv(out, "cmd", b"ACKB");
        msgpack::str(out, b"tokens");
        msgpack::array(out, n);
        self.ids.clear();
        msgpack::str(&mut self.ids, b"ids");
        msgpack::array(&mut self.ids, n);
        for job in jobs.iter() {
            msgpack::str(out, job.token.unwrap_or(b""));
            msgpack::str(&mut self.ids, job.id);
        }
        out.extend_from_slice(&self.ids);
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

/// A run of `n` job maps from `jobs` in a reply's body, each paired with the string (or
/// nil) at the same place of the run at `tokens`. A PULL reply's `job` and `token` are a
/// run of one, a PULLB reply's `jobs` and `tokens` arrays a run of their length: one
/// decoding path for both.
#[derive(Clone, Copy, Debug)]
pub struct Packed<'a> {
    body: &'a [u8],
    jobs: usize,
    tokens: Option<usize>,
    n: u32,
    want_marks: bool,
}

impl<'a> Packed<'a> {
    pub fn len(&self) -> usize {
        self.n as usize
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// The jobs in order (`decode` read them all once, so none is cut short).
    pub fn iter(&self) -> impl Iterator<Item = Job<'a>> {
        let mut jobs = Reader::new(self.body);
        jobs.pos = self.jobs;
        let mut tokens = self.tokens.map(|at| {
            let mut r = Reader::new(self.body);
            r.pos = at;
            r
        });
        let want_marks = self.want_marks;
        (0..self.n).map_while(move |_| {
            let mut j = job(&mut jobs, want_marks)?;
            if let Some(t) = tokens.as_mut() {
                j.token = token(t)?;
            }
            Some(j)
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
        jobs: Jobs::Json(None),
    };
    let mut jobs = Packed {
        body,
        jobs: 0,
        tokens: None,
        n: 0,
        want_marks,
    };
    let mut tokens = 0;
    let mut event = false;
    for _ in 0..n {
        let Val::Str(key) = r.value()? else {
            r.skip()?; // a non-string key's value
            continue;
        };
        let at = r.pos;
        match (key, r.value()?) {
            (b"reqId", Val::Int(i)) if i >= 0 => reply.req_id = Some(i as u64),
            (b"ok", Val::Bool(b)) => reply.ok = b,
            (b"type", v) => {
                event = v == Val::Str(b"event");
                r.pos = at;
                r.skip()?;
            }
            (b"error", v) => {
                r.pos = at;
                r.skip()?;
                reply.error = Some(match v {
                    Val::Str(s) => s,
                    _ => &body[at..r.pos],
                });
            }
            // a run of one is the value itself, a run of many the array's items
            (b"job", Val::Map(_)) => (jobs.jobs, jobs.n) = run(&mut r, at, 1, job_at(want_marks))?,
            (b"jobs", Val::Array(n)) => {
                let items = r.pos;
                (jobs.jobs, jobs.n) = run(&mut r, items, n, job_at(want_marks))?;
            }
            (b"token", Val::Str(_)) => (jobs.tokens, tokens) = some(run(&mut r, at, 1, token)?),
            (b"tokens", Val::Array(n)) => {
                let items = r.pos;
                (jobs.tokens, tokens) = some(run(&mut r, items, n, token)?);
            }
            _ => {
                r.pos = at;
                r.skip()?;
            }
        }
    }
    if jobs.tokens.is_some() && tokens != jobs.n {
        return None;
    }
    reply.jobs = Jobs::Packed(jobs);
    if event || reply.req_id.is_none() {
        return Some(None);
    }
    if reply.ok {
        reply.error = None;
    }
    Some(Some(reply))
}

/// Reads the `n` values from `start` with `read` (each must decode): where they start and
/// how many.
fn run<'a, T>(
    r: &mut Reader<'a>,
    start: usize,
    n: u32,
    mut read: impl FnMut(&mut Reader<'a>) -> Option<T>,
) -> Option<(usize, u32)> {
    r.pos = start;
    for _ in 0..n {
        read(r)?;
    }
    Some((start, n))
}

fn some((start, n): (usize, u32)) -> (Option<usize>, u32) {
    (Some(start), n)
}

fn job_at<'a>(want_marks: bool) -> impl FnMut(&mut Reader<'a>) -> Option<Job<'a>> {
    move |r| job(r, want_marks)
}

/// A lock token: a string ("" = none) or nil.
fn token<'a>(r: &mut Reader<'a>) -> Option<Option<&'a [u8]>> {
    match r.value()? {
        Val::Str(s) => Some((!s.is_empty()).then_some(s)),
        Val::Nil => Some(None),
        _ => None,
    }
}

fn job<'a>(r: &mut Reader<'a>, want_marks: bool) -> Option<Job<'a>> {
    let Val::Map(fields) = r.value()? else {
        return None;
    };
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
        let mut t = Tcp::new(&["q".into()], Payload::new(0), 2, &[0, 1000], 1);
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
        let t = Tcp::new(&["q".into()], Payload::new(0), 1, &[0], 1);
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
                assert_eq!(r.jobs.len(), 1);
                let j = r.jobs.first().unwrap();
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

    /// Reads a request frame back as (key, value) pairs: strings, u32s and string arrays.
    fn fields(frame: &[u8]) -> Vec<(String, String)> {
        let mut r = Reader::new(&frame[4..]);
        let Some(Val::Map(n)) = r.value() else {
            panic!("not a map")
        };
        let text = |v: Val<'_>| match v {
            Val::Str(s) => String::from_utf8_lossy(s).into_owned(),
            Val::Int(i) => i.to_string(),
            other => format!("{other:?}"),
        };
        (0..n)
            .map(|_| {
                let key = text(r.value().unwrap());
                let value = match r.value().unwrap() {
                    Val::Array(k) => {
                        let items: Vec<String> = (0..k).map(|_| text(r.value().unwrap())).collect();
                        items.join(",")
                    }
                    v => text(v),
                };
                (key, value)
            })
            .collect()
    }

    fn owned(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_pullb_reply_carries_its_jobs_and_the_ackb_acks_them_all() {
        let mut t = Tcp::new(&["q".into()], Payload::new(0), 3, &[], 0xab);
        let mut out = Vec::new();
        t.pull_batch(&mut out, 5, 0);
        assert_eq!(
            fields(&out),
            owned(&[
                ("cmd", "PULLB"),
                ("queue", "q"),
                ("count", "3"),
                ("timeout", "0"),
                ("owner", "hopper-bench-ab"),
                ("lockTtl", "30000"),
                ("reqId", "5"),
            ])
        );

        // {ok, jobs:[3 jobs], tokens:[3], reqId}: the tokens before or after the jobs
        for tokens_first in [false, true] {
            let mut reply = frame(|b| {
                msgpack::map(b, 4);
                msgpack::str(b, b"ok");
                b.push(0xc3);
                let tokens = |b: &mut Vec<u8>| {
                    msgpack::str(b, b"tokens");
                    msgpack::array(b, 3);
                    for tk in [&b"t1"[..], b"", b"t3"] {
                        msgpack::str(b, tk);
                    }
                };
                if tokens_first {
                    tokens(b);
                }
                msgpack::str(b, b"jobs");
                msgpack::array(b, 3);
                for id in ["a", "b", "c"] {
                    msgpack::map(b, 2);
                    kv(b, "name", b"job");
                    kv(b, "id", id.as_bytes());
                }
                if !tokens_first {
                    tokens(b);
                }
                msgpack::str(b, b"reqId");
                msgpack::u32(b, 5);
            });
            let Parsed::Reply(_, r) = t.parse(&mut reply, false).unwrap() else {
                panic!("a reply")
            };
            let got: Vec<_> = r.jobs.iter().map(|j| (j.id, j.token)).collect();
            assert_eq!(
                got,
                [
                    (&b"a"[..], Some(&b"t1"[..])),
                    (b"b", None),
                    (b"c", Some(b"t3"))
                ]
            );
            out.clear();
            t.ack_batch(&mut out, 6, &r.jobs);
            assert_eq!(
                fields(&out),
                owned(&[
                    ("cmd", "ACKB"),
                    ("tokens", "t1,,t3"),
                    ("ids", "a,b,c"),
                    ("reqId", "6"),
                ])
            );
        }

        // an empty batch; and tokens that do not match the jobs are a malformed frame
        let mut empty = frame(|b| {
            msgpack::map(b, 3);
            kv(b, "ok", &[]);
            b.pop();
            b.push(0xc3);
            msgpack::str(b, b"jobs");
            msgpack::array(b, 0);
            msgpack::str(b, b"reqId");
            b.push(1);
        });
        let Parsed::Reply(_, r) = t.parse(&mut empty, false).unwrap() else {
            panic!("a reply")
        };
        assert!(r.ok && r.jobs.is_empty());
        let mut short = frame(|b| {
            msgpack::map(b, 3);
            msgpack::str(b, b"jobs");
            msgpack::array(b, 1);
            msgpack::map(b, 1);
            kv(b, "id", b"a");
            msgpack::str(b, b"tokens");
            msgpack::array(b, 0);
            msgpack::str(b, b"reqId");
            b.push(1);
        });
        assert!(t.parse(&mut short, false).is_err());
    }
}
