//! A hierarchical timer wheel with millisecond resolution: O(1) insert, cancellation by
//! the caller ignoring stale entries when they fire (O(1), no search), and advancing over
//! long idle gaps in O(levels × slots) rather than one step per millisecond.
//!
//! Level `k` has 64 slots, each `64^k` ms wide. An entry is placed on the level of the
//! highest bit where its deadline differs from the wheel's current time; when time reaches
//! the start of that slot the entry cascades to a finer level, and fires from level 0.

const SLOT_BITS: u32 = 6;
const SLOTS: usize = 1 << SLOT_BITS;
const LEVELS: usize = 7; // 64^7 ms ≈ 139 years
const MASK: u64 = SLOTS as u64 - 1;

#[derive(Debug)]
pub struct TimerWheel<T> {
    /// The next millisecond not yet processed.
    now: u64,
    levels: Vec<Vec<Vec<(u64, T)>>>,
    per_level: [usize; LEVELS],
}

impl<T> TimerWheel<T> {
    pub fn new(now_ms: u64) -> Self {
        let levels = (0..LEVELS)
            .map(|_| (0..SLOTS).map(|_| Vec::new()).collect())
            .collect();
        Self {
            now: now_ms,
            levels,
            per_level: [0; LEVELS],
        }
    }

    pub fn len(&self) -> usize {
        self.per_level.iter().sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Schedules `item` at `deadline` (ms). Deadlines in the past fire on the next advance.
    pub fn insert(&mut self, deadline: u64, item: T) {
        let deadline = deadline.max(self.now);
        self.place(deadline, item);
    }

    fn place(&mut self, deadline: u64, item: T) {
        let diff = deadline ^ self.now;
        let level = if diff == 0 {
            0
        } else {
            (((63 - diff.leading_zeros()) / SLOT_BITS) as usize).min(LEVELS - 1)
        };
        let slot = ((deadline >> (SLOT_BITS * level as u32)) & MASK) as usize;
        self.levels[level][slot].push((deadline, item));
        self.per_level[level] += 1;
    }

    /// Moves time to `now_ms` and appends every entry whose deadline is ≤ `now_ms` to `out`,
    /// with its deadline (as inserted, or the wheel's time then if that was earlier), in
    /// deadline order.
    pub fn advance(&mut self, now_ms: u64, out: &mut Vec<(u64, T)>) {
        while self.now <= now_ms {
            let t = self.now;
            // Cascade coarse slots whose range starts now, coarsest first, so entries
            // moved down can cascade again at this same tick.
            for level in (1..LEVELS).rev() {
                let width_bits = SLOT_BITS * level as u32;
                if t & ((1u64 << width_bits) - 1) == 0 {
                    let slot = ((t >> width_bits) & MASK) as usize;
                    if !self.levels[level][slot].is_empty() {
                        let entries = std::mem::take(&mut self.levels[level][slot]);
                        self.per_level[level] -= entries.len();
                        for (deadline, item) in entries {
                            self.place(deadline, item);
                        }
                    }
                }
            }
            let slot = (t & MASK) as usize;
            if !self.levels[0][slot].is_empty() {
                let entries = std::mem::take(&mut self.levels[0][slot]);
                self.per_level[0] -= entries.len();
                out.extend(entries);
            }
            self.now = self.next_stop(t).min(now_ms + 1);
        }
    }

    /// The next millisecond after `t` at which something can happen: the next tick if
    /// level 0 holds entries, else the next cascade boundary of the finest non-empty level.
    fn next_stop(&self, t: u64) -> u64 {
        if self.per_level[0] > 0 {
            return t + 1;
        }
        match (1..LEVELS).find(|&l| self.per_level[l] > 0) {
            Some(level) => {
                let width = 1u64 << (SLOT_BITS * level as u32);
                (t | (width - 1)).saturating_add(1)
            }
            None => u64::MAX,
        }
    }

    /// A time at or before the earliest deadline, for a timer thread to sleep until.
    pub fn next_wake(&self) -> Option<u64> {
        if self.per_level[0] > 0 {
            let start = (self.now & MASK) as usize;
            for i in 0..SLOTS {
                let slot = (start + i) % SLOTS;
                if let Some(&(deadline, _)) = self.levels[0][slot].first() {
                    return Some(deadline.max(self.now));
                }
            }
        }
        if self.is_empty() {
            None
        } else {
            Some(self.next_stop(self.now.saturating_sub(1)).max(self.now))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(w: &mut TimerWheel<u64>, to: u64) -> Vec<u64> {
        let mut out = Vec::new();
        w.advance(to, &mut out);
        out.into_iter().map(|(_, item)| item).collect()
    }

    #[test]
    fn fires_each_entry_exactly_at_its_deadline() {
        let start = 1_700_000_000_123;
        let mut w = TimerWheel::new(start);
        let offsets = [
            0u64, 1, 63, 64, 65, 4095, 4096, 4097, 262_143, 262_144, 86_400_000,
        ];
        for &o in &offsets {
            w.insert(start + o, start + o);
        }
        assert_eq!(w.len(), offsets.len());
        for &o in &offsets {
            let fired = drain(&mut w, start + o);
            assert!(fired.contains(&(start + o)), "entry {o} fires at its time");
            assert!(fired.iter().all(|&d| d <= start + o), "nothing fires early");
        }
        assert!(w.is_empty());
    }

    #[test]
    fn long_jump_fires_everything_in_order() {
        let mut w = TimerWheel::new(0);
        for d in [500u64, 3, 70_000, 10, 1_000_000] {
            w.insert(d, d);
        }
        assert_eq!(
            drain(&mut w, 2_000_000),
            vec![3, 10, 500, 70_000, 1_000_000]
        );
    }

    #[test]
    fn past_deadlines_fire_on_next_advance_and_next_wake_is_not_late() {
        let mut w = TimerWheel::new(1000);
        w.insert(5, 5);
        assert_eq!(w.next_wake(), Some(1000));
        assert_eq!(drain(&mut w, 1000), vec![5]);
        w.insert(1000 + 5000, 1);
        let wake = w.next_wake().unwrap();
        assert!(wake <= 6000 && wake > 1000);
        assert_eq!(drain(&mut w, 5999), Vec::<u64>::new());
        assert_eq!(drain(&mut w, 6000), vec![1]);
        assert_eq!(w.next_wake(), None);
    }

    #[test]
    fn random_schedule_matches_sorted_model() {
        let mut seed = 7u64;
        let mut rnd = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut w = TimerWheel::new(10_000);
        let mut model: Vec<u64> = Vec::new();
        let mut now = 10_000;
        for _ in 0..2000 {
            let d = now + rnd() % 300_000;
            w.insert(d, d);
            model.push(d);
            now += rnd() % 500;
            let fired = drain(&mut w, now);
            let mut expect: Vec<u64> = model.iter().copied().filter(|&x| x <= now).collect();
            model.retain(|&x| x > now);
            expect.sort();
            let mut got = fired.clone();
            got.sort();
            assert_eq!(got, expect);
        }
    }
}
