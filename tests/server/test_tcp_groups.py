"""bunqueue's group commands spoken raw over TCP: the group counts, a group's rate limit,
concurrency, pause and hold (`RateLimitGroup`), with the reference's reply shapes and
wording, and pulls skipping a blocked group while serving the others.

Like test_tcp_commands.py, the target is hopper or, with HOPPER_TCP_TEST_TARGET=bunqueue,
bunqueue 2.9.5 itself (these tests were validated on it). The order in which jobs of
different groups are served differs (bunqueue: ungrouped jobs first, then groups in
turn; hopper: ready order), so the tests compare sets where it matters."""

from __future__ import annotations

from typing import Any

import pytest
from tcp_client import Conn
from test_tcp_protocol import expect_error


def data(c: Conn, cmd: str, **fields: Any) -> dict[str, Any]:
    got: dict[str, Any] = c.call_ok(cmd, **fields)["data"]
    return got


def push(c: Conn, queue: str, value: int, group: str | None = None, **opts: Any) -> str:
    if group is not None:
        opts["groupId"] = group
    job_id: str = c.call_ok("PUSH", queue=queue, data={"v": value}, **opts)["id"]
    return job_id


def pull_value(c: Conn, queue: str, **opts: Any) -> int | None:
    job = c.call_ok("PULL", queue=queue, **opts)["job"]
    return None if job is None else int(job["data"]["v"])


def pull_job(c: Conn, queue: str, **opts: Any) -> dict[str, Any] | None:
    job: dict[str, Any] | None = c.call_ok("PULL", queue=queue, **opts)["job"]
    return job


def test_counts_are_waiting_and_delayed_jobs_and_active_jobs(conn: Conn, queue: str) -> None:
    push(conn, queue, 1, "a")
    push(conn, queue, 2, "a", delay=600_000)
    push(conn, queue, 3, "b")
    push(conn, queue, 4)
    assert data(conn, "GetGroupJobsCount", queue=queue, groupId="a") == {"count": 2}
    assert data(conn, "GetGroupsJobsCount", queue=queue) == {"count": 3}
    assert data(conn, "GetGroupsJobsCount", queue=queue, maxCount=1) == {"count": 3}
    assert data(conn, "GetGroupActiveCount", queue=queue, groupId="a") == {"count": 0}
    conn.call_ok("PauseGroup", queue=queue, groupId="b")
    assert pull_value(conn, queue) in (1, 4)
    assert pull_value(conn, queue) in (1, 4)
    assert data(conn, "GetGroupActiveCount", queue=queue, groupId="a") == {"count": 1}
    assert data(conn, "GetGroupJobsCount", queue=queue, groupId="a") == {"count": 1}
    assert data(conn, "GetGroupJobsCount", queue=f"{queue}-none", groupId="a") == {"count": 0}
    assert data(conn, "GetGroupsJobsCount", queue=f"{queue}-none") == {"count": 0}


def test_a_paused_group_is_skipped_and_the_others_served(conn: Conn, queue: str) -> None:
    for i in range(5):
        push(conn, queue, i, "big")
    push(conn, queue, 10, "b")
    push(conn, queue, 11)
    assert data(conn, "PauseGroup", queue=queue, groupId="big") == {"changed": True}
    assert data(conn, "PauseGroup", queue=queue, groupId="big") == {"changed": False}
    assert data(conn, "IsGroupPaused", queue=queue, groupId="big") == {"paused": True}
    assert data(conn, "IsGroupPaused", queue=queue, groupId="b") == {"paused": False}
    assert {pull_value(conn, queue), pull_value(conn, queue)} == {10, 11}
    assert pull_value(conn, queue) is None
    assert data(conn, "ResumeGroup", queue=queue, groupId="big") == {"changed": True}
    assert data(conn, "ResumeGroup", queue=queue, groupId="big") == {"changed": False}
    assert data(conn, "IsGroupPaused", queue=queue, groupId="big") == {"paused": False}
    assert pull_value(conn, queue) == 0


def test_group_concurrency_is_set_read_removed_and_enforced(conn: Conn, queue: str) -> None:
    for i in range(3):
        push(conn, queue, i, "a")
    push(conn, queue, 10, "b")
    assert data(conn, "GetGroupConcurrency", queue=queue, groupId="a") == {"concurrency": None}
    reply = conn.call("SetGroupConcurrency", queue=queue, groupId="a", concurrency=1)
    assert reply["ok"] is True and "data" not in reply
    assert data(conn, "GetGroupConcurrency", queue=queue, groupId="a") == {"concurrency": 1}
    # (bunqueue applies a group's concurrency to pulls that give group defaults; hopper
    # to every pull.)
    opts = {"group": {"concurrency": 50}}
    first = pull_job(conn, queue, **opts)
    second = pull_job(conn, queue, **opts)
    assert first is not None and second is not None
    assert {first["data"]["v"], second["data"]["v"]} == {0, 10}
    assert pull_job(conn, queue, **opts) is None
    assert data(conn, "GetGroupActiveCount", queue=queue, groupId="a") == {"count": 1}
    a_job = first if first["groupId"] == "a" else second
    conn.call_ok("ACK", id=a_job["id"])
    assert pull_value(conn, queue, **opts) == 1
    assert pull_value(conn, queue, **opts) is None
    assert data(conn, "RemoveGroupConcurrency", queue=queue, groupId="a") == {"removed": 1}
    assert data(conn, "RemoveGroupConcurrency", queue=queue, groupId="a") == {"removed": 0}
    assert data(conn, "GetGroupConcurrency", queue=queue, groupId="a") == {"concurrency": None}


