"""The Redis ACL users of compose.yaml, proven on a real redis-server.

The server loads exactly the ACL file Compose would hand it (tests/test_compose.py ``acl_file``),
plus one user of the tests' own (``suite-admin``, never in compose.yaml) that reads ``ACL LOG``
and sets up a cluster. Aura logs in as ``aura`` with REDIS_HOST / REDIS_USERNAME / REDIS_PASSWORD
and runs every kind of session; decisions are also made as main-service makes them, logged in as
``main-service``. ``ACL LOG`` then holds no refusal at all: no command that Aura or redis-py
sent was refused, not even one whose refusal redis-py would have ignored. Each user is then
shown what it is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import subprocess
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from redis.exceptions import AuthenticationError, NoPermissionError, ResponseError

from tests.conftest import open_stream
from tests.support import main_service
from tests.support.auth import SECRET, approver_headers, auth_headers
from tests.support.process_server import logged_aura
from tests.support.redis_server import RedisServer, free_port
from tests.support.sse import Frame, SseStream
from tests.support.streams import EMAIL, completed_tools, follow, seqs, start_waiting_session, waiting_on
from tests.support.waiting import wait_until
from tests.test_compose import acl_file, acl_users, interpolate, services

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]  # redis-servers and `aura serve` subprocesses

PLAIN = "Summarize today's open tasks"
AURA_PASSWORD = secrets.token_hex(24)
MAIN_SERVICE_PASSWORD = secrets.token_hex(24)
ADMIN, ADMIN_PASSWORD = "suite-admin", secrets.token_hex(24)
COMPOSE_ENV = {"AURA_REDIS_PASSWORD": AURA_PASSWORD, "MAIN_SERVICE_REDIS_PASSWORD": MAIN_SERVICE_PASSWORD,
               "JWT_SECRET": SECRET}
STREAM_BOUND = 30.0


def redis_version() -> tuple[int, int]:
    out = subprocess.run(["redis-server", "--version"], capture_output=True, text=True, check=True).stdout
    found = re.search(r"v=(\d+)\.(\d+)", out)
    assert found, out
    return int(found.group(1)), int(found.group(2))


def acl_for_this_server() -> str:
    """compose.yaml's ACL file, and the tests' admin user.

    Redis before 7.2 has no CLIENT SETINFO and refuses an ACL file that names it; redis-py's CLIENT
    SETINFO is then an unknown command, which redis-py ignores. On such a server, and only there,
    that one rule is left out; everything else is loaded as written.
    """
    text = acl_file(COMPOSE_ENV)
    if redis_version() < (7, 2):
        text = "".join(" ".join(r for r in line.split() if r != "+client|setinfo") + "\n" for line in text.splitlines())
    return text + f"user {ADMIN} on >{ADMIN_PASSWORD} ~* &* +@all\n"


def acl_server(*extra: str) -> RedisServer:
    directory = Path(tempfile.mkdtemp(prefix="aura-acl-"))
    (directory / "users.acl").write_text(acl_for_this_server(), encoding="utf-8")
    log = directory / "redis.log"
    # DEBUG and MODULE enabled, as they are not by default, so that their refusal below is the ACL's.
    server = RedisServer(
        extra_args=["--aclfile", str(directory / "users.acl"), "--logfile", str(log),
                    "--enable-debug-command", "yes", "--enable-module-command", "yes", *extra],
        username=ADMIN,
        password=ADMIN_PASSWORD,
    )
    try:
        server.start()
    except RuntimeError as exc:
        raise RuntimeError(f"{exc}; redis-server logged:\n{log.read_text() if log.exists() else ''}") from None
    return server


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    server = acl_server()
    yield server
    server.stop()


@contextlib.asynccontextmanager
async def login(
    server: RedisServer, user: str | None, password: str | None, *, protocol: int = 3
) -> AsyncIterator[Redis]:
    client = Redis(host="127.0.0.1", port=server.port, username=user, password=password, decode_responses=True,
                   socket_timeout=5, protocol=protocol)
    try:
        yield client
    finally:
        await client.aclose()


async def run(client: Redis, *command: str) -> Any:
    """``client.execute_command(*command)``, typed: redis-py leaves it unannotated."""
    execute: Callable[..., Awaitable[Any]] = client.execute_command
    return await execute(*command)


def as_aura(server: RedisServer) -> contextlib.AbstractAsyncContextManager[Redis]:
    return login(server, "aura", AURA_PASSWORD)


def as_main_service(server: RedisServer) -> contextlib.AbstractAsyncContextManager[Redis]:
    return login(server, "main-service", MAIN_SERVICE_PASSWORD)


def as_admin(server: RedisServer) -> contextlib.AbstractAsyncContextManager[Redis]:
    return login(server, ADMIN, ADMIN_PASSWORD)


def aura_env(server: RedisServer, **extra: str) -> dict[str, str]:
    """Aura's REDIS_* settings of compose.yaml (its user, its password as Compose fills it in), but
    for the address: ``server``'s."""
    environment = services()["aura"]["environment"]
    env = {name: interpolate(str(value), COMPOSE_ENV) for name, value in environment.items() if name.startswith("REDIS_")}
    assert env["REDIS_USERNAME"] == "aura" and env["REDIS_PASSWORD"] == AURA_PASSWORD
    return {**env, "REDIS_HOST": "127.0.0.1", "REDIS_PORT": str(server.port), **extra}


