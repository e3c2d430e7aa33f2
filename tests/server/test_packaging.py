"""What a user installs, installed the way they get it: the checkout and the wheel, each
with a plain `pip install` (no extras) into a fresh virtualenv, and the single-file binary
run with a scrubbed environment. The rest of the suite runs from `.[test]`, which would
hide a base install that cannot start (an optional dependency imported too early)."""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest
from support import SCRUBBED_PATH, Server, expect_ok, get_job, pull, push, run_server

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "packaging" / "build.py"  # what `make wheel` and `make binary` run
SUBCOMMANDS = ("serve", "start", "demo", "bench", "soak")
EXTRA_HINT = "pip install 'hopper[tools]'"


def sh(*cmd: str | Path, env: dict[str, str] | None = None, timeout: float = 600) -> str:
    """Runs a command; fails the test with its output when it fails."""
    result = subprocess.run(
        [str(c) for c in cmd], capture_output=True, text=True, env=env, timeout=timeout, check=False
    )
    assert result.returncode == 0, f"{cmd} exited {result.returncode}:\n{result.stderr[-3000:]}"
    return result.stdout


def fresh_venv(path: Path) -> Path:
    venv.create(path, with_pip=True)
    return path / "bin"


def without_rust(bin_dir: Path) -> dict[str, str]:
    """This environment with PATH cut to the virtualenv and the system directories: no
    cargo, rustc or maturin reachable, as on a machine without Rust."""
    return {**os.environ, "PATH": f"{bin_dir}:{SCRUBBED_PATH}"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel `make wheel` builds (abi3, release)."""
    out = tmp_path_factory.mktemp("wheel")
    sh(sys.executable, BUILD, "wheel", "--out", out)
    (built,) = out.glob("hopper-*.whl")
    assert "-abi3-" in built.name, built.name
    return built


@pytest.fixture(scope="module")
def wheel_bin(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv with the wheel installed, no extras, without Rust on PATH."""
    bin_dir = fresh_venv(tmp_path_factory.mktemp("wheel-venv") / "v")
    sh(bin_dir / "pip", "install", "-q", wheel, env=without_rust(bin_dir))
    return bin_dir


@pytest.fixture(scope="module")
def checkout_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv with `pip install <checkout>`, no extras (builds the engine)."""
    bin_dir = fresh_venv(tmp_path_factory.mktemp("checkout-venv") / "v")
    sh(bin_dir / "pip", "install", "-q", ROOT)
    return bin_dir


@pytest.fixture(scope="module")
def binary(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`make binary`'s executable, frozen from the same wheel."""
    out = tmp_path_factory.mktemp("binary")
    sh(sys.executable, BUILD, "binary", "--out", out, "--wheel", wheel)
    exe = out / "hopper"
    assert exe.is_file() and os.access(exe, os.X_OK)
    return exe


def check_commands(hopper: Path, env: dict[str, str]) -> None:
    """Every subcommand's --help works; the extra-only commands, run, name their extra."""
    assert "serve" in sh(hopper, "--help", env=env)
    for command in SUBCOMMANDS:
        assert "usage: hopper" in sh(hopper, command, "--help", env=env), command
    for command in ("bench", "soak"):
        result = subprocess.run(
            [str(hopper), command, "--url", "http://127.0.0.1:9"],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )
        assert result.returncode == 2, (command, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and EXTRA_HINT in lines[0], (command, result.stderr)


def check_serves(server: Server) -> None:
    """A job goes through push, pull and ack; the dashboard page and its assets load."""
    client = server.client
    job_id = push(client, "installed", data={"n": 1})
    job, token = pull(client, "installed")
    assert job["id"] == job_id
    expect_ok(client.post(f"/jobs/{job_id}/ack", json={"result": {"ok": True}, "token": token}))
    assert get_job(client, job_id)["state"] == "completed"
    for path in ("/", "/assets/app.js", "/assets/app.css"):
        assert client.get(path).status_code == 200, path


def test_the_wheel_is_abi3_and_installs_without_rust(wheel_bin: Path, tmp_path: Path) -> None:
    env = without_rust(wheel_bin)
    check_commands(wheel_bin / "hopper", env)
    freeze = sh(wheel_bin / "pip", "freeze", env=env).lower().splitlines()
    installed = {line.split("==")[0].split(" @ ")[0] for line in freeze}
    assert not installed & {"hdrhistogram", "matplotlib", "hypothesis", "pytest"}, installed
    with run_server(tmp_path, executable=str(wheel_bin / "hopper")) as server:
        check_serves(server)


def test_a_plain_install_of_the_checkout_serves(checkout_bin: Path, tmp_path: Path) -> None:
    check_commands(checkout_bin / "hopper", without_rust(checkout_bin))
    with run_server(tmp_path, executable=str(checkout_bin / "hopper")) as server:
        check_serves(server)


def test_start_takes_bunqueue_start_flags(wheel_bin: Path, tmp_path: Path) -> None:
    """`hopper start` with the reference server's own flags: the ports, the data path
    and the retention settings land where hopper keeps them."""
    hopper = str(wheel_bin / "hopper")
    env = {"PATH": SCRUBBED_PATH}
    result = subprocess.run(
        [hopper, "start", "--tls-cert", "c.pem", "--tls-key", "k.pem"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "TLS is not supported" in result.stderr
    data = tmp_path / "queue.db"
    flags = [
        "--tcp-port",
        "7000",
        "--data-path",
        str(data),
        "--max-completed-jobs",
        "2",
        "--completed-retention-ms",
        "3600000",
        "--auth-tokens",
        "secret",
    ]
    with run_server(tmp_path, executable=hopper, command="start", args=flags) as server:
        client = server.client
        client.headers["authorization"] = "Bearer secret"
        for n in range(4):
            push(client, "kept", data={"n": n})
        for _ in range(4):
            job, token = pull(client, "kept")
            expect_ok(client.post(f"/jobs/{job['id']}/ack", json={"token": token}))
        assert expect_ok(client.get("/health"))["queues"]["completed"] == 2
        client.headers.pop("authorization")
        assert client.post("/queues/kept/jobs", json={"data": {}}).status_code == 401
    assert (data / "LOCK").exists(), "the data path is the data directory"


def test_the_binary_runs_the_contract_smoke_suite(binary: Path, tmp_path: Path) -> None:
    """dist/hopper, with nothing but /usr/bin and /bin on PATH and no virtualenv, runs
    the smoke subset of the contract suites (HTTP jobs, WebSocket, SSE, health, the
    dashboard in Chromium)."""
    env = {"PATH": SCRUBBED_PATH}
    check_commands(binary, env)
    with run_server(tmp_path, executable=str(binary)) as server:
        check_serves(server)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-m",
            "smoke",
            "-p",
            "no:cacheprovider",
            str(ROOT / "tests" / "server"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=ROOT,
        env={**os.environ, "HOPPER_TEST_SERVER": str(binary)},
    )
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in summary and "skipped" not in summary, summary
