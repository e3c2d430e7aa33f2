//! An ordered set that also knows positions: the per-state indexes of a queue. Besides
//! what a `BTreeSet` does, it finds the key at a position in O(log n), so a listing's
//! page deep inside a state costs O(log n + page), not O(offset).
//!
//! Layout: sorted chunks of at most `MAX_CHUNK` keys, and a Fenwick tree over the chunk
//! lengths for positions. Chunks are deques, so taking from the front and adding at the
//! back (what queues mostly do) moves no memory. A chunk that grows past `MAX_CHUNK`
//! splits; one that shrinks under `MIN_CHUNK` joins a neighbour; either rebuilds the
//! Fenwick tree (O(chunks)), which happens once per hundreds of changes. A set that
//! empties keeps its one chunk, so a set going between empty and one key (a queue's
//! active jobs, one worker at a time) allocates nothing.

use std::collections::VecDeque;

const MAX_CHUNK: usize = 512;
const MIN_CHUNK: usize = 64;

#[derive(Debug, Clone)]
pub struct RankedSet<K> {
    /// Sorted, each chunk's keys below the next chunk's; none empty but the lone
    /// chunk of an emptied set.
    chunks: Vec<VecDeque<K>>,
    /// Fenwick tree (0-based) over `chunks[i].len()`.
    sizes: Vec<usize>,
    len: usize,
}

impl<K> Default for RankedSet<K> {
    fn default() -> Self {
        Self {
            chunks: Vec::new(),
            sizes: Vec::new(),
            len: 0,
        }
    }
}

impl<K: Ord + Copy> RankedSet<K> {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn first(&self) -> Option<&K> {
        self.chunks.first().and_then(VecDeque::front)
    }

