//! Real hopper servers as slot owners for the router tests: `hopper serve --memory`
//! from the worktree's venv, with an auth token, on free 127.0.0.1 ports.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hopper_cluster::{SlotOwner, SlotTable};
use hopper_core::cluster_slots::queue_slot;

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

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts a server, or `None` when the venv has no `hopper` (`make install` not run).
/// A server that exits at once (a port taken meanwhile by another test) is started
/// again on other ports, a few times.
pub fn start_server() -> Option<Server> {
    let bin = concat!(env!("CARGO_MANIFEST_DIR"), "/../../.venv/bin/hopper");
    if !std::path::Path::new(bin).exists() {
        eprintln!("skipped: {bin} is missing (run `make install`)");
        return None;
    }
    for _ in 0..5 {
        let (http, tcp) = (free_port(), free_port());
        let child = Command::new(bin)
            .args(["serve", "--memory", "--host", "127.0.0.1"])
            .args(["--port", &http.to_string(), "--tcp-port", &tcp.to_string()])
            .args(["--auth-tokens", TOKEN])
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
            lease_until_ms: 0,
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
