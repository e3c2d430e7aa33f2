//! Real hopper servers as slot owners for the router tests: `hopper serve --memory`
//! from the project's venv (`make install`), with or without an auth token, on free
//! 127.0.0.1 ports. Without the venv the tests say "skipped" and pass, unless
//! `HOPPER_REQUIRE_SERVER=1` (set by `.ci/run`), which makes that a failure.

// Each test binary that includes this module uses a part of it.
#![allow(dead_code)]

use std::collections::HashSet;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hopper_cluster::{SlotOwner, SlotTable};
use hopper_core::cluster_slots::queue_slot;
use hopper_core::{msgpack_decode, msgpack_encode, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const TOKEN: &str = "secret";
/// The slot count of the test clusters: one server per slot.
pub const SLOTS: u32 = 2;

/// A `hopper serve` process. It runs its server in a child process, so the whole
/// process group is stopped (SIGTERM, then SIGKILL after a bounded wait), or the
/// child would outlive the test.
pub struct Server {
    pub child: Child,
    pub tcp: String,
    pub http: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let signal = |sig: &str| {
            let _ = Command::new("kill").args([sig, "--", &group]).status();
        };
        signal("-TERM");
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        signal("-KILL");
        let _ = self.child.wait();
    }
}

/// A port that binds now, below the kernel's ephemeral range (which every outgoing
/// connection takes its local port from, so one could take a port chosen there before
/// the server listens), never the same one twice in this process (as `hopper.ports`).
pub fn free_port() -> u16 {
    static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32768)
        .clamp(10_001, 65_535);
    let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
    let given = given.get_or_insert_with(HashSet::new);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut x = (u64::from(std::process::id()) << 32) ^ nanos | 1;
    for _ in 0..10_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let port = (10_000 + x % u64::from(low - 10_000)) as u16;
        if given.contains(&port) || TcpListener::bind(("127.0.0.1", port)).is_err() {
            continue;
        }
        given.insert(port);
        return port;
    }
    panic!("no free port below {low}");
}

/// Starts a server (requiring `token` when given), or `None` when the venv has no
/// `hopper`. A server that exits at once (a port taken meanwhile) is started again on
/// other ports, a few times.
pub fn start_server_with(token: Option<&str>) -> Option<Server> {
    let bin = concat!(env!("CARGO_MANIFEST_DIR"), "/../../.venv/bin/hopper");
    if !std::path::Path::new(bin).exists() {
        assert!(
            std::env::var("HOPPER_REQUIRE_SERVER").as_deref() != Ok("1"),
            "HOPPER_REQUIRE_SERVER=1 but {bin} is missing (run `make install`)"
        );
        eprintln!("skipped: {bin} is missing (run `make install`)");
        return None;
    }
    for _ in 0..5 {
        let (http, tcp) = (free_port(), free_port());
        let mut command = Command::new(bin);
        command
            .args(["serve", "--memory", "--host", "127.0.0.1"])
            .args(["--port", &http.to_string(), "--tcp-port", &tcp.to_string()]);
        if let Some(token) = token {
            command.args(["--auth-tokens", token]);
        }
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("hopper serve starts");
        let mut server = Server {
            child,
            tcp: format!("127.0.0.1:{tcp}"),
            http: format!("127.0.0.1:{http}"),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        let listening = |s: &Server| {
            std::net::TcpStream::connect(&s.tcp).is_ok()
                && std::net::TcpStream::connect(&s.http).is_ok()
        };
        while !listening(&server) {
            assert!(Instant::now() < deadline, "hopper serve did not listen");
            if server.child.try_wait().ok().flatten().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if listening(&server) {
            return Some(server);
        }
    }
    panic!("hopper serve exited five times at start");
}

/// `start_server_with` the tests' token.
pub fn start_server() -> Option<Server> {
    start_server_with(Some(TOKEN))
}

/// The slot table naming `servers[i]` the owner of slot `i`, under `epochs[i]`.
pub fn table(servers: &[Server], epochs: &[i64]) -> SlotTable {
    let rows = servers
        .iter()
        .zip(epochs)
        .enumerate()
        .map(|(slot, (s, &epoch))| SlotOwner {
            slot: slot as i32,
            owner: format!("b{slot}"),
            epoch,
            lease_until_ms: i64::MAX,
            http: s.http.clone(),
            tcp: s.tcp.clone(),
        })
        .collect();
    SlotTable::from_rows(servers.len() as u32, rows)
}

/// A queue name of `slot` with `prefix`, so tests sharing servers keep apart.
pub fn queue_of(prefix: &str, slot: u32) -> String {
    (0..1000)
        .map(|i| format!("{prefix}-{i}"))
        .find(|q| queue_slot(q, SLOTS) == slot)
        .unwrap()
}

/// A protocol client: numbered string reqIds, replies matched by reqId.
pub struct Client {
    pub stream: TcpStream,
    next: u64,
    buf: Vec<u8>,
}

impl Client {
    pub async fn connect(addr: &str) -> Client {
        Client {
            stream: TcpStream::connect(addr).await.unwrap(),
            next: 0,
            buf: Vec::new(),
        }
    }

    pub async fn send(&mut self, cmd: &str, mut fields: Vec<(&'static str, Value)>) -> Value {
        self.next += 1;
        let req_id = Value::str(self.next.to_string());
        fields.push(("cmd", Value::str(cmd)));
        fields.push(("reqId", req_id.clone()));
        let mut body = Vec::new();
        msgpack_encode(&Value::map(fields), &mut body);
        let mut frame = (body.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(&body);
        self.stream.write_all(&frame).await.unwrap();
        loop {
            let reply = self.frame().await.expect("a reply");
            if reply.get("reqId") == Some(&req_id) {
                return reply;
            }
        }
    }

    /// The next frame, `None` once the router closes the connection.
    pub async fn frame(&mut self) -> Option<Value> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if self.buf.len() >= 4 {
                let len = u32::from_be_bytes(self.buf[..4].try_into().unwrap()) as usize;
                if self.buf.len() >= 4 + len {
                    let v = msgpack_decode(&self.buf[4..4 + len]).unwrap();
                    self.buf.drain(..4 + len);
                    return Some(v);
                }
            }
            let mut chunk = vec![0u8; 65536]; // on the heap: test futures nest deep
            let left = deadline.saturating_duration_since(Instant::now());
            let n = tokio::time::timeout(left, self.stream.read(&mut chunk))
                .await
                .expect("an answer in time")
                .unwrap_or(0);
            if n == 0 {
                return None;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    pub async fn auth(&mut self) {
        let r = self.send("Auth", vec![("token", Value::str(TOKEN))]).await;
        assert_eq!(r.get("ok"), Some(&Value::Bool(true)), "{r:?}");
    }
}
