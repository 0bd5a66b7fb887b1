"""Lua scripts, run by their SHA, and sent in full only to the node that lacks them.

redis-py's ``Script`` reloads a missing script with ``SCRIPT LOAD``, which a cluster
client sends to *every* primary: while any one primary is down, that fails, and
so would every session whose script was not yet cached on its own node. An
``EVAL`` instead goes where the keys are, and caches the script there.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoScriptError

ScriptArg = str | int


@dataclass(frozen=True, slots=True)
class ScriptCall:
    keys: Sequence[str]
    args: Sequence[ScriptArg]


@dataclass(frozen=True, slots=True)
class Script:
    text: str
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sha", hashlib.sha1(self.text.encode()).hexdigest())

    async def run(self, redis: Redis, keys: Sequence[str], args: Sequence[ScriptArg]) -> Any:
        [answer] = await self.run_all(redis, [ScriptCall(keys, args)])
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def run_all(self, redis: Redis, calls: Sequence[ScriptCall]) -> list[Any]:
        """One pipeline of calls; per call, its answer or the error Redis gave it. A failure of the
        connection itself raises."""
        return await run_scripts(redis, [ScriptRun(self, call) for call in calls])


@dataclass(frozen=True, slots=True)
class ScriptRun:
    """One call of one script: what a pipeline of several scripts is made of."""

    script: Script
    call: ScriptCall


Command = tuple[ScriptArg, ...]  # a plain command, e.g. ("SADD", key, member)


async def run_scripts(redis: Redis, runs: Sequence[ScriptRun], commands: Sequence[Command] = ()) -> list[Any]:
    """``commands``, then ``runs``, in one pipeline (one round trip); per run, its answer or the error
    Redis gave it. The commands' answers are not returned; an error among them raises, and so does a
    failure of the connection itself."""
    async with redis.pipeline(transaction=False) as pipe:
        for command in commands:
            pipe.execute_command(*command)
        for run in runs:
            # By name: redis-py's cluster pipeline refuses its `evalsha` method, though it routes
            # the command itself by its keys like any other.
            call = run.call
            pipe.execute_command("EVALSHA", run.script.sha, len(call.keys), *call.keys, *call.args)
        answers: list[Any] = await pipe.execute(raise_on_error=False)
    for answer in answers[: len(commands)]:
        if isinstance(answer, Exception):
            raise answer
    answers = answers[len(commands) :]
    missing = [i for i, answer in enumerate(answers) if isinstance(answer, NoScriptError)]
    if missing:  # a restart, a failover or SCRIPT FLUSH emptied that node's script cache
        async with redis.pipeline(transaction=False) as pipe:
            for i in missing:
                run = runs[i]
                pipe.execute_command("EVAL", run.script.text, len(run.call.keys), *run.call.keys, *run.call.args)
            again = await pipe.execute(raise_on_error=False)
        for i, answer in zip(missing, again, strict=True):
            answers[i] = answer
    return answers
