"""The verl -> vLLM 0.24.0 contract for the Qwen2.5-Omni thinker (verl_avconfuse/omni/vllm_contract.py).

vLLM cannot run here, so these tests pin the contract from both ends: hand-built token ids with the real
Qwen2.5-Omni vocabulary, and a tiny real ``Qwen2_5OmniProcessor`` called the way verl's agent loop calls it
(``verl.utils.tokenizer.build_multimodal_processor_inputs``). The key property: the collapsed prompt, expanded
by a model of vLLM's prompt updates (``predict_vllm_prompt_ids``), is exactly the prompt the actor trains on,
and the media + kwargs we send make the HF processor inside vLLM produce the actor's features.
"""

from __future__ import annotations

import asyncio
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from vllm_prompt_model import audio_token_count, predict_vllm_prompt_ids

from verl_avconfuse.integration.rollout.vllm_weights import vllm_thinker_weights, vllm_thinker_weights_async
from verl_avconfuse.omni.vllm_contract import (
    HF_TEXT_TIE_DEFAULT,
    HF_THINKER_TIE_DEFAULT,
    QWEN2_5_OMNI_TOKEN_IDS,
    VLLM_THINKER_CHILDREN,
    OmniTokenIds,
    build_omni_prompt,
    collapse_placeholders,
    vllm_engine_overrides,
    vllm_internal_weight_name,
    vllm_thinker_weight_name,
    wrap_thinker_config,
)

REPO = Path(__file__).resolve().parents[1]
ASSET_3B = REPO / "verl_avconfuse" / "omni" / "assets" / "qwen2_5_omni_3b.json"

T = QWEN2_5_OMNI_TOKEN_IDS
A, I, V = T.audio, T.image, T.video  # noqa: E741
ABOS, AEOS, VBOS, VEOS = T.audio_bos, T.audio_eos, T.vision_bos, T.vision_eos
SR = 16_000


# ------------------------------------------------------------------------------------------ token ids
def test_real_token_ids_are_transformers_thinker_defaults():
    from transformers import Qwen2_5OmniThinkerConfig

    config = Qwen2_5OmniThinkerConfig()
    assert (config.audio_token_index, config.image_token_index, config.video_token_index) == (A, I, V)
    assert (A, I, V) == (151646, 151655, 151656)
    assert (ABOS, AEOS) == (config.audio_start_token_id, config.audio_end_token_id) == (151647, 151648)


def test_real_vision_delimiters_are_the_3b_checkpoints():
    if not ASSET_3B.is_file():
        pytest.skip(f"{ASSET_3B} is absent")
    thinker = json.loads(ASSET_3B.read_text())["thinker_config"]
    assert (VBOS, VEOS) == (thinker["vision_start_token_id"], thinker["vision_end_token_id"]) == (151652, 151653)
    assert (
        thinker["audio_token_index"],
        thinker["image_token_index"],
        thinker["video_token_index"],
        thinker["audio_start_token_id"],
        thinker["audio_end_token_id"],
    ) == (A, I, V, ABOS, AEOS)


def test_token_ids_must_be_distinct_ints():
    with pytest.raises(ValueError, match="distinct"):
        OmniTokenIds(audio=1, image=2, video=3, audio_bos=4, audio_eos=5, vision_bos=6, vision_eos=1)
    with pytest.raises(ValueError, match="vision_eos"):
        OmniTokenIds(audio=1, image=2, video=3, audio_bos=4, audio_eos=5, vision_bos=6, vision_eos="7")


def test_from_tokenizer_rejects_a_tokenizer_without_omni_tokens():
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(WordLevel({"a": 0, "[UNK]": 1}, unk_token="[UNK]"))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]")
    with pytest.raises(ValueError, match=r"no token <\|AUDIO\|>"):
        OmniTokenIds.from_tokenizer(tokenizer)


# ------------------------------------------------------------------------------------------ collapse by hand
def test_collapse_audio_only():
    ids = [1, 2, ABOS, *[A] * 5, AEOS, 3]
    assert collapse_placeholders(ids, T, use_audio_in_video=False) == [1, 2, ABOS, A, AEOS, 3]


def test_collapse_video_only_and_image():
    ids = [1, VBOS, *[V] * 6, VEOS, 2, VBOS, *[I] * 4, VEOS]
    assert collapse_placeholders(ids, T, use_audio_in_video=False) == [1, VBOS, V, VEOS, 2, VBOS, I, VEOS]


def test_collapse_audio_and_video_as_separate_items():
    ids = [7, VBOS, *[V] * 4, VEOS, ABOS, *[A] * 7, AEOS, 8]
    assert collapse_placeholders(ids, T, use_audio_in_video=False) == [7, VBOS, V, VEOS, ABOS, A, AEOS, 8]


def test_collapse_audio_interleaved_in_video_drops_audio_and_its_delimiters():
    region = [VBOS, ABOS, *[V] * 4, *[A] * 50, *[V] * 4, *[A] * 10, AEOS, VEOS]
    assert collapse_placeholders([5, *region, 6], T, use_audio_in_video=True) == [5, VBOS, V, VEOS, 6]


