"""A broker's slot servers beyond its first: with several slots, each slot has a server
of its own in this broker (Granian and an engine that stands by for the slot, or owns
it), so a slot's engine work runs on its own core and a slot moves alone. The first slot's
server runs in the broker's main process; the others are child processes started and
stopped with it, and restarted if one ends by itself."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

from hopper.server.config import ServerConfig

# How long stopped slot servers get to close (their engines end their leases) before
# they are killed.
STOP_GRACE_S = 8.0
# A slot server that ended by itself is started again after this, doubled after each
# quick end (one that cannot start must not spin), back to the first after a long life.
RESTART_DELAY_S = 1.0
MAX_RESTART_DELAY_S = 30.0
LONG_LIFE_S = 60.0
# The broker's pid, for its slot servers to check they still have it (`parent_death`).
PARENT_ENV = "HOPPER_BROKER_PID"


class SlotServers:
    def __init__(self, configs: list[ServerConfig], config_env: str) -> None:
        self._configs = configs
        self._env = config_env
        self._stopping = threading.Event()
        self._procs = [self._spawn(c) for c in configs]
        self._started = [time.monotonic() for _ in configs]
        self._delays = [RESTART_DELAY_S for _ in configs]
        self._watcher: threading.Thread | None = None
        if configs:
            self._watcher = threading.Thread(target=self._watch, name="hopper-slot-servers")
            self._watcher.daemon = True
            self._watcher.start()

    def _spawn(self, config: ServerConfig) -> subprocess.Popen[bytes]:
        env = {**os.environ, self._env: json.dumps(config.to_json()), PARENT_ENV: str(os.getpid())}
        return subprocess.Popen([sys.executable, "-m", "hopper.server.slot_server"], env=env)

    def _watch(self) -> None:
        while not self._stopping.wait(0.5):
            for i, proc in enumerate(self._procs):
                if proc.poll() is None or self._stopping.is_set():
                    continue
                lived = time.monotonic() - self._started[i]
                delay = RESTART_DELAY_S if lived >= LONG_LIFE_S else self._delays[i]
                self._delays[i] = min(delay * 2, MAX_RESTART_DELAY_S)
                print(
                    f"[WARNING] hopper: the server of slot {self._configs[i].slot} ended "
                    f"(status {proc.returncode}); starting it again in {delay:g} s",
                    file=sys.stderr,
                    flush=True,
                )
                if not self._stopping.wait(delay):
                    self._procs[i] = self._spawn(self._configs[i])
                    self._started[i] = time.monotonic()

    def stop(self) -> None:
        """SIGTERM to every slot server (a clean stop: each ends its slot's lease), then
        SIGKILL to any still running after the grace."""
        self._stopping.set()
        if self._watcher is not None:
            self._watcher.join()
        for proc in self._procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for proc in self._procs:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
