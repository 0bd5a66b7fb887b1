"""Traces with OpenTelemetry: the one module that imports it, and only when the ``otel`` extra is installed.

Off unless configured. :func:`configure` hands the standard ``OTEL_*`` variables to the SDK's own
configurator (the one ``opentelemetry-instrument`` runs): ``OTEL_TRACES_EXPORTER``,
``OTEL_EXPORTER_OTLP_*``, ``OTEL_SERVICE_NAME``, ``OTEL_TRACES_SAMPLER``, ``OTEL_BSP_*``, ...
Without them, or without the extra, every function here does nothing and sends no header.

Spans never carry a token, a prompt or a model's text: ids, names, states and outcomes only, and
of a failure its exception type, never its message (which may quote what a service answered).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Iterator, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Final

from aura.errors import ConfigError

try:
    from opentelemetry import context as otel_context
    from opentelemetry import propagate, trace
    from opentelemetry.trace import Link, SpanKind, Status, StatusCode
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
except ImportError:  # the otel extra is not installed: tracing stays off
    AVAILABLE = False
else:
    AVAILABLE = True

log = logging.getLogger(__name__)

AttributeValue = str | bool | int | float
TRACER_NAME: Final = "aura"
EXPORTER_VARIABLE: Final = "OTEL_TRACES_EXPORTER"
_W3C: Final = TraceContextTextMapPropagator() if AVAILABLE else None

_tracer: trace.Tracer | None = None  # None: tracing is off


@dataclass(frozen=True, slots=True)
class TraceContext:
    """A caller's W3C trace context (``traceparent``, ``tracestate``), kept with its session."""

    traceparent: str
    tracestate: str = ""

    def carrier(self) -> dict[str, str]:
        return {"traceparent": self.traceparent, **({"tracestate": self.tracestate} if self.tracestate else {})}

    def encode(self) -> str:
        return json.dumps(self.carrier(), separators=(",", ":"))

    @classmethod
    def decode(cls, text: str) -> TraceContext | None:
        """The stored context, or None for anything else: a trace is never a reason to refuse a session."""
        try:
            carrier = json.loads(text)
        except ValueError:
            return None
        if not isinstance(carrier, dict):
            return None
        parent, state = carrier.get("traceparent"), carrier.get("tracestate", "")
        if not isinstance(parent, str) or not parent or not isinstance(state, str):
            return None
        return cls(parent, state)


# -- switching it on -----------------------------------------------------------------------------
def configure(env: Mapping[str, str] | None = None) -> bool:
    """Trace as the ``OTEL_*`` variables say; False (and nothing set up) when they name no exporter.

    The SDK reads the process environment itself; ``env`` only decides whether to ask it. A tracer
    provider someone already installed (``opentelemetry-instrument``) is used as it is. A value the SDK
    refuses (an exporter that is not installed, an unknown OTLP protocol) is a ConfigError.
    """
    env = os.environ if env is None else env
    exporters = (env.get(EXPORTER_VARIABLE) or "").strip().lower()
    if (env.get("OTEL_SDK_DISABLED") or "").strip().lower() == "true":
        return False
    if not AVAILABLE:
        if exporters and exporters != "none":
            log.warning("%s is set but the otel extra is not installed (pip install 'aura[otel]'): no traces",
                        EXPORTER_VARIABLE)
        return False
    installed = trace.get_tracer_provider()
    if not isinstance(installed, trace.ProxyTracerProvider):
        use(installed)
        return True
    if not exporters or exporters == "none":
        return False
    try:
        from opentelemetry.sdk._configuration import _OTelSDKConfigurator
    except ImportError:  # the API without the SDK
        log.warning("%s is set but opentelemetry-sdk is not installed (pip install 'aura[otel]'): no traces",
                    EXPORTER_VARIABLE)
        return False

    class _Configurator(_OTelSDKConfigurator):
        """The SDK's environment handling, subclassed as its docstring asks distributions to."""

    try:
        _Configurator().configure()  # type: ignore[no-untyped-call]  # untyped in the SDK
    except RuntimeError as exc:  # what the SDK raises for an exporter or protocol it cannot find
        raise ConfigError(f"{EXPORTER_VARIABLE}={env.get(EXPORTER_VARIABLE)!r} cannot be used: {exc}") from exc
    use(trace.get_tracer_provider())
    return True


def use(provider: trace.TracerProvider) -> None:
    """Trace into ``provider`` (tests use one with an in-memory exporter; the global one is set once)."""
    global _tracer
    _tracer = provider.get_tracer(TRACER_NAME)


def disable() -> None:
    global _tracer
    _tracer = None


def enabled() -> bool:
    return _tracer is not None


# -- spans ---------------------------------------------------------------------------------------
class SpanScope:
    """What a block may say about its span; does nothing when tracing is off."""

    __slots__ = ("_span",)

    def __init__(self, span: trace.Span | None) -> None:
        self._span = span

    def set(self, attributes: Mapping[str, AttributeValue | None]) -> None:
        if self._span is not None:
            self._span.set_attributes({key: value for key, value in attributes.items() if value is not None})

    def event(self, name: str, attributes: Mapping[str, AttributeValue] | None = None) -> None:
        if self._span is not None:
            self._span.add_event(name, dict(attributes or {}))

    def failed(self, error: BaseException | str) -> None:
        """Status ERROR, described by the exception's type (or ``error``), never by its message."""
        if self._span is not None:
            kind = error if isinstance(error, str) else type(error).__name__
            self._span.set_attribute("error.type", kind)
            self._span.set_status(Status(StatusCode.ERROR, kind))

    def headers(self) -> dict[str, str]:
        """The propagation headers (``traceparent``, ...) that name this span as the parent."""
        carrier: dict[str, str] = {}
        if self._span is not None:
            propagate.inject(carrier, context=trace.set_span_in_context(self._span))
        return carrier


