//! The generator against stub servers on loopback: every request answered once (sent =
//! answered), and on a schedule the server cannot keep up with, latency from the intended
//! send time is at least latency from the actual send at every percentile.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use hdrhistogram::serialization::Deserializer;
use hdrhistogram::Histogram;
use hopper_loadgen::msgpack::{self, Reader, Val};
use hopper_loadgen::{Config, Run};

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Serves one connection: `answer` cuts one request off the front of the buffer and
/// writes its reply, or returns None for an incomplete request.
fn serve(
    mut sock: TcpStream,
    served: Arc<AtomicU64>,
    delay: Duration,
    answer: fn(&[u8], &mut Vec<u8>) -> Option<usize>,
) {
    let _ = sock.set_nodelay(true);
    let (mut buf, mut chunk, mut out) = (Vec::new(), [0u8; 65536], Vec::new());
    loop {
        let n = match sock.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        while let Some(used) = answer(&buf, &mut out) {
            buf.drain(..used);
            served.fetch_add(1, Ordering::Relaxed);
            std::thread::sleep(delay);
            if sock.write_all(&out).is_err() {
                return;
            }
            out.clear();
        }
    }
}

fn stub(
    delay: Duration,
    answer: fn(&[u8], &mut Vec<u8>) -> Option<usize>,
) -> (u16, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let served = Arc::new(AtomicU64::new(0));
    let s = served.clone();
    std::thread::spawn(move || {
        for sock in listener.incoming().flatten() {
            let s = s.clone();
            std::thread::spawn(move || serve(sock, s, delay, answer));
        }
    });
    (port, served)
}

fn http_answer(buf: &[u8], out: &mut Vec<u8>) -> Option<usize> {
    let head = find(buf, b"\r\n\r\n")? + 4;
    let text = String::from_utf8_lossy(&buf[..head]).to_ascii_lowercase();
    let len: usize = text.split("content-length:").nth(1).map_or(0, |r| {
        r.split("\r\n").next().unwrap().trim().parse().unwrap()
    });
    if buf.len() < head + len {
        return None;
    }
    let body = br#"{"ok":true,"id":"1"}"#;
    out.extend_from_slice(
        format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len()).as_bytes(),
    );
    out.extend_from_slice(body);
    Some(head + len)
}

/// One bunqueue TCP request: its length, `reqId`, `cmd`, `count`, `ids` and `tokens`.
#[derive(Default)]
struct TcpRequest {
    used: usize,
    req: u32,
    cmd: String,
    count: u32,
    ids: Vec<String>,
    tokens: Vec<String>,
}

fn tcp_request(buf: &[u8]) -> Option<TcpRequest> {
    let len = u32::from_be_bytes(buf.get(..4)?.try_into().unwrap()) as usize;
    let frame = buf.get(4..4 + len)?;
    let mut r = Reader::new(frame);
    let Some(Val::Map(n)) = r.value() else {
        panic!("not a map")
    };
    let mut out = TcpRequest {
        used: 4 + len,
        ..TcpRequest::default()
    };
    let text = |v: Val<'_>| match v {
        Val::Str(s) => String::from_utf8(s.to_vec()).unwrap(),
        other => panic!("not a string: {other:?}"),
    };
    for _ in 0..n {
        match r.value().unwrap() {
            Val::Str(b"reqId") => out.req = r.value().unwrap().number().unwrap() as u32,
            Val::Str(b"count") => out.count = r.value().unwrap().number().unwrap() as u32,
            Val::Str(b"cmd") => out.cmd = text(r.value().unwrap()),
            Val::Str(key @ (b"ids" | b"tokens")) => {
                let Some(Val::Array(k)) = r.value() else {
                    panic!("not an array")
                };
                let items = (0..k).map(|_| text(r.value().unwrap())).collect();
                *(if key == b"ids" {
                    &mut out.ids
                } else {
                    &mut out.tokens
                }) = items;
            }
            _ => r.skip().unwrap(),
        }
    }
    Some(out)
}

/// A reply frame `{ok: true, <fields>, reqId}`; `fields` writes that many pairs.
fn tcp_reply(out: &mut Vec<u8>, req: u32, n: u16, fields: impl FnOnce(&mut Vec<u8>)) {
    let mut body = Vec::new();
    msgpack::map(&mut body, n + 2);
    msgpack::str(&mut body, b"ok");
    body.push(0xc3);
    fields(&mut body);
    msgpack::str(&mut body, b"reqId");
    msgpack::u32(&mut body, req);
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
}

