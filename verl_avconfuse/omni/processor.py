"""The Qwen2.5-Omni processor in verl's multimodal path.

verl 0.9.1's ``hf_processor`` knows the Qwen-VL processors only: for ``Qwen2_5OmniProcessor`` it
raises inside a try/except, returns ``None``, and every audio and video input is then silently
dropped. This module provides what verl expects of a multimodal processor, for Omni:

- ``get_rope_index``: the thinker's own TMRoPE position computation, bound to the processor the
  way verl binds ``Qwen2VLModel.get_rope_index`` for Qwen-VL;
- ``get_rope_index_kwargs(multi_modal_inputs)``: verl's hook for model-specific RoPE inputs, here
  ``use_audio_in_video``, ``audio_seqlens`` and ``second_per_grids``;
- :class:`OmniProcessor`, a ``Qwen2_5OmniProcessor`` that records ``use_audio_in_video`` in its
  output, so the flag travels with the features it shaped (verl hands ``get_rope_index_kwargs``
  only the features). The hook pops it again before verl stores the features.
"""

from __future__ import annotations

import types
from typing import Any

import torch
from transformers import Qwen2_5OmniProcessor

#: Key under which :class:`OmniProcessor` records the input mode in its output.
USE_AUDIO_IN_VIDEO_KEY = "use_audio_in_video"
QWEN2_5_OMNI_MODEL_TYPES = ("qwen2_5_omni", "qwen2_5_omni_thinker")
#: Both Omni families (Qwen3-Omni: :mod:`verl_avconfuse.omni.qwen3_omni`).
OMNI_MODEL_TYPES = QWEN2_5_OMNI_MODEL_TYPES + ("qwen3_omni_moe", "qwen3_omni_moe_thinker")


class OmniProcessorMixin:
    """What verl needs of either Omni processor (Qwen2.5-Omni's and Qwen3-Omni's): the output records
    which input mode produced it, and ``image_token_id`` / ``video_token_id`` / ``audio_token_id`` exist,
    which verl reads directly in places (e.g. ``qwen2_5_vl_dedup_image_tokens`` on the vLLM path).
    """

    @property
    def image_token_id(self) -> int:
        return self.tokenizer.convert_tokens_to_ids(self.image_token)

    @property
    def video_token_id(self) -> int:
        return self.tokenizer.convert_tokens_to_ids(self.video_token)

    @property
    def audio_token_id(self) -> int:
        return self.tokenizer.convert_tokens_to_ids(self.audio_token)

    def __call__(self, *args, **kwargs):
        use_audio_in_video = bool(kwargs.get("use_audio_in_video", False))
        videos_kwargs = kwargs.get("videos_kwargs") or {}
        use_audio_in_video = bool(videos_kwargs.get("use_audio_in_video", use_audio_in_video))
        outputs = super().__call__(*args, **kwargs)
        outputs[USE_AUDIO_IN_VIDEO_KEY] = torch.tensor([use_audio_in_video])
        return outputs


class OmniProcessor(OmniProcessorMixin, Qwen2_5OmniProcessor):
    """``Qwen2_5OmniProcessor`` whose output says which input mode produced it.

    It also exposes ``image_token_id`` / ``video_token_id`` / ``audio_token_id``, which verl reads
    directly in places (e.g. ``qwen2_5_vl_dedup_image_tokens`` on the vLLM path).
    """


def thinker_config(config):
    """The thinker config of a full Omni config, or the config itself for a thinker-only checkpoint."""
    return getattr(config, "thinker_config", config)


def omni_rope_index_kwargs(multi_modal_inputs: dict[str, Any]) -> dict[str, Any]:
    """verl's ``get_rope_index_kwargs`` hook: the TMRoPE inputs Qwen-VL does not have.

    Pops the input-mode flag so it is not stored with the features (verl stores this very dict).
    """
    flag = multi_modal_inputs.pop(USE_AUDIO_IN_VIDEO_KEY, None)
    kwargs: dict[str, Any] = {"use_audio_in_video": bool(flag.any()) if torch.is_tensor(flag) else bool(flag)}
    mask = multi_modal_inputs.get("feature_attention_mask")
    if mask is not None:
        kwargs["audio_seqlens"] = mask.sum(-1)
    seconds = multi_modal_inputs.get("video_second_per_grid")
    if seconds is not None:
        kwargs["second_per_grids"] = torch.as_tensor(seconds, dtype=torch.float32).reshape(-1)
    return kwargs


class _ThinkerRopeIndex:
    """Carries what the thinker's ``get_rope_index`` reads from ``self``, without the model.

    The method and its two helpers are the thinker's own (one TMRoPE implementation, not a copy).
    They are not bound onto the processor itself: ``Qwen2_5OmniProcessor`` has a
    ``get_chunked_index`` of its own, with another signature, that its ``__call__`` relies on.
    """

    def __init__(self, thinker_config):
        from transformers.models.qwen2_5_omni.modeling_qwen2_5_omni import (
            Qwen2_5OmniPreTrainedModelForConditionalGeneration as Thinker,
        )

        self.config = thinker_config
        self.spatial_merge_size = thinker_config.vision_config.spatial_merge_size
        for name in ("get_rope_index", "get_llm_pos_ids_for_vision", "get_chunked_index"):
            setattr(self, name, types.MethodType(getattr(Thinker, name), self))


def prepare_omni_processor(processor, config) -> Any:
    """Attach TMRoPE (``get_rope_index``) and its inputs hook to an Omni processor, verl-style."""
    thinker = thinker_config(config)
    processor.config = thinker
    processor.get_rope_index = _ThinkerRopeIndex(thinker).get_rope_index
    processor.get_rope_index_kwargs = omni_rope_index_kwargs
    return processor


def load_omni_processor(name_or_path: str, **kwargs):
    """Load the processor of a thinker-only or full Omni checkpoint (either family), ready for verl."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(name_or_path, trust_remote_code=kwargs.get("trust_remote_code", False))
    from verl_avconfuse.omni import qwen3_omni

    if config.model_type in qwen3_omni.MODEL_TYPES:
        processor = qwen3_omni.Qwen3OmniProcessor.from_pretrained(name_or_path, **kwargs)
        return qwen3_omni.prepare_qwen3_omni_processor(processor, config)
    processor = OmniProcessor.from_pretrained(name_or_path, **kwargs)
    return prepare_omni_processor(processor, config)


def is_omni_checkpoint(name_or_path: str) -> bool:
    """Whether a local model directory holds a Qwen2.5-Omni or Qwen3-Omni (full or thinker-only) config."""
    import json
    import os

    config_file = os.path.join(name_or_path, "config.json")
    if not os.path.isfile(config_file):
        return False
    with open(config_file) as f:
        return json.load(f).get("model_type") in OMNI_MODEL_TYPES
