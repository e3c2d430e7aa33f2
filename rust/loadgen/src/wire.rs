//! What every transport does: write its requests into a send buffer, and cut one reply
//! (or a frame to skip) off the front of a receive buffer. Replies borrow from that
//! buffer; nothing is allocated per request on the way.

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::tcp_frames::Packed;

/// The push timestamps an e2e job carries to the worker that acks it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Marks {
    pub intended: u64,
    pub sent: u64,
    pub measured: bool,
}

/// A pulled job: its id and lock token as the transport encodes them (JSON text with
/// quotes for HTTP/WS, the string's bytes for TCP), and the e2e marks if it has them.
#[derive(Clone, Copy, Debug)]
pub struct Job<'a> {
    pub id: &'a [u8],
    pub token: Option<&'a [u8]>,
    pub marks: Option<Marks>,
}

#[derive(Debug)]
pub struct Reply<'a> {
    /// None on HTTP (replies come in order) and for frames that echo none.
    pub req_id: Option<u64>,
    pub ok: bool,
    pub error: Option<&'a [u8]>,
    pub jobs: Jobs<'a>,
}

/// The jobs a reply carries: a JSON reply (HTTP, WS) at most one; a TCP reply a run of
/// MessagePack job maps, one (PULL's `job`) or an array (PULLB's `jobs`), read on demand
/// so that a batch costs no allocation.
#[derive(Clone, Copy, Debug)]
pub enum Jobs<'a> {
    Json(Option<Job<'a>>),
    Packed(Packed<'a>),
}

impl<'a> Jobs<'a> {
    pub fn len(&self) -> usize {
        match self {
            Jobs::Json(j) => usize::from(j.is_some()),
            Jobs::Packed(p) => p.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn first(&self) -> Option<Job<'a>> {
        self.iter().next()
    }

    pub fn iter(&self) -> impl Iterator<Item = Job<'a>> {
        let (json, packed) = match *self {
            Jobs::Json(j) => (j, None),
            Jobs::Packed(p) => (None, Some(p)),
        };
        json.into_iter()
            .chain(packed.into_iter().flat_map(|p| p.iter()))
    }
}

#[derive(Debug)]
pub enum Parsed<'a> {
    /// Not a whole frame yet.
    Incomplete,
    /// A frame that is not a reply (an event, a control frame), this many bytes long.
    Skip(usize),
    Reply(usize, Reply<'a>),
}

pub trait Wire {
    fn push(&mut self, out: &mut Vec<u8>, req: u32, queue: usize, marks: Option<Marks>);
    fn bulk(&mut self, out: &mut Vec<u8>, req: u32, queue: usize);
    fn pull(&mut self, out: &mut Vec<u8>, req: u32, queue: usize, wait_ms: u64);
    fn ack(&mut self, out: &mut Vec<u8>, req: u32, job: &Job<'_>);
    /// PULLB: up to `batch` jobs at once, without waiting (TCP only: `Config::check`
    /// keeps the pullb scenario to it).
    fn pull_batch(&mut self, _out: &mut Vec<u8>, _req: u32, _queue: usize) {
        unreachable!("pullb runs on the TCP transport only");
    }
    /// ACKB of every job a PULLB answered.
    fn ack_batch(&mut self, _out: &mut Vec<u8>, _req: u32, _jobs: &Jobs<'_>) {
        unreachable!("pullb runs on the TCP transport only");
    }
    /// The first frame of `buf`. `want_marks`: decode the e2e marks of a pulled job.
    /// Frames may be rewritten in place (a chunked body made contiguous).
    fn parse<'a>(&self, buf: &'a mut [u8], want_marks: bool) -> Result<Parsed<'a>, String>;
}

#[derive(Deserialize)]
struct JsonReply<'a> {
    #[serde(default)]
    ok: Option<bool>,
    #[serde(rename = "reqId", default)]
    req_id: Option<u64>,
    #[serde(borrow, default)]
    error: Option<&'a RawValue>,
    #[serde(borrow, default)]
    job: Option<JsonJob<'a>>,
    #[serde(borrow, default)]
    token: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct JsonJob<'a> {
    #[serde(borrow)]
    id: &'a RawValue,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct MarkData {
    bench: Option<(f64, f64, f64)>,
}

/// A JSON reply body (HTTP or WS). `status_ok`: the HTTP status was 2xx.
pub fn json_reply(body: &[u8], status_ok: bool, want_marks: bool) -> Result<Reply<'_>, String> {
    let r: JsonReply<'_> = serde_json::from_slice(body).map_err(|e| {
        let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
        format!("unparsable reply ({e}): {text}")
    })?;
    let job = r.job.map(|j| Job {
        id: j.id.get().as_bytes(),
        token: r
            .token
            .map(|t| t.get().as_bytes())
            .filter(|t| *t != b"null"),
        marks: j
            .data
            .filter(|_| want_marks)
            .and_then(|d| serde_json::from_str::<MarkData>(d.get()).ok())
            .and_then(|m| m.bench)
            .map(|(i, s, m)| Marks {
                intended: i as u64,
                sent: s as u64,
                measured: m != 0.0,
            }),
    });
    let ok = status_ok && r.ok != Some(false);
    let error = if ok {
        None
    } else {
        Some(r.error.map_or(body, |e| e.get().as_bytes()))
    };
    Ok(Reply {
        req_id: r.req_id,
        ok,
        error,
        jobs: Jobs::Json(job),
    })
}

/// A JSON string literal for `s` (queue names in prebuilt requests).
pub fn json_str(s: &str) -> String {
    serde_json::to_string(s).expect("a string serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_replies() {
        let r = json_reply(br#"{"ok":true,"id":"a","reqId":7}"#, true, false).unwrap();
        assert!(r.ok && r.jobs.is_empty() && r.req_id == Some(7));
        let body = br#"{"ok":true,"job":{"id":"j1","data":{"n":1,"bench":[10,12,1]}},"token":"t"}"#;
        let r = json_reply(body, true, true).unwrap();
        let j = r.jobs.first().unwrap();
        assert_eq!((j.id, j.token), (&b"\"j1\""[..], Some(&b"\"t\""[..])));
        assert_eq!(
            j.marks,
            Some(Marks {
                intended: 10,
                sent: 12,
                measured: true
            })
        );
        let r = json_reply(br#"{"ok":true,"job":null}"#, true, true).unwrap();
        assert!(r.ok && r.jobs.is_empty());
        let r = json_reply(br#"{"ok":false,"error":"nope"}"#, true, false).unwrap();
        assert_eq!(r.error, Some(&b"\"nope\""[..]));
        let r = json_reply(br#"{"error":"Not Found"}"#, false, false).unwrap();
        assert!(!r.ok);
        assert!(json_reply(b"<html>", true, false).is_err());
    }
}