    /// Keys in order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &K> + '_ {
        self.chunks.iter().flatten()
    }

    /// Keys in order from position `rank` (0: the first key) on.
    pub fn iter_from(&self, rank: usize) -> impl Iterator<Item = &K> + '_ {
        let (chunk, offset) = self.locate(rank).unwrap_or((self.chunks.len(), 0));
        self.chunks[chunk..]
            .iter()
            .enumerate()
            .flat_map(move |(n, c)| c.range(if n == 0 { offset } else { 0 }..))
    }

    /// Keys in reverse order from position `rank` counted from the last key (0: the
    /// last key) on.
    pub fn iter_rev_from(&self, rank: usize) -> impl Iterator<Item = &K> + '_ {
        let from_front = rank.checked_add(1).and_then(|r| self.len.checked_sub(r));
        let (chunks, cut) = match from_front.and_then(|p| self.locate(p)) {
            Some((chunk, offset)) => (&self.chunks[..=chunk], offset + 1),
            None => (&self.chunks[..0], 0),
        };
        chunks
            .iter()
            .rev()
            .enumerate()
            .flat_map(move |(n, c)| c.range(..if n == 0 { cut } else { c.len() }).rev())
    }

    /// The first key not below `k`.
    pub fn first_from(&self, k: &K) -> Option<&K> {
        let c = self.chunks.get(self.chunk_at_or_after(k))?;
        c.get(c.partition_point(|x| x < k))
    }

    /// The last key below `k`.
    pub fn last_before(&self, k: &K) -> Option<&K> {
        let i = self
            .chunks
            .partition_point(|c| c.front().is_some_and(|f| f < k));
        let c = self.chunks.get(i.checked_sub(1)?)?;
        c.get(c.partition_point(|x| x < k).checked_sub(1)?)
    }

    /// Adds `k`; false if it was there already.
    pub fn insert(&mut self, k: K) -> bool {
        let Some(last) = self.chunks.last() else {
            self.push_chunk(VecDeque::from([k]));
            self.len = 1;
            return true;
        };
        // A key above every key (queues mostly add at the back) goes to the last chunk,
        // or, when that is full, starts a new one: no split, no rebuild.
        if last.back().is_none_or(|b| *b < k) {
            self.len += 1;
            let i = self.chunks.len() - 1;
            if self.chunks[i].len() < MAX_CHUNK {
                self.chunks[i].push_back(k);
                self.add(i, 1);
            } else {
                let mut fresh = VecDeque::with_capacity(MAX_CHUNK);
                fresh.push_back(k);
                self.push_chunk(fresh);
            }
            return true;
        }
        let i = self.chunk_at_or_after(&k);
        let chunk = &mut self.chunks[i];
        match chunk.binary_search(&k) {
            Ok(_) => return false,
            Err(at) => chunk.insert(at, k),
        }
        self.len += 1;
        if chunk.len() > MAX_CHUNK {
            let tail = chunk.split_off(chunk.len() / 2);
            self.chunks.insert(i + 1, tail);
            self.rebuild();
        } else {
            self.add(i, 1);
        }
        true
    }

    /// Takes `k` out; false if it was not there.
    pub fn remove(&mut self, k: &K) -> bool {
        self.take_first_from(k, |found| found == k).is_some()
    }

    /// Takes out the first key not below `k`, if `wanted` accepts it (one search where
    /// a look and a removal would take two).
    pub fn take_first_from(&mut self, k: &K, wanted: impl FnOnce(&K) -> bool) -> Option<K> {
        let i = self.chunk_at_or_after(k);
        let chunk = self.chunks.get_mut(i)?;
        let at = chunk.partition_point(|x| x < k);
        if !wanted(chunk.get(at)?) {
            return None;
        }
        let found = chunk.remove(at)?;
        self.len -= 1;
        let left = chunk.len();
        if self.chunks.len() == 1 {
            self.add(i, -1);
        } else if left == 0 {
            self.chunks.remove(i);
            self.rebuild();
        } else if left < MIN_CHUNK {
            self.join(i);
        } else {
            self.add(i, -1);
        }
        Some(found)
    }

    /// The index of the first chunk whose last key is not below `k` (`chunks.len()`
    /// when every key is below it).
    fn chunk_at_or_after(&self, k: &K) -> usize {
        // The first chunk is looked at first: queues mostly take from the front.
        match self.chunks.first().and_then(VecDeque::back) {
            Some(b) if b >= k => 0,
            _ => self
                .chunks
                .partition_point(|c| c.back().is_some_and(|b| b < k)),
        }
    }

    /// Merges chunk `i` with a neighbour, splitting the result again if it is too big.
    fn join(&mut self, i: usize) {
        let lo = if i + 1 < self.chunks.len() { i } else { i - 1 };
        let hi = self.chunks.remove(lo + 1);
        let merged = &mut self.chunks[lo];
        merged.extend(hi);
        if merged.len() > MAX_CHUNK {
            let tail = merged.split_off(merged.len() / 2);
            self.chunks.insert(lo + 1, tail);
        }
        self.rebuild();
    }

    /// (chunk, offset in it) of the key at position `rank`; `None` past the end.
    fn locate(&self, mut rank: usize) -> Option<(usize, usize)> {
        if rank >= self.len {
            return None;
        }
        let m = self.sizes.len();
        let mut pos = 0;
        // The highest power of two not above the chunk count.
        let mut step = if m == 0 {
            0
        } else {
            1 << (usize::BITS - 1 - m.leading_zeros())
        };
        while step > 0 {
            if pos + step <= m && self.sizes[pos + step - 1] <= rank {
                pos += step;
                rank -= self.sizes[pos - 1];
            }
            step /= 2;
        }
        Some((pos, rank))
    }

    /// Appends a chunk after the last, extending the Fenwick tree in O(log chunks).
    fn push_chunk(&mut self, chunk: VecDeque<K>) {
        let m = self.chunks.len();
        // Entry m covers the chunks from `m & (m + 1)` to m.
        let covered = self.prefix(m) - self.prefix(m & (m + 1));
        self.sizes.push(covered + chunk.len());
        self.chunks.push(chunk);
    }

    /// The number of keys in the chunks before chunk `end`.
    fn prefix(&self, mut end: usize) -> usize {
        let mut sum = 0;
        while end > 0 {
            sum += self.sizes[end - 1];
            end &= end - 1;
        }
        sum
    }

    fn add(&mut self, mut i: usize, delta: isize) {
        while i < self.sizes.len() {
            self.sizes[i] = self.sizes[i].wrapping_add_signed(delta);
            i |= i + 1;
        }
    }

    fn rebuild(&mut self) {
        self.sizes.clear();
        self.sizes.extend(self.chunks.iter().map(VecDeque::len));
        let m = self.sizes.len();
        for i in 0..m {
            let parent = i | (i + 1);
            if parent < m {
                self.sizes[parent] += self.sizes[i];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// A small deterministic generator, so the test needs no crate.
    fn next(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    fn check(set: &RankedSet<u32>, model: &BTreeSet<u32>) {
        let all: Vec<u32> = model.iter().copied().collect();
        assert_eq!(set.len(), all.len());
        assert_eq!(set.iter().copied().collect::<Vec<_>>(), all);
        assert_eq!(set.first(), all.first());
        for rank in [
            0,
            1,
            all.len() / 3,
            all.len() / 2,
            all.len().saturating_sub(1),
        ] {
            let fwd: Vec<u32> = set.iter_from(rank).take(5).copied().collect();
            assert_eq!(
                fwd,
                all.iter().skip(rank).take(5).copied().collect::<Vec<_>>()
            );
            let back: Vec<u32> = set.iter_rev_from(rank).take(5).copied().collect();
            let want: Vec<u32> = all.iter().rev().skip(rank).take(5).copied().collect();
            assert_eq!(back, want);
        }
        assert_eq!(set.iter_from(all.len()).count(), 0);
        assert_eq!(set.iter_rev_from(all.len()).count(), 0);
        assert_eq!(set.iter_rev_from(usize::MAX).count(), 0);
    }

    #[test]
    fn agrees_with_a_btreeset_through_inserts_and_removals() {
        let mut set = RankedSet::default();
        let mut model = BTreeSet::new();
        let mut seed = 0x9e37_79b9_7f4a_7c15;
        for round in 0..6 {
            // Grow with random keys, then shrink, the front (a queue's pulls) first.
            for _ in 0..4000 {
                let k = (next(&mut seed) % 20_000) as u32;
                assert_eq!(set.insert(k), model.insert(k));
            }
            check(&set, &model);
            let fronts: Vec<u32> = model.iter().take(1500).copied().collect();
            for k in fronts {
                assert!(set.remove(&k) && model.remove(&k));
            }
            for _ in 0..1500 {
                let k = (next(&mut seed) % 20_000) as u32;
                assert_eq!(set.remove(&k), model.remove(&k), "round {round} key {k}");
            }
            check(&set, &model);
        }
        let rest: Vec<u32> = model.iter().copied().collect();
        for k in rest {
            assert!(set.remove(&k));
        }
        assert!(set.is_empty() && set.first().is_none());
        assert!(!set.remove(&1));
        // An emptied set keeps working, between empty and one key as a queue's active set.
        for k in [5, 6] {
            assert!(set.insert(k));
            check(&set, &BTreeSet::from([k]));
            assert!(set.remove(&k) && set.is_empty());
        }
        assert_eq!(set.iter_from(0).count() + set.iter_rev_from(0).count(), 0);
    }

    #[test]
    fn appends_open_new_chunks_and_positions_stay_right() {
        // A queue's pattern: add at the back, take from the front, and both at once.
        let mut set = RankedSet::default();
        let mut model = BTreeSet::new();
        for k in 0..5000u32 {
            assert!(set.insert(k) && model.insert(k));
        }
        check(&set, &model);
        for rank in [0, 511, 512, 513, 1024, 4999] {
            assert_eq!(set.iter_from(rank).next(), Some(&(rank as u32)));
        }
        for k in 0..3000u32 {
            assert!(set.remove(&k) && model.remove(&k));
            assert!(set.insert(k + 5000) && model.insert(k + 5000));
        }
        check(&set, &model);
    }

    #[test]
    fn take_first_from_takes_only_what_is_wanted() {
        let mut set = RankedSet::default();
        for k in [10u32, 20, 30] {
            set.insert(k);
        }
        assert_eq!(set.take_first_from(&15, |&k| k == 15), None);
        assert_eq!(set.take_first_from(&15, |_| true), Some(20));
        assert_eq!(set.take_first_from(&31, |_| true), None);
        assert_eq!(set.iter().copied().collect::<Vec<_>>(), [10, 30]);
    }

    #[test]
    fn neighbours_of_a_key() {
        let mut set = RankedSet::default();
        for k in (0..3000u32).map(|k| k * 2) {
            set.insert(k);
        }
        assert_eq!(set.first_from(&0), Some(&0));
        assert_eq!(set.first_from(&1001), Some(&1002));
        assert_eq!(set.first_from(&6000), None);
        assert_eq!(set.last_before(&0), None);
        assert_eq!(set.last_before(&1001), Some(&1000));
        assert_eq!(set.last_before(&1000), Some(&998));
        assert_eq!(set.last_before(&9999), Some(&5998));
    }
}
