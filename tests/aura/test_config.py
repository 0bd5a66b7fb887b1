"""Configuration is one table of options, checked with exact messages however Settings is built."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import MISSING, fields, replace
from pathlib import Path
from typing import Any, get_type_hints

import pytest

from aura.config import (
    DEFAULT_GATEWAY_URL,
    DEV_JWT_SECRET,
    OPTIONS,
    MemberOf,
    MinBytes,
    OneOf,
    Option,
    Range,
    Settings,
    StartsWith,
    StreamAuthPolicy,
)
from aura.errors import ConfigError
from aura.storage.target import RedisMode, RedisTarget, parse_target

SECRET = "a-test-secret-that-is-not-the-dwp-dev-one-0123456789"
GOOD = {"JWT_SECRET": SECRET}
REDIS_SCHEMES = "REDIS_URL must start with redis://, rediss://, unix://, redis+sentinel:// or rediss+sentinel://"
BASE = Settings(jwt_secret=SECRET)
FIELDS = {f.name: f for f in fields(Settings)}


def build(**overrides: Any) -> Settings:
    return Settings(**{"jwt_secret": SECRET, **overrides})


def refused(option: Option) -> list[tuple[Any, str | None]]:
    """Values ``option``'s rule refuses, each with its environment text (None: not expressible there)."""
    rule = option.rule
    if isinstance(rule, Range):
        seconds = isinstance(option.default, float)
        below = rule.low if rule.low_open else (rule.low / 2 or -1.0 if seconds else rule.low - 1)
        edges = [below] if rule.high is None else [below, rule.high if rule.high_open else rule.high + 1]
        cases: list[tuple[Any, str | None]] = [
            (value, str(value)) for value in (float(v) if seconds else int(v) for v in edges)
        ]
        if seconds:  # the environment refuses these as text, with its own message
            cases += [(math.nan, None), (math.inf, None), (-math.inf, None)]
        return cases
    if isinstance(rule, OneOf):
        return [("loud", "loud"), (rule.choices[0].upper(), None)]  # the environment lower-cases
    if isinstance(rule, MemberOf):
        member = next(iter(rule.kind))
        return [("lax", "lax"), (member.value, None)]  # from the environment, the text is the member
    if isinstance(rule, StartsWith):
        return [("localhost:6379", "localhost:6379"), ("ftp://x", "ftp://x")]
    if isinstance(rule, MinBytes):
        short = "x" * (rule.count - 1)
        wide = "키" * ((rule.count - 1) // 3)  # 3 bytes each: fewer bytes than count
        return [(short, short), (wide, wide)]
    raise AssertionError(f"{option.env}: teach refused() about {rule!r}")


def accepted(option: Option) -> list[Any]:
    """The edges of ``option``'s range, which must be allowed."""
    rule = option.rule
    assert isinstance(rule, Range)
    low = math.nextafter(rule.low, math.inf) if rule.low_open else rule.low
    values = [low]
    if rule.high is not None:
        values.append(math.nextafter(rule.high, -math.inf) if rule.high_open else rule.high)
    return [float(v) if isinstance(option.default, float) else int(v) for v in values]


RULED = [option for option in OPTIONS if option.rule is not None]
REFUSED = [
    pytest.param(option, value, id=f"{option.env}={value!r}") for option in RULED for value, _ in refused(option)
]
REFUSED_FROM_ENV = [
    pytest.param(option, value, text, id=f"{option.env}={text!r}")
    for option in RULED
    for value, text in refused(option)
    if text is not None
]
RANGES = [option for option in OPTIONS if isinstance(option.rule, Range)]
NUMBERS = [option for option in OPTIONS if type(option.default) in (int, float)]

# One literal message per ruled field: the walk over the table checks paths, this checks wording.
EXACT_MESSAGES: list[tuple[dict[str, Any], str]] = [
    (
        {"jwt_secret": "short"},
        "JWT_SECRET must be at least 32 bytes of UTF-8 (got 5); the Java services refuse shorter HS256 keys",
    ),
    ({"port": 0}, "AURA_PORT must be between 1 and 65535 (got 0)"),
    ({"redis_url": "ftp://x"}, f"{REDIS_SCHEMES} (got 'ftp://x')"),
    ({"redis_mode": "ring"}, "REDIS_MODE must be one of standalone, cluster, sentinel (got 'ring')"),
    (
        {"hitl_timeout_seconds": 300},
        "AURA_HITL_TIMEOUT_SECONDS must be greater than 0 and less than the gateway's 300 s response timeout (got 300)",
    ),
    ({"heartbeat_seconds": 60.5}, "AURA_HEARTBEAT_SECONDS must be greater than 0 and at most 60 (got 60.5)"),
    ({"sse_send_timeout_seconds": 0.0}, "AURA_SSE_SEND_TIMEOUT_SECONDS must be between 0.01 and 600 (got 0)"),
    ({"stream_auth": "compat"}, "AURA_STREAM_AUTH must be 'strict' or 'compat' (got 'compat')"),
    ({"jwt_leeway_seconds": 301}, "AURA_JWT_LEEWAY_SECONDS must be between 0 and 300 (got 301)"),
    ({"tool_timeout_seconds": 0}, "AURA_TOOL_TIMEOUT_SECONDS must be at least 0.001 (got 0)"),
    ({"session_ttl_seconds": 5}, "AURA_SESSION_TTL_SECONDS must be between 1800 and 2592000 (got 5)"),
    ({"session_max_events": 99}, "AURA_SESSION_MAX_EVENTS must be between 100 and 1000000 (got 99)"),
    (
        {"finished_session_ttl_seconds": 1801},
        "AURA_FINISHED_SESSION_TTL_SECONDS must be between 60 and 1800 (got 1801)",
    ),
    ({"max_live_sessions_per_user": 0}, "AURA_MAX_LIVE_SESSIONS_PER_USER must be between 1 and 100000 (got 0)"),
    (
        {"max_live_sessions_per_tenant": 0},
        "AURA_MAX_LIVE_SESSIONS_PER_TENANT must be between 1 and 1000000 (got 0)",
    ),
    (
        {"max_kept_sessions_per_user": 0},
        "AURA_MAX_KEPT_SESSIONS_PER_USER must be between 1 and 1000000 (got 0)",
    ),
    ({"max_streams_per_user": 0}, "AURA_MAX_STREAMS_PER_USER must be between 1 and 100000 (got 0)"),
    ({"max_streams_per_tenant": 0}, "AURA_MAX_STREAMS_PER_TENANT must be between 1 and 1000000 (got 0)"),
    ({"http_max_header_bytes": 1023}, "AURA_HTTP_MAX_HEADER_BYTES must be between 1024 and 1048576 (got 1023)"),
    (
        {"http_header_timeout_seconds": 0.05},
        "AURA_HTTP_HEADER_TIMEOUT_SECONDS must be between 0.1 and 300 (got 0.05)",
    ),
    ({"http_body_timeout_seconds": 601.0}, "AURA_HTTP_BODY_TIMEOUT_SECONDS must be between 0.1 and 600 (got 601)"),
    ({"http_keepalive_seconds": 0.0}, "AURA_HTTP_KEEPALIVE_SECONDS must be between 0.1 and 300 (got 0)"),
    ({"http_max_connections": 0}, "AURA_HTTP_MAX_CONNECTIONS must be between 1 and 1000000 (got 0)"),
    ({"delegated_token_seconds": 9}, "AURA_DELEGATED_TOKEN_SECONDS must be between 10 and 3600 (got 9)"),
    ({"lease_seconds": 0.1}, "AURA_LEASE_SECONDS must be at least 0.5 (got 0.1)"),
    ({"signal_sweep_seconds": math.inf}, "AURA_SIGNAL_SWEEP_SECONDS must be a finite number of seconds (got inf)"),
    ({"redis_timeout_seconds": 0.0}, "AURA_REDIS_TIMEOUT_SECONDS must be at least 0.01 (got 0)"),
    ({"redis_replica_acks": 6}, "AURA_REDIS_REPLICA_ACKS must be between 0 and 5 (got 6)"),
    (
        {"redis_replica_ack_timeout_seconds": 0.0},
        "AURA_REDIS_REPLICA_ACK_TIMEOUT_SECONDS must be between 0.01 and 60 (got 0)",
    ),
    ({"shutdown_grace_seconds": -1.0}, "AURA_SHUTDOWN_GRACE_SECONDS must be at least 0 (got -1)"),
    ({"log_level": "INFO"}, "AURA_LOG_LEVEL must be one of critical, error, warning, info, debug (got 'INFO')"),
    ({"log_format": "xml"}, "AURA_LOG_FORMAT must be one of text, json (got 'xml')"),
    (
        {"llm_base_url": "llm.test/v1", "llm_model": "m"},
        "AURA_LLM_BASE_URL must start with http:// or https:// (got 'llm.test/v1')",
    ),
    ({"llm_timeout_seconds": -5.0}, "AURA_LLM_TIMEOUT_SECONDS must be at least 0.001 (got -5)"),
    ({"llm_max_retries": 11}, "AURA_LLM_MAX_RETRIES must be between 0 and 10 (got 11)"),
    ({"dwp_gateway_url": "gw:8080"}, "AURA_DWP_GATEWAY_URL must start with http:// or https:// (got 'gw:8080')"),
    ({"agent_task_url": "ftp://x"}, "AURA_AGENT_TASK_URL must start with http:// or https:// (got 'ftp://x')"),
]


def by_env(option: Option) -> str:
    return option.env


def refusal(make: Callable[[], object]) -> str:
    """The message of the ConfigError that ``make`` raises."""
    with pytest.raises(ConfigError) as caught:
        make()
    return str(caught.value)


# ---------------------------------------------------------------- the table


def test_the_table_has_one_row_per_settings_field_in_field_order() -> None:
    assert [option.name for option in OPTIONS] == list(FIELDS)
    assert len({option.env for option in OPTIONS}) == len(OPTIONS)


@pytest.mark.parametrize("option", OPTIONS, ids=by_env)
def test_each_field_default_is_its_rows_default(option: Option) -> None:
    field = FIELDS[option.name]
    if option.required:
        assert field.default is MISSING and field.default_factory is MISSING
        return
    assert field.default is option.default
    assert getattr(BASE, option.name) is option.default
    assert isinstance(option.default, get_type_hints(Settings)[option.name])


@pytest.mark.parametrize("option", [o for o in OPTIONS if not o.required], ids=by_env)
def test_an_unset_or_empty_variable_means_the_default(option: Option) -> None:
    assert Settings.from_env({**GOOD, option.env: ""}) == BASE


@pytest.mark.parametrize("option", [o for o in OPTIONS if o.required], ids=by_env)
def test_a_required_variable_that_is_unset_or_empty_is_refused(option: Option) -> None:
    for env in ({}, {option.env: ""}):
        assert refusal(lambda: Settings.from_env(env)) == f"{option.env} is not set; {option.unset_hint}"


def test_an_environment_with_only_the_secret_gives_the_table_defaults() -> None:
    settings = Settings.from_env(GOOD)
    assert settings == BASE
    assert {o.name: getattr(settings, o.name) for o in OPTIONS if not o.required} == {
        o.name: o.default for o in OPTIONS if not o.required
    }


def test_defaults_follow_the_issue_table() -> None:
    settings = Settings.from_env(GOOD)
    assert settings.host == "127.0.0.1"
    assert settings.port == 9000
    assert settings.redis_url is None and settings.redis_embedded
    assert settings.hitl_timeout_seconds == 280
    assert settings.heartbeat_seconds == 15
    assert settings.stream_auth is StreamAuthPolicy.STRICT


def test_the_default_gateway_url_is_the_exported_constant() -> None:
    assert DEFAULT_GATEWAY_URL == "http://localhost:8080"
    assert BASE.dwp_gateway_url == DEFAULT_GATEWAY_URL


def test_settings_stay_a_frozen_dataclass_with_slots() -> None:
    assert dataclasses.is_dataclass(Settings) and hasattr(Settings, "__slots__")
    with pytest.raises(dataclasses.FrozenInstanceError):
        BASE.port = 1  # type: ignore[misc]


# ---------------------------------------------------------------- every rule, on every path


@pytest.mark.parametrize(("option", "value"), REFUSED)
def test_construction_refuses_a_value_the_rule_refuses_naming_the_variable(option: Option, value: Any) -> None:
    assert option.rule is not None
    problem = option.rule.problem(value)
    assert problem is not None
    assert refusal(lambda: build(**{option.name: value})) == f"{option.env} must {problem}"


@pytest.mark.parametrize(("option", "value"), REFUSED)
def test_replace_is_held_to_the_same_rules(option: Option, value: Any) -> None:
    assert refusal(lambda: replace(BASE, **{option.name: value})) == refusal(lambda: build(**{option.name: value}))


@pytest.mark.parametrize(("option", "value", "text"), REFUSED_FROM_ENV)
def test_the_environment_is_held_to_the_same_rules(option: Option, value: Any, text: str) -> None:
    from_env = refusal(lambda: Settings.from_env({**GOOD, option.env: text}))
    assert from_env == refusal(lambda: build(**{option.name: value}))


@pytest.mark.parametrize("option", RANGES, ids=by_env)
def test_the_edges_of_a_range_are_accepted_on_every_path(option: Option) -> None:
    for value in accepted(option):
        assert getattr(build(**{option.name: value}), option.name) == value
        assert getattr(replace(BASE, **{option.name: value}), option.name) == value
        assert getattr(Settings.from_env({**GOOD, option.env: repr(value)}), option.name) == value


@pytest.mark.parametrize(("overrides", "message"), EXACT_MESSAGES)
def test_code_gets_the_exact_message_the_environment_would(overrides: dict[str, Any], message: str) -> None:
    assert refusal(lambda: build(**overrides)) == message
    assert refusal(lambda: replace(BASE, **overrides)) == message


def test_the_dev_secret_is_refused_unless_allowed_on_every_path() -> None:
    """Issue 10 item 9: outside `make run` and the tests, Aura does not start with the public dev secret."""
    message = (
        "JWT_SECRET is the public DWP dev secret (CONTRACT §2.1): set the secret dwp-auth-server uses, "
        "or AURA_ALLOW_DEV_SECRET=true on a development machine (make run does)"
    )
    assert refusal(lambda: build(jwt_secret=DEV_JWT_SECRET)) == message
    assert refusal(lambda: replace(BASE, jwt_secret=DEV_JWT_SECRET)) == message
    assert refusal(lambda: Settings.from_env({"JWT_SECRET": DEV_JWT_SECRET})) == message
    allowed = Settings.from_env({"JWT_SECRET": DEV_JWT_SECRET, "AURA_ALLOW_DEV_SECRET": "true"})
    assert allowed.allow_dev_secret and allowed.jwt_secret == DEV_JWT_SECRET
    assert refusal(lambda: Settings.from_env({**GOOD, "AURA_ALLOW_DEV_SECRET": "yes"})) == (
        "AURA_ALLOW_DEV_SECRET must be true or false (got 'yes')"
    )


def test_the_ai_workspace_pages_events_are_on_unless_switched_off() -> None:
    assert BASE.workspace_events is True
    assert Settings.from_env({**GOOD, "AURA_WORKSPACE_EVENTS": "false"}).workspace_events is False
    assert Settings.from_env({**GOOD, "AURA_WORKSPACE_EVENTS": "TRUE"}).workspace_events is True
    assert refusal(lambda: Settings.from_env({**GOOD, "AURA_WORKSPACE_EVENTS": "off"})) == (
        "AURA_WORKSPACE_EVENTS must be true or false (got 'off')"
    )


def test_metrics_are_served_unless_switched_off() -> None:
    assert BASE.metrics is True
    assert Settings.from_env({**GOOD, "AURA_METRICS": "false"}).metrics is False
    assert Settings.from_env({**GOOD, "AURA_METRICS": "True"}).metrics is True
    assert refusal(lambda: Settings.from_env({**GOOD, "AURA_METRICS": "off"})) == (
        "AURA_METRICS must be true or false (got 'off')"
    )


def test_every_ruled_option_has_an_exact_message_case() -> None:
    """A new rule row needs its literal message above, not only the generic walk."""
    covered = {name for overrides, _ in EXACT_MESSAGES for name in overrides}
    assert {option.name for option in RULED} <= covered


@pytest.mark.parametrize("partial", [{"llm_base_url": "https://llm.test/v1"}, {"llm_model": "m"}])
def test_llm_base_url_and_model_come_together_on_every_path(partial: dict[str, Any]) -> None:
    message = "AURA_LLM_BASE_URL and AURA_LLM_MODEL must be set together (or neither)"
    env = {option.env: partial[option.name] for option in OPTIONS if option.name in partial}
    assert refusal(lambda: build(**partial)) == message
    assert refusal(lambda: replace(BASE, **partial)) == message
    assert refusal(lambda: Settings.from_env({**GOOD, **env})) == message
    both = build(llm_base_url="https://llm.test/v1", llm_model="m")
    assert both.llm_model == "m" and replace(both, llm_model="n").llm_model == "n"


def test_values_the_test_suite_overrides_are_accepted() -> None:
    base = build(
        redis_url="redis://127.0.0.1:6379/0", hitl_timeout_seconds=30, heartbeat_seconds=15, lease_seconds=3,
        signal_sweep_seconds=5, shutdown_grace_seconds=5,
    )
    for overrides in (
        {"port": 54321, "log_level": "warning"},
        {"heartbeat_seconds": 0.2, "hitl_timeout_seconds": 1.5},
        {"heartbeat_seconds": 0.3},
        {"hitl_timeout_seconds": 0.5},
        {"hitl_timeout_seconds": 1},
        {"lease_seconds": 0.5},
        {"lease_seconds": 0.6},
        {"signal_sweep_seconds": 0.05},
        {"redis_timeout_seconds": 0.2},
        {"shutdown_grace_seconds": 0},
        {"session_ttl_seconds": 1800},
        {"stream_auth": StreamAuthPolicy.COMPAT},
        {"redis_url": None},
        {"agent_task_url": "http://127.0.0.1:1/api/main/agent/tasks"},
        {
            "llm_base_url": "https://llm.test/v1", "llm_model": "test-model", "llm_api_key": "sk-test",
            "llm_max_retries": 2, "llm_timeout_seconds": 5, "dwp_gateway_url": "http://gateway.test",
            "tools_file": "/tmp/tools.json",
        },
    ):
        replace(base, **overrides)
    Settings(jwt_secret="x" * 40, redis_url="unix:///tmp/redis.sock")


# ---------------------------------------------------------------- parsing the environment


@pytest.mark.parametrize("option", NUMBERS, ids=by_env)
def test_a_numeric_variable_refuses_text_that_is_not_a_number(option: Option) -> None:
    kind = "an integer" if type(option.default) is int else "a number of seconds"
    message = f"{option.env} must be {kind} (got 'soon')"
    assert refusal(lambda: Settings.from_env({**GOOD, option.env: "soon"})) == message


@pytest.mark.parametrize("option", [o for o in NUMBERS if type(o.default) is float], ids=by_env)
@pytest.mark.parametrize("text", ["nan", "inf", "-inf"])
def test_a_seconds_variable_refuses_a_non_finite_number(option: Option, text: str) -> None:
    message = f"{option.env} must be a finite number of seconds (got {text!r})"
    assert refusal(lambda: Settings.from_env({**GOOD, option.env: text})) == message


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "JWT_SECRET is not set; it must be the HS256 secret shared with dwp-auth-server"),
        (
            {"JWT_SECRET": "short"},
            "JWT_SECRET must be at least 32 bytes of UTF-8 (got 5); the Java services refuse shorter HS256 keys",
        ),
        (
            {**GOOD, "AURA_HITL_TIMEOUT_SECONDS": "300"},
            "AURA_HITL_TIMEOUT_SECONDS must be greater than 0 and less than the gateway's 300 s response timeout (got 300)",
        ),
        ({**GOOD, "AURA_HITL_TIMEOUT_SECONDS": "soon"}, "AURA_HITL_TIMEOUT_SECONDS must be a number of seconds (got 'soon')"),
        ({**GOOD, "AURA_HITL_TIMEOUT_SECONDS": "nan"}, "AURA_HITL_TIMEOUT_SECONDS must be a finite number of seconds (got 'nan')"),
        ({**GOOD, "AURA_HEARTBEAT_SECONDS": "0"}, "AURA_HEARTBEAT_SECONDS must be greater than 0 and at most 60 (got 0)"),
        ({**GOOD, "AURA_PORT": "http"}, "AURA_PORT must be an integer (got 'http')"),
        ({**GOOD, "AURA_PORT": "70000"}, "AURA_PORT must be between 1 and 65535 (got 70000)"),
        ({**GOOD, "AURA_SESSION_TTL_SECONDS": "5"}, "AURA_SESSION_TTL_SECONDS must be between 1800 and 2592000 (got 5)"),
        ({**GOOD, "AURA_LEASE_SECONDS": "0.1"}, "AURA_LEASE_SECONDS must be at least 0.5 (got 0.1)"),
        ({**GOOD, "AURA_STREAM_AUTH": "lax"}, "AURA_STREAM_AUTH must be 'strict' or 'compat' (got 'lax')"),
        ({**GOOD, "REDIS_URL": "localhost:6379"}, f"{REDIS_SCHEMES} (got 'localhost:6379')"),
        ({**GOOD, "REDIS_HOST": "redis", "REDIS_PORT": "0"}, "REDIS_PORT must be between 1 and 65535 (got 0)"),
        ({**GOOD, "REDIS_HOST": "redis", "REDIS_PORT": "six"}, "REDIS_PORT must be an integer (got 'six')"),
        ({**GOOD, "AURA_LOG_LEVEL": "loud"}, "AURA_LOG_LEVEL must be one of critical, error, warning, info, debug (got 'loud')"),
        ({**GOOD, "AURA_LOG_FORMAT": "logfmt"}, "AURA_LOG_FORMAT must be one of text, json (got 'logfmt')"),
        ({**GOOD, "AURA_DWP_GATEWAY_URL": "gw:8080"}, "AURA_DWP_GATEWAY_URL must start with http:// or https:// (got 'gw:8080')"),
    ],
)
def test_bad_configuration_is_refused_with_an_exact_message(env: dict[str, str], message: str) -> None:
    assert refusal(lambda: Settings.from_env(env)) == message


