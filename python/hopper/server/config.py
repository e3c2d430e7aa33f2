"""Server configuration: CLI flag > environment variable > default, in one place.

Every option is one field of `ServerConfig`, declared with its default, flag (and the
reference server's spelling of it), environment variables and help. `hopper serve
--help`, the environment parsing, the hand-off to Granian's worker process and the
engine's constructor arguments are all derived from those fields, so adding an option
is one field (plus its use); an engine option (`engine=True`) reaches `hopper.Engine`
with no other edit. Variable names follow the reference server (bunqueue) where it has
one.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hopper.engine import check_engine_options
from hopper.errors import InvalidInputError

FSYNC_POLICIES = ("always", "interval", "never")


class ConfigError(ValueError):
    """A setting has a value that cannot be used."""


def host_port(host: str, port: int) -> str:
    """`host:port`, with an IPv6 address in brackets; empty without a port."""
    if not port:
        return ""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def option(
    default: Any,
    flag: str,
    env: tuple[str, ...],
    help: str,
    *,
    aliases: tuple[str, ...] = (),
    choices: tuple[str, ...] | None = None,
    engine: bool = False,
) -> Any:
    """A `ServerConfig` field: its default, flag, environment variables (first set wins),
    help, other spellings of the flag (`bunqueue start`'s), the values it takes if it is
    a choice, and whether it is an engine option of the same name."""
    meta = {
        "flag": flag,
        "env": env,
        "help": help,
        "aliases": aliases,
        "choices": choices,
        "engine": engine,
    }
    return dataclasses.field(default=default, metadata=meta)


@dataclass(frozen=True)
class ServerConfig:
    host: str = option(
        "0.0.0.0",
        "--host",
        ("HOST",),
        "address to listen on",
    )
    port: int = option(
        6790,
        "--port",
        ("HTTP_PORT",),
        "HTTP port",
        aliases=("--http-port",),
    )
    interface: str = option(
        "asgi",
        "--interface",
        ("HOPPER_INTERFACE",),
        "Granian interface serving the app: asgi, or rsgi (faster per request, but SSE "
        "streams without back-pressure and WebSocket closes without codes; see "
        "docs/compatibility.md)",
        choices=("rsgi", "asgi"),
    )
    tcp_port: int = option(
        6789,
        "--tcp-port",
        ("TCP_PORT",),
        "port of bunqueue's binary TCP protocol (its SDK's transport); 0 turns the TCP "
        "listener off",
    )
    tcp_idle_timeout_ms: int = option(
        60_000,
        "--tcp-idle-timeout-ms",
        ("TCP_IDLE_TIMEOUT_MS",),
        "a TCP connection holding a partial frame this long is closed (an idle "
        "connection with no partial frame stays open)",
    )
    tcp_max_write_queue_bytes: int = option(
        64 * 1024 * 1024,
        "--tcp-max-write-queue-bytes",
        ("TCP_MAX_WRITE_QUEUE_BYTES",),
        "a TCP client that lets this many bytes of replies and events pile up unread "
        "is disconnected",
    )
    tls_cert: str = option(
        "",
        "--tls-cert",
        ("TLS_CERT_FILE",),
        "bunqueue's TLS certificate: refused, hopper does not serve TLS yet (terminate TLS "
        "in a proxy in front of it)",
    )
    tls_key: str = option(
        "",
        "--tls-key",
        ("TLS_KEY_FILE",),
        "bunqueue's TLS private key: refused, as --tls-cert",
    )
    auth_tokens: tuple[str, ...] = option(
        (),
        "--auth-tokens",
        ("AUTH_TOKENS",),
        "comma-separated bearer tokens; empty disables auth",
    )
    cors_allow_origin: str = option(
        "*",
        "--cors-allow-origin",
        ("CORS_ALLOW_ORIGIN",),
        "value of Access-Control-Allow-Origin (comma-separated list allowed)",
    )
    rate_limit_window_ms: int = option(
        60_000,
        "--rate-limit-window-ms",
        ("RATE_LIMIT_WINDOW_MS",),
        "sliding window of the per-IP rate limit (ms)",
    )
    rate_limit_max_requests: float = option(
        math.inf,
        "--rate-limit-max-requests",
        ("RATE_LIMIT_MAX_REQUESTS",),
        "requests per window per client IP (default: unlimited)",
    )
    rate_limit_cleanup_ms: int = option(
        60_000,
        "--rate-limit-cleanup-ms",
        ("RATE_LIMIT_CLEANUP_MS",),
        "how often idle rate-limit entries are dropped (ms)",
    )
    metrics_auth: bool = option(
        False,
        "--metrics-auth",
        ("METRICS_AUTH",),
        "require the bearer token for /prometheus",
    )
    max_body_bytes: int = option(
        16 * 1024 * 1024,
        "--max-body-bytes",
        ("HOPPER_MAX_BODY_BYTES",),
        "largest accepted request body (bytes)",
    )
    max_payload_bytes: int = option(
        10 * 1024 * 1024,
        "--max-payload-bytes",
        ("HOPPER_MAX_PAYLOAD_BYTES",),
        "largest accepted job data (bytes of JSON)",
        engine=True,
    )
    data_dir: str = option(
        "./data",
        "--data-dir",
        ("HOPPER_DATA_DIR", "BUNQUEUE_DATA_PATH", "BQ_DATA_PATH", "DATA_PATH"),
        "directory of the write-ahead log and snapshots (locked while serving); "
        "bunqueue's --data-path names its SQLite file, here that path becomes the directory",
        aliases=("--data-path",),
    )
    memory: bool = option(
        False,
        "--memory",
        ("HOPPER_MEMORY",),
        "keep everything in memory only: no data directory, nothing survives a restart",
    )
    fsync: str = option(
        "interval",
        "--fsync",
        ("HOPPER_FSYNC",),
        "when the write-ahead log is synced to disk, one of: always (before each answer), "
        "interval (at least every --fsync-interval-ms), never (left to the OS); an OS "
        "crash can lose the last interval's answered changes, or more under never "
        "(docs/durability.md)",
        choices=FSYNC_POLICIES,
        engine=True,
    )
    fsync_interval_ms: int = option(
        10,
        "--fsync-interval-ms",
        ("HOPPER_FSYNC_INTERVAL_MS",),
        "the interval policy's longest time between syncs (ms)",
        engine=True,
    )
    snapshot_bytes: int = option(
        64 * 1024 * 1024,
        "--snapshot-bytes",
        ("HOPPER_SNAPSHOT_BYTES",),
        "log bytes after which a snapshot compacts it (at least the last snapshot's size)",
        engine=True,
    )
    segment_bytes: int = option(
        64 * 1024 * 1024,
        "--segment-bytes",
        ("HOPPER_SEGMENT_BYTES",),
        "a log segment is closed and a new one started past this size (at least 4096)",
        engine=True,
    )
    repair: bool = option(
        False,
        "--repair",
        ("HOPPER_REPAIR",),
        "start even if the log is damaged in the middle: drop the damaged records, keep the rest",
        engine=True,
    )
    postgres_url: str = option(
        "",
        "--postgres-url",
        ("HOPPER_POSTGRES_URL",),
        "keep the log and snapshots in this PostgreSQL instead of --data-dir, as one broker "
        "of a cluster (docs/cluster.md): a broker serves once it owns the cluster's slot, "
        "and waits while another one does",
    )
    namespace: str = option(
        "default",
        "--namespace",
        ("HOPPER_NAMESPACE",),
        "the cluster's rows in PostgreSQL (several clusters can share one database)",
        engine=True,
    )
    broker_id: str = option(
        "",
        "--broker-id",
        ("HOPPER_BROKER_ID",),
        "this broker's name in the cluster, unique among live brokers (empty: host:pid)",
    )
    advertise_addr: str = option(
        "",
        "--advertise-addr",
        ("HOPPER_ADVERTISE_ADDR",),
        "cluster mode: the host other brokers reach this broker's backends at (empty: "
        "--host when it names one address, else this machine's hostname)",
    )
    backend_port: int = option(
        0,
        "--backend-port",
        ("HOPPER_BACKEND_PORT",),
        "cluster mode: the port this broker's app listens on for the brokers' fronts, "
        "which relay clients from the public ports to the slot's owner (0: one the broker "
        "reserves for its life, so nothing else takes it first)",
    )
    backend_tcp_port: int = option(
        0,
        "--backend-tcp-port",
        ("HOPPER_BACKEND_TCP_PORT",),
        "cluster mode: the same for the TCP protocol (0: one the broker reserves)",
    )
    slots: int = option(
        1,
        "--slots",
        ("HOPPER_SLOTS",),
        "cluster mode: how many slots the cluster's queues are spread over, fixed when the "
        "cluster first starts (every broker must give the same); each slot is served by "
        "one broker, ranked first for it among the live brokers",
        engine=True,
    )
    slot: int = option(
        0,
        "--slot",
        ("HOPPER_SLOT",),
        "internal: the slot a broker's slot server serves (a broker sets it for each of "
        "its slot servers)",
        engine=True,
    )
    slot_lease_ms: int = option(
        5000,
        "--slot-lease-ms",
        ("HOPPER_SLOT_LEASE_MS",),
        "how long the cluster slot stays with a broker that stopped renewing it (ms); a "
        "broker whose process died loses it at once",
        engine=True,
    )
    dashboard_base_path: str = option(
        "/",
        "--dashboard-base-path",
        ("HOPPER_DASHBOARD_BASE_PATH",),
        "path prefix of the dashboard page and its management API ({base}/api)",
    )
    dashboard_read_only: bool = option(
        False,
        "--dashboard-read-only",
        ("HOPPER_DASHBOARD_READ_ONLY",),
        "refuse every management API mutation with 403 FORBIDDEN",
    )
    dashboard_metrics: bool = option(
        True,
        "--dashboard-metrics",
        ("HOPPER_DASHBOARD_METRICS",),
        "serve the management API's metrics routes (off: METRICS_DISABLED)",
    )
    dashboard_queues: tuple[str, ...] = option(
        (),
        "--dashboard-queues",
        ("HOPPER_DASHBOARD_QUEUES",),
        "comma-separated queues the management API may show and change (empty: all)",
    )
    stall_interval_ms: int = option(
        30_000,
        "--stall-interval-ms",
        ("HOPPER_STALL_INTERVAL_MS",),
        "an active job not acked or renewed within this is stalled (ms)",
        engine=True,
    )
    max_stalls: int = option(
        3,
        "--max-stalls",
        ("HOPPER_MAX_STALLS",),
        "stalls after which a job fails instead of returning to waiting",
        engine=True,
    )
    retention_count: int = option(
        10_000,
        "--retention-count",
        ("HOPPER_RETENTION_COUNT", "BUNQUEUE_MAX_COMPLETED_JOBS", "MAX_COMPLETED_JOBS"),
        "finished jobs kept per queue and state (completed, failed)",
        aliases=("--max-completed-jobs",),
        engine=True,
    )
    retention_age_ms: int = option(
        86_400_000,
        "--retention-age-ms",
        ("HOPPER_RETENTION_AGE_MS", "BUNQUEUE_COMPLETED_RETENTION_MS", "COMPLETED_RETENTION_MS"),
        "finished jobs older than this are removed (ms)",
        aliases=("--completed-retention-ms",),
        engine=True,
    )
    retention_bytes: int = option(
        64 * 1024 * 1024,
        "--retention-bytes",
        ("HOPPER_RETENTION_BYTES",),
        "approximate bytes of finished jobs kept per queue and state",
        engine=True,
    )
    max_logs_per_job: int = option(
        1000,
        "--max-logs-per-job",
        ("HOPPER_MAX_LOGS_PER_JOB",),
        "log lines kept per job (the oldest go first)",
        engine=True,
    )
    webhook_allow_private_urls: bool = option(
        False,
        "--webhook-allow-private-urls",
        ("HOPPER_WEBHOOK_ALLOW_PRIVATE_URLS",),
        "accept webhook URLs on loopback, private, link-local and cloud-metadata hosts "
        "(refused by default, as bunqueue does, against SSRF)",
    )
    webhook_max_retries: int = option(
        3,
        "--webhook-max-retries",
        ("HOPPER_WEBHOOK_MAX_RETRIES", "WEBHOOK_MAX_RETRIES"),
        "attempts at delivering one webhook event (the first included)",
    )
    webhook_retry_delay_ms: int = option(
        1000,
        "--webhook-retry-delay-ms",
        ("HOPPER_WEBHOOK_RETRY_DELAY_MS", "WEBHOOK_RETRY_DELAY_MS"),
        "wait before the second attempt at a webhook delivery; doubled for each next one (ms)",
    )
    webhook_timeout_ms: int = option(
        10_000,
        "--webhook-timeout-ms",
        ("HOPPER_WEBHOOK_TIMEOUT_MS",),
        "a webhook POST not answered within this fails (ms)",
    )
    webhook_queue_size: int = option(
        10_000,
        "--webhook-queue-size",
        ("HOPPER_WEBHOOK_QUEUE_SIZE",),
        "webhook deliveries waiting to be sent; past this they are dropped and counted",
    )

    def engine_options(self) -> dict[str, Any]:
        """`hopper.Engine` keyword arguments: every engine option, the data directory (none
        with --memory or --postgres-url) and the cluster's connection."""
        options = {f.name: getattr(self, f.name) for f in _FIELDS if f.metadata["engine"]}
        options["data_dir"] = None if self.memory or self.postgres_url else self.data_dir
        options["postgres_url"] = self.postgres_url or None
        options["broker_id"] = self.broker_name()
        if self.postgres_url:
            # In a broker's worker the ports are its backends' (server/cluster.py).
            options["advertise_http"] = host_port(self.advertise_addr, self.port)
            options["advertise_tcp"] = host_port(self.advertise_addr, self.tcp_port)
        return options

    def broker_name(self) -> str:
        """This broker's id: `--broker-id`, else host:pid of the calling process (so a
        cluster's front fixes it for its worker, which must name the same broker)."""
        return self.broker_id or f"{socket.gethostname()}:{os.getpid()}"

    def to_json(self) -> dict[str, Any]:
        """JSON-ready values (the worker process rebuilds the config from them)."""
        values = dataclasses.asdict(self)
        if math.isinf(self.rate_limit_max_requests):
            values["rate_limit_max_requests"] = None
        return values

    @classmethod
    def from_json(cls, values: Mapping[str, Any]) -> ServerConfig:
        """The inverse of `to_json`."""
        kinds = {f.name: _kind(f) for f in _FIELDS}
        rebuilt: dict[str, Any] = {
            k: tuple(v) if kinds[k] == "csv" else v for k, v in values.items()
        }
        if rebuilt.get("rate_limit_max_requests") is None:
            rebuilt["rate_limit_max_requests"] = math.inf
        return cls(**rebuilt)


_FIELDS = dataclasses.fields(ServerConfig)


def _kind(f: dataclasses.Field[Any]) -> str:
    """How a field's text (flag or variable) is read: its annotation, "csv" for lists."""
    return "csv" if str(f.type).startswith("tuple") else str(f.type)


def clean_environment(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """`env` (default: this process's) without any variable a server setting reads, nor
    any `HOPPER_*`: for starting a server whose settings come from its flags alone."""
    names = {var for f in _FIELDS for var in f.metadata["env"]}
    source = os.environ if env is None else env
    return {k: v for k, v in source.items() if k not in names and not k.startswith("HOPPER_")}


def _convert(f: dataclasses.Field[Any], raw: str, source: str) -> object:
    kind = _kind(f)
    try:
        if kind == "bool":
            value = raw.strip().lower()
            if value in ("1", "true", "yes", "on"):
                return True
            if value in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(raw)
        if kind == "float":
            value = raw.strip().lower()
            return math.inf if value in ("inf", "infinity", "") else float(value)
        if kind == "int":
            return int(raw)
        if kind == "csv":
            return tuple(t.strip() for t in raw.split(",") if t.strip())
    except ValueError:
        raise ConfigError(f"{source}: invalid value {raw!r} for {f.name}") from None
    return raw


def _shown(default: object) -> object:
    if default == "" or default == ():
        return "none"
    return "unlimited" if default == math.inf else default


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds one flag per setting; the help names the environment variable."""
    for f in _FIELDS:
        m = f.metadata
        text = f"{m['help']} [env {' / '.join(m['env'])}; default {_shown(f.default)}]"
        if _kind(f) == "bool":
            parser.add_argument(
                m["flag"],
                *m["aliases"],
                dest=f.name,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=text,
            )
        else:
            parser.add_argument(
                m["flag"],
                *m["aliases"],
                dest=f.name,
                default=None,
                choices=m["choices"],
                help=text,
            )


def load(
    args: argparse.Namespace | None = None, env: Mapping[str, str] | None = None
) -> ServerConfig:
    """Resolves every setting: flag, then environment, then default; then validates."""
    env = os.environ if env is None else env
    values: dict[str, object] = {}
    for f in _FIELDS:
        flag_value = None if args is None else getattr(args, f.name, None)
        if flag_value is not None:
            values[f.name] = (
                _convert(f, flag_value, f.metadata["flag"])
                if isinstance(flag_value, str)
                else flag_value
            )
            continue
        for var in f.metadata["env"]:
            if var in env:
                values[f.name] = _convert(f, env[var], var)
                break
    config = ServerConfig(**values)  # type: ignore[arg-type]
    _validate(config)
    return config


def base_path(raw: str) -> str:
    """`/`, `ops/`, `/ops` → "" or "/ops": no trailing slash, one leading slash."""
    stripped = raw.strip().strip("/")
    return f"/{stripped}" if stripped else ""


def _validate(c: ServerConfig) -> None:
    """The server's own rules; engine options are checked by the engine's."""
    for name in ("port", "tcp_port", "backend_port", "backend_tcp_port"):
        if not 0 <= getattr(c, name) <= 65535:
            raise ConfigError(f"{name} must be 0-65535, got {getattr(c, name)}")
    if c.tls_cert or c.tls_key:
        raise ConfigError(
            "TLS is not supported yet (--tls-cert/--tls-key, TLS_CERT_FILE/TLS_KEY_FILE): "
            "serve plain HTTP behind a TLS-terminating proxy"
        )
    for name in (
        "rate_limit_window_ms",
        "rate_limit_cleanup_ms",
        "max_body_bytes",
        "tcp_idle_timeout_ms",
        "tcp_max_write_queue_bytes",
        "webhook_max_retries",
        "webhook_timeout_ms",
        "webhook_queue_size",
    ):
        if getattr(c, name) <= 0:
            raise ConfigError(f"{name} must be positive")
    if c.webhook_retry_delay_ms < 0:
        raise ConfigError("webhook_retry_delay_ms must not be negative")
    if c.rate_limit_max_requests <= 0:
        raise ConfigError("rate_limit_max_requests must be positive")
    base = base_path(c.dashboard_base_path)
    if any(not seg or seg in (".", "..") for seg in base.split("/")[1:]) or "?" in base:
        raise ConfigError(f"dashboard_base_path is not a usable path: {c.dashboard_base_path!r}")
    if c.memory and c.postgres_url:
        raise ConfigError("--memory and --postgres-url exclude each other")
    if c.slots != 1 and not c.postgres_url:
        raise ConfigError("--slots needs --postgres-url (slots spread a cluster's queues)")
    if not c.memory and not c.data_dir:
        raise ConfigError("data_dir must not be empty (use --memory for no persistence)")
    try:
        check_engine_options(**c.engine_options())
    except (InvalidInputError, OverflowError) as e:
        raise ConfigError(str(e)) from None
