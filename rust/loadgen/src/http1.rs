//! The job API over HTTP/1.1 keep-alive: requests prebuilt per queue (push, bulk push,
//! pull), the ack written from the pulled job's id; responses cut by Content-Length or
//! chunked transfer coding.

use crate::payload::Payload;
use crate::wire::{json_reply, Job, Marks, Parsed, Wire};

pub struct Http {
    head: Vec<u8>,
    push: Vec<Vec<u8>>,
    push_line: Vec<Vec<u8>>,
    bulk: Vec<Vec<u8>>,
    /// Per queue: (wait ms, request) for the waits the run uses.
    pull: Vec<Vec<(u64, Vec<u8>)>>,
    payload: Payload,
    scratch: Vec<u8>,
}

/// Percent-encodes a path segment (queue names are usually plain already).
fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~:@".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn request(line: &[u8], head: &[u8], body: Option<&[u8]>) -> Vec<u8> {
    let mut r = Vec::new();
    write_request(&mut r, line, head, body);
    r
}

fn write_request(out: &mut Vec<u8>, line: &[u8], head: &[u8], body: Option<&[u8]>) {
    out.extend_from_slice(line);
    out.extend_from_slice(head);
    if let Some(b) = body {
        out.extend_from_slice(b"Content-Type: application/json\r\nContent-Length: ");
        out.extend_from_slice(itoa::Buffer::new().format(b.len()).as_bytes());
        out.extend_from_slice(b"\r\n\r\n");
        out.extend_from_slice(b);
    } else {
        out.extend_from_slice(b"\r\n");
    }
}

