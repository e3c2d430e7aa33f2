"""A cluster of several slots: three `hopper serve` brokers on one PostgreSQL with
`HOPPER_SLOTS=4`. The slots settle on the brokers that rank first for them; every API
works through any broker (each front sends each request to its queue's or job's slot);
aggregates (stats, the event stream) cover every slot; and a SIGKILL of the broker owning
the most slots under load loses no acknowledged push, with its slots served again
within 2 s."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cluster_brokers import (
    broker,
    event_stream,
    psql,
    push,
    run_sdk,
    slot_owners,
    wait_settled,
)
from cluster_load import Load, first_ok_after
from hopper._engine import id_slot, preferred_broker, queue_slot
from hopper.client.tcp import TcpClient
from hopper.server_process import ServerProcess
from postgres_server import Postgres

SLOTS = 4
NAMES = ["a", "b", "c"]
TAKEOVER_S = 2.0
# Slots move to their ranked broker once it has been up 3 s and the owner's worker 6 s.
SETTLE_S = 40.0


def queue_in(slot: int, prefix: str) -> str:
    """A queue name of `slot`."""
    return next(q for q in (f"{prefix}{i}" for i in range(1000)) if queue_slot(q, SLOTS) == slot)


def settled(pg: Postgres, ns: str, live: list[str]) -> dict[int, str]:
    return wait_settled(lambda: slot_owners(pg, ns), live, SLOTS, SETTLE_S)


def start_brokers(pg: Postgres, logs: Path, ns: str) -> list[ServerProcess]:
    started = []
    for name in NAMES:
        b = broker(pg, name, logs, ns, slots=SLOTS)
        b.start()
        started.append(b)
    return started


@pytest.fixture(scope="module")
def brokers(
    postgres: Postgres, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[ServerProcess]]:
    started = start_brokers(postgres, tmp_path_factory.mktemp("brokers"), "slots")
    try:
        settled(postgres, "slots", NAMES)
        yield started
    finally:
        for b in started:
            b.kill()


def test_every_slot_settles_on_the_broker_ranked_first(
    postgres: Postgres, brokers: list[ServerProcess]
) -> None:
    found = slot_owners(postgres, "slots")
    assert found == {s: preferred_broker(NAMES, s) for s in range(SLOTS)}
    # The count is the cluster's: a broker asking for another one is refused at start.
    other = broker(postgres, "d", brokers[0].log.parent, "slots", slots=SLOTS + 1)
    other.launch()
    assert other.proc is not None
    assert other.proc.wait(30) != 0
    assert f"this cluster has {SLOTS} slots" in other.log_tail(), other.log_tail()


def test_every_broker_answers_the_probes_itself(brokers: list[ServerProcess]) -> None:
    """A settled cluster: every broker's router is live and ready (it knows every slot's
    owner), with a server's bodies."""
    for each in brokers:
        for path in ("/live", "/healthz"):
            got = httpx.get(f"{each.url}{path}")
            assert (got.status_code, got.text) == (200, "OK"), (path, got.text)
        ready = httpx.get(f"{each.url}/ready")
        assert (ready.status_code, ready.json()) == (200, {"ok": True, "ready": True})
        assert httpx.head(f"{each.url}/ready").status_code == 200


def test_push_on_one_pull_on_another_ack_on_a_third_in_every_slot(
    brokers: list[ServerProcess],
) -> None:
    a, b, c = brokers
    for slot in range(SLOTS):
        queue = queue_in(slot, "relay")
        got: dict[str, httpx.Response] = {}
        poll = threading.Thread(
            target=lambda q=queue, got=got: got.setdefault(
                "pull", httpx.get(f"{b.url}/queues/{q}/jobs?timeout=10000", timeout=15)
            )
        )
        poll.start()  # a long poll on b, waiting before the push exists
        pushed = str(push(a, queue, {"data": {"slot": slot}})["id"])
        poll.join(15)
        assert id_slot(pushed, SLOTS) == slot, pushed
        body = got["pull"].json()
        assert body["job"]["id"] == pushed, body
        acked = httpx.post(f"{c.url}/jobs/{pushed}/ack", json={"token": body["token"]})
        assert acked.json() == {"ok": True}, acked.text
        for each in brokers:
            seen = httpx.get(f"{each.url}/jobs/{pushed}").json()
            assert seen["job"]["state"] == "completed", seen


