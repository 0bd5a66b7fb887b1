"""The scenarios of issues 5 and 8, each run against one target (Aura or the floor).

Every loop is bounded in count and in time; a session that does not end in time
is a failure, never a hang.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from redis.asyncio import Redis
from redis.exceptions import RedisError

from bench.approve import ApprovalError, approve, approve_burst, approve_many, approve_pipelined, server_clients
from bench.procs import Child, ServerProc, cpu_seconds, self_cpu_seconds
from bench.sseclient import Client, Counters, Endpoint, Session, wait_session
from bench.stats import Summary, summarize

PLAIN_PROMPT: Final = "hello"
HITL_PROMPT: Final = "Send an email to kim@example.com saying the release is ready"
SESSION_TIMEOUT: Final = 60.0


@dataclass
class Target:
    name: str  # "aura" or "floor"
    server: ServerProc
    redis: Redis  # the harness's connection to this target's own redis-server
    redis_child: Child
    endpoint: Endpoint
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)

    def spawn(self, coro: Awaitable[Any]) -> None:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)


def failures_dict(counters: Counters) -> dict[str, Any]:
    return {"started": counters.started, "succeeded": counters.succeeded, "failed": counters.failed,
            "reasons": dict(counters.failures)}


def _auto_approver(target: Target, counters: Counters) -> Callable[[Session], None]:
    """on_hitl callback: approve at once, as a human who never hesitates would."""

    async def go(session: Session) -> None:
        assert session.request_id is not None
        try:
            receivers = await approve_pipelined(target.redis, session.request_id)
        except (ApprovalError, RedisError, OSError, TimeoutError) as exc:
            counters.note(f"approval failed: {type(exc).__name__}")
            return
        if receivers == 0:
            counters.note("publish reached no subscriber")

    def on_hitl(session: Session) -> None:
        target.spawn(go(session))

    return on_hitl


async def run_sessions(target: Target, kind: str, count: int, concurrency: int, counters: Counters) -> list[Session]:
    """``count`` sessions over ``concurrency`` keep-alive clients (warm-up and checks)."""
    request = target.endpoint.request(HITL_PROMPT if kind == "hitl" else PLAIN_PROMPT)
    on_hitl = _auto_approver(target, counters) if kind == "hitl" else None
    remaining = [count]
    done: list[Session] = []

    async def worker() -> None:
        client = Client(target.endpoint)
        try:
            while remaining[0] > 0:
                remaining[0] -= 1
                done.append(await client.run(request, Session(kind, counters, on_hitl), SESSION_TIMEOUT))
        finally:
            client.close()

    async with asyncio.timeout(SESSION_TIMEOUT + count):
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done


# -- waiting sessions ---------------------------------------------------------------------
@dataclass
class Waiting:
    client: Client
    session: Session


async def open_waiting(
    target: Target, count: int, concurrency: int, counters: Counters, timeout: float
) -> tuple[list[Waiting], float]:
    """Open ``count`` HITL sessions, each on its own connection, until each has sent `hitl`.

    Returns the waiting sessions (failed ones are counted, not returned) and the seconds it took.
    """
    request = target.endpoint.request(HITL_PROMPT)
    gate = asyncio.Semaphore(concurrency)
    waiting: list[Waiting] = []
    loop = asyncio.get_running_loop()
    started = time.perf_counter()

    async def one() -> None:
        async with gate:
            client = Client(target.endpoint)
            seen: asyncio.Future[None] = loop.create_future()

            def on_hitl(session: Session) -> None:
                if not seen.done():
                    seen.set_result(None)

            session = Session("hitl", counters, on_hitl)
            try:
                await client.start(request, session)
            except (OSError, TimeoutError):
                return
            try:
                async with asyncio.timeout(SESSION_TIMEOUT):
                    await asyncio.wait([seen, session.finished], return_when=asyncio.FIRST_COMPLETED)
            except TimeoutError:
                pass
            if not seen.done():
                session.end(time.perf_counter(), "no hitl event")
                client.close()
                return
            waiting.append(Waiting(client, session))

    async with asyncio.timeout(timeout):
        await asyncio.gather(*(one() for _ in range(count)))
    return waiting, time.perf_counter() - started


async def finish_waiting(target: Target, waiting: Sequence[Waiting], *, batch: int, timeout: float) -> tuple[int, float]:
    """Approve every waiting session, ``batch`` at a time (one MGET and one pipeline per batch),
    letting each batch's streams end before the next: at most ``batch`` sessions resume at once,
    as with ``batch`` clients in the throughput runs."""
    started = time.perf_counter()
    receivers = 0
    try:
        async with asyncio.timeout(timeout):
            pending = [w for w in waiting if not w.session.finished.done() and w.session.request_id]
            for start in range(0, len(pending), batch):
                chunk = pending[start : start + batch]
                receivers += await approve_many(target.redis, [w.session.request_id or "" for w in chunk])
                await asyncio.gather(*(wait_session(w.session, SESSION_TIMEOUT) for w in chunk))
    finally:
        for w in waiting:
            w.client.close()
    return receivers, time.perf_counter() - started


# -- scenario 1: approval -> resume latency ------------------------------------------------
@dataclass
class LatencyResult:
    waiting: int
    latencies_ms: list[float] = field(default_factory=list)
    before_publish: int = 0  # resumed by the server's sweep before our PUBLISH
    no_subscriber: int = 0
    lost: int = 0  # no frame within the bound after the approval
    counters: Counters = field(default_factory=Counters)

    def summary(self) -> Summary | None:
        return summarize(self.latencies_ms)

    def as_dict(self) -> dict[str, Any]:
        s = self.summary()
        return {"waiting": self.waiting, "summary": s.as_dict() if s else None, "beforePublish": self.before_publish,
                "noSubscriber": self.no_subscriber, "lost": self.lost, "sessions": failures_dict(self.counters)}


async def measure_one_approval(target: Target, waiting: Waiting, result: LatencyResult) -> None:
    """Approve main-service style, time PUBLISH -> next SSE frame, then let the session end."""
    session = waiting.session
    try:
        await _measure(target, session, result)
    finally:
        if waiting.client.conn is not None and waiting.client.conn.session is session:
            waiting.client.close()  # it did not end cleanly: never reuse that connection


async def _measure(target: Target, session: Session, result: LatencyResult) -> None:
    assert session.request_id is not None
    arrived = session.arm_next_frame()
    try:
        t_publish, receivers = await approve(target.redis, session.request_id)
    except (ApprovalError, RedisError, OSError, TimeoutError) as exc:
        result.counters.note(f"approval failed: {type(exc).__name__}")
        session.end(time.perf_counter(), "approval failed")
        return
    if receivers == 0:
        result.no_subscriber += 1
    try:
        async with asyncio.timeout(10.0):
            t_frame = await arrived
    except (TimeoutError, ConnectionError):
        result.lost += 1
    else:
        if t_frame < t_publish:
            result.before_publish += 1
        else:
            result.latencies_ms.append((t_frame - t_publish) * 1000.0)
    await wait_session(session, 10.0)


async def latency_single(targets: Sequence[Target], rounds: int) -> dict[str, LatencyResult]:
    """One waiting session at a time; the targets take turns, round by round."""
    results = {t.name: LatencyResult(waiting=1) for t in targets}
    clients = {t.name: Client(t.endpoint) for t in targets}
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(rounds * 3.0 + 30):
            for _ in range(rounds):
                for target in targets:
                    result = results[target.name]
                    seen: asyncio.Future[None] = loop.create_future()

                    def on_hitl(session: Session, seen: asyncio.Future[None] = seen) -> None:
                        if not seen.done():
                            seen.set_result(None)

                    session = Session("hitl", result.counters, on_hitl)
                    try:
                        await clients[target.name].start(target.endpoint.request(HITL_PROMPT), session)
                        async with asyncio.timeout(10.0):
                            await asyncio.wait([seen, session.finished], return_when=asyncio.FIRST_COMPLETED)
                    except (OSError, TimeoutError):
                        pass
                    if not seen.done():
                        session.end(time.perf_counter(), "no hitl event")
                        clients[target.name].close()
                        continue
                    await asyncio.sleep(0.02)  # let the server finish its post-hitl re-check: measure a quiet wait
                    await measure_one_approval(target, Waiting(clients[target.name], session), result)
    finally:
        for client in clients.values():
            client.close()
    return results


async def latency_many(targets: Sequence[Target], waiting_count: int, concurrency: int) -> dict[str, LatencyResult]:
    """``waiting_count`` sessions waiting on each target at once; approve them one by one,
    targets taking turns, measuring each; the waiting count falls from N to 1."""
    results = {t.name: LatencyResult(waiting=waiting_count) for t in targets}
    waiting: dict[str, list[Waiting]] = {}
    for target in targets:
        opened, _ = await open_waiting(target, waiting_count, concurrency, results[target.name].counters, timeout=300)
        random.Random(5).shuffle(opened)
        waiting[target.name] = opened
    await asyncio.sleep(1.0)
    try:
        async with asyncio.timeout(waiting_count * 0.5 + 60):
            for index in range(waiting_count):
                for target in targets:
                    queue = waiting[target.name]
                    if index < len(queue):
                        await measure_one_approval(target, queue[index], results[target.name])
                        queue[index].client.close()
    finally:
        for queue in waiting.values():
            for w in queue:
                if not w.session.finished.done():
                    w.session.end(time.perf_counter(), "not resumed (scenario bound)")
                w.client.close()
    return results


async def latency_burst(targets: Sequence[Target], waiting_count: int, concurrency: int) -> dict[str, LatencyResult]:
    """``waiting_count`` sessions waiting on one target, all approved in one pipeline: the time from
    that pipeline to each session's next frame. One target at a time, each with its own sessions."""
    results = {t.name: LatencyResult(waiting=waiting_count) for t in targets}
    for target in targets:
        result = results[target.name]
        opened, _ = await open_waiting(target, waiting_count, concurrency, result.counters, timeout=300)
        try:
            await asyncio.sleep(1.0)  # a quiet wait: every post-hitl re-check is over
            arrivals = [w.session.arm_next_frame() for w in opened]
            ids = [w.session.request_id for w in opened if w.session.request_id is not None]
            try:
                t_publish, receivers = await approve_burst(target.redis, ids)
            except (ApprovalError, RedisError, OSError, TimeoutError) as exc:
                result.counters.note(f"approval failed: {type(exc).__name__}")
                continue
            result.no_subscriber += len(ids) - receivers
            for waiting, arrived in zip(opened, arrivals, strict=True):
                try:
                    async with asyncio.timeout(30.0):
                        t_frame = await arrived
                except (TimeoutError, ConnectionError):
                    result.lost += 1
                    continue
                if t_frame < t_publish:
                    result.before_publish += 1
                else:
                    result.latencies_ms.append((t_frame - t_publish) * 1000.0)
            async with asyncio.timeout(60.0):
                await asyncio.gather(*(wait_session(w.session, 30.0) for w in opened))
        finally:
            for w in opened:
                if not w.session.finished.done():
                    w.session.end(time.perf_counter(), "not resumed (scenario bound)")
                w.client.close()
    return results


