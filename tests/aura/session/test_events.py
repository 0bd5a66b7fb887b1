"""Event payloads and SSE framing (CONTRACT §3.3-3.5)."""

from __future__ import annotations

from aura.session.events import AgentEvent, EventType, encode_frame
from aura.ids import EventId, SessionId, new_request_id, new_session_id
from tests.support.sse import parse_frame


def test_frame_is_id_event_data_on_one_ascii_line() -> None:
    frame = encode_frame("s.1", "content", {"type": "content", "data": {"content": "안녕 \n \"q\""}})
    assert frame == (
        b'id: s.1\nevent: content\ndata: {"type":"content","data":{"content":"\\uc548\\ub155 \\n \\"q\\""}}\n\n'
    )


def test_agent_event_uses_the_nested_envelope_with_id_mirrored() -> None:
    session_id = new_session_id()
    event = AgentEvent.create(EventId(session_id, 7), EventType.HITL, {"requestId": "req_x"})
    parsed = parse_frame(event.frame.rstrip(b"\n"))
    assert parsed.id == f"{session_id}.7"
    assert parsed.payload["type"] == "hitl"
    assert parsed.payload["data"] == {"requestId": "req_x"}
    assert set(parsed.payload) == {"type", "version", "eventId", "timestamp", "data"}


def test_ids_are_url_safe_and_unique() -> None:
    ids = {new_session_id() for _ in range(1000)} | {new_request_id() for _ in range(1000)}
    assert len(ids) == 2000
    assert all(i.replace("_", "").isalnum() for i in ids)


def test_event_id_parse_accepts_only_ids_aura_issued() -> None:
    sid = new_session_id()
    assert EventId.parse(f"{sid}.12") == EventId(SessionId(sid), 12)
    for foreign in (None, "", "event_123", "12345", "1706156400123", f"{sid}", f"{sid}.x", f"{sid}.-1", "sess_x.1"):
        assert EventId.parse(foreign) is None