impl Http {
    pub fn new(
        host: &str,
        port: u16,
        token: Option<&str>,
        queues: &[String],
        payload: Payload,
        batch: usize,
        waits: &[u64],
    ) -> Http {
        let mut head = format!("Host: {host}:{port}\r\n").into_bytes();
        if let Some(t) = token {
            head.extend_from_slice(format!("Authorization: Bearer {t}\r\n").as_bytes());
        }
        let mut body = Vec::new();
        let (mut push, mut push_line, mut bulk, mut pull) = (vec![], vec![], vec![], vec![]);
        for q in queues {
            let q = segment(q);
            let line = format!("POST /queues/{q}/jobs HTTP/1.1\r\n").into_bytes();
            body.clear();
            body.extend_from_slice(b"{\"data\":");
            payload.write_json(&mut body, None);
            body.push(b'}');
            push.push(request(&line, &head, Some(&body)));
            push_line.push(line);
            body.clear();
            body.extend_from_slice(b"{\"jobs\":");
            payload.write_json_jobs(&mut body, batch);
            body.push(b'}');
            let line = format!("POST /queues/{q}/jobs/bulk HTTP/1.1\r\n");
            bulk.push(request(line.as_bytes(), &head, Some(&body)));
            pull.push(
                waits
                    .iter()
                    .map(|w| {
                        let line = format!("GET /queues/{q}/jobs?timeout={w} HTTP/1.1\r\n");
                        (*w, request(line.as_bytes(), &head, None))
                    })
                    .collect(),
            );
        }
        Http {
            head,
            push,
            push_line,
            bulk,
            pull,
            payload,
            scratch: Vec::new(),
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(hay, needle)
}

fn trim(s: &[u8]) -> &[u8] {
    let start = s
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &s[start..end]
}

fn number(s: &[u8], radix: u32) -> Option<usize> {
    usize::from_str_radix(std::str::from_utf8(trim(s)).ok()?, radix).ok()
}

/// Joins the chunks of a chunked body that starts at `buf[0]` in place. Returns the
/// body's length and the bytes the chunked coding took, or None if not complete.
fn dechunk(buf: &mut [u8]) -> Result<Option<(usize, usize)>, String> {
    let (mut read, mut write) = (0, 0);
    loop {
        let Some(eol) = find(&buf[read..], b"\r\n") else {
            return Ok(None);
        };
        let size_field = &buf[read..read + eol];
        let size_field = &size_field[..size_field
            .iter()
            .position(|b| *b == b';')
            .unwrap_or(size_field.len())];
        let size = number(size_field, 16).ok_or("bad chunk size")?;
        let data = read + eol + 2;
        if size == 0 {
            // the last chunk; no trailers are expected, just the final CRLF
            let Some(end) = find(&buf[data..], b"\r\n\r\n").map(|e| e + 4).or_else(|| {
                (buf.len() >= data + 2 && &buf[data..data + 2] == b"\r\n").then_some(2)
            }) else {
                return Ok(None);
            };
            return Ok(Some((write, data + end)));
        }
        if buf.len() < data + size + 2 {
            return Ok(None);
        }
        buf.copy_within(data..data + size, write);
        write += size;
        read = data + size + 2;
    }
}

impl Wire for Http {
    fn push(&mut self, out: &mut Vec<u8>, _req: u32, queue: usize, marks: Option<Marks>) {
        match marks {
            None => out.extend_from_slice(&self.push[queue]),
            Some(m) => {
                self.scratch.clear();
                self.scratch.extend_from_slice(b"{\"data\":");
                self.payload.write_json(&mut self.scratch, Some(m));
                self.scratch.push(b'}');
                write_request(out, &self.push_line[queue], &self.head, Some(&self.scratch));
            }
        }
    }

    fn bulk(&mut self, out: &mut Vec<u8>, _req: u32, queue: usize) {
        out.extend_from_slice(&self.bulk[queue]);
    }

    fn pull(&mut self, out: &mut Vec<u8>, _req: u32, queue: usize, wait_ms: u64) {
        let r = self.pull[queue]
            .iter()
            .find(|(w, _)| *w == wait_ms)
            .expect("a pull wait the run announced");
        out.extend_from_slice(&r.1);
    }

    fn ack(&mut self, out: &mut Vec<u8>, _req: u32, job: &Job<'_>) {
        let id = job.id.strip_prefix(b"\"").unwrap_or(job.id);
        let id = id.strip_suffix(b"\"").unwrap_or(id);
        out.extend_from_slice(b"POST /jobs/");
        out.extend_from_slice(id);
        out.extend_from_slice(b"/ack HTTP/1.1\r\n");
        out.extend_from_slice(&self.head);
        out.extend_from_slice(b"Content-Type: application/json\r\nContent-Length: ");
        let mut b = itoa::Buffer::new();
        match job.token {
            Some(t) => {
                out.extend_from_slice(b.format(t.len() + 10).as_bytes());
                out.extend_from_slice(b"\r\n\r\n{\"token\":");
                out.extend_from_slice(t);
                out.push(b'}');
            }
            None => out.extend_from_slice(b"2\r\n\r\n{}"),
        }
    }

    fn parse<'a>(&self, buf: &'a mut [u8], want_marks: bool) -> Result<Parsed<'a>, String> {
        let Some(head_len) = find(buf, b"\r\n\r\n") else {
            if buf.len() > 64 * 1024 {
                return Err("response head over 64 KiB".into());
            }
            return Ok(Parsed::Incomplete);
        };
        let head = &buf[..head_len];
        let line_end = find(head, b"\r\n").unwrap_or(head.len());
        let status_line = &head[..line_end];
        let status = status_line
            .split(|b| *b == b' ')
            .nth(1)
            .and_then(|s| number(s, 10))
            .ok_or_else(|| format!("bad status line: {}", String::from_utf8_lossy(status_line)))?;
        let (mut length, mut chunked) = (None, false);
        for line in head.split(|b| *b == b'\n').skip(1) {
            let Some(colon) = line.iter().position(|b| *b == b':') else {
                continue;
            };
            let (name, value) = (&line[..colon], trim(&line[colon + 1..]));
            if name.eq_ignore_ascii_case(b"content-length") {
                length = Some(number(value, 10).ok_or("bad Content-Length")?);
            } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
                chunked = value.eq_ignore_ascii_case(b"chunked");
            }
        }
        let body_at = head_len + 4;
        if (100..200).contains(&status) {
            return Ok(Parsed::Skip(body_at));
        }
        let (body, total) = if chunked {
            match dechunk(&mut buf[body_at..])? {
                None => return Ok(Parsed::Incomplete),
                Some((len, used)) => (body_at..body_at + len, body_at + used),
            }
        } else {
            let len = length.unwrap_or(0);
            if buf.len() < body_at + len {
                return Ok(Parsed::Incomplete);
            }
            (body_at..body_at + len, body_at + len)
        };
        let buf: &'a [u8] = buf;
        let ok_status = (200..300).contains(&status);
        let reply = match json_reply(&buf[body], ok_status, want_marks) {
            Ok(r) => r,
            Err(_) if !ok_status => crate::wire::Reply {
                req_id: None,
                ok: false,
                error: Some(&buf[..line_end]),
                jobs: crate::wire::Jobs::Json(None),
            },
            Err(e) => return Err(e),
        };
        Ok(Parsed::Reply(total, reply))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http() -> Http {
        Http::new(
            "h",
            1,
            Some("tk"),
            &["q 1".into()],
            Payload::new(0),
            2,
            &[0, 1000],
        )
    }