def test_secret_length_counts_utf8_bytes_not_characters() -> None:
    Settings.from_env({"JWT_SECRET": "키" * 11})  # 33 bytes, 11 characters
    with pytest.raises(ConfigError):
        Settings.from_env({"JWT_SECRET": "키" * 10})  # 30 bytes


def test_redis_url_wins_over_host_variables() -> None:
    env = {**GOOD, "REDIS_URL": "redis://cache:6380/0", "REDIS_HOST": "other"}
    assert Settings.from_env(env).redis_url == "redis://cache:6380/0"


def test_redis_host_port_password_build_a_url() -> None:
    env = {**GOOD, "REDIS_HOST": "redis", "REDIS_PORT": "6380", "REDIS_PASSWORD": "p@ss word"}
    assert Settings.from_env(env).redis_url == "redis://:p%40ss%20word@redis:6380/0"
    assert Settings.from_env({**GOOD, "REDIS_HOST": "redis"}).redis_url == "redis://redis:6379/0"


def test_compat_policy_is_selectable() -> None:
    assert Settings.from_env({**GOOD, "AURA_STREAM_AUTH": "compat"}).stream_auth is StreamAuthPolicy.COMPAT


def test_log_level_from_the_environment_is_lower_cased() -> None:
    assert Settings.from_env({**GOOD, "AURA_LOG_LEVEL": "WARNING"}).log_level == "warning"


