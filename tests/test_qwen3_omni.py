"""The Qwen3-Omni (MoE) thinker as the policy: tokens, processor, TMRoPE through verl, rollout log-probs.

The tiny Qwen3-Omni thinker (``models/qwen3_omni_thinker``) is the released architecture shrunk: sparse MoE
in every layer, interleaved MRoPE, DeepStack, Qwen3-Omni's own media tokens and processor. As for
Qwen2.5-Omni (tests/test_omni_tmrope.py), the position ids verl's agent loop computes must be the ones the
HF thinker computes inside its own forward, in both input modes, and the hf rollout's log-probs must be
what a batched, right-padded training forward with those position ids gives.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from omegaconf import OmegaConf

from verl_avconfuse.integration.omni_dataset import OmniRLDataset

MODES = [pytest.param(False, id="audio-as-item"), pytest.param(True, id="audio-in-video")]
QUESTION = "Is there a trumpet sound?"


@pytest.fixture(scope="module")
def thinker_dir(tiny_asset) -> str:
    return tiny_asset("models/qwen3_omni_thinker")


@pytest.fixture(scope="module")
def server(thinker_dir):
    from verl.workers.config import HFModelConfig, RolloutConfig
    from verl.workers.rollout.replica import RolloutMode

    from verl_avconfuse.integration.platform import activate_cpu_platform
    from verl_avconfuse.integration.rollout.hf_server import HFRolloutServer

    activate_cpu_platform()
    model_config = HFModelConfig(path=thinker_dir, override_config={"attn_implementation": "sdpa"})
    config = RolloutConfig(
        name="hf", tensor_model_parallel_size=1, prompt_length=256, response_length=16, dtype="float32"
    )
    return HFRolloutServer(config, model_config, RolloutMode.HYBRID, [], 0, 0, 1, 1, "")


def _clip(tiny_asset) -> str:
    data = Path(tiny_asset("data/omni/train.parquet"))
    return str(data.parent.parent / "omni_media" / "clip_000_trumpet.mp4")


def _request(server, tiny_asset, in_video: bool, fps: float = 2.0):
    """One prompt built exactly as the agent loop builds it: messages -> media (PyAV) -> processor."""
    from verl.utils.tokenizer import build_multimodal_processor_inputs

    clip = _clip(tiny_asset)
    content = [{"type": "video", "video": clip}]
    if not in_video:
        content.append({"type": "audio", "audio": clip})
    content.append({"type": "text", "text": QUESTION})
    messages = [{"role": "user", "content": content}]
    mm_kwargs = {"fps": fps, "use_audio_in_video": in_video, "sampling_rate": 16000}
    data_config = OmegaConf.create({"mm_processor_kwargs": mm_kwargs})
    _, videos, audios = OmniRLDataset._process_multi_modal_info(messages, 16, data_config)
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


def _model_position_ids(server, ids, mask, features, in_video):
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
    return seen["position_ids"]  # (3, 1, L)


# ------------------------------------------------------------------------------------------ the asset


def test_the_tiny_thinker_is_qwen3_omni_with_qwen3_omnis_media_tokens(thinker_dir, server):
    from verl_avconfuse.omni.qwen3_omni import Qwen3OmniProcessor
    from verl_avconfuse.omni.vllm_contract import omni_token_ids

    config = json.loads((Path(thinker_dir) / "config.json").read_text())
    assert config["model_type"] == "qwen3_omni_moe_thinker"
    assert config["architectures"] == ["Qwen3OmniMoeThinkerForConditionalGeneration"]
    assert config["position_id_per_seconds"] == 13  # the released checkpoints' value, not transformers' 25
    text = config["text_config"]
    assert (text["num_experts"], text["num_experts_per_tok"]) == (4, 2)
    assert text["rope_parameters"]["mrope_section"] == [6, 5, 5] and text["rope_parameters"]["interleaved"]
    assert type(server.model).__name__ == "Qwen3OmniMoeThinkerForConditionalGeneration"
    assert isinstance(server.processor, Qwen3OmniProcessor)
    tokenizer = server.processor.tokenizer
    ids = omni_token_ids(server.processor)
    strings = {name: tokenizer.convert_ids_to_tokens(getattr(ids, name)) for name in ids.__dataclass_fields__}
    assert strings == {
        "audio": "<|audio_pad|>",
        "image": "<|image_pad|>",
        "video": "<|video_pad|>",
        "audio_bos": "<|audio_start|>",
        "audio_eos": "<|audio_end|>",
        "vision_bos": "<|vision_start|>",
        "vision_eos": "<|vision_end|>",
    }
    assert (config["audio_token_id"], config["video_token_id"]) == (ids.audio, ids.video)
    assert (config["audio_start_token_id"], config["vision_start_token_id"]) == (ids.audio_bos, ids.vision_bos)


def test_the_checkpoint_stores_one_tensor_per_expert_as_the_released_one(thinker_dir, server):
    """On disk: ``mlp.experts.{e}.{gate,up,down}_proj.weight`` (as Qwen3-Omni-30B-A3B's shards); in memory
    transformers fuses them (``experts.gate_up_proj`` (E, 2I, H)), which is what verl's actor trains."""
    from safetensors import safe_open

    with safe_open(str(Path(thinker_dir) / "model.safetensors"), framework="pt") as f:
        stored = sorted(name for name in f.keys() if name.startswith("model.layers.0.mlp."))
    assert stored == sorted(
        [f"model.layers.0.mlp.experts.{e}.{p}_proj.weight" for e in range(4) for p in ("gate", "up", "down")]
        + ["model.layers.0.mlp.gate.weight"]
    )
    params = dict(server.model.named_parameters())
    assert params["model.layers.0.mlp.experts.gate_up_proj"].shape == (4, 2 * 32, 64)
    assert params["model.layers.0.mlp.experts.down_proj"].shape == (4, 64, 32)


def test_a_thinker_config_with_another_time_base_than_the_processor_is_refused(thinker_dir):
    from transformers import AutoConfig

    from verl_avconfuse.omni.qwen3_omni import Qwen3OmniProcessor, prepare_qwen3_omni_processor

    config = AutoConfig.from_pretrained(thinker_dir)
    config.position_id_per_seconds = 25
    with pytest.raises(ValueError, match="position_id_per_seconds=25 differs from the processor's 13"):
        prepare_qwen3_omni_processor(Qwen3OmniProcessor.from_pretrained(thinker_dir), config)


# ------------------------------------------------------------------------------------------- TMRoPE


@pytest.mark.parametrize("in_video", MODES)
def test_verl_position_ids_equal_the_thinkers_own(server, tiny_asset, in_video):
    inputs, *_ = _request(server, tiny_asset, in_video)
    features = {k: v for k, v in inputs.items() if k not in ("input_ids", "attention_mask")}
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    ours = _verl_position_ids(server.processor, ids, mask, features)  # (1, 4, L): text row + 3 TMRoPE rows
    theirs = _model_position_ids(server, ids, mask, features, in_video)
    assert torch.equal(ours[0, 1:], theirs[:, 0])
    assert torch.equal(ours[0, 0].long(), torch.arange(ids.shape[1]))
    assert not torch.equal(theirs[0, 0], torch.arange(ids.shape[1]).to(theirs.dtype))


def test_audio_in_video_positions_advance_13_per_second(server, tiny_asset):
    """Hand-computed layout of the 2 s tiny clip at 2 fps, audio in the video.

    Video: 4 frames -> 2 temporal patches of 2x2 merged tokens (second_per_grid 1.0), times 0 and 13.
    Audio: 2 s = 200 mel frames -> 26 tokens (13 per 100 frames), times 0..25. The processor interleaves by
    time (video first on ties): 4 video, 13 audio (0..12), 4 video (time 13), 13 audio (13..25).
    """
    from verl_avconfuse.omni.vllm_contract import omni_token_ids

    inputs, *_ = _request(server, tiny_asset, in_video=True)
    features = {k: v for k, v in inputs.items() if k not in ("input_ids", "attention_mask")}
    ids = inputs["input_ids"]
    positions = _verl_position_ids(server.processor, ids, inputs["attention_mask"], features)[0, 1:]
    t = omni_token_ids(server.processor)
    row = ids[0].tolist()
    start = row.index(t.vision_bos)
    assert row[start + 1] == t.audio_bos
    body = row[start + 2 : row.index(t.audio_eos)]
    kinds = ["v" if x == t.video else "a" for x in body]
    assert "".join(kinds) == "v" * 4 + "a" * 13 + "v" * 4 + "a" * 13
    origin = positions[0, start + 2]  # first media position: bos_len 2 after the text
    assert torch.equal(positions[0, start : start + 2], torch.stack([origin - 2, origin - 1]))
    media = positions[:, start + 2 : start + 2 + len(body)] - origin
    time = media[0].tolist()
    assert time[:4] == [0, 0, 0, 0] and time[17:21] == [13, 13, 13, 13]
    assert time[4:17] == list(range(13)) and time[21:] == list(range(13, 26))
    # video tokens carry (h, w) of the 2x2 grid, audio tokens the same value on all three rows
    assert media[1, :4].tolist() == [0, 0, 1, 1] and media[2, :4].tolist() == [0, 1, 0, 1]
    audio = [i for i, k in enumerate(kinds) if k == "a"]
    assert torch.equal(media[1, audio], media[0, audio]) and torch.equal(media[2, audio], media[0, audio])


def test_fractional_time_positions_survive_verls_path(server, tiny_asset):
    """At 3 fps a temporal patch lasts 2/3 s = 8.67 position ids: Qwen3-Omni's positions are floats,
    and verl's path must not round them (the model's own forward does not)."""
    inputs, *_ = _request(server, tiny_asset, in_video=False, fps=3.0)
    features = {k: v for k, v in inputs.items() if k not in ("input_ids", "attention_mask")}
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    ours = _verl_position_ids(server.processor, ids, mask, features)
    theirs = _model_position_ids(server, ids, mask, features, False)
    assert ours.dtype == torch.float32
    assert torch.equal(ours[0, 1:], theirs[:, 0])
    video = ids[0] == server.processor.video_token_id
    times = sorted(set(ours[0, 1, video].tolist()))
    assert times[1] - times[0] == pytest.approx(2 / 3 * 13)


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
    pos = torch.zeros((4, 2, width), dtype=positions.dtype)
    n = sequence.shape[1]
    ids[0, :n], mask[0, :n], pos[:, 0, :n] = sequence[0], 1, positions[0]
    ids[1, : len(other)], mask[1, : len(other)] = torch.tensor(other), 1
    pos[:, 1, : len(other)] = torch.arange(len(other)).to(pos.dtype)
    with torch.inference_mode():
        logits = server.model(input_ids=ids, attention_mask=mask, position_ids=pos, **features).logits
    start = len(prompt_ids)
    step_logits = logits[0, start - 1 : n - 1].float() / 0.9
    actor = torch.log_softmax(step_logits, -1).gather(-1, torch.tensor(output.token_ids)[:, None]).squeeze(-1)
    assert torch.allclose(actor, torch.tensor(output.log_probs), atol=2e-5)


def test_the_rollout_never_samples_qwen3_omnis_media_tokens(server):
    from verl_avconfuse.omni.vllm_contract import omni_token_ids

    ids = omni_token_ids(server.processor)
    assert server.banned_token_ids == sorted(
        [ids.audio, ids.image, ids.video, ids.audio_bos, ids.audio_eos, ids.vision_bos, ids.vision_eos]
    )


# --------------------------------------------------------------------------------------- weight sync


def test_verls_per_expert_weight_stream_refills_the_rollouts_fused_experts(server):
    """verl's FSDP engine streams MoE experts under per-expert names (``unfuse_moe_params``, for vLLM); the hf
    rollout holds transformers 5's fused tensors and must put every expert's rows back where they came from."""
    from verl.workers.engine.fsdp.utils import unfuse_moe_params

    model = server.model
    trained = {name: p.detach().clone() + 0.01 * torch.randn_like(p) for name, p in model.named_parameters()}
    streamed = list(unfuse_moe_params(iter(trained.items()), "qwen3_omni_moe_thinker"))
    names = [name for name, _ in streamed]
    assert "model.layers.1.mlp.experts.3.up_proj.weight" in names
    assert "model.layers.1.mlp.experts.gate_up_proj" not in names
    original = {name: p.detach().clone() for name, p in model.named_parameters()}
    try:
        server.begin_weight_update()
        server.load_weights(streamed)
        assert server.finish_weight_update(global_steps=1)["updated"] == len(trained)
        for name, p in model.named_parameters():
            assert torch.equal(p, trained[name]), name
        # expert 3's up rows are the second half of gate_up_proj[3]
        up = dict(streamed)["model.layers.1.mlp.experts.3.up_proj.weight"]
        assert torch.equal(model.model.layers[1].mlp.experts.gate_up_proj[3, 32:], up)

        server.begin_weight_update()
        server.load_weights([item for item in streamed if item[0] != "model.layers.0.mlp.experts.2.down_proj.weight"])
        with pytest.raises(RuntimeError, match="model.layers.0.mlp.experts.down_proj"):
            server.finish_weight_update()
    finally:
        with torch.no_grad():
            for name, p in model.named_parameters():
                p.copy_(original[name])


# ------------------------------------------------------------------------------- full checkpoints


@pytest.fixture(scope="module")
def qwen3_full_dir(thinker_dir, tmp_path_factory):
    """A full-checkpoint layout around the tiny thinker: ``thinker.*`` (one tensor per expert, as stored),
    stand-in ``talker.*`` / ``code2wav.*`` tensors, and a ``qwen3_omni_moe`` config.json whose thinker_config
    is the thinker's. The talker is not a working model: only its bytes are checked."""
    from safetensors.torch import load_file, save_file

    out = tmp_path_factory.mktemp("qwen3_full")
    tensors = {f"thinker.{name}": t for name, t in load_file(str(Path(thinker_dir) / "model.safetensors")).items()}
    generator = torch.Generator().manual_seed(0)
    tensors["talker.model.codec_embedding.weight"] = torch.randn(16, 8, generator=generator)
    tensors["code2wav.code_embedding.weight"] = torch.randn(32, 8, generator=generator)
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
    thinker_config = json.loads((Path(thinker_dir) / "config.json").read_text())
    config = {
        "model_type": "qwen3_omni_moe",
        "architectures": ["Qwen3OmniMoeForConditionalGeneration"],
        "thinker_config": {k: v for k, v in thinker_config.items() if k not in ("architectures",)},
        "talker_config": {"model_type": "qwen3_omni_moe_talker"},
        "enable_audio_output": True,
    }
    (out / "config.json").write_text(json.dumps(config))
    for name in ("tokenizer.json", "tokenizer_config.json", "processor_config.json", "chat_template.jinja"):
        (out / name).write_bytes((Path(thinker_dir) / name).read_bytes())
    return out


def test_thinker_extracted_from_a_full_qwen3_omni_checkpoint_loads_and_equals_the_thinker(
    qwen3_full_dir, thinker_dir, tmp_path
):
    from transformers import AutoModelForImageTextToText

    from verl_avconfuse.omni.checkpoint import extract_thinker
    from verl_avconfuse.omni.processor import load_omni_processor

    out = extract_thinker(qwen3_full_dir, tmp_path / "thinker")
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "qwen3_omni_moe_thinker"
    assert config["architectures"] == ["Qwen3OmniMoeThinkerForConditionalGeneration"]
    extracted = AutoModelForImageTextToText.from_pretrained(str(out))
    original = AutoModelForImageTextToText.from_pretrained(thinker_dir)
    for (name, p), (_, q) in zip(extracted.named_parameters(), original.named_parameters(), strict=True):
        assert torch.equal(p, q), name
    assert type(load_omni_processor(str(out))).__name__ == "Qwen3OmniProcessor"


def test_export_puts_a_trained_qwen3_omni_thinker_back_and_keeps_talker_and_code2wav(
    qwen3_full_dir, thinker_dir, tmp_path
):
    """Trained thinkers come back from save_pretrained un-fused (one tensor per expert), the names the full
    checkpoint stores: the export matches them one to one and copies everything else byte for byte."""
    from safetensors.torch import load_file
    from transformers import AutoModelForImageTextToText

    from verl_avconfuse.omni.checkpoint import merge_thinker

    model = AutoModelForImageTextToText.from_pretrained(thinker_dir)
    with torch.no_grad():
        model.model.layers[1].mlp.experts.down_proj[2].add_(1.0)
        model.model.layers[0].self_attn.q_proj.weight.mul_(2.0)
    model.save_pretrained(str(tmp_path / "trained"))
    out = merge_thinker(qwen3_full_dir, tmp_path / "trained", tmp_path / "full")
    merged = load_file(str(out / "model.safetensors"))
    before = load_file(str(qwen3_full_dir / "model.safetensors"))
    assert set(merged) == set(before)
    assert torch.equal(
        merged["thinker.model.layers.1.mlp.experts.2.down_proj.weight"],
        before["thinker.model.layers.1.mlp.experts.2.down_proj.weight"] + 1.0,
    )
    assert torch.equal(merged["thinker.model.layers.1.mlp.experts.1.down_proj.weight"],
                       before["thinker.model.layers.1.mlp.experts.1.down_proj.weight"])  # fmt: skip
    assert torch.equal(
        merged["thinker.model.layers.0.self_attn.q_proj.weight"],
        2.0 * before["thinker.model.layers.0.self_attn.q_proj.weight"],
    )
    for name in ("talker.model.codec_embedding.weight", "code2wav.code_embedding.weight"):
        assert torch.equal(merged[name], before[name])


def test_the_warm_started_qwen3_omni_thinker_keeps_the_format_with_media(server):
    """Sampling at temperature 1 with audio + video gives RL-CoMM's three-part format part of the time, so
    Step-RR's rewards vary inside a group (a random thinker never writes it)."""
    import numpy as np

    from verl_avconfuse.tiny.corpus import WELL_FORMED_RESPONSE, policy_chats

    processor, model = server.processor, server.model
    chats = policy_chats(24, seed=12345)  # prompts the warm start never saw
    content = [[{"type": "video"}, {"type": "audio"}, {"type": "text", "text": "\n" + c.user}] for c in chats]
    texts = [
        processor.apply_chat_template([{"role": "user", "content": c}], add_generation_prompt=True, tokenize=False)
        for c in content
    ]
    rng = np.random.default_rng(0)
    t = np.arange(32000) / 16000
    inputs = processor(
        text=texts,
        audio=[(0.3 * np.sin(2 * np.pi * (220 + 20 * i) * t)).astype(np.float32) for i in range(len(chats))],
        videos=[rng.integers(0, 256, size=(4, 48, 64, 3), dtype=np.uint8) for _ in chats],
        fps=2.0,
        padding=True,
        padding_side="left",
        return_tensors="pt",
    )
    inputs.pop("use_audio_in_video")
    torch.manual_seed(0)
    with torch.no_grad():
        out = model.generate(**inputs, do_sample=True, temperature=1.0, top_k=0, top_p=1.0, max_new_tokens=64)
    responses = processor.tokenizer.batch_decode(out[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    fraction = sum(bool(WELL_FORMED_RESPONSE.match(r)) for r in responses) / len(responses)
    print(f"\nQwen3-Omni thinker with audio + video, well-formed at temperature 1: {fraction:.2f}")
    assert 0.05 <= fraction <= 0.95, (fraction, responses[:4])
