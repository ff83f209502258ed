"""What both Omni thinkers (Qwen2.5-Omni and Qwen3-Omni) need in verl's multimodal path.

The family modules (:mod:`verl_avconfuse.omni.processor` for Qwen2.5-Omni and the dispatch by ``model_type``,
:mod:`verl_avconfuse.omni.qwen3_omni`) build on this one; it imports neither.

- :class:`OmniProcessorMixin`: the processor's output records the input mode; the token ids verl reads;
- :class:`ThinkerRopeIndex`: the thinker's own ``get_rope_index`` (TMRoPE) without the model, for either family;
- :func:`prepare_processor`: binds both onto a processor, verl-style.
"""

from __future__ import annotations

import types
from typing import Any

import torch

#: Key under which :class:`OmniProcessorMixin` records the input mode in its output.
USE_AUDIO_IN_VIDEO_KEY = "use_audio_in_video"


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


class ThinkerRopeIndex:
    """Carries what the thinker's ``get_rope_index`` reads from ``self``, without the model.

    The method and its two helpers are the thinker's own (one TMRoPE implementation per family, not a copy),
    taken from the family's pretrained-model class by the thinker config's ``model_type``. They are not bound
    onto the processor itself: both Omni processors have a ``get_chunked_index`` of their own, with another
    signature, that their ``__call__`` relies on.
    """

    def __init__(self, thinker_config):
        if str(getattr(thinker_config, "model_type", "")).startswith("qwen3_omni"):
            from transformers.models.qwen3_omni_moe.modeling_qwen3_omni_moe import (
                Qwen3OmniMoePreTrainedModelForConditionalGeneration as Thinker,
            )
        else:
            from transformers.models.qwen2_5_omni.modeling_qwen2_5_omni import (
                Qwen2_5OmniPreTrainedModelForConditionalGeneration as Thinker,
            )

        self.config = thinker_config
        self.spatial_merge_size = thinker_config.vision_config.spatial_merge_size
        for name in ("get_rope_index", "get_llm_pos_ids_for_vision", "get_chunked_index"):
            setattr(self, name, types.MethodType(getattr(Thinker, name), self))


def prepare_processor(processor, config) -> Any:
    """Attach TMRoPE (``get_rope_index``) and its inputs hook to an Omni processor (either family), verl-style."""
    thinker = thinker_config(config)
    processor.config = thinker
    processor.get_rope_index = ThinkerRopeIndex(thinker).get_rope_index
    processor.get_rope_index_kwargs = omni_rope_index_kwargs
    return processor
