"""Profile a server under load: ``python -m bench.profile --target aura --kind plain``.

Starts a fresh redis-server and the target (as ``make bench`` does), drives
``--concurrency`` clients for ``--seconds``, and meanwhile records the server
with ``py-spy record`` (collapsed stacks, or a flame graph / speedscope file).
py-spy is not a dependency of Aura: ``.venv/bin/pip install py-spy`` first.

With ``--top`` it prints the functions with the most samples (self and
inclusive), which is how the findings in docs/BENCHMARKS.md were read.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import uvloop

from bench.cli import make_token, parse_env, start_target, stop_target
from bench.procs import Processes
from bench.scenarios import memory, run_sessions, throughput
from bench.sseclient import Counters


def _snapshot(pid: int) -> Callable[[], Awaitable[None]]:
    async def take() -> None:
        os.kill(pid, signal.SIGUSR1)
        await asyncio.sleep(5.0)  # the snapshot is written while the sessions still wait

    return take


def top_functions(collapsed: Path, limit: int) -> str:
    """Self and inclusive sample counts per function from py-spy's collapsed ('raw') output."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = stack.split(";")
        if frames:
            own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    out = [f"{total} samples", "", "self %   function"]
    out += [f"{100 * n / total:6.1f}   {name}" for name, n in own.most_common(limit)]
    out += ["", "incl %   function"]
    out += [f"{100 * n / total:6.1f}   {name}" for name, n in inclusive.most_common(limit)]
    return "\n".join(out)


async def drive(args: argparse.Namespace) -> None:
    with Processes(keep_logs=args.keep_logs) as procs:
        wrapper = ["-m", "bench.traced", str(args.tracemalloc.resolve())] if args.tracemalloc else None
        target = await start_target(procs, args.target, make_token(), wrapper, args.aura_source,
                                    parse_env(args.parser, args.aura_env))
        try:
            warm = Counters()
            await run_sessions(target, "plain", 50, 10, warm)
            spy: subprocess.Popen[bytes] | None = None
            if args.output is not None:
                binary = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
                fmt = {"svg": "flamegraph", "json": "speedscope"}.get(args.output.suffix.lstrip("."), "raw")
                spy = subprocess.Popen(
                    [binary, "record", "-p", str(target.server.pid), "-o", str(args.output), "-f", fmt,
                     "-d", str(int(args.seconds)), "-r", str(args.rate), "--nonblocking"],
                    stdout=subprocess.DEVNULL,
                )
                await asyncio.sleep(1.0)
            if args.kind == "memory":
                if args.tracemalloc:
                    os.kill(target.server.pid, signal.SIGUSR1)  # baseline snapshot (after the warm-up above)
                    await asyncio.sleep(2.0)
                res = await memory(target, (args.count,), 100, on_waiting=_snapshot(target.server.pid)
                                   if args.tracemalloc else None)
                print(res.as_dict())
            else:
                result = await throughput(target, args.kind, args.concurrency, 0.0, args.seconds - 1)
                print(f"{result.sessions_per_second:.0f} sessions/s, {result.frames_per_cpu_second:.0f} frames/CPU-s, "
                      f"server CPU {result.server_cpu_seconds:.1f} s, failed {result.counters.failed}")
            if spy is not None:
                spy.wait(timeout=args.seconds + 30)
                if fmt == "raw" and args.top:
                    print(top_functions(args.output, args.top))
        finally:
            await stop_target(procs, target)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("--target", choices=("aura", "floor"), default="aura")
    parser.add_argument("--kind", choices=("plain", "hitl", "memory"), default="plain")
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--count", type=int, default=1000, help="waiting sessions for --kind memory")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--output", type=Path, help="py-spy output: .txt (collapsed), .svg or .json (speedscope)")
    parser.add_argument("--top", type=int, default=0, help="print the N hottest functions (collapsed output)")
    parser.add_argument("--tracemalloc", type=Path, help="--kind memory: write tracemalloc growth per line here")
    parser.add_argument("--keep-logs", action="store_true")
    parser.add_argument("--aura-source", type=Path, help="run Aura from this checkout")
    parser.add_argument("--aura-env", action="append", default=[], metavar="NAME=VALUE", help="extra Aura setting")
    args = parser.parse_args()
    args.parser = parser
    uvloop.run(drive(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
