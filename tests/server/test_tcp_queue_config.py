"""bunqueue's per-queue stall and dead-letter settings over the raw TCP protocol:
SetStallConfig, GetStallConfig, SetDlqConfig, GetDlqConfig (partial updates merge into
the current settings), and what the dead-letter settings do to the `Dlq` entries.

Runs against hopper, or the reference with HOPPER_TCP_TEST_TARGET=bunqueue. Where the
two differ by design (defaults hopper takes from its own options) the test says so.
The time-driven effects (stalls, age expiry, automatic retries) are covered by the
engine's cargo tests on a manual clock: the reference checks them once a minute.
"""

from __future__ import annotations

from typing import Any

from tcp_client import ON_BUNQUEUE, Conn
from test_tcp_commands import finish_one, strip
from test_tcp_protocol import OK, expect_error, push_many

STALL_DEFAULTS = {
    "enabled": True,
    "stallInterval": 30_000,
    "maxStalls": 3,
    # hopper has no grace period unless a queue sets one.
    "gracePeriod": 5_000 if ON_BUNQUEUE else 0,
}
DLQ_DEFAULTS = {
    "autoRetry": False,
    "autoRetryInterval": 3_600_000,
    "maxAutoRetries": 3,
    # hopper: its retention age (24 h by default) bounds failed jobs.
    "maxAge": 604_800_000 if ON_BUNQUEUE else 86_400_000,
    "maxEntries": 10_000,
}


def stall_config(c: Conn, queue: str) -> dict[str, Any]:
    reply = strip(c.call("GetStallConfig", queue=queue))
    assert set(reply) == {"ok", "config"} and reply["ok"] is True, reply
    config: dict[str, Any] = reply["config"]
    return config


def dlq_config(c: Conn, queue: str) -> dict[str, Any]:
    reply = strip(c.call("GetDlqConfig", queue=queue))
    assert set(reply) == {"ok", "config"} and reply["ok"] is True, reply
    config: dict[str, Any] = reply["config"]
    return config


def test_unset_settings_answer_the_defaults(conn: Conn, queue: str) -> None:
    assert stall_config(conn, queue) == STALL_DEFAULTS
    assert dlq_config(conn, queue) == DLQ_DEFAULTS


def test_set_stall_config_merges_into_the_current_settings(conn: Conn, queue: str) -> None:
    assert strip(conn.call("SetStallConfig", queue=queue, config={"stallInterval": 1000})) == OK
    assert stall_config(conn, queue) == {**STALL_DEFAULTS, "stallInterval": 1000}
    conn.call_ok("SetStallConfig", queue=queue, config={"maxStalls": 5, "enabled": False})
    expected = {**STALL_DEFAULTS, "stallInterval": 1000, "maxStalls": 5, "enabled": False}
    assert stall_config(conn, queue) == expected
    # Numeric strings are numbers; what is not a number leaves the field alone.
    conn.call_ok("SetStallConfig", queue=queue, config={"gracePeriod": "250", "maxStalls": "x"})
    assert stall_config(conn, queue) == {**expected, "gracePeriod": 250}
    # Other queues keep the defaults.
    assert stall_config(conn, queue + "-other") == STALL_DEFAULTS


def test_set_stall_config_without_a_config_changes_nothing(conn: Conn, queue: str) -> None:
    assert strip(conn.call("SetStallConfig", queue=queue)) == OK
    assert strip(conn.call("SetStallConfig", queue=queue, config=5)) == OK
    assert stall_config(conn, queue) == STALL_DEFAULTS


def test_set_dlq_config_merges_and_normalises_numbers(conn: Conn, queue: str) -> None:
    assert strip(conn.call("SetDlqConfig", queue=queue, config={"autoRetry": True})) == OK
    assert dlq_config(conn, queue) == {**DLQ_DEFAULTS, "autoRetry": True}
    conn.call_ok(
        "SetDlqConfig",
        queue=queue,
        config={
            "autoRetry": "no",  # not a boolean: ignored
            "autoRetryInterval": 1500.9,  # whole ms, rounded down
            "maxAutoRetries": -3,  # at least 0
            "maxAge": None,  # no age bound
            "maxEntries": 0,  # at least 1
        },
    )
    assert dlq_config(conn, queue) == {
        "autoRetry": True,
        "autoRetryInterval": 1500,
        "maxAutoRetries": 0,
        "maxAge": None,
        "maxEntries": 1,
    }
    conn.call_ok("SetDlqConfig", queue=queue, config={"maxAge": "-5", "maxEntries": "20"})
    assert dlq_config(conn, queue)["maxAge"] == 0
    assert dlq_config(conn, queue)["maxEntries"] == 20


def test_set_dlq_config_needs_a_config_and_every_command_a_queue(conn: Conn, queue: str) -> None:
    expect_error(conn.call("SetDlqConfig", queue=queue))
    assert dlq_config(conn, queue) == DLQ_DEFAULTS
    for cmd in ("SetStallConfig", "GetStallConfig", "SetDlqConfig", "GetDlqConfig"):
        expect_error(conn.call(cmd, config={}))


def entered(conn: Conn, queue: str) -> dict[str, float]:
    """The dead letters of `queue`: id -> when it failed (ms)."""
    return {e["job"]["id"]: e["enteredAt"] for e in conn.call_ok("Dlq", queue=queue)["entries"]}


def assert_oldest_dropped(before: dict[str, float], after: dict[str, float], n: int) -> None:
    """`after` keeps `n` of `before`, none failed earlier than one it dropped (failures in
    the same millisecond may go in either order)."""
    assert len(after) == n and set(after) <= set(before), (before, after)
    dropped = [t for i, t in before.items() if i not in after]
    assert min(after.values()) >= max(dropped), (before, after)


def test_max_entries_trims_the_dead_letters_oldest_first(conn: Conn, queue: str) -> None:
    push_many(conn, queue, 4, maxAttempts=1)
    for i in range(4):
        finish_one(conn, queue, fail=f"boom {i}")
    before = entered(conn, queue)
    conn.call_ok("SetDlqConfig", queue=queue, config={"maxEntries": 2})
    kept = entered(conn, queue)
    assert_oldest_dropped(before, kept, 2)
    push_many(conn, queue, 1, maxAttempts=1)
    newest = finish_one(conn, queue, fail="boom 4")
    now = entered(conn, queue)
    assert_oldest_dropped({**kept, newest: now.get(newest, max(kept.values()))}, now, 2)


def test_dlq_entries_carry_the_retry_and_expiry_times(conn: Conn, queue: str) -> None:
    conn.call_ok(
        "SetDlqConfig",
        queue=queue,
        config={"autoRetry": True, "autoRetryInterval": 600_000, "maxAge": 3_600_000},
    )
    push_many(conn, queue, 1, maxAttempts=1)
    finish_one(conn, queue, fail="boom")
    (entry,) = conn.call_ok("Dlq", queue=queue)["entries"]
    assert entry["retryCount"] == 0
    assert entry["nextRetryAt"] == entry["enteredAt"] + 600_000
    assert entry["expiresAt"] == entry["enteredAt"] + 3_600_000


def test_obliterate_forgets_the_settings(conn: Conn, queue: str) -> None:
    push_many(conn, queue, 1)
    conn.call_ok("SetStallConfig", queue=queue, config={"maxStalls": 9})
    conn.call_ok("SetDlqConfig", queue=queue, config={"maxEntries": 9})
    conn.call_ok("Obliterate", queue=queue)
    assert stall_config(conn, queue) == STALL_DEFAULTS
    assert dlq_config(conn, queue) == DLQ_DEFAULTS
