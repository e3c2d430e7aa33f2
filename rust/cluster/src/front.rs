//! A broker's front: the public HTTP and TCP-protocol ports of every broker. With one
//! slot it relays each client connection byte for byte to the slot owner's backends: a
//! relay does not parse, so HTTP keep-alive, SSE, WebSocket and the binary protocol all
//! pass unchanged, and the owner's app does auth, limits and errors. With several slots
//! the connection goes to a router that sends each request to its slot's owner.
//!
//! The owners and their backend addresses come from the slot rows (`directory.rs`),
//! polled on a thread of its own into a `SlotTable`. When the slot moves (a new epoch),
//! relays to the old owner are closed, so their clients reconnect and reach the new one;
//! a connection that finds no reachable owner waits for one, up to `connect_wait`, then
//! is closed.

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
use crate::directory::{announce, read_slots, withdraw};
use crate::registry::Registry;
use crate::schema::migrate;
use crate::slot_table::{Port, SlotTable, Table};

#[derive(Clone)]
pub struct FrontConfig {
    pub url: String,
    pub namespace: String,
    pub broker_id: String,
    /// How often the slot row is read (and the broker's own row refreshed).
    pub poll: Duration,
    /// How long a new connection waits for a reachable owner before it is closed.
    pub connect_wait: Duration,
    /// The cluster's slot count (checked against the database by the brokers' engines).
    pub slots: u32,
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
        let (tx, rx) = watch::channel(Arc::new(SlotTable::empty(config.slots)));
        let stop = Arc::new(AtomicBool::new(false));
        let poller = {
            let (config, stop) = (config.clone(), stop.clone());
            let public = (
                http_addr.to_string(),
                tcp_addr.map(|a| a.to_string()).unwrap_or_default(),
            );
            std::thread::Builder::new()
                .name("hopper-front-poll".into())
                .spawn(move || poll_owners(&config, &public, &tx, &stop))?
        };
        let wait = config.connect_wait;
        // Routers only: one registry (its few connections) for the front's clients. A
        // URL the driver cannot parse was refused by the broker's own connect already.
        let registry = (config.slots > 1)
            .then(|| Registry::new(&config.url, &config.namespace).ok())
            .flatten();
        for (listener, port) in [(Some(http), Port::Http), (tcp, Port::Tcp)] {
            let Some(listener) = listener else { continue };
            listener.set_nonblocking(true)?;
            let listener = {
                let _entered = runtime.enter();
                TcpListener::from_std(listener)?
            };
            runtime.spawn(accept_loop(
                listener,
                port,
                rx.clone(),
                wait,
                registry.clone(),
            ));
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
    owners: Table,
    wait: Duration,
    registry: Option<Arc<Registry>>,
) {
    let routed = owners.borrow().slots() > 1;
    loop {
        match listener.accept().await {
            Ok((client, _)) if routed => {
                let _ = client.set_nodelay(true);
                match port {
                    Port::Http => tokio::spawn(crate::route_http::serve(
                        client,
                        owners.clone(),
                        wait,
                        registry.clone(),
                    )),
                    Port::Tcp => tokio::spawn(crate::route_tcp::serve(
                        client,
                        owners.clone(),
                        wait,
                        registry.clone(),
                    )),
                };
            }
            Ok((client, _)) => {
                tokio::spawn(relay(client, port, owners.clone(), wait));
            }
            // Out of descriptors and the like: back off instead of spinning.
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// Connects to slot 0's owner's backend (waiting, bounded, for one that answers), then
/// copies both ways until either side closes or the slot moves.
async fn relay(mut client: TcpStream, port: Port, mut owners: Table, wait: Duration) {
    let Some((epoch, mut upstream)) =
        crate::slot_table::connect_owner(&mut owners, 0, port, wait).await
    else {
        return;
    };
    let _ = client.set_nodelay(true);
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {}
        _ = crate::slot_table::moved_from(&mut owners, 0, epoch) => {}
    }
}

/// Reads the slot rows every `poll` and publishes their owners; refreshes this broker's
/// own row about every second. A lost connection is reopened at the next period,
/// keeping the last owners known meanwhile.
fn poll_owners(
    config: &FrontConfig,
    public: &(String, String),
    owners: &watch::Sender<Arc<SlotTable>>,
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
                read_slots(c, &config.namespace)
            })();
            match polled {
                Ok(rows) => {
                    let table = SlotTable::from_rows(config.slots, rows);
                    owners.send_if_modified(|t| {
                        let changed = **t != table;
                        if changed {
                            *t = Arc::new(table);
                        }
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
