"""Commands whose dependencies are an optional extra (`hopper[tools]`): a base install
must still start, show every `--help` and serve, so these import their dependencies
only when run, and say which extra to install when one is missing."""

from __future__ import annotations

import sys

# Top-level modules of the `tools` extra (pyproject.toml).
TOOLS_MODULES = frozenset({"hdrh", "matplotlib", "hypothesis"})


def missing_extra(command: str, error: ImportError) -> int:
    """Prints one line naming the extra and returns exit status 2; re-raises an
    ImportError that is not about a module of the extra (a bug, not a missing install)."""
    top = (error.name or "").split(".")[0]
    if top not in TOOLS_MODULES:
        raise error
    print(
        f"hopper {command}: needs the optional tools ({top} is not installed): "
        "pip install 'hopper[tools]'",
        file=sys.stderr,
    )
    return 2
