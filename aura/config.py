"""Configuration from the environment, validated once at start-up.

Every setting is one row of :data:`OPTIONS`: its :class:`Settings` field, its
environment variable, its only default, how the variable's text is parsed and
the rule its value must meet. ``Settings(...)``, ``dataclasses.replace(...)``
and :meth:`Settings.from_env` all end in ``Settings.__post_init__``, which
checks every row, so no construction path skips a rule.
"""

from __future__ import annotations

import enum
import ipaddress
import math
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol
from urllib.parse import quote

from aura.errors import ConfigError
from aura.storage.target import (
    DEFAULT_PORT,
    DEFAULT_SENTINEL_PORT,
    MODES,
    RedisMode,
    RedisTarget,
    parse_address,
    parse_target,
)

__all__ = [
    "DEFAULT_GATEWAY_URL",
    "DEV_JWT_SECRET",
    "GATEWAY_RESPONSE_TIMEOUT_SECONDS",
    "LOG_FORMATS",
    "LOG_LEVELS",
    "MIN_SECRET_BYTES",
    "OPTIONS",
    "REQUIRED",
    "MemberOf",
    "MinBytes",
    "OneOf",
    "Option",
    "Range",
    "Rule",
    "Settings",
    "StartsWith",
    "StreamAuthPolicy",
]

# CONTRACT §2.1: the dev secret of auth-server and main-service (63 ASCII bytes).
DEV_JWT_SECRET = "your_shared_secret_key_must_be_at_least_256_bits_long_for_HS256"
MIN_SECRET_BYTES = 32  # jjwt's Keys.hmacShaKeyFor refuses shorter keys (CONTRACT §2.1)
GATEWAY_RESPONSE_TIMEOUT_SECONDS = 300  # CONTRACT §3.7
DEFAULT_GATEWAY_URL = "http://localhost:8080"
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")  # uvicorn's names, lower case
LOG_FORMATS = ("text", "json")  # text: one line per record for people; json: JSON lines for collectors


class StreamAuthPolicy(str, enum.Enum):
    """What the stream does when ``Authorization`` is missing (CONTRACT §2.5)."""

    STRICT = "strict"  # 401 E2000 envelope
    COMPAT = "compat"  # 200 SSE with one `error` event (E2000) and [DONE]; the agent never runs


# ---------------------------------------------------------------- rules
# A rule answers what is wrong with a value as the rest of "<VARIABLE> must ...",
# so every message names the variable an operator would change.


class Rule(Protocol):
    def problem(self, value: Any) -> str | None:
        """``None`` if ``value`` is acceptable, else e.g. ``"be at least 0.5 (got 0)"``."""


@dataclass(frozen=True, slots=True)
class Range:
    """``low`` ≤ value (``<`` if ``low_open``) and value ≤ ``high`` (``<`` if ``high_open``).

    Float values must also be finite: every float setting is a number of seconds.
    """

    low: float
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    high_text: str | None = None  # says what the upper bound is, e.g. the gateway's timeout

    def problem(self, value: float) -> str | None:
        if isinstance(value, float) and not math.isfinite(value):
            return f"be a finite number of seconds (got {value!r})"
        above = value > self.low if self.low_open else value >= self.low
        below = self.high is None or (value < self.high if self.high_open else value <= self.high)
        return None if above and below else f"be {self.text} (got {_number(value)})"

    @property
    def text(self) -> str:
        if self.high is not None and not self.low_open and not self.high_open:
            return f"between {_number(self.low)} and {_number(self.high)}"
        text = f"{'greater than' if self.low_open else 'at least'} {_number(self.low)}"
        if self.high is None:
            return text
        return f"{text} and {'less than' if self.high_open else 'at most'} {self.high_text or _number(self.high)}"


@dataclass(frozen=True, slots=True)
class OneOf:
    choices: tuple[str, ...]

    def problem(self, value: str) -> str | None:
        return None if value in self.choices else f"be one of {', '.join(self.choices)} (got {value!r})"


@dataclass(frozen=True, slots=True)
class MemberOf:
    """A member of ``kind`` itself: a plain ``"compat"`` would fail every ``is`` comparison."""

    kind: type[enum.Enum]

    def problem(self, value: object) -> str | None:
        if isinstance(value, self.kind):
            return None
        return f"be {_either(repr(member.value) for member in self.kind)} (got {value!r})"


