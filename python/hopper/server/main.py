"""`hopper serve`: Granian (RSGI or ASGI, uvloop, one worker: the engine owns its data dir) running
the app. Flags are resolved once here and handed to the worker process as JSON in the
environment, so the worker builds exactly the configuration that was validated."""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import signal
import socket
import sys
import threading

from hopper.errors import HopperError
from hopper.server.app import MAIN_PID_ENV, HopperApp
from hopper.server.asgi import AsgiInterface
from hopper.server.cluster import standby_signals, start_front, worker_started
from hopper.server.config import ConfigError, ServerConfig, load
from hopper.server.rsgi import RsgiInterface
from hopper.server.slot_servers import SlotServers

CONFIG_ENV = "HOPPER_RESOLVED_CONFIG"
# On SIGTERM the app ends its SSE streams, WebSockets and long polls itself (see
# state.ServerState.begin_shutdown) and Granian waits for the rest of the in-flight requests.
# This grace is the backstop if a request still hangs: the worker is then killed.
SHUTDOWN_GRACE_S = 5
# How long the main process gives workers to close streams and sockets before Granian's
# shutdown begins (the workers bound their own wait below this).
STREAMS_GRACE_S = 1.0


def app_from_env() -> AsgiInterface | RsgiInterface:
    """Granian's factory target: the app's entry point for the configured interface
    itself, which spares every request a delegating call through `HopperApp`."""
    raw = os.environ.get(CONFIG_ENV)
    try:
        config = load() if raw is None else ServerConfig.from_json(json.loads(raw))
        if config.postgres_url:
            worker_started()
        waits = standby_signals() if config.postgres_url else contextlib.nullcontext()
        with waits:
            app = HopperApp(config)
        return app.rsgi if app.config.interface == "rsgi" else app.asgi
    except HopperError as e:
        # Recovery refused the data directory (damage, lock, I/O): say why and exit;
        # Granian then stops with an error status instead of serving without a worker.
        print(f"hopper: {e}", file=sys.stderr, flush=True)
        os._exit(3)


def check_data_dir_free(config: ServerConfig) -> None:
    """The engine (in the worker process) locks its data directory; probing the lock here
    first turns a second server on the same directory into a clear error before Granian
    starts anything."""
    if config.memory:
        return
    path = os.path.join(config.data_dir, "LOCK")
    try:
        os.makedirs(config.data_dir, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise ConfigError(f"cannot use data directory {config.data_dir}: {e.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.read(fd, 32).decode(errors="replace").strip()
        who = f" (pid {holder})" if holder else ""
        raise ConfigError(
            f"data directory {config.data_dir} is in use by another hopper process{who}"
        ) from None
    finally:
        os.close(fd)  # closing releases the probe's lock


def check_port_free(host: str, port: int) -> None:
    """Granian listens with SO_REUSEPORT, so a second server on a busy port would start
    and silently split the traffic between two engines. Binding once without it first
    turns that into a clear error."""
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as e:
            raise ConfigError(f"cannot listen on {host}:{port}: {e.strerror}") from None


def _stop_before_serving(signum: int, frame: object) -> None:
    raise SystemExit(0)


def serve(args: argparse.Namespace) -> int:
    """`hopper serve`: one server on its data directory, or one broker of a cluster (a
    front on the public ports and a slot server per slot, the first in this process)."""
    # Until Granian installs its own handlers, SIGTERM is a clean stop: a broker's front
    # answers (through another broker) before this process's server has started.
    signal.signal(signal.SIGTERM, _stop_before_serving)
    config = load(args)
    if not config.postgres_url:
        check_data_dir_free(config)
        return run_server(config)
    servers, front, reserved = start_front(config)
    others = SlotServers(servers[1:], CONFIG_ENV)
    try:
        return run_server(servers[0], cluster=True)
    finally:
        others.stop()
        front.stop()
        for sock in reserved:
            sock.close()


def run_server(config: ServerConfig, *, cluster: bool = False) -> int:
    """Granian serving the app with `config` until stopped. In a cluster (`cluster`) the
    app is a slot server: its worker exits when it loses its slot, and Granian starts a
    new one, which stands by."""
    from granian.constants import Interfaces, Loops
    from granian.server import MPServer  # what `granian.Granian` is on a GIL build

    class Server(MPServer):
        """Granian's interrupt handler sets a threading.Event, which takes a lock inside
        the signal handler: a second SIGTERM landing while the first holds that lock
        deadlocks the main process (seen here once). A nested call now returns at once;
        the outer one finishes waking the main loop."""

        _interrupting = False

        def signal_handler_interrupt(self, *args: object, **kwargs: object) -> None:
            self.interrupt_signal = True
            # A signal to the whole process group (Ctrl-C, `systemctl stop`) reaches the
            # workers too, which then stop by themselves: from now on that is part of the
            # shutdown, not an unexpected exit that Granian would end with status 1.
            for wrk in self.wrks:
                wrk.interrupt_by_parent = True
            if self._interrupting:
                return
            self._interrupting = True
            # First ask the workers to end their streams and sockets (SIGUSR1, see
            # HopperApp), then, a moment later, start Granian's own shutdown: it stops the
            # workers' runtimes at once, which can cut a WebSocket close frame in flight.
            for wrk in self.wrks:
                pid = getattr(getattr(wrk, "inner", None), "pid", None)
                if pid:
                    with contextlib.suppress(OSError):
                        os.kill(pid, signal.SIGUSR1)
            timer = threading.Timer(STREAMS_GRACE_S, self.main_loop_interrupt.set)
            timer.daemon = True
            timer.start()

    check_port_free(config.host, config.port)
    if config.tcp_port:
        check_port_free(config.host, config.tcp_port)
    os.environ[CONFIG_ENV] = json.dumps(config.to_json())
    os.environ[MAIN_PID_ENV] = str(os.getpid())
    server = Server(
        "hopper.server.main:app_from_env",
        factory=True,
        address=config.host,
        port=config.port,
        interface=Interfaces.RSGI if config.interface == "rsgi" else Interfaces.ASGI,
        loop=Loops.uvloop,
        workers=1,
        # One runtime thread: WebSocket sends started together run in the order started
        # (rsgi.RsgiSocket.send_all relies on it).
        runtime_threads=1,
        websockets=True,
        log_access=False,
        workers_kill_timeout=SHUTDOWN_GRACE_S,
        respawn_failed_workers=cluster,
    )
    server.serve()
    return 0