# -- scenario 2: memory per waiting session ----------------------------------------------------
@dataclass
class MemoryPoint:
    waiting: int
    rss_kib: int
    delta_kib: int
    kib_per_session: float
    redis: str
    redis_total: int
    redis_peak_during_open: int
    open_seconds: float

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class MemoryResult:
    baseline_rss_kib: int = 0
    baseline_redis: str = ""
    baseline_redis_total: int = 0
    points: list[MemoryPoint] = field(default_factory=list)
    after_redis: str = ""
    after_rss_kib: int = 0
    resume_seconds: float = 0.0
    counters: Counters = field(default_factory=Counters)

    def as_dict(self) -> dict[str, Any]:
        return {"baselineRssKib": self.baseline_rss_kib, "baselineRedis": self.baseline_redis,
                "baselineRedisTotal": self.baseline_redis_total,
                "points": [p.as_dict() for p in self.points], "afterRedis": self.after_redis,
                "afterRssKib": self.after_rss_kib, "resumeSeconds": self.resume_seconds,
                "sessions": failures_dict(self.counters)}


async def memory(
    target: Target, counts: Sequence[int], concurrency: int, on_waiting: Callable[[], Awaitable[None]] | None = None
) -> MemoryResult:
    """RSS and the server's Redis connections at 0, then each count of waiting sessions."""
    result = MemoryResult()
    warm = Counters()
    await run_sessions(target, "plain", 40, 10, warm)
    await run_sessions(target, "hitl", 40, 10, warm)
    result.counters.started += warm.started
    result.counters.succeeded += warm.succeeded
    for reason, n in warm.failures.items():
        result.counters.failed += n
        result.counters.failures[reason] = result.counters.failures.get(reason, 0) + n
    await asyncio.sleep(1.0)
    result.baseline_rss_kib = target.server.rss_kib()
    baseline = await server_clients(target.redis)
    result.baseline_redis, result.baseline_redis_total = str(baseline), baseline.total

    peak = [baseline.total]
    sampling = [True]

    async def sample() -> None:
        while sampling[0]:
            peak[0] = max(peak[0], (await server_clients(target.redis)).total)
            await asyncio.sleep(0.25)

    waiting: list[Waiting] = []
    try:
        for count in counts:
            peak[0] = 0
            sampling[0] = True
            sampler = asyncio.create_task(sample())
            try:
                opened, seconds = await open_waiting(
                    target, count - len(waiting), concurrency, result.counters, timeout=600
                )
            finally:
                sampling[0] = False
                await sampler
            waiting += opened
            await asyncio.sleep(1.5)
            target.server.check_alive()
            alive = sum(1 for w in waiting if not w.session.finished.done())
            rss = target.server.rss_kib()
            clients = await server_clients(target.redis)
            delta = rss - result.baseline_rss_kib
            result.points.append(
                MemoryPoint(count, rss, delta, delta / alive if alive else 0.0, str(clients), clients.total,
                            peak[0], seconds)
            )
            if on_waiting is not None:
                await on_waiting()
        _, result.resume_seconds = await finish_waiting(target, waiting, batch=200, timeout=600)
    finally:
        for w in waiting:
            if not w.session.finished.done():
                w.session.end(time.perf_counter(), "not resumed (scenario bound)")
            w.client.close()
    await asyncio.sleep(0.5)
    result.after_redis = str(await server_clients(target.redis))
    result.after_rss_kib = target.server.rss_kib()
    return result


