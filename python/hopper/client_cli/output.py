"""What a client command prints for a reply: the server's reply as JSON with `--json`
(as JavaScript's JSON.stringify would write it), otherwise a line or a table chosen by
the reply's shape, as bunqueue's CLI chooses."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hopper.client_cli import tables
from hopper.client_cli.style import GREEN, RED, YELLOW, absent, color, iso_time, text, to_json

Reply = Mapping[str, Any]


def error_text(message: str, as_json: bool) -> str:
    """A failure found on this side (bad arguments, no connection): one line."""
    if as_json:
        return to_json({"ok": False, "error": message})
    return color(f"Error: {message}", RED)


def reply_text(reply: Reply, command: str, as_json: bool, subcommand: str | None) -> str:
    """The rendering of a server reply (ok or not)."""
    shown = {k: v for k, v in reply.items() if k != "reqId"}
    if as_json:
        return to_json(shown, indent=2)
    if shown.get("ok") is not True:
        return error_text(text(shown.get("error"), "Unknown error"), False)
    return _success(shown, command, subcommand)


def _flatten(reply: Reply) -> dict[str, Any]:
    """A `data` object's keys lifted to the top, where the renderers look for them."""
    data = reply.get("data")
    if isinstance(data, Mapping):
        return {**reply, **data}
    return dict(reply)


def _collection(r: Reply, command: str) -> str | None:
    """A job, a list or a statistics block, if the reply holds one."""
    if "job" in r:
        job = r["job"]
        return color("No job available", YELLOW) if absent(job) else tables.job_details(job)
    if isinstance(r.get("jobs"), list):
        return tables.dlq_jobs(r["jobs"]) if command == "dlq" else tables.jobs_table(r["jobs"])
    if isinstance(r.get("workers"), list):
        return tables.workers(r["workers"])
    if isinstance(r.get("webhooks"), list):
        return tables.webhooks(r["webhooks"])
    for key in ("crons", "cronJobs"):
        if isinstance(r.get(key), list):
            return tables.crons(r[key])
    if isinstance(r.get("dlqJobs"), list):
        return tables.dlq_jobs(r["dlqJobs"])
    if isinstance(r.get("logs"), list):
        return tables.logs(r["logs"])
    if isinstance(r.get("stats"), Mapping):
        return tables.stats(r["stats"])
    if "counts" in r:
        return tables.counts(r["counts"])
    if isinstance(r.get("queues"), list) and "workerId" not in r:
        return tables.queues(r["queues"])
    return None


def _ids_verb(command: str, subcommand: str | None) -> str:
    if command == "push":
        return "Created"
    if command == "queue":
        return "Drained" if subcommand == "drain" else "Cleaned"
    if command == "dlq":
        return {"retry": "Retried", "purge": "Purged"}.get(subcommand or "", "Affected")
    return "Affected"


def _success(raw: Reply, command: str, subcommand: str | None) -> str:
    r = _flatten(raw)
    if command == "push" and isinstance(r.get("id"), str):
        return color(f"Job created: {r['id']}", GREEN)
    if isinstance(r.get("ids"), list):
        ids = ", ".join(text(i) for i in r["ids"])
        verb = _ids_verb(command, subcommand)
        return color(f"{verb} {len(r['ids'])} jobs{': ' + ids if ids else ''}", GREEN)
    if (collection := _collection(r, command)) is not None:
        return collection
    if "workerId" in r:
        return color(f"Worker registered: {text(r['workerId'])}", GREEN)
    if "webhookId" in r:
        return color(f"Webhook added: {text(r['webhookId'])}", GREEN)
    cron = r.get("cron")
    if isinstance(cron, Mapping):
        next_run = cron.get("nextRun")
        when = ""
        if isinstance(next_run, int | float) and not isinstance(next_run, bool):
            when = f" (next run: {iso_time(next_run)})"
        return color(f"Cron scheduled: {text(cron.get('name'))}{when}", GREEN)
    if "state" in r:
        return f"State: {text(r['state'])}"
    if "result" in r:
        if absent(r["result"]):
            return color("No result available (job not completed or result was removed)", YELLOW)
        return f"Result: {to_json(r['result'], indent=2)}"
    if "progress" in r:
        message = f" - {text(r['message'])}" if r.get("message") else ""
        return f"Progress: {text(r['progress'])}%{message}"
    if "paused" in r:
        return color("Queue is paused", YELLOW) if r["paused"] else color("Queue is active", GREEN)
    if "count" in r:
        return f"Count: {text(r['count'])}"
    if isinstance(r.get("metrics"), str):
        return str(r["metrics"])
    return color("OK", GREEN)
