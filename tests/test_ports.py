"""Ports handed to servers before they listen: never one an outgoing connection can take
in the meantime, never the same one twice."""

from __future__ import annotations

import socket

import pytest
from hopper import ports


def test_ports_come_from_below_the_ephemeral_range_and_are_never_repeated() -> None:
    low = ports._ephemeral_low()
    picked = [ports.free_port() for _ in range(300)]
    assert len(set(picked)) == len(picked)
    assert all(ports._LOWEST <= p < low for p in picked)


def test_a_port_someone_listens_on_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        busy = listener.getsockname()[1]
        with socket.socket() as spare:
            spare.bind(("127.0.0.1", 0))
            free = spare.getsockname()[1]
        draws = iter([busy, free])
        monkeypatch.setattr(ports.random, "randrange", lambda lo, hi: next(draws))
        monkeypatch.setattr(ports, "_ephemeral_low", lambda: 65000)
        monkeypatch.setattr(ports, "_given", set())
        assert ports.free_port() == free