fn tcp_answer(buf: &[u8], out: &mut Vec<u8>) -> Option<usize> {
    let r = tcp_request(buf)?;
    tcp_reply(out, r.req, 0, |_| {});
    Some(r.used)
}

/// PULLB hands out `count` fresh jobs (`j<k>`, lock token `t<k>`) from an endless queue;
/// ACKB must name each with its token. The jobs acked so far.
static PULLB_ISSUED: AtomicU64 = AtomicU64::new(0);
static ACKB_ACKED: AtomicU64 = AtomicU64::new(0);

fn pullb_answer(buf: &[u8], out: &mut Vec<u8>) -> Option<usize> {
    let r = tcp_request(buf)?;
    match r.cmd.as_str() {
        "PULLB" => tcp_reply(out, r.req, 2, |b| {
            let first = PULLB_ISSUED.fetch_add(r.count as u64, Ordering::Relaxed);
            let ks = first..first + r.count as u64;
            msgpack::str(b, b"jobs");
            msgpack::array(b, r.count);
            for k in ks.clone() {
                msgpack::map(b, 2);
                msgpack::str(b, b"id");
                msgpack::str(b, format!("j{k}").as_bytes());
                msgpack::str(b, b"data");
                msgpack::map(b, 0);
            }
            msgpack::str(b, b"tokens");
            msgpack::array(b, r.count);
            for k in ks {
                msgpack::str(b, format!("t{k}").as_bytes());
            }
        }),
        "ACKB" => {
            assert_eq!(r.ids.len(), r.tokens.len());
            for (id, token) in r.ids.iter().zip(&r.tokens) {
                assert_eq!(id[1..], token[1..], "each id with its own token");
            }
            ACKB_ACKED.fetch_add(r.ids.len() as u64, Ordering::Relaxed);
            tcp_reply(out, r.req, 0, |_| {});
        }
        other => panic!("unexpected {other}"),
    }
    Some(r.used)
}

/// A WebSocket stub: answers the handshake with 101 (not counted as a request), then
/// each masked text frame with an unmasked `{"ok":true,"id":"1","reqId":N}`.
fn ws_answer(buf: &[u8], out: &mut Vec<u8>) -> Option<usize> {
    if buf.starts_with(b"GET ") {
        let head = find(buf, b"\r\n\r\n")? + 4;
        out.extend_from_slice(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
        );
        return Some(head);
    }
    let (b0, b1) = (*buf.first()?, *buf.get(1)?);
    assert_eq!(b0, 0x81, "one final text frame per command");
    assert!(b1 & 0x80 != 0, "client frames are masked");
    let (len, mut at) = match b1 & 0x7f {
        126 => (
            u16::from_be_bytes(buf.get(2..4)?.try_into().unwrap()) as usize,
            4,
        ),
        127 => (
            u64::from_be_bytes(buf.get(2..10)?.try_into().unwrap()) as usize,
            10,
        ),
        n => (n as usize, 2),
    };
    let mask: [u8; 4] = buf.get(at..at + 4)?.try_into().unwrap();
    at += 4;
    let text: Vec<u8> = buf
        .get(at..at + len)?
        .iter()
        .enumerate()
        .map(|(i, b)| b ^ mask[i % 4])
        .collect();
    let digits = &text[find(&text, b"\"reqId\":").expect("a reqId") + 8..];
    let end = digits.iter().position(|c| !c.is_ascii_digit()).unwrap();
    let reply = format!(
        r#"{{"ok":true,"id":"1","reqId":{}}}"#,
        std::str::from_utf8(&digits[..end]).unwrap()
    );
    out.extend_from_slice(&[0x81, reply.len() as u8]);
    out.extend_from_slice(reply.as_bytes());
    Some(at + len)
}

fn config(transport: &str, port: u16, extra: &str) -> Config {
    Config::from_json(&format!(
        r#"{{"transport":"{transport}","scenario":"push","host":"127.0.0.1","port":{port},
            "connections":2,"window":4,"queues":["q"],"timeout_s":5{extra}}}"#
    ))
    .unwrap()
}

fn decode(b64: &str) -> Histogram<u64> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .unwrap()
}

