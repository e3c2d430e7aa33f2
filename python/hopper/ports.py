"""Free ports chosen outside the kernel's ephemeral range.

A port found by binding port 0 comes from the ephemeral range, the same range the
kernel draws the local port of every outgoing connection from. Between the moment it
is found and the moment a server listens on it, any connection made on the machine
(a broker's PostgreSQL session, a relay, a client) can take it as its local port, and
the listen then fails with "address in use". Ports below that range are never handed
out to outgoing connections, so only another listener can take one, and this process
never hands out the same port twice. Where another process may choose ports too (each
broker of a cluster for its slot servers), `reserve_port` holds the port bound until
the listener comes."""

from __future__ import annotations

import random
import socket
from pathlib import Path

# The range Linux uses when /proc does not say.
_DEFAULT_EPHEMERAL_LOW = 32768
# Below this sit the well-known and commonly configured service ports.
_LOWEST = 10000
_given: set[int] = set()


def _ephemeral_low() -> int:
    try:
        low = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0]
        return int(low)
    except (OSError, ValueError, IndexError):
        return _DEFAULT_EPHEMERAL_LOW


def _bindable(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def _kernel_choice(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def reserve_port(host: str) -> socket.socket:
    """A socket bound to a port the kernel chose, not listening. While it stays open, no
    outgoing connection takes that port and no other socket binds it without
    SO_REUSEADDR (so neither another process's `free_port` nor the kernel hands it out),
    while a listener with SO_REUSEADDR (Granian, the TCP protocol's) still binds it. So a
    port chosen in one process and listened on in another, later, or again after a
    restart, cannot be taken in between; no port below the ephemeral range is needed."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, 0))
    except OSError:
        sock.close()
        raise
    return sock


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on at `host` now, not given before by this process, taken
    from below the ephemeral range (or from the kernel when that range starts too low
    to leave room)."""
    high = _ephemeral_low()
    if high - _LOWEST < 1000:
        return _kernel_choice(host)
    for _ in range(200):
        port = random.randrange(_LOWEST, high)
        if port not in _given and _bindable(host, port):
            _given.add(port)
            return port
    return _kernel_choice(host)