def test_logs_are_text_unless_json_is_asked_for() -> None:
    assert BASE.log_format == "text"
    assert Settings.from_env({**GOOD, "AURA_LOG_FORMAT": "JSON"}).log_format == "json"
    assert Settings.from_env({**GOOD, "AURA_LOG_FORMAT": "text"}).log_format == "text"


# ---------------------------------------------------------------- Redis deployments

NO_REDIS = "is set but no Redis is configured: set REDIS_URL or REDIS_HOST"
NOT_SENTINEL = "is set but Redis is not in Sentinel mode: use a redis+sentinel:// URL or REDIS_MODE=sentinel"
NEEDS_HOST = "is set but REDIS_HOST is not: set REDIS_HOST, or give the whole address in REDIS_URL"
CA_WITHOUT_TLS = (
    "REDIS_CA_FILE is set but REDIS_URL is not TLS: use rediss:// (or rediss+sentinel://), or REDIS_TLS=true with REDIS_HOST"
)
NO_MASTER = (
    "REDIS_SENTINEL_MASTER must name the master for Sentinel, or REDIS_URL must: redis+sentinel://host:26379/<master>"
)


@pytest.fixture
def ca_file(tmp_path: Path) -> str:
    path = tmp_path / "server-ca.pem"
    path.write_text("-----BEGIN CERTIFICATE-----\n")
    return str(path)


