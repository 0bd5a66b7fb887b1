"""Spans, propagation and switching tracing on: what the instrumented code relies on."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from aura.errors import ConfigError
from aura.telemetry import tracing
from aura.telemetry.tracing import TraceContext

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_ID = "b7ad6b7169203331"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"
ORIGIN = TraceContext(TRACEPARENT, "congo=t61rcWkgMzE")

pytestmark = pytest.mark.anyio


def hex_ids(span_context: trace.SpanContext) -> tuple[str, str]:
    return trace.format_trace_id(span_context.trace_id), trace.format_span_id(span_context.span_id)


def named(headers: dict[str, str]) -> tuple[str, str]:
    """The trace and parent span ids a ``traceparent`` header names (its flags vary: sampled, random)."""
    version, trace_id, span_id, _flags = headers["traceparent"].split("-")
    assert version == "00"
    return trace_id, span_id


# -- off ------------------------------------------------------------------------------------------
def test_off_every_helper_does_nothing_and_sends_no_header() -> None:
    assert not tracing.enabled()
    headers: dict[str, str] = {}
    with tracing.span("x", {"a": 1}) as scope:
        scope.set({"b": 2})
        scope.event("e")
        scope.failed(RuntimeError("secret"))
        tracing.inject(headers)
        assert scope.headers() == {}
    with tracing.client_span("y") as call, tracing.session_run("sess_1", "1", ORIGIN, adopted=False):
        assert call.headers() == {}
    assert headers == {}
    assert tracing.incoming({"traceparent": TRACEPARENT}) is None
    assert tracing.current_ids() is None


def test_no_exporter_named_means_off_whatever_else_is_set() -> None:
    for env in ({}, {"OTEL_TRACES_EXPORTER": "none"}, {"OTEL_TRACES_EXPORTER": " "},
                {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_SERVICE_NAME": "aura"},
                {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"}):
        assert tracing.configure(env) is False, env
        assert not tracing.enabled()
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)  # nothing was installed


def test_an_exporter_the_sdk_cannot_find_stops_aura_with_its_message(monkeypatch: pytest.MonkeyPatch) -> None:
    # The Python SDK's default OTLP protocol is gRPC, whose exporter the otel extra does not ship.
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_PROTOCOL", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", raising=False)
    with pytest.raises(ConfigError) as caught:
        tracing.configure()
    assert str(caught.value) == (
        "OTEL_TRACES_EXPORTER='otlp' cannot be used: Requested component 'otlp_proto_grpc' not found in "
        "entry point 'opentelemetry_traces_exporter'"
    )
    assert not tracing.enabled()
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


# -- spans ----------------------------------------------------------------------------------------
def test_a_span_is_the_child_of_the_current_one_and_current_inside(spans: InMemorySpanExporter) -> None:
    with tracing.span("outer") as outer_scope:
        outer_ids = tracing.current_ids()
        with tracing.span("inner", {"k": "v"}) as inner:
            inner.set({"n": 3, "gone": None})
            inner.event("something", {"why": "test"})
            inner_ids = tracing.current_ids()
        assert named(outer_scope.headers()) == outer_ids
    inner_span, outer_span = spans.get_finished_spans()
    assert inner_span.parent is not None and inner_span.parent.span_id == outer_span.context.span_id
    assert hex_ids(inner_span.context) == inner_ids and hex_ids(outer_span.context) == outer_ids
    assert dict(inner_span.attributes or {}) == {"k": "v", "n": 3}
    assert [e.name for e in inner_span.events] == ["something"]


def test_a_failure_is_described_by_its_type_never_its_message(spans: InMemorySpanExporter) -> None:
    with pytest.raises(ValueError), tracing.span("failing"):
        raise ValueError("Bearer eyJ-a-token-and-a-prompt")
    (failed,) = spans.get_finished_spans()
    assert failed.status.status_code is StatusCode.ERROR and failed.status.description == "ValueError"
    assert dict(failed.attributes or {}) == {"error.type": "ValueError"}
    assert not failed.events  # no exception event: it would carry the message and the traceback


async def test_a_cancel_is_an_event_not_an_error(spans: InMemorySpanExporter) -> None:
    async def wait() -> None:
        with tracing.span("waiting"):
            await asyncio.sleep(10)

    task = asyncio.create_task(wait())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    (cancelled,) = spans.get_finished_spans()
    assert cancelled.status.status_code is StatusCode.UNSET and [e.name for e in cancelled.events] == ["cancelled"]


async def test_a_client_span_in_an_async_generator_is_never_current(spans: InMemorySpanExporter) -> None:
    """A generator abandoned half-way is closed later, in another context: a current span could not be detached."""
    seen: list[dict[str, str]] = []

    async def stream() -> AsyncGenerator[int, None]:
        with tracing.client_span("chat m", {"gen_ai.request.model": "m"}) as call:
            seen.append(call.headers())
            yield 1
            yield 2

    with tracing.span("plan"):
        plan_ids = tracing.current_ids()
        chunks = stream()
        assert await chunks.__anext__() == 1
        assert tracing.current_ids() == plan_ids  # the generator's span did not become current
    await chunks.aclose()
    call_span, plan_span = sorted(spans.get_finished_spans(), key=lambda s: s.name)
    assert call_span.kind is SpanKind.CLIENT and call_span.parent is not None
    assert call_span.parent.span_id == plan_span.context.span_id
    assert [named(headers) for headers in seen] == [hex_ids(call_span.context)]


def test_a_new_sessions_run_is_a_child_of_the_callers_span(spans: InMemorySpanExporter) -> None:
    with tracing.span("the request's task"):  # the run's task is created inside a request: not its parent
        with tracing.session_run("sess_1", "7", ORIGIN, adopted=False):
            pass
    run = next(s for s in spans.get_finished_spans() if s.name == "aura.session.run")
    assert hex_ids(run.context)[0] == TRACE_ID
    assert run.parent is not None and trace.format_span_id(run.parent.span_id) == PARENT_ID and run.parent.is_remote
    assert run.context.trace_state.get("congo") == "t61rcWkgMzE"
    assert dict(run.attributes or {}) == {"aura.session.id": "sess_1", "aura.tenant.id": "7", "aura.session.adopted": False}
    assert not run.links


def test_a_session_without_a_caller_trace_starts_its_own(spans: InMemorySpanExporter) -> None:
    with tracing.span("the request's task"), tracing.session_run("sess_1", "7", None, adopted=False):
        pass
    run = next(s for s in spans.get_finished_spans() if s.name == "aura.session.run")
    assert run.parent is None and not run.links


def test_an_adopted_sessions_run_is_a_new_trace_linked_to_the_callers_span(spans: InMemorySpanExporter) -> None:
    """DECISIONS #63: the request that created the session ended long ago, on another replica perhaps."""
    with tracing.session_run("sess_1", "7", ORIGIN, adopted=True):
        pass
    (run,) = spans.get_finished_spans()
    assert run.parent is None and hex_ids(run.context)[0] != TRACE_ID
    (link,) = run.links
    assert hex_ids(link.context) == (TRACE_ID, PARENT_ID)
    assert dict(link.attributes or {}) == {"aura.link": "session created"}
    assert (run.attributes or {})["aura.session.adopted"] is True


