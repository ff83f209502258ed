"""The Qwen2.5-Omni rollout contract, checked against vLLM 0.24.0 itself (CPU build), not a model of it.

One in-process engine on the tiny thinker directory (loaded from disk: the thinker-only names go through
``patches.QWEN2_5_OMNI_THINKER_NAMES``). For each request shape the actor meets -- audio and video as separate
items, audio inside the video at 2 fps and at 1 fps (several 2 s chunks, leftover audio), two audios and an
image -- the request ``build_omni_prompt`` makes from the actor's expanded ids must come out of vLLM's input
processor as exactly the actor's prompt, with exactly the actor's processor features, and vLLM's model must
put every token at transformers' TMRoPE position and give it transformers' log-probability.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from vllm_engine import (
    ENGINE_ENV,
    actor_inputs,
    batch_log_prob_gaps,
    engine_request,
    feature,
    hf_prompt_log_probs,
    hf_rope_positions,
    make_llm,
    media_case,
    tone,
    unpatched_embedding_merge,
    vllm_model,
    vllm_prompt_log_probs,
)

from verl_avconfuse.omni.vllm_contract import OmniTokenIds, build_omni_prompt

from conftest import run_python

pytestmark = pytest.mark.vllm

CHAT = "<|im_start|>user\n{media}What plays?<|im_end|>\n<|im_start|>assistant\n"
SEPARATE = CHAT.format(media="<|vision_bos|><|VIDEO|><|vision_eos|><|audio_bos|><|AUDIO|><|audio_eos|>")
IN_VIDEO = CHAT.format(media="<|vision_bos|><|VIDEO|><|vision_eos|>")
#: (name, prompt, frames, fps, audio seconds, use_audio_in_video)
SHAPES = [
    ("separate-2fps", SEPARATE, 8, 2.0, 3.0, False),
    ("in-video-2fps", IN_VIDEO, 8, 2.0, 3.0, True),
    # 8 frames at 1 fps: 4 grids of 2 s, one per chunk; 9 s of audio: a 1 s tail after the last chunk
    ("in-video-1fps-leftover", IN_VIDEO, 8, 1.0, 9.0, True),
]


@pytest.fixture(scope="module")
def thinker_dir(tiny_asset):
    return tiny_asset("models/omni_thinker")


@pytest.fixture(scope="module")
def processor(thinker_dir):
    from verl_avconfuse.omni.processor import load_omni_processor

    return load_omni_processor(thinker_dir)


@pytest.fixture(scope="module")
def hf_thinker(thinker_dir):
    from transformers import Qwen2_5OmniThinkerForConditionalGeneration

    return Qwen2_5OmniThinkerForConditionalGeneration.from_pretrained(thinker_dir, dtype=torch.float32).eval()


@pytest.fixture(scope="module")
def llm(thinker_dir):
    engine = make_llm(thinker_dir)
    yield engine
    del engine


@pytest.mark.parametrize(
    ("name", "prompt", "n_frames", "fps", "seconds", "in_video"), SHAPES, ids=[s[0] for s in SHAPES]
)
def test_vllm_expands_our_request_into_the_actors_prompt_and_features(
    llm, processor, name, prompt, n_frames, fps, seconds, in_video
):
    actor, request = media_case(processor, prompt, n_frames, fps, seconds, in_video)
    core = engine_request(llm, request)
    assert core.prompt_token_ids == actor["input_ids"][0].tolist()
    assert torch.equal(feature(core, "video", "pixel_values_videos"), actor["pixel_values_videos"])
    assert torch.equal(feature(core, "video", "video_grid_thw"), actor["video_grid_thw"][0])
    assert float(feature(core, "video", "second_per_grid_ts")) == pytest.approx(2.0 / fps)
    # vLLM keeps the valid mel frames only (the actor's processor pads every clip to 30 s, with a mask)
    frames = int(actor["feature_attention_mask"][0].sum())
    assert frames == int(seconds * 100) == int(feature(core, "audio", "audio_feature_lengths"))
    assert torch.equal(feature(core, "audio", "input_audio_features"), actor["input_features"][0][:, :frames])


def test_vllm_expands_two_audios_and_an_image(llm, processor):
    from PIL import Image

    a1, a2 = tone(1.0, 300), tone(0.6, 600)
    image = Image.fromarray(np.random.default_rng(3).integers(0, 255, (56, 56, 3), dtype=np.uint8))
    text = CHAT.format(
        media="<|audio_bos|><|AUDIO|><|audio_eos|>then<|vision_bos|><|IMAGE|><|vision_eos|>"
        "and<|audio_bos|><|AUDIO|><|audio_eos|>"
    )
    actor = actor_inputs(processor, text, images=[image], audios=[a1, a2])
    request = build_omni_prompt(
        actor["input_ids"][0].tolist(),
        token_ids=OmniTokenIds.from_tokenizer(processor),
        audio_data=[a1, a2],
        image_data=[image],
        use_audio_in_video=False,
    )
    core = engine_request(llm, request)
    assert core.prompt_token_ids == actor["input_ids"][0].tolist()
    assert torch.equal(feature(core, "image", "image_grid_thw"), actor["image_grid_thw"][0])
    # 1.0 s and 0.6 s of audio: 100 and 60 mel frames
    assert [int(feature(core, "audio", "audio_feature_lengths", i)) for i in (0, 1)] == [100, 60]


@pytest.mark.parametrize(
    ("name", "prompt", "n_frames", "fps", "seconds", "in_video"), SHAPES, ids=[s[0] for s in SHAPES]
)
def test_patched_vllm_positions_are_transformers_tmrope(llm, processor, name, prompt, n_frames, fps, seconds, in_video):
    """The installed patch gives transformers' positions; vLLM 0.24.0's own method does not with audio in video."""
    from vllm.model_executor.models.qwen2_5_omni_thinker import Qwen2_5OmniThinkerForConditionalGeneration as Thinker

    actor, request = media_case(processor, prompt, n_frames, fps, seconds, in_video)
    core = engine_request(llm, request)
    model = vllm_model(llm)
    expected = hf_rope_positions(processor, actor)
    positions, delta = model.get_mrope_input_positions(core.prompt_token_ids, core.mm_features)
    assert torch.equal(positions, expected)
    assert delta == int(expected.max()) + 1 - expected.shape[1]

    assert getattr(Thinker.get_mrope_input_positions, "_avconfuse_patched", False)
    unpatched, _ = Thinker.get_mrope_input_positions.__wrapped__(model, core.prompt_token_ids, core.mm_features)
    differing = int((unpatched != expected).any(0).sum())
    if in_video:
        # vLLM 0.24.0: one position per delimiter where transformers shares one per pair (docs/vllm_omni.md)
        assert differing > expected.shape[1] // 2, differing
    else:
        assert differing == 0


def test_two_audio_in_video_clips_in_one_batch_get_the_actors_log_probs(llm, processor, hf_thinker):
    """Train-rollout parity as a number: vLLM's prompt log-probs vs the actor's forward, two clips in one step.

    Without ``patches.QWEN2_5_OMNI_EMBED`` vLLM 0.24.0 scatters the second region's video embeddings onto
    audio tokens (its interleaving test sees one span for the whole step): the gap is then ~1 nat per token.
    """
    cases = [
        media_case(processor, IN_VIDEO, 8, 2.0, 3.0, True, seed=1, freq=330.0),
        media_case(processor, IN_VIDEO, 8, 1.0, 9.0, True, seed=2, freq=660.0),
    ]
    for gap in batch_log_prob_gaps(llm, hf_thinker, cases):
        assert gap.mean() < 1e-4 and gap.max() < 1e-3, (gap.mean(), gap.max())

    with unpatched_embedding_merge("qwen2_5_omni_thinker", "Qwen2_5OmniThinkerForConditionalGeneration"):
        unpatched = batch_log_prob_gaps(llm, hf_thinker, cases)
    assert all(gap.mean() > 0.1 for gap in unpatched), [gap.mean() for gap in unpatched]


def test_every_vllm_parameter_receives_the_actors_weights_once(llm, processor, hf_thinker):
    """The rollout's sync path (names, layerwise reload) on the real loader, with weights vLLM does not have yet.

    The actor's state dict, perturbed so it differs from what vLLM loaded from disk, goes through
    ``vllm_thinker_weights`` and vLLM's layerwise reload as ``OmniVLLMWorkerExtension`` sends it; afterwards
    every vLLM parameter was written and vLLM's log-probs are the perturbed actor's.
    """
    from vllm import SamplingParams
    from vllm.model_executor.model_loader.reload import finalize_layerwise_reload, initialize_layerwise_reload

    from verl_avconfuse.integration.rollout.vllm_weights import vllm_thinker_weights

    generator = torch.Generator().manual_seed(0)
    perturbed = {
        name: tensor + 0.05 * torch.randn(tensor.shape, generator=generator)
        for name, tensor in hf_thinker.state_dict().items()
    }
    actor, request = media_case(processor, IN_VIDEO, 8, 2.0, 3.0, True, seed=4)
    before = vllm_prompt_log_probs(llm.generate([request], SamplingParams(max_tokens=1, prompt_logprobs=0))[0])

    def sync(model):
        names = {name for name, _ in model.named_parameters()}
        initialize_layerwise_reload(model)
        loaded = model.load_weights([(n, t.clone()) for n, t in vllm_thinker_weights(perturbed)])
        finalize_layerwise_reload(model, llm.llm_engine.vllm_config.model_config)
        return names, set(loaded)

    names, loaded = llm.apply_model(sync)[0]
    llm.llm_engine.reset_encoder_cache()  # as OmniVLLMWorkerExtension does after a sync
    assert names == loaded
    original = {name: tensor.clone() for name, tensor in hf_thinker.state_dict().items()}
    hf_thinker.load_state_dict(perturbed)
    try:
        after = vllm_prompt_log_probs(llm.generate([request], SamplingParams(max_tokens=1, prompt_logprobs=0))[0])
        expected = hf_prompt_log_probs(hf_thinker, actor)
    finally:
        hf_thinker.load_state_dict(original)
    assert np.abs(after - expected).mean() < 1e-4
    assert np.abs(before - expected).mean() > 1e-2  # the sync changed what vLLM computes


def test_processor_cache_reuses_a_shared_soundtrack_and_fails_the_next_clip(thinker_dir, processor):
    """Why the rollout turns vLLM's multimodal processor cache off (vllm_server.MM_PROCESSOR_CACHE_GB).

    Two clips with byte-identical soundtracks and different pictures, audio inside the video: with the cache
    on, the second request's audio is a cache hit, its video alone reaches the HF processor, which refuses
    it. vLLM's own input processor is enough to show it.
    """
    # Real weights, not load_format="dummy": vLLM 0.24.0 shares one rotary-embedding module between all the engines
    # of a process (get_rope's cache), and after a layerwise reload (the weight-sync test above) its dummy loader
    # fills that module's cos/sin cache with dummy values too, breaking the positions of every later engine in
    # the worker (the eval backends' tests then failed). One engine per process, as verl runs it, never meets it.
    llm_cached = make_llm(thinker_dir, mm_processor_cache_gb=1)
    first = media_case(processor, IN_VIDEO, 8, 2.0, 3.0, True, seed=5)[1]
    second = media_case(processor, IN_VIDEO, 8, 2.0, 3.0, True, seed=6)[1]
    engine_request(llm_cached, first, "a")
    with pytest.raises(ValueError, match="Failed to apply Qwen2_5OmniProcessor"):
        engine_request(llm_cached, second, "b")


#: Run in a process of its own: it breaks the rotary cache of every engine in the process (that is the point).
SHARED_ROPE_SCRIPT = """
import json, sys
import torch
from vllm import SamplingParams
from vllm.model_executor.model_loader.reload import finalize_layerwise_reload, initialize_layerwise_reload
from vllm_engine import make_llm, vllm_model

