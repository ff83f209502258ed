"""TMRoPE and rollout -> actor consistency for the Omni thinker, in both input modes.

The position ids verl's agent loop computes (``AgentLoopWorker._compute_position_ids``, through the
processor's bound ``get_rope_index``) must be the ones the HF thinker computes inside its own
forward, and the log-probs the hf rollout returns must be what a training forward with those
position ids gives, batched and right-padded as verl's actor does.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
import torch
from omegaconf import OmegaConf

from verl_avconfuse.integration.omni_dataset import OmniRLDataset

MODES = [pytest.param(False, id="audio-as-item"), pytest.param(True, id="audio-in-video")]


@pytest.fixture(scope="module")
def server(tiny_asset):
    from verl.workers.config import HFModelConfig, RolloutConfig
    from verl.workers.rollout.replica import RolloutMode

    from verl_avconfuse.integration.platform import activate_cpu_platform
    from verl_avconfuse.integration.rollout.hf_server import HFRolloutServer

    activate_cpu_platform()
    model_config = HFModelConfig(
        path=tiny_asset("models/omni_thinker"), override_config={"attn_implementation": "sdpa"}
    )
    config = RolloutConfig(
        name="hf", tensor_model_parallel_size=1, prompt_length=256, response_length=16, dtype="float32"
    )
    return HFRolloutServer(config, model_config, RolloutMode.HYBRID, [], 0, 0, 1, 1, "")


def _request(server, tiny_asset, in_video: bool):
    """One prompt built exactly as the agent loop builds it: messages -> media -> processor."""
    from verl.utils.tokenizer import build_multimodal_processor_inputs

    clip = str(tiny_asset("data/omni/train.parquet")).replace("omni/train.parquet", "omni_media/clip_000_trumpet.mp4")
    content = [{"type": "video", "video": clip}]
    if not in_video:
        content.append({"type": "audio", "audio": clip})
    content.append({"type": "text", "text": "Is there a trumpet sound?"})
    messages = [{"role": "user", "content": content}]
    mm_kwargs = {"fps": 2.0, "use_audio_in_video": in_video, "sampling_rate": 16000}
    data_config = OmegaConf.create({"mm_processor_kwargs": mm_kwargs})
    _, videos, audios = OmniRLDataset._process_multi_modal_info(messages, 14, data_config)
    processor = server.processor
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    inputs = build_multimodal_processor_inputs(
        processor, text=[text], videos=videos, audio=audios, mm_processor_kwargs=mm_kwargs
    )
    return inputs, videos, audios, mm_kwargs


def _verl_position_ids(processor, input_ids, attention_mask, features):
    """verl's own agent-loop code path (it reads nothing from self but the processor)."""
    from verl.experimental.agent_loop.agent_loop import AgentLoopWorker

    worker = SimpleNamespace(processor=processor)
    return AgentLoopWorker._compute_position_ids(worker, input_ids, attention_mask, dict(features))


@pytest.mark.parametrize("in_video", MODES)
def test_verl_position_ids_equal_the_thinkers_own(server, tiny_asset, in_video):
    inputs, *_ = _request(server, tiny_asset, in_video)
    features = {k: v for k, v in inputs.items() if k not in ("input_ids", "attention_mask")}
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    ours = _verl_position_ids(server.processor, ids, mask, features)  # (1, 4, L): text row + 3 TMRoPE rows

    seen = {}

    def capture(module, args, kwargs):
        seen["position_ids"] = kwargs["position_ids"]

    hook = server.model.model.register_forward_pre_hook(capture, with_kwargs=True)
    try:
        model_features = {k: v for k, v in features.items() if k != "use_audio_in_video"}
        with torch.inference_mode():
            server.model(input_ids=ids, attention_mask=mask, use_audio_in_video=in_video, **model_features)
    finally:
        hook.remove()
    theirs = seen["position_ids"]  # (3, 1, L)
    assert torch.equal(ours[0, 1:], theirs[:, 0])
    assert torch.equal(ours[0, 0], torch.arange(ids.shape[1]))
    # TMRoPE really differs from plain positions here (media shift the text positions).
    assert not torch.equal(theirs[0, 0], torch.arange(ids.shape[1]))


@pytest.mark.parametrize("in_video", MODES)
def test_rollout_log_probs_match_a_batched_right_padded_training_forward(server, tiny_asset, in_video):
    inputs, videos, audios, mm_kwargs = _request(server, tiny_asset, in_video)
    prompt_ids = inputs["input_ids"][0].tolist()
    output = asyncio.run(
        server.generate(
            prompt_ids=prompt_ids,
            sampling_params={"temperature": 0.9, "max_tokens": 12, "logprobs": True},
            request_id="r",
            video_data=videos,
            audio_data=audios,
            mm_processor_kwargs=mm_kwargs,
        )
    )
    assert len(output.token_ids) > 0
    sequence = torch.tensor([prompt_ids + output.token_ids])
    features = {k: v for k, v in inputs.items() if k not in ("input_ids", "attention_mask")}
    positions = _verl_position_ids(server.processor, sequence, torch.ones_like(sequence), features)
    features.pop("use_audio_in_video", None)

    # verl's no-rmpad actor: a micro-batch, right padded, (4, B, L) position ids; a text-only neighbour.
    tokenizer = server.tokenizer
    other = tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], add_generation_prompt=True, tokenize=True, return_dict=False
    )
    width = max(sequence.shape[1], len(other))
    ids = torch.full((2, width), tokenizer.pad_token_id)
    mask = torch.zeros((2, width), dtype=torch.long)
    pos = torch.zeros((4, 2, width), dtype=torch.long)
    ids[0, : sequence.shape[1]], mask[0, : sequence.shape[1]], pos[:, 0, : sequence.shape[1]] = (
        sequence[0],
        1,
        positions[0],
    )
    ids[1, : len(other)], mask[1, : len(other)], pos[:, 1, : len(other)] = (
        torch.tensor(other),
        1,
        torch.arange(len(other)),
    )
    with torch.inference_mode():
        logits = server.model(input_ids=ids, attention_mask=mask, position_ids=pos, **features).logits
    start = len(prompt_ids)
    step_logits = logits[0, start - 1 : sequence.shape[1] - 1].float() / 0.9
    actor = torch.log_softmax(step_logits, -1).gather(-1, torch.tensor(output.token_ids)[:, None]).squeeze(-1)
    assert torch.allclose(actor, torch.tensor(output.log_probs), atol=2e-5)