def test_transitions_are_events_on_the_current_span(spans: InMemorySpanExporter) -> None:
    tracing.event("nothing current")  # no span: nowhere to go, and no error
    with tracing.span("run"):
        tracing.event("aura.session.transition", {"aura.session.to": "executing"})
    (run,) = spans.get_finished_spans()
    assert [(e.name, dict(e.attributes or {})) for e in run.events] == [
        ("aura.session.transition", {"aura.session.to": "executing"})
    ]


# -- propagation ----------------------------------------------------------------------------------
def test_the_callers_traceparent_is_kept_as_w3c(spans: InMemorySpanExporter) -> None:
    assert tracing.incoming({"traceparent": TRACEPARENT, "tracestate": "congo=t61rcWkgMzE"}) == ORIGIN
    assert tracing.incoming({"traceparent": TRACEPARENT}) == TraceContext(TRACEPARENT)


@pytest.mark.parametrize("headers", [
    {},
    {"traceparent": "garbage"},
    {"traceparent": f"00-{'0' * 32}-{PARENT_ID}-01"},  # the all-zero trace id is invalid
    {"traceparent": f"00-{TRACE_ID}-{'0' * 16}-01"},
    {"traceparent": f"00-{TRACE_ID.upper()}-{PARENT_ID}-01"},
])
def test_no_valid_traceparent_means_no_caller(spans: InMemorySpanExporter, headers: dict[str, str]) -> None:
    assert tracing.incoming(headers) is None


def test_inject_adds_the_current_spans_traceparent(spans: InMemorySpanExporter) -> None:
    headers = {"X-Tenant-ID": "1"}
    tracing.inject(headers)
    assert headers == {"X-Tenant-ID": "1"}  # no span, nothing to name
    with tracing.span("tool"):
        tracing.inject(headers)
        ids = tracing.current_ids()
    assert set(headers) == {"X-Tenant-ID", "traceparent"} and named(headers) == ids


@pytest.mark.parametrize("context", [TraceContext(TRACEPARENT), ORIGIN])
def test_a_trace_context_round_trips_its_encoding(context: TraceContext) -> None:
    assert TraceContext.decode(context.encode()) == context