def test_collapse_several_items_of_each_kind():
    ids = [ABOS, *[A] * 3, AEOS, 9, ABOS, *[A] * 2, AEOS, VBOS, *[V] * 2, VEOS, VBOS, *[V] * 8, VEOS]
    expected = [ABOS, A, AEOS, 9, ABOS, A, AEOS, VBOS, V, VEOS, VBOS, V, VEOS]
    assert collapse_placeholders(ids, T, use_audio_in_video=False) == expected
    two_regions = [VBOS, ABOS, V, V, A, AEOS, VEOS, 4, VBOS, ABOS, V, A, A, AEOS, VEOS]
    assert collapse_placeholders(two_regions, T, use_audio_in_video=True) == [VBOS, V, VEOS, 4, VBOS, V, VEOS]


def test_collapse_keeps_text_only_prompts_and_accepts_arrays():
    assert collapse_placeholders(np.array([4, 5, 6]), T, use_audio_in_video=True) == [4, 5, 6]


def test_collapse_interleaved_region_needs_the_flag():
    ids = [VBOS, ABOS, V, A, AEOS, VEOS]
    with pytest.raises(ValueError, match=r"prompt_ids\[0\].*use_audio_in_video=False"):
        collapse_placeholders(ids, T, use_audio_in_video=False)


def test_collapse_plain_video_run_contradicts_the_flag():
    with pytest.raises(ValueError, match=r"prompt_ids\[1:4\].*did not interleave"):
        collapse_placeholders([VBOS, V, V, V, VEOS], T, use_audio_in_video=True)


def test_collapse_needs_delimiters_between_items():
    with pytest.raises(ValueError, match=r"prompt_ids\[2:4\].*found 2 before"):
        collapse_placeholders([ABOS, 2, A, A, AEOS], T, use_audio_in_video=False)
    with pytest.raises(ValueError, match="must sit between"):
        collapse_placeholders([VBOS, V, V, VEOS, V, VEOS], T, use_audio_in_video=False)


def test_collapse_unclosed_interleaved_region():
    with pytest.raises(ValueError, match=r"closed by <\|audio_eos\|><\|vision_eos\|>"):
        collapse_placeholders([VBOS, ABOS, V, A, 3, AEOS, VEOS], T, use_audio_in_video=True)


# Random well-formed prompts: text tokens and media items in any order, in either input mode.
_text = st.lists(st.integers(0, 1000), max_size=3)
_separate_item = st.sampled_from(["audio", "video", "image"]).flatmap(
    lambda kind: st.tuples(st.just(kind), st.integers(1, 12))
)
_interleaved_item = st.tuples(st.just("av"), st.integers(1, 6), st.integers(0, 30))


_SEPARATE = {"audio": (A, ABOS, AEOS), "video": (V, VBOS, VEOS), "image": (I, VBOS, VEOS)}


def _render(items, texts):
    """(HF-expanded ids, the collapsed ids we expect) for items interleaved with text."""
    ids, collapsed = [], []
    for text, item in zip(texts, items, strict=False):
        ids += text
        collapsed += text
        if item[0] == "av":
            ids += [VBOS, ABOS, *[V] * item[1], *[A] * item[2], AEOS, VEOS]
            collapsed += [VBOS, V, VEOS]
        else:
            token, opener, closer = _SEPARATE[item[0]]
            ids += [opener, *[token] * item[1], closer]
            collapsed += [opener, token, closer]
    ids += texts[-1]
    collapsed += texts[-1]
    return ids, collapsed


@settings(max_examples=200, deadline=None)
@given(items=st.lists(_separate_item, max_size=6), texts=st.lists(_text, min_size=7, max_size=7))
def test_collapse_then_vllm_expansion_is_identity_for_separate_items(items, texts):
    ids, collapsed = _render(items, texts)
    assert collapse_placeholders(ids, T, use_audio_in_video=False) == collapsed
    assert collapse_placeholders(collapsed, T, use_audio_in_video=False) == collapsed
    counts = {kind: [n for k, n in items if k == kind] for kind in ("audio", "video", "image")}
    rebuilt = predict_vllm_prompt_ids(
        collapsed,
        T,
        audio_token_counts=counts["audio"],
        image_token_counts=counts["image"],
        video_grid_thw=[(1, 2, 2 * n) for n in counts["video"]],  # (1*2*2n) // 2**2 = n tokens
    )
    assert rebuilt == ids


@settings(max_examples=100, deadline=None)
@given(items=st.lists(_interleaved_item, max_size=4), texts=st.lists(_text, min_size=5, max_size=5))
def test_collapse_interleaved_is_idempotent_and_counts_one_video_per_region(items, texts):
    ids, collapsed = _render(items, texts)
    once = collapse_placeholders(ids, T, use_audio_in_video=True)
    assert once == collapsed
    assert collapse_placeholders(once, T, use_audio_in_video=True) == once
    assert once.count(V) == len(items) and once.count(A) == 0 and once.count(ABOS) == 0


