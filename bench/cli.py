"""``python -m bench``: run every scenario against the floor and Aura, write docs/BENCHMARKS.md.

Order of a run (every target gets a fresh redis-server of its own):

1. memory: the floor, then Aura, each in a fresh process (RSS deltas need a clean
   baseline): warm-up, then 1,000 and 10,000 sessions waiting, Redis connections
   at 0/1,000/10,000, then every session approved and checked;
2. the floor and Aura side by side in fresh processes, taking turns on every
   measurement so that the machine's noise hits both alike: approval→resume
   latency with 1 and with 1,000 waiting, then throughput (plain and HITL, 50
   and 200 clients);
3. adoption (issue 9): three Aura processes on one redis-server, 10,000 sessions
   waiting across them; one is SIGKILLed and the survivors adopt its sessions
   (time, and Redis commands per session; :mod:`bench.adoption`).

``--only`` runs a subset, e.g. ``--only adoption``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import signal
import sys
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import uvloop
from jose import jwt

from bench import machine, report
from bench.adoption import AdoptionPlan, adoption, nofile_needed
from bench.approve import harness_redis
from bench.procs import Processes, RedisProc, ServerProc, free_port, http_json, python, raise_nofile
from bench.scenarios import (
    Target,
    latency_burst,
    latency_many,
    latency_single,
    memory,
    run_sessions,
    throughput,
)
from bench.sseclient import Counters, Endpoint

ROOT = Path(__file__).resolve().parent.parent
DEV_JWT_SECRET = "your_shared_secret_key_must_be_at_least_256_bits_long_for_HS256"
TARGET_NAMES = ("floor", "aura")
SCENARIOS = ("memory", "latency", "throughput", "adoption")


@dataclass(frozen=True)
class Plan:
    mode: str
    memory_counts: tuple[int, ...]
    open_concurrency: int
    latency_rounds: int
    latency_waiting: int
    throughput_runs: tuple[tuple[str, int], ...]
    throughput_rounds: int
    warmup_seconds: float
    window_seconds: float
    adoption: AdoptionPlan

    @classmethod
    def full(cls) -> Plan:
        return cls("full", (1000, 10000), 100, 200, 1000,
                   (("plain", 50), ("plain", 200), ("hitl", 50), ("hitl", 200)), 3, 1.5, 6.0,
                   AdoptionPlan(sessions=10000, instances=3, concurrency=100, idle_empty_seconds=10.0,
                                idle_seconds=20.0, sample=100, adopt_timeout=120.0))

    @classmethod
    def quick(cls) -> Plan:
        return cls("quick", (100, 1000), 100, 30, 200,
                   (("plain", 50), ("plain", 200), ("hitl", 50), ("hitl", 200)), 1, 0.5, 2.0,
                   AdoptionPlan(sessions=1000, instances=3, concurrency=100, idle_empty_seconds=6.0,
                                idle_seconds=10.0, sample=20, adopt_timeout=90.0))


def make_token() -> str:
    now = int(time.time())
    claims = {"sub": "1", "tenant_id": "1", "iat": now, "exp": now + 7200}
    return str(jwt.encode(claims, DEV_JWT_SECRET, algorithm="HS256"))


def clean_env() -> dict[str, str]:
    """The caller's environment without anything that configures Aura or Redis (an AURA_LLM_BASE_URL in
    the shell must not turn the benchmark into an LLM benchmark); ``--aura-env`` adds settings back."""
    return {k: v for k, v in os.environ.items() if not k.startswith(_SERVER_ENV_PREFIXES)}


_SERVER_ENV_PREFIXES = ("AURA_", "REDIS_", "JWT_", "FLOOR_")


async def start_target(
    procs: Processes,
    name: str,
    token: str,
    wrapper: list[str] | None = None,
    aura_source: Path | None = None,
    aura_env: dict[str, str] | None = None,
) -> Target:
    """A fresh redis-server and the named server; ``aura_source``: run Aura from that checkout instead;
    ``aura_env``: extra settings for Aura (e.g. AURA_SESSION_RETENTION_SECONDS=0)."""
    redis = RedisProc(procs, f"redis-{name}")
    await redis.ready()
    if name == "aura":
        server = await start_aura(procs, name, redis.url, wrapper, aura_source, aura_env)
    else:
        port = free_port()
        env = clean_env()
        env.update(PYTHONUNBUFFERED="1", REDIS_URL=redis.url, FLOOR_PORT=str(port), FLOOR_HITL_TIMEOUT_SECONDS="290")
        argv = [python(), "-m", "bench.floor"] if not wrapper else [python(), *wrapper, "bench.floor"]
        server = ServerProc(procs, name, argv, env, port, "/health", ROOT)
        await server.ready()
    port = server.port
    # The same request bytes for both: the floor ignores the headers it does not need.
    endpoint = Endpoint("127.0.0.1", port, "/aura/test/stream",
                        (("Authorization", f"Bearer {token}"), ("X-Tenant-ID", "1")))
    return Target(name, server, harness_redis(redis.url), redis.child, endpoint)


async def start_aura(
    procs: Processes,
    name: str,
    redis_url: str,
    wrapper: list[str] | None = None,
    aura_source: Path | None = None,
    aura_env: Mapping[str, str] | None = None,
    settings: Mapping[str, str] | None = None,
) -> ServerProc:
    """One ready Aura process (``python -m aura serve``) on a free port of 127.0.0.1, on ``redis_url``:
    the harness's settings, then the scenario's ``settings``, then ``aura_env`` (``--aura-env``) on top."""
    port = free_port()
    env = clean_env()
    env.update(
        PYTHONUNBUFFERED="1",
        REDIS_URL=redis_url,
        JWT_SECRET=DEV_JWT_SECRET,
        AURA_ALLOW_DEV_SECRET="true",
        AURA_HOST="127.0.0.1",
        AURA_PORT=str(port),
        AURA_LOG_LEVEL="warning",
        AURA_HITL_TIMEOUT_SECONDS="290",
        AURA_HEARTBEAT_SECONDS="15",
        # the scenarios run thousands of sessions as a few users: the per-user limits must not be what is measured
        AURA_MAX_LIVE_SESSIONS_PER_USER="100000",
        AURA_MAX_LIVE_SESSIONS_PER_TENANT="1000000",
        AURA_MAX_KEPT_SESSIONS_PER_USER="1000000",
        AURA_MAX_STREAMS_PER_USER="100000",
        AURA_MAX_STREAMS_PER_TENANT="1000000",
        AURA_HTTP_MAX_CONNECTIONS="100000",  # the memory scenario holds 10,000 streams on one process
    )
    env.update(settings or {})
    env.update(aura_env or {})
    argv = [python(), "-m", "aura", "serve"] if not wrapper else [python(), *wrapper, "aura", "serve"]
    cwd = ROOT
    if aura_source is not None:
        cwd = aura_source.resolve()
        env["PYTHONPATH"] = os.pathsep.join([str(cwd), str(ROOT)])  # its aura, our bench
    server = ServerProc(procs, name, argv, env, port, "/aura/health", cwd,
                        health_headers=(("Authorization", f"Bearer {make_token()}"), ("X-Tenant-ID", "1")))
    await server.ready()
    return server


async def stop_target(procs: Processes, target: Target) -> None:
    for task in list(target.tasks):
        task.cancel()
    await target.redis.aclose()
    procs.stop(target.server.child)
    procs.stop(target.redis_child)


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


async def run(
    procs: Processes, plan: Plan, only: set[str], aura_source: Path | None = None, aura_env: dict[str, str] | None = None
) -> dict[str, Any]:
    results: dict[str, Any] = {"memory": {}, "latency": {}, "throughput": [], "serverStartRssKib": {}, "errors": []}
    token = make_token()

    def broken(phase: str, exc: BaseException) -> None:
        log(f"{phase} broke off: {type(exc).__name__}: {exc}")
        traceback.print_exc()
        results["errors"].append(f"{phase}: {type(exc).__name__}: {exc}")

    if "memory" in only:
        for name in TARGET_NAMES:
            log(f"memory: {name}, {' then '.join(f'{n:,}' for n in plan.memory_counts)} waiting sessions")
            try:
                target = await start_target(procs, name, token, aura_source=aura_source, aura_env=aura_env)
                try:
                    outcome = await memory(target, plan.memory_counts, plan.open_concurrency)
                finally:
                    await stop_target(procs, target)
            except Exception as exc:
                broken(f"memory ({name})", exc)
                continue
            results["memory"][name] = outcome.as_dict()
            log(f"memory: {name}: " + ", ".join(
                f"{p.waiting:,} waiting {p.kib_per_session:.1f} KiB/session, redis {p.redis}" for p in outcome.points)
                + f"; failed {outcome.counters.failed}")
    if only & {"latency", "throughput"}:
        targets: list[Target] = []
        try:
            for name in TARGET_NAMES:
                targets.append(await start_target(procs, name, token, aura_source=aura_source, aura_env=aura_env))
            for target in targets:
                results["serverStartRssKib"][target.name] = target.server.rss_kib()
                warm = Counters()
                await run_sessions(target, "plain", 100, 20, warm)
                await run_sessions(target, "hitl", 100, 20, warm)
                results.setdefault("warmup", {})[target.name] = {"started": warm.started, "failed": warm.failed,
                                                                  "reasons": warm.failures}
            if "latency" in only:
                try:
                    await _latency(plan, targets, results)
                except Exception as exc:
                    broken("latency", exc)
            if "throughput" in only:
                await _throughput(plan, targets, results, broken)
            for target in targets:  # what the runs left behind (retained sessions, heap growth)
                results.setdefault("endOfRun", {})[target.name] = {
                    "rssKib": target.server.rss_kib(),
                    "health": await http_json("127.0.0.1", target.server.port, target.server.health_path,
                                              headers=target.server.health_headers),
                }
        except Exception as exc:
            broken("latency/throughput set-up", exc)
        finally:
            for target in targets:
                await stop_target(procs, target)
    if "adoption" in only:
        adoption_plan = plan.adoption
        log(f"adoption: {adoption_plan.instances} Aura processes, {adoption_plan.sessions:,} waiting sessions, "
            "one process SIGKILLed")

        async def start(name: str, redis_url: str, settings: Mapping[str, str]) -> ServerProc:
            return await start_aura(procs, name, redis_url, None, aura_source, aura_env, settings)

        try:
            adopted = await adoption(procs, adoption_plan, token, start, log)
        except Exception as exc:
            broken("adoption", exc)
        else:
            results["adoption"] = adopted.as_dict()
    return results


async def _throughput(
    plan: Plan, targets: list[Target], results: dict[str, Any], broken: Callable[[str, BaseException], None]
) -> None:
    """Each configuration ``throughput_rounds`` times; the servers take turns, alternating who goes first."""
    turn = 0
    for kind, concurrency in plan.throughput_runs:
        for round_ in range(plan.throughput_rounds):
            order = targets if turn % 2 == 0 else list(reversed(targets))
            turn += 1
            for target in order:
                try:
                    res = await throughput(target, kind, concurrency, plan.warmup_seconds, plan.window_seconds)
                except Exception as exc:
                    broken(f"throughput ({kind}, {concurrency}, {target.name}, round {round_ + 1})", exc)
                    continue
                results["throughput"].append({"target": target.name, "round": round_ + 1, **res.as_dict()})
                log(f"throughput: {kind}, {concurrency} clients, round {round_ + 1}, {target.name}: "
                    f"{res.sessions_per_second:.0f} sessions/s, "
                    f"{1000 * res.server_cpu_seconds / max(1, res.completed):.2f} ms CPU/session, "
                    f"failed {res.counters.failed}")


async def _latency(plan: Plan, targets: list[Target], results: dict[str, Any]) -> None:
    log(f"latency: 1 waiting, {plan.latency_rounds} approvals per server")
    single = await latency_single(targets, plan.latency_rounds)
    results["latency"]["single"] = {k: v.as_dict() for k, v in single.items()}
    log(f"latency: {plan.latency_waiting:,} waiting, approved one by one")
    many = await latency_many(targets, plan.latency_waiting, plan.open_concurrency)
    results["latency"]["many"] = {k: v.as_dict() for k, v in many.items()}
    log(f"latency: {plan.latency_waiting:,} waiting, approved all at once")
    burst = await latency_burst(targets, plan.latency_waiting, plan.open_concurrency)
    results["latency"]["burst"] = {k: v.as_dict() for k, v in burst.items()}
    for label, group in (("1", single), (f"{plan.latency_waiting:,}", many), (f"{plan.latency_waiting:,} at once", burst)):
        for name, res in group.items():
            s = res.summary()
            if s:
                log(f"latency: {label} waiting {name}: median {s.median:.2f} ms p99 {s.p99:.2f} ms")


def parse_env(parser: argparse.ArgumentParser, pairs: list[str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            parser.error(f"--aura-env wants NAME=VALUE (got {pair!r})")
        env[name] = value
    return env


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description="Aura benchmarks (issues 5, 8 and 9)")
    parser.add_argument("--quick", action="store_true", help="smaller counts and windows: a ~2-minute smoke run")
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "BENCHMARKS.md", help="the report to write")
    parser.add_argument("--json", type=Path, help="also write the raw figures as JSON here")
    parser.add_argument("--only", default=",".join(SCENARIOS),
                        help=f"comma-separated subset of {','.join(SCENARIOS)} (e.g. --only adoption)")
    parser.add_argument("--no-report", action="store_true", help="do not write the report (development)")
    parser.add_argument("--keep-logs", action="store_true", help="keep the servers' and redis-servers' logs")
    parser.add_argument("--aura-env", action="append", default=[], metavar="NAME=VALUE",
                        help="an extra setting for Aura (repeatable); AURA_*/REDIS_*/JWT_* from the shell are ignored")
    parser.add_argument("--aura-source", type=Path,
                        help="run Aura from this checkout (a directory holding aura/ and statemachines/), "
                             "e.g. to measure a patch against the same floor")
    args = parser.parse_args(argv)
    plan = Plan.quick() if args.quick else Plan.full()
    aura_env = parse_env(parser, args.aura_env)
    only = {part.strip() for part in args.only.split(",") if part.strip()}
    unknown = only - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")

    needed = max(plan.memory_counts) + 2 * plan.latency_waiting + 1000
    if "adoption" in only:
        needed = max(needed, nofile_needed(plan.adoption))
    soft, hard = raise_nofile(needed)
    if soft < needed:
        print(f"bench: RLIMIT_NOFILE is {soft} (hard {hard}); {needed} descriptors are needed", file=sys.stderr)
        return 2
    os.chdir(ROOT)
    # Ctrl-C and SIGTERM (e.g. a killed `make`) raise KeyboardInterrupt out of the event loop, so the
    # Processes context below stops every child on the way out (and a parent-death signal covers kill -9).
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, _terminate)
    command = "make bench" if os.environ.get("MAKELEVEL") else shlex.join([".venv/bin/python", "-m", "bench", *(argv if argv is not None else sys.argv[1:])])
    info = machine.describe()
    log(f"{plan.mode} run on {info['nproc']} cores ({info['cpuModel']}); RLIMIT_NOFILE {soft}")
    started = time.time()
    try:
        with Processes(keep_logs=args.keep_logs) as procs:  # stops every child however the run ends
            results = uvloop.run(run(procs, plan, only, args.aura_source, aura_env))
    except KeyboardInterrupt as exc:
        log(f"interrupted ({exc or 'Ctrl-C'}); every server and redis-server was stopped; no report written")
        return 130
    elapsed = time.time() - started
    meta = {"command": command, "mode": plan.mode, "plan": dataclasses.asdict(plan), "machine": info,
            "startedAt": time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(started)), "elapsedSeconds": elapsed,
            "nofile": soft, "scenarios": sorted(only),
            "auraSource": str(args.aura_source.resolve()) if args.aura_source else None, "auraEnv": aura_env}
    document = {"meta": meta, "results": results}
    if args.json:
        args.json.write_text(json.dumps(document, indent=2, default=str) + "\n")
    if not args.no_report:
        report.write(args.output, document)
        log(f"wrote {args.output} ({elapsed:.0f} s)")
    failed = report.total_failures(document)
    if failed:
        log(f"{failed} session(s) failed: see the report")
    if results["errors"]:
        log(f"{len(results['errors'])} scenario(s) broke off: see the report")
        return 1
    return 0
