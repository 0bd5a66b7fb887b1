"""Configuration is validated at start-up with exact messages."""

from __future__ import annotations

import pytest

from aura.config import DEV_JWT_SECRET, Settings, StreamAuthPolicy
from aura.errors import ConfigError

GOOD = {"JWT_SECRET": DEV_JWT_SECRET}


def test_defaults_follow_the_issue_table():
    settings = Settings.from_env(GOOD)
    assert settings.host == "127.0.0.1"
    assert settings.port == 9000
    assert settings.redis_url is None and settings.redis_embedded
    assert settings.hitl_timeout_seconds == 280
    assert settings.heartbeat_seconds == 15
    assert settings.stream_auth is StreamAuthPolicy.STRICT


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
        ({**GOOD, "AURA_STREAM_AUTH": "lax"}, "AURA_STREAM_AUTH must be 'strict' or 'compat' (got 'lax')"),
        ({**GOOD, "REDIS_URL": "localhost:6379"}, "REDIS_URL must start with redis://, rediss:// or unix:// (got 'localhost:6379')"),
        ({**GOOD, "AURA_LOG_LEVEL": "loud"}, "AURA_LOG_LEVEL must be one of critical, error, warning, info, debug (got 'loud')"),
    ],
)
def test_bad_configuration_is_refused_with_an_exact_message(env, message):
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(env)
    assert str(caught.value) == message


def test_secret_length_counts_utf8_bytes_not_characters():
    Settings.from_env({"JWT_SECRET": "키" * 11})  # 33 bytes, 11 characters
    with pytest.raises(ConfigError):
        Settings.from_env({"JWT_SECRET": "키" * 10})  # 30 bytes


def test_redis_url_wins_over_host_variables():
    env = {**GOOD, "REDIS_URL": "redis://cache:6380/0", "REDIS_HOST": "other"}
    assert Settings.from_env(env).redis_url == "redis://cache:6380/0"


def test_redis_host_port_password_build_a_url():
    env = {**GOOD, "REDIS_HOST": "redis", "REDIS_PORT": "6380", "REDIS_PASSWORD": "p@ss word"}
    assert Settings.from_env(env).redis_url == "redis://:p%40ss%20word@redis:6380/0"
    assert Settings.from_env({**GOOD, "REDIS_HOST": "redis"}).redis_url == "redis://redis:6379/0"


def test_compat_policy_is_selectable():
    assert Settings.from_env({**GOOD, "AURA_STREAM_AUTH": "compat"}).stream_auth is StreamAuthPolicy.COMPAT
