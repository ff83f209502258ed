"""The Ray workers Step-RR talks to: the reference audio LM and the similarity embedder.

Both are named actors the trainer starts inside verl's resource pools
(:func:`verl_avconfuse.integration.placement.start_step_rr_workers`) and reward workers find by name
(:func:`find_worker`). Each gathers concurrent requests with a :class:`MicroBatcher`, so the
rollouts of a step are served by a few batched calls, not one call per sample.

The trainer *prefetches*: when it draws a batch it sends the batch's prompts to the reference
(``ReferenceWorker.prefetch``) before the rollout starts, and hands what comes back to the similarity
worker (``SimilarityWorker.remember_references``), which embeds each reference a-think once. A reward that
asks while its prompt is still being generated joins that generation instead of starting another; a
prefetch that fails leaves the failure where the reward's own request meets it (an error result, counted
against ``avconfuse.reference.max_error_rate``), and the reward's wait stays bounded by ``timeout_s``.

The reference worker states its role and refuses to serve the policy's own checkpoint: the
official release's "reference" step silently generated with the policy model.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import threading
import time
from collections import OrderedDict
from typing import Any

from verl_avconfuse.integration.batching import BusyClock, MicroBatcher
from verl_avconfuse.reference.cache import ReferenceRequest
from verl_avconfuse.settings import ReferenceSettings, SimilaritySettings

logger = logging.getLogger(__name__)

REFERENCE_ROLE = "reference_audio_lm"
#: Prefetched references kept in the worker's memory for the rewards (a few steps' prompts).
PREFETCHED_KEPT = 4096
SIMILARITY_ROLE = "step_rr_similarity"


class ReferenceWorker:
    """Generates (or looks up) the reference ``<a-think>`` for a batch of requests."""

    role = REFERENCE_ROLE

    def __init__(
        self,
        settings: ReferenceSettings,
        policy_model_path: str | None = None,
        *,
        gpu_memory_fraction: float | None = None,
    ):
        from verl_avconfuse.reference.backends import SamplingOptions, load_audio_lm
        from verl_avconfuse.reference.cache import ReferenceCache
        from verl_avconfuse.reference.service import ReferenceService

        if policy_model_path and os.path.realpath(str(settings.model_path)) == os.path.realpath(policy_model_path):
            raise ValueError(
                f"avconfuse.reference.model_path is the policy checkpoint ({policy_model_path}); the reference must "
                "be a separate audio LM that hears only the audio (e.g. Qwen2-Audio-7B-Instruct)"
            )
        sampling = SamplingOptions(settings.temperature, settings.top_p, settings.max_new_tokens, settings.seed)
        # Colocated on an actor GPU: stay within the share of its memory the user gave the reference.
        audio_lm = load_audio_lm(
            settings.backend, settings.model_path, sampling=sampling, gpu_memory_fraction=gpu_memory_fraction
        )
        self.service = ReferenceService(audio_lm, ReferenceCache(settings.cache_dir), batch_size=settings.batch_size)
        self.batcher = MicroBatcher(self.service.get_many, window_s=settings.batch_window_s)
        #: Requests being looked up or generated: a second asker of one waits for the same result.
        self._in_flight: dict[ReferenceRequest, asyncio.Future] = {}
        #: Prefetched references, answered to the rewards at once (no batching window, no cache read).
        self._prefetched: OrderedDict[ReferenceRequest, Any] = OrderedDict()
        #: The rewards' wait on this replica (the union of their get_many calls, in seconds).
        self._reward_wait = BusyClock()
        self.reward_requests = 0
        self.prefetched = 0

    def get_role(self) -> str:
        return self.role

    async def get_many(self, requests: list[ReferenceRequest]) -> list[dict[str, Any]]:
        """The references a reward worker asks for (served from a prefetch when there was one)."""
        self.reward_requests += len(requests)
        with self._reward_wait:
            ready = {request: self._prefetched[request] for request in requests if request in self._prefetched}
            rest = [request for request in requests if request not in ready]
            served = dict(zip(rest, await self._serve(rest), strict=True)) if rest else {}
        # A prefetched reference was read or generated before the reward asked: to the reward, a cache hit.
        results = [dataclasses.replace(ready[r], cached=True) if r in ready else served[r] for r in requests]
        return [dataclasses.asdict(result) for result in results]

    async def prefetch(self, requests: list[ReferenceRequest]) -> list[dict[str, Any]]:
        """Look up or generate references ahead of the rewards (the trainer calls this when it draws a batch)."""
        self.prefetched += len(requests)
        results = await self._serve(requests)
        for request, result in zip(requests, results, strict=True):
            # Failures are not kept: the reward asks the service again, which knows a bad file already.
            if result.error is None:
                self._prefetched[request] = result
                self._prefetched.move_to_end(request)
        while len(self._prefetched) > PREFETCHED_KEPT:
            self._prefetched.popitem(last=False)
        return [dataclasses.asdict(result) for result in results]

    async def _serve(self, requests: list[ReferenceRequest]) -> list:
        loop = asyncio.get_running_loop()
        new = [request for request in dict.fromkeys(requests) if request not in self._in_flight]
        if new:
            futures = {request: loop.create_future() for request in new}
            self._in_flight.update(futures)
            loop.create_task(self._resolve(new, futures))
        # Taken before any await: _resolve drops finished requests from _in_flight.
        waiting = [self._in_flight[request] for request in requests]
        # shield: a caller that stops waiting must not cancel the result another caller shares.
        return list(await asyncio.gather(*(asyncio.shield(future) for future in waiting)))

    async def _resolve(self, requests: list[ReferenceRequest], futures: dict[ReferenceRequest, asyncio.Future]):
        from verl_avconfuse.reference.service import ReferenceResult

        try:
            results = await self.batcher.submit(requests)
        except Exception as error:  # noqa: BLE001 -- every asker gets an error result (arr = 0, counted)
            logger.warning("reference worker: a batch of %d request(s) failed: %s", len(requests), error)
            results = [ReferenceResult(None, f"reference worker: {error}") for _ in requests]
        for request, result in zip(requests, results, strict=True):
            self._in_flight.pop(request, None)
            futures[request].set_result(result)

    def stats(self) -> dict[str, float]:
        """Cumulative counters (the trainer logs per-step differences of the ``timing_s/`` ones)."""
        metrics = self.service.stats.as_metrics()
        # reference/requests: what the rewards asked for (one per rollout); prefetches are counted apart.
        metrics["reference/requests"] = float(self.reward_requests)
        metrics["reference/prefetched"] = float(self.prefetched)
        metrics["reference/batched_calls"] = float(self.batcher.calls)
        metrics["timing_s/reference_wait"] = self._reward_wait.seconds
        metrics["timing_s/reference_generate"] = metrics.pop("reference/generate_s")
        return metrics


class SimilarityWorker:
    """Scores (kind, query, document) pairs with the Step-RR embedder, batched across reward workers."""

    role = SIMILARITY_ROLE

    def __init__(self, settings: SimilaritySettings):
        from verl_avconfuse.reference.similarity import SimilarityModel

        self.model = SimilarityModel(
            settings.model, batch_size=settings.batch_size, use_instructions=settings.use_instructions
        )
        self.batcher = MicroBatcher(self._score, window_s=settings.batch_window_s)
        self._seconds = 0.0
        self._seconds_lock = threading.Lock()

    def get_role(self) -> str:
        return self.role

    def _timed(self, fn, *args):
        started = time.perf_counter()
        try:
            return fn(*args)
        finally:
            with self._seconds_lock:
                self._seconds += time.perf_counter() - started

    def _score(self, pairs: list) -> list[float]:
        return self._timed(self.model.score, pairs).tolist()

    async def score(self, pairs: list) -> list[float]:
        return await self.batcher.submit(pairs)

    async def remember_references(self, results: list[dict[str, Any]]) -> int:
        """Embed the reference a-thinks a prefetch returned (ARR's query side), once per prompt; how many."""
        texts = [result["a_think"].strip() for result in results if result.get("a_think")]
        return await asyncio.to_thread(self._timed, self.model.remember_queries, "arr", texts)

    def stats(self) -> dict[str, float]:
        return {"similarity/batched_calls": float(self.batcher.calls), "timing_s/similarity": self._seconds}


def find_worker(name: str):
    """The named worker's handle, or ``None`` when no trainer started one."""
    import ray

    try:
        return ray.get_actor(name)
    except ValueError:
        return None
