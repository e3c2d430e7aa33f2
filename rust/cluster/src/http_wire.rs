//! HTTP/1.1 framing for the router: request and response heads (by `httparse`), bodies
//! by Content-Length, chunked or up to the close, read from a byte buffer that a
//! connection keeps between messages (pipelined requests stay in it). The router
//! re-frames every message it forwards, so nothing here writes a peer's framing through.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt};

/// Largest request or response head accepted: the server's own limit is of this order,
/// and a head that does not fit is a client error (431), not a reason to buffer more.
pub const MAX_HEAD: usize = 64 * 1024;
/// Largest request body accepted, and largest response body a merge collects. Above
/// the server's default (16 MiB) so the owner's own limit still answers first.
pub const MAX_BODY: usize = 64 * 1024 * 1024;
const MAX_HEADERS: usize = 128;
/// Longest chunk-size or trailer line: a size is a few hex digits.
const MAX_LINE: usize = 4096;

#[derive(Debug)]
pub enum WireError {
    /// The connection failed or closed mid-message.
    Io,
    /// What the peer sent is refused: the status to answer and why.
    Bad(u16, &'static str),
}

impl From<io::Error> for WireError {
    fn from(_: io::Error) -> WireError {
        WireError::Io
    }
}

/// Header names lowercased, values as sent.
pub type Headers = Vec<(String, Vec<u8>)>;

pub struct RequestHead {
    pub method: String,
    pub target: String,
    pub minor: u8,
    pub headers: Headers,
    /// Bytes of the head at the front of the buffer it was parsed from.
    pub len: usize,
}

pub struct ResponseHead {
    pub status: u16,
    pub reason: String,
    pub headers: Headers,
}

pub fn header<'a>(headers: &'a Headers, name: &str) -> Option<&'a [u8]> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_slice())
}

/// Whether a comma-separated header (`Connection`, `Transfer-Encoding`) lists `token`.
pub fn has_token(headers: &Headers, name: &str, token: &str) -> bool {
    headers.iter().filter(|(n, _)| n == name).any(|(_, v)| {
        v.split(|b| *b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
    })
}

fn own_headers(parsed: &[httparse::Header<'_>]) -> Headers {
    parsed
        .iter()
        .map(|h| (h.name.to_ascii_lowercase(), h.value.to_vec()))
        .collect()
}

/// Reads more bytes into `buf`; 0 at the end of the stream.
pub async fn fill<R: AsyncRead + Unpin>(io: &mut R, buf: &mut Vec<u8>) -> io::Result<usize> {
    buf.reserve(16 * 1024);
    io.read_buf(buf).await
}

/// A complete request head at the front of `buf`, `None` if more bytes are needed.
pub fn parse_request(buf: &[u8]) -> Result<Option<RequestHead>, WireError> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut slots);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) if len <= MAX_HEAD => Ok(Some(RequestHead {
            method: req.method.unwrap_or_default().to_string(),
            target: req.path.unwrap_or_default().to_string(),
            minor: req.version.unwrap_or(1),
            headers: own_headers(req.headers),
            len,
        })),
        Ok(httparse::Status::Partial) if buf.len() <= MAX_HEAD => Ok(None),
        Ok(_) => Err(WireError::Bad(431, "Request header too large")),
        Err(httparse::Error::TooManyHeaders) => Err(WireError::Bad(431, "Too many headers")),
        Err(_) => Err(WireError::Bad(400, "Malformed HTTP request")),
    }
}

/// Reads a response head (skipping interim 1xx answers other than 101) and removes it
/// from `buf`.
pub async fn read_response_head<R: AsyncRead + Unpin>(
    io: &mut R,
    buf: &mut Vec<u8>,
) -> Result<ResponseHead, WireError> {
    loop {
        let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut slots);
        match resp.parse(buf) {
            Ok(httparse::Status::Complete(len)) => {
                let head = ResponseHead {
                    status: resp.code.unwrap_or(502),
                    reason: resp.reason.unwrap_or_default().to_string(),
                    headers: own_headers(resp.headers),
                };
                buf.drain(..len);
                if (100..200).contains(&head.status) && head.status != 101 {
                    continue;
                }
                return Ok(head);
            }
            Ok(httparse::Status::Partial) if buf.len() <= MAX_HEAD => {
                if fill(io, buf).await? == 0 {
                    return Err(eof());
                }
            }
            _ => {
                return Err(WireError::Bad(
                    502,
                    "Malformed response from the slot's owner",
                ))
            }
        }
    }
}

