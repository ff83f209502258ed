"""MicroBatcher: concurrent submissions become one call; results and errors reach every caller."""

from __future__ import annotations

import asyncio

import pytest

from verl_avconfuse.integration.batching import MicroBatcher


def test_concurrent_submissions_share_one_call_and_keep_their_order():
    calls = []

    def double(items):
        calls.append(list(items))
        return [2 * x for x in items]

    batcher = MicroBatcher(double, window_s=0.02)

    async def main():
        return await asyncio.gather(batcher.submit([1, 2]), batcher.submit([3]), batcher.submit([4, 5, 6]))

    assert asyncio.run(main()) == [[2, 4], [6], [8, 10, 12]]
    assert calls == [[1, 2, 3, 4, 5, 6]] and batcher.calls == 1


def test_max_items_splits_large_waves():
    batcher = MicroBatcher(lambda items: items, window_s=0.02, max_items=3)

    async def main():
        return await asyncio.gather(*[batcher.submit([i, i]) for i in range(4)])

    assert asyncio.run(main()) == [[i, i] for i in range(4)]
    assert batcher.calls == 2  # 2+2 > 3 stops the first gather after two submissions


def test_an_error_reaches_every_waiter_and_the_batcher_survives():
    state = {"fail": True}

    def flaky(items):
        if state["fail"]:
            raise RuntimeError("embedder down")
        return items

    batcher = MicroBatcher(flaky, window_s=0.01)

    async def main():
        results = await asyncio.gather(batcher.submit([1]), batcher.submit([2]), return_exceptions=True)
        state["fail"] = False
        return results, await batcher.submit([3])

    results, after = asyncio.run(main())
    assert all(isinstance(r, RuntimeError) for r in results)
    assert after == [3]


def test_wrong_result_count_is_an_error():
    batcher = MicroBatcher(lambda items: items[:-1], window_s=0.0)
    with pytest.raises(RuntimeError, match="returned 1 results for 2 items"):
        asyncio.run(batcher.submit([1, 2]))