def env_of(**fields_: Any) -> dict[str, str]:
    """The environment that gives ``fields_`` (text values only), with the secret."""
    return {**GOOD, **{_env(name): value for name, value in fields_.items()}}


def _env(name: str) -> str:
    return next(option.env for option in OPTIONS if option.name == name)


def test_the_embedded_default_has_no_target_and_waits_for_no_replica() -> None:
    for settings in (BASE, Settings.from_env(GOOD)):
        assert settings.redis_embedded and settings.redis_target is None and settings.replica_acks == 0
        assert settings.redis_replica_acks is None and settings.redis_replica_ack_timeout_seconds == 2.0


@pytest.mark.parametrize(
    "name", ["redis_mode", "redis_ca_file", "redis_sentinel_master", "redis_sentinel_username", "redis_sentinel_password"]
)
def test_a_redis_companion_without_any_redis_is_refused_on_every_path(name: str) -> None:
    message = f"{_env(name)} {NO_REDIS}"
    overrides: dict[str, Any] = {name: "cluster"}
    assert refusal(lambda: build(**overrides)) == message
    assert refusal(lambda: replace(BASE, **overrides)) == message
    assert refusal(lambda: Settings.from_env(env_of(**overrides))) == message


def test_replica_acks_alone_are_accepted_and_embedded_waits_for_none() -> None:
    settings = Settings.from_env({**GOOD, "AURA_REDIS_REPLICA_ACKS": "2"})
    assert settings.redis_replica_acks == 2 and settings.replica_acks == 0


