//! Keeping a slot: its lease renewed every third of the lease on a thread of its own, so
//! two renewals can fail before the lease runs out.

use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::error::ClusterError;
use crate::slot::Slot;

/// Renews until the slot is fenced or released, or this is dropped. A failed renewal
/// (the database unreachable) is retried at the next period; meanwhile the slot stops
/// writing once its lease runs out (`LeaseLapsed`) and resumes when a renewal succeeds.
pub struct LeaseKeeper {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl Slot {
    pub fn keep_lease(&self) -> std::io::Result<LeaseKeeper> {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let (slot, flag) = (self.clone(), stop.clone());
        let period = Duration::from_millis((self.lease_ms() / 3).max(1));
        let thread = std::thread::Builder::new()
            .name("hopper-lease".into())
            .spawn(move || renew_loop(&slot, &flag, period))?;
        Ok(LeaseKeeper {
            stop,
            thread: Some(thread),
        })
    }
}

fn renew_loop(slot: &Slot, stop: &(Mutex<bool>, Condvar), period: Duration) {
    let (lock, cv) = stop;
    let mut stopped = lock.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        stopped = cv
            .wait_timeout(stopped, period)
            .unwrap_or_else(|p| p.into_inner())
            .0;
        if *stopped {
            return;
        }
        match slot.renew() {
            // A failed look at the brokers is retried at the next renewal.
            Ok(_) => drop(slot.check_handoff()),
            Err(e @ ClusterError::Db(_)) => {
                eprintln!("hopper: renewing the slot's lease failed (will retry): {e}")
            }
            // Fenced or released: there is nothing left to keep.
            Err(_) => return,
        }
    }
}

impl Drop for LeaseKeeper {
    fn drop(&mut self) {
        let (lock, cv) = &*self.stop;
        *lock.lock().unwrap_or_else(|p| p.into_inner()) = true;
        cv.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