async def refusals(server: RedisServer) -> list[dict[str, Any]]:
    async with as_admin(server) as admin:
        entries: list[dict[str, Any]] = await admin.acl_log()
    return entries


async def reset_refusals(server: RedisServer) -> None:
    async with as_admin(server) as admin:
        await admin.acl_log_reset()


async def rest(stream: SseStream, what: str) -> list[Frame]:
    try:
        return await stream.rest(timeout=STREAM_BOUND)
    except TimeoutError:
        raise AssertionError(f"no [DONE] within {STREAM_BOUND:g} s {what}; the stream had {stream.types}") from None


def last_state(frames: list[Frame]) -> dict[str, Any]:
    assert frames[-1].is_done, [f.raw for f in frames[-3:]]
    return [f for f in frames if f.type == "state"][-1].body


def error_of(frames: list[Frame]) -> dict[str, Any]:
    [error] = [f.body for f in frames if f.type == "error"]
    return error


async def ready(url: str) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        answer = await client.get("/aura/health")
    assert answer.status_code == 200 and answer.json()["status"] == "UP", answer.text


# -- Aura works as `aura` ------------------------------------------------------------------------------
async def test_aura_runs_every_kind_of_session_as_its_acl_user(server: RedisServer) -> None:
    await reset_refusals(server)
    tenant = "71"
    headers, approver = auth_headers(tenant=tenant), approver_headers(tenant=tenant)
    outbox = f"aura:outbox:{tenant}"
    with logged_aura(None, **aura_env(server)) as a, logged_aura(None, **aura_env(server)) as b:
        await ready(a.url)
        await ready(b.url)
        async with httpx.AsyncClient(base_url=a.url, timeout=30) as client:
            # A plain session (list_open_tasks reads aura:tasks:<tenant>).
            async with open_stream(client, PLAIN, headers=headers) as stream:
                frames = await rest(stream, "of a plain session")
            assert last_state(frames)["to"] == "done"

            # Approved through Aura's own API on B, while B follows the session A drives.
            async with open_stream(client, EMAIL, headers=headers) as stream:
                hitl = await stream.until("hitl")
                b_saw_hitl = asyncio.Event()
                from_b = asyncio.create_task(follow(b.url, hitl.body["sessionId"], after=0, headers=headers,
                                                    seen=b_saw_hitl))
                await asyncio.wait_for(b_saw_hitl.wait(), 20)
                async with httpx.AsyncClient(base_url=b.url, timeout=10) as api:
                    answer = await api.post(f"/aura/hitl/approve/{hitl.body['requestId']}", headers=approver,
                                            json={"userId": "1"})
                assert answer.status_code == 200, answer.text
                frames = await rest(stream, "after an approval through Aura's API")
            assert last_state(frames)["to"] == "done" and len(completed_tools(frames)) == 1
            followed = await from_b
            assert [f.raw for f in followed] == [f.raw for f in stream.frames if f.comment is None]

            # Approved as main-service does it, logged in as `main-service`.
            async with open_stream(client, EMAIL, headers=headers) as stream:
                hitl = await stream.until("hitl")
                async with as_main_service(server) as java:
                    await main_service.decide(java, hitl.body["requestId"], approve=True)
                    assert (await main_service.stored_request(java, hitl.body["requestId"]))["status"] == "approved"
                frames = await rest(stream, "after main-service's approval")
            assert last_state(frames)["to"] == "done" and len(completed_tools(frames)) == 1
            request = await client.get(f"/aura/hitl/requests/{hitl.body['requestId']}", headers=approver)
            signal = await client.get(f"/aura/hitl/signals/{hitl.body['sessionId']}", headers=approver)
            assert request.status_code == 200 and signal.status_code == 200, (request.text, signal.text)

            # Rejected as main-service does it.
            async with open_stream(client, EMAIL, headers=headers) as stream:
                hitl = await stream.until("hitl")
                async with as_main_service(server) as java:
                    await main_service.decide(java, hitl.body["requestId"], approve=False, reason="not now")
                frames = await rest(stream, "after main-service's rejection")
            assert last_state(frames)["to"] == "aborted" and error_of(frames)["reason"] == "rejected"

            # Listed while it waits (the console's list: GET /aura/sessions), then cancelled.
            async with open_stream(client, EMAIL, headers=headers) as stream:
                hitl = await stream.until("hitl")
                listed = await client.get("/aura/sessions", headers=headers)
                assert listed.status_code == 200, listed.text
                assert hitl.body["sessionId"] in [s["sessionId"] for s in listed.json()["data"]["sessions"]]
                answer = await client.post(f"/aura/sessions/{hitl.body['sessionId']}/cancel", headers=headers)
                assert answer.status_code == 202, answer.text
                frames = await rest(stream, "after a cancel")
            assert last_state(frames)["to"] == "aborted" and error_of(frames)["reason"] == "cancelled"

        # A drains on SIGTERM (its leases released), B adopts the waiting session and finishes it.
        session_id, request_id, before = await start_waiting_session(a.url, headers)
        a.terminate()

        async def adopted() -> bool:
            return await waiting_on(b.url) >= 1

        await wait_until(adopted, 15, "B to adopt the session A drained")
        async with httpx.AsyncClient(base_url=b.url, timeout=10) as api:
            answer = await api.post(f"/aura/hitl/approve/{request_id}", headers=approver, json={"userId": "1"})
        assert answer.status_code == 200, answer.text
        frames = await follow(b.url, session_id, after=seqs(before)[-1], headers=headers)
        assert frames[-2].body["to"] == "done" and len(completed_tools(frames)) == 1
        await ready(b.url)

    async with as_admin(server) as admin:
        assert await admin.llen(outbox) == 3  # each approved email sent once
    assert await refusals(server) == []