@pytest.mark.parametrize("variable", ["REDIS_USERNAME", "REDIS_TLS", "REDIS_DB"])
def test_a_host_part_without_redis_host_is_refused(variable: str) -> None:
    assert refusal(lambda: Settings.from_env({**GOOD, variable: "true"})) == f"{variable} {NEEDS_HOST}"


@pytest.mark.parametrize("variable", ["REDIS_USERNAME", "REDIS_TLS", "REDIS_DB", "REDIS_HOST"])
def test_redis_url_wins_over_every_host_part(variable: str) -> None:
    env = {**GOOD, "REDIS_URL": "redis://cache:6380/0", variable: "other"}
    assert Settings.from_env(env).redis_url == "redis://cache:6380/0"


@pytest.mark.parametrize(
    ("parts", "url"),
    [
        ({"REDIS_HOST": "cache", "REDIS_USERNAME": "alice"}, "redis://alice@cache:6379/0"),
        (
            {"REDIS_HOST": "cache", "REDIS_PORT": "6380", "REDIS_USERNAME": "a@b", "REDIS_PASSWORD": "p:w/d",
             "REDIS_DB": "2", "REDIS_TLS": "true"},
            "rediss://a%40b:p%3Aw%2Fd@cache:6380/2",
        ),
        ({"REDIS_HOST": "cache", "REDIS_TLS": "TRUE"}, "rediss://cache:6379/0"),
        ({"REDIS_HOST": "cache", "REDIS_TLS": "false"}, "redis://cache:6379/0"),
        ({"REDIS_HOST": "::1"}, "redis://[::1]:6379/0"),
        ({"REDIS_HOST": "[::1]:6380"}, "redis://[::1]:6380/0"),
        (
            {"REDIS_HOST": "10.0.0.1:7000, 10.0.0.2:7001,10.0.0.3,[fd00::3]", "REDIS_PORT": "7005", "REDIS_MODE": "cluster"},
            "redis://10.0.0.1:7000,10.0.0.2:7001,10.0.0.3:7005,[fd00::3]:7005/0",
        ),
        (
            {"REDIS_HOST": "s1,s2:26380", "REDIS_MODE": "Sentinel", "REDIS_SENTINEL_MASTER": "m"},
            "redis://s1:26379,s2:26380/0",  # a sentinel's default port, not 6379
        ),
    ],
)
def test_the_host_parts_build_a_url(parts: dict[str, str], url: str) -> None:
    assert Settings.from_env({**GOOD, **parts}).redis_url == url