# -- scenario 3: throughput ---------------------------------------------------------------------
@dataclass
class ThroughputResult:
    kind: str
    concurrency: int
    window_seconds: float
    completed: int = 0
    sessions_per_second: float = 0.0
    per_second: Summary | None = None  # completions in each 1 s slice of the window
    duration_ms: Summary | None = None  # request sent -> stream ended, completed sessions
    slices: list[int] = field(default_factory=list)  # the raw 1 s slices, to pool rounds
    durations: list[float] = field(default_factory=list)  # the raw session times (ms), to pool rounds
    frames_per_session: float = 0.0
    bytes_per_session: float = 0.0
    frames: int = 0
    server_cpu_seconds: float = 0.0
    redis_cpu_seconds: float = 0.0
    harness_cpu_seconds: float = 0.0
    counters: Counters = field(default_factory=Counters)

    @property
    def frames_per_cpu_second(self) -> float:
        return self.frames / self.server_cpu_seconds if self.server_cpu_seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "concurrency": self.concurrency, "windowSeconds": self.window_seconds,
                "completed": self.completed, "sessionsPerSecond": self.sessions_per_second,
                "perSecond": self.per_second.as_dict() if self.per_second else None,
                "durationMs": self.duration_ms.as_dict() if self.duration_ms else None,
                "slices": self.slices, "durations": [round(d, 3) for d in self.durations],
                "framesPerSession": self.frames_per_session, "bytesPerSession": self.bytes_per_session,
                "frames": self.frames, "serverCpuSeconds": self.server_cpu_seconds,
                "framesPerCpuSecond": self.frames_per_cpu_second, "redisCpuSeconds": self.redis_cpu_seconds,
                "harnessCpuSeconds": self.harness_cpu_seconds, "sessions": failures_dict(self.counters)}