def test_a_caller_chosen_id_is_found_through_any_broker(brokers: list[ServerProcess]) -> None:
    queue = queue_in(3, "custom")
    push(brokers[0], queue, {"data": 1, "jobId": "order-7"})
    for each in brokers:
        seen = httpx.get(f"{each.url}/jobs/order-7")
        assert seen.status_code == 200 and seen.json()["job"]["queue"] == queue, seen.text
    assert httpx.get(f"{brokers[1].url}/jobs/no-such-job").status_code == 404


def test_one_caller_chosen_id_through_two_brokers_to_two_slots_is_one_job(
    postgres: Postgres, brokers: list[ServerProcess]
) -> None:
    first_queue, second_queue = queue_in(0, "twice"), queue_in(2, "twice")
    first = push(brokers[0], first_queue, {"data": 1, "jobId": "order-9"})
    # The registry names slot 0, whose owner holds the id: a duplicate, not a new job.
    second = push(brokers[1], second_queue, {"data": 2, "jobId": "order-9"})
    assert first["id"] == second["id"] == "order-9"
    for each in brokers:
        seen = httpx.get(f"{each.url}/jobs/order-9").json()
        assert (seen["job"]["queue"], seen["job"]["data"]) == (first_queue, 1), seen
    assert httpx.get(f"{brokers[2].url}/queues/{second_queue}/jobs").json()["job"] is None
    sql = "SELECT slot FROM hopper_ids WHERE namespace = 'slots' AND job_id = 'order-9'"
    assert psql(postgres, sql) == ["0"]


def test_stats_count_every_slot(brokers: list[ServerProcess]) -> None:
    def waiting() -> int:
        stats = httpx.get(f"{brokers[1].url}/stats").json()
        return int(stats["stats"]["queued"])

    before = waiting()
    for slot in range(SLOTS):
        for n in range(slot + 1):
            push(brokers[2], queue_in(slot, "counted"), {"data": n})
    assert waiting() - before == 1 + 2 + 3 + 4


def test_one_event_stream_carries_every_slot(brokers: list[ServerProcess]) -> None:
    a, _b, c = brokers
    with event_stream(c) as events:
        pushed = {str(push(a, queue_in(s, "streamed"), {"data": s})["id"]) for s in range(SLOTS)}
        seen: set[str] = set()
        for _, event in zip(range(400), events, strict=False):
            if event.get("eventType") == "pushed":
                seen.add(str(event.get("jobId")))
            if pushed <= seen:
                break
        assert pushed <= seen, (pushed, seen)


def test_the_tcp_protocol_routes_each_command(brokers: list[ServerProcess]) -> None:
    a, b, c = brokers
    with (
        TcpClient("127.0.0.1", a.tcp_port) as pa,
        TcpClient("127.0.0.1", b.tcp_port) as pb,
        TcpClient("127.0.0.1", c.tcp_port) as pc,
    ):
        ids = {}
        for slot in range(SLOTS):
            queue = queue_in(slot, "tcp")
            ids[queue] = pa.call("PUSH", queue=queue, data={"slot": slot})["id"]
        for queue, pushed in ids.items():
            pulled = pb.call("PULL", queue=queue, timeout=1000, owner="tcp-test")
            assert pulled["job"]["id"] == pushed
            pc.call("ACK", id=pushed, token=pulled["token"])
            assert pa.call("GetJob", id=pushed)["job"]["state"] == "completed"


