"""The keys module and the "Redis use" table of docs/ARCHITECTURE.md name the same keys and channels."""

from __future__ import annotations

import re
from pathlib import Path

from aura.storage import keys

ARCHITECTURE = Path(__file__).resolve().parents[3] / "docs" / "ARCHITECTURE.md"


def documented() -> set[str]:
    """Every key in the table's first column, with its placeholder written ``{}``."""
    text = ARCHITECTURE.read_text(encoding="utf-8")
    table = text.split("## Redis use", 1)[1].split("\n\n", 2)[1]
    names: set[str] = set()
    for row in table.splitlines()[2:]:
        first = row.split("|")[1]
        names |= {re.sub(r"\{[A-Za-z]+\}", "{}", name) for name in re.findall(r"`([^`]+)`", first)}
    return names


def in_the_module() -> set[str]:
    # Each key is the ``format`` of its template string.
    templates = {value("{}") for value in vars(keys).values() if getattr(value, "__name__", "") == "format"}
    return templates | {keys.LIVE_SESSIONS}


def test_every_key_of_the_module_is_in_the_architecture_table_and_back() -> None:
    assert in_the_module() == documented()


def test_contract_4_2_hitl_keys_are_main_services_names() -> None:
    assert keys.hitl_request("req_1") == "hitl:request:req_1"
    assert keys.hitl_session("sess_1") == "hitl:session:sess_1"
    assert keys.hitl_signal("sess_1") == "hitl:signal:sess_1"
    assert keys.hitl_channel("sess_1") == "hitl:channel:sess_1"
    assert keys.HITL_CHANNEL_PATTERN == "hitl:channel:*"


def test_channel_patterns_match_their_channels() -> None:
    assert keys.events_channel("s").startswith(keys.EVENTS_CHANNEL_PATTERN[:-1])
    assert keys.cancel_channel("s").startswith(keys.CANCEL_CHANNEL_PATTERN[:-1])
