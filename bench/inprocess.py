"""Aura's per-session CPU without HTTP: ``python -m bench.inprocess``.

Runs plain sessions straight through the runtime (create, run, end) against a
fresh redis-server, under cProfile, and says how much of the time redis-py's
own functions took. Used for the throughput notes in docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import time

from aura.auth import Principal
from aura.config import Settings
from aura.runtime import Runtime
from aura.session.session import SessionRequest
from bench.procs import Processes, RedisProc


async def _run(redis_url: str, sessions: int, concurrency: int, top: int) -> None:
    runtime = Runtime(Settings(jwt_secret="x" * 40, redis_url=redis_url))
    async with runtime:
        await asyncio.sleep(0.2)

        async def one() -> None:
            services = runtime.services
            session = await services.registry.create(Principal("1", "1"), SessionRequest("hello", {}))
            await services.runs.start(session)

        await asyncio.gather(*(one() for _ in range(concurrency)))  # warm-up
        profile = cProfile.Profile()
        started = time.perf_counter()
        profile.enable()
        for _ in range(sessions // concurrency):
            await asyncio.gather(*(one() for _ in range(concurrency)))
        profile.disable()
        elapsed = time.perf_counter() - started
        stats = pstats.Stats(profile)
        total = sum(v[2] for v in stats.stats.values())  # type: ignore[attr-defined]
        redis = sum(v[2] for k, v in stats.stats.items() if "/redis/" in k[0])  # type: ignore[attr-defined]
        done = sessions // concurrency * concurrency
        print(f"{done} sessions in {elapsed:.2f} s: {elapsed / done * 1000:.2f} ms each (under cProfile)")
        print(f"redis-py's own functions: {redis:.2f} s of {total:.2f} s profiled ({100 * redis / total:.0f} %)")
        if top:
            stats.sort_stats("tottime").print_stats(top)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.inprocess", description=__doc__)
    parser.add_argument("--sessions", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--top", type=int, default=0, help="also print the N functions with the most own time")
    args = parser.parse_args()
    with Processes() as procs:
        redis = RedisProc(procs, "redis-inprocess")
        asyncio.run(redis.ready())
        asyncio.run(_run(redis.url, args.sessions, args.concurrency, args.top))


if __name__ == "__main__":
    main()
