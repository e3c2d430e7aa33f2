//! Which cluster slot a queue or a job id belongs to, and which broker should own a
//! slot. Shared by the engine (it tags the ids it generates, and refuses queues of other
//! slots) and by the brokers' fronts (they route each request by it), so the two can
//! never disagree. A cluster's slot count is fixed when it is created (docs/cluster.md).

/// Largest slot count a cluster may have: a slot is tagged into 16 bits of an id.
pub const MAX_SLOTS: u32 = 1024;

/// FNV-1a, 64 bits: stable across builds and platforms (std's hasher is not), cheap for
/// short names, and good enough to spread queue names over a few slots.
fn fnv1a(bytes: &[u8], seed: u64) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325 ^ seed;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// A final mix so that names differing in one byte land far apart.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The slot of `queue` in a cluster of `slots` slots.
pub fn queue_slot(queue: &str, slots: u32) -> u32 {
    if slots <= 1 {
        return 0;
    }
    (mix(fnv1a(queue.as_bytes(), 0)) % u64::from(slots)) as u32
}

/// Writes the slot into a generated id's last two bytes, and a 32-bit check of the id's
/// first ten bytes and its slot into the four before (random bits otherwise), so a front
/// routes `/jobs/:id` with no lookup. The check is what tells a tagged id from a UUIDv7
/// a client generated (the SDK plans flow job ids that way): a random one passes with a
/// chance of 2^-32 (times slots / 65 536 for its tag to name a slot), so a client's id is
/// never taken for another slot's in practice.
pub fn tag_id(id: &mut [u8; 16], slot: u32) {
    id[14..].copy_from_slice(&(slot as u16).to_be_bytes());
    let check = tag_check(id);
    id[10..14].copy_from_slice(&check.to_be_bytes());
}

fn tag_check(id: &[u8; 16]) -> u32 {
    let tag = u64::from(u16::from_be_bytes([id[14], id[15]]));
    (mix(fnv1a(&id[..10], tag)) >> 32) as u32
}

/// The slot a generated id was tagged with, if `id` is one (canonical UUIDv7 text whose
/// check holds and whose tag is a slot of this cluster). Caller-chosen ids have none.
pub fn id_slot(id: &str, slots: u32) -> Option<u32> {
    if slots <= 1 {
        return Some(0);
    }
    let crate::ids::JobId::Uuid(b) = crate::ids::JobId::parse(id) else {
        return None;
    };
    if b[6] >> 4 != 7 || b[10..14] != tag_check(&b).to_be_bytes() {
        return None;
    }
    let tag = u32::from(u16::from_be_bytes([b[14], b[15]]));
    (tag < slots).then_some(tag)
}

/// Rendezvous (highest random weight) hashing: the broker with the highest weight for a
/// slot should own it. When a broker joins or leaves, only the slots it ranks first for
/// move; the rest stay where they are.
pub fn rendezvous_weight(broker_id: &str, slot: u32) -> u64 {
    mix(fnv1a(
        broker_id.as_bytes(),
        u64::from(slot).wrapping_mul(0x9E37_79B9_7F4A_7C15),
    ))
}

/// Of `brokers`, the one that should own `slot` (ties, which need equal weights, go to
/// the smaller id so every broker picks the same).
pub fn preferred_owner<'a>(
    brokers: impl IntoIterator<Item = &'a str>,
    slot: u32,
) -> Option<&'a str> {
    brokers.into_iter().max_by(|a, b| {
        rendezvous_weight(a, slot)
            .cmp(&rendezvous_weight(b, slot))
            .then_with(|| b.cmp(a))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{IdGenerator, JobId};

    #[test]
    fn one_slot_holds_everything() {
        assert_eq!(queue_slot("emails", 1), 0);
        assert_eq!(id_slot("order-1", 1), Some(0));
    }

    #[test]
    fn queues_spread_over_the_slots_and_stay_put() {
        let mut counts = [0u32; 4];
        for i in 0..4000 {
            counts[queue_slot(&format!("queue-{i}"), 4) as usize] += 1;
        }
        assert!(
            counts.iter().all(|&c| (800..1200).contains(&c)),
            "{counts:?}"
        );
        // Pinned values: a change of the hash would move every queue of a live cluster.
        assert_eq!(queue_slot("emails", 8), queue_slot("emails", 8));
        assert_eq!(
            [
                queue_slot("emails", 8),
                queue_slot("orders", 8),
                queue_slot("a", 8)
            ],
            PINNED
        );
    }
    const PINNED: [u32; 3] = [7, 1, 0];

    #[test]
    fn a_tagged_id_names_its_slot() {
        let mut g = IdGenerator::new(7);
        for slot in [0, 1, 5, 1023] {
            let mut id = g.next(1_700_000_000_000);
            tag_id(&mut id, slot);
            let text = JobId::Uuid(id).to_string();
            assert_eq!(id_slot(&text, 1024), Some(slot));
        }
        assert_eq!(id_slot("order-1", 4), None);
        let mut id = g.next(1_700_000_000_000);
        tag_id(&mut id, 9);
        assert_eq!(
            id_slot(&JobId::Uuid(id).to_string(), 4),
            None,
            "a tag beyond the slots"
        );
        // A UUIDv7 whose last bytes merely look like a slot is a client's id.
        let mut id = g.next(1_700_000_000_000);
        id[14..].copy_from_slice(&[0, 3]);
        assert_eq!(id_slot(&JobId::Uuid(id).to_string(), 4), None);
        // One changed byte anywhere the check covers unmasks a forgery.
        let mut id = g.next(1_700_000_000_000);
        tag_id(&mut id, 2);
        for i in (0..10).chain(14..16) {
            let mut bent = id;
            bent[i] ^= 0x01;
            assert_eq!(
                id_slot(&JobId::Uuid(bent).to_string(), 1024),
                None,
                "byte {i}"
            );
        }
    }

    #[test]
    fn rendezvous_moves_only_the_slots_of_a_leaving_broker() {
        let all = ["a:1", "b:1", "c:1"];
        let two = ["a:1", "b:1"];
        for slot in 0..64 {
            let before = preferred_owner(all, slot).unwrap();
            let after = preferred_owner(two, slot).unwrap();
            if before != "c:1" {
                assert_eq!(before, after, "slot {slot} moved although its owner stayed");
            }
        }
        let firsts: std::collections::HashSet<_> =
            (0..64).map(|s| preferred_owner(all, s).unwrap()).collect();
        assert_eq!(firsts.len(), 3, "every broker owns some of 64 slots");
    }
}
