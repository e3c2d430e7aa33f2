"""`hopper serve` as a command: its help, bad settings, and a busy port."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from urllib.parse import urlparse

import hopper
import pytest
from hopper.ports import free_port
from hopper.server import config
from support import Server

SERVE = [sys.executable, "-m", "hopper", "serve"]


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SERVE, *args], capture_output=True, text=True, timeout=30, env=env, check=False
    )


def test_help_names_every_environment_variable() -> None:
    out = run("--help").stdout
    for var in (
        "HTTP_PORT",
        "HOST",
        "AUTH_TOKENS",
        "CORS_ALLOW_ORIGIN",
        "RATE_LIMIT_WINDOW_MS",
        "RATE_LIMIT_MAX_REQUESTS",
        "RATE_LIMIT_CLEANUP_MS",
        "METRICS_AUTH",
        "HOPPER_MAX_BODY_BYTES",
        "TCP_PORT",
        "TCP_IDLE_TIMEOUT_MS",
        "TCP_MAX_WRITE_QUEUE_BYTES",
    ):
        assert var in out, var


def test_bad_settings_exit_2_with_a_message() -> None:
    result = run("--port", "99999")
    assert result.returncode == 2
    assert "port must be 0-65535" in result.stderr
    result = run("--rate-limit-max-requests", "lots")
    assert result.returncode == 2
    assert "rate_limit_max_requests" in result.stderr


def test_a_busy_port_is_refused_instead_of_shared(server: Server) -> None:
    """Granian listens with SO_REUSEPORT: without the check a second server would start
    and split the traffic between two engines."""
    port = urlparse(server.url).port
    assert port is not None
    result = run("--host", "127.0.0.1", "--port", str(port))
    assert result.returncode == 2
    assert "Address already in use" in result.stderr
    assert server.client.get("/health").status_code == 200


def test_a_busy_tcp_port_is_a_start_up_error(server: Server) -> None:
    """The bunqueue TCP port is checked like the HTTP one: a second server with the first
    one's TCP port exits with the reason, and the first keeps serving."""
    http_port = free_port()
    result = run(
        "--host", "127.0.0.1", "--port", str(http_port), "--tcp-port", str(server.tcp_port)
    )
    assert result.returncode == 2
    assert f"cannot listen on 127.0.0.1:{server.tcp_port}" in result.stderr
    assert "Address already in use" in result.stderr
    with socket.create_connection(("127.0.0.1", server.tcp_port), timeout=5):
        pass


def test_bunqueue_environment_variables_map_onto_settings() -> None:
    loaded = config.load(
        env={
            "BUNQUEUE_DATA_PATH": "/srv/queue.db",
            "BUNQUEUE_MAX_COMPLETED_JOBS": "7",
            "COMPLETED_RETENTION_MS": "5000",
            "TCP_PORT": "7000",
        }
    )
    assert loaded.data_dir == "/srv/queue.db"
    assert (loaded.retention_count, loaded.retention_age_ms, loaded.tcp_port) == (7, 5000, 7000)


def test_tls_settings_are_refused_not_ignored() -> None:
    env = {**config.clean_environment(), "TLS_CERT_FILE": "cert.pem"}
    result = run("--memory", env=env)
    assert result.returncode == 2
    assert result.stderr.startswith("hopper serve: TLS is not supported yet")


def test_engine_options_are_checked_by_the_engine_and_named() -> None:
    """One check for the embedded engine and the server alike; nothing clamped."""
    for env, message in (
        ({"HOPPER_MAX_STALLS": "0"}, "max_stalls must be at least 1"),
        ({"HOPPER_STALL_INTERVAL_MS": "0"}, "stall_interval_ms must be at least 1"),
        ({"HOPPER_FSYNC_INTERVAL_MS": "0"}, "fsync_interval_ms must be at least 1"),
        ({"HOPPER_SNAPSHOT_BYTES": "0"}, "snapshot_bytes must be at least 1"),
        ({"HOPPER_POSTGRES_URL": "postgresql://x", "HOPPER_FSYNC": "never"}, "fsync never"),
        ({"HOPPER_POSTGRES_URL": "postgresql://x", "HOPPER_MEMORY": "1"}, "exclude each other"),
        ({"HOPPER_SLOTS": "4", "HOPPER_MEMORY": "1"}, "--slots needs --postgres-url"),
        ({"HOPPER_POSTGRES_URL": "postgresql://x", "HOPPER_SLOTS": "0"}, "slots must be between"),
        ({"HOPPER_POSTGRES_URL": "postgresql://x", "HOPPER_SLOTS": "1025"}, "slots must be"),
        (
            {"HOPPER_POSTGRES_URL": "postgresql://x", "HOPPER_SLOTS": "2", "HOPPER_SLOT": "2"},
            "slot below slots",
        ),
    ):
        with pytest.raises(config.ConfigError, match=message):
            config.load(env=env)
    with pytest.raises(hopper.InvalidInputError, match="stall_interval_ms must be at least 1"):
        hopper.Engine(stall_interval_ms=0)


def test_every_engine_option_of_the_server_reaches_the_engine() -> None:
    loaded = config.load(env={"HOPPER_MEMORY": "1", "BUNQUEUE_MAX_COMPLETED_JOBS": "5"})
    options = loaded.engine_options()
    assert options["retention_count"] == 5 and options["data_dir"] is None
    with hopper.Engine(**options) as engine:
        assert engine.counts("q")["waiting"] == 0


def test_the_worker_hand_off_rebuilds_the_same_configuration() -> None:
    loaded = config.load(env={"AUTH_TOKENS": "a,b", "HOPPER_MEMORY": "1"})
    assert config.ServerConfig.from_json(json.loads(json.dumps(loaded.to_json()))) == loaded


def test_fsync_help_lists_and_explains_its_choices() -> None:
    out = " ".join(run("--help").stdout.split())  # argparse wraps the help text
    assert "--fsync {always,interval,never}" in out
    for meaning in (
        "always (before each answer)",
        "interval (at least every --fsync-interval-ms)",
        "never (left to the OS)",
    ):
        assert meaning in out


def test_demo_says_why_it_keeps_fewer_completed_jobs_than_it_worked(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from hopper.cli import DEMO_RETENTION, main

    assert main(["demo", "--jobs", str(DEMO_RETENTION + 2_000)]) == 0
    out = capsys.readouterr().out
    assert f"'completed': {DEMO_RETENTION}" in out
    assert (
        f"completed: {DEMO_RETENTION:,} of the {DEMO_RETENTION + 2_000:,} worked are kept: "
        f"retention keeps the newest {DEMO_RETENTION:,} completed jobs per queue"
    ) in out
    assert main(["demo", "--jobs", "500"]) == 0  # all kept: nothing to explain
    assert "retention" not in capsys.readouterr().out
