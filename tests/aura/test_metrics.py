"""aura.metrics without a server: the families and their documentation, Prometheus's naming rules, bounded
labels, the series bound in advance, what each recording moves, the collectors read at scrape time, one
registry per Metrics, the exposition formats, and where the module sits among Aura's imports."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from statemachines import AbortReason, State, Transition, Trigger

from aura.errors import StoreUnavailable
from aura.metrics import AdoptionReason, ApprovalOutcome, LlmOutcome, Metrics, ToolOutcome
from aura.storage import calls
from aura.storage.calls import mapped
from tests.support.metrics import Scrape, labels, of

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
# Label names that keep cardinality bounded: enums, the configured tools, the code's own operation names.
BOUNDED_LABELS = {"state", "reason", "trigger", "outcome", "tool", "operation"}
UNIT_TEST_OPERATION = "unit-test operation"


def everything_recorded_once() -> Scrape:
    """A registry in which every family has at least one series, so that each shows its labels."""
    metrics = Metrics()
    metrics.observe_sessions(lambda: [State.PLANNING])
    metrics.session_started()
    metrics.session_ended(State.DONE, None)
    metrics.transition(Transition(State.PLANNING, State.EXECUTING, Trigger.START_EXECUTION))
    metrics.adopted(AdoptionReason.INSTANCE_DIED)
    metrics.approval_ended(ApprovalOutcome.APPROVED, 1.5)
    metrics.swept(1)
    metrics.committed(3, 0.002)
    metrics.stream_opened()
    metrics.heartbeat_sent()
    metrics.slow_client_dropped()
    metrics.tool_called("send_email", ToolOutcome.COMPLETED, 0.01)
    metrics.llm_called(LlmOutcome.COMPLETED, 0.5)
    calls.FAILURES[UNIT_TEST_OPERATION] += 0  # a series (at 0, as yet) of the process-wide Redis failures
    return of(metrics)


def exposed_name(family_name: str, kind: str) -> str:
    return f"{family_name}_total" if kind == "counter" else family_name


def registry_table() -> dict[str, tuple[str, frozenset[str]]]:
    """Every aura_ family: its exposed name -> (type, label names)."""
    scrape = everything_recorded_once()
    table = {}
    for family in scrape.families.values():
        if family.name.startswith("aura_"):
            names = {name for sample in family.samples for name in sample.labels} - {"le"}
            table[exposed_name(family.name, family.type)] = (family.type, frozenset(names))
    return table


def readme_table() -> dict[str, tuple[str, frozenset[str]]]:
    """The README's "Metrics" table: name -> (type, label names)."""
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Metrics\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(aura_\w+)` \| (counter|gauge|histogram) \|([^|]*)\|", section, flags=re.MULTILINE)
    return {name: (kind, frozenset(re.findall(r"`(\w+)`", cell))) for name, kind, cell in rows}


# -- the families ---------------------------------------------------------------------------------------
def test_the_readme_documents_every_family_with_its_type_and_labels_and_nothing_else() -> None:
    assert readme_table() == registry_table()


def test_names_follow_prometheus_conventions() -> None:
    for name, (kind, _) in registry_table().items():
        assert re.fullmatch(r"aura_[a-z_]+", name), name
        if kind == "counter":
            assert name.endswith("_total"), name
        else:
            assert not name.endswith("_total"), name
        if kind == "histogram":
            assert name.endswith("_seconds"), name  # every histogram is a duration, in base units


def test_every_family_says_what_it_means() -> None:
    for family in everything_recorded_once().families.values():
        if family.name.startswith("aura_"):
            assert len(family.documentation) > 20, family.name


def test_no_label_names_a_tenant_a_user_a_session_or_anything_a_request_chose() -> None:
    for name, (_, label_names) in registry_table().items():
        assert label_names <= BOUNDED_LABELS, (name, label_names)


def test_the_process_collectors_are_there_too() -> None:
    names = set(of(Metrics()).families)
    assert {"process_cpu_seconds", "process_resident_memory_bytes", "python_info", "python_gc_collections"} <= names


def test_no_created_series_doubles_the_counters() -> None:
    assert not [name for name in of(Metrics()).families if name.endswith("_created")]


# -- the series bound in advance ------------------------------------------------------------------------
def test_the_bounded_series_are_exposed_at_zero_before_anything_happens() -> None:
    values = of(Metrics()).values
    expected = [
        ("aura_sessions_ended_total", labels(state="done", reason="none")),
        *[("aura_sessions_ended_total", labels(state="aborted", reason=r.value)) for r in AbortReason],
        *[("aura_session_transitions_total", labels(trigger=t.value)) for t in Trigger],
        *[("aura_session_adoptions_total", labels(reason=r.value)) for r in AdoptionReason],
        *[("aura_approval_decisions_total", labels(outcome=o.value)) for o in ApprovalOutcome],
        *[("aura_llm_calls_total", labels(outcome=o.value)) for o in LlmOutcome],
        *[("aura_sessions_live", labels(state=s.value)) for s in (State.PLANNING, State.EXECUTING,
                                                                   State.AWAITING_APPROVAL)],
        ("aura_sessions_started_total", labels()),
        ("aura_leases_held", labels()),
        ("aura_sse_streams_open", labels()),
        ("aura_log_events_written_total", labels()),
        ("aura_log_commit_seconds_count", labels()),
    ]
    assert {key: values.get(key) for key in expected} == dict.fromkeys(expected, 0.0)


# -- what each recording moves ----------------------------------------------------------------------------
def moved(metrics: Metrics, before: Scrape) -> dict[str, dict[frozenset[tuple[str, str]], float]]:
    """Every aura_ sample that moved since ``before``, by sample name."""
    after = of(metrics)
    names = {name for name, _ in after.values if name.startswith("aura_")}
    return {name: deltas for name in sorted(names) if (deltas := after.deltas(before, name))}


def test_a_session_started_and_ended_moves_those_series_only() -> None:
    metrics = Metrics()
    before = of(metrics)
    metrics.session_started()
    metrics.session_ended(State.DONE, None)
    metrics.session_ended(State.ABORTED, AbortReason.REJECTED)
    metrics.session_ended(State.DONE, AbortReason.FAILED)  # a done session has no reason, whatever is passed
    assert moved(metrics, before) == {
        "aura_sessions_started_total": {labels(): 1},
        "aura_sessions_ended_total": {labels(state="done", reason="none"): 2,
                                      labels(state="aborted", reason="rejected"): 1},
    }


def test_transitions_are_counted_by_trigger() -> None:
    metrics = Metrics()
    before = of(metrics)
    metrics.transition(Transition(State.EXECUTING, State.AWAITING_APPROVAL, Trigger.REQUEST_APPROVAL))
    metrics.transition(Transition(State.AWAITING_APPROVAL, State.ABORTED, Trigger.TIME_OUT))
    metrics.transition(Transition(State.EXECUTING, State.ABORTED, Trigger.TIME_OUT))
    assert moved(metrics, before) == {
        "aura_session_transitions_total": {labels(trigger="request_approval"): 1, labels(trigger="time_out"): 2},
    }


def test_an_approval_moves_its_outcome_and_the_wait_histogram() -> None:
    metrics = Metrics()
    before = of(metrics)
    metrics.approval_ended(ApprovalOutcome.TIMEOUT, 7.0)
    metrics.approval_ended(ApprovalOutcome.CANCELLED, -0.5)  # a clock step back is no negative wait
    after = of(metrics)
    assert after.deltas(before, "aura_approval_decisions_total") == {labels(outcome="timeout"): 1,
                                                                      labels(outcome="cancelled"): 1}
    assert after.delta(before, "aura_approval_wait_seconds_count") == 2
    assert after.delta(before, "aura_approval_wait_seconds_sum") == 7.0
    assert after.value("aura_approval_wait_seconds_bucket", le="5.0") == 1  # the 0 s one
    assert after.value("aura_approval_wait_seconds_bucket", le="10.0") == 2


def test_a_commit_round_counts_its_events_once_and_its_duration() -> None:
    metrics = Metrics()
    before = of(metrics)
    metrics.committed(5, 0.003)
    metrics.committed(0, 0.001)  # a round that only ended a log: no event, still a round
    assert moved(metrics, before) == {
        "aura_log_commit_seconds_bucket": {labels(le=le): count for le, count in (
            ("0.001", 1), ("0.0025", 1), ("0.005", 2), ("0.01", 2), ("0.025", 2), ("0.05", 2), ("0.1", 2),
            ("0.25", 2), ("0.5", 2), ("1.0", 2), ("5.0", 2), ("30.0", 2), ("+Inf", 2))},
        "aura_log_commit_seconds_count": {labels(): 2},
        "aura_log_commit_seconds_sum": {labels(): pytest.approx(0.004)},
        "aura_log_events_written_total": {labels(): 5},
    }


def test_streams_open_go_up_and_down_and_heartbeats_and_drops_count() -> None:
    metrics = Metrics()
    metrics.stream_opened()
    metrics.stream_opened()
    metrics.stream_closed()
    metrics.heartbeat_sent()
    metrics.slow_client_dropped()
    scrape = of(metrics)
    assert scrape.value("aura_sse_streams_open") == 1
    assert scrape.value("aura_sse_heartbeats_sent_total") == 1
    assert scrape.value("aura_sse_slow_clients_dropped_total") == 1


def test_tool_calls_are_counted_by_tool_and_outcome_and_timed_by_tool() -> None:
    metrics = Metrics()
    metrics.tool_called("send_email", ToolOutcome.COMPLETED, 0.2)
    metrics.tool_called("send_email", ToolOutcome.TIMEOUT, 30.0)
    metrics.tool_called("list_open_tasks", ToolOutcome.COMPLETED, 0.01)
    metrics.tool_called("send_email", ToolOutcome.COMPLETED, 0.3)
    scrape = of(metrics)
    assert {k[1]: v for k, v in scrape.values.items() if k[0] == "aura_tool_calls_total"} == {
        labels(tool="send_email", outcome="completed"): 2,
        labels(tool="send_email", outcome="timeout"): 1,
        labels(tool="list_open_tasks", outcome="completed"): 1,
    }
    assert scrape.value("aura_tool_call_duration_seconds_count", tool="send_email") == 3
    assert scrape.value("aura_tool_call_duration_seconds_sum", tool="send_email") == pytest.approx(30.5)
    assert scrape.value("aura_tool_call_duration_seconds_count", tool="list_open_tasks") == 1


def test_llm_calls_are_counted_by_outcome_and_timed() -> None:
    metrics = Metrics()
    before = of(metrics)
    metrics.llm_called(LlmOutcome.FAILED, 60.0)
    after = of(metrics)
    assert after.deltas(before, "aura_llm_calls_total") == {labels(outcome="failed"): 1}
    assert after.delta(before, "aura_llm_call_duration_seconds_sum") == 60.0


def test_adoptions_and_sweeps_that_found_decisions() -> None:
    metrics = Metrics()
    before = of(metrics)
    metrics.adopted(AdoptionReason.STRANDED)
    metrics.swept(0)
    metrics.swept(2)
    assert moved(metrics, before) == {
        "aura_hitl_sweep_decisions_total": {labels(): 2},
        "aura_hitl_sweeps_total": {labels(): 2},
        "aura_session_adoptions_total": {labels(reason="stranded"): 1},
    }


# -- read at scrape time ------------------------------------------------------------------------------------
def test_sessions_live_by_state_and_leases_held_are_read_from_the_registry_when_scraped() -> None:
    metrics = Metrics()
    driven: list[State] = []
    metrics.observe_sessions(lambda: list(driven))
    assert of(metrics).value("aura_leases_held") == 0

    driven += [State.PLANNING, State.AWAITING_APPROVAL, State.AWAITING_APPROVAL, State.DONE]
    scrape = of(metrics)
    assert {k[1]: v for k, v in scrape.values.items() if k[0] == "aura_sessions_live"} == {
        labels(state="planning"): 1, labels(state="executing"): 0, labels(state="awaiting_approval"): 2,
    }
    assert scrape.value("aura_leases_held") == 4  # an ended session not yet dropped still holds its lease


async def test_redis_failures_mapped_in_storage_are_counted_by_operation_for_the_whole_process() -> None:
    first, second = Metrics(), Metrics()
    before = of(first).value("aura_redis_errors_total", operation=UNIT_TEST_OPERATION)
    for _ in range(2):
        with pytest.raises(StoreUnavailable):
            async with mapped(UNIT_TEST_OPERATION):
                raise RedisConnectionError("refused")
    async with mapped(UNIT_TEST_OPERATION):
        pass  # a call that worked counts nothing
    assert of(first).value("aura_redis_errors_total", operation=UNIT_TEST_OPERATION) == before + 2
    # per process: the connections are the process's, so every registry of it shows the same count
    assert of(second).value("aura_redis_errors_total", operation=UNIT_TEST_OPERATION) == before + 2


# -- one registry each -------------------------------------------------------------------------------------
def test_two_metrics_never_share_a_series() -> None:
    one, other = Metrics(), Metrics()
    one.session_started()
    one.stream_opened()
    assert of(one).value("aura_sessions_started_total") == 1
    assert of(other).value("aura_sessions_started_total") == 0
    assert of(other).value("aura_sse_streams_open") == 0


def test_the_text_format_by_default_and_openmetrics_when_asked() -> None:
    body, content_type = Metrics().exposition(None)
    assert content_type == "text/plain; version=0.0.4; charset=utf-8"
    assert b"# TYPE aura_sessions_started_total counter" in body
    body, content_type = Metrics().exposition("application/openmetrics-text; version=1.0.0; charset=utf-8")
    assert content_type.startswith("application/openmetrics-text; version=1.0.0")
    assert b"# TYPE aura_sessions_started counter" in body and body.endswith(b"# EOF\n")


# -- its place among the imports -----------------------------------------------------------------------------
def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_the_module_imports_only_the_core_and_storage_and_storage_does_not_import_it() -> None:
    aura_imports = {m for m in imported_modules(ROOT / "aura" / "metrics.py") if m.split(".")[0] == "aura"}
    assert aura_imports == {"aura.storage"}
    for path in (ROOT / "aura" / "storage").glob("*.py"):
        assert not {m for m in imported_modules(path) if m.startswith(("aura.metrics", "aura.http"))}, path
