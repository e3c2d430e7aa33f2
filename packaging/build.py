"""Builds what users install: the wheel, and `hopper`, one executable holding Python,
the engine, Granian, uvloop and the dashboard, frozen from what a plain `pip install` of
the wheel gives (no extras), so it carries exactly the server's runtime and nothing the
tests or the tools use.

    python packaging/build.py wheel [--out dist]     # make wheel
    python packaging/build.py binary [--out dist]    # make binary

The binary: build the abi3 wheel with maturin (or take --wheel), install it into a build
virtualenv under target/ (kept between builds: pip then only swaps the wheel), freeze with
PyInstaller.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUILD_VENV = ROOT / "target" / "binary-venv"
# Tested with PyInstaller 6.22.3.
PYINSTALLER = "pyinstaller>=6.10,<7"


def run(*cmd: str | Path) -> None:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], check=True)


def build_wheel(into: Path) -> Path:
    maturin = shutil.which("maturin", path=str(Path(sys.executable).parent)) or "maturin"
    run(
        maturin,
        "build",
        "--release",
        "--quiet",
        "--out",
        into,
        "--manifest-path",
        ROOT / "rust" / "py" / "Cargo.toml",
    )
    (wheel,) = into.glob("hopper-*.whl")
    return wheel


def build_env(wheel: Path) -> Path:
    python = BUILD_VENV / "bin" / "python"
    if not python.exists():
        venv.create(BUILD_VENV, with_pip=True, clear=True)
    run(python, "-m", "pip", "install", "-q", PYINSTALLER)
    run(python, "-m", "pip", "install", "-q", "--force-reinstall", "--no-deps", wheel)
    run(python, "-m", "pip", "install", "-q", wheel)  # the runtime dependencies
    return python


def freeze(python: Path, out: Path, work: Path) -> Path:
    run(
        python,
        "-m",
        "PyInstaller",
        "--onefile",
        "--noconfirm",
        "--log-level",
        "WARN",
        "--name",
        "hopper",
        "--distpath",
        out,
        "--workpath",
        work / "build",
        "--specpath",
        work,
        # Loaded by name, not by an import PyInstaller can see: Granian's worker target
        # and the dashboard's static files.
        "--hidden-import",
        "hopper.server.main",
        "--collect-submodules",
        "hopper",
        "--collect-data",
        "hopper",
        "--collect-submodules",
        "granian",
        "--collect-submodules",
        "uvloop",
        ROOT / "packaging" / "entry.py",
    )
    return out / "hopper"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("artifact", choices=("wheel", "binary"))
    parser.add_argument("--out", type=Path, default=ROOT / "dist")
    parser.add_argument("--wheel", type=Path, help="binary: freeze this wheel, not a new one")
    args = parser.parse_args()
    out = args.out.resolve()
    started = time.monotonic()
    if args.artifact == "wheel":
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="hopper-wheel-") as tmp:
            built = build_wheel(Path(tmp))
            artifact = Path(shutil.move(built, out / built.name))
    else:
        with tempfile.TemporaryDirectory(prefix="hopper-binary-") as tmp:
            wheel = args.wheel.resolve() if args.wheel else build_wheel(Path(tmp))
            artifact = freeze(build_env(wheel), out, Path(tmp))
    size = artifact.stat().st_size
    took = time.monotonic() - started
    print(f"built {artifact}: {size / 2**20:.1f} MiB in {took:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
