//! Cluster mode's bindings: taking the slot (a standby waits here), the broker's front,
//! the cluster view the management API shows, and the webhook registry. Conversions
//! only; the logic is hopper-cluster's.

use std::net::TcpListener;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Mutex;
use std::time::Duration;

use hopper_cluster::{
    fetch_view, prepare, ClusterError, FrontConfig, Slot, SlotConfig, Standby, WebhookStore,
};
use hopper_core::cluster_slots::{self, MAX_SLOTS};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use crate::{InvalidInputError, UnavailableError};

/// How often a standby asks whether the slot is free (or the database is back).
const SLOT_PROBE_MS: u64 = 250;

/// Takes the cluster slot, waiting while another broker holds it (a standby) or while
/// the database is unreachable or restarting; any other failure (a refused login, a
/// missing database) is a start-up error. Python's signal handlers run between
/// attempts, so a waiting server can still be stopped.
pub fn own_slot(py: Python<'_>, config: &SlotConfig) -> PyResult<Slot> {
    let mut said = false;
    let mut standby = Standby::default();
    loop {
        let attempt = py.allow_threads(|| catch_unwind(AssertUnwindSafe(|| standby.take(config))));
        let Ok(attempt) = attempt else {
            return Err(UnavailableError::new_err(
                "internal error while taking the cluster slot",
            ));
        };
        match attempt {
            Ok(slot) => return Ok(slot),
            Err(ClusterError::LeaseHeld { .. } | ClusterError::NotYourTurn { .. }) => {}
            Err(e) if e.is_transient() => {
                if !said {
                    eprintln!("hopper: cannot reach PostgreSQL, retrying: {e}");
                    said = true;
                }
            }
            Err(e) => {
                return Err(UnavailableError::new_err(format!(
                    "cannot own the cluster slot: {e}"
                )))
            }
        }
        py.check_signals()?;
        py.allow_threads(|| std::thread::sleep(Duration::from_millis(SLOT_PROBE_MS)));
    }
}

/// The broker's public ports, relaying every connection to the slot owner's backends.
#[pyclass(module = "hopper._engine")]
pub struct Front {
    inner: Option<hopper_cluster::Front>,
}

#[pymethods]
impl Front {
    /// Binds `host:port` (and `host:tcp_port` unless 0) and starts relaying. A port in
    /// use raises OSError before anything runs.
    #[new]
    #[pyo3(signature = (*, url, namespace, broker_id, host, port, tcp_port, slots=1,
        poll_ms=100, connect_wait_ms=5000))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        url: String,
        namespace: String,
        broker_id: String,
        host: &str,
        port: u16,
        tcp_port: u16,
        slots: u32,
        poll_ms: u64,
        connect_wait_ms: u64,
    ) -> PyResult<Self> {
        if poll_ms == 0 {
            return Err(InvalidInputError::new_err("poll_ms must be positive"));
        }
        if !(1..=MAX_SLOTS).contains(&slots) {
            return Err(InvalidInputError::new_err(format!(
                "slots must be between 1 and {MAX_SLOTS}"
            )));
        }
        // A slot count other than the cluster's is a start-up error; a database not up
        // yet is not (the brokers wait for it).
        let prepared = py.allow_threads(|| prepare(&url, &namespace, slots));
        if let Err(e @ (ClusterError::SlotCount { .. } | ClusterError::SchemaTooNew { .. })) =
            prepared
        {
            return Err(InvalidInputError::new_err(e.to_string()));
        }
        let http = TcpListener::bind((host, port))?;
        let tcp = (tcp_port != 0)
            .then(|| TcpListener::bind((host, tcp_port)))
            .transpose()?;
        let config = FrontConfig {
            url,
            namespace,
            broker_id,
            poll: Duration::from_millis(poll_ms),
            connect_wait: Duration::from_millis(connect_wait_ms),
            slots,
        };
        let front = hopper_cluster::Front::start(config, http, tcp)?;
        Ok(Self { inner: Some(front) })
    }

    /// (host, port) of the HTTP listener (a port 0 asked for is resolved here).
    #[getter]
    fn http_addr(&self) -> Option<(String, u16)> {
        let a = self.inner.as_ref()?.http_addr;
        Some((a.ip().to_string(), a.port()))
    }

    #[getter]
    fn tcp_addr(&self) -> Option<(String, u16)> {
        let a = self.inner.as_ref()?.tcp_addr?;
        Some((a.ip().to_string(), a.port()))
    }

    /// Closes the listeners and every relay, and withdraws this broker's row.
    fn stop(&mut self, py: Python<'_>) {
        if let Some(mut front) = self.inner.take() {
            py.allow_threads(|| front.stop());
        }
    }
}