def test_a_cluster_from_a_redis_host_list_and_redis_mode_cluster() -> None:
    env = {**GOOD, "REDIS_HOST": "10.0.0.1:7000,10.0.0.2:7001", "REDIS_MODE": "cluster", "REDIS_PASSWORD": "p w"}
    settings = Settings.from_env(env)
    assert settings.redis_mode == "cluster"
    assert settings.redis_target == RedisTarget(
        RedisMode.CLUSTER, (("10.0.0.1", 7000), ("10.0.0.2", 7001)), password="p w"
    )
    assert settings.replica_acks == 1


def test_tls_with_a_ca_file_from_the_environment(ca_file: str) -> None:
    for env in (
        {**GOOD, "REDIS_URL": "rediss://alice:pw@cache.example:6380/0", "REDIS_CA_FILE": ca_file},
        {**GOOD, "REDIS_HOST": "cache.example", "REDIS_PORT": "6380", "REDIS_TLS": "true", "REDIS_USERNAME": "alice",
         "REDIS_PASSWORD": "pw", "REDIS_CA_FILE": ca_file},
    ):
        target = Settings.from_env(env).redis_target
        assert target == RedisTarget(
            RedisMode.STANDALONE, (("cache.example", 6380),), username="alice", password="pw", tls=True, ca_file=ca_file
        )


