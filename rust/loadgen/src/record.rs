//! Latency recording: one HDR histogram per series and generator thread (µs, 1 µs .. 1 h,
//! 3 significant digits), from the intended start (corrected; in closed loop the send) and,
//! in open loop, from the actual send (uncorrected). Counters are atomics so that the
//! progress line can read them while the run goes on.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use base64::Engine as _;
use hdrhistogram::serialization::{Serializer, V2DeflateSerializer};
use hdrhistogram::Histogram;

pub const LOWEST_US: u64 = 1;
pub const HIGHEST_US: u64 = 3_600_000_000;
pub const SIGNIFICANT_DIGITS: u8 = 3;
const ERROR_SAMPLE_CHARS: usize = 300;

pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)
        .expect("valid histogram bounds")
}

/// The compressed V2 encoding in base64, as in `.hlog` lines.
pub fn encode(h: &Histogram<u64>) -> String {
    let mut bytes = Vec::new();
    V2DeflateSerializer::new()
        .serialize(h, &mut bytes)
        .expect("serializing to memory");
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn us(ns: u64) -> u64 {
    (ns / 1000).clamp(LOWEST_US, HIGHEST_US)
}

pub struct Hists {
    pub corrected: Histogram<u64>,
    pub raw: Option<Histogram<u64>>,
}

/// One series (push, pullack, ...) of one run.
pub struct Series {
    pub name: &'static str,
    per_thread: Vec<Mutex<Hists>>,
    pub ok: AtomicU64,
    /// Jobs the measured ok operations carried (a bulk push or a pullb batch: several).
    pub jobs: AtomicU64,
    pub errors: AtomicU64,
    pub unmeasured: AtomicU64,
    pub empty: AtomicU64,
    pub last_ns: AtomicU64,
    error_sample: Mutex<Option<String>>,
}

impl Series {
    pub fn new(name: &'static str, threads: usize, open_loop: bool) -> Series {
        let hists = || Hists {
            corrected: new_histogram(),
            raw: open_loop.then(new_histogram),
        };
        Series {
            name,
            per_thread: (0..threads).map(|_| Mutex::new(hists())).collect(),
            ok: AtomicU64::new(0),
            jobs: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            unmeasured: AtomicU64::new(0),
            empty: AtomicU64::new(0),
            last_ns: AtomicU64::new(0),
            error_sample: Mutex::new(None),
        }
    }

    /// A finished operation of `jobs` jobs: measured from `intended` and, uncorrected,
    /// from `sent`.
    pub fn record(
        &self,
        thread: usize,
        measured: bool,
        (intended, sent, done): (u64, u64, u64),
        jobs: u64,
    ) {
        if !measured {
            self.unmeasured.fetch_add(1, Ordering::Relaxed);
            return;
        }
        {
            let mut h = self.per_thread[thread]
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            // a timer may fire a little before its slot: never count from after the send
            let _ = h
                .corrected
                .record(us(done.saturating_sub(intended.min(sent))));
            if let Some(raw) = h.raw.as_mut() {
                let _ = raw.record(us(done.saturating_sub(sent)));
            }
        }
        self.ok.fetch_add(1, Ordering::Relaxed);
        self.jobs.fetch_add(jobs, Ordering::Relaxed);
        self.last_ns.fetch_max(done, Ordering::Relaxed);
    }

    pub fn error(&self, measured: bool, done: u64, message: impl FnOnce() -> String) {
        if !measured {
            self.unmeasured.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.errors.fetch_add(1, Ordering::Relaxed);
        self.last_ns.fetch_max(done, Ordering::Relaxed);
        let mut sample = self.error_sample.lock().unwrap_or_else(|p| p.into_inner());
        if sample.is_none() {
            *sample = Some(message().chars().take(ERROR_SAMPLE_CHARS).collect());
        }
    }

    pub fn error_sample(&self) -> Option<String> {
        self.error_sample
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Everything that finished, warm-up and errors included.
    pub fn finished(&self) -> u64 {
        self.ok.load(Ordering::Relaxed)
            + self.errors.load(Ordering::Relaxed)
            + self.unmeasured.load(Ordering::Relaxed)
    }

    /// The histograms of all threads added up.
    pub fn merged(&self) -> Hists {
        let mut out = Hists {
            corrected: new_histogram(),
            raw: None,
        };
        for h in &self.per_thread {
            let h = h.lock().unwrap_or_else(|p| p.into_inner());
            let _ = out.corrected.add(&h.corrected);
            if let Some(raw) = &h.raw {
                let _ = out.raw.get_or_insert_with(new_histogram).add(raw);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hdrhistogram::serialization::Deserializer;

    #[test]
    fn corrected_counts_from_the_intended_start_and_raw_from_the_send() {
        let s = Series::new("push", 2, true);
        s.record(0, true, (0, 5_000_000, 6_000_000), 1); // due at 0, sent 5 ms late, took 1 ms
        s.record(1, true, (10_000_000, 10_000_000, 10_500_000), 100);
        s.record(1, false, (0, 0, 1), 1);
        let m = s.merged();
        assert_eq!(m.corrected.len(), 2);
        assert_eq!(m.corrected.max(), m.corrected.highest_equivalent(6_000));
        let raw = m.raw.unwrap();
        assert_eq!(raw.max(), raw.highest_equivalent(1_000));
        assert_eq!(s.finished(), 3);
        assert_eq!(s.jobs.load(Ordering::Relaxed), 101);
    }

    #[test]
    fn encoding_round_trips() {
        let mut h = new_histogram();
        for v in [1, 10, 1000, 123_456] {
            h.record(v).unwrap();
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encode(&h))
            .unwrap();
        let back: Histogram<u64> = Deserializer::new()
            .deserialize(&mut bytes.as_slice())
            .unwrap();
        assert_eq!(back, h);
    }
}
