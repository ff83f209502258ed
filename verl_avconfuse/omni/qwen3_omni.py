"""The Qwen3-Omni (MoE) thinker as the policy: its processor and TMRoPE in verl's multimodal path.

verl 0.9.1 has no Qwen3-Omni case anywhere (no processor binding, no ``get_rope_index`` dispatch), as for
Qwen2.5-Omni; :func:`verl_avconfuse.omni.processor.load_omni_processor` dispatches here by ``model_type``.
What differs from Qwen2.5-Omni, and why it matters here:

- the media tokens are Qwen3's (``<|audio_pad|>``, ``<|vision_start|>``, ...; see :data:`TOKEN_ATTRIBUTES`):
  code that looks tokens up by Qwen2.5-Omni's strings finds none of them;
- ``get_rope_index`` returns *float* position ids (Qwen2.5-Omni: long), time advances
  ``position_id_per_seconds`` (13 in the released checkpoints) per second, and the audio encoder gives 13
  tokens per second (per 100 mel frames), not 25;
- the processor assumes 1 fps when not told (Qwen2.5-Omni: 2), so ``fps`` must reach it;
- the language model is a sparse MoE (``mlp.experts.gate_up_proj`` fused in memory, one tensor per expert
  on disk) with DeepStack: vision features are also added to the first decoder layers' hidden states.

The processor is used the same way in both input modes (audio as its own item; audio interleaved in the
video), and :class:`Qwen3OmniProcessor` records the mode in its output as :class:`OmniProcessor` does.
"""

from __future__ import annotations

from transformers import Qwen3OmniMoeProcessor

from verl_avconfuse.omni.thinker import OmniProcessorMixin, prepare_processor, thinker_config

FULL_MODEL_TYPE = "qwen3_omni_moe"
THINKER_MODEL_TYPE = "qwen3_omni_moe_thinker"
THINKER_ARCHITECTURE = "Qwen3OmniMoeThinkerForConditionalGeneration"
MODEL_TYPES = (FULL_MODEL_TYPE, THINKER_MODEL_TYPE)

#: The processor attributes naming each media token (both Omni processors have all seven).
TOKEN_ATTRIBUTES = {
    "audio": "audio_token",
    "image": "image_token",
    "video": "video_token",
    "audio_bos": "audio_bos_token",
    "audio_eos": "audio_eos_token",
    "vision_bos": "vision_bos_token",
    "vision_eos": "vision_eos_token",
}


class Qwen3OmniProcessor(OmniProcessorMixin, Qwen3OmniMoeProcessor):
    """``Qwen3OmniMoeProcessor`` whose output records ``use_audio_in_video`` (see :class:`OmniProcessor`)."""


def check_time_base(processor, thinker_config) -> None:
    """The processor's and the thinker's ``position_id_per_seconds`` must agree.

    With audio in the video the processor orders the interleaved ``<|video_pad|>`` / ``<|audio_pad|>`` run by
    time at its rate (default 13) and ``get_rope_index`` assigns positions at the config's (transformers
    default 25): with two rates the positions land on the wrong tokens, silently.
    """
    from transformers.models.qwen3_omni_moe.processing_qwen3_omni_moe import Qwen3OmniMoeProcessorKwargs

    processor_rate = float(Qwen3OmniMoeProcessorKwargs._defaults["videos_kwargs"]["position_id_per_seconds"])
    config_rate = float(thinker_config.position_id_per_seconds)
    if processor_rate != config_rate:
        raise ValueError(
            f"Qwen3-Omni: the thinker config's position_id_per_seconds={config_rate:g} differs from the "
            f"processor's {processor_rate:g}; audio-in-video positions would be assigned to the wrong tokens. "
            "The released checkpoints use 13; set thinker_config.position_id_per_seconds accordingly"
        )


def prepare_qwen3_omni_processor(processor, config):
    """Attach the thinker's ``get_rope_index`` and the RoPE-inputs hook to a Qwen3-Omni processor."""
    check_time_base(processor, thinker_config(config))
    return prepare_processor(processor, config)


def parameter_counts(config) -> dict[str, int]:
    """Parameters per component of a Qwen3-Omni model, full or thinker-only, built on the meta device.

    ``config``: a full (``qwen3_omni_moe``) or thinker-only (``qwen3_omni_moe_thinker``) config dict. Keys as
    :func:`verl_avconfuse.omni.checkpoint.parameter_counts` (``thinker.audio_tower``, ``thinker.visual``,
    ``thinker.language_model``, ``thinker``, ``talker``, ``total``), ``code2wav`` for the vocoder (0 for a
    thinker-only config), and ``thinker.language_model.active``: the language model's parameters one token
    uses, with ``num_experts_per_tok`` of ``num_experts`` experts per layer (embeddings and lm_head included,
    as in the released "A3B").
    """
    import torch
    from transformers import (
        Qwen3OmniMoeConfig,
        Qwen3OmniMoeForConditionalGeneration,
        Qwen3OmniMoeThinkerConfig,
        Qwen3OmniMoeThinkerForConditionalGeneration,
    )

    config = {k: v for k, v in config.items() if not k.startswith("_")}
    full = config.get("model_type") == FULL_MODEL_TYPE
    with torch.device("meta"):
        if full:
            model = Qwen3OmniMoeForConditionalGeneration(Qwen3OmniMoeConfig(**config))
            thinker = model.thinker
        else:
            thinker = model = Qwen3OmniMoeThinkerForConditionalGeneration(Qwen3OmniMoeThinkerConfig(**config))

    def count(module) -> int:
        return sum(p.numel() for p in module.parameters())

    counts = {
        "thinker.audio_tower": count(thinker.audio_tower),
        "thinker.visual": count(thinker.visual),
        "thinker": count(thinker),
    }
    counts["thinker.language_model"] = counts["thinker"] - counts["thinker.audio_tower"] - counts["thinker.visual"]
    text = thinker.config.text_config
    experts = sum(p.numel() for name, p in thinker.model.named_parameters() if ".mlp.experts." in name)
    inactive = experts * (text.num_experts - text.num_experts_per_tok) // text.num_experts
    counts["thinker.language_model.active"] = counts["thinker.language_model"] - inactive
    counts["talker"] = count(model.talker) if full and getattr(model, "talker", None) is not None else 0
    counts["code2wav"] = count(model.code2wav) if full and getattr(model, "code2wav", None) is not None else 0
    counts["total"] = count(model)
    return counts