# -- what each user is refused -------------------------------------------------------------------------
REFUSED_TO_EVERYONE: list[tuple[str, ...]] = [
    ("FLUSHALL",), ("FLUSHDB",), ("CONFIG", "GET", "*"), ("CONFIG", "SET", "maxmemory", "1"), ("KEYS", "*"),
    ("SCAN", "0"), ("RANDOMKEY",), ("DEBUG", "SLEEP", "0"), ("ACL", "LIST"), ("ACL", "SETUSER", "aura", "+@all"),
    ("MODULE", "LIST"), ("SCRIPT", "FLUSH"), ("FUNCTION", "FLUSH"), ("CLIENT", "LIST"), ("CLIENT", "KILL", "ID", "1"),
    ("MONITOR",), ("SAVE",), ("BGSAVE",), ("REPLICAOF", "NO", "ONE"), ("SELECT", "1"), ("SWAPDB", "0", "1"),
    ("MIGRATE", "127.0.0.1", "1", "aura:x", "0", "1"), ("DUMP", "hitl:request:x"), ("OBJECT", "ENCODING", "hitl:request:x"),
    ("SHUTDOWN", "NOSAVE"),
]
REFUSED_TO_AURA: list[tuple[str, ...]] = [
    ("INFO",),
    ("GET", "other:key"), ("SET", "session:1", "x"), ("GET", "hitl:task:1"), ("DEL", "dwp:cache:1"),
    ("PUBLISH", "dwp:events:all", "x"), ("PUBLISH", "audit:events:ingest", "x"),
    ("SUBSCRIBE", "dwp:events:all"), ("PSUBSCRIBE", "hitl:*"), ("PSUBSCRIBE", "*"),
    ("EVAL", "return redis.call('GET', KEYS[1])", "1", "other:key"),
]
REFUSED_TO_MAIN_SERVICE: list[tuple[str, ...]] = [
    ("GET", "aura:instances"), ("GET", "aura:session:{s}:lease"), ("SET", "aura:session:{s}:lease", "me"),
    ("SET", "aura:tasks:1", "x"), ("PUBLISH", "aura:cancel:{s}", "1"), ("SUBSCRIBE", "aura:events:{s}"),
    ("PSUBSCRIBE", "aura:cancel:*"), ("GET", "other:key"), ("SMEMBERS", "hitl:request:x"), ("DEL", "hitl:request:x"),
    ("EVAL", "return 1", "0"), ("HGETALL", "aura:session:{s}"),
]


