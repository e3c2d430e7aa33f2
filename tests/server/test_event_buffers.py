"""The outbox rules of `hopper.server.events`, on an injected clock: a consumer that reads
holds producers back instead of being dropped; one that has stopped reading is dropped
once over the hard bound; nobody grows past the ceiling."""

from __future__ import annotations

import asyncio

from hopper.server.events import (
    CEILING_BYTES,
    HARD_BYTES,
    SOFT_BYTES,
    STALL_S,
    FlowGate,
    Subscriber,
    item_size,
)

MB = b"x" * (1024 * 1024)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make() -> tuple[Clock, FlowGate, Subscriber, list[str]]:
    clock = Clock()
    gate = FlowGate(clock)
    sub = Subscriber(gate, None)
    drops: list[str] = []
    sub.on_drop = lambda: drops.append("dropped")
    return clock, gate, sub, drops


def fill(sub: Subscriber, n_bytes: int) -> None:
    for _ in range(n_bytes // len(MB)):
        sub.offer(MB)


def test_a_consumer_over_the_soft_bound_holds_producers_until_it_catches_up() -> None:
    clock, gate, sub, drops = make()
    fill(sub, 2 * SOFT_BYTES)
    assert sub in gate.heavy and not drops
    batch = asyncio.run(sub.take(0))
    clock.now += 0.1
    for item, _ in batch:
        sub.sent(item_size(item))
    assert sub.bytes == 0 and sub not in gate.heavy


def test_a_consumer_that_reads_is_not_dropped_past_the_hard_bound() -> None:
    clock, _gate, sub, drops = make()
    for _ in range(HARD_BYTES // len(MB) + 8):
        clock.now += STALL_S / 2  # one item taken every half stall period
        sub.offer(MB)
        sub.sent(0)
    assert sub.bytes > HARD_BYTES and not drops and not sub.dropped


def test_a_consumer_that_stopped_reading_is_dropped_past_the_hard_bound() -> None:
    clock, gate, sub, drops = make()
    fill(sub, HARD_BYTES)
    assert not drops  # at the bound, not past it
    clock.now += STALL_S + 0.01
    sub.offer(MB)
    assert drops == ["dropped"] and sub.dropped
    assert sub.bytes == 0 and not sub.buffer and sub not in gate.heavy
    sub.offer(MB)
    assert sub.bytes == 0  # nothing more is queued for a dropped consumer


def test_a_stalled_consumer_under_the_hard_bound_is_kept() -> None:
    clock, _gate, sub, drops = make()
    fill(sub, 4 * SOFT_BYTES)
    clock.now += 10 * STALL_S
    sub.offer(MB)
    assert not drops and sub.stalled(clock.now)


def test_nobody_grows_past_the_ceiling() -> None:
    clock, _gate, sub, drops = make()
    for _ in range(CEILING_BYTES // len(MB) + 1):
        clock.now += 0.01
        sub.offer(MB)
        sub.sent(0)
    assert drops == ["dropped"]


def test_the_gate_does_not_wait_for_a_consumer_that_stopped_reading() -> None:
    clock, gate, sub, drops = make()
    fill(sub, 2 * SOFT_BYTES)
    clock.now += STALL_S + 0.01
    asyncio.run(asyncio.wait_for(gate.wait(), 1.0))  # returns at once
    assert not drops  # under the hard bound: kept, only no longer waited for


def test_the_gate_drops_a_stalled_consumer_past_the_hard_bound() -> None:
    clock, gate, sub, drops = make()
    fill(sub, HARD_BYTES + len(MB))  # reading when it passed the bound: kept
    assert not drops
    clock.now += STALL_S + 0.01
    asyncio.run(asyncio.wait_for(gate.wait(), 1.0))
    assert drops == ["dropped"] and not gate.heavy


def test_the_gate_waits_for_a_consumer_that_reads() -> None:
    _clock, gate, sub, _drops = make()
    fill(sub, 2 * SOFT_BYTES)

    async def main() -> bool:
        waiter = asyncio.ensure_future(gate.wait())
        await asyncio.sleep(0.05)
        held = not waiter.done()
        batch = await sub.take(0)
        for item, _ in batch:
            sub.sent(item_size(item))
        await asyncio.wait_for(waiter, 1.0)
        return held

    assert asyncio.run(main())
