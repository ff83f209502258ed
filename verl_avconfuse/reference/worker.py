"""The Ray workers Step-RR talks to: the reference audio LM and the similarity embedder.

Both are named actors the trainer starts inside verl's resource pools
(:func:`verl_avconfuse.placement.start_step_rr_workers`) and reward workers find by name
(:func:`find_worker`). Each gathers concurrent requests with a :class:`MicroBatcher`, so the
rollouts of a step are served by a few batched calls, not one call per sample.

The reference worker states its role and refuses to serve the policy's own checkpoint: the
official release's "reference" step silently generated with the policy model.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any

from verl_avconfuse.batching import MicroBatcher
from verl_avconfuse.reference.cache import ReferenceRequest
from verl_avconfuse.settings import ReferenceSettings, SimilaritySettings

logger = logging.getLogger(__name__)

REFERENCE_ROLE = "reference_audio_lm"
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

    def get_role(self) -> str:
        return self.role

    async def get_many(self, requests: list[ReferenceRequest]) -> list[dict[str, Any]]:
        results = await self.batcher.submit(requests)
        return [dataclasses.asdict(result) for result in results]

    def stats(self) -> dict[str, float]:
        return {**self.service.stats.as_metrics(), "reference/batched_calls": float(self.batcher.calls)}


class SimilarityWorker:
    """Scores (kind, query, document) pairs with the Step-RR embedder, batched across reward workers."""

    role = SIMILARITY_ROLE

    def __init__(self, settings: SimilaritySettings):
        from verl_avconfuse.similarity import SimilarityModel

        self.model = SimilarityModel(
            settings.model, batch_size=settings.batch_size, use_instructions=settings.use_instructions
        )
        self.batcher = MicroBatcher(lambda pairs: self.model.score(pairs).tolist(), window_s=settings.batch_window_s)

    def get_role(self) -> str:
        return self.role

    async def score(self, pairs: list) -> list[float]:
        return await self.batcher.submit(pairs)

    def stats(self) -> dict[str, float]:
        return {"similarity/batched_calls": float(self.batcher.calls)}


def find_worker(name: str):
    """The named worker's handle, or ``None`` when no trainer started one."""
    import ray

    try:
        return ray.get_actor(name)
    except ValueError:
        return None
