"""The tiny offline models: they load with the Auto classes, run with their media, sample RL-CoMM's format
part of the time, and build deterministically and atomically.

All five models are built once per module (about 30-45 s on 2 cores); media are synthetic (a numpy sine
tone, random frames), so nothing here depends on the media I/O code.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from verl_avconfuse.tiny import models as tiny
from verl_avconfuse.tiny.corpus import (
    INSTRUMENTS,
    NUMBER_WORDS,
    SOUND_TYPES,
    WELL_FORMED_REFERENCE,
    WELL_FORMED_RESPONSE,
    display_name,
    policy_chats,
    reference_chats,
)
from verl_avconfuse.tiny.tokenizer import SPECIAL_TOKENS, build_tokenizer

SR = tiny.AUDIO_SAMPLING_RATE
TAGS = ("<a-think>", "</a-think>", "<v-think>", "</v-think>", "<answer>", "</answer>")
HELD_OUT_SEED = 12345  # prompts the warm start never saw

# How often each warm-started model writes the format at temperature 1 on these tests' prompts and media,
# measured over 8 sampling seeds (qwen2_audio: 16) by benchmarks/tiny_format_rates.py
# (benchmarks/results/tiny_format_rates.json): 309 of 512, 128 of 256 and 192 of 256 samples.
FORMAT_RATE = {"qwen2": 0.604, "omni_thinker": 0.500, "qwen2_audio": 0.750}
RATE_SAMPLES = {"qwen2": 512, "omni_thinker": 256, "qwen2_audio": 256}


def _format_rate_bounds(model: str, n: int) -> tuple[float, float]:
    """p +- 3 sigma for a fraction of ``n`` samples, sigma from the binomial of the test's n and of the
    estimate of p (normal approximation: a sound model lands inside > 99 % of the time)."""
    p = FORMAT_RATE[model]
    sigma = (p * (1 - p) / n + p * (1 - p) / RATE_SAMPLES[model]) ** 0.5
    return p - 3 * sigma, p + 3 * sigma


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        paths = tiny.make_tiny_models(tmp_path_factory.mktemp("tiny"), which=list(tiny.TINY_MODELS))
        print("\nbuild seconds:", {k: round(v, 1) for k, v in tiny.BUILD_SECONDS.items()})
        yield paths


def _tone(seconds: float, hz: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def _frames(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, 48, 64, 3), dtype=np.uint8)


def _tensors(path) -> dict[str, torch.Tensor]:
    return load_file(str(path / "model.safetensors"))


def _count(ids: torch.Tensor, token_id: int) -> int:
    return int((ids == token_id).sum())


# ------------------------------------------------------------------------------------------ tokenizer


def test_importing_the_tiny_package_loads_no_torch():
    code = (
        "import sys, verl_avconfuse.tiny, verl_avconfuse.tiny.models, verl_avconfuse.tiny.tokenizer, "
        "verl_avconfuse.tiny.corpus; assert 'torch' not in sys.modules and 'transformers' not in sys.modules; "
        "assert callable(verl_avconfuse.tiny.make_tiny_models)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_special_tokens_are_single_tokens_and_tags_are_plain_text():
    tokenizer = build_tokenizer()
    for token in SPECIAL_TOKENS.values():
        assert tokenizer.tokenize(token) == [token]
        assert token in tokenizer.added_tokens_encoder
    for tag in TAGS:
        assert tag not in tokenizer.added_tokens_encoder
        assert len(tokenizer.tokenize(tag)) > 1, tag
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token == "<|endoftext|>"
    assert tokenizer.audio_token == "<|AUDIO|>" and tokenizer.video_token == "<|VIDEO|>"
    assert tokenizer.image_token == "<|IMAGE|>" and tokenizer.vision_bos_token == "<|vision_bos|>"
    assert len(tokenizer) <= 2000


def test_saved_tokenizer_reloads_with_auto_tokenizer(tmp_path):
    from transformers import AutoTokenizer

    tokenizer = build_tokenizer(tmp_path / "tok")
    reloaded = AutoTokenizer.from_pretrained(tmp_path / "tok")
    text = "<|im_start|>user\n<|audio_bos|><|AUDIO|><|audio_eos|>Is there a violin sound?<|im_end|>\n"
    assert reloaded(text)["input_ids"] == tokenizer(text)["input_ids"]
    assert reloaded.chat_template == tokenizer.chat_template and reloaded.audio_token == "<|AUDIO|>"


def test_corpus_words_are_whole_tokens_and_responses_round_trip():
    tokenizer = build_tokenizer()
    words = {w for label in INSTRUMENTS + SOUND_TYPES for w in display_name(label).split()}
    words |= set(NUMBER_WORDS) | {"yes", "no", "hear", "see", "sound", "instruments"}
    for word in sorted(words):
        assert len(tokenizer.tokenize(" " + word)) == 1, word
    # Byte-level BPE: any response decodes back to itself, tags split or merged with their neighbours.
    for chat in policy_chats(50, seed=HELD_OUT_SEED):
        ids = tokenizer.encode(chat.response, add_special_tokens=False)
        assert tokenizer.decode(ids) == chat.response
    pieces = tokenizer.tokenize("</v-think>\n<answer> yes </answer>")
    assert any(">" in p and "Ċ" in p for p in pieces), pieces  # ">\n" is one token: a merge across tags


def test_chat_template_renders_qwen_chatml_with_omni_media():
    tokenizer = build_tokenizer()
    messages = [
        {"role": "system", "content": "Be brief."},
        {
            "role": "user",
            "content": [
                {"type": "video", "video": "clip.mp4"},
                {"type": "audio", "audio": "clip.wav"},
                {"type": "image"},
                {"type": "text", "text": "Is there a violin sound?"},
            ],
        },
        {"role": "assistant", "content": "<answer> yes </answer>"},
    ]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text == (
        "<|im_start|>system\nBe brief.<|im_end|>\n"
        "<|im_start|>user\n<|vision_bos|><|VIDEO|><|vision_eos|><|audio_bos|><|AUDIO|><|audio_eos|>"
        "<|vision_bos|><|IMAGE|><|vision_eos|>Is there a violin sound?<|im_end|>\n"
        "<|im_start|>assistant\n<answer> yes </answer><|im_end|>\n"
        "<|im_start|>assistant\n"
    )


# ------------------------------------------------------------------------------------------ qwen2 policy


def test_qwen2_policy_loads_with_auto_classes(built):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = built["qwen2"]
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    assert type(model).__name__ == "Qwen2ForCausalLM"
    assert model.config.tie_word_embeddings and model.lm_head.weight is model.model.embed_tokens.weight
    assert model.config.vocab_size % 64 == 0 and model.config.vocab_size >= len(tokenizer)
    assert model.generation_config.eos_token_id == [tokenizer.eos_token_id, tokenizer.pad_token_id]
    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Is there a violin sound?"}], add_generation_prompt=True, return_tensors="pt"
    )
    ids = ids["input_ids"] if not torch.is_tensor(ids) else ids
    with torch.no_grad():
        logits = model(ids).logits
    assert logits.shape == (1, ids.shape[1], model.config.vocab_size)
    assert torch.isfinite(logits).all()


def _sample_responses(model, tokenizer, users: list[str], max_new_tokens: int = 64) -> tuple[list[str], torch.Tensor]:
    """Decoded responses (special tokens dropped) and the sampled ids, at temperature 1 without truncation."""
    prompts = [
        tokenizer.apply_chat_template([{"role": "user", "content": u}], add_generation_prompt=True, tokenize=False)
        for u in users
    ]
    tokenizer.padding_side = "left"
    batch = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    torch.manual_seed(0)
    with torch.no_grad():
        out = model.generate(
            **batch, do_sample=True, temperature=1.0, top_k=0, top_p=1.0, max_new_tokens=max_new_tokens
        )
    sampled = out[:, batch["input_ids"].shape[1] :]
    return tokenizer.batch_decode(sampled, skip_special_tokens=True), sampled


def test_warm_started_policy_samples_the_format_some_of_the_time(built, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    users = [c.user for c in policy_chats(64, seed=HELD_OUT_SEED)]
    tokenizer = AutoTokenizer.from_pretrained(built["qwen2"])
    responses, sampled = _sample_responses(AutoModelForCausalLM.from_pretrained(built["qwen2"]), tokenizer, users)
    fraction = sum(bool(WELL_FORMED_RESPONSE.match(r)) for r in responses) / len(responses)
    low, high = _format_rate_bounds("qwen2", len(responses))  # 0.41 .. 0.80 for 64
    assert low <= fraction <= high, (fraction, responses[:8])
    assert len(set(responses)) >= 48, "samples should vary"
    # Media placeholders in a response would break a multimodal forward; the warm start makes them unlikely.
    media_ids = [tokenizer.convert_tokens_to_ids(SPECIAL_TOKENS[k]) for k in ("audio", "image", "video")]
    assert not torch.isin(sampled, torch.tensor(media_ids)).any()

    # Without the warm start, the random policy never writes the format.
    random_dir = tiny.make_qwen2_policy(tmp_path / "random", warm_start_steps=0)
    random_responses, _ = _sample_responses(AutoModelForCausalLM.from_pretrained(random_dir), tokenizer, users[:16])
    assert not any(WELL_FORMED_RESPONSE.match(r) for r in random_responses)


# ------------------------------------------------------------------------------------------ omni


@pytest.mark.parametrize("use_audio_in_video", [False, True])
def test_omni_thinker_runs_text_audio_video(built, use_audio_in_video):
    from transformers import AutoConfig, AutoProcessor, Qwen2_5OmniThinkerForConditionalGeneration

    path = built["omni_thinker"]
    processor = AutoProcessor.from_pretrained(path)
    model = Qwen2_5OmniThinkerForConditionalGeneration.from_pretrained(path)
    assert AutoConfig.from_pretrained(path).model_type == "qwen2_5_omni_thinker"
    config = model.config
    assert config.vision_start_token_id == processor.tokenizer.convert_tokens_to_ids("<|vision_bos|>")
    assert config.audio_token_id == processor.tokenizer.convert_tokens_to_ids("<|AUDIO|>")

    content = [{"type": "video"}] + ([] if use_audio_in_video else [{"type": "audio"}])
    content.append({"type": "text", "text": "\n" + policy_chats(1, seed=HELD_OUT_SEED)[0].user})
    text = processor.apply_chat_template(
        [{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False
    )
    # 2 s of 16 kHz audio and a 2 s 64x48 clip at 2 fps; no pixel bounds passed: the saved ones must hold.
    inputs = processor(
        text=[text], audio=[_tone(2.0)], videos=[_frames(4)], use_audio_in_video=use_audio_in_video, return_tensors="pt"
    )
    ids = inputs["input_ids"][0]
    # 200 mel frames -> 100 after the stride-2 conv -> 50 after pooling; 64x48 -> 56x56 = 4x4 patches, 2x2
    # merged = 4 tokens per temporal patch, 2 temporal patches.
    assert inputs["video_grid_thw"].tolist() == [[2, 4, 4]]
    assert _count(ids, config.audio_token_id) == 50
    assert _count(ids, config.video_token_id) == 8
    if use_audio_in_video:
        # One 2 s TMRoPE chunk: <|vision_bos|><|audio_bos|> 8 video tokens, 50 audio tokens <|audio_eos|><|vision_eos|>
        start = int((ids == config.vision_start_token_id).nonzero()[0])
        expected = (
            [config.vision_start_token_id, config.audio_start_token_id]
            + [config.video_token_id] * 8
            + [config.audio_token_id] * 50
            + [config.audio_end_token_id, config.vision_end_token_id]
        )
        assert ids[start : start + len(expected)].tolist() == expected
    with torch.no_grad():
        logits = model(**inputs, use_audio_in_video=use_audio_in_video).logits
        assert logits.shape == (1, len(ids), config.text_config.vocab_size) and torch.isfinite(logits).all()
        out = model.generate(
            **inputs, use_audio_in_video=use_audio_in_video, do_sample=False, max_new_tokens=48, min_new_tokens=8
        )
    assert out.shape[1] > len(ids)


def test_omni_thinker_keeps_the_format_with_media(built):
    from transformers import AutoProcessor, Qwen2_5OmniThinkerForConditionalGeneration

    processor = AutoProcessor.from_pretrained(built["omni_thinker"])
    model = Qwen2_5OmniThinkerForConditionalGeneration.from_pretrained(built["omni_thinker"])
    chats = policy_chats(32, seed=HELD_OUT_SEED)
    content = [[{"type": "video"}, {"type": "audio"}, {"type": "text", "text": "\n" + c.user}] for c in chats]
    texts = [
        processor.apply_chat_template([{"role": "user", "content": c}], add_generation_prompt=True, tokenize=False)
        for c in content
    ]
    inputs = processor(
        text=texts,
        audio=[_tone(2.0, 220 + 20 * i) for i in range(32)],
        videos=[_frames(4, seed=i) for i in range(32)],
        padding=True,
        return_tensors="pt",
    )
    torch.manual_seed(0)
    with torch.no_grad():
        out = model.generate(**inputs, do_sample=True, temperature=1.0, top_k=0, top_p=1.0, max_new_tokens=64)
    responses = processor.tokenizer.batch_decode(out[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    fraction = sum(bool(WELL_FORMED_RESPONSE.match(r)) for r in responses) / len(responses)
    low, high = _format_rate_bounds("omni_thinker", len(responses))  # 0.22 .. 0.78 for 32
    assert low <= fraction <= high, (fraction, responses[:8])


def test_full_omni_loads_and_holds_a_thinker_shaped_like_the_tiny_thinker(built):
    from transformers import AutoConfig, AutoProcessor, Qwen2_5OmniForConditionalGeneration

    path = built["omni_full"]
    model = Qwen2_5OmniForConditionalGeneration.from_pretrained(path)
    assert AutoConfig.from_pretrained(path).model_type == "qwen2_5_omni"
    assert type(AutoProcessor.from_pretrained(path)).__name__ == "Qwen2_5OmniProcessor"
    assert model.has_talker and set(model.speaker_map) == {"Chelsie", "Ethan"}
    full = _tensors(path)
    thinker = _tensors(built["omni_thinker"])
    assert {f"thinker.{k}": v.shape for k, v in thinker.items()} == {
        k: v.shape for k, v in full.items() if k.startswith("thinker.")
    }
    assert any(k.startswith("talker.") for k in full) and any(k.startswith("token2wav.") for k in full)
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        assert model.thinker(input_ids=ids).logits.shape == (1, 4, model.config.thinker_config.text_config.vocab_size)


# ------------------------------------------------------------------------------------------ qwen2-audio


def test_qwen2_audio_generates_from_an_audio_chat(built):
    from transformers import AutoProcessor, Qwen2AudioForConditionalGeneration

    path = built["qwen2_audio"]
    processor = AutoProcessor.from_pretrained(path)
    model = Qwen2AudioForConditionalGeneration.from_pretrained(path)
    assert type(processor).__name__ == "Qwen2AudioProcessor"
    chats = reference_chats(16, seed=HELD_OUT_SEED)
    texts = [
        processor.apply_chat_template(
            [
                {
                    "role": "user",
                    "content": [{"type": "audio", "audio": "x.wav"}, {"type": "text", "text": "\n" + c.user}],
                }
            ],
            add_generation_prompt=True,
            tokenize=False,
        )
        for c in chats
    ]
    audio = [_tone(2.0, 300 + 10 * i) for i in range(16)]
    inputs = processor(text=texts, audio=audio, sampling_rate=SR, padding=True, return_tensors="pt")
    # The encoder takes exactly 2 * max_source_positions frames; 2 s of audio -> 50 audio tokens.
    frames = 2 * model.config.audio_config.max_source_positions
    assert inputs["input_features"].shape == (16, tiny.NUM_MEL_BINS, frames)
    assert _count(inputs["input_ids"][0], model.config.audio_token_id) == 50
    assert (inputs["attention_mask"][:, -1] == 1).all(), "prompts are left-padded"
    torch.manual_seed(0)
    with torch.no_grad():
        out = model.generate(**inputs, do_sample=True, temperature=1.0, top_k=0, top_p=1.0, max_new_tokens=48)
    responses = processor.tokenizer.batch_decode(out[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    fraction = sum(bool(WELL_FORMED_REFERENCE.match(r)) for r in responses) / len(responses)
    low, _ = _format_rate_bounds("qwen2_audio", len(responses))  # 0.42 for 16 (the upper bound is above 1)
    assert fraction >= low, (fraction, responses)

    # Longer audio is cut to the encoder's window (QWEN2_AUDIO_SECONDS).
    long = processor(
        text=texts[:1], audio=[_tone(tiny.QWEN2_AUDIO_SECONDS + 2.0)], sampling_rate=SR, return_tensors="pt"
    )
    assert int(long["feature_attention_mask"].sum()) == frames


# ------------------------------------------------------------------------------------------ embedder


def test_embedder_reloads_offline_with_named_prompts_and_unit_vectors(built):
    from sentence_transformers import SentenceTransformer

    path = built["embedder"]
    model = SentenceTransformer(str(path), device="cpu")
    saved = json.loads((path / "config_sentence_transformers.json").read_text())["prompts"]
    assert {k: saved[k] for k in ("arr", "avc", "query")} == tiny.EMBEDDING_PROMPTS
    assert saved["query"] == f"Instruct: {tiny.ARR_INSTRUCTION}\nQuery:"
    texts = ["I hear a violin playing a melody.", "I see a piano.", "The audio is silent, only wind."]
    for name in ("arr", "avc", "query"):
        vectors = model.encode(texts, prompt_name=name, convert_to_numpy=True)
        assert vectors.shape == (3, tiny.TEXT_HIDDEN)
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    with_prompt = model.encode(texts, prompt_name="arr")
    assert not np.allclose(with_prompt, model.encode(texts))
    # Left padding + last-token pooling: a batch of unequal lengths embeds each text as if alone.
    alone = np.stack([model.encode([t], prompt_name="arr")[0] for t in texts])
    np.testing.assert_allclose(with_prompt, alone, atol=1e-5)
    # Qwen3-Embedding's tokenizer ends every input with <|endoftext|>, the token last-token pooling reads.
    assert model.tokenizer("hi")["input_ids"][-1] == model.tokenizer.convert_tokens_to_ids("<|endoftext|>")


# ------------------------------------------------------------------------------------------ builds


def test_same_seed_builds_identical_weights(built, tmp_path):
    again = tiny.make_qwen2_policy(tmp_path / "qwen2")
    first, second = _tensors(built["qwen2"]), _tensors(again)
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)

    # A fresh process (BPE trained anew, other hash seed) builds the same bytes.
    code = (
        "import sys; from verl_avconfuse.tiny.models import make_qwen2_policy; "
        "make_qwen2_policy(sys.argv[1], warm_start_steps=5)"
    )
    subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "sub")], check=True, env={**os.environ, "PYTHONHASHSEED": "7"}
    )
    here = _tensors(tiny.make_qwen2_policy(tmp_path / "here", warm_start_steps=5))
    there = _tensors(tmp_path / "sub")
    assert here.keys() == there.keys() and all(torch.equal(here[k], there[k]) for k in here)

    # The thinker's warm start with media, shortened.
    a = _tensors(tiny.make_omni_thinker(tmp_path / "a", warm_start_steps=3))
    b = _tensors(tiny.make_omni_thinker(tmp_path / "b", warm_start_steps=3))
    assert all(torch.equal(a[k], b[k]) for k in a)
    c = _tensors(tiny.make_omni_thinker(tmp_path / "c", seed=1, warm_start_steps=3))
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_build_is_atomic_and_replaces_an_existing_directory(tmp_path):
    target = tmp_path / "model"
    with pytest.raises(RuntimeError), tiny.atomic_directory(target) as tmp:
        (tmp / "config.json").write_text("{}")
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []

    target.mkdir()
    (target / "stale.txt").write_text("old")
    with tiny.atomic_directory(target) as tmp:
        (tmp / "config.json").write_text("{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    assert sorted(p.name for p in target.iterdir()) == ["config.json"]


def test_unknown_model_name_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="unknown tiny model"):
        tiny.make_tiny_models(tmp_path, which=["qwen2", "llama"])
    assert list(tmp_path.iterdir()) == []


def test_the_warm_start_covers_the_tiny_rl_task_and_its_instruments():
    """Policy and reference share the task's audio descriptions (what lets ARR fire in a tiny run)."""
    from verl_avconfuse.tiny.corpus import TASK_INSTRUMENTS, policy_chats, reference_chats
    from verl_avconfuse.tiny.data import INSTRUMENT_TONES_HZ

    assert sorted(INSTRUMENT_TONES_HZ) == list(TASK_INSTRUMENTS)
    for chats in (policy_chats(600), reference_chats(600)):
        task = [c for c in chats if c.question.startswith("Is there a") and c.question[11:-7] in TASK_INSTRUMENTS]
        assert 0.65 < len(task) / len(chats) < 0.9  # TASK_FRACTION = 0.75, plus random scenes asking alike
        silent = [c for c in task if "silent" in c.response]
        assert all(c.answer == "no" for c in silent)
