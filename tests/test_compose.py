"""compose.yaml: valid Compose, Redis on the internal network behind ACL users, no secret with a default,
the gateway stand-in routed as the tests' nginx is, and the optional Prometheus scraping Aura.

The ACL users written in compose.yaml (``configs.redis-users.content``) are the one source of the
Redis rules: :func:`acl_file` renders them as Compose would, and tests/aura/storage/test_acl.py loads
exactly that into a real redis-server, runs Aura and main-service's writes against it, and checks
what each user is refused. The Compose Specification's JSON schema is vendored
(tests/support/compose-spec.json, Apache-2.0, its source and notice in its ``$comment``).

The gateway's nginx server (``configs.gateway-nginx.content``) is parsed with crossplane and held
to the directives of tests/support/nginx.py's ``aura_route``, checked with ``nginx -t``, and run
in front of a live Aura. No Docker engine here: nothing starts the containers themselves.
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import crossplane
import httpx
import jsonschema
import pytest
import yaml

from aura.config import DEV_JWT_SECRET
from tests.support.auth import auth_headers
from tests.support.live_server import LiveServer
from tests.support.nginx import NginxProxy, aura_route, require_nginx
from tests.support.sse import SseStream

ROOT = Path(__file__).resolve().parents[1]
# `make mutate` runs the unit tests from mutants/, a copy of the tree without compose.yaml: the nearest one up.
COMPOSE = next((f / "compose.yaml" for f in Path(__file__).resolve().parents if (f / "compose.yaml").exists()),
               ROOT / "compose.yaml")
SCHEMA = ROOT / "tests" / "support" / "compose-spec.json"
ACL_CONFIG = "redis-users"
GATEWAY_CONFIG = "gateway-nginx"
PROMETHEUS_CONFIG = "prometheus-scrape"
GATEWAY_ROUTE = "/api/aura/"
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


# -- the gateway stand-in and Prometheus ---------------------------------------------------------------
Directive = tuple[str, tuple[str, ...]]


def gateway_server() -> str:
    """``configs.gateway-nginx.content``: the ``server`` block the gateway container serves."""
    content = compose()["configs"][GATEWAY_CONFIG]["content"]
    assert isinstance(content, str)
    return content


def parse_server(text: str) -> list[dict[str, Any]]:
    """The directives of an http-level ``server { ... }`` text, parsed by crossplane."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "server.conf"
        path.write_text(text, encoding="utf-8")
        parsed = crossplane.parse(str(path), check_ctx=False, comments=False, single=True)
    assert parsed["status"] == "ok", parsed["errors"]
    [server] = parsed["config"][0]["parsed"]
    assert server["directive"] == "server"
    block: list[dict[str, Any]] = server["block"]
    return block


def route(text: str) -> list[Directive]:
    """The directives of the server's one ``location``, which must be the gateway's route."""
    [location] = [d for d in parse_server(text) if d["directive"] == "location"]
    assert location["args"] == [GATEWAY_ROUTE]
    return [(d["directive"], tuple(d["args"])) for d in location["block"]]


def route_differences(ours: str, reference: str) -> list[str]:
    """How ``ours``'s route differs from ``reference``'s, the upstream's host and port aside."""
    def comparable(directives: list[Directive]) -> set[Directive]:
        out = set()
        for name, args in directives:
            if name == "proxy_pass":
                url = urlsplit(args[0])
                args = (url.scheme, url.path)  # http and /aura/: the mapping; the host is the deployment's
            out.add((name, args))
        return out

    mine, theirs = comparable(route(ours)), comparable(route(reference))
    return [f"only in compose.yaml: {d}" for d in sorted(mine - theirs)] + [
        f"only in the tests' nginx: {d}" for d in sorted(theirs - mine)]


