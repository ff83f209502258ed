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

from typing import Any

from transformers import Qwen2_5OmniProcessor

from verl_avconfuse.omni.thinker import OmniProcessorMixin, prepare_processor

QWEN2_5_OMNI_MODEL_TYPES = ("qwen2_5_omni", "qwen2_5_omni_thinker")
#: Both Omni families (Qwen3-Omni: :mod:`verl_avconfuse.omni.qwen3_omni`).
OMNI_MODEL_TYPES = QWEN2_5_OMNI_MODEL_TYPES + ("qwen3_omni_moe", "qwen3_omni_moe_thinker")


class OmniProcessor(OmniProcessorMixin, Qwen2_5OmniProcessor):
    """``Qwen2_5OmniProcessor`` whose output says which input mode produced it.

    It also exposes ``image_token_id`` / ``video_token_id`` / ``audio_token_id``, which verl reads
    directly in places (e.g. ``qwen2_5_vl_dedup_image_tokens`` on the vLLM path).
    """


def prepare_omni_processor(processor, config) -> Any:
    """Attach TMRoPE (``get_rope_index``) and its inputs hook to an Omni processor, verl-style."""
    return prepare_processor(processor, config)


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
