"""``reward.reward_manager.name=step_rr``: Step-RR in verl's reward loop.

verl scores each rollout as it finishes, in several reward-loop workers. For each response this
manager parses it, finds the prompt's reference a-think, has the similarities computed, and
combines them with :class:`verl_avconfuse.method.step_rr.StepRRBatch` (the Step-RR batch form ``reward_fns/step_rr.py`` uses too):

- reference a-think: ``extra_info.reference_a_think`` when precomputed
  (``avconfuse reference precompute``); else the reference worker that owns the prompt
  (:func:`verl_avconfuse.integration.placement.reference_replica_for`), which serves its cache, the prefetch the
  trainer started when it drew the batch (:mod:`verl_avconfuse.integration.reference_prefetch`), or generates.
  A failure or timeout gives ``arr = 0`` and is counted (``ref_error``), and training goes on
  until the step's error budget is spent (the trainer checks it);
- similarities: the shared similarity worker when the trainer started one, else an embedder loaded
  once in this process; either way concurrent responses are embedded in one batch.

Per-sample extra info (``format``, ``arr``, ``avc``, ``acc``, ``ref_cached``, ``ref_error``, ``sim_error``)
becomes the trainer's ``reward/*``, ``reference/*`` and ``similarity/*`` metrics; ``sim_a_ref``,
``sim_a_v`` (``None`` when not computed) and ``reference_a_think`` are what the score was computed
from, written beside each response in verl's rollout dump (``trainer.rollout_data_dir``).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from verl.experimental.reward_loop.reward_manager import register
from verl.experimental.reward_loop.reward_manager.base import RewardManagerBase

from verl_avconfuse.method.parsing import parse_response
from verl_avconfuse.method.rows import data_index
from verl_avconfuse.method.step_rr import StepRRBatch
from verl_avconfuse.reference.requests import reference_request_for
from verl_avconfuse.settings import avconfuse_settings

logger = logging.getLogger(__name__)

REWARD_MANAGER_NAME = "step_rr"


@register(REWARD_MANAGER_NAME)
class StepRRRewardManager(RewardManagerBase):
    """Step-RR (r_format + r_arr + r_avc) for verl's reward loop."""

    def __init__(self, config, tokenizer, compute_score=None, reward_router_address=None, reward_model_tokenizer=None):
        super().__init__(config, tokenizer, compute_score)
        self.settings = avconfuse_settings(config)
        media = (config.get("data") or {}).get("media") or {}
        self.media_root = media.get("root") if hasattr(media, "get") else None
        self._reference_actors: dict[int, object] = {}
        self._similarity_actor = None
        self._local_similarity = None

    # ------------------------------------------------------------------------------ reference

    def _reference_replica(self, request):
        """The reference worker that serves this request (the same one for every rollout of a prompt)."""
        from verl_avconfuse.integration.placement import reference_actor_name, reference_replica_for
        from verl_avconfuse.integration.reference_worker import find_worker

        replica = reference_replica_for(request, self.settings.reference.replicas)
        if replica not in self._reference_actors:
            handle = find_worker(reference_actor_name(replica))
            if handle is None:
                raise RuntimeError(
                    f"reference worker {reference_actor_name(replica)!r} is not running (use "
                    "trainer.v1.trainer_mode=avconfuse, or precompute references and set "
                    "avconfuse.reference.placement=none)"
                )
            self._reference_actors[replica] = handle
        return self._reference_actors[replica]

    async def _reference(self, non_tensor: dict) -> tuple[str | None, float, float]:
        """(reference a-think, came from cache/precompute, failed)."""
        extra_info = non_tensor.get("extra_info") or {}
        precomputed = extra_info.get("reference_a_think")
        if precomputed:
            return str(precomputed), 1.0, 0.0
        reference = self.settings.reference
        if not reference.enable:
            return None, 0.0, 0.0
        try:
            if not reference.has_worker:
                raise ValueError(
                    "no precomputed extra_info.reference_a_think and avconfuse.reference.placement=none "
                    "(run `avconfuse reference precompute` on this data)"
                )
            request = reference_request_for(non_tensor, self.media_root)
            if request is None:
                raise ValueError("the prompt has no audio or video item")
            # The worker owns the cache: a reward worker on any node asks it, never a local file.
            (result,) = await asyncio.wait_for(
                self._reference_replica(request).get_many.remote([request]), timeout=reference.timeout_s
            )
            if result["a_think"] is None:
                raise RuntimeError(result["error"])
            return result["a_think"], 1.0 if result["cached"] else 0.0, 0.0
        except Exception as error:  # noqa: BLE001 -- one sample's reference never stops training
            logger.warning("step_rr: no reference a-think for this sample (arr = 0): %s", error)
            return None, 0.0, 1.0

    # ----------------------------------------------------------------------------- similarity

    async def _similarities(self, pairs: list) -> list[float]:
        if not pairs:
            return []
        if self._similarity_actor is None and self._local_similarity is None:
            from verl_avconfuse.integration.placement import SIMILARITY_ACTOR
            from verl_avconfuse.integration.reference_worker import find_worker

            self._similarity_actor = find_worker(SIMILARITY_ACTOR)
            if self._similarity_actor is None:
                self._local_similarity = _local_similarity_batcher(self.settings.similarity)
        if self._similarity_actor is not None:
            return await self._similarity_actor.score.remote(pairs)
        return await self._local_similarity.submit(pairs)

    # ---------------------------------------------------------------------------------- score

    async def run_single(self, data) -> dict[str, Any]:
        item = data[-1:][0]
        response_ids = item.batch["responses"]
        valid = int(item.batch["attention_mask"][-response_ids.shape[-1] :].sum())
        text = await asyncio.get_running_loop().run_in_executor(
            None, lambda: self.tokenizer.decode(response_ids[:valid], skip_special_tokens=True)
        )
        non_tensor = dict(item.non_tensor_batch)
        parsed = parse_response(text)
        ground_truth = str(non_tensor["reward_model"]["ground_truth"])
        options = (non_tensor.get("extra_info") or {}).get("options")

        reference, ref_cached, ref_error = await self._reference(non_tensor)
        batch = StepRRBatch((parsed,), (reference,))
        (arr_pair, avc_pair), pairs = batch.requests[0], batch.pairs
        try:
            sims = await self._similarities(pairs)
            sim_error = 0.0
        except Exception as error:  # noqa: BLE001 -- counted; the trainer stops the run past the error budget
            logger.warning("step_rr: the similarity service failed for this sample (arr = avc-sim = 0): %s", error)
            sims, sim_error = None, 1.0
        (scores,) = batch.scores(
            [ground_truth],
            sims,
            omega=self.settings.step_rr.omega,
            options_list=[list(options) if options is not None else None],
        )
        sim_a_ref = sims[0] if sims is not None and arr_pair is not None else None
        sim_a_v = sims[-1] if sims is not None and avc_pair is not None else None
        extra = {
            **scores,
            "ref_cached": ref_cached,
            "ref_error": ref_error,
            "sim_error": sim_error,
            # What the score was computed from, for the rollout dump (trainer.rollout_data_dir) and audits.
            "sim_a_ref": sim_a_ref,
            "sim_a_v": sim_a_v,
            "reference_a_think": reference or "",
            **data_index(non_tensor.get("extra_info")),
        }
        return {"reward_score": scores["score"], "reward_extra_info": extra}


_local_batchers: dict = {}


def _local_similarity_batcher(settings):
    """An in-process embedder, loaded once per process, batching this process's concurrent calls."""
    from verl_avconfuse.integration.batching import MicroBatcher
    from verl_avconfuse.reference.similarity import get_similarity_model

    key = (settings.model, settings.batch_size, settings.use_instructions)
    if key not in _local_batchers:
        model = get_similarity_model(
            settings.model, batch_size=settings.batch_size, use_instructions=settings.use_instructions
        )
        _local_batchers[key] = MicroBatcher(lambda pairs: model.score(pairs).tolist(), window_s=settings.batch_window_s)
    return _local_batchers[key]
