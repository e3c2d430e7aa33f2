"""Running the client commands as a user would: `python -m hopper <args>` in a child
process, with the server's TCP port, a clean environment and a deadline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

CLI_TIMEOUT_S = 60.0


@dataclass
class Run:
    """One finished command: exit status and both streams."""

    code: int
    out: str
    err: str

    @property
    def json(self) -> Any:
        """stdout parsed as JSON (for `--json` runs that succeeded)."""
        return json.loads(self.out)

    @property
    def err_json(self) -> Any:
        return json.loads(self.err)


def _environment(extra: dict[str, str]) -> dict[str, str]:
    """This environment without the variables the CLI reads (no colour either)."""
    skip = ("HOST", "TCP_PORT", "BQ_", "BUNQUEUE_", "NO_COLOR")
    env = {k: v for k, v in os.environ.items() if not k.startswith(skip)}
    return {**env, **extra}


@dataclass
class Cli:
    port: int

    def __call__(self, *args: str, env: dict[str, str] | None = None, port: bool = True) -> Run:
        """`hopper -H 127.0.0.1 -p <port> <args>` (without -H/-p when `port` is False)."""
        target = ["-H", "127.0.0.1", "-p", str(self.port)] if port else []
        proc = subprocess.run(
            [sys.executable, "-m", "hopper", *target, *args],
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT_S,
            env=_environment(env or {}),
            check=False,
        )
        return Run(proc.returncode, proc.stdout, proc.stderr)

    def ok(self, *args: str, **kw: Any) -> Run:
        run = self(*args, **kw)
        assert run.code == 0, run
        return run

    def push(self, queue: str, data: str = '{"n":1}', *opts: str) -> str:
        """Pushes a job; its id."""
        return str(self.ok("push", queue, data, *opts, "--json").json["id"])

    def pull(self, queue: str) -> dict[str, Any]:
        job = self.ok("pull", queue, "--json").json["job"]
        assert job is not None
        return dict(job)