async def throughput(target: Target, kind: str, concurrency: int, warmup: float, window: float) -> ThroughputResult:
    """``concurrency`` clients run sessions back to back; count those ending inside the window."""
    result = ThroughputResult(kind, concurrency, window)
    counters = result.counters
    request = target.endpoint.request(HITL_PROMPT if kind == "hitl" else PLAIN_PROMPT)
    on_hitl = _auto_approver(target, counters) if kind == "hitl" else None
    begin = time.perf_counter()
    window_start = begin + warmup
    window_end = window_start + window
    ended: list[Session] = []

    async def worker() -> None:
        client = Client(target.endpoint)
        try:
            while time.perf_counter() < window_end:
                session = await client.run(request, Session(kind, counters, on_hitl), SESSION_TIMEOUT)
                if session.ok:
                    ended.append(session)
                elif client.conn is None:
                    await asyncio.sleep(0.01)  # never spin on a refused connection
        finally:
            client.close()

    snapshots: dict[str, tuple[float, float, float, int]] = {}

    async def snapshot(name: str, at: float) -> None:
        await asyncio.sleep(max(0.0, at - time.perf_counter()))
        snapshots[name] = (target.server.cpu_seconds(), cpu_seconds(target.redis_child.pid), self_cpu_seconds(),
                           counters.frames)

    workers = [asyncio.create_task(worker()) for _ in range(concurrency)]
    try:
        async with asyncio.timeout(warmup + window + SESSION_TIMEOUT + 10):
            await asyncio.gather(snapshot("start", window_start), snapshot("end", window_end), *workers)
    finally:
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
    target.server.check_alive()
    s_cpu0, r_cpu0, h_cpu0, frames0 = snapshots["start"]
    s_cpu1, r_cpu1, h_cpu1, frames1 = snapshots["end"]
    inside = [s for s in ended if window_start <= s.t_end < window_end]
    result.completed = len(inside)
    result.sessions_per_second = len(inside) / window
    buckets = [0] * max(1, int(window))
    for s in inside:
        slot = int(s.t_end - window_start)
        if slot < len(buckets):
            buckets[slot] += 1
    result.slices = buckets
    result.durations = [s.duration * 1000.0 for s in inside]
    result.per_second = summarize(float(b) for b in buckets)
    result.duration_ms = summarize(result.durations)
    if inside:
        result.frames_per_session = sum(s.frames for s in inside) / len(inside)
        result.bytes_per_session = sum(s.bytes for s in inside) / len(inside)
    result.frames = frames1 - frames0
    result.server_cpu_seconds = s_cpu1 - s_cpu0
    result.redis_cpu_seconds = r_cpu1 - r_cpu0
    result.harness_cpu_seconds = h_cpu1 - h_cpu0
    return result
