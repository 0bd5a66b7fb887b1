"""compose.yaml: valid Compose, Redis on the internal network behind ACL users, no secret with a default.

The ACL users written in compose.yaml (``configs.redis-users.content``) are the one source of the
Redis rules: :func:`acl_file` renders them as Compose would, and tests/aura/storage/test_acl.py loads
exactly that into a real redis-server, runs Aura and main-service's writes against it, and checks
what each user is refused. The Compose Specification's JSON schema is vendored
(tests/support/compose-spec.json, Apache-2.0, its source and notice in its ``$comment``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from aura.config import DEV_JWT_SECRET

ROOT = Path(__file__).resolve().parents[1]
# `make mutate` runs the unit tests from mutants/, a copy of the tree without compose.yaml: the nearest one up.
COMPOSE = next((f / "compose.yaml" for f in Path(__file__).resolve().parents if (f / "compose.yaml").exists()),
               ROOT / "compose.yaml")
SCHEMA = ROOT / "tests" / "support" / "compose-spec.json"
ACL_CONFIG = "redis-users"
REQUIRED = frozenset({"JWT_SECRET", "AURA_REDIS_PASSWORD", "MAIN_SERVICE_REDIS_PASSWORD"})

# Commands that no ACL user of compose.yaml may have: each can read, destroy or reconfigure everything.
DANGEROUS = frozenset({
    "flushall", "flushdb", "config", "keys", "scan", "debug", "shutdown", "acl", "module", "monitor",
    "script", "function", "client", "replicaof", "slaveof", "save", "bgsave", "bgrewriteaof", "swapdb",
    "migrate", "restore", "dump", "object", "cluster", "failover", "sync", "psync", "latency", "slowlog",
    "memory", "select", "move", "copy", "randomkey", "lastsave",
})

# Compose's interpolation: $$, $NAME, ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error},
# ${NAME?error}, ${NAME:+alt}, ${NAME+alt} (docs.docker.com/reference/compose-file/interpolation).
_VARIABLE = re.compile(r"\$(?:(\$)|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))")


class MissingVariable(Exception):
    """What Compose stops with: a required variable (``${NAME:?error}``) unset or empty."""


def interpolate(text: str, env: dict[str, str]) -> str:
    def value(match: re.Match[str]) -> str:
        dollar, name, operator, word, bare = match.groups()
        if dollar:
            return "$"
        name = name or bare
        present = name in env
        filled = bool(env.get(name))
        if operator in (":?", "?"):
            if not (filled if operator == ":?" else present):
                raise MissingVariable(f"{name}: {word}")
            return env[name]
        if operator in (":-", "-"):
            return env[name] if (filled if operator == ":-" else present) else word
        if operator in (":+", "+"):
            return word if (filled if operator == ":+" else present) else ""
        return env.get(name, "")

    return _VARIABLE.sub(value, text)


def compose_text() -> str:
    return COMPOSE.read_text(encoding="utf-8")


def compose() -> dict[str, Any]:
    document = yaml.safe_load(compose_text())
    assert isinstance(document, dict)
    return document


def acl_template() -> str:
    """``configs.redis-users.content`` as written: an ACL file with ``${...}`` for the passwords."""
    content = compose()["configs"][ACL_CONFIG]["content"]
    assert isinstance(content, str)
    return content


def acl_file(env: dict[str, str]) -> str:
    """The ACL file Compose hands to redis-server, for the passwords in ``env``."""
    return interpolate(acl_template(), env)


def acl_users(text: str | None = None) -> dict[str, list[str]]:
    """Each ACL user of compose.yaml (or of ``text``, an ACL file): its rules, in order."""
    users: dict[str, list[str]] = {}
    for line in (text if text is not None else acl_template()).splitlines():
        if not line.strip():
            continue
        keyword, name, *rules = line.split()
        assert keyword == "user", line
        assert name not in users, f"user {name} defined twice"
        users[name] = rules
    return users


def granted_commands(rules: list[str]) -> set[str]:
    """The commands (``name`` or ``name|subcommand``, lower case) that ``+`` rules grant."""
    return {rule[1:].lower() for rule in rules if rule.startswith("+")}


def services() -> dict[str, Any]:
    found = compose()["services"]
    assert isinstance(found, dict)
    return found


# -- the file --------------------------------------------------------------------------------------
def test_compose_yaml_is_valid_against_the_compose_specification() -> None:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    jsonschema.Draft7Validator.check_schema(schema)
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in jsonschema.Draft7Validator(schema).iter_errors(compose())]
    assert not errors, errors


def test_the_schema_check_would_catch_a_mistake() -> None:
    document = compose()
    document["services"]["redis"]["port"] = "6379:6379"  # not a Compose key
    assert not jsonschema.Draft7Validator(json.loads(SCHEMA.read_text(encoding="utf-8"))).is_valid(document)


def test_redis_publishes_no_port_and_is_on_the_internal_network_only() -> None:
    redis, aura = services()["redis"], services()["aura"]
    assert "ports" not in redis
    assert redis["networks"] == ["redis"]
    assert compose()["networks"]["redis"]["internal"] is True
    assert set(aura["networks"]) == {"default", "redis"}  # Aura reaches Redis and the world
    assert aura["ports"] == ["9000:9000"]  # what the gateway calls


def test_every_variable_is_required_and_none_has_a_default() -> None:
    used = {}
    for match in _VARIABLE.finditer(compose_text()):
        dollar, name, operator, word, bare = match.groups()
        assert not dollar and not bare, f"{match.group(0)}: write ${{NAME:?message}}"
        assert operator == ":?" and word.strip(), f"{match.group(0)}: a default or an empty value must not be possible"
        used[name] = word
    assert set(used) == REQUIRED
    env = {name: "x" * 40 for name in REQUIRED}
    for name in REQUIRED:
        with pytest.raises(MissingVariable, match=name):
            interpolate(compose_text(), {**env, name: ""})
    assert services()["aura"]["environment"]["JWT_SECRET"].startswith("${JWT_SECRET:?")


def test_no_dev_secret_anywhere() -> None:
    text = compose_text()
    assert DEV_JWT_SECRET not in text
    assert "AURA_ALLOW_DEV_SECRET" not in text  # Aura refuses the public dev secret outside make run and tests


def test_aura_logs_in_as_its_acl_user_with_the_redis_variables() -> None:
    environment = services()["aura"]["environment"]
    assert "REDIS_URL" not in environment  # no password inside a URL
    assert environment["REDIS_HOST"] == "redis" and environment["REDIS_PORT"] == "6379"
    assert environment["REDIS_USERNAME"] == "aura" and "aura" in acl_users()
    assert environment["REDIS_PASSWORD"].startswith("${AURA_REDIS_PASSWORD:?")
    assert "REDIS_DB" not in environment  # database 0: the aura user is not granted SELECT


def test_the_redis_healthcheck_keeps_the_password_out_of_its_command_line() -> None:
    redis = services()["redis"]
    test = redis["healthcheck"]["test"]
    command = " ".join(test)
    assert "$" not in command and " -a " not in command and "--pass" not in command and "-u " not in command
    assert "--user aura ping" in command and "grep -qx PONG" in command  # redis-cli exits 0 on NOAUTH
    assert redis["environment"]["REDISCLI_AUTH"].startswith("${AURA_REDIS_PASSWORD:?")


def test_redis_loads_the_acl_users_of_this_file() -> None:
    redis = services()["redis"]
    [mount] = redis["configs"]
    assert mount["source"] == ACL_CONFIG
    command = redis["command"]
    assert command[command.index("--aclfile") + 1] == mount["target"]
    assert "--requirepass" not in command and "--user" not in command  # users come from the ACL file only


# -- the ACL users -----------------------------------------------------------------------------------
def test_the_default_user_is_off_and_has_nothing() -> None:
    rules = acl_users()["default"]
    assert "off" in rules and "on" not in rules
    assert "resetpass" in rules and "nopass" not in rules and not any(r.startswith((">", "#")) for r in rules)
    assert "-@all" in rules and not granted_commands(rules)
    assert "resetkeys" in rules and "resetchannels" in rules


def test_each_service_user_starts_from_nothing_and_has_a_password_from_the_environment() -> None:
    for name, variable in (("aura", "AURA_REDIS_PASSWORD"), ("main-service", "MAIN_SERVICE_REDIS_PASSWORD")):
        rules = acl_users()[name]
        assert rules[:2] == ["reset", "on"], f"{name}: `reset` first, so nothing is granted but what follows"
        [password] = [r for r in rules if r.startswith(">")]
        assert password.startswith(f">${{{variable}:?")
        assert "nopass" not in rules


@pytest.mark.parametrize("name", ["aura", "main-service"])
def test_no_user_is_granted_a_category_everything_or_a_dangerous_command(name: str) -> None:
    rules = acl_users()[name]
    for broad in ("allkeys", "allchannels", "allcommands", "~*", "&*", "%R~*", "%W~*", "%RW~*"):
        assert broad not in rules, f"{name}: {broad}"
    assert not [r for r in rules if r.startswith("+@")], f"{name}: grant commands by name, not by category"
    assert not [r for r in rules if r.startswith("(")], f"{name}: no selectors"
    granted = granted_commands(rules)
    containers = {command for command in granted if "|" not in command}
    assert not containers & DANGEROUS, f"{name}: {sorted(containers & DANGEROUS)}"
    # Subcommands of a dangerous container only where named here: each is read-only and of the caller alone.
    allowed_subcommands = {"client|setinfo", "client|setname", "cluster|info", "cluster|slots"}
    assert {c for c in granted if "|" in c} <= allowed_subcommands


def test_main_service_reaches_the_hitl_keys_and_channels_only() -> None:
    rules = acl_users()["main-service"]
    assert [r for r in rules if r.startswith(("~", "%"))] == ["~hitl:*"]
    assert [r for r in rules if r.startswith("&")] == ["&hitl:channel:*"]


def test_aura_reaches_its_own_keys_and_the_hitl_keys_it_writes_only() -> None:
    rules = acl_users()["aura"]
    assert [r for r in rules if r.startswith(("~", "%"))] == ["~aura:*", "~hitl:request:*", "~hitl:session:*", "~hitl:signal:*"]
    # A PSUBSCRIBE pattern is granted only as written: aura:cancel:* and hitl:channel:* exactly.
    assert [r for r in rules if r.startswith("&")] == ["&aura:events:*", "&aura:cancel:*", "&hitl:channel:*"]


_CALLED = re.compile(r"""(?:redis\.call|execute_command)\(\s*['"]([A-Za-z]+)['"]""")


def test_every_command_in_auras_code_and_scripts_is_granted_to_aura() -> None:
    """Each ``redis.call('X'`` of a Lua script and each ``execute_command("X"`` under aura/: granted.
    (The commands redis-py's methods send are exercised against the real server by test_acl.py.)"""
    granted = granted_commands(acl_users()["aura"])
    called: dict[str, set[str]] = {}
    for path in sorted((ROOT / "aura").rglob("*.py")):
        for name in _CALLED.findall(path.read_text(encoding="utf-8")):
            called.setdefault(name.lower(), set()).add(str(path.relative_to(ROOT)))
    assert {"eval", "evalsha", "xadd", "zadd", "role", "wait", "get"} <= set(called)  # the scan finds them
    missing = {name: sorted(paths) for name, paths in called.items() if name not in granted}
    assert not missing, f"sent by Aura but not granted to the aura user in compose.yaml: {missing}"


def test_interpolation_as_compose_does_it() -> None:
    env = {"A": "1", "E": ""}
    assert interpolate("$$A ${A} $A ${E:-d} ${E-d} ${U-d} ${A:+x} ${E:+x}", env) == "$A 1 1 d  d x "
    assert interpolate("${E?m}", env) == ""
    with pytest.raises(MissingVariable, match="E: say so"):
        interpolate("${E:?say so}", env)
    with pytest.raises(MissingVariable, match="U"):
        interpolate("${U?m}", env)


def test_the_acl_file_has_one_line_per_user_and_the_passwords_filled_in() -> None:
    text = acl_file({"AURA_REDIS_PASSWORD": "pa", "MAIN_SERVICE_REDIS_PASSWORD": "pm", "JWT_SECRET": "s"})
    assert text.endswith("\n") and "$" not in text
    lines = text.splitlines()
    assert [line.split()[1] for line in lines] == ["default", "aura", "main-service"]
    assert ">pa" in lines[1].split() and ">pm" in lines[2].split()
    assert acl_users(text)["aura"][2] == ">pa"


def test_security_md_shows_exactly_the_acl_users_of_compose_yaml() -> None:
    """docs/SECURITY.md ("Redis ACLs") documents the rules compose.yaml loads, with placeholder passwords."""
    text = (Path(__file__).resolve().parents[1] / "docs" / "SECURITY.md").read_text(encoding="utf-8")
    block = text.split("<!-- acl:start", 1)[1].split("<!-- acl:end -->", 1)[0]
    shown = block.split("```\n", 2)[1]
    placeholders = {"AURA_REDIS_PASSWORD": "<aura-password>", "MAIN_SERVICE_REDIS_PASSWORD": "<main-service-password>"}
    assert shown.strip() == acl_file(placeholders).strip()
