"""What the protocol's management commands change survives a SIGKILL: the dead-letter
set, job logs, queue limits, a job scheduler, a paused queue and a job's new delay or
priority. Every answer waits for its log record (docs/durability.md), so whatever was
answered before the kill is there after a restart on the same data directory."""

from __future__ import annotations

from pathlib import Path

from hopper.server_process import ServerProcess
from tcp_client import Conn
from test_tcp_protocol import pull_locked


def test_dlq_logs_limits_and_moves_survive_a_sigkill(tmp_path: Path) -> None:
    process = ServerProcess.hopper(
        log=tmp_path / "server.log", env={"HOPPER_DATA_DIR": str(tmp_path / "data")}
    )
    process.start()
    try:
        with Conn(process.tcp_port) as c:
            ids = c.call_ok(
                "PUSHB",
                queue="work",
                jobs=[{"name": "j", "data": {"i": i}, "maxAttempts": 1} for i in range(4)],
            )["ids"]
            job, token = pull_locked(c, "work")
            c.call_ok("FAIL", id=job["id"], token=token, error="boom")
            c.call_ok("AddLog", id=ids[1], message="step one")
            c.call_ok("AddLog", id=ids[1], message="step two", level="warn")
            c.call_ok("ChangeDelay", id=ids[2], delay=3_600_000)
            c.call_ok("ChangePriority", id=ids[3], priority=9)
            c.call_ok("RateLimit", queue="work", limit=5, duration=60_000)
            c.call_ok("SetConcurrency", queue="work", limit=2)
            c.call_ok("Pause", queue="other")
            c.call_ok("Cron", name="nightly", queue="work", data={}, schedule="0 3 * * *")
        process.kill()
        process.start()
        with Conn(process.tcp_port) as c:
            dlq = c.call_ok("Dlq", queue="work")
            assert [j["id"] for j in dlq["jobs"]] == [job["id"]]
            assert dlq["entries"][0]["error"] == "boom"
            logs = c.call_ok("GetLogs", id=ids[1])["data"]
            assert [(x["message"], x["level"]) for x in logs["logs"]] == [
                ("step one", "info"),
                ("step two", "warn"),
            ]
            assert c.call_ok("GetState", id=ids[2])["state"] == "delayed"
            assert c.call_ok("GetState", id=ids[3])["state"] == "prioritized"
            limits = c.call_ok("GetQueueLimits", queue="work")["data"]["limits"]
            assert limits["rateLimit"] == {"max": 5, "duration": 60_000}
            assert limits["concurrencyLimit"] == 2
            assert c.call_ok("IsPaused", queue="other")["paused"] is True
            cron = c.call_ok("CronGet", name="nightly")["cron"]
            assert (cron["queue"], cron["schedule"]) == ("work", "0 3 * * *")
    finally:
        process.stop()
