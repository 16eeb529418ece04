"""One Lua script called by many concurrent requests, sent to Redis in shared pipelines.

redis-py's cost per command is mostly fixed: a pool checkout, an ``asyncio.timeout`` around the
read, a ``send`` syscall, the reply parse. At a few thousand bets a second that fixed part was
most of the server's CPU per bet. :class:`ScriptPipe` lets every call made in the same event-loop
turn go out as one pipeline (one checkout, one ``send``, replies read in order): a call is queued
and a flush is scheduled with ``call_soon``, so the first caller of a turn pays no extra wait
beyond the rest of that turn. A flush takes at most ``max_batch`` calls; several flushes may be
in flight, each on its own pooled connection.

Errors fail closed: a Redis error (connection refused, timeout, no pooled connection within the
pool's wait) fails every call of that pipeline with
:class:`~tradehall.tap.stores.StoreUnavailable`, which the API answers with 503 (C-10). A Redis
that lost its scripts (restart, ``SCRIPT FLUSH``) answers ``NOSCRIPT``; the script is loaded
again and those calls are retried once.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError, RedisError, ResponseError

from tradehall.tap.stores import StoreUnavailable

__all__ = ["ScriptPipe"]

_Call = tuple[Sequence[str], Sequence[Any], "asyncio.Future[Any]"]


class ScriptPipe:
    """Call one script; concurrent calls share pipelines (see the module docstring)."""

    def __init__(self, client: aioredis.Redis, script: str, max_batch: int = 256) -> None:
        self._r = client
        self._script = script
        self._sha = hashlib.sha1(script.encode()).hexdigest()
        self._max = max_batch
        self._pending: list[_Call] = []
        self._scheduled = False
        self._flushing: set[asyncio.Task[None]] = set()
        self.pipelines = 0  # pipelines sent (tests and benchmarks read it)
        self.calls = 0

    async def __call__(self, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """The script's answer for ``keys`` and ``args``; :class:`StoreUnavailable` on error."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append((keys, args, future))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        self._scheduled = False
        while self._pending:
            batch, self._pending = self._pending[: self._max], self._pending[self._max :]
            task = asyncio.get_running_loop().create_task(self._run(batch))
            self._flushing.add(task)  # a strong reference until it is done
            task.add_done_callback(self._flushing.discard)

    async def _run(self, batch: list[_Call]) -> None:
        self.pipelines += 1
        self.calls += len(batch)
        try:
            answers = await self._send(batch)
            missing = [i for i, a in enumerate(answers) if isinstance(a, NoScriptError)]
            if missing:
                await self._r.script_load(self._script)
                again = await self._send([batch[i] for i in missing])
                for i, answer in zip(missing, again, strict=True):
                    answers[i] = answer
        except (RedisError, OSError, TimeoutError) as exc:
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(StoreUnavailable(str(exc)))
            return
        except BaseException as exc:  # never leave a caller waiting forever
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(StoreUnavailable(repr(exc)))
            raise
        for (_, _, future), answer in zip(batch, answers, strict=True):
            if future.done():
                continue  # the caller went away (cancelled)
            if isinstance(answer, ResponseError):
                future.set_exception(StoreUnavailable(str(answer)))
            else:
                future.set_result(answer)

    async def _send(self, batch: list[_Call]) -> list[Any]:
        async with self._r.pipeline(transaction=False) as pipe:
            for keys, args, _ in batch:
                pipe.evalsha(self._sha, len(keys), *keys, *args)
            answers: list[Any] = await pipe.execute(raise_on_error=False)
        return answers
