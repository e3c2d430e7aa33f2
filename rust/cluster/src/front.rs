//! A broker's front: the public HTTP and TCP-protocol ports of every broker, relaying
//! each client connection byte for byte to the slot owner's backends (phase 1's
//! forwarding). A relay does not parse: HTTP keep-alive, SSE, WebSocket and the binary
//! protocol all pass unchanged, and the owner's app does auth, limits and errors.
//!
//! The owner and its backend addresses come from the slot row (`directory.rs`), polled
//! on a thread of its own. When the slot moves (a new epoch), relays to the old owner are
//! closed, so their clients reconnect and reach the new one; a connection that finds no
//! reachable owner waits for one, up to `connect_wait`, then is closed.

use std::io;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use postgres::Client;
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use tokio::sync::watch;

use crate::connect::connect;
use crate::directory::{announce, read_slot, withdraw};
use crate::schema::migrate;

#[derive(Clone)]
pub struct FrontConfig {
    pub url: String,
    pub namespace: String,
    pub broker_id: String,
    /// How often the slot row is read (and the broker's own row refreshed).
    pub poll: Duration,
    /// How long a new connection waits for a reachable owner before it is closed.
    pub connect_wait: Duration,
}

/// Where the owner's backends listen, under which epoch.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Owner {
    epoch: i64,
    http: String,
    tcp: String,
}

#[derive(Clone, Copy)]
enum Port {
    Http,
    Tcp,
}

impl Owner {
    fn addr(&self, port: Port) -> &str {
        match port {
            Port::Http => &self.http,
            Port::Tcp => &self.tcp,
        }
    }
}

/// Runs until `stop` (or drop): the listeners are closed and every relay ends.
pub struct Front {
    runtime: Option<Runtime>,
    stop: Arc<AtomicBool>,
    poller: Option<JoinHandle<()>>,
    pub http_addr: SocketAddr,
    pub tcp_addr: Option<SocketAddr>,
}

impl Front {
    /// Relays connections accepted on `http` and `tcp` (already bound, so a port in use
    /// is the caller's clear start-up error) to the owner.
    pub fn start(
        config: FrontConfig,
        http: StdListener,
        tcp: Option<StdListener>,
    ) -> io::Result<Front> {
        let http_addr = http.local_addr()?;
        let tcp_addr = tcp.as_ref().map(|l| l.local_addr()).transpose()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("hopper-front")
            .enable_io()
            .enable_time()
            .build()?;
        let (tx, rx) = watch::channel(None::<Owner>);
        let stop = Arc::new(AtomicBool::new(false));
        let poller = {
            let (config, stop) = (config.clone(), stop.clone());
            let public = (
                http_addr.to_string(),
                tcp_addr.map(|a| a.to_string()).unwrap_or_default(),
            );
            std::thread::Builder::new()
                .name("hopper-front-poll".into())
                .spawn(move || poll_owner(&config, &public, &tx, &stop))?
        };
        let wait = config.connect_wait;
        for (listener, port) in [(Some(http), Port::Http), (tcp, Port::Tcp)] {
            let Some(listener) = listener else { continue };
            listener.set_nonblocking(true)?;
            let listener = {
                let _entered = runtime.enter();
                TcpListener::from_std(listener)?
            };
            runtime.spawn(accept_loop(listener, port, rx.clone(), wait));
        }
        Ok(Front {
            runtime: Some(runtime),
            stop,
            poller: Some(poller),
            http_addr,
            tcp_addr,
        })
    }

    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_secs(1));
        }
        // The poller ends within a poll period, or one statement's wait on a database
        // that stopped answering: give it a bound, then leave it (it only reads).
        if let Some(t) = self.poller.take() {
            let deadline = Instant::now() + Duration::from_secs(2);
            while !t.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if t.is_finished() {
                let _ = t.join();
            }
        }
    }
}

impl Drop for Front {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn accept_loop(
    listener: TcpListener,
    port: Port,
    owners: watch::Receiver<Option<Owner>>,
    wait: Duration,
) {
    loop {
        match listener.accept().await {
            Ok((client, _)) => {
                tokio::spawn(relay(client, port, owners.clone(), wait));
            }
            // Out of descriptors and the like: back off instead of spinning.
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// Connects to the current owner's backend (waiting, bounded, for one that answers),
/// then copies both ways until either side closes or the slot moves.
async fn relay(
    mut client: TcpStream,
    port: Port,
    mut owners: watch::Receiver<Option<Owner>>,
    wait: Duration,
) {
    let deadline = tokio::time::Instant::now() + wait;
    let (epoch, mut upstream) = loop {
        let target = owners.borrow_and_update().clone();
        if let Some(owner) = target.filter(|o| !o.addr(port).is_empty()) {
            let connect = TcpStream::connect(owner.addr(port).to_string());
            if let Ok(Ok(stream)) = tokio::time::timeout(Duration::from_secs(1), connect).await {
                break (owner.epoch, stream);
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return;
        }
        // A new owner, or a retry soon: a dead owner's row changes only at takeover.
        let waited = tokio::time::timeout(Duration::from_millis(100), owners.changed()).await;
        if matches!(waited, Ok(Err(_))) {
            return; // the front is stopping
        }
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {}
        _ = moved_from(&mut owners, epoch) => {}
    }
}

/// Returns once the slot has an owner of another epoch (or the front stops).
async fn moved_from(owners: &mut watch::Receiver<Option<Owner>>, epoch: i64) {
    loop {
        if owners
            .borrow_and_update()
            .as_ref()
            .is_some_and(|o| o.epoch != epoch)
        {
            return;
        }
        if owners.changed().await.is_err() {
            return;
        }
    }
}

/// Reads slot 0's row every `poll` and publishes its owner; refreshes this broker's own
/// row about every second. A lost connection is reopened at the next period, keeping
/// the last owner known meanwhile.
fn poll_owner(
    config: &FrontConfig,
    public: &(String, String),
    owners: &watch::Sender<Option<Owner>>,
    stop: &AtomicBool,
) {
    let mut client: Option<Client> = None;
    let mut first = true;
    let mut announced = Instant::now() - Duration::from_secs(60);
    let broker = (
        config.broker_id.as_str(),
        public.0.as_str(),
        public.1.as_str(),
    );
    while !stop.load(Ordering::Acquire) {
        if client.as_ref().is_none_or(|c| c.is_closed()) {
            // Migrating here too lets a front announce itself before any broker owns a slot.
            client = connect(&config.url)
                .ok()
                .and_then(|mut c| migrate(&mut c).is_ok().then_some(c));
        }
        if let Some(c) = client.as_mut() {
            let polled = (|| {
                if announced.elapsed() >= Duration::from_secs(1) {
                    announce(c, &config.namespace, broker, first)?;
                    first = false;
                    announced = Instant::now();
                }
                read_slot(c, &config.namespace, 0)
            })();
            match polled {
                Ok(row) => {
                    let owner = row.map(|s| Owner {
                        epoch: s.epoch,
                        http: s.http,
                        tcp: s.tcp,
                    });
                    owners.send_if_modified(|o| {
                        let changed = *o != owner;
                        *o = owner;
                        changed
                    });
                }
                // Not migrated yet (no broker took a slot) or a lost connection.
                Err(_) => client = client.filter(|c| !c.is_closed()),
            }
        }
        std::thread::sleep(config.poll);
    }
    if let Some(c) = client.as_mut() {
        let _ = withdraw(c, &config.namespace, &config.broker_id);
    }
}
