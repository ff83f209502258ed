"""The Qwen3-Omni (MoE) rollout contract, checked against vLLM 0.24.0 itself (CPU build).

As tests/test_vllm_engine_qwen2_5_omni.py, for the tiny Qwen3-Omni thinker (MoE experts, DeepStack vision,
13 positions per second): vLLM's input processor must turn our request into the actor's prompt and features,
its model must give transformers' TMRoPE positions (``patches.QWEN3_OMNI_MROPE``) and the actor's log-probs,
and the synced weights must reach every vLLM parameter.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from vllm_engine import (
    batch_log_prob_gaps,
    engine_request,
    feature,
    hf_prompt_log_probs,
    hf_rope_positions,
    make_llm,
    media_case,
    unpatched_embedding_merge,
    vllm_model,
    vllm_prompt_log_probs,
)

pytestmark = pytest.mark.vllm

CHAT = "<|im_start|>user\n{media}What plays?<|im_end|>\n<|im_start|>assistant\n"
SEPARATE = CHAT.format(media="<|vision_start|><|video_pad|><|vision_end|><|audio_start|><|audio_pad|><|audio_end|>")
IN_VIDEO = CHAT.format(media="<|vision_start|><|video_pad|><|vision_end|>")
#: (name, prompt, frames, fps, audio seconds, use_audio_in_video)
SHAPES = [
    ("separate-2fps", SEPARATE, 8, 2.0, 3.0, False),
    ("in-video-2fps", IN_VIDEO, 8, 2.0, 3.0, True),
    ("in-video-1fps-leftover", IN_VIDEO, 8, 1.0, 9.0, True),
]
IDS = [shape[0] for shape in SHAPES]


@pytest.fixture(scope="module")
def thinker_dir(tiny_asset):
    return tiny_asset("models/qwen3_omni_thinker")


@pytest.fixture(scope="module")
def processor(thinker_dir):
    from verl_avconfuse.omni.processor import load_omni_processor

    return load_omni_processor(thinker_dir)


@pytest.fixture(scope="module")
def hf_thinker(thinker_dir):
    from transformers import Qwen3OmniMoeThinkerForConditionalGeneration

    return Qwen3OmniMoeThinkerForConditionalGeneration.from_pretrained(thinker_dir, dtype=torch.float32).eval()


@pytest.fixture(scope="module")
def llm(thinker_dir):
    engine = make_llm(thinker_dir)
    yield engine
    del engine


@pytest.mark.parametrize(("name", "prompt", "n_frames", "fps", "seconds", "in_video"), SHAPES, ids=IDS)
def test_vllm_expands_our_request_into_the_actors_prompt_and_features(
    llm, processor, name, prompt, n_frames, fps, seconds, in_video
):
    actor, request = media_case(processor, prompt, n_frames, fps, seconds, in_video)
    core = engine_request(llm, request)
    assert core.prompt_token_ids == actor["input_ids"][0].tolist()
    assert torch.equal(feature(core, "video", "pixel_values_videos"), actor["pixel_values_videos"])
    assert torch.equal(feature(core, "video", "video_grid_thw"), actor["video_grid_thw"][0])
    frames = int(actor["feature_attention_mask"][0].sum())
    assert frames == int(seconds * 100) == int(feature(core, "audio", "audio_feature_lengths"))
    assert torch.equal(
        feature(core, "audio", "input_audio_features")[:, :frames], actor["input_features"][0][:, :frames]
    )


@pytest.mark.parametrize(("name", "prompt", "n_frames", "fps", "seconds", "in_video"), SHAPES, ids=IDS)
def test_patched_vllm_positions_are_transformers_tmrope(llm, processor, name, prompt, n_frames, fps, seconds, in_video):
    """vLLM 0.24.0's own method puts every video one token late (and after an in-video body two low)."""
    from vllm.model_executor.models.qwen3_omni_moe_thinker import (
        Qwen3OmniMoeThinkerForConditionalGeneration as Thinker,
    )

    actor, request = media_case(processor, prompt, n_frames, fps, seconds, in_video)
    core = engine_request(llm, request)
    model = vllm_model(llm)
    expected = hf_rope_positions(processor, actor)
    positions, delta = model.get_mrope_input_positions(core.prompt_token_ids, core.mm_features)
    assert torch.equal(positions, expected)
    assert delta == int(expected.max()) + 1 - expected.shape[1]
    unpatched, _ = Thinker.get_mrope_input_positions.__wrapped__(model, core.prompt_token_ids, core.mm_features)
    assert int((unpatched != expected).any(0).sum()) > 0


@pytest.mark.parametrize(("name", "prompt", "n_frames", "fps", "seconds", "in_video"), SHAPES, ids=IDS)
def test_one_request_gets_the_actors_log_probs(
    llm, processor, hf_thinker, name, prompt, n_frames, fps, seconds, in_video
):
    from vllm import SamplingParams

    actor, request = media_case(processor, prompt, n_frames, fps, seconds, in_video, seed=1)
    output = llm.generate([request], SamplingParams(max_tokens=1, prompt_logprobs=0))[0]
    gap = np.abs(vllm_prompt_log_probs(output) - hf_prompt_log_probs(hf_thinker, actor))
    assert gap.mean() < 1e-4 and gap.max() < 1e-3, (gap.mean(), gap.max())


def test_two_audio_in_video_clips_in_one_batch_get_the_actors_log_probs(llm, processor, hf_thinker):
    """As for Qwen2.5-Omni: vLLM 0.24.0's merge breaks with two in-video regions in a step (DeepStack too)."""
    cases = [
        media_case(processor, IN_VIDEO, 8, 2.0, 3.0, True, seed=1, freq=330.0),
        media_case(processor, IN_VIDEO, 8, 1.0, 9.0, True, seed=2, freq=660.0),
    ]

    for gap in batch_log_prob_gaps(llm, hf_thinker, cases):
        assert gap.mean() < 1e-4 and gap.max() < 1e-3, (gap.mean(), gap.max())
    with unpatched_embedding_merge("qwen3_omni_moe_thinker", "Qwen3OmniMoeThinkerForConditionalGeneration"):
        unpatched = batch_log_prob_gaps(llm, hf_thinker, cases)
    assert all(gap.mean() > 0.1 for gap in unpatched), [gap.mean() for gap in unpatched]


def test_every_vllm_parameter_receives_the_actors_weights(llm, hf_thinker):
    """The rollout's names (experts one tensor each, fused ones split) onto vLLM's real loader, every parameter."""
    from vllm.model_executor.model_loader.reload import finalize_layerwise_reload, initialize_layerwise_reload

    from verl_avconfuse.integration.rollout.vllm_weights import vllm_thinker_weights

    state = hf_thinker.state_dict()

    def sync(model):
        names = {name for name, _ in model.named_parameters()}
        initialize_layerwise_reload(model)
        loaded = model.load_weights([(n, t.clone()) for n, t in vllm_thinker_weights(state)])
        finalize_layerwise_reload(model, llm.llm_engine.vllm_config.model_config)
        return names, set(loaded)

    names, loaded = llm.apply_model(sync)[0]
    assert names == loaded
