"""``AvconfuseTrainer``: verl's synchronous v1 trainer, registered as ``trainer.v1.trainer_mode=avconfuse``.

RL-CoMM trains without KL, so verl builds no reference policy; in its place this trainer starts
the *heterogeneous reference*, a Ray worker holding a large audio LM, and the shared Step-RR
embedder (:mod:`verl_avconfuse.reference.worker`), when the reward manager is ``step_rr``. It adds,
through ``register_trainer`` rather than a patched trainer, the metrics:

- ``reward/{format,arr,avc,acc}/mean``: Step-RR's components (from each sample's reward extra info);
- ``reference/cache_hit_rate``, ``reference/errors``, ``reference/generated``: the reference audio LM;
- ``rollout/media/{audio,video,image}_tokens/mean`` and ``with_*_frac``: proof the rollouts carried
  the media (placeholder tokens per prompt);
- ``data/skipped_samples``: rows the dataset dropped for unusable media (see ``OmniRLDataset``).

Everything else is ``PPOTrainerSync``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import numpy as np
from verl.trainer.ppo.v1.trainer_base import register_trainer
from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync

logger = logging.getLogger(__name__)

TRAINER_MODE = "avconfuse"
#: verl's v1 trainers key sync/async behaviour (replay buffer, refills, checkpointed queue state)
#: on ``trainer_mode == "sync"``; this trainer is synchronous under its own registry name.
_VERL_SYNC_MODE = "sync"


def media_token_ids(processor) -> dict[str, int]:
    """Placeholder token id per modality, as verl resolves them."""
    from verl.utils.tokenizer import get_processor_token_id

    ids = {}
    for modality in ("audio", "video", "image"):
        token_id = get_processor_token_id(processor, modality)
        if token_id is not None:
            ids[modality] = token_id
    return ids


def media_token_metrics(prompts: Iterable, token_ids: dict[str, int]) -> dict[str, float]:
    """Mean placeholder tokens per prompt and the share of prompts carrying each modality."""
    counts = {modality: [] for modality in token_ids}
    for prompt in prompts:
        ids = np.asarray(prompt)
        for modality, token_id in token_ids.items():
            counts[modality].append(int((ids == token_id).sum()))
    metrics = {}
    for modality, values in counts.items():
        if values:
            values = np.asarray(values)
            metrics[f"rollout/media/{modality}_tokens/mean"] = float(values.mean())
            metrics[f"rollout/media/with_{modality}_frac"] = float((values > 0).mean())
    return metrics


REWARD_KEYS = ("format", "arr", "avc", "acc")


def reward_metrics(reward_extra_infos: Iterable[dict]) -> dict[str, float]:
    """Step-RR component means and reference counters over a step's samples."""
    infos = [info for info in reward_extra_infos if isinstance(info, dict)]
    metrics: dict[str, float] = {}
    for key in REWARD_KEYS:
        values = [float(info[key]) for info in infos if key in info]
        if values:
            metrics[f"reward/{key}/mean"] = float(np.mean(values))
    cached = [float(info["ref_cached"]) for info in infos if "ref_cached" in info]
    if cached:
        metrics["reference/cache_hit_rate"] = float(np.mean(cached))
        metrics["reference/errors"] = float(sum(float(info.get("ref_error", 0.0)) for info in infos))
    return metrics


@register_trainer(TRAINER_MODE)
class AvconfuseTrainer(PPOTrainerSync):
    """Synchronous PPO/GRPO trainer with RL-CoMM's reference worker and metrics."""

    def _build_replay_buffer(self):
        self.trainer_mode = _VERL_SYNC_MODE
        return super()._build_replay_buffer()

    def _setup(self):
        super()._setup()
        self.step_rr_workers: dict = {}
        if self.config.reward.reward_manager.get("name") == "step_rr":
            from verl_avconfuse.reference.worker import start_workers
            from verl_avconfuse.settings import avconfuse_settings

            self.step_rr_workers = start_workers(
                avconfuse_settings(self.config),
                policy_model_path=self.config.actor_rollout_ref.model.path,
                colocate_with=self.actor_rollout_wg.workers[0],
            )

    def _compute_metrics(self, batch, metrics, timing_raw, global_steps, epoch):
        super()._compute_metrics(batch, metrics, timing_raw, global_steps=global_steps, epoch=epoch)
        metrics.update(self._media_metrics(batch))
        metrics.update(self._reward_metrics(batch))
        metrics.update(self._worker_stats())
        skipped = getattr(self.train_dataset, "skipped_samples", None)
        if skipped is not None:
            metrics["data/skipped_samples"] = float(len(skipped))

    def _reward_metrics(self, batch) -> dict[str, float]:
        import transfer_queue as tq

        data = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id, select_fields=["extra_fields"])
        extra_fields = data["extra_fields"]
        extra_fields = extra_fields.tolist() if hasattr(extra_fields, "tolist") else list(extra_fields)
        return reward_metrics(field.get("reward_extra_info", {}) for field in extra_fields if isinstance(field, dict))

    def _worker_stats(self) -> dict[str, float]:
        import ray

        from verl_avconfuse.reference.worker import REFERENCE_ACTOR

        handle = self.step_rr_workers.get(REFERENCE_ACTOR)
        if handle is None:
            return {}
        stats = ray.get(handle.stats.remote())
        return {
            "reference/generated": stats["reference/generated"],
            "reference/batched_calls": stats["reference/batched_calls"],
        }

    def _media_metrics(self, batch) -> dict[str, float]:
        import transfer_queue as tq

        token_ids = media_token_ids(self.processor) if self.processor is not None else {}
        if not token_ids:
            return {}
        data = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id, select_fields=["prompts"])
        prompts = data["prompts"]
        rows = prompts.unbind() if prompts.is_nested else list(prompts)
        return media_token_metrics((row.tolist() for row in rows), token_ids)