_NO_SPAN: Final = SpanScope(None)


class _NoSpan(contextlib.AbstractContextManager[SpanScope]):
    """The block of every span while tracing is off: one shared object, so a waiting session holds
    no suspended generator per span (a generator frame is about half a KiB)."""

    __slots__ = ()

    def __enter__(self) -> SpanScope:
        return _NO_SPAN

    def __exit__(self, *exc_info: object) -> None:
        return None


_NO_SPAN_BLOCK: Final = _NoSpan()
Block = contextlib.AbstractContextManager[SpanScope]


def span(name: str, attributes: Mapping[str, AttributeValue] | None = None) -> Block:
    """A child of the current span, current inside the block. Not across an async generator's
    ``yield``: its cleanup may run in another context (use :func:`client_span` there)."""
    return _NO_SPAN_BLOCK if _tracer is None else _span(name, attributes)


@contextlib.contextmanager
def _span(name: str, attributes: Mapping[str, AttributeValue] | None) -> Iterator[SpanScope]:
    assert _tracer is not None
    with _tracer.start_as_current_span(name, attributes=attributes, record_exception=False,
                                       set_status_on_exception=False) as current:
        yield from _scoped(current)


def client_span(name: str, attributes: Mapping[str, AttributeValue] | None = None) -> Block:
    """A CLIENT child of the current span that is never made current, so it may live in an async
    generator; its parent is the span current when the block starts. Send ``scope.headers()``."""
    return _NO_SPAN_BLOCK if _tracer is None else _client_span(name, attributes)


@contextlib.contextmanager
def _client_span(name: str, attributes: Mapping[str, AttributeValue] | None) -> Iterator[SpanScope]:
    assert _tracer is not None
    call = _tracer.start_span(name, kind=SpanKind.CLIENT, attributes=attributes)
    try:
        yield from _scoped(call)
    finally:
        call.end()


def session_run(session_id: str, tenant_id: str, origin: TraceContext | None, *, adopted: bool) -> Block:
    """The span of one run of a session, current inside the block.

    A new session's run is a child of the caller's span (``origin``, the gateway's ``traceparent``).
    A run that continues a session another driver started is a trace of its own, linked to that
    span (DECISIONS #63): the request that created it ended long ago.
    """
    return _NO_SPAN_BLOCK if _tracer is None else _session_run(session_id, tenant_id, origin, adopted)


@contextlib.contextmanager
def _session_run(session_id: str, tenant_id: str, origin: TraceContext | None, adopted: bool) -> Iterator[SpanScope]:
    assert _tracer is not None
    caller = _W3C.extract(origin.carrier()) if origin is not None and _W3C is not None else None
    caller_span = trace.get_current_span(caller).get_span_context() if caller is not None else None
    links = [Link(caller_span, {"aura.link": "session created"})] if adopted and caller_span and caller_span.is_valid else []
    # An explicit parent either way, never the context the run's task was created in.
    parent = caller if caller is not None and not adopted else otel_context.Context()
    attributes: dict[str, AttributeValue] = {"aura.session.id": session_id, "aura.tenant.id": tenant_id,
                                             "aura.session.adopted": adopted}
    with _tracer.start_as_current_span("aura.session.run", context=parent, links=links, attributes=attributes,
                                       record_exception=False, set_status_on_exception=False) as run:
        yield from _scoped(run)


def _scoped(otel_span: trace.Span) -> Iterator[SpanScope]:
    scope = SpanScope(otel_span)
    try:
        yield scope
    except asyncio.CancelledError:  # a cancel, a drain, another instance took over: not an error
        scope.event("cancelled")
        raise
    except Exception as exc:
        scope.failed(exc)
        raise


def event(name: str, attributes: Mapping[str, AttributeValue] | None = None) -> None:
    """An event on the current span, if there is one (a session's state transitions)."""
    if _tracer is not None:
        trace.get_current_span().add_event(name, dict(attributes or {}))


# -- propagation ---------------------------------------------------------------------------------
def incoming(headers: Mapping[str, str]) -> TraceContext | None:
    """The caller's trace context, read by the propagators ``OTEL_PROPAGATORS`` names (W3C by default)
    and kept as W3C ``traceparent``/``tracestate``; None when tracing is off or there is none valid."""
    if _tracer is None or _W3C is None:
        return None
    caller = propagate.extract(headers)
    if not trace.get_current_span(caller).get_span_context().is_valid:
        return None
    carrier: dict[str, str] = {}
    _W3C.inject(carrier, context=caller)
    return TraceContext(carrier["traceparent"], carrier.get("tracestate", ""))


def inject(headers: MutableMapping[str, str]) -> None:
    """Add the current span's propagation headers (``traceparent``, ...) to an outbound call's."""
    if _tracer is not None:
        propagate.inject(headers)


def current_ids() -> tuple[str, str] | None:
    """The current trace and span ids (32 and 16 lower-case hex digits), for log lines."""
    if not AVAILABLE:
        return None
    current = trace.get_current_span().get_span_context()
    if not current.is_valid:
        return None
    return trace.format_trace_id(current.trace_id), trace.format_span_id(current.span_id)
