"""Cluster mode (`--postgres-url`): the public ports belong to the broker's front, which
relays every client connection to the slot owner's backends (`hopper._engine.Front`);
this broker's own app listens on backend ports at the advertised address, and serves
once its engine owns the slot. See docs/cluster.md."""

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
from hopper.ports import free_port
from hopper.server.config import ConfigError, ServerConfig, host_port
from hopper.server.server_engine import ServerEngine

# How often a serving broker checks that it still owns the slot.
SLOT_CHECK_S = 0.1
# Granian stops the whole server when a respawned worker fails again within 5.5 s (a
# crash loop): a worker that lost the slot sooner than this after it started waits out
# the rest (refusing every change meanwhile) before it exits.
LEAST_WORKER_LIFE_S = 6.0
_STARTED = time.monotonic()
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


def start_front(config: ServerConfig) -> tuple[ServerConfig, Front]:
    """Binds the public ports to a front and returns the configuration the worker
    runs with: its backend ports, the advertised host and this broker's id fixed (the
    front and the engine must name the same broker)."""
    backend = config.backend_port or free_port(config.host)
    backend_tcp = (config.backend_tcp_port or free_port(config.host)) if config.tcp_port else 0
    worker = dataclasses.replace(
        config,
        port=backend,
        tcp_port=backend_tcp,
        advertise_addr=_advertised_host(config),
        broker_id=config.broker_name(),
    )
    try:
        front = Front(
            url=config.postgres_url,
            namespace=config.namespace,
            broker_id=worker.broker_id,
            host=config.host,
            port=config.port,
            tcp_port=config.tcp_port,
        )
    except OSError as e:
        raise ConfigError(f"cannot listen on {config.host}: {e.strerror or e}") from None
    tcp = f", TCP protocol on {config.tcp_port}" if config.tcp_port else ""
    print(
        f"[INFO] hopper: broker {worker.broker_id!r} of cluster {config.namespace!r}: "
        f"clients on {host_port(config.host, config.port)}{tcp}, relayed to the slot's "
        f"owner; this broker's backends on {host_port(worker.advertise_addr, backend)}",
        file=sys.stderr,
        flush=True,
    )
    return worker, front


async def watch_slot(engine: ServerEngine) -> None:
    """Exits the worker once its engine can no longer serve the slot (fenced, its
    database session gone): Granian starts a fresh worker, which recovers as a standby
    and takes the slot again when it can. Crash-only: nothing of a lost slot is
    worth keeping, and every acknowledged change is already in PostgreSQL."""
    while True:
        await asyncio.sleep(SLOT_CHECK_S)
        # Off the loop: the check pings the database session.
        reason = await asyncio.to_thread(engine.slot_lost)
        if reason is not None:
            print(f"[WARNING] hopper: lost the cluster slot: {reason}", file=sys.stderr, flush=True)
            await asyncio.sleep(max(0.0, _STARTED + LEAST_WORKER_LIFE_S - time.monotonic()))
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
