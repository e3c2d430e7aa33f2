"""The readable (non-JSON) rendering of each kind of reply, laid out as bunqueue's CLI
lays it out, so that scripts reading one read the other."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from hopper.client.tcp import UNDEFINED
from hopper.client_cli.style import (
    BOLD,
    CYAN,
    DIM,
    GREEN,
    RED,
    YELLOW,
    absent,
    color,
    iso_time,
    pad,
    text,
    to_json,
)

Reply = Mapping[str, Any]


def _number(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def job_state(job: Reply) -> str:
    """The job's state, or one inferred from its times when the reply carries none."""
    state = job.get("state")
    if isinstance(state, str) and state:
        return state
    completed, started = _number(job.get("completedAt")), _number(job.get("startedAt"))
    attempts, max_attempts = _number(job.get("attempts")), _number(job.get("maxAttempts"))
    run_at = _number(job.get("runAt"))
    if completed > 0:
        return "completed"
    if max_attempts > 0 and attempts >= max_attempts and started > 0:
        return "unknown"
    if started > 0:
        return "active"
    if run_at > time.time() * 1000:
        return "delayed"
    if run_at == 0 and started == 0 and completed == 0:
        return "unknown"
    return "waiting"


def job_details(job: Reply) -> str:
    lines = [
        f"{color('Job:', BOLD)} {text(job.get('id'))}",
        f"  Queue:      {text(job.get('queue'))}",
        f"  State:      {job_state(job)}",
        f"  Priority:   {text(job.get('priority'))}",
        f"  Attempts:   {text(job.get('attempts'))}/{text(job.get('maxAttempts'))}",
        f"  Data:       {to_json(job.get('data'))}",
    ]
    progress = job.get("progress")
    if "progress" in job and progress is not UNDEFINED and progress != 0:
        lines.append(f"  Progress:   {text(progress)}%")
    if job.get("createdAt"):
        lines.append(f"  Created:    {iso_time(job['createdAt'])}")
    if job.get("startedAt"):
        lines.append(f"  Started:    {iso_time(job['startedAt'])}")
    if job.get("error"):
        lines.append(f"  Error:      {color(text(job['error']), RED)}")
    return "\n".join(lines)


def jobs_table(jobs: Sequence[Reply]) -> str:
    if not jobs:
        return color("No jobs found", YELLOW)
    header = " ".join(
        [
            pad(color("ID", BOLD), 20),
            pad(color("Queue", BOLD), 15),
            pad(color("State", BOLD), 12),
            pad(color("Priority", BOLD), 10),
            color("Attempts", BOLD),
        ]
    )
    rows = [
        " ".join(
            [
                pad(text(job.get("id")), 20),
                pad(text(job.get("queue")), 15),
                pad(text(job.get("state"), "-"), 12),
                pad(text(job.get("priority")), 10),
                f"{text(job.get('attempts'))}/{text(job.get('maxAttempts'))}",
            ]
        )
        for job in jobs
    ]
    return "\n".join([header, "-" * 75, *rows])