def test_sentinel_from_the_url_path() -> None:
    settings = Settings.from_env({**GOOD, "REDIS_URL": "rediss+sentinel://aura:pw@s1:26379,s2:26379/mymaster/1"})
    target = settings.redis_target
    assert target is not None and target.mode is RedisMode.SENTINEL
    assert (target.sentinel_master, target.db, target.username, target.password, target.tls) == (
        "mymaster", 1, "aura", "pw", True,
    )
    assert settings.replica_acks == 1


def test_sentinel_from_redis_sentinel_master_with_sentinel_credentials() -> None:
    env = {
        **GOOD, "REDIS_URL": "redis+sentinel://s1,s2", "REDIS_SENTINEL_MASTER": "mymaster",
        "REDIS_SENTINEL_USERNAME": "watcher", "REDIS_SENTINEL_PASSWORD": "spw",
    }
    target = Settings.from_env(env).redis_target
    assert target is not None
    assert (target.sentinel_master, target.sentinel_username, target.sentinel_password) == ("mymaster", "watcher", "spw")
    assert target.nodes == (("s1", 26379), ("s2", 26379))


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"redis_url": "redis://cache"}, 0),
        ({"redis_url": "unix:///tmp/r.sock"}, 0),
        ({"redis_url": "redis://cache", "redis_replica_acks": 1}, 1),  # e.g. a primary endpoint with replicas
        ({"redis_url": "redis://h1,h2", "redis_mode": "cluster"}, 1),
        ({"redis_url": "redis://h1,h2", "redis_mode": "cluster", "redis_replica_acks": 0}, 0),  # shards without replicas
        ({"redis_url": "redis+sentinel://s1/m"}, 1),
        ({"redis_url": "redis+sentinel://s1/m", "redis_replica_acks": 3}, 3),
        ({"redis_replica_acks": 3}, 0),
    ],
)
def test_replica_acks_resolve_auto_by_mode(overrides: dict[str, Any], expected: int) -> None:
    assert build(**overrides).replica_acks == expected


def test_redis_target_is_parsed_from_the_fields() -> None:
    settings = build(redis_url="redis://s1:26379", redis_mode="sentinel", redis_sentinel_master="m")
    assert settings.redis_target == parse_target(
        "redis://s1:26379", mode="sentinel", ca_file=None, sentinel_master="m", sentinel_username=None,
        sentinel_password=None,
    )


# The same URL and companions, refused with the same message from code, replace() and the environment.
REDIS_REFUSALS: list[tuple[dict[str, Any], str]] = [
    (
        {"redis_url": "redis://h1:7000,h2:7001"},
        "REDIS_URL lists 2 hosts; a list of hosts needs REDIS_MODE=cluster, or a redis+sentinel:// URL for Sentinel",
    ),
    (
        {"redis_url": "redis://h1:7000/1", "redis_mode": "cluster"},
        "REDIS_URL must name database 0 with REDIS_MODE=cluster: a Redis Cluster has only database 0 (got 1)",
    ),
    ({"redis_url": "redis://cache", "redis_ca_file": "/etc/ssl/ca.pem"}, CA_WITHOUT_TLS),
    ({"redis_url": "rediss://cache", "redis_ca_file": "/nope.pem"}, "REDIS_CA_FILE must name a readable file (got '/nope.pem')"),
    ({"redis_url": "redis+sentinel://s1"}, NO_MASTER),
    ({"redis_url": "redis://s1", "redis_mode": "sentinel"}, NO_MASTER),
    (
        {"redis_url": "redis+sentinel://s1/a", "redis_sentinel_master": "b"},
        "REDIS_SENTINEL_MASTER must match the master REDIS_URL names (got 'b'; REDIS_URL names 'a')",
    ),
    (
        {"redis_url": "redis+sentinel://s1/m", "redis_mode": "standalone"},
        "REDIS_MODE must be sentinel or unset with a redis+sentinel:// URL (got 'standalone')",
    ),
    ({"redis_url": "redis://cache", "redis_sentinel_username": "w"}, f"REDIS_SENTINEL_USERNAME {NOT_SENTINEL}"),
    ({"redis_url": "redis://cache", "redis_sentinel_password": "w"}, f"REDIS_SENTINEL_PASSWORD {NOT_SENTINEL}"),
    ({"redis_url": "redis://cache", "redis_sentinel_master": "m"}, f"REDIS_SENTINEL_MASTER {NOT_SENTINEL}"),
    ({"redis_url": "unix:///tmp/r.sock", "redis_mode": "cluster"},
     "REDIS_URL must list TCP hosts with REDIS_MODE=cluster, not a unix:// socket"),
    ({"redis_url": "redis://:hunter2@cache:port"},
     "REDIS_URL must give each port as an integer between 1 and 65535 (got 'cache:port')"),
    ({"redis_url": "http://alice:hunter2@cache"}, f"{REDIS_SCHEMES} (got 'http://alice:***@cache')"),
    ({"redis_url": "redis://alice:hunter2@"}, "REDIS_URL must name a host (got 'redis://alice:***@')"),
]


@pytest.mark.parametrize(("overrides", "message"), REDIS_REFUSALS)
def test_redis_refusals_are_the_same_on_every_path(overrides: dict[str, Any], message: str) -> None:
    assert refusal(lambda: build(**overrides)) == message
    assert refusal(lambda: replace(BASE, **overrides)) == message
    assert refusal(lambda: Settings.from_env(env_of(**overrides))) == message
    assert "hunter2" not in message