def test_group_rate_limit_is_set_read_and_removed(conn: Conn, queue: str) -> None:
    assert data(conn, "GetGroupRateLimit", queue=queue, groupId="a") == {"limit": None}
    reply = conn.call("SetGroupRateLimit", queue=queue, groupId="a", max=2, duration=60_000)
    assert reply["ok"] is True and "data" not in reply
    assert data(conn, "GetGroupRateLimit", queue=queue, groupId="a") == {
        "limit": {"max": 2, "duration": 60_000}
    }
    assert data(conn, "GetGroupRateLimitTtl", queue=queue, groupId="a") == {"ttl": -2}
    for i in range(3):
        push(conn, queue, i, "a")
    opts = {"group": {"limit": {"max": 100, "duration": 1000}}}
    assert pull_value(conn, queue, **opts) == 0
    assert pull_value(conn, queue, **opts) == 1
    assert pull_value(conn, queue, **opts) is None, "two per minute"
    ttl = data(conn, "GetGroupRateLimitTtl", queue=queue, groupId="a")["ttl"]
    assert 55_000 < ttl <= 60_000
    assert data(conn, "GetGroupRateLimitTtl", queue=queue, groupId="a", maxJobs=5) == {"ttl": 0}
    assert data(conn, "RemoveGroupRateLimit", queue=queue, groupId="a") == {"removed": 1}
    assert data(conn, "RemoveGroupRateLimit", queue=queue, groupId="a") == {"removed": 0}
    assert data(conn, "GetGroupRateLimit", queue=queue, groupId="a") == {"limit": None}


def test_rate_limit_group_holds_a_group(conn: Conn, queue: str) -> None:
    push(conn, queue, 1, "a")
    push(conn, queue, 2, "b")
    reply = conn.call("RateLimitGroup", queue=queue, groupId="a", duration=30_000)
    assert reply["ok"] is True and "data" not in reply
    ttl = data(conn, "GetGroupRateLimitTtl", queue=queue, groupId="a")["ttl"]
    assert 25_000 < ttl <= 30_000
    assert pull_value(conn, queue) == 2
    assert pull_value(conn, queue) is None
    assert data(conn, "GetGroupRateLimitTtl", queue=queue, groupId="b") == {"ttl": -2}


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({}, "groupId is required"),
        ({"groupId": 5}, "groupId must be a string"),
        ({"groupId": ""}, "groupId must be a non-empty string"),
        ({"groupId": "x" * 257}, "groupId must be at most 256 characters"),
        ({"groupId": "a\0b"}, "groupId must not contain NUL characters"),
    ],
)
def test_group_ids_are_checked(
    conn: Conn, queue: str, fields: dict[str, Any], message: str
) -> None:
    for cmd in ("GetGroupJobsCount", "PauseGroup", "IsGroupPaused", "SetGroupConcurrency"):
        expect_error(conn.call(cmd, queue=queue, **fields), message)


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2", None])
def test_numbers_must_be_positive_safe_integers(conn: Conn, queue: str, bad: Any) -> None:
    g = {"queue": queue, "groupId": "a"}
    expect_error(
        conn.call("SetGroupConcurrency", **g, concurrency=bad),
        "concurrency must be a positive safe integer",
    )
    expect_error(
        conn.call("SetGroupRateLimit", **g, max=bad, duration=1000),
        "max must be a positive safe integer",
    )
    expect_error(
        conn.call("SetGroupRateLimit", **g, max=1, duration=bad),
        "duration must be a positive safe integer",
    )
    expect_error(
        conn.call("RateLimitGroup", **g, duration=bad), "duration must be a positive safe integer"
    )
    assert data(conn, "GetGroupConcurrency", **g) == {"concurrency": None}


@pytest.mark.parametrize(
    ("group", "message"),
    [
        (5, "group must be an object"),
        ({"affinity": 3}, "group.affinity must be a string or null"),
        ({"concurrency": 0}, "group.concurrency must be a positive safe integer"),
        ({"limit": 1}, "group.limit must be an object"),
        ({"limit": {"max": 1}}, "group.limit.duration must be a positive safe integer"),
        ({"limit": {"duration": 1}}, "group.limit.max must be a positive safe integer"),
    ],
)
def test_pull_group_options_are_checked(conn: Conn, queue: str, group: Any, message: str) -> None:
    expect_error(conn.call("PULL", queue=queue, group=group), message)
