"""Issue 9, "Redis at scale": adopting a SIGKILLed process's waiting sessions, and what Redis pays for them.

Several Aura processes share one fresh redis-server on loopback. The scenario

1. lets the fleet idle with no session (Redis commands per second with 0 waiting);
2. opens ``sessions`` HITL sessions spread evenly over the processes (``concurrency`` at a time),
   reads each up to its ``hitl`` event and drops the connection (the session keeps waiting in its
   process), and checks every process reports its share awaiting approval;
3. lets the fleet idle again (commands per second with every session waiting);
4. SIGKILLs one process and polls the survivors' ``/aura/health`` every ``poll_seconds`` until
   their ``awaitingApproval`` adds up to every waiting session again;
5. approves a sample of the adopted sessions as main-service does and follows each on the survivor
   that drives it (``GET /aura/sessions/{id}/events`` with ``Last-Event-ID``) to ``[DONE]``.

Redis's ``INFO commandstats`` is read at the edge of every phase. Redis counts each command it
executes, including those Aura's Lua scripts run (an EVALSHA counts once, plus once per
``redis.call`` inside it); the harness's own commands (INFO; ROLE, which is what ``/aura/health``
asks Redis; PTTL) are left out. A phase's count also holds Aura's periodic work of the moment (the
lease rounds, and the HITL sweep that re-reads every waiting session's decision); the "net" figures
subtract an estimate of it made from the two idle phases: per command, the rate with no session,
plus the extra rate per waiting session times the waiting-session-seconds of the phase.
"""

from __future__ import annotations

import asyncio
import json
import random
import signal
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from redis.asyncio import Redis

from bench.approve import ApprovalError, approve_many, harness_redis
from bench.procs import Processes, RedisProc, ServerProc, http_json
from bench.scenarios import HITL_PROMPT, SESSION_TIMEOUT, failures_dict
from bench.sseclient import Client, Counters, Endpoint, Session, wait_session

ADOPTION_BATCH: Final = 500  # aura.session.leases.ADOPTION_BATCH, for telling its reads from the sweep's
HARNESS_COMMANDS: Final = frozenset({"info", "role", "pttl"})
LEASE_SECONDS_DEFAULT: Final = 10.0
SWEEP_SECONDS_DEFAULT: Final = 5.0

# Starts one Aura process of the fleet: (name, redis URL, settings) -> a ready server.
StartAura = Callable[[str, str, Mapping[str, str]], Awaitable[ServerProc]]


@dataclass(frozen=True)
class AdoptionPlan:
    sessions: int
    instances: int
    concurrency: int
    idle_empty_seconds: float
    idle_seconds: float
    sample: int
    adopt_timeout: float
    poll_seconds: float = 0.1


class TrackedSession(Session):
    """A session that remembers the id of the last event it received, and whether a tool completed."""

    __slots__ = ("last_id", "tool_completed", "server")

    def __init__(self, kind: str, counters: Counters, on_hitl: Callable[[Session], None] | None = None) -> None:
        super().__init__(kind, counters, on_hitl)
        self.last_id: str | None = None
        self.tool_completed = False
        self.server = 0  # index of the process it was opened on

    def on_frame(self, raw: bytes, now: float) -> None:
        super().on_frame(raw, now)
        if not raw.startswith(b"id: "):
            return
        self.last_id = raw[4 : raw.find(b"\n")].decode("ascii")
        if b"\nevent: tool_execution\n" in raw:
            payload: dict[str, Any] = json.loads(raw[raw.find(b"\ndata: ") + 7 :])
            if (payload.get("data") or {}).get("status") == "completed":
                self.tool_completed = True

    def end(self, now: float, problem: str | None = None) -> None:
        if (problem is None and self.kind == "follow" and self.status == 200 and self.done_seen
                and self.final_state == "done" and not self.tool_completed):
            problem = "no completed tool_execution"
        super().end(now, problem)


# -- Redis command counts ---------------------------------------------------------------------
@dataclass(frozen=True)
class RedisCounts:
    at: float  # time.perf_counter() of the reading
    calls: dict[str, int]  # command -> calls (INFO commandstats), the harness's left out
    processed: int  # total_commands_processed (everything, the harness's INFO included)

    def since(self, before: RedisCounts) -> dict[str, int]:
        out = {cmd: n - before.calls.get(cmd, 0) for cmd, n in self.calls.items()}
        return {cmd: n for cmd, n in out.items() if n}


