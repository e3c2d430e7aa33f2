"""Server configuration: CLI flag > environment variable > default, in one place.

Variable names follow the reference server (bunqueue) where it has one.
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Setting:
    """One option: its flag, its environment variables (first set wins), default, help,
    and other spellings of the flag (`bunqueue start`'s, so its command lines work)."""

    name: str
    flag: str
    env: tuple[str, ...]
    default: object
    help: str
    kind: type = str
    aliases: tuple[str, ...] = ()


SETTINGS: tuple[Setting, ...] = (
    Setting("host", "--host", ("HOST",), "0.0.0.0", "address to listen on"),
    Setting("port", "--port", ("HTTP_PORT",), 6790, "HTTP port", int, ("--http-port",)),
    Setting(
        "tcp_port",
        "--tcp-port",
        ("TCP_PORT",),
        6789,
        "port of bunqueue's binary TCP protocol: accepted for `bunqueue start` command "
        "lines, but not served yet (hopper speaks HTTP, SSE and WebSocket until the TCP "
        "protocol lands)",
        int,
    ),
    Setting(
        "tls_cert",
        "--tls-cert",
        ("TLS_CERT_FILE",),
        "",
        "bunqueue's TLS certificate: refused, hopper does not serve TLS yet (terminate TLS "
        "in a proxy in front of it)",
    ),
    Setting(
        "tls_key",
        "--tls-key",
        ("TLS_KEY_FILE",),
        "",
        "bunqueue's TLS private key: refused, as --tls-cert",
    ),
    Setting(
        "auth_tokens",
        "--auth-tokens",
        ("AUTH_TOKENS",),
        "",
        "comma-separated bearer tokens; empty disables auth",
    ),
    Setting(
        "cors_allow_origin",
        "--cors-allow-origin",
        ("CORS_ALLOW_ORIGIN",),
        "*",
        "value of Access-Control-Allow-Origin (comma-separated list allowed)",
    ),
    Setting(
        "rate_limit_window_ms",
        "--rate-limit-window-ms",
        ("RATE_LIMIT_WINDOW_MS",),
        60_000,
        "sliding window of the per-IP rate limit (ms)",
        int,
    ),
    Setting(
        "rate_limit_max_requests",
        "--rate-limit-max-requests",
        ("RATE_LIMIT_MAX_REQUESTS",),
        math.inf,
        "requests per window per client IP (default: unlimited)",
        float,
    ),
    Setting(
        "rate_limit_cleanup_ms",
        "--rate-limit-cleanup-ms",
        ("RATE_LIMIT_CLEANUP_MS",),
        60_000,
        "how often idle rate-limit entries are dropped (ms)",
        int,
    ),
    Setting(
        "metrics_auth",
        "--metrics-auth",
        ("METRICS_AUTH",),
        False,
        "require the bearer token for /prometheus",
        bool,
    ),
    Setting(
        "max_body_bytes",
        "--max-body-bytes",
        ("HOPPER_MAX_BODY_BYTES",),
        16 * 1024 * 1024,
        "largest accepted request body (bytes)",
        int,
    ),
    Setting(
        "max_payload_bytes",
        "--max-payload-bytes",
        ("HOPPER_MAX_PAYLOAD_BYTES",),
        10 * 1024 * 1024,
        "largest accepted job data (bytes of JSON)",
        int,
    ),
    Setting(
        "data_dir",
        "--data-dir",
        ("HOPPER_DATA_DIR", "BUNQUEUE_DATA_PATH", "BQ_DATA_PATH", "DATA_PATH"),
        "./data",
        "directory of the write-ahead log and snapshots (locked while serving); bunqueue's "
        "--data-path names its SQLite file, here that path becomes the directory",
        aliases=("--data-path",),
    ),
    Setting(
        "memory",
        "--memory",
        ("HOPPER_MEMORY",),
        False,
        "keep everything in memory only: no data directory, nothing survives a restart",
        bool,
    ),
    Setting(
        "fsync",
        "--fsync",
        ("HOPPER_FSYNC",),
        "interval",
        "when the log is synced: always (before each answer), interval, never",
    ),
    Setting(
        "fsync_interval_ms",
        "--fsync-interval-ms",
        ("HOPPER_FSYNC_INTERVAL_MS",),
        10,
        "the interval policy's longest time between syncs (ms)",
        int,
    ),
    Setting(
        "snapshot_bytes",
        "--snapshot-bytes",
        ("HOPPER_SNAPSHOT_BYTES",),
        64 * 1024 * 1024,
        "log bytes after which a snapshot compacts it (at least the last snapshot's size)",
        int,
    ),
    Setting(
        "repair",
        "--repair",
        ("HOPPER_REPAIR",),
        False,
        "start even if the log is damaged in the middle: drop the damaged records, keep the rest",
        bool,
    ),
    Setting(
        "dashboard_base_path",
        "--dashboard-base-path",
        ("HOPPER_DASHBOARD_BASE_PATH",),
        "/",
        "path prefix of the dashboard page and its management API ({base}/api)",
    ),
    Setting(
        "dashboard_read_only",
        "--dashboard-read-only",
        ("HOPPER_DASHBOARD_READ_ONLY",),
        False,
        "refuse every management API mutation with 403 FORBIDDEN",
        bool,
    ),
    Setting(
        "dashboard_metrics",
        "--dashboard-metrics",
        ("HOPPER_DASHBOARD_METRICS",),
        True,
        "serve the management API's metrics routes (off: METRICS_DISABLED)",
        bool,
    ),
    Setting(
        "dashboard_queues",
        "--dashboard-queues",
        ("HOPPER_DASHBOARD_QUEUES",),
        "",
        "comma-separated queues the management API may show and change (empty: all)",
    ),
    Setting(
        "stall_interval_ms",
        "--stall-interval-ms",
        ("HOPPER_STALL_INTERVAL_MS",),
        30_000,
        "an active job not acked or renewed within this is stalled (ms)",
        int,
    ),
    Setting(
        "max_stalls",
        "--max-stalls",
        ("HOPPER_MAX_STALLS",),
        3,
        "stalls after which a job fails instead of returning to waiting",
        int,
    ),
    Setting(
        "retention_count",
        "--retention-count",
        ("HOPPER_RETENTION_COUNT", "BUNQUEUE_MAX_COMPLETED_JOBS", "MAX_COMPLETED_JOBS"),
        10_000,
        "finished jobs kept per queue and state (completed, failed)",
        int,
        ("--max-completed-jobs",),
    ),
    Setting(
        "retention_age_ms",
        "--retention-age-ms",
        ("HOPPER_RETENTION_AGE_MS", "BUNQUEUE_COMPLETED_RETENTION_MS", "COMPLETED_RETENTION_MS"),
        86_400_000,
        "finished jobs older than this are removed (ms)",
        int,
        ("--completed-retention-ms",),
    ),
    Setting(
        "retention_bytes",
        "--retention-bytes",
        ("HOPPER_RETENTION_BYTES",),
        64 * 1024 * 1024,
        "approximate bytes of finished jobs kept per queue and state",
        int,
    ),
)


def clean_environment(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """`env` (default: this process's) without any variable a server setting reads, nor
    any `HOPPER_*`: for starting a server whose settings come from its flags alone."""
    names = {var for s in SETTINGS for var in s.env}
    source = os.environ if env is None else env
    return {k: v for k, v in source.items() if k not in names and not k.startswith("HOPPER_")}


@dataclass(frozen=True)
class ServerConfig:
    host: str = "0.0.0.0"
    port: int = 6790
    tcp_port: int = 6789
    tls_cert: str = ""
    tls_key: str = ""
    auth_tokens: tuple[str, ...] = ()
    cors_allow_origin: str = "*"
    rate_limit_window_ms: int = 60_000
    rate_limit_max_requests: float = math.inf
    rate_limit_cleanup_ms: int = 60_000
    metrics_auth: bool = False
    max_body_bytes: int = 16 * 1024 * 1024
    max_payload_bytes: int = 10 * 1024 * 1024
    stall_interval_ms: int = 30_000
    max_stalls: int = 3
    retention_count: int = 10_000
    retention_age_ms: int = 86_400_000
    retention_bytes: int = 64 * 1024 * 1024
    data_dir: str = "./data"
    memory: bool = False
    fsync: str = "interval"
    fsync_interval_ms: int = 10
    snapshot_bytes: int = 64 * 1024 * 1024
    repair: bool = False
    dashboard_base_path: str = "/"
    dashboard_read_only: bool = False
    dashboard_metrics: bool = True
    dashboard_queues: tuple[str, ...] = ()


FSYNC_POLICIES = ("always", "interval", "never")


class ConfigError(ValueError):
    """A setting has a value that cannot be used."""


def _convert(setting: Setting, raw: object, source: str) -> object:
    if not isinstance(raw, str):
        return raw
    try:
        if setting.kind is bool:
            value = raw.strip().lower()
            if value in ("1", "true", "yes", "on"):
                return True
            if value in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(raw)
        if setting.kind is float:
            value = raw.strip().lower()
            return math.inf if value in ("inf", "infinity", "") else float(value)
        if setting.kind is int:
            return int(raw)
    except ValueError:
        raise ConfigError(f"{source}: invalid value {raw!r} for {setting.name}") from None
    return raw


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds one flag per setting; the help names the environment variable."""
    for s in SETTINGS:
        env = " / ".join(s.env)
        default = s.default if s.default != "" else "none"
        text = f"{s.help} [env {env}; default {default}]"
        if s.kind is bool:
            parser.add_argument(
                s.flag,
                *s.aliases,
                dest=s.name,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=text,
            )
        else:
            parser.add_argument(s.flag, *s.aliases, dest=s.name, default=None, help=text)


def load(
    args: argparse.Namespace | None = None, env: Mapping[str, str] | None = None
) -> ServerConfig:
    """Resolves every setting: flag, then environment, then default."""
    env = os.environ if env is None else env
    values: dict[str, object] = {}
    for s in SETTINGS:
        flag_value = None if args is None else getattr(args, s.name, None)
        if flag_value is not None:
            values[s.name] = _convert(s, flag_value, s.flag)
            continue
        for var in s.env:
            if var in env:
                values[s.name] = _convert(s, env[var], var)
                break
    tokens = values.pop("auth_tokens", "")
    queues = values.pop("dashboard_queues", "")
    assert isinstance(tokens, str) and isinstance(queues, str)
    config = ServerConfig(
        auth_tokens=_csv(tokens),
        dashboard_queues=_csv(queues),
        **values,  # type: ignore[arg-type]
    )
    _validate(config)
    return config


def _csv(raw: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in raw.split(",") if t.strip())


def base_path(raw: str) -> str:
    """`/`, `ops/`, `/ops` → "" or "/ops": no trailing slash, one leading slash."""
    stripped = raw.strip().strip("/")
    return f"/{stripped}" if stripped else ""


def _validate(c: ServerConfig) -> None:
    for name in ("port", "tcp_port"):
        if not 0 <= getattr(c, name) <= 65535:
            raise ConfigError(f"{name} must be 0-65535, got {getattr(c, name)}")
    if c.tls_cert or c.tls_key:
        raise ConfigError(
            "TLS is not supported yet (--tls-cert/--tls-key, TLS_CERT_FILE/TLS_KEY_FILE): "
            "serve plain HTTP behind a TLS-terminating proxy"
        )
    if c.max_stalls > 65535:
        raise ConfigError(f"max_stalls must be at most 65535, got {c.max_stalls}")
    if c.retention_age_ms < 0:
        raise ConfigError("retention_age_ms must not be negative")
    for name in (
        "rate_limit_window_ms",
        "rate_limit_cleanup_ms",
        "max_body_bytes",
        "max_payload_bytes",
        "stall_interval_ms",
        "fsync_interval_ms",
        "snapshot_bytes",
        "max_stalls",
        "retention_count",
        "retention_bytes",
    ):
        if getattr(c, name) <= 0:
            raise ConfigError(f"{name} must be positive")
    base = base_path(c.dashboard_base_path)
    if any(not seg or seg in (".", "..") for seg in base.split("/")[1:]) or "?" in base:
        raise ConfigError(f"dashboard_base_path is not a usable path: {c.dashboard_base_path!r}")
    if c.fsync not in FSYNC_POLICIES:
        raise ConfigError(f"fsync must be one of {', '.join(FSYNC_POLICIES)}, got {c.fsync!r}")
    if not c.memory and not c.data_dir:
        raise ConfigError("data_dir must not be empty (use --memory for no persistence)")
    if c.rate_limit_max_requests <= 0:
        raise ConfigError("rate_limit_max_requests must be positive")
