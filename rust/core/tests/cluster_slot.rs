//! An engine serving one slot of a cluster: it holds only its slot's queues (so a
//! request that bypassed the fronts, or a flow spanning slots, is refused with a clear
//! error instead of creating a queue no front would route to), and its ids carry the
//! slot, so fronts route them without a lookup.

mod common;
use common::H;

use hopper_core::cluster_slots::{id_slot, queue_slot};
use hopper_core::{EngineConfig, ErrorKind};

const SLOTS: u32 = 4;

fn queue_in(slot: u32) -> String {
    (0..)
        .map(|i| format!("q{i}"))
        .find(|q| queue_slot(q, SLOTS) == slot)
        .expect("some name lands in every slot")
}

#[test]
fn an_engine_of_one_slot_keeps_its_queues_and_tags_its_ids() {
    let mut h = H::with(EngineConfig {
        cluster_slot: Some((2, SLOTS)),
        ..Default::default()
    });
    let mine = queue_in(2);
    let id = h.add(&mine, r#"{"data":1}"#);
    assert_eq!(id_slot(&id, SLOTS), Some(2), "{id}");
    let (pulled, _) = h.pull(&mine).unwrap();
    assert_eq!(pulled, id);

    let other = queue_in(3);
    let e = h.try_push(&other, r#"{"data":1}"#).unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidInput);
    assert!(e.message.contains("belongs to slot 3"), "{}", e.message);
    assert!(h.pull(&other).is_none());
}

#[test]
fn a_chosen_id_that_reads_as_another_slots_id_is_refused() {
    let mut h = H::with(EngineConfig {
        cluster_slot: Some((2, SLOTS)),
        ..Default::default()
    });
    let mine = queue_in(2);
    // An id slot 3's engine generated.
    let other = H::with(EngineConfig {
        cluster_slot: Some((3, SLOTS)),
        ..Default::default()
    })
    .add(&queue_in(3), r#"{"data":1}"#);
    let e = h
        .try_push(&mine, &format!(r#"{{"data":1,"jobId":"{other}"}}"#))
        .unwrap_err();
    assert!(e.message.contains("slot 3"), "{}", e.message);
    // A client's UUIDv7 whose last bytes happen to read 0003 is not a tagged id.
    let client = "0192f5a0-7b3c-7def-8a12-345678990003";
    h.push(&mine, &format!(r#"{{"data":1,"jobId":"{client}"}}"#));
    h.push(&mine, r#"{"data":1,"jobId":"order-1"}"#);
}

#[test]
fn one_slot_or_none_holds_every_queue() {
    let mut h = H::new();
    for slot in 0..SLOTS {
        h.add(&queue_in(slot), r#"{"data":1}"#);
    }
}

#[test]
fn a_chosen_id_held_here_is_a_duplicate_even_for_a_queue_of_another_slot() {
    let mut h = H::with(EngineConfig {
        cluster_slot: Some((2, SLOTS)),
        ..Default::default()
    });
    let mine = queue_in(2);
    let first = h.push(&mine, r#"{"data":1,"jobId":"order-7"}"#);
    // What a front sends when the id registry names this slot for `order-7`.
    let again = h
        .try_push(&queue_in(3), r#"{"data":2,"jobId":"order-7"}"#)
        .unwrap();
    assert_eq!(again.id, first.id);
    assert!(again.duplicate);
    // A new id for that queue is still refused: the queue is not this slot's.
    let e = h
        .try_push(&queue_in(3), r#"{"data":2,"jobId":"order-8"}"#)
        .unwrap_err();
    assert!(e.message.contains("belongs to slot 3"), "{}", e.message);
}