thinker = sys.argv[1]
prompt = {"prompt": "<|im_start|>user\\nIs there a trumpet sound?<|im_end|>\\n<|im_start|>assistant\\n"}
greedy = SamplingParams(max_tokens=16, temperature=0.0)
rope = lambda llm: vllm_model(llm).language_model.model.layers[0].self_attn.rotary_emb
synced = make_llm(thinker)
fresh_text = synced.generate([prompt], greedy)[0].outputs[0].text
cache_before = float(rope(synced).cos_sin_cache.abs().max())

def sync(model):  # the rollout's layerwise reload, with the weights the engine already has
    weights = [(name, tensor.detach().clone()) for name, tensor in model.named_parameters() if tensor.numel()]
    initialize_layerwise_reload(model)
    model.load_weights(weights)
    finalize_layerwise_reload(model, synced.llm_engine.vllm_config.model_config)

synced.apply_model(sync)
dummy = make_llm(thinker, load_format="dummy")
late = make_llm(thinker)
print(json.dumps({
    "shared": rope(synced) is rope(dummy) is rope(late),
    "cache_before": cache_before,
    "cache_after": float(rope(late).cos_sin_cache.abs().max()),
    "fresh_text": fresh_text,
    "late_text": late.generate([prompt], greedy)[0].outputs[0].text,
}))
"""


def test_a_dummy_engine_after_a_sync_rewrites_the_rotary_cache_all_engines_share(thinker_dir, tmp_path):
    """vLLM 0.24.0 (docs/vllm_omni.md, "For upstream"): why the lane's engines never load dummy weights.

    ``get_rope`` shares one rotary module between a process's engines; after a layerwise reload on one engine,
    a second built with ``load_format="dummy"`` fills that module's cos/sin cache with dummy values, and a third
    engine on real weights then answers with broken positions. When a vLLM upgrade fixes it, this fails: the
    processor-cache test above may then go back to dummy weights.
    """
    script = tmp_path / "shared_rope.py"
    script.write_text(SHARED_ROPE_SCRIPT)
    env = {**ENGINE_ENV, "PYTHONPATH": str(Path(__file__).parent)}  # the script imports vllm_engine
    result = run_python([str(script), thinker_dir], cwd=tmp_path, env=env)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    facts = json.loads(result.stdout.strip().splitlines()[-1])
    assert facts["shared"]
    assert facts["cache_before"] > 0.9  # cos and sin reach 1
    assert facts["cache_after"] <= 1e-3  # vLLM's dummy weights: uniform in [-1e-3, 1e-3]
    assert facts["fresh_text"] == "<a-think>\n<answer> yes </answer>"  # the tiny thinker's greedy reply
    assert facts["late_text"] != facts["fresh_text"]
