"""`hopper bench` against real servers: every scenario over HTTP, WS and bunqueue's TCP
protocol (what the run sent is what the server answered and holds), the exports (.hgrm
parsed back, .hlog decoded, PNG checked, JSON), the open loop's coordinated-omission
correction, --compare of two servers (and --rounds), and --start. Each run is bounded by
--count or --duration (a second or so)."""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path
from typing import Any

import pytest
from hopper.bench import histograms
from hopper.cli import main
from support import Server, ServerFactory

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
HGRM_LINE = re.compile(r"^\s*(\d+\.\d+)\s+(\d\.\d{12})\s+(\d+)(?:\s+(\d+\.\d+|inf))?\s*$")


def bench(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["bench", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def parse_hgrm(text: str) -> tuple[list[tuple[float, float, int]], dict[str, float]]:
    """Rows (value ms, percentile, total count) and the footer fields of a `.hgrm`."""
    lines = text.splitlines()
    assert lines[0].split() == ["Value", "Percentile", "TotalCount", "1/(1-Percentile)"]
    assert lines[1] == ""
    rows: list[tuple[float, float, int]] = []
    footer: dict[str, float] = {}
    for line in lines[2:]:
        if line.startswith("#["):
            for key, value in re.findall(r"(\w[\w ]*?)\s*=\s*([\d.]+)", line):
                footer[key.strip()] = float(value)
            continue
        m = HGRM_LINE.match(line)
        assert m, f"not a percentile line: {line!r}"
        rows.append((float(m.group(1)), float(m.group(2)), int(m.group(3))))
    return rows, footer


def check_hgrm(path: Path, expected_count: int) -> None:
    rows, footer = parse_hgrm(path.read_text())
    assert len(rows) >= 2
    values = [r[0] for r in rows]
    percentiles = [r[1] for r in rows]
    counts = [r[2] for r in rows]
    assert values == sorted(values) and values[0] > 0
    assert percentiles == sorted(percentiles) and percentiles[-1] == 1.0
    assert counts == sorted(counts)
    assert counts[-1] == expected_count
    assert footer["Total count"] == expected_count
    assert footer["Max"] == pytest.approx(values[-1], abs=0.002)
    assert {"Mean", "StdDeviation", "Buckets", "SubBuckets"} <= set(footer)


def hlog_histograms(path: Path) -> dict[str, Any]:
    lines = path.read_text().splitlines()
    assert lines[0].startswith("#[Histogram log format version")
    assert any(line.startswith('"StartTimestamp"') for line in lines)
    out: dict[str, Any] = {}
    for line in lines:
        if line.startswith("Tag="):
            tag, start, length, top, blob = line[4:].split(",")
            assert float(start) >= 0 and float(length) > 0 and float(top) > 0
            hist = histograms.decode(blob)
            assert int(hist.get_max_value()) / 1000 == pytest.approx(float(top), rel=0.01)
            out[tag] = hist
    return out


def check_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    width, height = struct.unpack(">II", data[16:24])  # the IHDR chunk comes first
    assert (width, height) == (1000, 600)
    assert len(data) > 10_000


def load_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())  # type: ignore[no-any-return]


def conn_args(transport: str, server: Server) -> list[str]:
    if transport == "http":
        return ["-c", "4"]
    tcp = ["--tcp-port", str(server.tcp_port)] if transport == "tcp" else []
    return ["-c", "2", "--window", "8", *tcp]


BATCH = 5
# (series, measured operations of each) for --count 300, and the jobs left in the queue
EXPECTED: dict[str, tuple[list[str], int, int]] = {
    "push": (["push"], 300, 300),
    "bulk": (["bulk"], 300, 300 * BATCH),
    "pullack": (["pullack"], 300, 0),
    "e2e": (["e2e"], 300, 0),
    "mixed": (["push", "pullack"], 150, 0),  # --count is split by --mix (1:1)
}


@pytest.mark.parametrize("transport", ["http", "ws", "tcp"])
@pytest.mark.parametrize("scenario", ["push", "bulk", "pullack", "e2e", "mixed"])
def test_scenario_smoke_run_and_exports(
    server: Server,
    queue: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    scenario: str,
    transport: str,
) -> None:
    series, each, left = EXPECTED[scenario]
    code, out, err = bench(
        capsys,
        "--url",
        server.url,
        "--scenario",
        "pull+ack" if scenario == "pullack" else scenario,
        "--transport",
        transport,
        *conn_args(transport, server),
        "--count",
        "300",
        "--batch",
        str(BATCH),
        "--warmup",
        "0",
        "--queue",
        queue,
        "--keep",
        "--hgrm",
        str(tmp_path / "run.hgrm"),
        "--hlog",
        str(tmp_path / "run.hlog"),
        "--json",
        str(tmp_path / "run.json"),
        "--png",
        str(tmp_path / "run.png"),
    )
    assert code == 0, out + err
    for name in series:
        assert re.search(rf"\|\s*{name}\s*\|\s*closed loop\s*\|\s*{each}\s*\|", out), out
    assert "done" in err  # the progress line's last state
    assert "nan" not in err.lower() and "nan" not in out.lower()
    check_hgrm(tmp_path / "run.hgrm", each)
    if scenario == "mixed":
        check_hgrm(
            tmp_path / f"run.{server.url.split('://')[1].replace(':', '_')}.pullack.hgrm", each
        )
    logged = hlog_histograms(tmp_path / "run.hlog")
    assert [tag.rsplit(".", 1)[-1] for tag in logged] == series
    assert all(histograms.count(h) == each for h in logged.values())
    check_png(tmp_path / "run.png")
    report = load_json(tmp_path / "run.json")
    (run,) = report["runs"]
    assert [s["name"] for s in run["series"]] == series
    for s in run["series"]:
        assert s["count"] == each and s["errors"] == 0
        assert s["rate_per_s"] > 0
        p = s["latency_ms"]
        assert 0 < p["p50"] <= p["p90"] <= p["p99"] <= p["p99.9"] <= p["max"]
        assert histograms.count(histograms.decode(s["hdr_histogram"])) == each
    generator = run["generator"]
    assert generator["threads"] == 1 and generator["cpu_s"] >= 0 and generator["wall_s"] > 0
    # what was sent was answered, and the server holds exactly that: the pushes (plus
    # pullack's pre-fill) less what was pulled and acked
    counts = server.client.get(f"/api/queues/{queue}").json()["data"]["counts"]
    if scenario == "pullack":
        prefilled = int(re.search(r"pre-filled (\d+) jobs", out).group(1))  # type: ignore[union-attr]
        assert counts["waiting"] == prefilled - each
    else:
        assert counts["waiting"] == left
    assert counts["active"] == 0
    assert counts["completed"] == (0 if scenario in ("push", "bulk") else each)


@pytest.mark.parametrize("transport", ["http", "ws", "tcp"])
def test_payload_size_is_the_size_of_the_stored_data(
    server: Server, queue: str, capsys: pytest.CaptureFixture[str], transport: str
) -> None:
    """--payload-size sets the size of each job's data as compact JSON, whatever the
    transport carries it in (TCP sends msgpack, which the server stores as JSON)."""
    size = 2048
    code, out, err = bench(
        capsys,
        "--url",
        server.url,
        "--transport",
        transport,
        *conn_args(transport, server),
        "--count",
        "20",
        "--warmup",
        "0",
        "--payload-size",
        str(size),
        "--queue",
        queue,
        "--keep",
        "--quiet",
    )
    assert code == 0, out + err
    resp = server.client.get(f"/api/queues/{queue}/jobs", params={"state": "waiting"})
    assert resp.status_code == 200, resp.text
    jobs = resp.json()["data"]
    assert len(jobs) == 20
    sizes = {len(json.dumps(j["data"], separators=(",", ":")).encode()) for j in jobs}
    # the standard payload is ~90 bytes; padded, it is the size asked for within a few
    # bytes (JSON re-encoding may space or order numbers differently)
    assert all(abs(s - size) <= 8 for s in sizes), sizes


def test_pullb_over_tcp_acks_whole_batches(
    server: Server, queue: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """PULLB of --batch jobs, then one ACKB of them: one operation per batch, every job it
    brought acked (the server holds them as completed)."""
    code, out, err = bench(
        capsys,
        "--url",
        server.url,
        "--scenario",
        "pullb-ackb",
        *conn_args("tcp", server),
        "-t",
        "tcp",
        "--count",
        "30",
        "--batch",
        "10",
        "--warmup",
        "0",
        "--queue",
        queue,
        "--keep",
        "--json",
        str(tmp_path / "pullb.json"),
    )
    assert code == 0, out + err
    assert re.search(r"\|\s*pullb\s*\|\s*closed loop\s*\|\s*30\s*\|", out), out
    assert "10 jobs per request" in out
    assert re.search(r"pullb: 300 jobs, [\d,]+ jobs/s", out), out
    (run,) = load_json(tmp_path / "pullb.json")["runs"]
    (s,) = run["series"]
    assert (s["name"], s["count"], s["jobs"], s["errors"]) == ("pullb", 30, 300, 0)
    assert s["jobs_per_s"] == pytest.approx(10 * s["rate_per_s"])
    prefilled = int(re.search(r"pullb: pre-filled (\d+) jobs", out).group(1))  # type: ignore[union-attr]
    counts = server.client.get(f"/api/queues/{queue}").json()["data"]["counts"]
    assert (counts["waiting"], counts["active"]) == (prefilled - 300, 0)
    assert counts["completed"] == 300

    # PULLB and ACKB are commands of the TCP protocol only
    code, _out, err = bench(capsys, "--url", server.url, "-s", "pullb", "--count", "5")
    assert code == 2
    assert "pullb runs on the tcp transport only" in err


def test_open_loop_corrects_for_coordinated_omission(
    server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One HTTP connection asked for far more than it can do: requests fall behind the
    timetable, so latency counted from the intended send time exceeds latency from the
    actual send."""
    code, out, err = bench(
        capsys,
        "--url",
        server.url,
        "-c",
        "1",
        "--rate",
        "20000",
        "--duration",
        "0.5",
        "--warmup",
        "0",
        "--json",
        str(tmp_path / "open.json"),
        "--hgrm",
        str(tmp_path / "open.hgrm"),
        "--png",
        str(tmp_path / "open.png"),
    )
    assert code == 0, out + err
    assert "open loop at 20,000/s" in out
    assert "from intended" in out and "from sent" in out
    (run,) = load_json(tmp_path / "open.json")["runs"]
    corrected, uncorrected = run["series"]
    assert (corrected["latency"], uncorrected["latency"]) == ("corrected", "uncorrected")
    assert corrected["count"] == uncorrected["count"] > 0
    for p in ("p50", "p90", "p99", "p99.9", "max"):
        assert corrected["latency_ms"][p] >= uncorrected["latency_ms"][p]
    # far behind schedule: the backlog dominates the corrected tail
    assert corrected["latency_ms"]["p99"] > 5 * uncorrected["latency_ms"]["p99"]
    check_hgrm(tmp_path / "open.hgrm", corrected["count"])
    uncorrected_files = list(tmp_path.glob("open.*.push.uncorrected.hgrm"))
    assert len(uncorrected_files) == 1
    check_hgrm(uncorrected_files[0], uncorrected["count"])
    check_png(tmp_path / "open.png")


def test_compare_two_servers(
    server: Server,
    start_server: ServerFactory,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    other = start_server()
    code, out, err = bench(
        capsys,
        "--url",
        server.url,
        "--label",
        "first",
        "--compare",
        other.url,
        "--compare-label",
        "second",
        "--transport",
        "ws",
        "--window",
        "8",
        "--count",
        "200",
        "--rounds",
        "2",
        "--warmup",
        "0.2",
        "--json",
        str(tmp_path / "cmp.json"),
        "--hlog",
        str(tmp_path / "cmp.hlog"),
        "--png",
        str(tmp_path / "cmp.png"),
    )
    assert code == 0, out + err
    assert re.search(r"\|\s*first\s*\|\s*push\s*\|", out), out
    assert re.search(r"\|\s*second\s*\|\s*push\s*\|", out), out
    assert re.search(r"\|\s*second/first\s*\|\s*push\s*\|.*\d\.\d\dx", out), out
    assert "[first]" in err and "[second]" in err  # a progress line for each
    # two rounds, alternating: first, second, first, second
    order = [m.group(1) for m in re.finditer(r"\[(first|second)\][^\n]* done", err)]
    assert order == ["first", "second", "first", "second"], err
    assert "2 rounds, alternating" in out
    report = load_json(tmp_path / "cmp.json")
    assert [r["label"] for r in report["runs"]] == ["first", "second"]
    assert [r["url"] for r in report["runs"]] == [server.url, other.url]
    assert all(r["series"][0]["count"] == 400 for r in report["runs"])
    assert set(hlog_histograms(tmp_path / "cmp.hlog")) == {"first.push", "second.push"}
    check_png(tmp_path / "cmp.png")


def test_start_runs_its_own_server_and_stops_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = bench(
        capsys, "--start", "--count", "100", "--warmup", "0", "-c", "2", "--quiet"
    )
    assert code == 0, out + err
    assert re.search(r"\|\s*hopper\s*\|\s*push\s*\|\s*closed loop\s*\|\s*100\s*\|", out), out
    assert err == ""  # --quiet: no progress line


def test_unreachable_server_is_reported(capsys: pytest.CaptureFixture[str]) -> None:
    from support import free_port

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    for args, opened in (
        (["-t", "ws"], f"ws://127.0.0.1:{port}/ws"),
        (["-c", "1"], url),
        (["-t", "tcp", "--tcp-port", str(port)], f"tcp://127.0.0.1:{port}"),
    ):
        code, _out, err = bench(capsys, "--url", url, *args, "--count", "5", "--quiet")
        assert code == 2
        assert f"cannot open {opened}" in err


def _queue_names(server: Server) -> list[str]:
    resp = server.client.get("/api/queues")
    assert resp.status_code == 200, resp.text
    return sorted(q["name"] for q in resp.json()["data"])


@pytest.mark.parametrize("transport", ["http", "ws", "tcp"])
def test_a_run_removes_the_queues_it_created(
    start_server: ServerFactory, capsys: pytest.CaptureFixture[str], transport: str
) -> None:
    """A bench against --url leaves nothing behind: its fresh queues (and, with
    --compare, the second server's) are obliterated at the end; --keep leaves them."""
    first, second = start_server(), start_server()
    common = ["--count", "200", "--warmup", "0", "-c", "2", "--quiet", "-t", transport]
    common += ["--tcp-port", str(first.tcp_port), "--compare-tcp-port", str(second.tcp_port)]
    for scenario in ("push", "e2e"):
        code, out, err = bench(
            capsys, "--url", first.url, "--compare", second.url, "-s", scenario, *common
        )
        assert code == 0, out + err
        # one line per server, each naming its one queue
        removed = re.findall(
            r"^.*: queue bench-\S+ and its jobs removed \(--keep keeps them\)$", out, re.M
        )
        assert len(removed) == 2, out
        assert _queue_names(first) == [] and _queue_names(second) == []

    # a few queues are named, more are counted; the words agree in number either way
    code, out, err = bench(capsys, "--url", first.url, "--queues", "3", *common)
    assert code == 0, out + err
    names = r"bench-push-(\w+)-0, bench-push-\1-1, bench-push-\1-2"
    assert re.search(rf": queues {names} and their jobs removed \(--keep", out), out
    assert _queue_names(first) == []
    code, out, err = bench(capsys, "--url", first.url, "--queues", "4", *common)
    assert code == 0, out + err
    assert ": 4 queues and their jobs removed (--keep keeps them)" in out, out
    assert _queue_names(first) == []

    code, out, err = bench(capsys, "--url", first.url, "--keep", "--queues", "2", *common)
    assert code == 0, out + err
    kept = _queue_names(first)
    assert len(kept) == 2 and all(q.startswith("bench-push-") for q in kept)
    waiting = [
        first.client.get(f"/api/queues/{q}").json()["data"]["counts"]["waiting"] for q in kept
    ]
    assert sum(waiting) == 200 and all(w > 0 for w in waiting)  # round-robin over both


def test_a_queue_that_existed_before_the_run_is_kept(
    start_server: ServerFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    srv = start_server()
    assert srv.client.post("/queues/mine/jobs", json={"data": "precious"}).status_code == 200
    code, out, err = bench(
        capsys, "--url", srv.url, "--queue", "mine", "--count", "50", "--warmup", "0", "--quiet"
    )
    assert code == 0, out + err
    assert "queue mine existed before the run: kept" in err
    assert _queue_names(srv) == ["mine"]
    code, out, err = bench(
        capsys, "--url", srv.url, "--queue", "fresh", "--count", "50", "--warmup", "0", "--quiet"
    )
    assert code == 0, out + err
    assert _queue_names(srv) == ["mine"]
