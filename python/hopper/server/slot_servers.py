"""A broker's slot servers beyond its first: with several slots, each slot has a server
of its own in this broker (Granian and an engine that stands by for the slot, or owns
it), so a slot's engine work runs on its own core and a slot moves alone. The first slot's
server runs in the broker's main process; the others are child processes started and
stopped with it, and restarted if one ends by itself."""

from __future__ import annotations

import ctypes
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
# A slot server that ended by itself is started again after this.
RESTART_DELAY_S = 1.0
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM it when the broker's process dies, so no slot
    server outlives its broker (a killed broker's slots must be taken over)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class SlotServers:
    def __init__(self, configs: list[ServerConfig], config_env: str) -> None:
        self._configs = configs
        self._env = config_env
        self._stopping = threading.Event()
        self._procs = [self._spawn(c) for c in configs]
        self._watcher: threading.Thread | None = None
        if configs:
            # PDEATHSIG follows the thread that forked: the watcher, which starts the
            # restarted ones, runs until `stop`.
            self._watcher = threading.Thread(target=self._watch, name="hopper-slot-servers")
            self._watcher.daemon = True
            self._watcher.start()

    def _spawn(self, config: ServerConfig) -> subprocess.Popen[bytes]:
        env = {**os.environ, self._env: json.dumps(config.to_json())}
        return subprocess.Popen(
            [sys.executable, "-m", "hopper.server.slot_server"],
            env=env,
            preexec_fn=_die_with_parent,
        )

    def _watch(self) -> None:
        while not self._stopping.wait(0.5):
            for i, proc in enumerate(self._procs):
                if proc.poll() is None or self._stopping.is_set():
                    continue
                print(
                    f"[WARNING] hopper: the server of slot {self._configs[i].slot} ended "
                    f"(status {proc.returncode}); starting it again",
                    file=sys.stderr,
                    flush=True,
                )
                time.sleep(RESTART_DELAY_S)
                if not self._stopping.is_set():
                    self._procs[i] = self._spawn(self._configs[i])

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