/// The slot of `queue` in a cluster of `slots` slots (what every front routes by).
#[pyfunction]
pub fn queue_slot(queue: &str, slots: u32) -> u32 {
    cluster_slots::queue_slot(queue, slots)
}

/// The slot a generated job id carries, or None for a caller-chosen id.
#[pyfunction]
pub fn id_slot(id: &str, slots: u32) -> Option<u32> {
    cluster_slots::id_slot(id, slots)
}

/// Of `brokers`, the one that should own `slot` (rendezvous hashing), if any.
#[pyfunction]
pub fn preferred_broker(brokers: Vec<String>, slot: u32) -> Option<String> {
    cluster_slots::preferred_owner(brokers.iter().map(String::as_str), slot).map(str::to_string)
}

/// The cluster as the database records it: `{"now_ms", "slots": [...], "brokers": [...]}`
/// (one short-lived connection; blocks, so call it off the event loop).
#[pyfunction]
pub fn cluster_view<'py>(
    py: Python<'py>,
    url: &str,
    namespace: &str,
) -> PyResult<Bound<'py, PyDict>> {
    let view = py
        .allow_threads(|| fetch_view(url, namespace))
        .map_err(|e| UnavailableError::new_err(e.to_string()))?;
    let d = PyDict::new(py);
    d.set_item("now_ms", view.now_ms)?;
    let slots = PyList::empty(py);
    for s in view.slots {
        let row = PyDict::new(py);
        row.set_item("slot", s.slot)?;
        row.set_item("owner", s.owner)?;
        row.set_item("epoch", s.epoch)?;
        row.set_item("lease_until_ms", s.lease_until_ms)?;
        row.set_item("http", s.http)?;
        row.set_item("tcp", s.tcp)?;
        slots.append(row)?;
    }
    d.set_item("slots", slots)?;
    let brokers = PyList::empty(py);
    for b in view.brokers {
        let row = PyDict::new(py);
        row.set_item("broker_id", b.broker_id)?;
        row.set_item("http", b.http)?;
        row.set_item("tcp", b.tcp)?;
        row.set_item("started_ms", b.started_ms)?;
        row.set_item("seen_ms", b.seen_ms)?;
        brokers.append(row)?;
    }
    d.set_item("brokers", brokers)?;
    Ok(d)
}

/// The cluster's webhook registry (`hopper_webhooks`), one connection opened when first
/// used. Each call blocks (the GIL released) until its statement committed or failed;
/// a failure raises UnavailableError with the database's reason.
#[pyclass(module = "hopper._engine", name = "WebhookStore", frozen)]
pub struct PyWebhookStore {
    // Calls from the event loop and from a refresh thread take turns.
    inner: Mutex<WebhookStore>,
}

impl PyWebhookStore {
    fn call<T: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut WebhookStore) -> Result<T, ClusterError> + Send,
    ) -> PyResult<T> {
        py.allow_threads(|| {
            catch_unwind(AssertUnwindSafe(|| {
                let mut store = self.inner.lock().unwrap_or_else(|e| e.into_inner());
                f(&mut store)
            }))
        })
        .map_err(|_| UnavailableError::new_err("internal error in the webhook registry"))?
        .map_err(|e| UnavailableError::new_err(e.to_string()))
    }
}

#[pymethods]
impl PyWebhookStore {
    #[new]
    #[pyo3(signature = (*, url, namespace))]
    fn new(url: &str, namespace: &str) -> Self {
        Self {
            inner: Mutex::new(WebhookStore::new(url, namespace)),
        }
    }

    /// Every webhook of the namespace: (id, JSON document), by id.
    fn list(&self, py: Python<'_>) -> PyResult<Vec<(String, String)>> {
        self.call(py, |s| s.list())
    }

    /// Adds (or replaces) the webhook `id`; `doc` must be a JSON document.
    fn insert(&self, py: Python<'_>, id: &str, doc: &str) -> PyResult<()> {
        self.call(py, |s| s.insert(id, doc))
    }

    /// Removes the webhook `id`; whether there was one.
    fn delete(&self, py: Python<'_>, id: &str) -> PyResult<bool> {
        self.call(py, |s| s.delete(id))
    }

    /// Sets the webhook `id`'s `enabled`; whether there is one.
    fn set_enabled(&self, py: Python<'_>, id: &str, enabled: bool) -> PyResult<bool> {
        self.call(py, |s| s.set_enabled(id, enabled))
    }
}
