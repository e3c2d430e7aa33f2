//! When operations start.
//!
//! Closed loop: an operation starts as soon as a window slot is free; its intended start
//! is the moment it is sent. Open loop: a timetable fixed before the run: slot k (over
//! all connections of one series) is due at `start + k / rate`; connection c of C takes
//! the slots k = c, c + C, c + 2C, ... Latency is counted from that due time whether or
//! not the connection was free to send then (coordinated-omission correction).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// How early an open-loop slot may go out. Timers fire on millisecond ticks, so waiting for
/// the exact due time would send most requests up to a tick late and put that lag into the
/// corrected latency; a request sent before its slot is counted from its actual send.
pub const EARLY_NS: u64 = 1_000_000;

/// What a scheduler says about the next operation of a series on one connection.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// Start it now; `intended` is its slot (open loop) or now (closed loop).
    Go { intended: u64, measured: bool },
    /// Its slot is not due yet (open loop).
    Wait(u64),
    /// The series is over on this connection.
    Done,
}

/// The phases of one run, in ns since the run's base instant.
#[derive(Clone, Copy, Debug)]
pub struct Window {
    pub start: u64,
    pub measure_start: u64,
    /// Duration mode: the end of the measured phase.
    pub end: Option<u64>,
    pub hard_end: u64,
}

/// Shared by the connections of one series in closed loop with a count.
#[derive(Debug, Default)]
pub struct Budget {
    taken: AtomicU64,
}

impl Budget {
    fn take(&self, limit: u64) -> bool {
        self.taken.fetch_add(1, Ordering::Relaxed) < limit
    }
}

#[derive(Debug)]
pub enum Schedule {
    Closed {
        win: Window,
        count: Option<u64>,
        budget: Arc<Budget>,
    },
    Open {
        win: Window,
        /// ns between consecutive slots of the whole series.
        period: f64,
        next: u64,
        step: u64,
        /// Slots before the measured ones (the warm-up) and the total, in count mode.
        warmup_slots: u64,
        total: Option<u64>,
    },
}

impl Schedule {
    pub fn closed(win: Window, count: Option<u64>, budget: Arc<Budget>) -> Schedule {
        Schedule::Closed { win, count, budget }
    }

    /// Connection `index` of `of` on a timetable of `rate` per second.
    pub fn open(win: Window, rate: f64, count: Option<u64>, index: u64, of: u64) -> Schedule {
        let period = 1e9 / rate;
        let warmup_slots = ((win.measure_start - win.start) as f64 / period).ceil() as u64;
        Schedule::Open {
            win,
            period,
            next: index,
            step: of.max(1),
            warmup_slots,
            total: count.map(|n| warmup_slots + n),
        }
    }

    pub fn next(&mut self, now: u64) -> Next {
        match self {
            Schedule::Closed { win, count, budget } => {
                if now >= win.hard_end {
                    return Next::Done;
                }
                let measured = now >= win.measure_start;
                if measured {
                    match (*count, win.end) {
                        (Some(n), _) if !budget.take(n) => return Next::Done,
                        (None, Some(end)) if now >= end => return Next::Done,
                        _ => {}
                    }
                }
                Next::Go {
                    intended: now,
                    measured,
                }
            }
            Schedule::Open {
                win,
                period,
                next,
                step,
                warmup_slots,
                total,
            } => {
                let due = win.start + (*next as f64 * *period) as u64;
                if total.is_some_and(|t| *next >= t)
                    || win.end.is_some_and(|e| due >= e)
                    || due >= win.hard_end
                {
                    return Next::Done;
                }
                if due > now.saturating_add(EARLY_NS) {
                    return Next::Wait(due - EARLY_NS);
                }
                let measured = *next >= *warmup_slots;
                *next += *step;
                Next::Go {
                    intended: due,
                    measured,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn win() -> Window {
        Window {
            start: 1_000,
            measure_start: 1_000 + 10_000_000,
            end: None,
            hard_end: u64::MAX,
        }
    }

    #[test]
    fn open_loop_slots_interleave_over_connections() {
        // 1000/s, 2 connections: connection 1 takes slots 1, 3, 5 ... (ms 1, 3, 5 ...)
        let mut s = Schedule::open(win(), 1000.0, Some(3), 1, 2);
        assert_eq!(s.next(0), Next::Wait(1_000 + 1_000_000 - EARLY_NS));
        let mut got = vec![];
        while let Next::Go { intended, measured } = s.next(u64::MAX / 2) {
            got.push((intended - 1_000, measured));
        }
        // 10 warm-up slots (10 ms at 1000/s), then slots 10, 11, 12 measured: this
        // connection has the odd ones: 1..9 unmeasured, 11 measured.
        let want: Vec<(u64, bool)> = [1, 3, 5, 7, 9, 11]
            .iter()
            .map(|k| (k * 1_000_000, *k >= 10))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn intended_times_do_not_move_when_the_sender_is_late() {
        let mut s = Schedule::open(win(), 100.0, None, 0, 1);
        let late = 1_000 + 1_000_000_000;
        let a = s.next(late);
        let b = s.next(late);
        assert_eq!(
            a,
            Next::Go {
                intended: 1_000,
                measured: false
            }
        );
        assert_eq!(
            b,
            Next::Go {
                intended: 1_000 + 10_000_000,
                measured: true
            }
        );
    }

    #[test]
    fn closed_loop_count_is_shared() {
        let budget = Arc::new(Budget::default());
        let mut a = Schedule::closed(win(), Some(3), budget.clone());
        let mut b = Schedule::closed(win(), Some(3), budget);
        let t = 1_000 + 20_000_000;
        let mut n = 0;
        for _ in 0..5 {
            for s in [&mut a, &mut b] {
                if matches!(s.next(t), Next::Go { measured: true, .. }) {
                    n += 1;
                }
            }
        }
        assert_eq!(n, 3);
        // warm-up operations do not use the budget
        let mut c = Schedule::closed(win(), Some(0), Arc::new(Budget::default()));
        assert!(matches!(
            c.next(1_000),
            Next::Go {
                measured: false,
                ..
            }
        ));
    }
}
