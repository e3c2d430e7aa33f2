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
use hopper_loadgen::msgpack::{Reader, Val};
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

fn tcp_answer(buf: &[u8], out: &mut Vec<u8>) -> Option<usize> {
    let len = u32::from_be_bytes(buf.get(..4)?.try_into().unwrap()) as usize;
    let frame = buf.get(4..4 + len)?;
    let mut r = Reader::new(frame);
    let Some(Val::Map(n)) = r.value() else {
        panic!("not a map")
    };
    let mut req = None;
    for _ in 0..n {
        match r.value().unwrap() {
            Val::Str(b"reqId") => req = r.value().unwrap().number(),
            _ => r.skip().unwrap(),
        }
    }
    let req = req.expect("a reqId") as u32;
    let mut body = vec![0x82, 0xa2, b'o', b'k', 0xc3, 0xa5];
    body.extend_from_slice(b"reqId");
    body.push(0xce);
    body.extend_from_slice(&req.to_be_bytes());
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    Some(4 + len)
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