def gateway_for_tests(port: int, upstream_port: int) -> str:
    """compose.yaml's gateway server, listening on 127.0.0.1:port and proxying to 127.0.0.1:upstream_port."""
    text = gateway_server()
    aura_port = services()["aura"]["environment"]["AURA_PORT"]
    for written, local in ((f"listen {gateway_listen_port()};", f"listen 127.0.0.1:{port};"),
                           (f"http://aura:{aura_port}/", f"http://127.0.0.1:{upstream_port}/")):
        assert text.count(written) == 1, written
        text = text.replace(written, local)
    return text


def gateway_listen_port() -> int:
    [listen] = [d["args"] for d in parse_server(gateway_server()) if d["directive"] == "listen"]
    return int(listen[0])


def test_the_gateway_maps_the_path_as_the_tests_nginx_does() -> None:
    """CONTRACT §1.2: /api/aura/** -> /aura/** (StripPrefix=1), with the tests' nginx's directives."""
    assert route_differences(gateway_server(), aura_route(8080, 9000)) == []
    [proxy_pass] = [args for name, args in route(gateway_server()) if name == "proxy_pass"]
    url = urlsplit(proxy_pass[0])
    assert (url.scheme, url.path) == ("http", "/aura/")
    assert url.netloc == f"aura:{services()['aura']['environment']['AURA_PORT']}"  # the aura service's port


def test_the_route_comparison_would_catch_a_difference() -> None:
    buffered = gateway_server().replace("proxy_buffering off;", "proxy_buffering on;")
    assert route_differences(buffered, aura_route(8080, 9000)) == [
        "only in compose.yaml: ('proxy_buffering', ('on',))",
        "only in the tests' nginx: ('proxy_buffering', ('off',))",
    ]
    unstripped = gateway_server().replace("http://aura:9000/aura/;", "http://aura:9000/api/aura/;")
    assert route_differences(unstripped, aura_route(8080, 9000)) == [
        "only in compose.yaml: ('proxy_pass', ('http', '/api/aura/'))",
        "only in the tests' nginx: ('proxy_pass', ('http', '/aura/'))",
    ]


def test_the_gateway_streams_unbuffered() -> None:
    """CONTRACT §3.7: the gateway streams unbuffered and lets Aura's X-Accel-Buffering through."""
    directives = dict(route(gateway_server()))
    assert directives["proxy_buffering"] == ("off",)
    assert directives["proxy_cache"] == ("off",)
    assert directives["proxy_http_version"] == ("1.1",) and directives["proxy_set_header"] == ("Connection", "")
    assert directives["proxy_read_timeout"] == ("300s",)  # the gateway's response timeout
    assert directives["proxy_pass_header"] == ("X-Accel-Buffering",)
    assert "gzip" not in directives and not any(d["directive"] == "gzip" for d in parse_server(gateway_server()))


def test_the_gateway_is_published_routes_only_aura_and_starts_after_it() -> None:
    gateway = services()["gateway"]
    [mount] = gateway["configs"]
    assert mount == {"source": GATEWAY_CONFIG, "target": "/etc/nginx/conf.d/default.conf"}
    assert gateway["ports"] == [f"8080:{gateway_listen_port()}"]  # where the DWP gateway listens (§1.1)
    assert gateway["networks"] == ["default"]  # it reaches Aura, never Redis
    assert gateway["depends_on"] == {"aura": {"condition": "service_healthy"}}
    assert [d["directive"] for d in parse_server(gateway_server())].count("location") == 1  # no /metrics route


def test_prometheus_is_optional_and_scrapes_the_aura_services_metrics() -> None:
    prometheus = services()["prometheus"]
    assert prometheus["profiles"] == ["metrics"]  # only with `--profile metrics`
    assert [s for s, spec in services().items() if "profiles" in spec] == ["prometheus"]
    [mount] = prometheus["configs"]
    assert mount == {"source": PROMETHEUS_CONFIG, "target": "/etc/prometheus/prometheus.yml"}
    assert set(prometheus["networks"]) & set(services()["aura"]["networks"]) == {"default"}
    scrape = yaml.safe_load(compose()["configs"][PROMETHEUS_CONFIG]["content"])
    [job] = scrape["scrape_configs"]
    assert job["job_name"] == "aura"
    assert job["metrics_path"] == "/metrics" and job.get("scheme", "http") == "http"  # on Aura's port, not /aura/
    assert job["static_configs"] == [{"targets": [f"aura:{services()['aura']['environment']['AURA_PORT']}"]}]
    interval, timeout = (int(scrape["global"][k].removesuffix("s")) for k in ("scrape_interval", "scrape_timeout"))
    assert 0 < timeout < interval