#[test]
fn every_request_is_answered_once_over_each_transport() {
    // (transport, stub, answers that are not requests: one WS handshake per connection)
    for (transport, answer, handshakes) in [
        (
            "http",
            http_answer as fn(&[u8], &mut Vec<u8>) -> Option<usize>,
            0,
        ),
        ("tcp", tcp_answer, 0),
        ("ws", ws_answer, 2),
    ] {
        let (port, served) = stub(Duration::ZERO, answer);
        let cfg = config(transport, port, r#","count":500,"threads":2"#);
        let report = Run::start(cfg).unwrap().join().unwrap();
        let s = &report.series[0];
        assert_eq!((s.ok, s.errors, s.unmeasured), (500, 0, 0), "{transport}");
        assert_eq!(
            served.load(Ordering::Relaxed),
            500 + handshakes,
            "{transport}"
        );
        assert_eq!(decode(&s.hist).len(), 500);
        assert!(s.raw.is_none(), "closed loop keeps one histogram");
        assert!(report.cpu_s.is_some_and(|c| c >= 0.0));
    }
}

#[test]
fn pullb_acks_every_job_each_batch_brought() {
    let (port, served) = stub(Duration::ZERO, pullb_answer);
    let cfg = config(
        "tcp",
        port,
        r#","count":50,"batch":7,"prefill":0,"threads":2"#,
    );
    let cfg = Config {
        scenario: hopper_loadgen::config::Scenario::Pullb,
        ..cfg
    };
    let report = Run::start(cfg).unwrap().join().unwrap();
    let s = &report.series[0];
    assert_eq!(s.name, "pullb");
    assert_eq!((s.ok, s.jobs, s.errors, s.empty), (50, 350, 0, 0));
    assert_eq!(decode(&s.hist).len(), 50, "one latency per batch");
    assert_eq!(
        served.load(Ordering::Relaxed),
        100,
        "a PULLB and an ACKB per batch"
    );
    assert_eq!(ACKB_ACKED.load(Ordering::Relaxed), 350);
    assert_eq!(
        report.prefilled, 0,
        "prefill 0: the queue is filled already"
    );
    // PULLB/ACKB are TCP commands, and a PULLB takes at most 1000 jobs
    for (transport, batch) in [("http", 10), ("ws", 10), ("tcp", 1001)] {
        let text = format!(
            r#"{{"transport":"{transport}","scenario":"pullb","host":"h","port":1,
                "connections":1,"queues":["q"],"count":5,"batch":{batch}}}"#
        );
        assert!(Config::from_json(&text).is_err(), "{transport} {batch}");
    }
}

#[test]
fn open_loop_correction_on_a_server_that_falls_behind() {
    // one connection, one request at a time, 2 ms each: at most ~500/s, asked for 1000/s
    let (port, _) = stub(Duration::from_millis(2), http_answer);
    let mut cfg = config("http", port, r#","duration_s":0.5,"rate":1000"#);
    cfg.connections = 1;
    let report = Run::start(cfg).unwrap().join().unwrap();
    let s = &report.series[0];
    let corrected = decode(&s.hist);
    let raw = decode(
        s.raw
            .as_ref()
            .expect("open loop keeps the uncorrected histogram"),
    );
    assert_eq!(corrected.len(), raw.len());
    assert!(corrected.len() > 50);
    for q in [0.5, 0.9, 0.99, 0.999, 1.0] {
        assert!(
            corrected.value_at_quantile(q) >= raw.value_at_quantile(q),
            "at {q}"
        );
    }
    // the backlog grows through the run: its tail is far behind the timetable
    assert!(corrected.value_at_quantile(0.99) > 10 * raw.value_at_quantile(0.99));
}

#[test]
fn an_unreachable_server_is_a_connect_error() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = Run::start(config("ws", port, r#","count":5"#))
        .unwrap()
        .join()
        .unwrap_err();
    assert!(matches!(err, hopper_loadgen::Error::Connect(_)), "{err:?}");
    assert!(
        err.to_string().starts_with("cannot open ws://127.0.0.1:"),
        "{err}"
    );
}

#[test]
fn bad_configurations_are_refused() {
    for extra in [
        r#","count":5,"duration_s":1"#,
        r#""#,
        r#","count":5,"window":0"#,
        r#","count":5,"rate":-1"#,
    ] {
        let text = format!(
            r#"{{"transport":"http","scenario":"push","host":"h","port":1,"connections":1,"window":1,"queues":["q"]{extra}}}"#
        );
        let text = text.replace(
            r#""window":1,"#,
            if extra.contains("window") {
                ""
            } else {
                r#""window":1,"#
            },
        );
        assert!(
            matches!(
                Config::from_json(&text),
                Err(hopper_loadgen::Error::Config(_))
            ),
            "{extra}"
        );
    }
}
