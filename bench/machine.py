"""What the run ran on: cores, CPU model, memory, kernel, Python, packages, redis-server."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Final

from bench.procs import redis_binary

PACKAGES: Final = ("starlette", "uvicorn", "uvloop", "httptools", "redis", "transitions", "python-jose", "anyio")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _mem_total_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / (1024 * 1024)
    except OSError:
        pass
    return 0.0


def _package_versions() -> dict[str, str]:
    found: dict[str, str] = {}
    for name in PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "absent"
    return found


def _redis_version() -> str:
    try:
        out = subprocess.run([redis_binary(), "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, RuntimeError, subprocess.TimeoutExpired):
        return "unknown"
    for part in out.split():
        if part.startswith("v="):
            return part[2:]
    return out.strip() or "unknown"


def describe() -> dict[str, Any]:
    load1, load5, load15 = os.getloadavg()
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpuCount": os.cpu_count(),
        "cpuModel": _cpu_model(),
        "memTotalGib": round(_mem_total_gib(), 1),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "packages": _package_versions(),
        "redisServer": _redis_version(),
        "loadAverageAtStart": [round(load1, 2), round(load5, 2), round(load15, 2)],
    }
