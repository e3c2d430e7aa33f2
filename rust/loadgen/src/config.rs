//! What a run is asked to do, as `hopper bench` hands it over (JSON), and its checks.

use serde::Deserialize;

use crate::Error;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// The job API over HTTP/1.1 keep-alive, one request in flight per connection.
    Http,
    /// `/ws` commands with a numeric `reqId`, `window` in flight per socket.
    Ws,
    /// bunqueue's binary TCP protocol (length-prefixed MessagePack), `window` in flight.
    Tcp,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    Push,
    /// `batch` jobs per request (HTTP `/jobs/bulk`, `PUSHB` on WS and TCP).
    Bulk,
    /// On a pre-filled queue: pull (no wait), then ack that job.
    Pullack,
    /// On a pre-filled queue: PULLB of up to `batch` jobs (no wait), then one ACKB of all
    /// it got (TCP only): the shape of a batching worker, one operation per batch.
    Pullb,
    /// Producers push, workers long-poll pull and ack; latency push -> ack.
    E2e,
    /// Pushes and pull+acks on the same connections, in the ratio `mix`.
    Mixed,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub transport: Transport,
    pub scenario: Scenario,
    pub host: String,
    pub port: u16,
    #[serde(default = "default_ws_path")]
    pub ws_path: String,
    #[serde(default)]
    pub token: Option<String>,
    /// Connections (producer connections in e2e).
    pub connections: usize,
    /// Requests in flight per connection (WS and TCP; HTTP is always 1).
    #[serde(default = "one")]
    pub window: usize,
    /// Generator threads, each a single-threaded event loop over its share of connections.
    #[serde(default = "one")]
    pub threads: usize,
    /// e2e: worker connections (each with `window` pulls outstanding).
    #[serde(default = "one")]
    pub workers: usize,
    /// Operations go round-robin over these queues.
    pub queues: Vec<String>,
    /// Bytes of the JSON job payload (0: the standard ~90-byte one).
    #[serde(default)]
    pub payload_bytes: usize,
    /// Jobs per request of the bulk and pullb scenarios.
    #[serde(default = "hundred")]
    pub batch: usize,
    /// mixed: pushes to pull+acks.
    #[serde(default = "even")]
    pub mix: (u32, u32),
    /// Open loop: operations per second on a fixed timetable (all connections together).
    #[serde(default)]
    pub rate: Option<f64>,
    #[serde(default)]
    pub count: Option<u64>,
    #[serde(default)]
    pub duration_s: Option<f64>,
    #[serde(default)]
    pub warmup_s: f64,
    #[serde(default = "ten")]
    pub timeout_s: f64,
    /// Long-poll wait of e2e workers and mixed pulls, ms.
    #[serde(default = "poll")]
    pub poll_ms: u64,
    /// pullack, pullb: jobs to push first (None: enough for the run; 0: none, the queue is
    /// filled already).
    #[serde(default)]
    pub prefill: Option<u64>,
}

fn default_ws_path() -> String {
    "/ws".into()
}
fn one() -> usize {
    1
}
fn hundred() -> usize {
    100
}
fn even() -> (u32, u32) {
    (1, 1)
}
fn ten() -> f64 {
    10.0
}
fn poll() -> u64 {
    1000
}

pub const MAX_WINDOW: usize = 4096;
pub const MAX_CONNECTIONS: usize = 10_000;
pub const PREFILL_CAP: u64 = 5_000_000;
/// The most jobs a PULLB may ask for (bunqueue's bound).
pub const MAX_PULL_BATCH: usize = 1000;

impl Config {
    pub fn from_json(text: &str) -> Result<Config, Error> {
        let cfg: Config =
            serde_json::from_str(text).map_err(|e| Error::Config(format!("config: {e}")))?;
        cfg.check()?;
        Ok(cfg)
    }

    pub fn check(&self) -> Result<(), Error> {
        let bad = |m: &str| Err(Error::Config(m.into()));
        if self.duration_s.is_some() == self.count.is_some() {
            return bad("exactly one of count and duration_s");
        }
        if !(1..=MAX_CONNECTIONS).contains(&self.connections)
            || !(1..=MAX_CONNECTIONS).contains(&self.workers)
        {
            return bad("connections and workers must be 1..10000");
        }
        if !(1..=MAX_WINDOW).contains(&self.window) {
            return bad("window must be 1..4096");
        }
        if !(1..=64).contains(&self.threads) {
            return bad("threads must be 1..64");
        }
        if self.queues.is_empty() || self.queues.iter().any(|q| q.is_empty()) {
            return bad("at least one queue, no empty names");
        }
        if !(1..=10_000).contains(&self.batch) {
            return bad("batch must be 1..10000");
        }
        if self.scenario == Scenario::Pullb {
            if self.transport != Transport::Tcp {
                return bad("pullb runs on the tcp transport only (PULLB/ACKB)");
            }
            if self.batch > MAX_PULL_BATCH {
                return bad("pullb: batch must be 1..1000 (PULLB's count)");
            }
        }
        if self.mix.0 + self.mix.1 == 0 {
            return bad("mix must not be 0:0");
        }
        if let Some(r) = self.rate {
            if !(r.is_finite() && r > 0.0) {
                return bad("rate must be > 0");
            }
        }
        if let Some(d) = self.duration_s {
            if !(d.is_finite() && d > 0.0) {
                return bad("duration_s must be > 0");
            }
        }
        if !(self.warmup_s.is_finite() && self.warmup_s >= 0.0) {
            return bad("warmup_s must be >= 0");
        }
        if !(self.timeout_s.is_finite() && self.timeout_s > 0.0) {
            return bad("timeout_s must be > 0");
        }
        if self.payload_bytes > 16 * 1024 * 1024 {
            return bad("payload_bytes must be at most 16 MiB");
        }
        Ok(())
    }

    /// In-flight requests per connection: HTTP/1.1 carries one at a time.
    pub fn window(&self) -> usize {
        if self.transport == Transport::Http {
            1
        } else {
            self.window
        }
    }

    /// The hard bound of a run, warm-up, count mode and timeout included (seconds).
    pub fn limit_s(&self) -> f64 {
        let body = match (self.duration_s, self.count) {
            (Some(d), _) => d,
            (None, Some(n)) => {
                let slack = self.rate.map_or(0.0, |r| n as f64 / r);
                f64::max(120.0, 2.0 * slack)
            }
            (None, None) => 0.0,
        };
        self.warmup_s + body + self.timeout_s
    }
}
