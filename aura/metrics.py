"""Aura's Prometheus metrics: one registry per :class:`aura.runtime.Runtime`, and what records into it.

Every family lives here, with its labels' few values bound once (``labels()`` is a dict
lookup under a lock: too much for every event). The modules that record call the small
methods of :class:`Metrics`; none of them knows a metric's name. The hot path pays one
counter increment per commit round (not per event) and none per SSE send; what can be read
from memory when scraped (sessions by state, leases held, Redis failures) is read then
by a collector, and costs nothing in between.

No label carries a tenant, a user, a session or anything a request chose: tool names are
the configured set, and the rest are the enums below. Values are per process: Aura runs
one process per replica, and Prometheus sums the replicas (docs/DECISIONS.md).
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable, Iterable, Iterator
from typing import Final

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric

from statemachines import AbortReason, State, Transition, Trigger

from aura.storage import calls

__all__ = ["AdoptionReason", "ApprovalOutcome", "LlmOutcome", "Metrics", "ToolOutcome", "unserved"]

# No `*_created` series beside every counter and histogram: they would double the series scraped, and
# Prometheus needs none (a reset shows as a drop). prometheus_client reads this when a metric is made.
disable_created_metrics()  # type: ignore[no-untyped-call]

NO_REASON: Final = "none"  # the `reason` of a session that ended done
LIVE_STATES: Final = (State.PLANNING, State.EXECUTING, State.AWAITING_APPROVAL)

# Seconds. An approval may take up to AURA_HITL_TIMEOUT_SECONDS (< 300); a commit is one round
# trip, retried for about 25 s when Redis is away; tools are bounded by AURA_TOOL_TIMEOUT_SECONDS
# (30 s), the model by AURA_LLM_TIMEOUT_SECONDS (60 s) per attempt.
APPROVAL_BUCKETS: Final = (1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 180.0, 240.0, 300.0)
COMMIT_BUCKETS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0)
TOOL_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
LLM_BUCKETS: Final = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 180.0)


class ApprovalOutcome(str, enum.Enum):
    APPROVED = "approved"
    REJECTED = "rejected"
    TIMEOUT = "timeout"  # nobody decided within AURA_HITL_TIMEOUT_SECONDS
    CANCELLED = "cancelled"  # the session was cancelled while it waited


class ToolOutcome(str, enum.Enum):
    COMPLETED = "completed"
    FAILED = "failed"  # the tool reported an error (ToolError, its Redis)
    TIMEOUT = "timeout"  # AURA_TOOL_TIMEOUT_SECONDS ran out
    CRASHED = "crashed"  # an unexpected exception: a bug in the tool
    CANCELLED = "cancelled"  # the session was cancelled or the process drained while it ran


class LlmOutcome(str, enum.Enum):
    COMPLETED = "completed"
    FAILED = "failed"  # unreachable, an error status, a timeout or a malformed stream, after retries
    CANCELLED = "cancelled"  # the run stopped while the model answered


class AdoptionReason(str, enum.Enum):
    INSTANCE_DIED = "instance_died"  # another instance's heartbeat lapsed
    STRANDED = "stranded"  # this instance's own run stopped while Redis was away


class Metrics:
    """The families of one Aura process, in a registry of their own (not prometheus_client's global
    one, so that several runtimes in one process, as in the tests, never share a series)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        ProcessCollector(registry=registry)  # process_cpu_seconds_total, process_resident_memory_bytes, ...
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)

        # -- sessions
        self._started = Counter("aura_sessions_started", "Sessions created by this process.", registry=registry)
        ended = Counter("aura_sessions_ended", "Sessions whose end this process wrote, by final state and abort "
                        "reason (reason=none for done).", ["state", "reason"], registry=registry)
        self._ended: dict[tuple[State, AbortReason | None], Counter] = {
            (State.DONE, None): ended.labels(State.DONE.value, NO_REASON),
            **{(State.ABORTED, r): ended.labels(State.ABORTED.value, r.value) for r in AbortReason},
        }
        transitions = Counter("aura_session_transitions", "State-machine transitions of the sessions driven here, "
                              "by trigger.", ["trigger"], registry=registry)
        self._transitions = {t: transitions.labels(t.value) for t in Trigger}
        adoptions = Counter("aura_session_adoptions", "Sessions this process took over and drove on from their "
                            "snapshot, by why they needed a driver.", ["reason"], registry=registry)
        self._adoptions = {r: adoptions.labels(r.value) for r in AdoptionReason}
        self._sessions = _SessionsCollector()
        registry.register(self._sessions)

        # -- approvals
        self._approval_wait = Histogram("aura_approval_wait_seconds", "Time from the approval request to its "
                                        "outcome, whatever it was (across an adoption too).",
                                        buckets=APPROVAL_BUCKETS, registry=registry)
        decisions = Counter("aura_approval_decisions", "Approval requests ended, by outcome.", ["outcome"],
                            registry=registry)
        self._decisions = {o: decisions.labels(o.value) for o in ApprovalOutcome}
        self._sweeps = Counter("aura_hitl_sweeps", "Sweeps of the waiting sessions' hitl:request records (after "
                               "every (re)subscribe and every AURA_SIGNAL_SWEEP_SECONDS).", registry=registry)
        self._sweep_found = Counter("aura_hitl_sweep_decisions", "Decisions a sweep found: ones no Pub/Sub message "
                                    "had delivered yet (a missed message, or one still in flight).",
                                    registry=registry)

        # -- the log
        self._events = Counter("aura_log_events_written", "Events Redis acknowledged in a session's log.",
                               registry=registry)
        self._commit = Histogram("aura_log_commit_seconds", "Duration of one commit round of the log writer (one "
                                 "pipeline for every session's queued events, with its retries).",
                                 buckets=COMMIT_BUCKETS, registry=registry)

        # -- SSE
        self._streams = Gauge("aura_sse_streams_open", "SSE responses open in this process.", registry=registry)
        self._heartbeats = Counter("aura_sse_heartbeats_sent", "Heartbeat comments sent on idle streams.",
                                   registry=registry)
        self._dropped = Counter("aura_sse_slow_clients_dropped", "Streams let go because the client read nothing "
                                "for AURA_SSE_SEND_TIMEOUT_SECONDS (their sessions go on).", registry=registry)

        # -- tools and the model
        self._tool_calls = Counter("aura_tool_calls", "Tool calls made, by tool and outcome.", ["tool", "outcome"],
                                   registry=registry)
        self._tool_seconds = Histogram("aura_tool_call_duration_seconds", "Duration of tool calls, by tool.",
                                       ["tool"], buckets=TOOL_BUCKETS, registry=registry)
        self._tool_children: dict[tuple[str, ToolOutcome], tuple[Counter, Histogram]] = {}
        llm_calls = Counter("aura_llm_calls", "Streamed chat completions asked of the model (one per completion, its retries inside it), "
                            "by outcome.", ["outcome"], registry=registry)
        self._llm_calls = {o: llm_calls.labels(o.value) for o in LlmOutcome}
        self._llm_seconds = Histogram("aura_llm_call_duration_seconds", "Duration of a streamed chat completion, "
                                      "from the request to its last delta.", buckets=LLM_BUCKETS, registry=registry)

        # -- Redis
        registry.register(_RedisFailuresCollector())

    # -- exposition -----------------------------------------------------------------------
    def exposition(self, accept: str | None) -> tuple[bytes, str]:
        """The registry in the format ``accept`` asks for (Prometheus text, or OpenMetrics), and its type."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type

    def observe_sessions(self, states: Callable[[], Iterable[State]]) -> None:
        """Read the sessions driven here at each scrape: ``states`` gives each one's state."""
        self._sessions.states = states

    # -- sessions -------------------------------------------------------------------------
    def session_started(self) -> None:
        self._started.inc()

    def session_ended(self, state: State, reason: AbortReason | None) -> None:
        self._ended[(state, reason if state is State.ABORTED else None)].inc()

    def transition(self, change: Transition) -> None:
        self._transitions[change.trigger].inc()

    def adopted(self, reason: AdoptionReason) -> None:
        self._adoptions[reason].inc()

    # -- approvals ------------------------------------------------------------------------
    def approval_ended(self, outcome: ApprovalOutcome, waited_seconds: float) -> None:
        self._decisions[outcome].inc()
        self._approval_wait.observe(max(waited_seconds, 0.0))

    def swept(self, found: int) -> None:
        self._sweeps.inc()
        if found:
            self._sweep_found.inc(found)

    # -- the log --------------------------------------------------------------------------
    def committed(self, events: int, seconds: float) -> None:
        """One commit round: ``events`` acknowledged in ``seconds``."""
        if events:
            self._events.inc(events)
        self._commit.observe(seconds)

    # -- SSE ------------------------------------------------------------------------------
    def stream_opened(self) -> None:
        self._streams.inc()

    def stream_closed(self) -> None:
        self._streams.dec()

    def heartbeat_sent(self) -> None:
        self._heartbeats.inc()

    def slow_client_dropped(self) -> None:
        self._dropped.inc()

    # -- tools and the model --------------------------------------------------------------
    def tool_called(self, tool: str, outcome: ToolOutcome, seconds: float) -> None:
        children = self._tool_children.get((tool, outcome))
        if children is None:  # once per configured tool and outcome
            children = self._tool_calls.labels(tool, outcome.value), self._tool_seconds.labels(tool)
            self._tool_children[(tool, outcome)] = children
        count, duration = children
        count.inc()
        duration.observe(seconds)

    def llm_called(self, outcome: LlmOutcome, seconds: float) -> None:
        self._llm_calls[outcome].inc()
        self._llm_seconds.observe(seconds)


