"""The bunqueue TCP protocol as the stock bunqueue 2.9.5 SDK uses it.

Each test runs one Bun script from sdk/ (`Queue`, `Worker`, `QueueEvents` of
`bunqueue/client`, unmodified) against the server's TCP port and asserts on the single
`RESULT {...}` line it prints (sdk/harness.ts bounds every script in time). The target
is hopper (the `server` and `start_server` fixtures), or, with
HOPPER_TCP_TEST_TARGET=bunqueue, the reference bunqueue 2.9.5 server under bench/peers
(tcp_client.run_bunqueue), on which these tests were validated.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections import Counter
from itertools import pairwise
from typing import Any

import pytest
from support import HOST, Server, ServerFactory
from tcp_client import BUN, REPO

SDK_DIR = REPO / "tests" / "server" / "sdk"
# A backstop only: every script prints its result and exits within ~15 s on its own.
SCRIPT_TIMEOUT_S = 30.0
TOKEN = "secret"


def run_sdk(
    script: str, port: int, queue: str, *args: object, token: str | None = None
) -> dict[str, Any]:
    """Runs sdk/<script>.ts against 127.0.0.1:`port` on `queue` and returns the object
    it printed; fails the test with its output if it did not end cleanly. The SDK's
    own BQ_*/BUNQUEUE_* variables are dropped so that only what the script sets
    counts (BQ_TOKEN would authenticate, BUNQUEUE_EMBEDDED=1 would bypass TCP)."""
    # A missing SDK is a failure, not a skip: `make install` provides it.
    assert BUN.exists(), "bun and bunqueue are not installed (make install: npm ci in bench/peers)"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BQ_", "BUNQUEUE_"))}
    env |= {"BQ_HOST": HOST, "BQ_PORT": str(port), "BQ_QUEUE": queue}
    if token is not None:
        env["BQ_TEST_TOKEN"] = token
    command = [str(BUN), "--no-install", str(SDK_DIR / f"{script}.ts"), *map(str, args)]
    try:
        done = subprocess.run(
            command, cwd=REPO, env=env, capture_output=True, text=True, timeout=SCRIPT_TIMEOUT_S
        )
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"{script}.ts was killed after {SCRIPT_TIMEOUT_S:g} s: {e.stdout!r}")
    results = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and len(results) == 1, (
        f"{script}.ts exited with {done.returncode}\n"
        f"stdout (tail): {done.stdout[-4000:]}\nstderr (tail): {done.stderr[-4000:]}"
    )
    result: dict[str, Any] = json.loads(results[0].removeprefix("RESULT "))
    return result


def nonzero(counts: dict[str, int]) -> dict[str, int]:
    """`Queue.getJobCounts()` without its zero entries."""
    return {state: n for state, n in counts.items() if n}


def assert_each_exactly_once(processed: list[str], expected: list[str]) -> None:
    """Every id in `expected` was processed, none twice and nothing else."""
    repeated = sorted(i for i, n in Counter(processed).items() if n > 1)
    assert not repeated, f"processed more than once: {repeated}"
    assert sorted(processed) == sorted(expected)


def test_add_and_add_bulk_return_one_id_per_job(target: Server, queue: str) -> None:
    bulk, concurrent = 100, 50
    r = run_sdk("add", target.tcp_port, queue, bulk, concurrent)
    assert len(r["bulkIds"]) == bulk and len(r["concurrentIds"]) == concurrent
    ids = [r["singleId"], *r["bulkIds"], *r["concurrentIds"], r["pushId"]]
    assert all(isinstance(i, str) and i for i in ids)
    assert len(set(ids)) == len(ids)
    assert r["fetched"] == {
        "id": r["singleId"],
        "name": "single",
        "data": {"n": 0, "text": "héllo"},
    }
    assert r["lastBulk"] == {"name": "bulk", "data": {"n": bulk}}
    # The PUSH job has a priority: bunqueue counts it as prioritized, not waiting.
    assert nonzero(r["counts"]) == {"waiting": len(ids) - 1, "prioritized": 1}


def test_custom_job_id_added_twice_returns_the_same_job(target: Server, queue: str) -> None:
    r = run_sdk("custom_id", target.tcp_port, queue)
    assert r["batched"] == [f"{queue}-1"] * 2
    assert r["unbatched"] == [f"{queue}-2"] * 2
    assert r["bulk"] == [f"{queue}-3"] * 2
    assert r["keptData"] == {"v": 1}
    assert nonzero(r["counts"]) == {"waiting": 3}


@pytest.mark.parametrize("concurrency", [8, 64])
def test_worker_runs_jobs_concurrently_each_exactly_once(
    target: Server, queue: str, concurrency: int
) -> None:
    jobs = 300
    r = run_sdk("concurrency", target.tcp_port, queue, concurrency, jobs)
    assert_each_exactly_once(r["processed"], r["addedIds"])
    assert r["maxInFlight"] == concurrency
    assert r["wrongResults"] == 0
    assert nonzero(r["counts"]) == {"completed": jobs}


def test_failed_attempts_are_retried_after_the_backoff_until_completed(
    target: Server, queue: str
) -> None:
    r = run_sdk("retry", target.tcp_port, queue)
    assert [c["attemptsMade"] for c in r["calls"]] == [0, 1, 2]
    # bunqueue spreads a fixed backoff over ±20 %; the rest is polling and scheduling.
    backoff = r["backoffMs"]
    gaps = [b["at"] - a["at"] for a, b in pairwise(r["calls"])]
    assert all(0.8 * backoff - 5 <= gap <= 1.2 * backoff + 1000 for gap in gaps), gaps
    assert r["failedReasons"] == ["flaky call 1", "flaky call 2"]
    assert r["returnvalue"] == r["storedReturnvalue"] == {"n": 7, "calls": 3}
    assert r["state"] == "completed"
    assert r["attemptsMade"] == 2


def test_queue_events_follow_progress_completion_and_failure(target: Server, queue: str) -> None:
    r = run_sdk("events", target.tcp_port, queue)

    def events_of(job_id: str) -> list[list[Any]]:
        return [[name, payload] for name, jid, payload in r["events"] if jid == job_id]

    assert events_of(r["okId"]) == [
        ["waiting", None],
        ["active", None],
        ["progress", 42],
        ["completed", {"done": True, "n": 1}],
    ]
    assert events_of(r["badId"]) == [
        ["waiting", None],
        ["active", None],
        ["failed", "boom: bad input"],
    ]
    assert r["states"] == {"ok": "completed", "bad": "failed"}
    assert r["badJob"] == {"failedReason": "boom: bad input", "attemptsMade": 1}


def test_worker_close_hands_buffered_jobs_back_to_the_next_worker(
    target: Server, queue: str
) -> None:
    jobs = 30
    r = run_sdk("close", target.tcp_port, queue, jobs)
    first, second = r["byFirst"], r["bySecond"]
    assert_each_exactly_once(first + second, r["addedIds"])
    assert 1 <= len(first) < jobs
    # Nothing stays active (locked) once close() returns: unprocessed jobs are waiting.
    after_close = {"waiting": jobs - len(first), "completed": len(first)}
    assert nonzero(r["countsAfterClose"]) == after_close
    # Jobs handed back were pulled (went active) twice; handing back is no attempt.
    pulls = Counter(r["activeIds"])
    handed_back = {job_id for job_id, n in pulls.items() if n == 2}
    assert handed_back and handed_back <= set(second)
    assert set(pulls.values()) <= {1, 2}
    assert set(r["attemptsSeenBySecond"]) == {0}
    assert sorted(r["completedIds"]) == sorted(r["addedIds"])
    assert nonzero(r["countsAtEnd"]) == {"completed": jobs}


def test_token_auth_admits_the_right_token_only(start_target: ServerFactory, queue: str) -> None:
    r = run_sdk("auth", start_target(AUTH_TOKENS=TOKEN).tcp_port, queue, token=TOKEN)
    # A wrong token, or none, may reject the add or leave it pending; never add a job.
    assert not r["wrongToken"].startswith("added"), r["wrongToken"]
    assert not r["noToken"].startswith("added"), r["noToken"]
    assert r["returnvalue"] == 42
    assert r["state"] == "completed"
    assert nonzero(r["counts"]) == {"completed": 1}


def test_queue_and_job_control_methods(target: Server, queue: str) -> None:
    """The tier-2 methods of `Queue` and `Job` (sdk/queue_control.ts)."""
    r = run_sdk("queue_control", target.tcp_port, queue)
    a, b = r["waiting"]
    (later,) = r["delayed"]
    assert r["count"] == 3 and r["perPriority"] == {"0": 3}
    assert r["pausedWhilePaused"] is True and r["pausedAfterResume"] is False
    assert nonzero(r["countsPaused"]) == {"paused": 2, "delayed": 1}
    assert (r["bState"], r["laterState"], r["aDelayedState"]) == (
        "prioritized",
        "waiting",
        "delayed",
    )
    assert r["logs"] == {"logs": ["[info] first line", "[info] second line"], "count": 2}
    # `a` moved itself to delayed on its first call, then finished with its new data.
    assert r["waited"] == {"doubled": 20}
    assert r["calls"] == {"a": 2, "b": 1, "later": 1}
    assert r["completed"] == sorted([a, later])
    assert r["failed"] == [b] and r["dlq"] == [b]
    assert r["retried"] == 1 and r["bAfterRetry"] == "prioritized"
    assert r["cleaned"] == 2 and r["completedAfterClean"] == 0
    assert r["concurrency"] == 1
    assert r["drained"] == 1 and r["countAfterDrain"] == 0


def test_flow_producer_runs_children_on_two_queues_before_the_parent(
    target: Server, queue: str
) -> None:
    r = run_sdk("flow", target.tcp_port, queue)
    assert "error" not in r and "timedOut" not in r, r
    assert sorted(r["order"][:2]) == ["child-a", "child-b"]
    assert r["order"][2:] == ["parent"]
    a, b = r["childIds"]
    assert r["childQueues"] == [f"{queue}-a", f"{queue}-b"]
    assert r["values"] == {f"{queue}-a:{a}": {"doubled": 2}, f"{queue}-b:{b}": {"doubled": 4}}
    assert r["parentData"]["role"] == "parent"
    assert sorted(r["parentData"]["__childrenIds"]) == sorted([a, b])


def test_job_schedulers_and_global_concurrency(target: Server, queue: str) -> None:
    """`upsertJobScheduler` makes jobs a Worker runs, `removeJobScheduler` ends it; a
    global concurrency of 2 holds a Worker of concurrency 8 to 2 jobs at a time
    (sdk/schedulers_and_limits.ts)."""
    r = run_sdk("schedulers_and_limits", target.tcp_port, queue)
    assert r["listed"] == ["tick"] and r["removed"] is True
    assert r["ticked"] >= 2 and r["listedAfterRemove"] == 0
    assert r["finished"] == 12 and 1 <= r["mostAtOnce"] <= 2
