"""Configuration from the environment, validated once at start-up."""

from __future__ import annotations

import enum
import os
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote

from aura.errors import ConfigError

# CONTRACT §2.1: the dev secret of auth-server and main-service (63 ASCII bytes).
DEV_JWT_SECRET = "your_shared_secret_key_must_be_at_least_256_bits_long_for_HS256"
MIN_SECRET_BYTES = 32  # jjwt's Keys.hmacShaKeyFor refuses shorter keys (CONTRACT §2.1)
GATEWAY_RESPONSE_TIMEOUT_SECONDS = 300  # CONTRACT §3.7


class StreamAuthPolicy(str, enum.Enum):
    """What the stream does when ``Authorization`` is missing (CONTRACT §2.5)."""

    STRICT = "strict"  # 401 E2000 envelope
    COMPAT = "compat"  # 200 SSE with one `error` event (E2000) and [DONE]; the agent never runs


@dataclass(frozen=True, slots=True)
class Settings:
    jwt_secret: str
    host: str = "127.0.0.1"
    port: int = 9000
    redis_url: str | None = None  # None: the embedded in-process backend
    hitl_timeout_seconds: float = 280.0
    heartbeat_seconds: float = 15.0
    stream_auth: StreamAuthPolicy = StreamAuthPolicy.STRICT
    jwt_leeway_seconds: int = 10
    tool_timeout_seconds: float = 30.0
    session_ttl_seconds: int = 3600  # the Redis log and snapshot; at least the HITL request's 30 min
    session_max_events: int = 10_000
    lease_seconds: float = 10.0
    signal_sweep_seconds: float = 5.0
    redis_timeout_seconds: float = 5.0
    shutdown_grace_seconds: float = 10.0
    log_level: str = "info"
    llm_base_url: str | None = None  # None: the offline rule-based planner
    llm_model: str | None = None
    llm_api_key: str | None = None
    llm_timeout_seconds: float = 60.0
    llm_max_retries: int = 2
    dwp_gateway_url: str = "http://localhost:8080"
    tools_file: str | None = None  # extra tool declarations, on top of aura/tools.json
    agent_task_url: str | None = None  # e.g. http://localhost:8080/api/main/agent/tasks

    def __post_init__(self) -> None:
        secret_bytes = len(self.jwt_secret.encode("utf-8"))
        if secret_bytes < MIN_SECRET_BYTES:
            raise ConfigError(
                f"JWT_SECRET must be at least {MIN_SECRET_BYTES} bytes of UTF-8 (got {secret_bytes}); "
                "the Java services refuse shorter HS256 keys"
            )
        if not 0 < self.hitl_timeout_seconds < GATEWAY_RESPONSE_TIMEOUT_SECONDS:
            raise ConfigError(
                "AURA_HITL_TIMEOUT_SECONDS must be greater than 0 and less than the gateway's "
                f"{GATEWAY_RESPONSE_TIMEOUT_SECONDS} s response timeout (got {self.hitl_timeout_seconds:g})"
            )
        if not 0 < self.heartbeat_seconds <= 60:
            raise ConfigError(
                f"AURA_HEARTBEAT_SECONDS must be greater than 0 and at most 60 (got {self.heartbeat_seconds:g})"
            )
        if not 1 <= self.port <= 65535:
            raise ConfigError(f"AURA_PORT must be between 1 and 65535 (got {self.port})")
        if (self.llm_base_url is None) != (self.llm_model is None):
            raise ConfigError("AURA_LLM_BASE_URL and AURA_LLM_MODEL must be set together (or neither)")
        for name, url in (
            ("AURA_LLM_BASE_URL", self.llm_base_url),
            ("AURA_DWP_GATEWAY_URL", self.dwp_gateway_url),
            ("AURA_AGENT_TASK_URL", self.agent_task_url),
        ):
            if url is not None and not url.startswith(("http://", "https://")):
                raise ConfigError(f"{name} must start with http:// or https:// (got {url!r})")

    @property
    def redis_embedded(self) -> bool:
        return self.redis_url is None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Build settings from ``env`` (default ``os.environ``); raise ConfigError with an exact message."""
        env = os.environ if env is None else env
        secret = env.get("JWT_SECRET")
        if not secret:
            raise ConfigError("JWT_SECRET is not set; it must be the HS256 secret shared with dwp-auth-server")
        policy_text = env.get("AURA_STREAM_AUTH", StreamAuthPolicy.STRICT.value)
        try:
            policy = StreamAuthPolicy(policy_text)
        except ValueError:
            raise ConfigError(f"AURA_STREAM_AUTH must be 'strict' or 'compat' (got {policy_text!r})") from None
        log_level = env.get("AURA_LOG_LEVEL", "info").lower()
        if log_level not in {"critical", "error", "warning", "info", "debug"}:
            raise ConfigError(
                f"AURA_LOG_LEVEL must be one of critical, error, warning, info, debug (got {log_level!r})"
            )
        return cls(
            jwt_secret=secret,
            host=env.get("AURA_HOST", "127.0.0.1"),
            port=_int(env, "AURA_PORT", 9000),
            redis_url=_redis_url(env),
            hitl_timeout_seconds=_float(env, "AURA_HITL_TIMEOUT_SECONDS", 280.0),
            heartbeat_seconds=_float(env, "AURA_HEARTBEAT_SECONDS", 15.0),
            stream_auth=policy,
            jwt_leeway_seconds=_int(env, "AURA_JWT_LEEWAY_SECONDS", 10, low=0, high=300),
            tool_timeout_seconds=_float(env, "AURA_TOOL_TIMEOUT_SECONDS", 30.0, low=0.001),
            session_ttl_seconds=_int(env, "AURA_SESSION_TTL_SECONDS", 3600, low=1800, high=30 * 86400),
            session_max_events=_int(env, "AURA_SESSION_MAX_EVENTS", 10_000, low=100, high=1_000_000),
            lease_seconds=_float(env, "AURA_LEASE_SECONDS", 10.0, low=0.5),
            signal_sweep_seconds=_float(env, "AURA_SIGNAL_SWEEP_SECONDS", 5.0, low=0.01),
            redis_timeout_seconds=_float(env, "AURA_REDIS_TIMEOUT_SECONDS", 5.0, low=0.01),
            shutdown_grace_seconds=_float(env, "AURA_SHUTDOWN_GRACE_SECONDS", 10.0, low=0.0),
            log_level=log_level,
            llm_base_url=env.get("AURA_LLM_BASE_URL") or None,
            llm_model=env.get("AURA_LLM_MODEL") or None,
            llm_api_key=env.get("AURA_LLM_API_KEY") or None,
            llm_timeout_seconds=_float(env, "AURA_LLM_TIMEOUT_SECONDS", 60.0, low=0.001),
            llm_max_retries=_int(env, "AURA_LLM_MAX_RETRIES", 2, low=0, high=10),
            dwp_gateway_url=env.get("AURA_DWP_GATEWAY_URL") or "http://localhost:8080",
            tools_file=env.get("AURA_TOOLS_FILE") or None,
            agent_task_url=env.get("AURA_AGENT_TASK_URL") or None,
        )


def _redis_url(env: Mapping[str, str]) -> str | None:
    url = env.get("REDIS_URL")
    if url:
        if not url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError(f"REDIS_URL must start with redis://, rediss:// or unix:// (got {url!r})")
        return url
    host = env.get("REDIS_HOST")
    if not host:
        return None
    port = _int(env, "REDIS_PORT", 6379)
    password = env.get("REDIS_PASSWORD")
    auth = f":{quote(password, safe='')}@" if password else ""
    return f"redis://{auth}{host}:{port}/0"


def _int(env: Mapping[str, str], name: str, default: int, *, low: int = 1, high: int = 65535) -> int:
    text = env.get(name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"{name} must be an integer (got {text!r})") from None
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low} and {high} (got {value})")
    return value


def _float(env: Mapping[str, str], name: str, default: float, *, low: float | None = None) -> float:
    text = env.get(name)
    if text is None or text == "":
        return default
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds (got {text!r})") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise ConfigError(f"{name} must be a finite number of seconds (got {text!r})")
    if low is not None and value < low:
        raise ConfigError(f"{name} must be at least {low:g} (got {value:g})")
    return value
