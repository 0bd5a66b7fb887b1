"""The keys module and the "Redis use" table of docs/ARCHITECTURE.md name the same keys and channels."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from aura.storage import keys

ARCHITECTURE = Path(__file__).resolve().parents[3] / "docs" / "ARCHITECTURE.md"


def documented() -> set[str]:
    """Every key in the table's first column, with its ``<id>`` placeholder written ``ID``."""
    text = ARCHITECTURE.read_text(encoding="utf-8")
    table = text.split("| Key / channel |", 1)[1].split("\n\n", 1)[0]
    names: set[str] = set()
    for row in table.splitlines()[2:]:
        first = row.split("|")[1]
        names |= {re.sub(r"<[A-Za-z]+>", "ID", name) for name in re.findall(r"`([^`]+)`", first)}
    return names


def in_the_module() -> set[str]:
    # Each key is the ``format`` of its template string.
    formats = [value for value in vars(keys).values() if getattr(value, "__name__", "") == "format"]
    templates = {value(*["ID"] * value.__self__.count("{}")) for value in formats}
    return templates | {keys.INSTANCES}


def test_every_key_of_the_module_is_in_the_architecture_table_and_back() -> None:
    assert in_the_module() == documented()


def test_contract_4_2_hitl_keys_are_main_services_names() -> None:
    assert keys.hitl_request("req_1") == "hitl:request:req_1"
    assert keys.hitl_session("sess_1") == "hitl:session:sess_1"
    assert keys.hitl_signal("sess_1") == "hitl:signal:sess_1"
    assert keys.hitl_channel("sess_1") == "hitl:channel:sess_1"
    assert keys.HITL_CHANNEL_PATTERN == "hitl:channel:*"


def test_channel_patterns_match_their_channels_and_give_back_the_session() -> None:
    assert keys.cancel_channel("s").startswith(keys.CANCEL_CHANNEL_PATTERN[:-1])
    assert keys.channel_session(keys.CANCEL_CHANNEL_PREFIX, keys.cancel_channel("sess_1")) == "sess_1"
    assert keys.channel_session(keys.EVENTS_CHANNEL_PREFIX, keys.events_channel("sess_1")) == "sess_1"


def _slot(key: str) -> int:
    """Redis Cluster's slot of ``key`` (CRC16/XMODEM of the hash tag, or of the whole key), as CLUSTER KEYSLOT says."""
    start = key.find("{")
    if start >= 0:
        end = key.find("}", start + 1)
        if end > start + 1:
            key = key[start + 1 : end]
    crc = 0
    for byte in key.encode():
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc % 16384


@pytest.mark.parametrize("session_id", ["sess_1", "session_1_1706152860", "7f3a-b2"])
def test_every_key_of_a_session_is_in_one_cluster_slot(session_id: str) -> None:
    session_keys = [keys.snapshot(session_id), keys.events(session_id), keys.lease(session_id),
                    keys.followers(session_id)]
    assert len({_slot(key) for key in session_keys}) == 1
    assert _slot(keys.snapshot(session_id)) == _slot(session_id)


def test_an_instances_heartbeat_and_its_sessions_are_in_one_cluster_slot() -> None:
    assert _slot(keys.instance("aura-1")) == _slot(keys.instance_sessions("aura-1"))


def test_the_slot_function_agrees_with_redis_documented_examples() -> None:
    # The Redis Cluster specification: "123456789" hashes to 0x31C3; tags pick the part hashed.
    assert _slot("123456789") == 0x31C3 % 16384
    assert _slot("{user1000}.following") == _slot("{user1000}.followers") == _slot("user1000")
