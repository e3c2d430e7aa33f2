//! An ordered set that also knows positions: the per-state indexes of a queue. Besides
//! what a `BTreeSet` does, it finds the key at a position in O(log n), so a listing's
//! page deep inside a state costs O(log n + page), not O(offset).
//!
//! Layout: sorted chunks of at most `MAX_CHUNK` keys, and a Fenwick tree over the chunk
//! lengths for positions. Chunks are deques, so taking from the front and adding at the
//! back (what queues mostly do) moves no memory. A chunk that grows past `MAX_CHUNK`
//! splits; one that shrinks under `MIN_CHUNK` joins a neighbour; either rebuilds the
//! Fenwick tree (O(chunks)), which happens once per hundreds of changes.

use std::collections::VecDeque;

const MAX_CHUNK: usize = 512;
const MIN_CHUNK: usize = 64;

#[derive(Debug, Clone)]
pub struct RankedSet<K> {
    /// Sorted, none empty, each chunk's keys below the next chunk's.
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
        let i = self.chunks.partition_point(|c| c[0] < *k);
        let c = self.chunks.get(i.checked_sub(1)?)?;
        c.get(c.partition_point(|x| x < k).checked_sub(1)?)
    }

    /// Adds `k`; false if it was there already.
    pub fn insert(&mut self, k: K) -> bool {
        if self.chunks.is_empty() {
            self.chunks.push(VecDeque::from([k]));
            self.len = 1;
            self.rebuild();
            return true;
        }
        // A key above every key goes to the last chunk.
        let i = self.chunk_at_or_after(&k).min(self.chunks.len() - 1);
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
        let i = self.chunk_at_or_after(k);
        let Some(chunk) = self.chunks.get_mut(i) else {
            return false;
        };
        let Ok(at) = chunk.binary_search(k) else {
            return false;
        };
        chunk.remove(at);
        self.len -= 1;
        if chunk.is_empty() {
            self.chunks.remove(i);
            self.rebuild();
        } else if chunk.len() < MIN_CHUNK && self.chunks.len() > 1 {
            self.join(i);
        } else {
            self.add(i, -1);
        }
        true
    }

    /// The index of the first chunk whose last key is not below `k` (`chunks.len()`
    /// when every key is below it).
    fn chunk_at_or_after(&self, k: &K) -> usize {
        self.chunks.partition_point(|c| c[c.len() - 1] < *k)
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