async def redis_counts(redis: Redis) -> RedisCounts:
    stats = await redis.info("commandstats")
    at = time.perf_counter()
    processed = int((await redis.info("stats"))["total_commands_processed"])
    calls: dict[str, int] = {}
    for key, value in stats.items():
        if key.startswith("cmdstat_") and isinstance(value, dict):
            name = key[len("cmdstat_"):]
            if name not in HARNESS_COMMANDS:
                calls[name] = int(value["calls"])
    return RedisCounts(at, calls, processed)


@dataclass(frozen=True)
class Background:
    """Aura's periodic Redis work, from the idle phases: a rate per command with no session waiting,
    and an extra rate per command per waiting session."""

    base: dict[str, float]
    per_waiting: dict[str, float]

    def estimate(self, seconds: float, waiting_seconds: float, base_share: float = 1.0) -> dict[str, float]:
        names = set(self.base) | set(self.per_waiting)
        return {c: self.base.get(c, 0.0) * seconds * base_share + self.per_waiting.get(c, 0.0) * waiting_seconds
                for c in names}


def command_figures(delta: Mapping[str, int], background: Mapping[str, float], per: int) -> dict[str, Any]:
    """A phase's commands: raw and net of the background, in all and per command, per ``per`` sessions."""
    total = sum(delta.values())
    bg = sum(background.get(c, 0.0) for c in set(delta) | set(background))
    rows = {}
    for cmd in sorted(set(delta) | set(background), key=lambda c: -delta.get(c, 0)):
        raw = delta.get(cmd, 0)
        est = background.get(cmd, 0.0)
        if raw == 0 and est < 0.5:
            continue
        rows[cmd] = {"calls": raw, "background": round(est, 1),
                     "perSession": raw / per if per else 0.0, "netPerSession": (raw - est) / per if per else 0.0}
    return {"total": total, "background": round(bg, 1), "perSession": total / per if per else 0.0,
            "netPerSession": (total - bg) / per if per else 0.0, "byCommand": rows}


class GetSampler:
    """The GET counter of ``INFO commandstats`` every ``period`` s, on a connection of its own: the HITL
    sweep reads two keys per waiting session of a process in one pipeline, which shows as one burst."""

    def __init__(self, url: str, period: float = 0.05) -> None:
        self._redis = Redis.from_url(url, decode_responses=True, single_connection_client=True, socket_timeout=30,
                                     client_name="bench-harness")
        self._period = period
        self.ticks: list[tuple[float, int]] = []  # (perf_counter, GET calls so far)
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    async def connect(self) -> None:
        await self._redis.ping()

    def start(self) -> None:
        self.ticks = []
        self._stopping = False
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> list[tuple[float, int]]:
        if self._task is not None:
            # A flag as well as the cancel: Python 3.11's wait_for inside redis-py can swallow a cancel
            # that lands as the reply arrives (gh-106905), and the loop would then never end.
            self._stopping = True
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        return self.ticks

    async def _run(self) -> None:
        while not self._stopping:
            stats = await self._redis.info("commandstats")
            self.ticks.append((time.perf_counter(), int((stats.get("cmdstat_get") or {}).get("calls", 0))))
            await asyncio.sleep(self._period)

    async def aclose(self) -> None:
        await self.stop()
        await self._redis.aclose()


