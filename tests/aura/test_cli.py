"""The command line: dev tokens, configuration errors and the diagram check."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from jose import jwt

from aura.config import Settings
from tests.conftest import SECRET

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("JWT_", "AURA_", "REDIS_"))}
    return subprocess.run(
        [sys.executable, "-m", "aura", *args], capture_output=True, text=True, cwd=ROOT, env={**base, **(env or {})},
        timeout=60,
    )


def test_token_prints_an_auth_server_shaped_jwt() -> None:
    result = run("token", "--sub", "7", "--tenant", "3", env={"JWT_SECRET": SECRET})
    assert result.returncode == 0, result.stderr
    claims = jwt.decode(result.stdout.strip(), SECRET, algorithms=["HS256"])
    assert claims["sub"] == "7" and claims["tenant_id"] == "3"
    assert claims["exp"] - claims["iat"] == 3600


def test_serve_refuses_a_short_secret_with_the_exact_message() -> None:
    result = run("serve", env={"JWT_SECRET": "too-short"})
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "aura: configuration error: JWT_SECRET must be at least 32 bytes of UTF-8 (got 9); "
        "the Java services refuse shorter HS256 keys"
    )


def test_serve_refuses_a_hitl_timeout_at_the_gateway_limit() -> None:
    result = run("serve", env={"JWT_SECRET": SECRET, "AURA_HITL_TIMEOUT_SECONDS": "300"})
    assert result.returncode == 2
    assert "AURA_HITL_TIMEOUT_SECONDS must be greater than 0 and less than the gateway's 300 s" in result.stderr


def test_diagrams_check_passes_on_the_committed_file() -> None:
    result = run("diagrams", "--check")
    assert result.returncode == 0, result.stderr


def test_outbound_request_urls_are_not_logged_at_info() -> None:
    """An AgentTask's ?errorMessage= or a tool's query values reached the log through httpx's INFO line."""
    import logging

    from aura.cli import configure_logging

    configure_logging(Settings(jwt_secret=SECRET, log_level="info"))
    assert not logging.getLogger("httpx").isEnabledFor(logging.INFO)
    assert logging.getLogger("httpx").isEnabledFor(logging.WARNING)


def test_serve_refuses_a_trace_exporter_the_sdk_cannot_find_with_its_message() -> None:
    """DECISIONS #62: `otlp` with the Python SDK's default protocol (gRPC) needs an exporter the otel extra lacks."""
    result = run("serve", env={"JWT_SECRET": SECRET, "OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": ""})
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "aura: configuration error: OTEL_TRACES_EXPORTER='otlp' cannot be used: Requested component "
        "'otlp_proto_grpc' not found in entry point 'opentelemetry_traces_exporter'"
    )
