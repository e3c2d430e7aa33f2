"""The soak's server when it runs a cluster (`--start --postgres-url`): three brokers of
one namespace on that database, seen as one server. Clients use the first broker's ports
(its front relays to whichever broker owns the slot); the SIGKILL fault kills the broker
that owns the slot, and the restart brings that broker back as a standby."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

from hopper._engine import cluster_view
from hopper.server_process import ServerProcess

BROKERS = ("a", "b", "c")
OWNER_WAIT_S = 10.0


class SoakCluster:
    def __init__(self, postgres_url: str, args: list[str], log_dir: Path) -> None:
        self.postgres_url = postgres_url
        self.namespace = f"soak-{uuid.uuid4().hex[:8]}"
        env = {"HOPPER_POSTGRES_URL": postgres_url, "HOPPER_NAMESPACE": self.namespace}
        self.brokers = [
            ServerProcess.hopper(
                args, log=log_dir / f"broker-{name}.log", env={**env, "HOPPER_BROKER_ID": name}
            )
            for name in BROKERS
        ]
        self.url = self.brokers[0].url
        self.starts = 0
        self.killed: list[str] = []

    def start(self, timeout: float = 30.0, *, retry: bool = False) -> float:
        """Starts every broker that is not running (all at first; after a kill, the
        killed one), each answering through its front before the next."""
        took = 0.0
        for b in self.brokers:
            if not b.running:
                took += b.start(timeout, retry=retry)
        self.starts += 1
        return took

    def owner(self) -> ServerProcess:
        """The broker the slot row names, once one does."""
        deadline = time.monotonic() + OWNER_WAIT_S
        while True:
            slots = cluster_view(self.postgres_url, self.namespace)["slots"]
            names = [s["owner"] for s in slots if s["owner"]]
            if names or time.monotonic() >= deadline:
                break
            time.sleep(0.05)
        if not names:
            raise RuntimeError(f"no broker owns the slot within {OWNER_WAIT_S:g} s")
        return self.brokers[BROKERS.index(names[0])]

    def kill(self) -> None:
        """SIGKILLs the slot's owner (front, app and engine)."""
        owner = self.owner()
        self.killed.append(BROKERS[self.brokers.index(owner)])
        owner.kill()

    def stop(self) -> None:
        for b in self.brokers:
            b.stop()