def sweep_bursts(
    ticks: Sequence[tuple[float, int]], sizes: Callable[[float], Sequence[int]], threshold: float
) -> list[tuple[float, int, int]]:
    """The sweeps among the GET counter's steps: each run of steps above ``threshold`` (and the step on
    either side, where a pipeline split across two readings leaves its rest), less the GETs of the steps
    around it, snapped to the nearest sum of the processes' sweep sizes (``sizes(t)``: two GETs per
    waiting session of each process) when within 10 %. Returns (time, GETs, sweeps in it) per burst."""
    steps = [(t1, g1 - g0) for (_, g0), (t1, g1) in zip(ticks, ticks[1:], strict=False)]
    high = [i for i, (_, d) in enumerate(steps) if d > threshold]
    runs: list[list[int]] = []
    for i in high:
        if runs and i <= runs[-1][-1] + 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    in_run = {i for run in runs for j in run for i in (j - 1, j, j + 1)}
    bursts: list[tuple[float, int, int]] = []
    for run in runs:
        lo, hi = max(0, run[0] - 1), min(len(steps) - 1, run[-1] + 1)
        t_mid = steps[run[0]][0]
        around = sorted(d for i, (t, d) in enumerate(steps) if i not in in_run and abs(t - t_mid) <= 1.0)
        baseline = around[len(around) // 2] if around else 0
        excess = sum(steps[i][1] for i in range(lo, hi + 1)) - (hi - lo + 1) * baseline
        parts = list(sizes(t_mid))
        sums = {sum(p for k, p in enumerate(parts) if mask >> k & 1): bin(mask).count("1")
                for mask in range(1, 1 << len(parts))}
        nearest = min(sums, key=lambda c: abs(c - excess)) if sums else excess
        if abs(nearest - excess) <= 0.1 * max(1, nearest):
            bursts.append((t_mid, nearest, sums[nearest]))
        else:
            bursts.append((t_mid, max(0, excess), 1))
    return bursts


def rates(delta: Mapping[str, int], seconds: float) -> dict[str, float]:
    return {cmd: n / seconds for cmd, n in sorted(delta.items(), key=lambda kv: -kv[1])} if seconds > 0 else {}


# -- HTTP -------------------------------------------------------------------------------------
def get_request(endpoint: Endpoint, path: str, headers: Sequence[tuple[str, str]] = ()) -> bytes:
    lines = [f"GET {path} HTTP/1.1", f"Host: {endpoint.host}:{endpoint.port}", "Accept: text/event-stream",
             *(f"{name}: {value}" for name, value in (*endpoint.headers, *headers))]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def awaiting_of(health: Any) -> int | None:
    """``data.sessions.awaitingApproval`` of a ``/aura/health`` body (None if it is not one)."""
    if not isinstance(health, dict):
        return None
    sessions = (health.get("data") or {}).get("sessions") or health.get("sessions")
    if not isinstance(sessions, dict) or "awaitingApproval" not in sessions:
        return None
    return int(sessions["awaitingApproval"])


async def awaiting(server: ServerProc, timeout: float = 5.0) -> int | None:
    return awaiting_of(await http_json("127.0.0.1", server.port, server.health_path, timeout, server.health_headers))


# -- opening ----------------------------------------------------------------------------------
async def open_and_drop(
    endpoints: Sequence[Endpoint], count: int, concurrency: int, counters: Counters, timeout: float
) -> list[TrackedSession]:
    """``count`` HITL sessions, round-robin over ``endpoints``, each read up to its ``hitl`` event on its
    own connection, which is then closed: the session keeps waiting in its process. Those without
    a ``hitl`` event are failures; the others count as succeeded (opened and left waiting)."""
    gate = asyncio.Semaphore(concurrency)
    requests = [e.request(HITL_PROMPT) for e in endpoints]
    opened: list[TrackedSession] = []
    loop = asyncio.get_running_loop()

    async def one(index: int) -> None:
        server = index % len(endpoints)
        async with gate:
            client = Client(endpoints[server])
            seen: asyncio.Future[None] = loop.create_future()

            def on_hitl(session: Session) -> None:
                if not seen.done():
                    seen.set_result(None)

            session = TrackedSession("hitl", counters, on_hitl)
            session.server = server
            try:
                await client.start(requests[server], session)
            except (OSError, TimeoutError):
                return
            try:
                async with asyncio.timeout(SESSION_TIMEOUT):
                    await asyncio.wait([seen, session.finished], return_when=asyncio.FIRST_COMPLETED)
            except TimeoutError:
                pass
            if not seen.done() or session.session_id is None:
                session.end(time.perf_counter(), "no hitl event")
                client.close()
                return
            conn = client.conn
            if conn is not None and conn.session is session:
                conn.session = None  # dropped on purpose: not a lost connection
            client.close()
            counters.succeeded += 1
            opened.append(session)

    async with asyncio.timeout(timeout):
        await asyncio.gather(*(one(i) for i in range(count)))
    return opened


# -- the scenario -----------------------------------------------------------------------------
@dataclass
class AdoptionResult:
    plan: AdoptionPlan
    settings: dict[str, str] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    open_counters: Counters = field(default_factory=Counters)
    adopt_counters: Counters = field(default_factory=Counters)
    follow_counters: Counters = field(default_factory=Counters)

    def as_dict(self) -> dict[str, Any]:
        return {"plan": self.plan.__dict__, "settings": self.settings, **self.data,
                "groups": {"open": failures_dict(self.open_counters), "adopt": failures_dict(self.adopt_counters),
                           "follow": failures_dict(self.follow_counters)}}


def _secs(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f} s"


def _setting(env: Mapping[str, str], name: str, default: float) -> float:
    try:
        return float(env[name])
    except (KeyError, ValueError):
        return default


async def adoption(
    procs: Processes, plan: AdoptionPlan, token: str, start_aura: StartAura,
    log: Callable[[str], None] = lambda _: None,
) -> AdoptionResult:
    result = AdoptionResult(plan)
    data = result.data
    redis_proc = RedisProc(procs, "redis-adoption")
    await redis_proc.ready()
    counting = Redis.from_url(redis_proc.url, decode_responses=True, single_connection_client=True,
                              socket_timeout=30, client_name="bench-harness")
    harness = harness_redis(redis_proc.url)
    sampler = GetSampler(redis_proc.url)
    servers: list[ServerProc] = []
    try:
        settings = {"AURA_LEASE_SECONDS": "10"}  # the default, said explicitly
        # One after another, a random part of a lease round apart: processes started in step would renew
        # and check in step, which makes a death seen either at once or a full round late, never between.
        rng = random.Random()
        for i in range(plan.instances):
            if servers:
                await asyncio.sleep(rng.uniform(0, _setting(servers[0].child.env, "AURA_LEASE_SECONDS",
                                                            LEASE_SECONDS_DEFAULT) / 3))
            servers.append(await start_aura(f"aura-{i + 1}", redis_proc.url, settings))
        env = servers[0].child.env
        result.settings = {k: v for k, v in sorted(env.items()) if k.startswith("AURA_") and k not in
                           ("AURA_HOST", "AURA_PORT")}
        lease = _setting(env, "AURA_LEASE_SECONDS", LEASE_SECONDS_DEFAULT)
        sweep = _setting(env, "AURA_SIGNAL_SWEEP_SECONDS", SWEEP_SECONDS_DEFAULT)
        data.update(leaseSeconds=lease, sweepSeconds=sweep, instances=plan.instances)
        endpoints = [Endpoint("127.0.0.1", s.port, "/aura/test/stream",
                              (("Authorization", f"Bearer {token}"), ("X-Tenant-ID", "1"))) for s in servers]
        await counting.ping()
        await sampler.connect()
        await asyncio.sleep(lease / 3 + 0.5)  # every process has had its first lease round

        # 1. idle, nothing waiting
        log(f"adoption: {plan.instances} processes idle with no session, {plan.idle_empty_seconds:g} s")
        c0 = await redis_counts(counting)
        await asyncio.sleep(plan.idle_empty_seconds)
        c1 = await redis_counts(counting)
        empty_s = c1.at - c0.at
        empty = c1.since(c0)
        data["idleEmpty"] = {"seconds": empty_s, "perSecond": sum(empty.values()) / empty_s,
                             "byCommand": rates(empty, empty_s)}

        # 2. open the sessions
        log(f"adoption: opening {plan.sessions:,} waiting sessions over {plan.instances} processes, "
            f"{plan.concurrency} at a time")
        c2 = await redis_counts(counting)
        opened = await open_and_drop(endpoints, plan.sessions, plan.concurrency, result.open_counters, timeout=900)
        await asyncio.sleep(0.5)  # the last sessions' post-hitl work
        c3 = await redis_counts(counting)
        open_s = c3.at - c2.at
        open_waiting_s = sum(c3.at - s.t_hitl for s in opened)
        for server in servers:
            server.check_alive()
        per_server = [await awaiting(s) for s in servers]
        opened_on = [sum(1 for s in opened if s.server == i) for i in range(len(servers))]
        data["open"] = {"requested": plan.sessions, "opened": len(opened), "seconds": open_s,
                        "perServer": [{"name": s.name, "opened": o, "awaiting": a}
                                      for s, o, a in zip(servers, opened_on, per_server, strict=True)],
                        "shareVerified": all(a == o for a, o in zip(per_server, opened_on, strict=True)),
                        "waitingSessionSeconds": open_waiting_s,
                        "totalCommandsProcessed": c3.processed - c2.processed}
        log(f"adoption: {len(opened):,} opened in {open_s:.1f} s; awaiting approval per process {per_server} "
            f"(opened {opened_on})")

        # 3. idle, every session waiting
        waiting_total = sum(a or 0 for a in per_server)
        log(f"adoption: idle with {waiting_total:,} waiting, {plan.idle_seconds:g} s")
        c4 = await redis_counts(counting)
        sampler.start()
        await asyncio.sleep(plan.idle_seconds)
        ticks = await sampler.stop()
        c5 = await redis_counts(counting)
        idle_s = c5.at - c4.at
        idle = c5.since(c4)
        sizes = [2 * (a or 0) for a in per_server]
        bursts = sweep_bursts(ticks, lambda _: sizes, 0.5 * min(sizes)) if min(sizes) > 0 else []
        data["idleWaiting"] = {"seconds": idle_s, "waiting": waiting_total, "perSecond": sum(idle.values()) / idle_s,
                               "byCommand": rates(idle, idle_s),
                               "sweeps": {"seen": sum(n for _, _, n in bursts), "gets": sum(g for _, g, _ in bursts),
                                          "getsPerWaitingSession": sum(g for _, g, _ in bursts) / waiting_total
                                          / sum(n for _, _, n in bursts) * len(servers)
                                          if bursts and waiting_total else None}}
        base = rates(empty, empty_s)
        per_waiting = ({c: max(0.0, r - base.get(c, 0.0)) / waiting_total for c, r in rates(idle, idle_s).items()}
                       if waiting_total else {})
        per_sweep = data["idleWaiting"]["sweeps"]["getsPerWaitingSession"]
        if per_sweep is not None:  # a window holds 3 or 4 sweeps of each process: use what one sweep reads
            per_waiting["get"] = per_sweep / sweep
        background = Background(base, per_waiting)
        data["openCommands"] = command_figures(c3.since(c2), background.estimate(open_s, open_waiting_s),
                                               len(opened))
        log(f"adoption: idle {data['idleEmpty']['perSecond']:.1f} commands/s with none waiting, "
            f"{data['idleWaiting']['perSecond']:.1f} with {waiting_total:,}; creating a waiting session: "
            f"{data['openCommands']['perSession']:.1f} commands ({data['openCommands']['netPerSession']:.1f} net)")

        # 4. SIGKILL one process
        await _kill_and_watch(plan, servers, opened, counting, harness, sampler, background, result, log)

        # 5. approve a sample of the adopted sessions, follow each on the survivor driving it
        if plan.sample > 0 and data.get("adopt", {}).get("allAdoptedSeconds") is not None:
            await _approve_sample(plan, servers, endpoints, opened, harness, result, log)
    finally:
        survivors = [s for s in servers if s.child.alive()]
        for server in survivors:  # drain them all at once: each waits its shutdown grace for the waiting runs
            if server.child.process is not None:
                server.child.process.send_signal(signal.SIGTERM)

        def stop_all() -> None:
            for server in servers:
                procs.stop(server.child)

        await asyncio.to_thread(stop_all)
        await counting.aclose()
        await sampler.aclose()
        await harness.aclose()
        procs.stop(redis_proc.child)
    return result


async def _kill_and_watch(
    plan: AdoptionPlan, servers: list[ServerProc], opened: list[TrackedSession], counting: Redis, harness: Redis,
    sampler: GetSampler, background: Background, result: AdoptionResult, log: Callable[[str], None],
) -> None:
    data = result.data
    victim_index = len(servers) - 1
    victim = servers[victim_index]
    survivors = [s for i, s in enumerate(servers) if i != victim_index]
    # Which instance id each process has: the lease of a session opened there (outside every window).
    instance_of: dict[int, str] = {}
    for index in range(len(servers)):
        sample = next((s for s in opened if s.server == index), None)
        if sample is not None and sample.session_id is not None:
            owner = await harness.get(f"aura:session:{{{sample.session_id}}}:lease")
            if owner:
                instance_of[index] = str(owner)
    dead_id = instance_of.get(victim_index)
    before = [await awaiting(s) for s in servers]
    expected = sum(b or 0 for b in before)
    survivors_before = sum(before[i] or 0 for i in range(len(servers)) if i != victim_index)
    victim_waiting = before[victim_index] or 0
    log(f"adoption: SIGKILL {victim.name} ({victim_waiting:,} waiting); polling the survivors every "
        f"{plan.poll_seconds * 1000:.0f} ms")
    ttl_ms = int(await counting.pttl(f"aura:instance:{{{dead_id}}}")) if dead_id else -2
    c_kill = await redis_counts(counting)
    sampler.start()
    t_kill = time.perf_counter()
    process = victim.child.process
    assert process is not None
    process.send_signal(signal.SIGKILL)

    latest = [before[i] or 0 for i in range(len(servers)) if i != victim_index]
    samples: list[tuple[float, int, int]] = []  # (seconds since the kill, survivor, awaitingApproval)
    first: list[float] = []
    reached = asyncio.Event()
    reached_at: list[float] = []

    async def poll(index: int, server: ServerProc) -> None:
        while not reached.is_set():
            t0 = time.perf_counter()
            value = await awaiting(server, timeout=2.0)
            now = time.perf_counter() - t_kill
            if value is not None:
                latest[index] = value
                samples.append((now, index, value))
                total = sum(latest)
                if total > survivors_before and not first:
                    first.append(now)
                if total >= expected and not reached.is_set():
                    reached_at.append(now)
                    reached.set()
            await asyncio.sleep(max(0.0, plan.poll_seconds - (time.perf_counter() - t0)))

    pollers = [asyncio.create_task(poll(i, s)) for i, s in enumerate(survivors)]
    try:
        await asyncio.wait_for(reached.wait(), plan.adopt_timeout)
    except TimeoutError:
        pass
    finally:
        for task in pollers:
            task.cancel()
        await asyncio.gather(*pollers, return_exceptions=True)
    await asyncio.sleep(0.5)  # the last batch's bookkeeping (the dead set's SREM, the registry's)
    ticks = await sampler.stop()
    c_done = await redis_counts(counting)
    window = c_done.at - c_kill.at
    # Waiting-session-seconds on the live processes over the window, from the samples (step function).
    waiting_s = 0.0
    last_t = 0.0
    level = list(before[i] or 0 for i in range(len(servers)) if i != victim_index)
    for t, index, value in sorted(samples):
        waiting_s += sum(level) * (t - last_t)
        level[index] = value
        last_t = t
    waiting_s += sum(level) * (window - last_t)
    adopted = sum(level) - survivors_before
    result.adopt_counters.started = victim_waiting
    result.adopt_counters.succeeded = min(victim_waiting, max(0, adopted))
    if adopted < victim_waiting:
        result.adopt_counters.fail(f"not adopted within {plan.adopt_timeout:g} s")
        result.adopt_counters.failed = victim_waiting - max(0, adopted)
    dead_left = int(await harness.scard(f"aura:instance:{{{dead_id}}}:sessions")) if dead_id else -1
    dead_listed = bool(await harness.sismember("aura:instances", dead_id)) if dead_id else False
    share = len(survivors) / len(servers)
    estimate = background.estimate(window, waiting_s, share)
    ordered = sorted(samples)

    def sizes_at(t: float) -> list[int]:
        level = [before[i] or 0 for i in range(len(servers)) if i != victim_index]
        for when, index, value in ordered:
            if when > t:
                break
            level[index] = value
        return [2 * w for w in level]

    smallest = min(sizes_at(0.0))
    # Told apart from the adoption's own reads (a pipeline of one GET per session of a batch, and one in
    # each compare-and-set) only when a sweep is several batches' worth; else the idle phases' model.
    method = "bursts" if smallest >= 8 * ADOPTION_BATCH else "model"
    bursts = sweep_bursts([(t - t_kill, g) for t, g in ticks], sizes_at, 0.5 * smallest) if method == "bursts" else []
    if method == "bursts":
        estimate["get"] = background.base.get("get", 0.0) * window * share + sum(g for _, g, _ in bursts)
    data["adopt"] = {
        "victim": victim.name, "victimWaiting": victim_waiting, "expected": expected,
        "survivorsBefore": survivors_before, "heartbeatTtlAtKillSeconds": ttl_ms / 1000 if ttl_ms >= 0 else None,
        "firstAdoptionSeconds": first[0] if first else None,
        "allAdoptedSeconds": reached_at[0] if reached_at else None,
        "adopted": adopted, "perSurvivor": [{"name": s.name, "before": before[servers.index(s)], "after": v}
                                            for s, v in zip(survivors, level, strict=True)],
        "deadSetLeft": dead_left, "deadStillListed": dead_listed,
        "samples": [[round(t, 3), i, v] for t, i, v in sorted(samples)],
        "windowSeconds": window, "waitingSessionSeconds": waiting_s,
        "totalCommandsProcessed": c_done.processed - c_kill.processed,
        "commands": command_figures(c_done.since(c_kill), estimate, max(0, adopted)),
        "sweepMethod": method, "sweeps": [[round(t, 3), g, n] for t, g, n in bursts],
    }
    log(f"adoption: heartbeat had {ttl_ms / 1000:.2f} s left; first adoption after {_secs(first[0] if first else None)}, "
        f"all {adopted:,} after {_secs(reached_at[0] if reached_at else None)}; "
        f"{data['adopt']['commands']['perSession']:.1f} commands per adopted session "
        f"({data['adopt']['commands']['netPerSession']:.1f} net)")


async def _approve_sample(
    plan: AdoptionPlan, servers: list[ServerProc], endpoints: list[Endpoint], opened: list[TrackedSession],
    harness: Redis, result: AdoptionResult, log: Callable[[str], None],
) -> None:
    victim_index = len(servers) - 1
    adopted = [s for s in opened if s.server == victim_index and s.request_id and s.session_id and s.last_id]
    sample = random.Random(9).sample(adopted, min(plan.sample, len(adopted)))
    index_of: dict[str, int] = {}
    for index, server in enumerate(servers[:victim_index]):
        probe = next((s for s in opened if s.server == index), None)
        if probe is not None:
            owner = await harness.get(f"aura:session:{{{probe.session_id}}}:lease")
            index_of[str(owner)] = index
    counters = result.follow_counters
    follows: list[tuple[Client, TrackedSession]] = []
    unowned = 0
    for waiting in sample:
        owner = await harness.get(f"aura:session:{{{waiting.session_id}}}:lease")
        found = index_of.get(str(owner))
        if found is None:
            unowned += 1
        index = 0 if found is None else found
        endpoint = endpoints[index]
        client = Client(endpoint)
        follow = TrackedSession("follow", counters)
        follow.server = index
        follow.request_id = waiting.request_id
        request = get_request(endpoint, f"/aura/sessions/{waiting.session_id}/events",
                              (("Last-Event-ID", waiting.last_id or ""),))
        try:
            await client.start(request, follow)
        except (OSError, TimeoutError):
            continue
        follows.append((client, follow))
    log(f"adoption: approving {len(follows)} adopted sessions, each followed on the survivor driving it")
    await asyncio.sleep(0.5)
    receivers = 0
    try:
        receivers = await approve_many(harness, [f.request_id or "" for _, f in follows if not f.finished.done()])
    except (ApprovalError, OSError, TimeoutError) as exc:
        counters.note(f"approval failed: {type(exc).__name__}")
    started = time.perf_counter()
    try:
        async with asyncio.timeout(SESSION_TIMEOUT):
            await asyncio.gather(*(wait_session(f, SESSION_TIMEOUT) for _, f in follows))
    except TimeoutError:
        pass
    finally:
        for client, follow in follows:
            if not follow.finished.done():
                follow.end(time.perf_counter(), "no end after the approval")
            client.close()
    result.data["approvals"] = {"sample": len(sample), "followed": len(follows), "receivers": receivers,
                                "ownerUnknown": unowned, "seconds": time.perf_counter() - started,
                                "toolCompleted": sum(1 for _, f in follows if f.tool_completed)}
    log(f"adoption: {counters.succeeded} of {len(follows)} approved sessions ended with [DONE] and a completed "
        f"tool; {counters.failed} failed {dict(counters.failures) or ''}")


def nofile_needed(plan: AdoptionPlan) -> int:
    return plan.concurrency + plan.sample + 200