def test_the_management_api_through_any_broker_sees_every_slot(
    brokers: list[ServerProcess],
) -> None:
    """The dashboard's API: the cluster view names each slot's owner, and the queue list
    and a queue's jobs come from every slot, whichever broker is asked."""
    queues = {queue_in(s, "managed") for s in range(SLOTS)}
    for q in queues:
        push(brokers[0], q, {"data": q})
    for each in brokers:
        view = httpx.get(f"{each.url}/api/cluster", timeout=10).json()["data"]
        assert {s["slot"]: s["owner"] for s in view["slots"]} == {
            s: preferred_broker(NAMES, s) for s in range(SLOTS)
        }
        listed = httpx.get(f"{each.url}/api/queues", timeout=10).json()["data"]
        names = [q["name"] for q in listed]
        assert queues <= set(names) and names == sorted(names), names
        for q in queues:
            jobs = httpx.get(f"{each.url}/api/queues/{q}/jobs?state=waiting", timeout=10)
            assert [j["data"] for j in jobs.json()["data"]] == [q], jobs.text


def flow_job(job_id: str, queue: str, **input: object) -> dict[str, object]:
    """One job of a PUSHF, as the bunqueue SDK sends it."""
    return {"id": job_id, "queue": queue, "input": {"data": {}, **input}}


def push_flow(b: ServerProcess, jobs: list[dict[str, object]]) -> None:
    with TcpClient("127.0.0.1", b.tcp_port) as tcp:
        tcp.call("PUSHF", jobs=jobs)


def pull_one(tcp: TcpClient, queue: str, timeout_ms: int = 10_000) -> dict[str, Any]:
    """A job of `queue` pulled on `tcp`, waiting up to `timeout_ms` for it (a job sent to
    its slot by another slot's outbox arrives after the push answered). Its lease ends
    with the connection, so keep that open until the job is acked."""
    pulled = tcp.call("PULL", queue=queue, timeout=timeout_ms, owner="flow-test")
    assert pulled.get("job"), f"nothing to pull from {queue}: {pulled}"
    return pulled


