"""Run a module under tracemalloc; SIGUSR1 takes a snapshot and writes the growth since the first.

``python -m bench.traced OUT.txt aura serve`` runs ``python -m aura serve``; the first
SIGUSR1 marks the baseline, every later one writes to OUT.txt the allocations
still alive that grew since then, grouped by line and by file (used by
``python -m bench.profile --kind memory --tracemalloc OUT.txt``).
"""

from __future__ import annotations

import runpy
import signal
import sys
import tracemalloc
from pathlib import Path
from types import FrameType


def main() -> None:
    out = Path(sys.argv[1])
    module = sys.argv[2]
    sys.argv = [module, *sys.argv[3:]]
    tracemalloc.start(1)
    snapshots: list[tracemalloc.Snapshot] = []

    def dump(signum: int, frame: FrameType | None) -> None:
        snapshot = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
        snapshots.append(snapshot)
        if len(snapshots) < 2:
            return
        lines: list[str] = []
        for key in ("lineno", "filename"):
            stats = snapshot.compare_to(snapshots[0], key)
            grown = sum(s.size_diff for s in stats)
            lines.append(f"== growth by {key}: {grown / 1024:.0f} KiB in all")
            lines += [str(s) for s in stats[:40]]
            lines.append("")
        out.write_text("\n".join(lines))

    signal.signal(signal.SIGUSR1, dump)
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
