//! Storage for jobs, addressed by a `u32` slot. Fixed-size chunks instead of one growing
//! `Vec`: growing never copies existing jobs (no pause proportional to the job count
//! while the engine lock is held) and unused capacity is at most one chunk.

use crate::job::Job;

const CHUNK_BITS: u32 = 10;
const CHUNK: usize = 1 << CHUNK_BITS;

#[derive(Debug, Default)]
pub struct Slab {
    chunks: Vec<Box<[Option<Job>]>>,
    /// Slots ever handed out; slots below this are in `chunks`.
    high: u32,
    free: Vec<u32>,
    len: usize,
}

impl Slab {
    fn locate(slot: u32) -> (usize, usize) {
        ((slot >> CHUNK_BITS) as usize, slot as usize & (CHUNK - 1))
    }

    pub fn get(&self, slot: u32) -> Option<&Job> {
        let (c, i) = Self::locate(slot);
        self.chunks.get(c).and_then(|chunk| chunk[i].as_ref())
    }

    pub fn get_mut(&mut self, slot: u32) -> Option<&mut Job> {
        let (c, i) = Self::locate(slot);
        self.chunks.get_mut(c).and_then(|chunk| chunk[i].as_mut())
    }

    /// Stores a job, reusing a freed slot when there is one.
    pub fn insert(&mut self, job: Job) -> u32 {
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                let slot = self.high;
                self.high += 1;
                if Self::locate(slot).0 == self.chunks.len() {
                    self.chunks.push((0..CHUNK).map(|_| None).collect());
                }
                slot
            }
        };
        let (c, i) = Self::locate(slot);
        self.chunks[c][i] = Some(job);
        self.len += 1;
        slot
    }

    pub fn remove(&mut self, slot: u32) -> Option<Job> {
        let (c, i) = Self::locate(slot);
        let job = self.chunks.get_mut(c)?[i].take()?;
        self.free.push(slot);
        self.len -= 1;
        Some(job)
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// One past the highest slot ever handed out: every job's slot is below it.
    pub fn high(&self) -> u32 {
        self.high
    }

    pub fn iter(&self) -> impl Iterator<Item = &Job> {
        self.chunks.iter().flat_map(|c| c.iter().flatten())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::JobId;
    use crate::job::JobState;

    fn job(n: u8) -> Job {
        Job {
            id: JobId::Uuid([n; 16]),
            data: "1".into(),
            ext: None,
            lease: None,
            created_at: 0,
            run_at: 0,
            started_at: 0,
            finished_at: 0,
            seq: 0,
            gen: 0,
            queue: 0,
            name: 0,
            priority: 0,
            backoff: 0,
            attempts: 0,
            max_attempts: 1,
            stalls: 0,
            progress: 0,
            state: JobState::Waiting,
            flags: 0,
        }
    }

    #[test]
    fn slots_are_stable_reused_and_span_chunks() {
        let mut s = Slab::default();
        let slots: Vec<u32> = (0..2500).map(|n| s.insert(job((n % 250) as u8))).collect();
        assert_eq!(s.len(), 2500);
        assert_eq!(
            s.get(slots[2100]).unwrap().id,
            JobId::Uuid([(2100 % 250) as u8; 16])
        );
        assert_eq!(s.remove(slots[7]).unwrap().id, JobId::Uuid([7; 16]));
        assert!(s.get(slots[7]).is_none() && s.remove(slots[7]).is_none());
        assert_eq!(s.insert(job(9)), slots[7], "freed slot reused");
        assert_eq!(s.iter().count(), 2500);
        assert!(s.get(99_999).is_none());
        s.get_mut(slots[0]).unwrap().priority = 5;
        assert_eq!(s.get(slots[0]).unwrap().priority, 5);
    }
}
