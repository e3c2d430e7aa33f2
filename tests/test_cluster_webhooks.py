"""Webhooks in a cluster: the registry is the cluster's table (`hopper_webhooks`), which
every slot server loads at start and reads again every second.

- several slots: a webhook added through one broker (its front sends the command to
  slot 0's owner, which writes the table) fires, from another broker's slot server, for
  a job completed in that slot's queue; disabled there, it stops firing;
- one slot: a webhook added before a SIGKILL of the owner still fires after the
  failover (the new owner loaded it from the table).

Deliveries go to a receiver on loopback (`HOPPER_WEBHOOK_ALLOW_PRIVATE_URLS=1`); every
wait is bounded."""

from __future__ import annotations

import time
from pathlib import Path

from cluster_brokers import broker, slot_owners, wait_owner, wait_settled
from hopper._engine import queue_slot
from hopper.client.tcp import TcpClient, TcpError
from postgres_server import Postgres
from webhook_receiver import Receiver

ENV = {"HOPPER_WEBHOOK_ALLOW_PRIVATE_URLS": "1", "HOPPER_WEBHOOK_RETRY_DELAY_MS": "50"}
SLOTS = 4
SETTLE_S = 40.0
# A slot server reads the table every second: a change reaches it within this.
SPREAD_S = 10.0


def complete_one(tcp: TcpClient, queue: str) -> str:
    """Pushes a job to `queue`, pulls and acks it; its id."""
    pushed = tcp.call("PUSH", queue=queue, data={})["id"]
    pulled = tcp.call("PULL", queue=queue, timeout=5000, owner="hooks-test")
    assert pulled["job"]["id"] == pushed
    tcp.call("ACK", id=pushed, token=pulled["token"], result={"ok": True})
    return str(pushed)


def fires(tcp: TcpClient, queue: str, receiver: Receiver, within_s: float = SPREAD_S) -> bool:
    """Whether a job completed in `queue` reaches the receiver: jobs are completed, one
    every 0.2 s, until one is delivered (or `within_s` passes), since a slot server
    other than the writer fires only once it has read the table again."""
    done: set[str] = set()
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        done.add(complete_one(tcp, queue))
        time.sleep(0.2)
        if done & receiver.completed():
            return True
    return False


def test_several_slots_a_webhook_fires_from_every_slot_owner(
    postgres: Postgres, tmp_path: Path, receiver: Receiver
) -> None:
    ns, names = "hooks-slots", ["a", "b"]
    brokers = [broker(postgres, n, tmp_path, ns, slots=SLOTS, env=ENV) for n in names]
    try:
        for b in brokers:
            b.start()
        owners = wait_settled(lambda: slot_owners(postgres, ns), names, SLOTS, SETTLE_S)
        writer = owners[0]
        # A slot the other broker owns: its slot server is not the one that wrote.
        other = next(n for n in names if n != writer)
        slot = next(s for s in range(SLOTS) if owners[s] == other)
        queue = next(q for q in (f"hq{i}" for i in range(1000)) if queue_slot(q, SLOTS) == slot)
        via = brokers[names.index(other)]
        assert via.tcp_port is not None
        with TcpClient("127.0.0.1", via.tcp_port) as tcp:
            added = tcp.call("AddWebhook", url=receiver.url, events=["job.completed"], queue=queue)
            webhook_id = added["data"]["webhookId"]
            listed = tcp.call("ListWebhooks")["data"]["webhooks"]
            assert [h["id"] for h in listed] == [webhook_id]
            assert fires(tcp, queue, receiver)

            tcp.call("SetWebhookEnabled", id=webhook_id, enabled=False)
            time.sleep(2.5)  # past two reads of the table
            seen = len(receiver.bodies())
            complete_one(tcp, queue)
            time.sleep(1.0)
            assert len(receiver.bodies()) == seen
            assert tcp.call("RemoveWebhook", webhookId=webhook_id)["data"] == {"removed": True}
            assert tcp.call("ListWebhooks")["data"]["webhooks"] == []
    finally:
        for b in brokers:
            b.kill()


def test_one_slot_a_webhook_outlives_a_sigkill_of_the_owner(
    postgres: Postgres, tmp_path: Path, receiver: Receiver
) -> None:
    ns = "hooks-failover"
    a, b = (broker(postgres, n, tmp_path, ns, env=ENV) for n in "ab")
    try:
        a.start()
        b.start()
        assert wait_owner(postgres, ns) == "a"
        assert b.tcp_port is not None
        with TcpClient("127.0.0.1", b.tcp_port) as tcp:
            tcp.call("AddWebhook", url=receiver.url, events=["job.completed"])
            assert fires(tcp, "hooks", receiver)
        a.kill()
        assert wait_owner(postgres, ns, not_="a") == "b"
        before = receiver.completed()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:  # until b's front reaches its new slot server
            try:
                with TcpClient("127.0.0.1", b.tcp_port) as tcp:
                    done = complete_one(tcp, "hooks")
                break
            except TcpError:
                time.sleep(0.2)
        else:
            raise AssertionError("b did not serve the slot after the failover")
        end = time.monotonic() + 5
        while done not in receiver.completed() and time.monotonic() < end:
            time.sleep(0.05)
        assert done in receiver.completed() - before
    finally:
        a.kill()
        b.kill()
