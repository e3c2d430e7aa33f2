//! The ready queue of one queue: jobs ordered by priority (higher first), then by a
//! sequence number (FIFO; `lifo` jobs get negative sequences so they sort before the
//! current head of their priority). Each job remembers its own key, which makes removal,
//! re-prioritisation and promotion by id O(log n), and a page at any position
//! O(log n + page).

use crate::ranked_set::RankedSet;

/// Position of a job in a ready queue; the job stores it so it can be found again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OrderKey {
    neg_priority: i64,
    seq: i64,
}

impl OrderKey {
    pub fn new(priority: i32, seq: i64) -> Self {
        Self {
            neg_priority: -(priority as i64),
            seq,
        }
    }
}

/// (key, slot): keys are unique (a sequence is given once), so the slot only rides along.
#[derive(Debug, Default)]
pub struct PriorityQueue {
    entries: RankedSet<(OrderKey, u32)>,
}

impl PriorityQueue {
    pub fn insert(&mut self, key: OrderKey, slot: u32) {
        self.entries.insert((key, slot));
    }

    pub fn remove(&mut self, key: &OrderKey) -> Option<u32> {
        self.entries
            .take_first_from(&(*key, 0), |e| e.0 == *key)
            .map(|(_, slot)| slot)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The first slot (in order) accepted by `eligible`. Skipping is needed only while
    /// some job names are paused.
    pub fn first_where(&self, mut eligible: impl FnMut(u32) -> bool) -> Option<u32> {
        self.iter().find(|&slot| eligible(slot))
    }

    /// (key, slot) in queue order.
    pub fn entries(&self) -> impl Iterator<Item = (OrderKey, u32)> + '_ {
        self.entries.iter().copied()
    }

    /// Slots in queue order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = u32> + '_ {
        self.entries.iter().map(|&(_, s)| s)
    }

    /// Slots in queue order from position `rank` on, found in O(log n).
    pub fn iter_from(&self, rank: usize) -> impl Iterator<Item = u32> + '_ {
        self.entries.iter_from(rank).map(|&(_, s)| s)
    }

    /// The jobs that have waited longest in each priority level: the FIFO head and the
    /// oldest `lifo` job. O(levels × log n), so "oldest waiting" needs no scan.
    pub fn level_elders(&self) -> Vec<u32> {
        let mut out = Vec::new();
        let mut from = self.entries.first().map(|e| e.0);
        while let Some(first) = from {
            let level = first.neg_priority;
            let split = (
                OrderKey {
                    neg_priority: level,
                    seq: 0,
                },
                0,
            );
            let same = |e: &&(OrderKey, u32)| e.0.neg_priority == level;
            if let Some(&(_, s)) = self.entries.last_before(&split).filter(same) {
                out.push(s);
            }
            if let Some(&(_, s)) = self.entries.first_from(&split).filter(same) {
                out.push(s);
            }
            from = level.checked_add(1).and_then(|next| {
                let start = OrderKey {
                    neg_priority: next,
                    seq: i64::MIN,
                };
                self.entries.first_from(&(start, 0)).map(|e| e.0)
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priority_then_fifo_with_lifo_in_front() {
        let mut q = PriorityQueue::default();
        q.insert(OrderKey::new(0, 1), 1);
        q.insert(OrderKey::new(0, 2), 2);
        q.insert(OrderKey::new(10, 3), 3);
        q.insert(OrderKey::new(0, -4), 4); // lifo: before the head of priority 0
        q.insert(OrderKey::new(-5, 5), 5);
        q.insert(OrderKey::new(0, -6), 6); // a later lifo goes first
        let order: Vec<u32> = q.iter().collect();
        assert_eq!(order, vec![3, 6, 4, 1, 2, 5]);
        assert_eq!(q.first_where(|s| s != 3), Some(6));
    }

    #[test]
    fn level_elders_are_the_fifo_heads_and_oldest_lifo_of_each_priority() {
        let mut q = PriorityQueue::default();
        q.insert(OrderKey::new(0, 1), 1);
        q.insert(OrderKey::new(0, 2), 2);
        q.insert(OrderKey::new(0, -3), 3);
        q.insert(OrderKey::new(0, -7), 7);
        q.insert(OrderKey::new(5, 4), 4);
        q.insert(OrderKey::new(-2, -5), 5);
        let mut elders = q.level_elders();
        elders.sort_unstable();
        assert_eq!(elders, vec![1, 3, 4, 5]);
        assert!(PriorityQueue::default().level_elders().is_empty());
    }

    #[test]
    fn removal_by_key_and_skipping() {
        let mut q = PriorityQueue::default();
        let k1 = OrderKey::new(1, 1);
        q.insert(k1, 1);
        q.insert(OrderKey::new(1, 2), 2);
        q.insert(OrderKey::new(1, 3), 3);
        assert_eq!(q.remove(&k1), Some(1));
        assert_eq!(q.first_where(|s| s != 2), Some(3));
        assert_eq!(q.len(), 2);
    }
}
