"""Cluster mode (`--postgres-url`): the public ports belong to the broker's front, which
sends every client connection (with several slots: every request) to the owner of its
slot (`hopper._engine.Front`). This broker runs one slot server per slot, each listening
on backend ports at the advertised address, and serving once its engine owns its slot.
See docs/cluster.md."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import os
import signal
import socket
import sys
import time
from collections.abc import Iterator
from types import FrameType

from hopper._engine import Front
from hopper.errors import InvalidInputError
from hopper.ports import reserve_port
from hopper.server.config import ConfigError, ServerConfig, host_port
from hopper.server.parent_death import die_with_parent
from hopper.server.server_engine import ServerEngine

# How often a serving broker checks that it still owns the slot.
SLOT_CHECK_S = 0.1
# Granian stops the whole server when a respawned worker fails again within 5.5 s (a
# crash loop): a worker that lost the slot sooner than this after it started waits out
# the rest (refusing every change meanwhile) before it exits.
LEAST_WORKER_LIFE_S = 6.0
_STARTED = time.monotonic()  # reset by `worker_started` in each worker (forked)
# The worker's exit status when it lost the slot: Granian starts a new worker, which
# waits as a standby.
SLOT_LOST_EXIT = 75


def _advertised_host(config: ServerConfig) -> str:
    if config.advertise_addr:
        return config.advertise_addr
    try:
        if ipaddress.ip_address(config.host).is_unspecified:
            return socket.gethostname()
    except ValueError:
        pass  # a host name
    return config.host


def _backend_port(given: int, slot: int, host: str, held: list[socket.socket]) -> int:
    """Slot k's server listens on the given port + k (one firewall range), else on a port
    this broker reserves for its life (added to `held`): a slot server binds it a moment
    later, in another process, and again after each restart, and nothing else on the
    machine may take it in between."""
    if given:
        return given + slot
    held.append(reserve_port(host))
    return int(held[-1].getsockname()[1])


def start_front(config: ServerConfig) -> tuple[list[ServerConfig], Front, list[socket.socket]]:
    """Binds the public ports to a front and returns the configuration of each of this
    broker's slot servers (its slot, its backend ports, the advertised host and this
    broker's id fixed: the front and the engines must name the same broker), the front,
    and the sockets reserving the backend ports, to keep open while the broker runs."""
    broker, advertised = config.broker_name(), _advertised_host(config)
    held: list[socket.socket] = []
    try:
        servers = [
            dataclasses.replace(
                config,
                port=_backend_port(config.backend_port, slot, config.host, held),
                tcp_port=_backend_port(config.backend_tcp_port, slot, config.host, held)
                if config.tcp_port
                else 0,
                advertise_addr=advertised,
                broker_id=broker,
                slot=slot,
            )
            for slot in range(config.slots)
        ]
        front = Front(
            url=config.postgres_url,
            namespace=config.namespace,
            broker_id=broker,
            host=config.host,
            port=config.port,
            tcp_port=config.tcp_port,
            slots=config.slots,
        )
    except OSError as e:
        raise ConfigError(f"cannot listen on {config.host}: {e.strerror or e}") from None
    except InvalidInputError as e:
        raise ConfigError(str(e)) from None
    tcp = f", TCP protocol on {config.tcp_port}" if config.tcp_port else ""
    backends = ", ".join(host_port(advertised, s.port) for s in servers)
    print(
        f"[INFO] hopper: broker {broker!r} of cluster {config.namespace!r} "
        f"({config.slots} slot{'s' if config.slots > 1 else ''}): clients on "
        f"{host_port(config.host, config.port)}{tcp}, sent to each slot's owner; this "
        f"broker's slot servers on {backends}",
        file=sys.stderr,
        flush=True,
    )
    return servers, front, held


def worker_started() -> None:
    """In a new worker: its start time (Granian forks workers, so the module's import
    time is its parent's), and SIGTERM once its parent (Granian's main process) is gone,
    so an engine owning a slot never outlives its broker."""
    global _STARTED
    _STARTED = time.monotonic()
    die_with_parent()


async def watch_slot(engine: ServerEngine) -> None:
    """Exits the worker once its engine can no longer serve the slot (fenced, its
    database session gone): Granian starts a fresh worker, which recovers as a standby
    and takes the slot again when it can. Crash-only: nothing of a lost slot is
    worth keeping, and every acknowledged change is already in PostgreSQL.

    Also hands the slot over when another broker now ranks first for it (it joined, or
    came back): the engine closes, which ends its lease at once, and the worker exits
    to stand by, so that broker takes the slot without waiting for a lease to run out."""
    while True:
        await asyncio.sleep(SLOT_CHECK_S)
        # Off the loop: the check pings the database session.
        reason = await asyncio.to_thread(engine.slot_lost)
        if reason is not None:
            print(f"[WARNING] hopper: lost the cluster slot: {reason}", file=sys.stderr, flush=True)
            await asyncio.sleep(max(0.0, _STARTED + LEAST_WORKER_LIFE_S - time.monotonic()))
            os._exit(SLOT_LOST_EXIT)
        successor = engine.slot_handoff()
        if successor is not None and time.monotonic() - _STARTED >= LEAST_WORKER_LIFE_S:
            print(
                f"[INFO] hopper: handing the cluster slot to broker {successor!r}, "
                "which ranks first for it",
                file=sys.stderr,
                flush=True,
            )
            await asyncio.to_thread(engine.close)
            os._exit(SLOT_LOST_EXIT)


@contextlib.contextmanager
def standby_signals() -> Iterator[None]:
    """While a worker waits for the slot (inside Granian's app factory, before the app's
    own handlers exist): SIGUSR1 (the main process's "end your streams") is ignored, and
    SIGTERM ends the wait, so stopping a standby broker is a clean exit. The handlers
    before are restored once the slot is owned."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGUSR1, signal.SIGTERM)}

    def stop_waiting(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, stop_waiting)
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
