"""A stream's buffer is bounded by count and by bytes: a slow consumer of large events is
cut off before it can hold gigabytes of server memory."""

from __future__ import annotations

from hopper.server.events import DEFAULT_BUFFER_BYTES, Subscriber


def test_the_buffer_overflows_by_bytes_before_count() -> None:
    sub = Subscriber(None, limit=10_000)
    big = b"x" * (1024 * 1024)
    for _ in range(DEFAULT_BUFFER_BYTES // len(big)):
        sub.offer(big)
    assert not sub.overflowed and sub.bytes == DEFAULT_BUFFER_BYTES
    sub.offer(b"one more byte")
    assert sub.overflowed and not sub.buffer and sub.bytes == 0


def test_the_buffer_overflows_by_count() -> None:
    sub = Subscriber(None, limit=3)
    for _ in range(3):
        sub.offer(b"e")
    assert not sub.overflowed
    sub.offer(b"e")
    assert sub.overflowed