async def assert_refused(server: RedisServer, user: str, password: str, command: tuple[str, ...]) -> None:
    async with login(server, user, password) as client:  # a connection of its own: SUBSCRIBE, MONITOR
        with pytest.raises(NoPermissionError):
            await run(client, *command)


@pytest.mark.parametrize("command", REFUSED_TO_EVERYONE + REFUSED_TO_AURA, ids=" ".join)
async def test_the_aura_user_is_refused(server: RedisServer, command: tuple[str, ...]) -> None:
    await assert_refused(server, "aura", AURA_PASSWORD, command)


@pytest.mark.parametrize("command", REFUSED_TO_EVERYONE + REFUSED_TO_MAIN_SERVICE, ids=" ".join)
async def test_the_main_service_user_is_refused(server: RedisServer, command: tuple[str, ...]) -> None:
    await assert_refused(server, "main-service", MAIN_SERVICE_PASSWORD, command)


@pytest.mark.parametrize("script", [
    "return redis.call('FLUSHALL')",
    "return redis.call('KEYS', '*')",
    "return redis.call('DEL', 'dwp:cache:1')",
    "return redis.call('GET', 'other:key')",  # a key not declared in KEYS, outside aura:* and hitl:*
    "return redis.call('PUBLISH', 'dwp:events:all', 'x')",
])
async def test_a_script_of_the_aura_user_gets_no_more_than_the_user(server: RedisServer, script: str) -> None:
    async with as_aura(server) as aura:
        with pytest.raises(ResponseError, match="The user executing the script can't"):
            await run(aura, "EVAL", script, "0")


async def test_what_aura_sends_only_on_rare_paths_is_granted(server: RedisServer) -> None:
    """WAIT (replica acks), XREVRANGE (an end retried), ZRANGE (a full quota) and the cluster-mode
    commands are not sent by the sessions above on a standalone server: each passes the ACL here."""
    async with as_aura(server) as aura:
        assert await run(aura, "WAIT", "0", "0") == 0
        assert await run(aura, "XREVRANGE", "aura:acl:{check}:events", "+", "-", "COUNT", "1") == []
        assert await run(aura, "ZRANGE", "aura:quota:{u:acl/check}:kept", "0", "0", "WITHSCORES") == []
        assert await run(aura, "ROLE")
        assert await aura.command_count() > 100
        for command in (("CLUSTER", "INFO"), ("CLUSTER", "SLOTS")):  # refused by a standalone server, not by the ACL
            with pytest.raises(ResponseError, match="cluster support disabled"):
                await run(aura, *command)


async def test_main_service_writes_and_publishes_the_hitl_keys_as_spring_does(server: RedisServer) -> None:
    async with as_main_service(server) as java:
        assert await run(java, "SETEX", "hitl:request:acl-check", "1800", "{}")
        assert await run(java, "PSETEX", "hitl:signal:acl-check", "300000", "{}")
        assert await java.set("hitl:request:acl-check", "{}", ex=1800)
        assert await java.get("hitl:request:acl-check") == "{}"
        assert await java.publish("hitl:channel:acl-check", "{}") == 0
        assert await java.client_setname("main-service")
        assert "redis_version" in await java.info("server")  # Spring Boot's Redis health indicator
        assert await java.ping()