fn eof() -> WireError {
    WireError::Io
}

/// How a message's body ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    Empty,
    Length(u64),
    Chunked,
    /// Until the connection closes (responses only).
    Close,
}

/// A request's body framing; both Content-Length and chunked, or an unreadable length,
/// is refused (request smuggling hides in the difference).
pub fn request_framing(headers: &Headers) -> Result<Framing, WireError> {
    let te = header(headers, "transfer-encoding");
    let lengths: Vec<&[u8]> = headers
        .iter()
        .filter(|(n, _)| n == "content-length")
        .map(|(_, v)| v.as_slice())
        .collect();
    if let Some(te) = te {
        if !lengths.is_empty() {
            return Err(WireError::Bad(
                400,
                "Both Content-Length and Transfer-Encoding",
            ));
        }
        let last = te.rsplit(|b| *b == b',').next().unwrap_or_default();
        if !last.trim_ascii().eq_ignore_ascii_case(b"chunked") {
            return Err(WireError::Bad(400, "Unsupported Transfer-Encoding"));
        }
        return Ok(Framing::Chunked);
    }
    let Some(first) = lengths.first() else {
        return Ok(Framing::Empty);
    };
    if lengths.iter().any(|l| l != first) {
        return Err(WireError::Bad(400, "Conflicting Content-Length"));
    }
    match parse_length(first) {
        Some(0) => Ok(Framing::Empty),
        Some(n) => Ok(Framing::Length(n)),
        None => Err(WireError::Bad(400, "Invalid Content-Length")),
    }
}

fn parse_length(raw: &[u8]) -> Option<u64> {
    let raw = raw.trim_ascii();
    if raw.is_empty() || raw.len() > 18 || !raw.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(raw).ok()?.parse().ok()
}

/// A response's body framing; `head_request`: the answer to a HEAD has none.
pub fn response_framing(head_request: bool, head: &ResponseHead) -> Framing {
    if head_request || head.status < 200 || head.status == 204 || head.status == 304 {
        return Framing::Empty;
    }
    if has_token(&head.headers, "transfer-encoding", "chunked") {
        return Framing::Chunked;
    }
    match header(&head.headers, "content-length").and_then(parse_length) {
        Some(0) => Framing::Empty,
        Some(n) => Framing::Length(n),
        None => Framing::Close,
    }
}

/// Where a body being read stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Body {
    Length(u64),
    ChunkSize,
    ChunkData(u64),
    ChunkEnd,
    Trailers,
    Close,
    Done,
}

impl Body {
    pub fn new(framing: Framing) -> Body {
        match framing {
            Framing::Empty | Framing::Length(0) => Body::Done,
            Framing::Length(n) => Body::Length(n),
            Framing::Chunked => Body::ChunkSize,
            Framing::Close => Body::Close,
        }
    }
}

/// One line (without its CRLF or LF) at the front of `buf`, removed from it.
fn take_line(buf: &mut Vec<u8>) -> Result<Option<Vec<u8>>, WireError> {
    match buf.iter().position(|b| *b == b'\n') {
        Some(i) => {
            let mut line: Vec<u8> = buf.drain(..=i).collect();
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            Ok(Some(line))
        }
        None if buf.len() > MAX_LINE => Err(WireError::Bad(400, "Malformed chunked body")),
        None => Ok(None),
    }
}

fn chunk_size(line: &[u8]) -> Option<u64> {
    let size = line.split(|b| *b == b';').next()?.trim_ascii();
    if size.is_empty() || size.len() > 15 {
        return None;
    }
    u64::from_str_radix(std::str::from_utf8(size).ok()?, 16).ok()
}