@functools.cache
def unserved() -> Metrics:
    """What a part built without the runtime's metrics (a unit test, a tool) records into: served by nobody."""
    return Metrics()


class _SessionsCollector:
    """``aura_sessions_live{state}`` and ``aura_leases_held``, read from the registry when scraped."""

    def __init__(self) -> None:
        self.states: Callable[[], Iterable[State]] = tuple  # until the composition root says where they are

    def describe(self) -> Iterator[Metric]:
        yield GaugeMetricFamily("aura_sessions_live", "", labels=["state"])
        yield GaugeMetricFamily("aura_leases_held", "")

    def collect(self) -> Iterator[Metric]:
        counts = dict.fromkeys(LIVE_STATES, 0)
        held = 0
        for state in self.states():
            held += 1  # every session driven here is under this instance's lease, final or not yet dropped
            if state in counts:
                counts[state] += 1
        live = GaugeMetricFamily("aura_sessions_live", "Sessions driven by this process that have not ended, "
                                 "by state.", labels=["state"])
        for state, count in counts.items():
            live.add_metric([state.value], count)
        yield live
        yield GaugeMetricFamily("aura_leases_held", "Session leases this instance holds and drives on (a stranded "
                                "session's counts again once it is driven again).", value=held)


class _RedisFailuresCollector:
    """``aura_redis_errors_total{operation}``, from the one mapping of Redis failures
    (:func:`aura.storage.calls.mapped`), which counts them per process."""

    def describe(self) -> Iterator[Metric]:
        yield CounterMetricFamily("aura_redis_errors", "", labels=["operation"])

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily("aura_redis_errors", "Redis calls that failed (unreachable, timed out, refused), "
                                     "by operation; per process.", labels=["operation"])
        for operation, count in sorted(calls.FAILURES.items()):
            family.add_metric([operation], count)
        yield family
