"""bunqueue's webhooks: a registry of URLs that get an HTTP POST for chosen job events
(`AddWebhook`, `RemoveWebhook`, `ListWebhooks`, `SetWebhookEnabled`), and their delivery.

Registry: a single server keeps it in `<data_dir>/webhooks.json` (rewritten whole and
atomically on every change: temp file, fsync, rename; nothing on disk with --memory),
loaded at start-up. A cluster keeps it in PostgreSQL (`hopper_webhooks`), which every
slot server loads at start-up and reads again every `REFRESH_S`, so a webhook added
through any broker fires from each slot's owner for that slot's events. Either way a
change is written first (off the event loop, one change at a time) and made only once
written. Delivery counters and `lastTriggered` live in memory only, per process.

Delivery: while at least one webhook is enabled, a sink on the event hub takes the engine's
events (pushed, pulled, completed, failed, progress → job.pushed, job.started,
job.completed, job.failed, job.progress), keeps those a webhook wants (event and queue),
and puts one delivery per webhook on a bounded queue; when it is full the delivery is
dropped and counted, so a slow receiver never holds the engine or the event loop. A few
sender tasks POST them with httpx: the reference's body and headers (signature:
HMAC-SHA256 of the body with the webhook's secret, in hex), a timeout, and up to
`webhook_max_retries` attempts with exponential backoff."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import ipaddress
import os
import re
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson

from hopper._engine import WebhookStore
from hopper.engine import Engine
from hopper.errors import HopperError
from hopper.server.config import ServerConfig
from hopper.server.events import EventHub, Framer

WEBHOOK_EVENTS = ("job.pushed", "job.started", "job.completed", "job.failed", "job.progress")
# The engine's event type → the webhook event (the reference's mapping).
_WEBHOOK_EVENT_OF = {
    "pushed": "job.pushed",
    "pulled": "job.started",
    "completed": "job.completed",
    "failed": "job.failed",
    "progress": "job.progress",
}
FILE_NAME = "webhooks.json"
SENDERS = 4
MAX_URL_CHARS = 2048
# How often a cluster's slot server reads the registry again.
REFRESH_S = 1.0


class WebhookError(ValueError):
    """A command's input is refused; the message is the reply's `error`."""


@dataclass
class Webhook:
    id: str
    url: str
    events: list[str]
    queue: str | None
    secret: str | None
    created_at: int
    enabled: bool = True
    last_triggered: int | None = None
    success_count: int = 0
    failure_count: int = 0

    def listed(self) -> dict[str, Any]:
        """The webhook as `ListWebhooks` shows it (no secret)."""
        return {
            "id": self.id,
            "url": self.url,
            "events": self.events,
            "queue": self.queue,
            "createdAt": self.created_at,
            "lastTriggered": self.last_triggered,
            "successCount": self.success_count,
            "failureCount": self.failure_count,
            "enabled": self.enabled,
        }

    def stored(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "url": self.url,
            "events": self.events,
            "queue": self.queue,
            "secret": self.secret,
            "createdAt": self.created_at,
            "enabled": self.enabled,
        }

    @classmethod
    def from_stored(cls, v: dict[str, Any]) -> Webhook:
        return cls(
            id=str(v["id"]),
            url=str(v["url"]),
            events=[str(e) for e in v["events"]],
            queue=v.get("queue"),
            secret=v.get("secret"),
            created_at=int(v["createdAt"]),
            enabled=bool(v.get("enabled", True)),
        )


# ----- the reference's URL rules (SSRF prevention) -------------------------------------

_IPV4 = re.compile(r"^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$")


def _private_ipv4(host: str) -> str | None:
    m = _IPV4.match(host)
    if not m:
        return None
    a, b = int(m[1]), int(m[2])
    if a == 10 or (a == 172 and 16 <= b <= 31) or (a == 192 and b == 168):
        return "Webhook URL cannot point to private IP"
    if a == 169 and b == 254:
        return "Webhook URL cannot point to link-local IP"
    if a == 0:
        return "Webhook URL cannot point to unspecified IP"
    if a == 127:
        return "Webhook URL cannot point to loopback IP"
    return None


def _mapped_ipv4(host: str) -> str | None:
    """The IPv4 address an IPv4-mapped or IPv4-compatible IPv6 literal embeds."""
    try:
        addr = ipaddress.IPv6Address(host)
    except ValueError:
        return None
    if addr.ipv4_mapped is not None:
        return str(addr.ipv4_mapped)
    packed = addr.packed
    if packed[:12] == bytes(12) and int(addr) > 0xFFFF:  # ::a.b.c.d
        return str(ipaddress.IPv4Address(packed[12:]))
    return None


def _blocked_ipv6(host: str) -> str | None:
    if ":" not in host:
        return None
    try:
        addr = ipaddress.IPv6Address(host)
    except ValueError:
        return None
    if addr.is_unspecified:
        return "Webhook URL cannot point to unspecified IP"
    if addr in ipaddress.IPv6Network("fc00::/7"):
        return "Webhook URL cannot point to private (ULA) IP"
    if addr in ipaddress.IPv6Network("fe80::/10"):
        return "Webhook URL cannot point to link-local IP"
    return None


def validate_url(url: object, allow_private: bool = False) -> str | None:
    """The reference's error for a webhook URL, or None if it may be used. With
    `allow_private` (a hopper option) loopback, private, link-local and metadata hosts are
    allowed; the form and scheme rules still apply."""
    if url is None or url == "":
        return "Webhook URL is required"
    if not isinstance(url, str):
        return "Invalid URL format"
    if len(url) > MAX_URL_CHARS:
        return "Webhook URL too long (max 2048 characters)"
    try:
        parts = urlsplit(url.strip())
        host = (parts.hostname or "").lower()
        parts.port  # noqa: B018  (raises on a bad port)
    except ValueError:
        return "Invalid URL format"
    if not parts.scheme:
        return "Invalid URL format"
    if parts.scheme.lower() not in ("http", "https"):
        return "Webhook URL must use http or https protocol"
    if not host:
        return "Invalid URL format"
    if allow_private:
        return None
    if host in ("localhost", "127.0.0.1", "::1") or host.endswith(".localhost"):
        return "Webhook URL cannot point to localhost"
    mapped = _mapped_ipv4(host)
    if mapped is not None and (err := _private_ipv4(mapped)):
        return err
    if err := _blocked_ipv6(host):
        return err
    if err := _private_ipv4(host):
        return err
    if host == "metadata.google.internal" or host.endswith(".internal"):
        return "Webhook URL cannot point to cloud metadata endpoints"
    return None


# ----- the registry and its file --------------------------------------------------------


def _write_atomically(path: str, data: bytes) -> None:
    """Temp file in the same directory, fsync, rename, fsync of the directory."""
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix=".webhooks-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class FileRegistry:
    """A single server's registry: `<data_dir>/webhooks.json`, or none with --memory."""

    refresh_s: float | None = None

    def __init__(self, path: str | None) -> None:
        self.path = path

    def read(self) -> list[Webhook]:
        """The webhooks in the file, if there is one (a damaged file is reported and set
        aside as `webhooks.json.bad`, so that the server still starts)."""
        if self.path is None or not os.path.exists(self.path):
            return []
        try:
            with open(self.path, "rb") as f:
                stored = orjson.loads(f.read())
            return [Webhook.from_stored(v) for v in stored["webhooks"]]
        except (OSError, ValueError, KeyError, TypeError) as e:
            print(f"[WARNING] hopper: {self.path} unreadable ({e}); set aside", file=sys.stderr)
            with contextlib.suppress(OSError):
                os.replace(self.path, self.path + ".bad")
            return []

    def add(self, hooks: dict[str, Webhook], hook: Webhook) -> None:
        self._save([*(h.stored() for h in hooks.values()), hook.stored()])

    def remove(self, hooks: dict[str, Webhook], webhook_id: str) -> bool:
        if webhook_id not in hooks:
            return False
        self._save([h.stored() for k, h in hooks.items() if k != webhook_id])
        return True

    def set_enabled(self, hooks: dict[str, Webhook], webhook_id: str, enabled: bool) -> bool:
        if webhook_id not in hooks:
            return False
        if hooks[webhook_id].enabled == enabled:
            return True
        docs = [h.stored() for h in hooks.values()]
        for doc in docs:
            if doc["id"] == webhook_id:
                doc["enabled"] = enabled
        self._save(docs)
        return True

    def _save(self, docs: list[dict[str, Any]]) -> None:
        if self.path is None:
            return
        data = orjson.dumps({"webhooks": docs}, option=orjson.OPT_INDENT_2)
        try:
            _write_atomically(self.path, data)
        except OSError as e:
            raise WebhookError(f"Cannot save webhooks: {e}") from None


