"""Aura's benchmark harness (issues 5, 8 and 9): ``make bench`` = ``python -m bench``.

It starts a fresh ``redis-server`` and the server under test on loopback, drives
them with an asyncio load generator (raw HTTP/1.1 + SSE over asyncio protocols),
measures the same scenarios against Aura and against a reference floor server
(:mod:`bench.floor`) in the same run, and writes ``docs/BENCHMARKS.md``.

Modules:

- :mod:`bench.cli` — arguments and the order of the run;
- :mod:`bench.procs` — redis-server and server subprocesses, /proc readings;
- :mod:`bench.sseclient` — the load generator's HTTP/SSE client;
- :mod:`bench.approve` — main-service-style approvals over Redis;
- :mod:`bench.scenarios` — latency, memory and throughput scenarios;
- :mod:`bench.adoption` — several Aura processes on one Redis, one SIGKILLed: adoption time, Redis commands;
- :mod:`bench.floor` — the reference floor server (``python -m bench.floor``);
- :mod:`bench.stats`, :mod:`bench.machine`, :mod:`bench.report` — figures and the report;
- :mod:`bench.profile` — py-spy / tracemalloc under load; :mod:`bench.inprocess` — cProfile without HTTP.
"""