def stats(s: Reply) -> str:
    lines = [
        color("Server Statistics:", BOLD),
        "",
        f"  {color('Waiting:', CYAN)}     {text(s.get('waiting'), '0')}",
        f"  {color('Active:', GREEN)}      {text(s.get('active'), '0')}",
        f"  {color('Delayed:', YELLOW)}     {text(s.get('delayed'), '0')}",
        f"  {color('Completed:', DIM)}   {text(s.get('completed'), '0')}",
        f"  {color('Failed:', RED)}      {text(s.get('failed'), '0')}",
        f"  {color('DLQ:', RED)}         {text(s.get('dlq'), '0')}",
    ]
    if "totalPushed" in s:
        lines += [
            "",
            f"  Total Pushed:    {text(s.get('totalPushed'))}",
            f"  Total Pulled:    {text(s.get('totalPulled'))}",
            f"  Total Completed: {text(s.get('totalCompleted'))}",
            f"  Total Failed:    {text(s.get('totalFailed'))}",
        ]
    if "uptime" in s:
        uptime = s["uptime"]
        seconds = int(uptime // 1000) if isinstance(uptime, int | float) else uptime
        lines += ["", f"  {color('Uptime:', CYAN)}      {text(seconds)}s"]
    if "pushPerSec" in s:
        lines.append(f"  Push/sec:    {text(s['pushPerSec'])}")
    if "pullPerSec" in s:
        lines.append(f"  Pull/sec:    {text(s['pullPerSec'])}")
    return "\n".join(lines)


def counts(c: Any) -> str:
    if not isinstance(c, Mapping):
        return ""
    return "\n".join(f"  {key}: {text(value)}" for key, value in c.items())


def queues(names: Sequence[Any]) -> str:
    if not names:
        return color("No queues found", YELLOW)
    return "\n".join(f"  - {text(name)}" for name in names)


def crons(entries: Sequence[Reply]) -> str:
    if not entries:
        return color("No cron jobs found", YELLOW)
    blocks = []
    for cron in entries:
        schedule = cron.get("schedule")
        when = (
            text(schedule) if not absent(schedule) else f"every {text(cron.get('repeatEvery'))}ms"
        )
        block = (
            f"  {color(text(cron.get('name')), BOLD)}\n    Queue: {text(cron.get('queue'))}\n"
            f"    Schedule: {when}\n    Executions: {text(cron.get('executions'))}"
        )
        next_run = cron.get("nextRun")
        if isinstance(next_run, int | float) and not isinstance(next_run, bool):
            block += f"\n    Next run: {iso_time(next_run)}"
        if not absent(cron.get("maxLimit")):
            block += f"\n    Max: {text(cron.get('maxLimit'))}"
        if not absent(cron.get("timezone")):
            block += f"\n    Timezone: {text(cron.get('timezone'))}"
        blocks.append(block)
    return "\n\n".join(blocks)


def workers(entries: Sequence[Reply]) -> str:
    if not entries:
        return color("No workers registered", YELLOW)
    lines = []
    for worker in entries:
        listed = worker.get("queues")
        queue_names = ", ".join(text(q) for q in listed) if isinstance(listed, list) else "none"
        status = worker.get("status")
        if status == "stale":
            badge = color("[stale]", RED)
        elif "status" in worker and status is not UNDEFINED:
            badge = color(f"[{text(status)}]", GREEN)
        else:
            badge = ""
        extra = []
        if "concurrency" in worker:
            extra.append(f"concurrency={text(worker['concurrency'])}")
        if "activeJobs" in worker:
            extra.append(f"active={text(worker['activeJobs'])}")
        if "processedJobs" in worker:
            processed, failed = text(worker["processedJobs"]), text(worker.get("failedJobs"), "0")
            extra.append(f"processed={processed}/failed={failed}")
        tail = f"\n    {' '.join(extra)}" if extra else ""
        head = f"  {color(text(worker.get('id')), BOLD)}: {text(worker.get('name'))} {badge}"
        lines.append(f"{head} ({queue_names}){tail}")
    return "\n".join(lines)


def webhooks(entries: Sequence[Reply]) -> str:
    if not entries:
        return color("No webhooks registered", YELLOW)
    blocks = []
    for hook in entries:
        listed = hook.get("events")
        events = ", ".join(text(e) for e in listed) if isinstance(listed, list) else text(listed)
        disabled = f" {color('[disabled]', YELLOW)}" if hook.get("enabled") is False else ""
        block = f"  {color(text(hook.get('id')), BOLD)}: {text(hook.get('url'))}{disabled}"
        block += f"\n    Events: {events}"
        if not absent(hook.get("queue")):
            block += f"\n    Queue: {text(hook.get('queue'))}"
        if not absent(hook.get("successCount")) or not absent(hook.get("failureCount")):
            ok, failed = text(hook.get("successCount"), "0"), text(hook.get("failureCount"), "0")
            block += f"\n    Delivered: {ok} ok / {failed} failed"
        blocks.append(block)
    return "\n\n".join(blocks)


def dlq_jobs(jobs: Sequence[Reply]) -> str:
    if not jobs:
        return color("DLQ is empty", GREEN)
    blocks = []
    for job in jobs:
        job_id = job.get("jobId")
        shown = text(job.get("id") if absent(job_id) else job_id)
        if not absent(job.get("failedAt")):
            failed = iso_time(job["failedAt"])
        elif job.get("createdAt"):
            failed = iso_time(job["createdAt"])
        else:
            failed = "unknown"
        blocks.append(
            f"  {color(shown, BOLD)}\n    Queue: {text(job.get('queue'))}\n"
            f"    Error: {color(text(job.get('error'), 'Unknown'), RED)}\n    Failed: {failed}"
        )
    return "\n\n".join(blocks)


def logs(entries: Sequence[Reply]) -> str:
    if not entries:
        return color("No logs found", YELLOW)
    lines = []
    for entry in entries:
        level = entry.get("level")
        shade = RED if level == "error" else YELLOW if level == "warn" else DIM
        stamp = entry.get("timestamp")
        when = "unknown" if absent(stamp) else iso_time(stamp)
        shown = color(text(level).upper(), shade)
        lines.append(f"  [{when}] {shown}: {text(entry.get('message'))}")
    return "\n".join(lines)