    #[test]
    fn prebuilt_requests() {
        let mut h = http();
        let mut out = Vec::new();
        h.push(&mut out, 0, 0, None);
        let text = String::from_utf8(out.clone()).unwrap();
        assert!(text.starts_with(
            "POST /queues/q%201/jobs HTTP/1.1\r\nHost: h:1\r\nAuthorization: Bearer tk\r\n"
        ));
        let body = &text[text.find("\r\n\r\n").unwrap() + 4..];
        assert!(text.contains(&format!("Content-Length: {}\r\n", body.len())));
        out.clear();
        let m = Marks {
            intended: 1,
            sent: 2,
            measured: false,
        };
        h.push(&mut out, 0, 0, Some(m));
        let text = String::from_utf8(out.clone()).unwrap();
        let body = &text[text.find("\r\n\r\n").unwrap() + 4..];
        let len: usize = text
            .split("Content-Length: ")
            .nth(1)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(len, body.len());
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["data"]["bench"], serde_json::json!([1, 2, 0]));
        out.clear();
        h.pull(&mut out, 0, 0, 1000);
        assert!(out.starts_with(b"GET /queues/q%201/jobs?timeout=1000 HTTP/1.1\r\n"));
        out.clear();
        h.ack(
            &mut out,
            0,
            &Job {
                id: b"\"abc\"",
                token: Some(b"\"t\""),
                marks: None,
            },
        );
        assert!(out.starts_with(b"POST /jobs/abc/ack HTTP/1.1\r\n"));
        assert!(out.ends_with(b"Content-Length: 13\r\n\r\n{\"token\":\"t\"}"));
    }

    #[test]
    fn responses_by_length_and_chunked() {
        let h = http();
        let mut buf =
            b"HTTP/1.1 200 OK\r\ncontent-length: 11\r\n\r\n{\"ok\":true}HTTP/1.1".to_vec();
        match h.parse(&mut buf, false).unwrap() {
            Parsed::Reply(n, r) => assert!(n == 50 && r.ok),
            other => panic!("{other:?}"),
        }
        let mut part = b"HTTP/1.1 200 OK\r\ncontent-length: 11\r\n\r\n{\"ok\"".to_vec();
        assert!(matches!(
            h.parse(&mut part, false).unwrap(),
            Parsed::Incomplete
        ));
        let mut chunked =
            b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"ok\"\r\n7\r\n:false}\r\n0\r\n\r\nX"
                .to_vec();
        let n = chunked.len() - 1;
        match h.parse(&mut chunked, false).unwrap() {
            Parsed::Reply(used, r) => assert!(used == n && !r.ok),
            other => panic!("{other:?}"),
        }
    }
}