async def test_the_default_user_is_off(server: RedisServer) -> None:
    async with login(server, None, None) as anonymous:  # RESP3: redis-py starts with a HELLO, refused
        with pytest.raises(AuthenticationError, match="HELLO must be called with the client already authenticated"):
            await anonymous.ping()
    async with login(server, None, None, protocol=2) as anonymous:
        with pytest.raises(AuthenticationError, match="Authentication required"):
            await anonymous.ping()
        with pytest.raises(AuthenticationError, match="invalid username-password pair or user is disabled"):
            await run(anonymous, "AUTH", "default", "")
    async with login(server, "aura", "not-the-password") as impostor:
        with pytest.raises(AuthenticationError, match="invalid username-password pair or user is disabled"):
            await impostor.ping()


def healthcheck(server: RedisServer, password: str) -> subprocess.CompletedProcess[str]:
    """compose.yaml's Redis healthcheck, with its environment, against ``server`` (``-p`` added: in the
    container it is the default port)."""
    kind, command = services()["redis"]["healthcheck"]["test"]
    assert kind == "CMD-SHELL"
    environment = {name: interpolate(str(value), {**COMPOSE_ENV, "AURA_REDIS_PASSWORD": password})
                   for name, value in services()["redis"]["environment"].items()}
    command = command.replace("redis-cli", f"redis-cli -p {server.port}", 1)
    return subprocess.run(["sh", "-c", command], env={**os.environ, **environment}, capture_output=True, text=True,
                          timeout=10)


def test_the_compose_healthcheck_passes_as_aura_and_fails_with_a_wrong_password(server: RedisServer) -> None:
    assert healthcheck(server, AURA_PASSWORD).returncode == 0
    assert healthcheck(server, "not-the-password").returncode != 0  # redis-cli alone would exit 0 on NOAUTH


async def test_the_server_holds_the_users_of_compose_yaml() -> None:
    """What redis-server made of the file: exactly compose.yaml's users (and the tests' admin)."""
    server = acl_server()
    try:
        async with as_admin(server) as admin:
            names = set(await admin.acl_users())
            default = await admin.acl_getuser("default")
        assert names == set(acl_users()) | {ADMIN}
        assert default is not None
        flags, passwords = default["flags"], default["passwords"]
        assert isinstance(flags, list) and "off" in flags and not passwords
    finally:
        server.stop()


# -- and on a Redis Cluster ----------------------------------------------------------------------------
async def test_aura_runs_on_a_redis_cluster_under_the_same_rules() -> None:
    """A one-node cluster with the same ACL file: Aura discovers it (CLUSTER SLOTS, COMMAND), is ready
    (CLUSTER INFO), runs a session, and asks for a replica's acknowledgement (WAIT, the default of
    cluster mode), which this cluster without replicas cannot give: the tool is then not run."""
    # The bus on a free port of its own: the default, port + 10000, may be past 65535.
    server = acl_server("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                        "--cluster-port", str(free_port()))
    try:
        async with as_admin(server) as admin:
            await run(admin, "CLUSTER", "ADDSLOTSRANGE", "0", "16383")

            async def cluster_ok() -> bool:
                return "cluster_state:ok" in str(await run(admin, "CLUSTER", "INFO"))

            await wait_until(cluster_ok, 10, "the one-node cluster to serve every slot")
        await reset_refusals(server)
        env = aura_env(server, REDIS_MODE="cluster", AURA_REDIS_REPLICA_ACK_TIMEOUT_SECONDS="0.2")
        with logged_aura(None, **env) as aura:
            await ready(aura.url)
            async with httpx.AsyncClient(base_url=aura.url, timeout=30) as client:
                async with open_stream(client, PLAIN) as stream:
                    frames = await rest(stream, "of a plain session on the cluster")
                assert last_state(frames)["to"] == "done"
                async with open_stream(client, EMAIL) as stream:
                    hitl = await stream.until("hitl")
                    answer = await client.post(f"/aura/hitl/approve/{hitl.body['requestId']}",
                                               headers=approver_headers(), json={"userId": "1"})
                    assert answer.status_code == 200, answer.text
                    frames = await rest(stream, "after an approval on the cluster")
            [failed] = [f.body for f in frames if f.type == "tool_execution" and f.body["status"] == "failed"]
            assert "0 of 1 required Redis replica(s) acknowledged" in failed["error"], failed
            await ready(aura.url)
        assert await refusals(server) == []
    finally:
        server.stop()