class ClusterRegistry:
    """A cluster's registry: the `hopper_webhooks` rows of its namespace. Whether a
    webhook exists is the table's to say (another broker may have added or removed it
    since this server last read it)."""

    refresh_s: float | None = REFRESH_S

    def __init__(self, url: str, namespace: str) -> None:
        self._store = WebhookStore(url=url, namespace=namespace)

    def read(self) -> list[Webhook]:
        """The table's webhooks (blocks: off the event loop once serving). A row this
        build cannot read is skipped, saying so."""
        try:
            rows = self._store.list()
        except HopperError as e:
            raise WebhookError(f"Cannot read webhooks: {e}") from None
        hooks = []
        for webhook_id, doc in rows:
            try:
                hooks.append(Webhook.from_stored(orjson.loads(doc)))
            except (ValueError, KeyError, TypeError) as e:
                print(f"[WARNING] hopper: webhook {webhook_id} unreadable ({e})", file=sys.stderr)
        # Listed in the order they were added, as a single server lists them.
        return sorted(hooks, key=lambda h: (h.created_at, h.id))

    def add(self, hooks: dict[str, Webhook], hook: Webhook) -> None:
        self._write(self._store.insert, hook.id, orjson.dumps(hook.stored()).decode())

    def remove(self, hooks: dict[str, Webhook], webhook_id: str) -> bool:
        return bool(self._write(self._store.delete, webhook_id))

    def set_enabled(self, hooks: dict[str, Webhook], webhook_id: str, enabled: bool) -> bool:
        return bool(self._write(self._store.set_enabled, webhook_id, enabled))

    @staticmethod
    def _write(call: Callable[..., Any], *args: Any) -> Any:
        try:
            return call(*args)
        except HopperError as e:
            raise WebhookError(f"Cannot save webhooks: {e}") from None


