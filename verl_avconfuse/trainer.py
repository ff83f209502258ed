"""``AvconfuseTrainer``: verl's synchronous v1 trainer, registered as ``trainer.v1.trainer_mode=avconfuse``.

It adds, through ``register_trainer`` rather than a patched trainer:

- metrics that prove the multimodal path carried the media: ``rollout/media/{audio,video,image}_tokens/mean``
  (placeholder tokens per prompt) and ``rollout/media/with_audio_frac`` / ``with_video_frac``;
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


@register_trainer(TRAINER_MODE)
class AvconfuseTrainer(PPOTrainerSync):
    """Synchronous PPO/GRPO trainer with RL-CoMM's metrics."""

    def _build_replay_buffer(self):
        self.trainer_mode = _VERL_SYNC_MODE
        return super()._build_replay_buffer()

    def _compute_metrics(self, batch, metrics, timing_raw, global_steps, epoch):
        super()._compute_metrics(batch, metrics, timing_raw, global_steps=global_steps, epoch=epoch)
        metrics.update(self._media_metrics(batch))
        skipped = getattr(self.train_dataset, "skipped_samples", None)
        if skipped is not None:
            metrics["data/skipped_samples"] = float(len(skipped))

    def _media_metrics(self, batch) -> dict[str, float]:
        import transfer_queue as tq

        token_ids = media_token_ids(self.processor) if self.processor is not None else {}
        if not token_ids:
            return {}
        data = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id, select_fields=["prompts"])
        prompts = data["prompts"]
        rows = prompts.unbind() if prompts.is_nested else list(prompts)
        return media_token_metrics((row.tolist() for row in rows), token_ids)