def test_replace_rechecks_the_url_against_a_changed_companion() -> None:
    cluster = build(redis_url="redis://h1:7000,h2:7001", redis_mode="cluster")
    assert refusal(lambda: replace(cluster, redis_mode=None)).startswith("REDIS_URL lists 2 hosts;")
    assert replace(cluster, redis_replica_acks=0).replica_acks == 0


def test_redis_mode_from_the_environment_is_lower_cased() -> None:
    env = {**GOOD, "REDIS_URL": "redis://h1,h2", "REDIS_MODE": "CLUSTER"}
    assert Settings.from_env(env).redis_mode == "cluster"


@pytest.mark.parametrize(
    ("parts", "message"),
    [
        ({"REDIS_HOST": "cache", "REDIS_TLS": "yes"}, "REDIS_TLS must be true or false (got 'yes')"),
        ({"REDIS_HOST": "cache", "REDIS_DB": "two"}, "REDIS_DB must be an integer (got 'two')"),
        ({"REDIS_HOST": "cache", "REDIS_DB": "-1"}, "REDIS_DB must be at least 0 (got -1)"),
        (
            {"REDIS_HOST": "h1:7000", "REDIS_MODE": "cluster", "REDIS_DB": "1"},
            "REDIS_DB must be 0 with REDIS_MODE=cluster: a Redis Cluster has only database 0 (got 1)",
        ),
        (
            {"REDIS_HOST": "h1,h2"},
            "REDIS_HOST lists 2 hosts; a list of hosts needs REDIS_MODE=cluster (or REDIS_MODE=sentinel for a list of sentinels)",
        ),
        (
            {"REDIS_HOST": "h1,h2,h3", "REDIS_MODE": "standalone"},
            "REDIS_HOST lists 3 hosts; a list of hosts needs REDIS_MODE=cluster (or REDIS_MODE=sentinel for a list of sentinels)",
        ),
        (
            {"REDIS_HOST": "h1,h2", "REDIS_MODE": "ring"},  # the row names the bad mode rather than the list
            "REDIS_MODE must be one of standalone, cluster, sentinel (got 'ring')",
        ),
        ({"REDIS_HOST": "h1,,h2", "REDIS_MODE": "cluster"}, "REDIS_HOST must name a host in every entry (got 'h1,,h2')"),
        ({"REDIS_HOST": ":7000"}, "REDIS_HOST must name a host in every entry (got ':7000')"),
        ({"REDIS_HOST": "h1:x"}, "REDIS_HOST must give each port as an integer between 1 and 65535 (got 'h1:x')"),
        ({"REDIS_HOST": "h1:70000"}, "REDIS_HOST must give each port as an integer between 1 and 65535 (got 'h1:70000')"),
        ({"REDIS_HOST": "a b"}, "REDIS_HOST must give each host as name, name:port or [IPv6]:port (got 'a b')"),
        ({"REDIS_HOST": "[::1"}, "REDIS_HOST must give each host as name, name:port or [IPv6]:port (got '[::1')"),
        (
            {"REDIS_HOST": "alice:hunter2@cache"},
            "REDIS_HOST must hold hosts only: give credentials in REDIS_USERNAME and REDIS_PASSWORD",
        ),
        ({"REDIS_HOST": "cache", "REDIS_CA_FILE": "/etc/ssl/ca.pem"}, CA_WITHOUT_TLS),
        ({"REDIS_HOST": "s1", "REDIS_MODE": "sentinel"}, NO_MASTER),
        ({"REDIS_HOST": "cache", "REDIS_SENTINEL_PASSWORD": "x"}, f"REDIS_SENTINEL_PASSWORD {NOT_SENTINEL}"),
    ],
)
def test_bad_host_parts_are_refused_with_an_exact_message(parts: dict[str, str], message: str) -> None:
    assert refusal(lambda: Settings.from_env({**GOOD, **parts, "REDIS_PASSWORD": "hunter2"})) == message


def test_a_replica_wait_must_end_before_the_redis_socket_timeout() -> None:
    """WAIT holds its connection: a wait as long as the socket timeout is cut off as a dead connection."""
    base = {"JWT_SECRET": "x" * 40, "REDIS_URL": "redis+sentinel://s1/master", "AURA_REDIS_TIMEOUT_SECONDS": "1"}
    with pytest.raises(ConfigError) as raised:
        Settings.from_env(base)
    assert str(raised.value) == (
        "AURA_REDIS_REPLICA_ACK_TIMEOUT_SECONDS must be less than AURA_REDIS_TIMEOUT_SECONDS (got 2 and 1), "
        "or replicas need not acknowledge (AURA_REDIS_REPLICA_ACKS=0)"
    )
    assert Settings.from_env({**base, "AURA_REDIS_REPLICA_ACK_TIMEOUT_SECONDS": "0.5"}).replica_acks == 1
    assert Settings.from_env({**base, "AURA_REDIS_REPLICA_ACKS": "0"}).replica_acks == 0
    assert Settings.from_env({**base, "REDIS_URL": "redis://h"}).replica_acks == 0  # standalone: nothing to wait for