Registry = FileRegistry | ClusterRegistry


class _Sink:
    """The hub's view of the runner: every queue, only the webhook event types."""

    def __init__(self, runner: Webhooks) -> None:
        self.queue: str | None = None
        self.frame: Framer | None = runner.frame
        self.accept: Callable[[str], bool] | None = runner.wants_queue
        self._runner = runner

    def offer(self, item: bytes) -> None:
        self._runner.offer(item)

    def close(self) -> None:
        """The hub ends its streams at shutdown; the runner stops on its own."""


Delivery = tuple[Webhook, str, int, bytes]  # webhook, event, timestamp, body


class Webhooks:
    """The registry and its delivery (see the module notes)."""

    def __init__(self, config: ServerConfig, hub: EventHub, engine: Engine) -> None:
        self.allow_private = config.webhook_allow_private_urls
        self.max_attempts = config.webhook_max_retries
        self.retry_delay_s = config.webhook_retry_delay_ms / 1000
        self.timeout_s = config.webhook_timeout_ms / 1000
        self.queue_size = config.webhook_queue_size
        self.registry: Registry
        if config.postgres_url:
            self.registry = ClusterRegistry(config.postgres_url, config.namespace)
        else:
            path = None if config.memory else os.path.join(config.data_dir, FILE_NAME)
            self.registry = FileRegistry(path)
        self._hub = hub
        self._engine = engine
        self.hooks: dict[str, Webhook] = {}
        self.dropped = 0
        self._sink = _Sink(self)
        self._attached = False
        self._pending: asyncio.Queue[Delivery] | None = None
        self._senders: list[asyncio.Task[None]] = []
        self._client: httpx.AsyncClient | None = None
        self._stopping = False
        self._all_queues = False
        self._queues: set[str] = set()
        # Bumped by every change made here: a refresh read before it is not applied.
        self._generation = 0
        # Changes are written one at a time (the file is rewritten whole).
        self._writing = asyncio.Lock()
        self._refresher: asyncio.Task[None] | None = None

    # ----- the registry --------------------------------------------------------------

    def load(self) -> None:
        """Reads the registry at start-up. A cluster's table that cannot be read is
        reported; the server starts without webhooks and reads it again shortly."""
        try:
            hooks = self.registry.read()
        except WebhookError as e:
            print(f"[WARNING] hopper: {e}", file=sys.stderr)
            return
        self._apply({h.id: h for h in hooks})

    async def add(self, url: object, events: object, queue: object, secret: object) -> Webhook:
        if error := validate_url(url, self.allow_private):
            raise WebhookError(error)
        if not isinstance(events, list):
            raise WebhookError("events must be an array of webhook events")
        invalid = [str(e) for e in events if e not in WEBHOOK_EVENTS]
        if invalid:
            raise WebhookError(
                f"Invalid webhook event(s): {', '.join(invalid)}. "
                f"Valid: {', '.join(WEBHOOK_EVENTS)}"
            )
        if queue is not None and not isinstance(queue, str):
            raise WebhookError("queue must be a string")
        if secret is not None and not isinstance(secret, str):
            raise WebhookError("secret must be a string")
        assert isinstance(url, str)
        hook = Webhook(
            id=str(uuid.uuid4()),
            url=url,
            events=list(events),
            queue=queue,
            secret=secret,
            created_at=int(time.time() * 1000),
        )

        def added(_: object) -> dict[str, Webhook]:
            return {**self.hooks, hook.id: hook}

        await self._change(self.registry.add, added, hook)
        return hook

    async def remove(self, webhook_id: object) -> bool:
        if not isinstance(webhook_id, str):
            return False

        def removed(found: object) -> dict[str, Webhook] | None:
            return {k: h for k, h in self.hooks.items() if k != webhook_id} if found else None

        return await self._change(self.registry.remove, removed, webhook_id)

    async def set_enabled(self, webhook_id: object, enabled: bool) -> bool:
        if not isinstance(webhook_id, str):
            return False

        def updated(found: object) -> dict[str, Webhook] | None:
            if not found:
                return None
            # A webhook only the table knows yet comes with the next refresh.
            if (hook := self.hooks.get(webhook_id)) is not None:
                hook.enabled = enabled
            return self.hooks

        return await self._change(self.registry.set_enabled, updated, webhook_id, enabled)

    async def _change(
        self,
        write: Callable[..., Any],
        after: Callable[[Any], dict[str, Webhook] | None],
        *args: Any,
    ) -> bool:
        """Writes a change (`write(hooks, *args)`, in a thread), then makes the registry
        `after(what write returned)`, unless that is None (nothing to change). Shielded:
        a connection that closes meanwhile does not leave a change written and not made."""

        async def written() -> bool:
            async with self._writing:
                found = await asyncio.to_thread(write, self.hooks, *args)
                hooks = after(found)
                if hooks is None:
                    return False
                self._apply(hooks)
                return True

        return await asyncio.shield(written())

    def _apply(self, hooks: dict[str, Webhook]) -> None:
        """Makes `hooks` (already saved) the registry here."""
        self.hooks = hooks
        self._generation += 1
        self._changed()

    def _refreshed(self, stored: list[Webhook], generation: int) -> None:
        """Takes the table's webhooks, unless a change made here since the read began
        (the next read has it). Webhooks kept keep their counters and `lastTriggered`
        (and the object deliveries in flight hold)."""
        if generation != self._generation:
            return
        hooks = {}
        for new in stored:
            old = self.hooks.get(new.id)
            if old is not None:
                old.url, old.events, old.queue = new.url, new.events, new.queue
                old.secret, old.enabled = new.secret, new.enabled
                new = old
            hooks[new.id] = new
        self.hooks = hooks
        self._changed()

    async def _refresh_loop(self, every_s: float) -> None:
        """Reads the registry again every `every_s` (off the event loop), until `stop`;
        a failed read is reported once until one succeeds."""
        failing = False
        while True:
            await asyncio.sleep(every_s)
            generation = self._generation
            try:
                stored = await asyncio.to_thread(self.registry.read)
            except WebhookError as e:
                if not failing:
                    print(f"[WARNING] hopper: {e}; retrying", file=sys.stderr, flush=True)
                failing = True
                continue
            failing = False
            self._refreshed(stored, generation)

    def stats(self) -> dict[str, int]:
        """`ListWebhooks`' stats; `dropped` (deliveries refused by a full queue) is
        hopper's."""
        enabled = sum(1 for h in self.hooks.values() if h.enabled)
        return {"total": len(self.hooks), "enabled": enabled, "dropped": self.dropped}

    def _changed(self) -> None:
        enabled = [h for h in self.hooks.values() if h.enabled]
        self._all_queues = any(h.queue is None for h in enabled)
        self._queues = {h.queue for h in enabled if h.queue is not None}
        self._listen(bool(enabled) and self._pending is not None and not self._stopping)

    def _listen(self, on: bool) -> None:
        """The engine records events only while someone listens: attach the sink only
        while a webhook is enabled (and the senders run: from `start` to `stop`)."""
        if on and not self._attached:
            self._hub.attach(self._sink)
            self._attached = True
        elif not on and self._attached:
            self._hub.unsubscribe(self._sink)
            self._attached = False

    # ----- events to deliveries ------------------------------------------------------

    def frame(self, kind: str, raw: bytes, next_kind: str | None) -> bytes | None:
        return raw if kind in _WEBHOOK_EVENT_OF else None

    def wants_queue(self, queue: str) -> bool:
        return self._all_queues or queue in self._queues

    def offer(self, raw: bytes) -> None:
        """One engine event (JSON): a delivery per webhook that wants it."""
        if self._pending is None or self._stopping:
            return
        ev = orjson.loads(raw)
        event = _WEBHOOK_EVENT_OF.get(ev.get("eventType"))
        queue = ev.get("queue")
        if event is None:
            return
        hooks = [
            h
            for h in self.hooks.values()
            if h.enabled and event in h.events and (h.queue is None or h.queue == queue)
        ]
        if not hooks:
            return
        job_id = ev.get("jobId")
        timestamp = int(time.time() * 1000)
        payload: dict[str, Any] = {
            "event": event,
            "timestamp": timestamp,
            "jobId": job_id if isinstance(job_id, str) else str(job_id),
            "queue": queue,
        }
        if event == "job.completed":
            payload["data"] = ev.get("result")
        elif event == "job.failed":
            job = self._engine.get(payload["jobId"]) if job_id is not None else None
            if job is not None and "data" in job:
                payload["data"] = job["data"]
            if ev.get("error") is not None:
                payload["error"] = ev["error"]
        elif event == "job.progress":
            payload["progress"] = ev.get("progress")
        body = orjson.dumps(payload)
        for hook in hooks:
            try:
                self._pending.put_nowait((hook, event, timestamp, body))
            except asyncio.QueueFull:
                self.dropped += 1

    # ----- sending -------------------------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Starts the senders on the server's loop."""
        self._pending = asyncio.Queue(self.queue_size)
        self._client = httpx.AsyncClient(timeout=self.timeout_s, follow_redirects=False)
        self._senders = [loop.create_task(self._send_loop()) for _ in range(SENDERS)]
        if self.registry.refresh_s is not None:
            self._refresher = loop.create_task(self._refresh_loop(self.registry.refresh_s))
        self._changed()  # listen, if a loaded webhook is enabled

    def stop(self) -> None:
        """Shutdown: no more deliveries are taken or sent (those queued are dropped)."""
        self._stopping = True
        self._listen(False)
        if self._refresher is not None:
            self._refresher.cancel()
        for task in self._senders:
            task.cancel()

    async def stopped(self, timeout: float) -> None:
        """Waits (bounded) for the senders `stop` cancelled, then closes the client."""
        if self._senders:
            await asyncio.wait(self._senders, timeout=timeout)
        if self._client is not None:
            client, self._client = self._client, None
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.aclose(), timeout)

    async def _send_loop(self) -> None:
        assert self._pending is not None
        while True:
            hook, event, timestamp, body = await self._pending.get()
            await self._deliver(hook, event, timestamp, body)

    async def _deliver(self, hook: Webhook, event: str, timestamp: int, body: bytes) -> None:
        headers = {
            "Content-Type": "application/json",
            "X-Webhook-Event": event,
            "X-Webhook-Timestamp": str(timestamp),
        }
        if hook.secret:
            headers["X-Webhook-Signature"] = sign(body, hook.secret)
        for attempt in range(self.max_attempts):
            client = self._client
            if client is None:
                return
            try:
                response = await client.post(hook.url, content=body, headers=headers)
                if 200 <= response.status_code < 300:
                    hook.last_triggered = int(time.time() * 1000)
                    hook.success_count += 1
                    return
            except (httpx.HTTPError, OSError, ValueError):
                pass
            if attempt < self.max_attempts - 1:
                await asyncio.sleep(self.retry_delay_s * 2**attempt)
        hook.failure_count += 1


def sign(body: bytes, secret: str) -> str:
    """The `X-Webhook-Signature` header: HMAC-SHA256 of the body, hex."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