def references(document: dict[str, Any]) -> list[str]:
    """Every network, config, secret or service a service names that the file does not define."""
    defined = {kind: set(document.get(kind) or {}) for kind in ("networks", "configs", "secrets")}
    defined["networks"].add("default")  # Compose's own
    problems = []
    for name, service in document["services"].items():
        networks = service.get("networks", [])
        for network in networks if isinstance(networks, list) else list(networks):
            if network not in defined["networks"]:
                problems.append(f"{name}: network {network}")
        for kind in ("configs", "secrets"):
            for entry in service.get(kind, []):
                source = entry if isinstance(entry, str) else entry["source"]
                if source not in defined[kind]:
                    problems.append(f"{name}: {kind[:-1]} {source}")
        for other in service.get("depends_on", []):
            if other not in document["services"]:
                problems.append(f"{name}: service {other}")
    return problems


def test_services_reference_only_defined_networks_configs_and_secrets() -> None:
    document = compose()
    assert references(document) == []
    used = {entry["source"] for service in services().values() for entry in service.get("configs", [])}
    assert used == set(document["configs"])  # and every config is mounted somewhere


def test_the_reference_check_would_catch_a_mistake() -> None:
    document = compose()
    document["services"]["gateway"]["networks"] = ["edge"]
    document["services"]["prometheus"]["configs"][0]["source"] = "prometheus"
    document["services"]["aura"]["secrets"] = ["jwt"]
    document["services"]["gateway"]["depends_on"] = {"auro": {"condition": "service_healthy"}}
    assert references(document) == [
        "aura: secret jwt", "gateway: network edge", "gateway: service auro", "prometheus: config prometheus"]


@pytest.mark.e2e  # runs nginx
def test_nginx_accepts_the_gateway_config() -> None:
    require_nginx()
    proxy = NginxProxy(9000, server=gateway_for_tests)
    try:
        checked = proxy.check()
    finally:
        proxy.stop()
    assert checked.returncode == 0, checked.stderr
    assert "test is successful" in checked.stderr


@pytest.mark.anyio
async def test_the_gateway_config_streams_a_hitl_session_from_a_live_aura(aura: LiveServer) -> None:
    """The committed server in a real nginx before a real Aura: the stream reaches `hitl` while the
    session waits, and the approval through the same route finishes it. (Aura's X-Accel-Buffering
    would unbuffer even a buffering nginx: the directives are held to the tests' above.)"""
    require_nginx()
    proxy = NginxProxy(aura.port, server=gateway_for_tests).start()
    try:
        async with httpx.AsyncClient(base_url=proxy.url, timeout=30) as gateway:
            health = await gateway.get("/api/aura/health")
            assert health.status_code == 200 and health.json()["status"] == "UP", health.text
            body = {"prompt": "Send an email to kim@example.com saying the release is ready", "context": {}}
            headers = {"Accept": "text/event-stream", **auth_headers()}
            async with gateway.stream("POST", "/api/aura/test/stream", json=body, headers=headers) as response:
                assert response.status_code == 200
                assert response.headers["x-accel-buffering"] == "no"
                stream = SseStream(response)
                hitl = await stream.until("hitl")
                approval = await gateway.post(f"/api/aura/hitl/approve/{hitl.body['requestId']}", json={"userId": "1"},
                                              headers=auth_headers(**{"X-User-ID": "1"}))
                assert approval.status_code == 200, approval.text
                rest = await stream.rest()
        assert rest[-1].is_done and rest[-2].body["to"] == "done"
    finally:
        proxy.stop()