/// The next piece of a body's payload from the bytes in `buf` alone: `None` when the
/// body ended (`state` is then `Done`) or more bytes must be read first.
pub fn buffered_piece(buf: &mut Vec<u8>, state: &mut Body) -> Result<Option<Vec<u8>>, WireError> {
    loop {
        if buf.is_empty() {
            return Ok(None);
        }
        match *state {
            Body::Done => return Ok(None),
            Body::Length(left) | Body::ChunkData(left) => {
                let n = left.min(buf.len() as u64);
                let piece: Vec<u8> = buf.drain(..n as usize).collect();
                *state = match *state {
                    Body::Length(_) if left == n => Body::Done,
                    Body::Length(_) => Body::Length(left - n),
                    _ if left == n => Body::ChunkEnd,
                    _ => Body::ChunkData(left - n),
                };
                return Ok(Some(piece));
            }
            Body::Close => return Ok(Some(std::mem::take(buf))),
            Body::ChunkSize | Body::ChunkEnd | Body::Trailers => {
                let Some(line) = take_line(buf)? else {
                    return Ok(None);
                };
                *state = match *state {
                    Body::ChunkSize => match chunk_size(&line) {
                        Some(0) => Body::Trailers,
                        Some(n) => Body::ChunkData(n),
                        None => return Err(WireError::Bad(400, "Malformed chunked body")),
                    },
                    Body::ChunkEnd if line.is_empty() => Body::ChunkSize,
                    Body::ChunkEnd => return Err(WireError::Bad(400, "Malformed chunked body")),
                    _ if line.is_empty() => Body::Done,
                    _ => Body::Trailers,
                };
            }
        }
    }
}

/// Reads more of a body into `buf`; at the end of the stream, a body that ends with
/// the connection is `Done`, any other is cut short (an error).
pub async fn fill_body<R: AsyncRead + Unpin>(
    io: &mut R,
    buf: &mut Vec<u8>,
    state: &mut Body,
) -> Result<(), WireError> {
    if fill(io, buf).await? > 0 {
        return Ok(());
    }
    if *state == Body::Close {
        *state = Body::Done;
        return Ok(());
    }
    Err(eof())
}

/// The next piece of a body's payload, `None` once it ended (`state` is then `Done`).
pub async fn next_piece<R: AsyncRead + Unpin>(
    io: &mut R,
    buf: &mut Vec<u8>,
    state: &mut Body,
) -> Result<Option<Vec<u8>>, WireError> {
    loop {
        if let Some(piece) = buffered_piece(buf, state)? {
            return Ok(Some(piece));
        }
        if *state == Body::Done {
            return Ok(None);
        }
        fill_body(io, buf, state).await?;
    }
}

/// A whole body, at most `max` bytes (else `too_large`, a 413 for a request body).
pub async fn collect<R: AsyncRead + Unpin>(
    io: &mut R,
    buf: &mut Vec<u8>,
    framing: Framing,
    max: usize,
) -> Result<Vec<u8>, WireError> {
    if let Framing::Length(n) = framing {
        if n > max as u64 {
            return Err(too_large());
        }
    }
    let mut state = Body::new(framing);
    let mut body = Vec::new();
    while let Some(piece) = next_piece(io, buf, &mut state).await? {
        if body.len() + piece.len() > max {
            return Err(too_large());
        }
        body.extend_from_slice(&piece);
    }
    Ok(body)
}

fn too_large() -> WireError {
    WireError::Bad(413, "Request body too large")
}

/// One chunk of a chunked body (empty data would end the body, so it writes nothing).
pub fn chunk(data: &[u8]) -> Vec<u8> {
    if data.is_empty() {
        return Vec::new();
    }
    let mut out = format!("{:x}\r\n", data.len()).into_bytes();
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
    out
}

pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// Connection-level headers: about one hop, never forwarded.
pub fn hop_by_hop(name: &str) -> bool {
    matches!(
        name,
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "transfer-encoding"
            | "content-length"
            | "te"
            | "trailer"
            | "upgrade"
            | "expect"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> Headers {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn request_heads_parse_or_are_refused() {
        assert!(parse_request(b"GET /stats HTTP/1.1\r\nHost: x\r\n")
            .unwrap()
            .is_none());
        let head = parse_request(b"POST /q HTTP/1.0\r\nContent-Length: 2\r\n\r\nhi")
            .unwrap()
            .unwrap();
        assert_eq!((head.method.as_str(), head.target.as_str()), ("POST", "/q"));
        assert_eq!((head.minor, head.len), (0, 39));
        assert!(matches!(
            parse_request(b"GET /x HTTP/1.1\r\nBad Header\r\n\r\n"),
            Err(WireError::Bad(400, _))
        ));
        let huge = [b"GET /".as_slice(), &vec![b'a'; MAX_HEAD + 1]].concat();
        assert!(matches!(parse_request(&huge), Err(WireError::Bad(431, _))));
    }

    #[test]
    fn framing_refuses_ambiguous_lengths() {
        let f = |pairs: &[(&str, &str)]| request_framing(&headers(pairs));
        assert_eq!(f(&[]).unwrap(), Framing::Empty);
        assert_eq!(f(&[("content-length", "12")]).unwrap(), Framing::Length(12));
        assert_eq!(
            f(&[("transfer-encoding", "gzip, chunked")]).unwrap(),
            Framing::Chunked
        );
        for bad in [
            vec![("content-length", "1"), ("transfer-encoding", "chunked")],
            vec![("content-length", "1"), ("content-length", "2")],
            vec![("content-length", "-1")],
            vec![("content-length", "1x")],
            vec![("transfer-encoding", "gzip")],
        ] {
            assert!(matches!(f(&bad), Err(WireError::Bad(400, _))), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn chunked_bodies_decode_across_reads() {
        let wire = b"4;ext=1\r\nWiki\r\n5\r\npedia\r\n0\r\nTrailer: x\r\n\r\nNEXT".to_vec();
        let (mut buf, mut io) = (Vec::new(), wire.as_slice());
        let body = collect(&mut io, &mut buf, Framing::Chunked, 100)
            .await
            .unwrap();
        assert_eq!(body, b"Wikipedia");
        // What follows the body stays for the next message.
        let mut rest = buf.clone();
        rest.extend_from_slice(io);
        assert_eq!(rest, b"NEXT");
        let mut io = b"5\r\npedia\r\n0\r\n\r\n".as_slice();
        assert!(matches!(
            collect(&mut io, &mut Vec::new(), Framing::Chunked, 3).await,
            Err(WireError::Bad(413, _))
        ));
        let mut io = b"zz\r\n".as_slice();
        assert!(matches!(
            collect(&mut io, &mut Vec::new(), Framing::Chunked, 3).await,
            Err(WireError::Bad(400, _))
        ));
        let mut io = b"5\r\npe".as_slice();
        assert!(matches!(
            collect(&mut io, &mut Vec::new(), Framing::Chunked, 10).await,
            Err(WireError::Io)
        ));
    }

    #[test]
    fn buffered_pieces_stop_where_the_bytes_do() {
        let mut buf = b"5\r\nhello\r\n3\r\nab".to_vec();
        let mut state = Body::new(Framing::Chunked);
        let piece = buffered_piece(&mut buf, &mut state).unwrap();
        assert_eq!(piece.as_deref(), Some(&b"hello"[..]));
        assert_eq!(
            buffered_piece(&mut buf, &mut state).unwrap().as_deref(),
            Some(&b"ab"[..])
        );
        // The rest of the chunk has not arrived: nothing, and no wait.
        assert_eq!(buffered_piece(&mut buf, &mut state).unwrap(), None);
        assert_eq!(state, Body::ChunkData(1));
        buf.extend_from_slice(b"c\r\n0\r\n\r\n");
        assert_eq!(
            buffered_piece(&mut buf, &mut state).unwrap().as_deref(),
            Some(&b"c"[..])
        );
        assert_eq!(buffered_piece(&mut buf, &mut state).unwrap(), None);
        assert_eq!(state, Body::Done);
    }

    #[tokio::test]
    async fn bodies_by_length_and_by_close() {
        let mut io = b"abcdef".as_slice();
        let mut buf = Vec::new();
        assert_eq!(
            collect(&mut io, &mut buf, Framing::Length(4), 10)
                .await
                .unwrap(),
            b"abcd"
        );
        assert_eq!(buf, b"ef");
        let mut io = b"tail".as_slice();
        assert_eq!(
            collect(&mut io, &mut buf, Framing::Close, 10)
                .await
                .unwrap(),
            b"eftail"
        );
        assert!(matches!(
            collect(
                &mut b"".as_slice(),
                &mut Vec::new(),
                Framing::Length(99),
                10
            )
            .await,
            Err(WireError::Bad(413, _))
        ));
    }

    #[test]
    fn response_framing_by_status_and_headers() {
        let head = |status, pairs: &[(&str, &str)]| ResponseHead {
            status,
            reason: String::new(),
            headers: headers(pairs),
        };
        assert_eq!(
            response_framing(false, &head(204, &[("content-length", "5")])),
            Framing::Empty
        );
        assert_eq!(
            response_framing(true, &head(200, &[("content-length", "5")])),
            Framing::Empty
        );
        assert_eq!(
            response_framing(false, &head(200, &[("transfer-encoding", "chunked")])),
            Framing::Chunked
        );
        assert_eq!(response_framing(false, &head(200, &[])), Framing::Close);
        assert_eq!(chunk(b"abc"), b"3\r\nabc\r\n");
        assert!(chunk(b"").is_empty());
    }
}