@dataclass(frozen=True, slots=True)
class StartsWith:
    prefixes: tuple[str, ...]

    def problem(self, value: str) -> str | None:
        return None if value.startswith(self.prefixes) else f"start with {_either(self.prefixes)} (got {value!r})"


@dataclass(frozen=True, slots=True)
class MinBytes:
    """At least ``count`` bytes of UTF-8: HS256 keys are bytes, and one character may be several."""

    count: int
    why: str

    def problem(self, value: str) -> str | None:
        size = len(value.encode("utf-8"))
        return None if size >= self.count else f"be at least {self.count} bytes of UTF-8 (got {size}); {self.why}"


def _number(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _either(items: Iterable[str]) -> str:
    *rest, last = items
    return f"{', '.join(rest)} or {last}" if rest else last


def _require(rule: Rule, variable: str, value: Any) -> None:
    problem = rule.problem(value)
    if problem is not None:
        raise ConfigError(f"{variable} must {problem}")


_PORT: Final = Range(1, 65535)
_HTTP_URL: Final = StartsWith(("http://", "https://"))


# ---------------------------------------------------------------- parsers
# (variable, non-empty text) -> value. Only syntax is checked here; the rule is
# checked by Settings itself, so a value from the environment meets the same rule
# as one passed in code.


def _text(variable: str, text: str) -> str:
    return text


def _lower(variable: str, text: str) -> str:
    return text.lower()


def _int(variable: str, text: str) -> int:
    try:
        return int(text)
    except ValueError as exc:
        raise ConfigError(f"{variable} must be an integer (got {text!r})") from exc


def _seconds(variable: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError as exc:
        raise ConfigError(f"{variable} must be a number of seconds (got {text!r})") from exc
    if not math.isfinite(value):
        raise ConfigError(f"{variable} must be a finite number of seconds (got {text!r})")
    return value


def _bool(variable: str, text: str) -> bool:
    if text.lower() not in ("true", "false"):
        raise ConfigError(f"{variable} must be true or false (got {text!r})")
    return text.lower() == "true"


def _stream_auth(variable: str, text: str) -> StreamAuthPolicy | str:
    try:
        return StreamAuthPolicy(text)
    except ValueError:
        return text  # MemberOf refuses it, naming the choices


def _redis_from_parts(env: Mapping[str, str]) -> str | None:
    """REDIS_URL text from the handoff document's REDIS_HOST / REDIS_PORT / REDIS_PASSWORD and from
    REDIS_USERNAME / REDIS_DB / REDIS_TLS, used when REDIS_URL is unset; ``None`` is the embedded backend.

    REDIS_HOST may list hosts (``h1,h2:7001,[::1]``); REDIS_PORT is the port of those without one.
    The rest (REDIS_MODE, REDIS_CA_FILE, Sentinel) is checked on the URL by ``Settings``; what only
    these variables can get wrong is refused here, naming them.
    """
    hosts = env.get("REDIS_HOST")
    if not hosts:
        for variable in ("REDIS_USERNAME", "REDIS_TLS", "REDIS_DB"):
            if env.get(variable):
                raise ConfigError(f"{variable} is set but REDIS_HOST is not: set REDIS_HOST, or give the whole address in REDIS_URL")
        return None  # the embedded in-process backend
    mode = (env.get("REDIS_MODE") or "").lower()  # as its row reads it; an unknown mode is refused by that row
    port_text = env.get("REDIS_PORT")
    port = _int("REDIS_PORT", port_text) if port_text else DEFAULT_SENTINEL_PORT if mode == "sentinel" else DEFAULT_PORT
    _require(_PORT, "REDIS_PORT", port)
    if "@" in hosts:  # not echoed: the text before the "@" may be a password
        raise ConfigError("REDIS_HOST must hold hosts only: give credentials in REDIS_USERNAME and REDIS_PASSWORD")
    entries = [entry.strip() for entry in hosts.split(",")]
    if len(entries) > 1 and mode in ("", RedisMode.STANDALONE.value):
        raise ConfigError(
            f"REDIS_HOST lists {len(entries)} hosts; a list of hosts needs REDIS_MODE=cluster "
            "(or REDIS_MODE=sentinel for a list of sentinels)"
        )
    nodes = []
    for entry in entries:
        if _bare_ipv6(entry):  # unambiguous here, unlike in a URL: the address alone, the port from REDIS_PORT
            entry = f"[{entry}]"
        elif not entry or entry.startswith(":"):
            raise ConfigError(f"REDIS_HOST must name a host in every entry (got {hosts!r})")
        host, entry_port = parse_address(entry, default_port=port, variable="REDIS_HOST")
        nodes.append(f"[{host}]:{entry_port}" if ":" in host else f"{host}:{entry_port}")
    db_text = env.get("REDIS_DB")
    db = _int("REDIS_DB", db_text) if db_text else 0
    _require(Range(0), "REDIS_DB", db)
    if mode == RedisMode.CLUSTER.value and db != 0:
        raise ConfigError(f"REDIS_DB must be 0 with REDIS_MODE=cluster: a Redis Cluster has only database 0 (got {db})")
    tls_text = env.get("REDIS_TLS") or "false"
    if tls_text.lower() not in ("true", "false"):
        raise ConfigError(f"REDIS_TLS must be true or false (got {tls_text!r})")
    username, password = env.get("REDIS_USERNAME"), env.get("REDIS_PASSWORD")
    auth = quote(username, safe="") if username else ""
    if password:
        auth += f":{quote(password, safe='')}"
    scheme = "rediss" if tls_text.lower() == "true" else "redis"
    return f"{scheme}://{auth}{'@' if auth else ''}{','.join(nodes)}/{db}"


def _bare_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


# ---------------------------------------------------------------- the table


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Final[Any] = _Required()  # the default of an option whose variable must be set


@dataclass(frozen=True, slots=True)
class Option:
    """One setting. An unset or empty variable means ``default``."""

    name: str  # the Settings field
    env: str  # the environment variable
    default: Any  # the only place this default is written; REQUIRED if there is none
    parse: Callable[[str, str], Any] = _text
    rule: Rule | None = None  # ``None`` values of optional settings are not checked
    unset_hint: str = ""  # why a REQUIRED variable matters, said when it is missing
    fallback: Callable[[Mapping[str, str]], Any] | None = None  # read instead of ``default`` when unset

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def read(self, env: Mapping[str, str]) -> Any:
        """The value ``env`` gives this option, syntax-checked but not yet checked against ``rule``."""
        text = env.get(self.env)
        if text:
            return self.parse(self.env, text)
        if self.fallback is not None:
            return self.fallback(env)
        if self.required:
            raise ConfigError(f"{self.env} is not set; {self.unset_hint}")
        return self.default

    def check(self, value: Any) -> None:
        """Raise ConfigError, naming ``env``, if ``value`` breaks ``rule``."""
        if self.rule is not None and not (value is None and self.default is None):
            _require(self.rule, self.env, value)


# In Settings field order.
OPTIONS: Final[tuple[Option, ...]] = (
    Option(
        "jwt_secret", "JWT_SECRET", REQUIRED,
        rule=MinBytes(MIN_SECRET_BYTES, "the Java services refuse shorter HS256 keys"),
        unset_hint="it must be the HS256 secret shared with dwp-auth-server",
    ),
    Option("host", "AURA_HOST", "127.0.0.1"),
    Option("port", "AURA_PORT", 9000, _int, _PORT),
    # None: the embedded in-process backend. No row rule: Settings checks the URL with the rows below
    # (parse_target), and StartsWith would echo a password.
    Option("redis_url", "REDIS_URL", None, fallback=_redis_from_parts),
    Option("redis_mode", "REDIS_MODE", None, _lower, OneOf(MODES)),  # None: from the URL's scheme
    Option("redis_ca_file", "REDIS_CA_FILE", None),  # PEM bundle to verify the server with; rediss:// only
    Option("redis_sentinel_master", "REDIS_SENTINEL_MASTER", None),
    Option("redis_sentinel_username", "REDIS_SENTINEL_USERNAME", None),  # the sentinels' ACL user, not the master's
    Option("redis_sentinel_password", "REDIS_SENTINEL_PASSWORD", None),
    Option(
        "hitl_timeout_seconds", "AURA_HITL_TIMEOUT_SECONDS", 280.0, _seconds,
        # a HITL wait must end before the gateway gives up on the response (CONTRACT §3.7)
        Range(
            0, GATEWAY_RESPONSE_TIMEOUT_SECONDS, low_open=True, high_open=True,
            high_text=f"the gateway's {GATEWAY_RESPONSE_TIMEOUT_SECONDS} s response timeout",
        ),
    ),
    Option("heartbeat_seconds", "AURA_HEARTBEAT_SECONDS", 15.0, _seconds, Range(0, 60, low_open=True)),
    # a client that reads nothing for this long is dropped; its session goes on
    Option("sse_send_timeout_seconds", "AURA_SSE_SEND_TIMEOUT_SECONDS", 30.0, _seconds, Range(0.01, 600)),
    Option("stream_auth", "AURA_STREAM_AUTH", StreamAuthPolicy.STRICT, _stream_auth, MemberOf(StreamAuthPolicy)),
    Option("jwt_leeway_seconds", "AURA_JWT_LEEWAY_SECONDS", 10, _int, Range(0, 300)),
    # Optional exact checks of the token's iss / aud; off by default, as dwp-auth-server sets neither.
    Option("jwt_issuer", "AURA_JWT_ISSUER", None),
    Option("jwt_audience", "AURA_JWT_AUDIENCE", None),
    # The DWP dev secret is refused unless this is true (make run and the tests set it).
    Option("allow_dev_secret", "AURA_ALLOW_DEV_SECRET", False, _bool),
    # Lifetime of the token Aura mints for each DWP call on the user's behalf (never beyond the user's own exp).
    Option("delegated_token_seconds", "AURA_DELEGATED_TOKEN_SECONDS", 120, _int, Range(10, 3600)),
    Option("tool_timeout_seconds", "AURA_TOOL_TIMEOUT_SECONDS", 30.0, _seconds, Range(0.001)),
    # `thought_chain` and `action_execution` beside the documented events, for the AI-workspace page
    # (docs/EVENTS.md); false: the documented events only
    Option("workspace_events", "AURA_WORKSPACE_EVENTS", True, _bool),
    # the Redis log and snapshot; at least the HITL request's 30 min
    Option("session_ttl_seconds", "AURA_SESSION_TTL_SECONDS", 3600, _int, Range(1800, 30 * 86400)),
    Option("session_max_events", "AURA_SESSION_MAX_EVENTS", 10_000, _int, Range(100, 1_000_000)),
    # a finished session keeps its log (replay) and its public snapshot this long, then Redis drops it;
    # at most the smallest AURA_SESSION_TTL_SECONDS, so it is never longer than a live session's
    Option("finished_session_ttl_seconds", "AURA_FINISHED_SESSION_TTL_SECONDS", 600, _int, Range(60, 1800)),
    # live sessions (not done/aborted) across every replica, and open streams in this process
    Option("max_live_sessions_per_user", "AURA_MAX_LIVE_SESSIONS_PER_USER", 20, _int, Range(1, 100_000)),
    Option("max_live_sessions_per_tenant", "AURA_MAX_LIVE_SESSIONS_PER_TENANT", 1_000, _int, Range(1, 1_000_000)),
    # sessions of a user that Redis still holds, live or finished (finished ones for their TTL): bounds
    # the Redis bytes one user can occupy
    Option("max_kept_sessions_per_user", "AURA_MAX_KEPT_SESSIONS_PER_USER", 200, _int, Range(1, 1_000_000)),
    Option("max_streams_per_user", "AURA_MAX_STREAMS_PER_USER", 10, _int, Range(1, 100_000)),
    Option("max_streams_per_tenant", "AURA_MAX_STREAMS_PER_TENANT", 500, _int, Range(1, 1_000_000)),
    # the HTTP server itself (uvicorn): enforced before a request reaches the app
    Option("http_max_header_bytes", "AURA_HTTP_MAX_HEADER_BYTES", 16 * 1024, _int, Range(1024, 1024 * 1024)),
    Option("http_header_timeout_seconds", "AURA_HTTP_HEADER_TIMEOUT_SECONDS", 10.0, _seconds, Range(0.1, 300)),
    Option("http_body_timeout_seconds", "AURA_HTTP_BODY_TIMEOUT_SECONDS", 30.0, _seconds, Range(0.1, 600)),
    Option("http_keepalive_seconds", "AURA_HTTP_KEEPALIVE_SECONDS", 5.0, _seconds, Range(0.1, 300)),
    Option("http_max_connections", "AURA_HTTP_MAX_CONNECTIONS", 2_000, _int, Range(1, 1_000_000)),
    # GET /metrics (Prometheus); false: no such route (404)
    Option("metrics", "AURA_METRICS", True, _bool),
    Option("lease_seconds", "AURA_LEASE_SECONDS", 10.0, _seconds, Range(0.5)),
    Option("signal_sweep_seconds", "AURA_SIGNAL_SWEEP_SECONDS", 5.0, _seconds, Range(0.01)),
    Option("redis_timeout_seconds", "AURA_REDIS_TIMEOUT_SECONDS", 5.0, _seconds, Range(0.01)),
    # replicas that must acknowledge a write (WAIT); None: 1 for Sentinel and Cluster, 0 for standalone
    Option("redis_replica_acks", "AURA_REDIS_REPLICA_ACKS", None, _int, Range(0, 5)),
    Option("redis_replica_ack_timeout_seconds", "AURA_REDIS_REPLICA_ACK_TIMEOUT_SECONDS", 2.0, _seconds, Range(0.01, 60)),
    Option("shutdown_grace_seconds", "AURA_SHUTDOWN_GRACE_SECONDS", 10.0, _seconds, Range(0.0)),
    Option("log_level", "AURA_LOG_LEVEL", "info", _lower, OneOf(LOG_LEVELS)),
    Option("log_format", "AURA_LOG_FORMAT", "text", _lower, OneOf(LOG_FORMATS)),
    Option("llm_base_url", "AURA_LLM_BASE_URL", None, rule=_HTTP_URL),  # None: the offline rule-based planner
    Option("llm_model", "AURA_LLM_MODEL", None),
    Option("llm_api_key", "AURA_LLM_API_KEY", None),
    Option("llm_timeout_seconds", "AURA_LLM_TIMEOUT_SECONDS", 60.0, _seconds, Range(0.001)),
    Option("llm_max_retries", "AURA_LLM_MAX_RETRIES", 2, _int, Range(0, 10)),
    Option("dwp_gateway_url", "AURA_DWP_GATEWAY_URL", DEFAULT_GATEWAY_URL, rule=_HTTP_URL),
    Option("tools_file", "AURA_TOOLS_FILE", None),  # extra tool declarations, on top of the shipped ones
    Option("agent_task_url", "AURA_AGENT_TASK_URL", None, rule=_HTTP_URL),  # e.g. <gateway>/api/main/agent/tasks
)

_BY_NAME: Final = {option.name: option for option in OPTIONS}
# Meaningless without a Redis URL: set alone, they mean a forgotten REDIS_URL/REDIS_HOST.
_NEEDS_REDIS: Final = (
    "redis_mode", "redis_ca_file", "redis_sentinel_master", "redis_sentinel_username", "redis_sentinel_password",
)


def _default(name: str) -> Any:
    """The field default of ``name``, taken from its row so that it is written only there."""
    return _BY_NAME[name].default


@dataclass(frozen=True, slots=True)
class Settings:
    """Aura's configuration; every field is one row of :data:`OPTIONS`, checked on every construction."""

    jwt_secret: str
    host: str = _default("host")
    port: int = _default("port")
    redis_url: str | None = _default("redis_url")
    redis_mode: str | None = _default("redis_mode")
    redis_ca_file: str | None = _default("redis_ca_file")
    redis_sentinel_master: str | None = _default("redis_sentinel_master")
    redis_sentinel_username: str | None = _default("redis_sentinel_username")
    redis_sentinel_password: str | None = _default("redis_sentinel_password")
    hitl_timeout_seconds: float = _default("hitl_timeout_seconds")
    heartbeat_seconds: float = _default("heartbeat_seconds")
    sse_send_timeout_seconds: float = _default("sse_send_timeout_seconds")
    stream_auth: StreamAuthPolicy = _default("stream_auth")
    jwt_leeway_seconds: int = _default("jwt_leeway_seconds")
    jwt_issuer: str | None = _default("jwt_issuer")
    jwt_audience: str | None = _default("jwt_audience")
    allow_dev_secret: bool = _default("allow_dev_secret")
    delegated_token_seconds: int = _default("delegated_token_seconds")
    tool_timeout_seconds: float = _default("tool_timeout_seconds")
    workspace_events: bool = _default("workspace_events")
    session_ttl_seconds: int = _default("session_ttl_seconds")
    session_max_events: int = _default("session_max_events")
    finished_session_ttl_seconds: int = _default("finished_session_ttl_seconds")
    max_live_sessions_per_user: int = _default("max_live_sessions_per_user")
    max_live_sessions_per_tenant: int = _default("max_live_sessions_per_tenant")
    max_kept_sessions_per_user: int = _default("max_kept_sessions_per_user")
    max_streams_per_user: int = _default("max_streams_per_user")
    max_streams_per_tenant: int = _default("max_streams_per_tenant")
    http_max_header_bytes: int = _default("http_max_header_bytes")
    http_header_timeout_seconds: float = _default("http_header_timeout_seconds")
    http_body_timeout_seconds: float = _default("http_body_timeout_seconds")
    http_keepalive_seconds: float = _default("http_keepalive_seconds")
    http_max_connections: int = _default("http_max_connections")
    metrics: bool = _default("metrics")
    lease_seconds: float = _default("lease_seconds")
    signal_sweep_seconds: float = _default("signal_sweep_seconds")
    redis_timeout_seconds: float = _default("redis_timeout_seconds")
    redis_replica_acks: int | None = _default("redis_replica_acks")
    redis_replica_ack_timeout_seconds: float = _default("redis_replica_ack_timeout_seconds")
    shutdown_grace_seconds: float = _default("shutdown_grace_seconds")
    log_level: str = _default("log_level")
    log_format: str = _default("log_format")
    llm_base_url: str | None = _default("llm_base_url")
    llm_model: str | None = _default("llm_model")
    llm_api_key: str | None = _default("llm_api_key")
    llm_timeout_seconds: float = _default("llm_timeout_seconds")
    llm_max_retries: int = _default("llm_max_retries")
    dwp_gateway_url: str = _default("dwp_gateway_url")
    tools_file: str | None = _default("tools_file")
    agent_task_url: str | None = _default("agent_task_url")

    def __post_init__(self) -> None:
        for option in OPTIONS:
            option.check(getattr(self, option.name))
        if self.jwt_secret == DEV_JWT_SECRET and not self.allow_dev_secret:
            raise ConfigError(
                "JWT_SECRET is the public DWP dev secret (CONTRACT §2.1): set the secret dwp-auth-server uses, "
                "or AURA_ALLOW_DEV_SECRET=true on a development machine (make run does)"
            )
        # The one rule across fields: a model needs an endpoint and an endpoint a model.
        if (self.llm_base_url is None) != (self.llm_model is None):
            raise ConfigError("AURA_LLM_BASE_URL and AURA_LLM_MODEL must be set together (or neither)")
        # Redis: the URL is read with its companion rows, so code is refused what the environment is.
        if self.redis_url is not None:
            _ = self.redis_target  # parsed only for its ConfigError
            # WAIT holds its connection for the whole wait: past the socket timeout it would be cut off.
            if self.replica_acks > 0 and self.redis_replica_ack_timeout_seconds >= self.redis_timeout_seconds:
                raise ConfigError(
                    f"AURA_REDIS_REPLICA_ACK_TIMEOUT_SECONDS must be less than AURA_REDIS_TIMEOUT_SECONDS "
                    f"(got {_number(self.redis_replica_ack_timeout_seconds)} and {_number(self.redis_timeout_seconds)}), "
                    "or replicas need not acknowledge (AURA_REDIS_REPLICA_ACKS=0)"
                )
        else:
            for name in _NEEDS_REDIS:
                if getattr(self, name) is not None:
                    raise ConfigError(f"{_BY_NAME[name].env} is set but no Redis is configured: set REDIS_URL or REDIS_HOST")

    @property
    def redis_embedded(self) -> bool:
        return self.redis_url is None

    @property
    def redis_target(self) -> RedisTarget | None:
        """The configured deployment; ``None`` is the embedded backend. Parsed on each call (it is cheap)."""
        if self.redis_url is None:
            return None
        return parse_target(
            self.redis_url,
            mode=self.redis_mode,
            ca_file=self.redis_ca_file,
            sentinel_master=self.redis_sentinel_master,
            sentinel_username=self.redis_sentinel_username,
            sentinel_password=self.redis_sentinel_password,
        )

    @property
    def replica_acks(self) -> int:
        """Replicas a side effect's `executing` event waits for: AURA_REDIS_REPLICA_ACKS, or by default 1 where there are replicas
        to fail over to (Sentinel, Cluster) and 0 otherwise; always 0 embedded, which has none."""
        target = self.redis_target
        if target is None:
            return 0
        if self.redis_replica_acks is not None:
            return self.redis_replica_acks
        return 0 if target.mode is RedisMode.STANDALONE else 1

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Build settings from ``env`` (default ``os.environ``); raise ConfigError with an exact message."""
        env = os.environ if env is None else env
        return cls(**{option.name: option.read(env) for option in OPTIONS})
