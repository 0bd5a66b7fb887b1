"""The headers of every call Aura makes to a DWP service on a user's behalf (CONTRACT §2.3)."""

from __future__ import annotations

import pytest

from aura.dwp.headers import CALLER_TYPE, SOURCE, outbound_headers

BASE = {"X-Tenant-ID": "7", "X-User-ID": "42", "X-DWP-Source": "AURA", "X-DWP-Caller-Type": "AGENT"}


def test_without_token_or_agent_id_only_who_and_from_where() -> None:
    assert outbound_headers(tenant_id="7", user_id="42") == BASE
    assert (SOURCE, CALLER_TYPE) == ("AURA", "AGENT")


def test_with_token_and_agent_id_both_are_sent_as_given() -> None:
    headers = outbound_headers(tenant_id="7", user_id="42", authorization="Bearer a.b.c", agent_id="agent-9")
    assert headers == {**BASE, "Authorization": "Bearer a.b.c", "X-Agent-ID": "agent-9"}


@pytest.mark.parametrize(
    ("authorization", "agent_id", "extra"),
    [
        ("Bearer t", None, {"Authorization": "Bearer t"}),
        (None, "agent-1", {"X-Agent-ID": "agent-1"}),
        ("", "", {}),  # empty is not a value: nothing is sent
    ],
)
def test_each_optional_header_is_sent_only_when_known(
    authorization: str | None, agent_id: str | None, extra: dict[str, str]
) -> None:
    headers = outbound_headers(tenant_id="7", user_id="42", authorization=authorization, agent_id=agent_id)
    assert headers == {**BASE, **extra}


def test_each_call_gets_its_own_dict() -> None:
    first = outbound_headers(tenant_id="7", user_id="42")
    first["Content-Type"] = "text/plain"
    assert outbound_headers(tenant_id="7", user_id="42") == BASE
