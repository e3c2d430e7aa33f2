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


def test_a_reserved_port_is_taken_by_no_one_but_a_listener_that_reuses_it() -> None:
    """What a broker relies on for its slot servers' backend ports: while the reservation
    is open, a plain bind, the kernel's own choice and `free_port` never give the port,
    and a server binding it with SO_REUSEADDR (as Granian and the TCP listener do)
    listens and is reached."""
    with ports.reserve_port("127.0.0.1") as held:
        port = held.getsockname()[1]
        with socket.socket() as plain, pytest.raises(OSError):
            plain.bind(("127.0.0.1", port))
        kernel_choices = []
        for _ in range(200):
            with socket.socket() as other:
                other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                other.bind(("127.0.0.1", 0))
                kernel_choices.append(other.getsockname()[1])
        assert port not in kernel_choices
        with socket.socket() as server:
            server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            server.bind(("127.0.0.1", port))
            server.listen()
            with socket.create_connection(("127.0.0.1", port), timeout=5):
                accepted, _ = server.accept()
                accepted.close()