# ------------------------------------------------------------------------------------------ vLLM's interleaved layout
def test_predicted_interleaved_layout_by_hand():
    # grid (t=4, h=2, w=4): 2 tokens per grid; 1 s per grid -> times 0, 25, 50, 75 -> chunks of 2 grids.
    # 130 audio tokens: 50 after each chunk, 30 left over at the end.
    got = predict_vllm_prompt_ids(
        [9, VBOS, V, VEOS], T, audio_token_counts=[130], video_grid_thw=[(4, 2, 4)], use_audio_in_video=True
    )
    assert got == [9, VBOS, ABOS, *[V] * 4, *[A] * 50, *[V] * 4, *[A] * 50, *[A] * 30, AEOS, VEOS]
    # 2 s per grid, short audio: every grid is its own chunk; chunks after the audio ran out get none.
    got = predict_vllm_prompt_ids(
        [VBOS, V, VEOS],
        T,
        audio_token_counts=[60],
        video_grid_thw=[(3, 2, 2)],
        use_audio_in_video=True,
        second_per_grid_ts=[2.0],
    )
    assert got == [VBOS, ABOS, V, *[A] * 50, V, *[A] * 10, V, AEOS, VEOS]


def test_predict_checks_media_counts():
    with pytest.raises(ValueError, match="more placeholders than media"):
        predict_vllm_prompt_ids([ABOS, A, AEOS, ABOS, A, AEOS], T, audio_token_counts=[3])
    with pytest.raises(ValueError, match="1 audio, 0 image, 0 video placeholders"):
        predict_vllm_prompt_ids([ABOS, A, AEOS], T, audio_token_counts=[3, 4])


def test_audio_token_count_is_25_per_second():
    assert audio_token_count(100) == 25  # 1 s of 10 ms Whisper frames
    assert audio_token_count(3000) == 750  # the processor's 30 s window
    assert audio_token_count(150) == 37  # (149 // 2 + 1) = 75 frames after conv; (75 - 2) // 2 + 1 = 37


