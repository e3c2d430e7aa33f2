"""The persistent embedded engine: exact state across restarts, snapshots that compact
the log, the directory lock, and a full disk (a real small tmpfs when this machine
allows mounting one, and an injected write error everywhere)."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import hopper
import pytest
from hopper import Engine
from hopper.server.server_engine import ServerEngine


def workload(e: Engine) -> None:
    a = e.push("q", {"n": 1}, name="welcome", priority=5, unique_key="u", tags=["t"], group_id="g")
    e.push("q", {"n": 2}, delay=60_000, ttl=600_000)
    e.push("q", {"n": 3}, lifo=True, max_attempts=1, remove_on_complete=2)
    child = e.push("q", {"n": 4}, job_id="child", timeout=5000)
    e.push("q", {"p": 1}, depends_on=[child])
    e.push("r", {"every": 1}, repeat={"every": 1000, "limit": 3})
    e.push_many("bulk", [{"data": i, "durable": i % 2 == 0} for i in range(50)])
    e.pause("q", "welcome")
    e.pause("paused")
    j = e.pull("q")
    assert j is not None
    e.progress(j.id, 50, j.token)
    e.ack(j.id, j.token, {"ok": 1})
    j = e.pull("q")
    assert j is not None
    e.fail(j.id, j.token, "boom")
    r = e.pull("r")
    assert r is not None
    e.ack(r.id, r.token)
    e.resume("q", "welcome")
    e.update(a, data={"n": "edited"}, priority=9)
    e.clean("bulk", "waiting", limit=5)
    e.pull("bulk")


def test_state_after_restart_equals_state_before(tmp_path: Path) -> None:
    with Engine(data_dir=tmp_path) as e:
        workload(e)
        before = e.dump_state()
        stats = e.stats()
    with Engine(data_dir=tmp_path) as e:
        assert e.dump_state() == before
        assert {k: e.stats()[k] for k in ("pushed", "completed", "failed")} == {
            k: stats[k] for k in ("pushed", "completed", "failed")
        }
        report = e.recovery_report()
        assert report is not None and report["jobs"] == stats["jobs"] and not report["warnings"]


def test_snapshots_compact_the_log_and_restart_from_them(tmp_path: Path) -> None:
    with Engine(data_dir=tmp_path, snapshot_bytes=64 * 1024) as e:
        for round_ in range(20):
            ids = e.push_many("q", [{"data": {"r": round_, "i": i}} for i in range(200)])
            for _ in ids[:150]:
                j = e.pull("q")
                assert j is not None
                e.ack(j.id, j.token)
        deadline = time.monotonic() + 10
        while e.storage_info()["snapshots"] == 0 and time.monotonic() < deadline:  # type: ignore[index]
            time.sleep(0.05)
        assert e.storage_info()["snapshots"] >= 1  # type: ignore[index]
        e.snapshot()
        before = e.dump_state()
    names = sorted(p.name for p in tmp_path.iterdir())
    snapshots = [n for n in names if n.endswith(".snap")]
    assert len(snapshots) == 1, names
    first = snapshots[0].removeprefix("snapshot-").removesuffix(".snap")
    assert all(n >= f"wal-{first}" for n in names if n.startswith("wal-")), names
    with Engine(data_dir=tmp_path) as e:
        assert e.dump_state() == before
        report = e.recovery_report()
        assert report is not None and report["snapshot"] == int(first)


def test_a_second_engine_on_the_same_directory_is_refused(tmp_path: Path) -> None:
    with (
        Engine(data_dir=tmp_path),
        pytest.raises(hopper.UnavailableError, match="in use by another hopper process"),
    ):
        Engine(data_dir=tmp_path)
    Engine(data_dir=tmp_path).close()  # released on close


def test_a_closed_engine_refuses_writes(tmp_path: Path) -> None:
    e = Engine(data_dir=tmp_path)
    e.close()
    with pytest.raises(hopper.UnavailableError, match="closed"):
        e.push("q", 1)


def test_unknown_fsync_policy_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(hopper.InvalidInputError, match="fsync"):
        Engine(data_dir=tmp_path, fsync="sometimes")  # type: ignore[arg-type]


@pytest.mark.parametrize("fsync", ["always", "interval", "never"])
def test_a_durable_push_is_synced_before_it_returns(tmp_path: Path, fsync: str) -> None:
    with Engine(data_dir=tmp_path, fsync=fsync, fsync_interval_ms=60_000) as e:  # type: ignore[arg-type]
        e.push("q", 1, durable=True)
        info = e.storage_info()
        assert info is not None and info["durable_lsn"] == info["appended_lsn"] > 0


@pytest.mark.parametrize("fsync", ["interval", "never"])
def test_a_change_returns_once_written_not_synced(tmp_path: Path, fsync: str) -> None:
    """A SIGKILL must not lose what a call returned from: the record is with the OS."""
    with Engine(data_dir=tmp_path, fsync=fsync, fsync_interval_ms=3_600_000) as e:  # type: ignore[arg-type]
        e.push("q", 1)
        job = e.pull("q")
        assert job is not None
        e.ack(job.id, job.token)
        info = e.storage_info()
        assert info is not None
        assert info["written_lsn"] == info["appended_lsn"] > info["durable_lsn"]


def test_commit_on_a_loop_waits_for_the_write_of_every_change(tmp_path: Path) -> None:
    async def main() -> None:
        with ServerEngine(data_dir=tmp_path, fsync_interval_ms=3_600_000) as e:
            e.push("q", 1)
            e.push("q", 2)
            target = e.commit_target()
            assert target is not None and target[1] == 0, "written, not synced"
            await asyncio.wait_for(e.commit(), 5)
            info = e.storage_info()
            assert info is not None and info["written_lsn"] >= target[0]
            assert e.commit_target() is None, "nothing left to wait for"

    asyncio.run(main())


def test_injected_write_errors_refuse_writes_and_lose_nothing(tmp_path: Path) -> None:
    with Engine(data_dir=tmp_path, fsync="always") as e:
        kept = e.push("q", "kept")
        e._core._inject_io_error(True)
        with pytest.raises(hopper.UnavailableError, match="No space left"):
            e.push("q", "in flight")
        with pytest.raises(hopper.UnavailableError, match="storage unavailable"):
            e.push("q", "refused")
        assert e.get(kept) is not None  # reads go on
        e._core._inject_io_error(False)
        wait_until_writable(e)
        after = e.push("q", "after")
        before = e.dump_state()
    with Engine(data_dir=tmp_path) as e:
        assert e.dump_state() == before
        assert e.get(kept) is not None and e.get(after) is not None


def wait_until_writable(e: Engine, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while (e.storage_info() or {}).get("error") and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not (e.storage_info() or {}).get("error")


@contextlib.contextmanager
def small_tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A real file system that fills up; skipped (with the reason) where mounting is
    not allowed."""
    path.mkdir()
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip()}); the injected test covers it")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_a_full_disk_refuses_writes_and_recovers_when_space_returns(tmp_path: Path) -> None:
    with small_tmpfs(tmp_path / "fs", "1m") as fs:
        filler = fs / "filler"
        filler.write_bytes(b"\0" * 600_000)
        acknowledged = []
        with Engine(data_dir=fs / "data", fsync="always") as e:
            payload = "x" * 2000
            error = None
            for i in range(1000):
                try:
                    acknowledged.append(e.push("q", {"i": i, "pad": payload}))
                except hopper.UnavailableError as err:
                    error = str(err)
                    break
            assert error is not None and "No space left" in error, error
            assert 50 < len(acknowledged) < 1000
            assert e.counts("q")["waiting"] >= len(acknowledged)  # reads go on
            filler.unlink()  # space returns
            wait_until_writable(e)
            acknowledged.append(e.push("q", "after"))
        with Engine(data_dir=fs / "data") as e:
            missing = [i for i in acknowledged if e.get(i) is None]
            assert not missing