def wait_state(b: ServerProcess, job_id: str, state: str, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    seen = None
    while time.monotonic() < deadline:
        seen = httpx.get(f"{b.url}/jobs/{job_id}", timeout=10).json().get("job", {}).get("state")
        if seen == state:
            return
        time.sleep(0.05)
    raise AssertionError(f"{job_id} is {seen}, not {state}, after {within} s")


def test_a_flow_across_slots_completes_through_any_broker(
    brokers: list[ServerProcess],
) -> None:
    """The parent in slot 3, its children in slots 1 and 2, sent through b (to the
    first job's slot, whose outbox carries the others): each child runs through c and
    is acked with a result through a, then the parent runs and sees both results (the
    fronts probe its caller-chosen id past the slots that answer no values)."""
    a, b, c = brokers
    parent, q1, q2 = queue_in(3, "xflowp"), queue_in(1, "xflowc"), queue_in(2, "xflowc")
    children = ["xflow-c1", "xflow-c2"]
    push_flow(
        b,
        [
            flow_job("xflow-c1", q1, parentId="xflow-p"),
            flow_job("xflow-c2", q2, parentId="xflow-p"),
            flow_job("xflow-p", parent, childrenIds=children, dependsOn=children),
        ],
    )
    with (
        TcpClient("127.0.0.1", a.tcp_port) as tcp,
        TcpClient("127.0.0.1", b.tcp_port) as tb,
        TcpClient("127.0.0.1", c.tcp_port) as tc,
    ):
        for n, (child, queue) in enumerate(zip(children, [q1, q2], strict=True)):
            pulled = pull_one(tc, queue)
            assert pulled["job"]["id"] == child, pulled
            # The parent waits for the children still to finish.
            waiting = tcp.call("PULL", queue=parent, timeout=0, owner="flow-test")
            assert waiting.get("job") is None, waiting
            tcp.call("ACK", id=child, token=pulled["token"], result={"n": n})
        got = pull_one(tb, parent)
        assert got["job"]["id"] == "xflow-p", got
        values = tcp.call("GetChildrenValues", id="xflow-p")["data"]["values"]
    assert values == {f"{q1}:xflow-c1": {"n": 0}, f"{q2}:xflow-c2": {"n": 1}}, values
    # The dashboard's view of the parent's children, through any broker: both, although
    # their slots are not the parent's; each names its parent.
    for each in brokers:
        got = httpx.get(f"{each.url}/api/queues/{parent}/jobs/xflow-p/children", timeout=10)
        kids = {j["id"]: j for j in got.json()["data"]}
        assert sorted(kids) == children, got.text
        assert {j["parentId"] for j in kids.values()} == {"xflow-p"}, got.text
        assert {j["state"] for j in kids.values()} == {"completed"}, got.text


def test_the_sdks_flow_producer_spans_three_slots(brokers: list[ServerProcess]) -> None:
    """The stock SDK's FlowProducer through b: the parent's queue and its two children's
    queues are in three different slots; the children run first, and the parent reads
    both results (sdk/flow.ts, the script of the single-server contract test)."""
    base = next(
        q
        for q in (f"sdkflow{i}" for i in range(10_000))
        if len({queue_slot(q, SLOTS), queue_slot(f"{q}-a", SLOTS), queue_slot(f"{q}-b", SLOTS)})
        == 3
    )
    r: dict[str, Any] = run_sdk("flow", brokers[1].tcp_port, base)
    assert "error" not in r and "timedOut" not in r, r
    assert sorted(r["order"][:2]) == ["child-a", "child-b"] and r["order"][2:] == ["parent"], r
    a, b = r["childIds"]
    assert r["values"] == {f"{base}-a:{a}": {"doubled": 2}, f"{base}-b:{b}": {"doubled": 4}}, r


def test_a_child_failing_for_good_fails_its_parent_in_another_slot(
    brokers: list[ServerProcess],
) -> None:
    a, b, c = brokers
    parent, child = queue_in(3, "failp"), queue_in(1, "failc")
    push_flow(
        a,
        [
            flow_job("xfail-c", child, parentId="xfail-p", failParentOnFailure=True, attempts=1),
            flow_job("xfail-p", parent, childrenIds=["xfail-c"], dependsOn=["xfail-c"]),
        ],
    )
    with (
        TcpClient("127.0.0.1", b.tcp_port) as tb,
        TcpClient("127.0.0.1", c.tcp_port) as tc,
    ):
        pulled = pull_one(tb, child)
        tc.call("FAIL", id="xfail-c", token=pulled["token"], error="boom")
    wait_state(c, "xfail-c", "failed")
    for each in brokers:
        wait_state(each, "xfail-p", "failed")


def test_a_dependency_on_a_job_of_another_slot_waits_for_its_ack(
    brokers: list[ServerProcess],
) -> None:
    a, b, c = brokers
    first_q, then_q = queue_in(1, "dep"), queue_in(2, "dep")
    first = str(push(a, first_q, {"data": "first"})["id"])
    then = str(push(b, then_q, {"data": "then", "dependsOn": [first]})["id"])
    early = httpx.get(f"{c.url}/queues/{then_q}/jobs?timeout=300", timeout=10).json()
    assert early["job"] is None, early
    pulled = httpx.get(f"{c.url}/queues/{first_q}/jobs?timeout=5000", timeout=10).json()
    assert pulled["job"]["id"] == first, pulled
    acked = httpx.post(f"{a.url}/jobs/{first}/ack", json={"token": pulled["token"]}, timeout=10)
    assert acked.json() == {"ok": True}, acked.text
    ran = httpx.get(f"{b.url}/queues/{then_q}/jobs?timeout=10000", timeout=15).json()
    assert ran["job"] is not None and ran["job"]["id"] == then, ran


def test_flows_across_slots_survive_the_sigkill_of_their_childrens_owner(
    postgres: Postgres, tmp_path: Path
) -> None:
    """Flows whose parents' slot sends their children to a slot whose owner is then
    SIGKILLed, with the messages anywhere between the parent's log, the table and the
    child's log: the new owner creates every child exactly once, and every parent runs
    once its child is acked."""
    ns = "slots-xkill"
    brokers = start_brokers(postgres, tmp_path, ns)
    try:
        found = settled(postgres, ns, NAMES)
        parent_slot, child_slot = next(
            (p, c) for p in range(SLOTS) for c in range(SLOTS) if found[p] != found[c]
        )
        victim = NAMES.index(found[child_slot])
        survivor = brokers[NAMES.index(found[parent_slot])]
        pq, cq = queue_in(parent_slot, "killp"), queue_in(child_slot, "killc")
        flows = 30
        for i in range(flows):
            push_flow(
                survivor,
                [
                    flow_job(f"kp-{i}", pq, childrenIds=[f"kc-{i}"], dependsOn=[f"kc-{i}"]),
                    flow_job(f"kc-{i}", cq, parentId=f"kp-{i}"),
                ],
            )
        brokers[victim].kill()
        deadline = time.monotonic() + 10
        while slot_owners(postgres, ns)[child_slot] == NAMES[victim]:
            assert time.monotonic() < deadline, "the children's slot was not taken over"
            time.sleep(0.05)
        with TcpClient("127.0.0.1", survivor.tcp_port) as tcp:
            children = []
            for _ in range(flows):
                pulled = pull_one(tcp, cq)
                children.append(pulled["job"]["id"])
                tcp.call("ACK", id=pulled["job"]["id"], token=pulled["token"], result=1)
            assert sorted(children) == sorted(f"kc-{i}" for i in range(flows)), children
            again = tcp.call("PULL", queue=cq, timeout=500, owner="flow-test")
            assert again.get("job") is None, again
            parents = [pull_one(tcp, pq)["job"]["id"] for _ in range(flows)]
            assert sorted(parents) == sorted(f"kp-{i}" for i in range(flows)), parents
    finally:
        for b in brokers:
            b.kill()


def test_sigkill_of_the_broker_owning_most_slots_under_load(
    postgres: Postgres, tmp_path: Path
) -> None:
    ns = "slots-kill"
    brokers = start_brokers(postgres, tmp_path, ns)
    try:
        found = settled(postgres, ns, NAMES)
        counts = {n: list(found.values()).count(n) for n in NAMES}
        victim = max(NAMES, key=lambda n: counts[n])
        queues = [queue_in(s, "work") for s in range(SLOTS)]
        with Load(brokers, *queues) as load:
            time.sleep(1.5)
            killed = NAMES.index(victim)
            load.dead.add(killed)
            t_kill = time.monotonic()
            brokers[killed].kill()
            survivors = [n for n in NAMES if n != victim]
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                if set(slot_owners(postgres, ns).values()) <= set(survivors):
                    break
                time.sleep(0.05)
            moved = time.monotonic() - t_kill
            assert set(slot_owners(postgres, ns).values()) <= set(survivors), slot_owners(
                postgres, ns
            )
            time.sleep(1.5)
            load.stop()
            served = first_ok_after(load.ledger, t_kill)
        live = next(b for i, b in enumerate(brokers) if i != killed)
        load.drain(live.url, within=45)
        lost = set(load.ledger.pushed) - load.ledger.delivered
        assert not lost, f"{len(lost)} acknowledged pushes lost"
        assert not load.ledger.late, load.ledger.late[:5]
        assert moved <= TAKEOVER_S, f"slots taken over after {moved:.2f} s"
        assert served is not None and served <= TAKEOVER_S, served
    finally:
        for b in brokers:
            b.kill()