# ------------------------------------------------------------------------------------------ request fields, by hand
def _tone(seconds: float, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (0.1 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _frames(n: int = 8, seed: int = 0) -> torch.Tensor:
    # Like qwen_vl_utils' output: (T, C, H, W) float frames with values in [0, 255].
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.uniform(0, 255, size=(n, 3, 48, 64)).astype(np.float32))


def test_request_audio_only_field_by_field():
    audio = _tone(1.0)
    request = build_omni_prompt(
        [1, ABOS, *[A] * 25, AEOS, 2], token_ids=T, audio_data=[audio], use_audio_in_video=False
    )
    assert set(request) == {"prompt_token_ids", "multi_modal_data", "mm_processor_kwargs"}
    assert request["prompt_token_ids"] == [1, ABOS, A, AEOS, 2]
    assert list(request["multi_modal_data"]) == ["audio"]
    ((samples, rate),) = request["multi_modal_data"]["audio"]
    assert rate == 16_000 and samples.dtype == np.float32 and samples.shape == (16_000,)
    np.testing.assert_array_equal(samples, audio)
    assert request["mm_processor_kwargs"] == {"use_audio_in_video": False, "sampling_rate": 16_000}


def test_request_video_only_field_by_field():
    frames = _frames()
    metadata = {"fps": 2.0, "total_num_frames": 8, "frames_indices": list(range(8))}
    request = build_omni_prompt(
        [VBOS, *[V] * 16, VEOS], token_ids=T, video_data=[(frames, metadata)], use_audio_in_video=False
    )
    assert request["prompt_token_ids"] == [VBOS, V, VEOS]
    (video,) = request["multi_modal_data"]["video"]
    assert isinstance(video, np.ndarray) and video.shape == (8, 3, 48, 64) and video.dtype == np.float32
    np.testing.assert_array_equal(video, frames.numpy())
    assert list(request["multi_modal_data"]) == ["video"]
    assert request["mm_processor_kwargs"] == {"use_audio_in_video": False}  # no audio: no sampling_rate


def test_request_audio_and_video_as_separate_items():
    audio, frames = _tone(2.0), _frames()
    ids = [VBOS, *[V] * 16, VEOS, ABOS, *[A] * 50, AEOS, 3]
    request = build_omni_prompt(ids, token_ids=T, audio_data=[audio], video_data=[frames], use_audio_in_video=False)
    assert request["prompt_token_ids"] == [VBOS, V, VEOS, ABOS, A, AEOS, 3]
    assert sorted(request["multi_modal_data"]) == ["audio", "video"]
    np.testing.assert_array_equal(request["multi_modal_data"]["audio"][0][0], audio)
    np.testing.assert_array_equal(request["multi_modal_data"]["video"][0], frames.numpy())
    assert request["mm_processor_kwargs"] == {"use_audio_in_video": False, "sampling_rate": 16_000}


def test_request_audio_in_video():
    audio, frames = _tone(2.0), _frames()
    ids = [4, VBOS, ABOS, *[V] * 8, *[A] * 50, *[V] * 8, AEOS, VEOS, 5]
    request = build_omni_prompt(ids, token_ids=T, audio_data=[audio], video_data=[frames], use_audio_in_video=True)
    assert request["prompt_token_ids"] == [4, VBOS, V, VEOS, 5]
    assert request["mm_processor_kwargs"] == {
        "use_audio_in_video": True,
        "sampling_rate": 16_000,
        "second_per_grid_ts": [1.0],
    }
    assert request["multi_modal_data"]["audio"][0][1] == 16_000


def test_request_image_passes_images_through():
    from PIL import Image

    image = Image.new("RGB", (56, 56), (10, 20, 30))
    request = build_omni_prompt([VBOS, *[I] * 4, VEOS], token_ids=T, image_data=[image], use_audio_in_video=False)
    assert request["prompt_token_ids"] == [VBOS, I, VEOS]
    assert request["multi_modal_data"] == {"image": [image]}
    assert request["multi_modal_data"]["image"][0] is image


def test_request_multiple_items_keep_prompt_order():
    a1, a2, v1, v2 = _tone(1.0, 300), _tone(2.0, 500), _frames(4, 1), _frames(8, 2)
    ids = [VBOS, *[V] * 8, VEOS, ABOS, *[A] * 25, AEOS, VBOS, *[V] * 16, VEOS, ABOS, *[A] * 50, AEOS]
    request = build_omni_prompt(ids, token_ids=T, audio_data=[a1, a2], video_data=[v1, v2], use_audio_in_video=False)
    assert request["prompt_token_ids"] == [VBOS, V, VEOS, ABOS, A, AEOS, VBOS, V, VEOS, ABOS, A, AEOS]
    assert [s.shape for s, _ in request["multi_modal_data"]["audio"]] == [(16_000,), (32_000,)]
    assert [v.shape[0] for v in request["multi_modal_data"]["video"]] == [4, 8]
    two_regions = [VBOS, ABOS, V, A, AEOS, VEOS, VBOS, ABOS, V, A, AEOS, VEOS]
    request = build_omni_prompt(
        two_regions, token_ids=T, audio_data=[a1, a2], video_data=[v1, v2], use_audio_in_video=True
    )
    assert request["mm_processor_kwargs"]["second_per_grid_ts"] == [1.0, 1.0]


def test_request_text_only_has_no_media():
    request = build_omni_prompt([1, 2, 3], token_ids=T, use_audio_in_video=False)
    assert request == {
        "prompt_token_ids": [1, 2, 3],
        "multi_modal_data": {},
        "mm_processor_kwargs": {"use_audio_in_video": False},
    }


def test_request_audio_in_video_flag_without_video_sends_audio_as_an_item():
    request = build_omni_prompt([ABOS, *[A] * 25, AEOS], token_ids=T, audio_data=[_tone(1.0)], use_audio_in_video=True)
    assert request["prompt_token_ids"] == [ABOS, A, AEOS]
    assert request["mm_processor_kwargs"] == {"use_audio_in_video": True, "sampling_rate": 16_000}


def test_request_media_counts_must_match_placeholders():
    with pytest.raises(ValueError, match=r"audio_data: 2 item\(s\) for 1 <\|AUDIO\|>"):
        build_omni_prompt([ABOS, A, AEOS], token_ids=T, audio_data=[_tone(1), _tone(1)], use_audio_in_video=False)
    with pytest.raises(ValueError, match=r"video_data: 0 item\(s\) for 1"):
        build_omni_prompt([VBOS, V, VEOS], token_ids=T, use_audio_in_video=False)
    with pytest.raises(ValueError, match=r"audio_data: 0 item\(s\) for 1 video"):
        build_omni_prompt([VBOS, ABOS, V, A, AEOS, VEOS], token_ids=T, video_data=[_frames()], use_audio_in_video=True)
    with pytest.raises(ValueError, match="standalone <\\|AUDIO\\|>"):
        build_omni_prompt(
            [VBOS, ABOS, V, A, AEOS, VEOS, ABOS, A, AEOS],
            token_ids=T,
            audio_data=[_tone(1), _tone(1)],
            video_data=[_frames()],
            use_audio_in_video=True,
        )


def test_request_flag_conflicts_with_extra_kwargs():
    with pytest.raises(ValueError, match="contradicts"):
        build_omni_prompt(
            [1], token_ids=T, use_audio_in_video=False, extra_mm_processor_kwargs={"use_audio_in_video": True}
        )


def test_request_extra_kwargs_pass_through_and_fps_sets_second_per_grid():
    ids = [VBOS, ABOS, V, A, AEOS, VEOS]
    extra = {"fps": 1.0, "max_pixels": 12544}
    request = build_omni_prompt(
        ids, token_ids=T, audio_data=[_tone(1)], video_data=[_frames()], use_audio_in_video=True,
        extra_mm_processor_kwargs=extra,
    )  # fmt: skip
    assert request["mm_processor_kwargs"] == {
        "fps": 1.0,
        "max_pixels": 12544,
        "use_audio_in_video": True,
        "sampling_rate": 16_000,
        "second_per_grid_ts": [2.0],  # temporal_patch_size 2 / 1 fps
    }
    assert extra == {"fps": 1.0, "max_pixels": 12544}  # the caller's dict is not modified


def test_request_rejects_fps_below_one_with_audio_in_video():
    with pytest.raises(ValueError, match=r"fps=0.5 gives 4 s per video grid"):
        build_omni_prompt(
            [VBOS, ABOS, V, A, AEOS, VEOS], token_ids=T, audio_data=[_tone(1)], video_data=[_frames()],
            use_audio_in_video=True, extra_mm_processor_kwargs={"fps": 0.5},
        )  # fmt: skip


# ------------------------------------------------------------------------------------------ sample rates
def _one_audio(audio, **kwargs):
    return build_omni_prompt([ABOS, A, AEOS], token_ids=T, audio_data=[audio], use_audio_in_video=False, **kwargs)


def test_sample_rate_tuple_at_the_encoder_rate_is_kept():
    audio = _tone(0.5)
    ((samples, rate),) = _one_audio((audio, 16_000))["multi_modal_data"]["audio"]
    assert rate == 16_000
    np.testing.assert_array_equal(samples, audio)


def test_sample_rate_other_than_the_encoder_rate_is_an_error():
    with pytest.raises(ValueError, match=r"audio_data\[0\]: sampled at 44100 Hz.*reads 16000 Hz"):
        _one_audio((_tone(0.5), 44_100))


def test_sample_rate_of_a_different_encoder_is_used_everywhere():
    request = _one_audio(_tone(0.5), audio_sample_rate=24_000)
    assert request["multi_modal_data"]["audio"][0][1] == 24_000
    assert request["mm_processor_kwargs"]["sampling_rate"] == 24_000
    with pytest.raises(ValueError, match="sampling_rate=16000 but audio_sample_rate=24000"):
        _one_audio(_tone(0.5), audio_sample_rate=24_000, extra_mm_processor_kwargs={"sampling_rate": 16_000})


def test_audio_is_float32_mono_from_any_array_type():
    wide = np.linspace(-0.5, 0.5, 800)  # float64
    ((samples, _),) = _one_audio(wide)["multi_modal_data"]["audio"]
    assert samples.dtype == np.float32 and np.array_equal(samples, wide.astype(np.float32))
    ((samples, _),) = _one_audio(torch.tensor(wide).reshape(1, -1).to(torch.bfloat16))["multi_modal_data"]["audio"]
    assert samples.shape == (800,) and samples.dtype == np.float32
    np.testing.assert_allclose(samples, wide, atol=4e-3)  # bf16 keeps 8 bits of mantissa


@pytest.mark.parametrize(
    ("audio", "message"),
    [
        (np.zeros((2, 800), np.float32), r"mono samples of shape \(T,\), got shape \(2, 800\)"),
        (np.zeros(800, np.int16), "float samples"),
        ("clip.wav", "decoded samples"),
        ({"array": np.zeros(8), "sampling_rate": 16_000}, "decoded samples"),
        (np.array([0.0, np.nan], np.float32), "NaN"),
        (np.zeros(0, np.float32), "empty"),
    ],
)
def test_audio_item_errors(audio, message):
    with pytest.raises(ValueError, match=message):
        _one_audio(audio)


def test_a_bare_pair_is_not_a_list_of_items():
    with pytest.raises(ValueError, match="one \\(samples, sample_rate\\) pair"):
        build_omni_prompt([ABOS, A, AEOS], token_ids=T, audio_data=(_tone(1), 16_000), use_audio_in_video=False)


def test_video_item_errors():
    with pytest.raises(ValueError, match=r"video_data\[0\]: expected frames of shape"):
        build_omni_prompt([VBOS, V, VEOS], token_ids=T, video_data=[np.zeros((48, 64, 3))], use_audio_in_video=False)


# ------------------------------------------------------------------------------------------ against the real processor
@pytest.fixture(scope="module")
def tiny_thinker_dir(tmp_path_factory) -> Path:
    from verl_avconfuse.tiny import models

    return models.make_omni_thinker(tmp_path_factory.mktemp("omni") / "thinker", warm_start_steps=0)


@pytest.fixture(scope="module")
def processor(tiny_thinker_dir):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(tiny_thinker_dir)


def _actor_inputs(processor, text, *, videos=None, audios=None, kwargs=None):
    """The processor call verl's agent loop makes for the actor (build_multimodal_processor_inputs)."""
    from verl.utils import tokenizer as tokenizer_mod

    return tokenizer_mod.build_multimodal_processor_inputs(
        processor, text=[text], videos=videos, audio=audios, mm_processor_kwargs=dict(kwargs or {})
    )


def _vllm_inputs(processor, request):
    """The HF processor call inside vLLM 0.24 for a token prompt (``_apply_hf_processor_mm_only``).

    Dummy text (``get_dummy_text``): one placeholder per item, audio minus videos with audio-in-video; the
    media as our request carries them; the request's ``mm_processor_kwargs`` as call kwargs.
    """
    data, kwargs = request["multi_modal_data"], request["mm_processor_kwargs"]
    n_audio, n_image, n_video = (len(data.get(m, [])) for m in ("audio", "image", "video"))
    if kwargs.get("use_audio_in_video") and n_video:
        n_audio -= n_video
    text = processor.audio_token * n_audio + processor.image_token * n_image + processor.video_token * n_video
    audios = [samples for samples, _ in data["audio"]] if "audio" in data else None
    return processor(
        text=[text], images=data.get("image"), videos=data.get("video"), audio=audios, return_tensors="pt", **kwargs
    )


def _assert_same_features(actor, vllm, keys):
    for key in keys:
        assert torch.equal(torch.as_tensor(actor[key]), torch.as_tensor(vllm[key])), key


VIDEO_AUDIO_FEATURES = (
    "pixel_values_videos",
    "video_grid_thw",
    "video_second_per_grid",
    "input_features",
    "feature_attention_mask",
)


def _predict_from_actor(request, actor, token_ids, *, use_audio_in_video):
    """vLLM's rebuild of our collapsed prompt, from the item sizes the actor's processor reported."""
    mask = actor.get("feature_attention_mask")
    return predict_vllm_prompt_ids(
        request["prompt_token_ids"],
        token_ids,
        audio_token_counts=[audio_token_count(n) for n in mask.sum(-1).tolist()] if mask is not None else [],
        video_grid_thw=actor["video_grid_thw"].tolist() if "video_grid_thw" in actor else [],
        use_audio_in_video=use_audio_in_video,
        second_per_grid_ts=request["mm_processor_kwargs"].get("second_per_grid_ts"),
    )


@pytest.fixture(scope="module")
def tiny_ids(processor) -> OmniTokenIds:
    return OmniTokenIds.from_tokenizer(processor)


def test_tiny_token_ids_from_processor_and_tokenizer_agree(processor, tiny_ids):
    assert OmniTokenIds.from_tokenizer(processor.tokenizer) == tiny_ids
    assert tiny_ids.audio == processor.tokenizer.convert_tokens_to_ids("<|AUDIO|>")
    assert tiny_ids.vision_eos == processor.tokenizer.convert_tokens_to_ids("<|vision_eos|>")


PROMPT_SEPARATE = "user\n<|vision_bos|><|VIDEO|><|vision_eos|><|audio_bos|><|AUDIO|><|audio_eos|>What plays?\n"
PROMPT_IN_VIDEO = "user\n<|vision_bos|><|VIDEO|><|vision_eos|>What plays?\n"


def test_real_processor_separate_items(processor, tiny_ids):
    frames, audio = _frames(8), _tone(3.0)
    metadata = {"fps": 2.0, "total_num_frames": 8, "frames_indices": list(range(8))}
    actor = _actor_inputs(processor, PROMPT_SEPARATE, videos=[(frames, metadata)], audios=[audio])
    expanded = actor["input_ids"][0].tolist()
    assert expanded.count(tiny_ids.audio) == 75 and expanded.count(tiny_ids.video) == 16  # 3 s; 4 x (2x2) grids

    request = build_omni_prompt(
        expanded, token_ids=tiny_ids, audio_data=[audio], video_data=[(frames, metadata)], use_audio_in_video=False,
        extra_mm_processor_kwargs={"sampling_rate": 16_000},
    )  # fmt: skip
    assert request["prompt_token_ids"] == processor.tokenizer(PROMPT_SEPARATE).input_ids
    assert request["mm_processor_kwargs"] == {"sampling_rate": 16_000, "use_audio_in_video": False}
    assert _predict_from_actor(request, actor, tiny_ids, use_audio_in_video=False) == expanded
    _assert_same_features(actor, _vllm_inputs(processor, request), VIDEO_AUDIO_FEATURES)


@pytest.mark.parametrize(("fps", "frames_n", "seconds"), [(2.0, 8, 3.0), (1.0, 8, 9.0), (2.0, 12, 2.2)])
def test_real_processor_audio_in_video(processor, tiny_ids, fps, frames_n, seconds):
    frames, audio = _frames(frames_n), _tone(seconds)
    kwargs = {"use_audio_in_video": True, "fps": fps}
    metadata = {"fps": fps, "total_num_frames": frames_n, "frames_indices": list(range(frames_n))}
    actor = _actor_inputs(processor, PROMPT_IN_VIDEO, videos=[(frames, metadata)], audios=[audio], kwargs=kwargs)
    expanded = actor["input_ids"][0].tolist()
    assert expanded.count(tiny_ids.audio_bos) == 1  # the processor interleaved the soundtrack into the video

    request = build_omni_prompt(
        expanded, token_ids=tiny_ids, audio_data=[audio], video_data=[(frames, metadata)], use_audio_in_video=True,
        extra_mm_processor_kwargs=kwargs,
    )  # fmt: skip
    assert request["prompt_token_ids"] == processor.tokenizer(PROMPT_IN_VIDEO).input_ids
    assert request["mm_processor_kwargs"] == {
        "use_audio_in_video": True,
        "fps": fps,
        "sampling_rate": 16_000,
        "second_per_grid_ts": [2.0 / fps],
    }
    assert _predict_from_actor(request, actor, tiny_ids, use_audio_in_video=True) == expanded
    _assert_same_features(actor, _vllm_inputs(processor, request), VIDEO_AUDIO_FEATURES)


def test_real_processor_layout_diverges_below_one_fps(processor, tiny_ids):
    """Why build_omni_prompt refuses fps < 1 with audio-in-video: vLLM keeps empty chunks, HF does not."""
    frames, audio = _frames(8), _tone(12.0)
    kwargs = {"use_audio_in_video": True, "fps": 0.5}
    actor = _actor_inputs(processor, PROMPT_IN_VIDEO, videos=[frames], audios=[audio], kwargs=kwargs)
    expanded = actor["input_ids"][0].tolist()
    collapsed = collapse_placeholders(expanded, tiny_ids, use_audio_in_video=True)
    predicted = predict_vllm_prompt_ids(
        collapsed,
        tiny_ids,
        audio_token_counts=[audio_token_count(int(actor["feature_attention_mask"].sum()))],
        video_grid_thw=actor["video_grid_thw"].tolist(),
        use_audio_in_video=True,
        second_per_grid_ts=[4.0],
    )
    assert sorted(predicted) == sorted(expanded)  # same tokens ...
    assert predicted != expanded  # ... in another order


def test_real_processor_two_audios_and_an_image(processor, tiny_ids):
    from PIL import Image

    a1, a2 = _tone(1.0, 300), _tone(0.6, 600)
    image = Image.fromarray(np.random.default_rng(3).integers(0, 255, (56, 56, 3), dtype=np.uint8))
    text = "<|audio_bos|><|AUDIO|><|audio_eos|>then<|vision_bos|><|IMAGE|><|vision_eos|>and<|audio_bos|><|AUDIO|><|audio_eos|>"
    from verl.utils import tokenizer as tokenizer_mod

    actor = tokenizer_mod.build_multimodal_processor_inputs(processor, text=[text], images=[image], audio=[a1, a2])
    expanded = actor["input_ids"][0].tolist()
    request = build_omni_prompt(
        expanded, token_ids=tiny_ids, audio_data=[a1, a2], image_data=[image], use_audio_in_video=False
    )
    assert request["prompt_token_ids"] == processor.tokenizer(text).input_ids
    merge = 2 * 2
    predicted = predict_vllm_prompt_ids(
        request["prompt_token_ids"],
        tiny_ids,
        audio_token_counts=[audio_token_count(n) for n in actor["feature_attention_mask"].sum(-1).tolist()],
        image_token_counts=[int(g.prod()) // merge for g in actor["image_grid_thw"]],
    )
    assert predicted == expanded
    assert [expanded.count(tiny_ids.audio), expanded.count(tiny_ids.image)] == [25 + 15, 4]
    image_audio = ("pixel_values", "image_grid_thw", "input_features", "feature_attention_mask")
    _assert_same_features(actor, _vllm_inputs(processor, request), image_audio)


# ------------------------------------------------------------------------------------------ weight names
REALISTIC_NAMES = {
    "model.layers.0.self_attn.q_proj.weight": "language_model.model.layers.0.self_attn.q_proj.weight",
    "model.embed_tokens.weight": "language_model.model.embed_tokens.weight",
    "model.norm.weight": "language_model.model.norm.weight",
    "lm_head.weight": "language_model.lm_head.weight",
    "audio_tower.layers.0.fc1.weight": "audio_tower.layers.0.fc1.weight",
    "audio_tower.audio_bos_eos_token.weight": "audio_tower.audio_bos_eos_token.weight",
    "visual.blocks.0.attn.qkv.weight": "visual.blocks.0.attn.qkv.weight",
    "visual.blocks.0.attn.q.weight": "visual.blocks.0.attn.q.weight",  # HF's real name; vLLM stacks q/k/v
    "visual.merger.mlp.0.weight": "visual.merger.mlp.0.weight",
}


@pytest.mark.parametrize(("hf_name", "internal"), sorted(REALISTIC_NAMES.items()))
def test_weight_names_get_the_thinker_prefix_and_land_in_vllm_modules(hf_name, internal):
    sent = vllm_thinker_weight_name(hf_name)
    assert sent == "thinker." + hf_name
    assert vllm_internal_weight_name(sent) == internal


def test_bare_decoder_and_head_names_would_miss_vllm_modules():
    # Identity would not do: vLLM's mapper leaves them as they are and the thinker has no child "model"/"lm_head".
    assert vllm_internal_weight_name("model.layers.0.mlp.up_proj.weight").split(".")[0] not in VLLM_THINKER_CHILDREN
    assert vllm_internal_weight_name("lm_head.weight").split(".")[0] not in VLLM_THINKER_CHILDREN
    assert vllm_internal_weight_name("audio_tower.proj.weight").split(".")[0] in VLLM_THINKER_CHILDREN


def test_every_parameter_of_a_real_thinker_maps_into_a_vllm_child(tiny_thinker_dir):
    from safetensors import safe_open

    with safe_open(str(tiny_thinker_dir / "model.safetensors"), framework="pt") as f:
        names = list(f.keys())
    assert {n.split(".")[0] for n in names} == {"model", "lm_head", "audio_tower", "visual"}
    for name in names:
        internal = vllm_internal_weight_name(vllm_thinker_weight_name(name))
        assert internal.split(".")[0] in VLLM_THINKER_CHILDREN, name
        if name.startswith(("model.", "lm_head.")):
            assert internal == "language_model." + name


def test_weight_names_are_idempotent_and_reject_strangers():
    assert vllm_thinker_weight_name("thinker.model.norm.weight") == "thinker.model.norm.weight"
    with pytest.raises(ValueError, match="talker parameter"):
        vllm_thinker_weight_name("talker.model.layers.0.mlp.up_proj.weight")
    with pytest.raises(ValueError, match="not an Omni thinker parameter"):
        vllm_thinker_weight_name("language_model.model.norm.weight")
    with pytest.raises(ValueError, match="not an Omni thinker parameter"):
        vllm_thinker_weight_name("thinker.model")


def test_weight_stream_is_renamed_lazily_with_tensors_untouched():
    a, b = torch.ones(2), torch.zeros(3)
    stream = vllm_thinker_weights(iter([("lm_head.weight", a), ("visual.blocks.0.norm1.weight", b)]))
    first = next(stream)
    assert first[0] == "thinker.lm_head.weight" and first[1] is a
    assert next(stream) == ("thinker.visual.blocks.0.norm1.weight", b)
    assert list(vllm_thinker_weights({"model.norm.weight": a})) == [("thinker.model.norm.weight", a)]

    async def collect():
        async def source():
            yield "audio_tower.proj.bias", b

        return [item async for item in vllm_thinker_weights_async(source())]

    assert asyncio.run(collect()) == [("thinker.audio_tower.proj.bias", b)]


def _meta_thinker(thinker_tie: bool | None, text_tie: bool | None):
    from transformers import Qwen2_5OmniThinkerConfig, Qwen2_5OmniThinkerForConditionalGeneration

    text = dict(hidden_size=32, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2)
    text.update(
        num_key_value_heads=1, vocab_size=64, rope_parameters={"rope_type": "default", "mrope_section": [2, 3, 3]}
    )
    if text_tie is not None:
        text["tie_word_embeddings"] = text_tie
    kwargs = dict(
        text_config=text,
        audio_config=dict(d_model=16, encoder_layers=1, encoder_attention_heads=2, encoder_ffn_dim=16, output_dim=32),
        vision_config=dict(depth=1, hidden_size=16, intermediate_size=16, num_heads=2, out_hidden_size=32),
    )
    if thinker_tie is not None:
        kwargs["tie_word_embeddings"] = thinker_tie
    with torch.device("meta"):
        model = Qwen2_5OmniThinkerForConditionalGeneration(Qwen2_5OmniThinkerConfig(**kwargs))
    return model


def test_hf_thinker_ties_on_the_thinker_flag_not_the_text_flag():
    """Why vllm_engine_overrides aligns vLLM's (text_config) flag to the actor's (thinker-level) one."""
    from transformers import Qwen2_5OmniThinkerConfig
    from transformers.models.qwen2_5_omni.configuration_qwen2_5_omni import Qwen2_5OmniTextConfig

    assert Qwen2_5OmniThinkerConfig().tie_word_embeddings is HF_THINKER_TIE_DEFAULT
    assert Qwen2_5OmniTextConfig().tie_word_embeddings is HF_TEXT_TIE_DEFAULT
    untied = _meta_thinker(thinker_tie=None, text_tie=True)  # the 3B config's shape
    assert untied.lm_head.weight is not untied.model.embed_tokens.weight
    tied = _meta_thinker(thinker_tie=True, text_tie=None)
    assert tied.lm_head.weight is tied.model.embed_tokens.weight


# ------------------------------------------------------------------------------------------ engine overrides
def _full_config(**changes):
    config = {
        "architectures": ["Qwen2_5OmniModel"],
        "model_type": "qwen2_5_omni",
        "thinker_config": {"model_type": "qwen2_5_omni_thinker", "text_config": {"tie_word_embeddings": False}},
    }
    config.update(changes)
    return config


def test_engine_overrides_full_config_that_vllm_serves_as_is():
    assert vllm_engine_overrides(_full_config()) == {}
    assert vllm_engine_overrides(_full_config(architectures=["Qwen2_5OmniForConditionalGeneration"])) == {}


def test_engine_overrides_unregistered_architecture():
    assert vllm_engine_overrides(_full_config(architectures=["Qwen2_5OmniThinkerForConditionalGeneration"])) == {
        "hf_overrides": {"architectures": ["Qwen2_5OmniModel"]}
    }


def test_engine_overrides_3b_config_unties_vllms_lm_head():
    if not ASSET_3B.is_file():
        pytest.skip(f"{ASSET_3B} is absent")
    overrides = vllm_engine_overrides(json.loads(ASSET_3B.read_text()))
    assert overrides == {"hf_overrides": {"thinker_config": {"text_config": {"tie_word_embeddings": False}}}}
    json.dumps(overrides)  # travels through verl's CLI arguments


def test_engine_overrides_thinker_only_directory_wraps_the_config(tiny_thinker_dir, tiny_ids):
    from transformers import AutoConfig, PretrainedConfig, Qwen2_5OmniConfig

    config_dict = json.loads((tiny_thinker_dir / "config.json").read_text())
    assert config_dict["architectures"] == ["Qwen2_5OmniThinkerForConditionalGeneration"]
    assert vllm_engine_overrides(config_dict) == {"hf_overrides": wrap_thinker_config}

    thinker = AutoConfig.from_pretrained(tiny_thinker_dir)
    wrapped = wrap_thinker_config(thinker)
    assert isinstance(wrapped, Qwen2_5OmniConfig)
    assert wrapped.architectures == ["Qwen2_5OmniModel"]
    assert wrapped.thinker_config is thinker and wrapped.enable_audio_output is False
    assert wrapped.get_text_config() is thinker.text_config
    assert wrapped.thinker_config.audio_token_index == tiny_ids.audio
    assert wrapped.thinker_config.vision_start_token_id == tiny_ids.vision_bos  # undeclared field survives
    assert wrapped.thinker_config.text_config.tie_word_embeddings is False

    dummy = PretrainedConfig(architectures=[""])
    assert wrap_thinker_config(dummy) is dummy  # vLLM's model-type probe (HFConfigParser.parse)
    assert pickle.loads(pickle.dumps(wrap_thinker_config)) is wrap_thinker_config


def test_engine_overrides_reject_other_models():
    with pytest.raises(ValueError, match="model_type='qwen2'"):
        vllm_engine_overrides({"model_type": "qwen2"})
    with pytest.raises(ValueError, match="without a thinker_config"):
        vllm_engine_overrides({"model_type": "qwen2_5_omni"})
