"""Gather concurrent requests into one batched call (the reference audio LM, the embedder).

verl scores rewards per sample, as each rollout finishes, from several reward workers at once;
the expensive parts (an embedding pass, an audio-LM generation) are far cheaper per item in one
batch. A :class:`MicroBatcher` collects whatever arrives within ``window_s`` (up to ``max_items``)
and runs ``fn`` once on the concatenation in a worker thread, so the actor's event loop stays free.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any


class MicroBatcher:
    def __init__(self, fn: Callable[[list[Any]], Sequence[Any]], *, window_s: float = 0.02, max_items: int = 1024):
        self.fn = fn
        self.window_s = window_s
        self.max_items = max_items
        self.calls = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue | None = None

    def _bind(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._loop = loop
            self._queue = asyncio.Queue()
            loop.create_task(self._run())

    async def submit(self, items: Sequence[Any]) -> list[Any]:
        """Results for ``items``, in order, computed in a batch with concurrent submissions."""
        if not items:
            return []
        self._bind()
        future = self._loop.create_future()
        await self._queue.put((list(items), future))
        return await future

    async def _run(self) -> None:
        while True:
            pending = [await self._queue.get()]
            await asyncio.sleep(self.window_s)
            size = len(pending[0][0])
            while not self._queue.empty() and size < self.max_items:
                pending.append(self._queue.get_nowait())
                size += len(pending[-1][0])
            flat = [item for items, _ in pending for item in items]
            try:
                self.calls += 1
                results = list(await asyncio.to_thread(self.fn, flat))
                if len(results) != len(flat):
                    raise RuntimeError(f"{self.fn!r} returned {len(results)} results for {len(flat)} items")
            except Exception as error:  # every waiter gets the error; the batcher lives on
                for _, future in pending:
                    if not future.done():
                        future.set_exception(error)
                continue
            start = 0
            for items, future in pending:
                if not future.done():
                    future.set_result(results[start : start + len(items)])
                start += len(items)


class BusyClock:
    """Seconds during which at least one call was in progress: the union of the calls' intervals.

    A step's rewards wait concurrently (a GRPO group's rollouts ask for the same reference together); the
    time the reward loop was held up is the union of those waits, not their sum.
    """

    def __init__(self) -> None:
        self._active = 0
        self._since = 0.0
        self._total = 0.0

    def __enter__(self) -> BusyClock:
        if self._active == 0:
            self._since = time.perf_counter()
        self._active += 1
        return self

    def __exit__(self, *exc_info) -> None:
        self._active -= 1
        if self._active == 0:
            self._total += time.perf_counter() - self._since

    @property
    def seconds(self) -> float:
        return self._total + (time.perf_counter() - self._since if self._active else 0.0)
