"""The verl -> vLLM 0.24.0 contract for the Qwen3-Omni (MoE) thinker (verl_avconfuse/omni/vllm_contract.py).

As for Qwen2.5-Omni (tests/test_omni_vllm_contract.py), vLLM cannot run here; the contract is pinned from
both ends: hand-built ids with the released vocabulary, and the tiny Qwen3-Omni thinker's real processor,
called the way verl's agent loop calls it. ``tests/vllm_prompt_model.py`` re-states the parts of vLLM's
``qwen3_omni_moe_thinker.py`` the checks need (prompt updates, M-RoPE positions, parameter names and weight
loading); docs/vllm_omni.md cites each function. The weight checks run verl's own ``unfuse_moe_params`` on the
tiny thinker and on the 30B-A3B thinker's layout (built on the meta device from its recorded config).
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from vllm_prompt_model import (
    MMFeature,
    predict_qwen3_vllm_prompt_ids,
    qwen3_audio_token_count,
    qwen3_interleaved_region,
    vllm_qwen3_mrope_positions,
    vllm_qwen3_omni_load_target,
    vllm_qwen3_omni_parameters,
)

from verl_avconfuse.integration.rollout.vllm_weights import vllm_thinker_weights
from verl_avconfuse.omni.vllm_contract import (
    QWEN2_5_OMNI,
    QWEN2_5_OMNI_TOKEN_IDS,
    QWEN3_OMNI,
    QWEN3_OMNI_TOKEN_IDS,
    build_omni_prompt,
    collapse_placeholders,
    omni_family,
    omni_token_ids,
    qwen3_omni_mrope_positions,
    qwen3_vision_overrides,
    vllm_engine_overrides,
    vllm_thinker_weight_name,
    wrap_thinker_config,
)

from conftest import run_python

FIXTURE_30B = Path(__file__).resolve().parent / "fixtures" / "qwen3_omni" / "qwen3_omni_30b_a3b_thinker.json"
T = QWEN3_OMNI_TOKEN_IDS
A, I, V = T.audio, T.image, T.video  # noqa: E741
ABOS, AEOS, VBOS, VEOS = T.audio_bos, T.audio_eos, T.vision_bos, T.vision_eos
SR = 16_000


def _tone(seconds: float, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(round(seconds * SR))) / SR
    return (0.1 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _frames(n: int = 4, seed: int = 0) -> torch.Tensor:
    # qwen_vl_utils' layout: (T, C, H, W) floats in [0, 255]; 64x64 -> a 4x4 patch grid of 16 px
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.uniform(0, 255, size=(n, 3, 64, 64)).astype(np.float32))


def _released_thinker() -> dict:
    return json.loads(FIXTURE_30B.read_text())


# ------------------------------------------------------------------------------------------ family and token ids
def test_released_token_ids_are_the_30b_thinker_configs():
    thinker = _released_thinker()
    assert (thinker["audio_token_id"], thinker["image_token_id"], thinker["video_token_id"]) == (A, I, V)
    assert (ABOS, AEOS) == (thinker["audio_start_token_id"], thinker["audio_end_token_id"]) == (151669, 151670)
    assert (VBOS, VEOS) == (thinker["vision_start_token_id"], thinker["vision_end_token_id"]) == (151652, 151653)
    assert thinker["position_id_per_seconds"] == QWEN3_OMNI.position_id_per_seconds == 13


def test_family_is_read_from_the_model_type():
    assert omni_family("qwen3_omni_moe") is omni_family("qwen3_omni_moe_thinker") is QWEN3_OMNI
    assert omni_family("qwen2_5_omni_thinker") is QWEN2_5_OMNI
    with pytest.raises(ValueError, match="not an Omni thinker"):
        omni_family("qwen3_moe")


# ------------------------------------------------------------------------------------------ the request by hand
def test_collapse_with_qwen3_ids():
    separate = [1, VBOS, *[V] * 8, VEOS, ABOS, *[A] * 26, AEOS, 2]
    assert collapse_placeholders(separate, T, use_audio_in_video=False) == [1, VBOS, V, VEOS, ABOS, A, AEOS, 2]
    # Qwen3-Omni's body is interleaved token by token, not in chunks; the structure around it is the same
    region = [VBOS, ABOS, *[V] * 4, *[A] * 13, *[V] * 4, *[A] * 13, AEOS, VEOS]
    assert collapse_placeholders([5, *region, 6], T, use_audio_in_video=True) == [5, VBOS, V, VEOS, 6]


def test_audio_in_video_request_field_by_field():
    audio, frames = _tone(2.0), _frames(4)
    request = build_omni_prompt(
        [7, VBOS, V, VEOS, 8], token_ids=T, audio_data=[audio], video_data=[frames], use_audio_in_video=True,
        extra_mm_processor_kwargs={"fps": 2.0}, family=QWEN3_OMNI,
    )  # fmt: skip
    assert request["prompt_token_ids"] == [7, VBOS, V, VEOS, 8]
    ((samples, rate),) = request["multi_modal_data"]["audio"]
    assert rate == 16_000 and np.array_equal(samples, audio)
    (video,) = request["multi_modal_data"]["video"]
    assert torch.equal(torch.as_tensor(video), frames)
    # 2 frames per temporal patch / 2 fps = 1.0 s per grid; vLLM lays the body out at 2.0 s without it
    assert request["mm_processor_kwargs"] == {
        "fps": 2.0,
        "use_audio_in_video": True,
        "sampling_rate": 16_000,
        "second_per_grid_ts": [1.0],
    }


def test_without_fps_the_processors_default_of_1_fps_is_sent():
    request = build_omni_prompt(
        [VBOS, V, VEOS], token_ids=T, audio_data=[_tone(2.0)], video_data=[_frames(4)], use_audio_in_video=True,
        family=QWEN3_OMNI,
    )  # fmt: skip
    assert request["mm_processor_kwargs"]["second_per_grid_ts"] == [2.0]  # Qwen2.5-Omni's processor: 2 fps -> 1.0


@pytest.mark.parametrize("in_video", [False, True])
def test_fps_whose_video_time_step_is_fractional_is_refused(in_video):
    """fps 3: 2/3 s per grid x 13 = 8.67 position ids; transformers keeps 8.67, vLLM truncates to 8."""
    media = {"audio_data": [_tone(2.0)], "video_data": [_frames(4)]}
    ids = [VBOS, V, VEOS] if in_video else [VBOS, V, VEOS, ABOS, A, AEOS]
    with pytest.raises(ValueError, match="time step of 8.66667 position ids per grid.*truncates it to 8"):
        build_omni_prompt(
            ids, token_ids=T, use_audio_in_video=in_video, extra_mm_processor_kwargs={"fps": 3.0},
            family=QWEN3_OMNI, **media,
        )  # fmt: skip
    for fps in (1.0, 2.0, 0.5):  # 26, 13, 52 position ids per grid
        build_omni_prompt(
            ids, token_ids=T, use_audio_in_video=in_video, extra_mm_processor_kwargs={"fps": fps},
            family=QWEN3_OMNI, **media,
        )  # fmt: skip


def test_qwen2_5_omni_keeps_its_own_rules():
    """Its positions are ints on both sides (fps 3 is fine) and vLLM does not pad its audio."""
    t = QWEN2_5_OMNI_TOKEN_IDS
    ids = [t.vision_bos, t.video, t.vision_eos, t.audio_bos, t.audio, t.audio_eos]
    request = build_omni_prompt(
        ids, token_ids=t, video_data=[_frames(4)], audio_data=[np.zeros(32_050, np.float32)],
        use_audio_in_video=False, extra_mm_processor_kwargs={"fps": 3.0},
    )  # fmt: skip
    assert request["prompt_token_ids"] == ids


def test_audio_of_partial_mel_frames_is_refused():
    """vLLM pads 32050 samples to 32160 (201 frames, 27 tokens); the actor's processor counts 200 (26)."""
    ok = build_omni_prompt([ABOS, A, AEOS], token_ids=T, audio_data=[_tone(2.0)], use_audio_in_video=False,
                           family=QWEN3_OMNI)  # fmt: skip
    assert ok["multi_modal_data"]["audio"][0][0].shape == (32_000,)
    with pytest.raises(ValueError, match="32050 samples is not a whole number of 160-sample mel frames.*32160"):
        build_omni_prompt([ABOS, A, AEOS], token_ids=T, audio_data=[np.zeros(32_050, np.float32) + 0.1],
                          use_audio_in_video=False, family=QWEN3_OMNI)  # fmt: skip
    assert (qwen3_audio_token_count(200), qwen3_audio_token_count(201)) == (26, 27)


def test_vllm_layout_of_audio_in_video_by_hand():
    """2 temporal patches of 4 tokens at 1 s per grid x 13: times 0 and 13; audio tokens at 0..25."""
    region = qwen3_interleaved_region(T, (2, 4, 4), 26, second_per_grid=1.0)
    assert region == [ABOS, *[V] * 4, *[A] * 13, *[V] * 4, *[A] * 13, AEOS]
    # vLLM's default when second_per_grid_ts is absent (2.0 s): the second patch moves to time 26
    assert qwen3_interleaved_region(T, (2, 4, 4), 26, second_per_grid=2.0) == [
        ABOS,
        *[V] * 4,
        *[A] * 26,
        *[V] * 4,
        AEOS,
    ]


# ------------------------------------------------------------------------------------------ the tiny thinker's processor
@pytest.fixture(scope="module")
def thinker_dir(tiny_asset) -> str:
    return tiny_asset("models/qwen3_omni_thinker")


@pytest.fixture(scope="module")
def processor(thinker_dir):
    from verl_avconfuse.omni.processor import load_omni_processor

    return load_omni_processor(thinker_dir)


@pytest.fixture(scope="module")
def tiny_ids(processor):
    return omni_token_ids(processor)


QUESTION = "What plays?"


def _actor(processor, in_video: bool, fps: float, seconds: float = 2.0, n_frames: int = 4):
    """The prompt as verl's agent loop builds it for the actor (chat template + build_multimodal_processor_inputs)."""
    from verl.utils.tokenizer import build_multimodal_processor_inputs

    content = [{"type": "video", "video": "clip.mp4"}]
    if not in_video:
        content.append({"type": "audio", "audio": "clip.mp4"})
    messages = [{"role": "user", "content": [*content, {"type": "text", "text": QUESTION}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    frames, audio = _frames(n_frames), _tone(seconds)
    metadata = {"fps": fps, "total_num_frames": n_frames, "frames_indices": list(range(n_frames))}
    kwargs = {"fps": fps, "use_audio_in_video": in_video, "sampling_rate": SR}
    inputs = build_multimodal_processor_inputs(
        processor, text=[text], videos=[(frames, metadata)], audio=[audio], mm_processor_kwargs=kwargs
    )
    return text, inputs, frames, metadata, audio, kwargs


def _request(tiny_ids, actor_inputs, frames, metadata, audio, kwargs):
    extra = {k: v for k, v in kwargs.items() if k not in ("use_audio_in_video", "sampling_rate")}
    return build_omni_prompt(
        actor_inputs["input_ids"][0].tolist(), token_ids=tiny_ids, audio_data=[audio],
        video_data=[(frames, metadata)], use_audio_in_video=kwargs["use_audio_in_video"],
        extra_mm_processor_kwargs=extra, family=QWEN3_OMNI,
    )  # fmt: skip


MODES = [pytest.param(False, id="audio-as-item"), pytest.param(True, id="audio-in-video")]


@pytest.mark.parametrize("in_video", MODES)
@pytest.mark.parametrize("fps", [2.0, 1.0])
def test_vllm_rebuilds_the_actors_prompt_from_ours(processor, tiny_ids, in_video, fps):
    text, actor, *media = _actor(processor, in_video, fps)
    expanded = actor["input_ids"][0].tolist()
    request = _request(tiny_ids, actor, *media)
    # what we send: the template's own one-token placeholders
    assert request["prompt_token_ids"] == processor.tokenizer(text).input_ids
    assert request["mm_processor_kwargs"]["use_audio_in_video"] is in_video
    frames_per_audio = actor["feature_attention_mask"].sum(-1).tolist()
    predicted = predict_qwen3_vllm_prompt_ids(
        request["prompt_token_ids"], tiny_ids,
        audio_token_counts=[qwen3_audio_token_count(n) for n in frames_per_audio],
        video_grid_thw=actor["video_grid_thw"].tolist(), use_audio_in_video=in_video,
        second_per_grid_ts=request["mm_processor_kwargs"].get("second_per_grid_ts"),
    )  # fmt: skip
    assert predicted == expanded
    # 2 s of audio = 200 mel frames = 26 tokens; 4 frames of 64x64 = 2 grids of 4 tokens
    assert expanded.count(tiny_ids.audio) == 26 and expanded.count(tiny_ids.video) == 8


def test_without_second_per_grid_ts_vllm_would_lay_the_video_out_at_2_s_per_grid(processor, tiny_ids):
    _, actor, *media = _actor(processor, True, fps=2.0)
    request = _request(tiny_ids, actor, *media)
    default = predict_qwen3_vllm_prompt_ids(
        request["prompt_token_ids"], tiny_ids, audio_token_counts=[26], video_grid_thw=actor["video_grid_thw"].tolist(),
        use_audio_in_video=True, second_per_grid_ts=None,
    )  # fmt: skip
    assert sorted(default) == sorted(actor["input_ids"][0].tolist()) and default != actor["input_ids"][0].tolist()


@pytest.mark.parametrize("in_video", MODES)
def test_vllms_processor_call_gives_the_actors_features(processor, tiny_ids, in_video):
    """vLLM calls the HF processor on dummy text with our media and kwargs (``_apply_hf_processor_mm_only``;
    Qwen3-Omni's ``_call_hf_processor`` first pads audio to whole frames, a no-op on 32000 samples)."""
    _, actor, *media = _actor(processor, in_video, fps=2.0)
    request = _request(tiny_ids, actor, *media)
    data, kwargs = request["multi_modal_data"], request["mm_processor_kwargs"]
    text = processor.video_token + ("" if in_video else processor.audio_token)
    if in_video:
        text = processor.vision_bos_token + processor.video_token + processor.vision_eos_token
    vllm = processor(
        text=[text],
        videos=data["video"],
        audio=[samples for samples, _ in data["audio"]],
        return_tensors="pt",
        **kwargs,
    )
    for key in ("pixel_values_videos", "video_grid_thw", "video_second_per_grid", "input_features"):
        assert torch.equal(torch.as_tensor(actor[key]), torch.as_tensor(vllm[key])), key
    # vLLM re-derives the mask from the padded length (32000 // 160); the actor's counts the same frames
    assert int(actor["feature_attention_mask"].sum()) == data["audio"][0][0].shape[0] // 160 == 200


# ------------------------------------------------------------------------------------------ M-RoPE positions
def _vllm_features(expanded, actor, tiny_ids, in_video) -> list[MMFeature]:
    """What vLLM's ``get_mrope_input_positions`` reads for our request: placeholder offsets in its expanded
    prompt (``PlaceholderFeaturesInfo.start_idx``) and the HF processor's outputs (as the feature data)."""
    video = {
        "video_grid_thw": actor["video_grid_thw"][0].tolist(),
        "second_per_grid_ts": float(actor["video_second_per_grid"][0]),
        "use_audio_in_video": in_video,
    }
    audio = {"audio_feature_lengths": int(actor["feature_attention_mask"].sum())}
    if in_video:  # the body <|audio_start|> ... <|audio_end|> replaces <|video_pad|>; the audio shares it
        start = expanded.index(tiny_ids.audio_bos)
        return [MMFeature("video", start, video), MMFeature("audio", start, audio)]
    return [
        MMFeature("video", expanded.index(tiny_ids.video), video),
        MMFeature("audio", expanded.index(tiny_ids.audio), audio),
    ]


def _hf_positions(processor, actor, in_video) -> np.ndarray:
    positions, _ = processor.get_rope_index(
        actor["input_ids"], None, actor["video_grid_thw"], actor["attention_mask"], use_audio_in_video=in_video,
        audio_seqlens=actor["feature_attention_mask"].sum(-1), second_per_grids=torch.as_tensor(actor["video_second_per_grid"]),
    )  # fmt: skip
    return positions[:, 0].numpy()


def test_vllm_position_rule_by_hand():
    """text, <|vision_start|>, 4 video tokens (1 x 4 x 4 patches), <|vision_end|>, text: vLLM counts its start
    position at the first <|video_pad|> (the placeholder's offset), so the grid lands one token late."""
    positions = vllm_qwen3_mrope_positions(8, [MMFeature("video", 2, {"video_grid_thw": [1, 4, 4]})])
    assert positions.tolist() == [
        [0, 1, 2, 3, 3, 3, 3, 5],
        [0, 1, 2, 3, 3, 4, 4, 5],
        [0, 1, 2, 3, 4, 3, 4, 5],
    ]  # transformers: vision_start 1, grid from 2 (t 2, h 2 2 3 3, w 2 3 2 3), vision_end 4, text 5 (vLLM 5 too)


@pytest.mark.parametrize("fps", [2.0, 1.0])
def test_vllm_positions_for_audio_as_item_put_the_video_grid_one_token_late(processor, tiny_ids, fps):
    _, actor, *_ = _actor(processor, False, fps)
    expanded = actor["input_ids"][0].tolist()
    hf = _hf_positions(processor, actor, False)
    vllm = vllm_qwen3_mrope_positions(len(expanded), _vllm_features(expanded, actor, tiny_ids, False))
    first, end = expanded.index(tiny_ids.video), expanded.index(tiny_ids.vision_eos)
    assert end - first == 8
    np.testing.assert_array_equal(vllm[:, first], hf[:, first - 1] + 1)  # the "start" at the first video token
    np.testing.assert_array_equal(vllm[:, first + 1 : end + 1], hf[:, first:end] + 1)  # grid shifted by a token
    np.testing.assert_array_equal(vllm[:, :first], hf[:, :first])
    np.testing.assert_array_equal(vllm[:, end + 1 :], hf[:, end + 1 :])  # the separate audio and all text agree
    assert not np.array_equal(vllm[:, first:end], hf[:, first:end])


@pytest.mark.parametrize("fps", [2.0, 1.0])
def test_vllm_positions_for_audio_in_video_shift_the_body_and_lag_by_two_after_it(processor, tiny_ids, fps):
    _, actor, *_ = _actor(processor, True, fps)
    expanded = actor["input_ids"][0].tolist()
    hf = _hf_positions(processor, actor, True)
    vllm = vllm_qwen3_mrope_positions(len(expanded), _vllm_features(expanded, actor, tiny_ids, True))
    start, end = expanded.index(tiny_ids.audio_bos), expanded.index(tiny_ids.audio_eos)
    np.testing.assert_array_equal(vllm[:, : start + 1], hf[:, : start + 1])
    np.testing.assert_array_equal(vllm[:, start + 1], hf[:, start])  # the second "start" repeats <|audio_start|>'s
    np.testing.assert_array_equal(vllm[:, start + 2 : end + 1], hf[:, start + 1 : end])  # the body, one token late
    # transformers: <|audio_end|> M+1, <|vision_end|> M+2; vLLM: M+1 twice (on <|vision_end|> and the next text)
    np.testing.assert_array_equal(vllm[:, end + 2 :], hf[:, end + 2 :] - 2)


def _spec(feature: MMFeature):
    """Our MMFeature in the shape of vLLM's ``MultiModalFeatureSpec`` (field elements wrap values in ``.data``)."""
    data = {k: SimpleNamespace(data=torch.tensor(v)) for k, v in feature.data.items() if v is not None}
    return SimpleNamespace(modality=feature.modality, mm_position=SimpleNamespace(offset=feature.offset), data=data)


@pytest.mark.parametrize("in_video", MODES)
@pytest.mark.parametrize("fps", [2.0, 1.0])
def test_the_replacement_rule_gives_the_hf_thinkers_positions(processor, tiny_ids, in_video, fps):
    """``qwen3_omni_mrope_positions``, fed what vLLM's ``get_mrope_input_positions`` is fed, equals
    transformers' ``get_rope_index`` on the tiny thinker's prompt (and so does the delta)."""
    _, actor, *_ = _actor(processor, in_video, fps)
    expanded = actor["input_ids"][0].tolist()
    features = [_spec(f) for f in _vllm_features(expanded, actor, tiny_ids, in_video)]
    positions, delta = qwen3_omni_mrope_positions(
        len(expanded), features, position_id_per_seconds=13, spatial_merge_size=2
    )
    hf = _hf_positions(processor, actor, in_video)
    np.testing.assert_array_equal(positions, hf)
    assert delta == int(hf.max()) + 1 - len(expanded)


def _random_prompt(rng, tiny_ids, in_video: bool):
    """Token ids, HF get_rope_index inputs and vLLM features of a random prompt (one input mode per prompt,
    as transformers' get_rope_index takes one flag; no standalone audio next to audio in video, as vLLM)."""
    ids, features, grids, seconds, frames = [], [], [], [], []
    kinds = ["image", "video"] if in_video else ["audio", "image", "video"]
    for _ in range(int(rng.integers(1, 4))):
        ids += rng.integers(10, 100, size=int(rng.integers(0, 4))).tolist()
        kind = kinds[int(rng.integers(len(kinds)))]
        if kind == "audio":
            n_frames = int(rng.integers(1, 350))
            ids.append(tiny_ids.audio_bos)
            features.append(MMFeature("audio", len(ids), {"audio_feature_lengths": n_frames}))
            ids += [tiny_ids.audio] * qwen3_audio_token_count(n_frames) + [tiny_ids.audio_eos]
            frames.append(n_frames)
            continue
        grid = [
            1 if kind == "image" else int(rng.integers(1, 5)),
            2 * int(rng.integers(1, 4)),
            2 * int(rng.integers(1, 4)),
        ]
        n = grid[0] * grid[1] * grid[2] // 4
        if kind == "image":
            ids.append(tiny_ids.vision_bos)
            features.append(MMFeature("image", len(ids), {"image_grid_thw": grid}))
            ids += [tiny_ids.image] * n + [tiny_ids.vision_eos]
            grids.append(("image", grid))
            continue
        spg = float(rng.choice([1.0, 2.0]))
        video = {"video_grid_thw": grid, "second_per_grid_ts": spg, "use_audio_in_video": in_video}
        grids.append(("video", grid))
        seconds.append(spg)
        ids.append(tiny_ids.vision_bos)
        if in_video:
            n_frames = int(rng.integers(1, 350))
            body = qwen3_interleaved_region(tiny_ids, grid, qwen3_audio_token_count(n_frames), spg)
            features += [
                MMFeature("video", len(ids), video),
                MMFeature("audio", len(ids), {"audio_feature_lengths": n_frames}),
            ]
            ids += body + [tiny_ids.vision_eos]
            frames.append(n_frames)
        else:
            features.append(MMFeature("video", len(ids), video))
            ids += [tiny_ids.video] * n + [tiny_ids.vision_eos]
    ids += rng.integers(10, 100, size=int(rng.integers(1, 4))).tolist()
    return ids, features, grids, seconds, frames


@pytest.mark.parametrize("in_video", MODES)
def test_the_replacement_rule_matches_transformers_on_random_prompts(processor, tiny_ids, in_video):
    rng = np.random.default_rng(7)
    checked = 0
    for _ in range(60):
        ids, features, grids, seconds, frames = _random_prompt(rng, tiny_ids, in_video)
        if not any(kind == "video" for kind, _ in grids) and not any(kind == "image" for kind, _ in grids):
            continue  # transformers' get_rope_index takes its multimodal branch only with a vision grid
        image = [g for kind, g in grids if kind == "image"]
        video = [g for kind, g in grids if kind == "video"]
        hf, _ = processor.get_rope_index(
            torch.tensor([ids]), torch.tensor(image) if image else None, torch.tensor(video) if video else None,
            torch.ones(1, len(ids), dtype=torch.long), use_audio_in_video=in_video,
            audio_seqlens=torch.tensor(frames) if frames else None,
            second_per_grids=torch.tensor(seconds) if seconds else None,
        )  # fmt: skip
        positions, _ = qwen3_omni_mrope_positions(
            len(ids), [_spec(f) for f in features], position_id_per_seconds=13, spatial_merge_size=2
        )
        np.testing.assert_array_equal(positions, hf[:, 0].numpy())
        checked += 1
    assert checked == (60 if in_video else 49)  # audio-only prompts take transformers' text-only branch


# ------------------------------------------------------------------------------------------ weights
def _streamed(model) -> list[tuple[str, tuple[int, ...]]]:
    """What verl's FSDP engine sends the rollout for this HF thinker, renamed by our adapter."""
    from verl.workers.engine.fsdp.utils import unfuse_moe_params

    state = ((name, tensor) for name, tensor in model.state_dict().items())
    return [
        (name, tuple(t.shape)) for name, t in vllm_thinker_weights(unfuse_moe_params(state, "qwen3_omni_moe_thinker"))
    ]


def _assert_fills_every_vllm_parameter(streamed, thinker: dict) -> dict[str, int]:
    """Every sent tensor lands on a declared vLLM parameter with a matching shape; every parameter (each shard,
    each expert) is written exactly once; nothing is left over. Returns counts for the caller's checks."""
    declared = vllm_qwen3_omni_parameters(thinker)
    text = thinker["text_config"]
    experts, heads, kv, head = (
        text["num_experts"],
        text["num_attention_heads"],
        text["num_key_value_heads"],
        text["head_dim"],
    )
    written: dict[str, list] = defaultdict(list)
    for name, shape in streamed:
        param, shard, expert = vllm_qwen3_omni_load_target(name, experts)
        assert param in declared, f"{name} -> {param}: not a vLLM parameter (dropped or KeyError)"
        full = declared[param]
        if expert is not None:  # one expert's gate/up rows of w13 (E, 2I, H), or its w2 (E, H, I)
            rows = full[1] // 2 if shard in ("w1", "w3") else full[1]
            assert shape == (rows, full[2]), (name, shape, full)
        elif shard in ("q", "k", "v"):
            q_rows = heads * head if param.endswith("qkv_proj.weight") else full[0] // 3
            kv_rows = kv * head if param.endswith("qkv_proj.weight") else full[0] // 3
            assert shape[0] == (q_rows if shard == "q" else kv_rows) and shape[1:] == full[1:], (name, shape, full)
        else:
            assert shard is None and shape == full, (name, shape, full)
        written[param].append((shard, expert))
    assert set(written) == set(declared), f"never written: {sorted(set(declared) - set(written))[:5]}"
    for param, shards in written.items():
        expected = {(None, None)}
        if param.endswith(("self_attn.qkv.weight", "self_attn.qkv.bias", "qkv_proj.weight")):
            expected = {("q", None), ("k", None), ("v", None)}
        if param.endswith("w13_weight"):
            expected = {(s, e) for e in range(experts) for s in ("w1", "w3")}
        if param.endswith("w2_weight"):
            expected = {("w2", e) for e in range(experts)}
        assert sorted(shards, key=str) == sorted(expected, key=str), param
    return {"sent": len(streamed), "parameters": len(declared)}


def test_the_tiny_thinkers_weights_fill_every_vllm_parameter(thinker_dir):
    from transformers import Qwen3OmniMoeThinkerForConditionalGeneration

    model = Qwen3OmniMoeThinkerForConditionalGeneration.from_pretrained(thinker_dir)
    config = json.loads((Path(thinker_dir) / "config.json").read_text())
    config["vision_config"].update(qwen3_vision_overrides(config["vision_config"]))  # wrap_thinker_config's fill
    streamed = _streamed(model)
    counts = _assert_fills_every_vllm_parameter(streamed, config)
    # vLLM: audio 6 conv + conv_out + 12 per layer + 6 = 25; vision 3 + 12 per block x 2 + 6 x 2 mergers = 39;
    # LM embed + 9 per layer x 2 + norm + lm_head = 21. Sent: the 113 tensors of model.safetensors.
    assert counts == {"sent": 113, "parameters": 25 + 39 + 21}
    names = {name for name, _ in streamed}
    assert "thinker.model.layers.1.mlp.experts.3.down_proj.weight" in names
    assert "thinker.visual.merger_list.0.ln_q.weight" in names


def test_the_tiny_checkpoint_on_disk_has_the_streamed_names(thinker_dir):
    """The released layout (one tensor per expert) is what verl streams: the same names as the shards."""
    from safetensors import safe_open
    from transformers import Qwen3OmniMoeThinkerForConditionalGeneration

    with safe_open(str(Path(thinker_dir) / "model.safetensors"), framework="pt") as f:
        on_disk = {"thinker." + name for name in f.keys()}
    model = Qwen3OmniMoeThinkerForConditionalGeneration.from_pretrained(thinker_dir)
    assert {name for name, _ in _streamed(model)} == on_disk


def test_the_30b_a3b_thinkers_weights_fill_every_vllm_parameter():
    from transformers import Qwen3OmniMoeThinkerConfig, Qwen3OmniMoeThinkerForConditionalGeneration

    thinker = _released_thinker()
    config = Qwen3OmniMoeThinkerConfig(**{k: v for k, v in thinker.items() if not k.startswith("_")})
    with torch.device("meta"):
        model = Qwen3OmniMoeThinkerForConditionalGeneration(config)
    counts = _assert_fills_every_vllm_parameter(_streamed(model), thinker)
    # vLLM: audio 7 + 12 x 32 + 6 = 397; vision 3 + 12 x 27 + 6 x 4 = 351; LM 1 + 9 x 48 + 2 = 435.
    # Sent: audio 7 + 16 x 32 + 6 = 525; vision 351; LM 1 + (7 + 128 x 3 + 2) x 48 + 2 = 18,867.
    assert counts == {"sent": 525 + 351 + 18_867, "parameters": 397 + 351 + 435}


def test_the_merged_lora_stream_of_fused_experts_is_split_before_vllm(thinker_dir):
    """verl's merged-LoRA sync sends ``state_dict()`` as is (fused experts); our renaming splits them, so the
    stream still fills every vLLM parameter, with the same tensors the full-weight path sends."""
    from transformers import Qwen3OmniMoeThinkerForConditionalGeneration

    model = Qwen3OmniMoeThinkerForConditionalGeneration.from_pretrained(thinker_dir)
    fused = list(model.state_dict().items())
    assert any(name.endswith("mlp.experts.gate_up_proj") for name, _ in fused)
    split = list(vllm_thinker_weights(fused))
    config = json.loads((Path(thinker_dir) / "config.json").read_text())
    config["vision_config"].update(qwen3_vision_overrides(config["vision_config"]))
    _assert_fills_every_vllm_parameter([(name, tuple(t.shape)) for name, t in split], config)
    tensors = dict(split)
    moe = config["text_config"]["moe_intermediate_size"]
    gate_up = model.state_dict()["model.layers.1.mlp.experts.gate_up_proj"]
    assert torch.equal(tensors["thinker.model.layers.1.mlp.experts.2.up_proj.weight"], gate_up[2, moe:])
    # per-expert names pass through unchanged: applying it to the full-weight path's stream changes nothing
    assert [n for n, _ in vllm_thinker_weights((n[len("thinker.") :], t) for n, t in split)] == [n for n, _ in split]


def test_fused_experts_would_be_dropped_by_vllm():
    """Sent as transformers holds them (``experts.gate_up_proj``), vLLM's ``Qwen3MoeModel.load_weights`` finds
    no parameter of that name and skips it silently: why verl's per-expert stream is part of the contract."""
    name = vllm_thinker_weight_name("model.layers.0.mlp.experts.gate_up_proj")
    param, _, _ = vllm_qwen3_omni_load_target(name, 128)
    assert param == "language_model.model.layers.0.mlp.experts.gate_up_proj"
    assert param not in vllm_qwen3_omni_parameters(_released_thinker())


def test_qwen3_omni_non_thinker_weights_are_refused():
    with pytest.raises(ValueError, match="code2wav parameter"):
        vllm_thinker_weight_name("code2wav.decoder.0.weight")
    assert vllm_thinker_weight_name("visual.merger_list.2.mlp.0.bias") == "thinker.visual.merger_list.2.mlp.0.bias"


# ------------------------------------------------------------------------------------------ engine
def test_a_thinker_only_directory_is_served_wrapped(thinker_dir):
    from transformers import AutoConfig, Qwen3OmniMoeConfig

    config = json.loads((Path(thinker_dir) / "config.json").read_text())
    assert vllm_engine_overrides(config) == {"hf_overrides": wrap_thinker_config}
    assert "image_size" not in config["vision_config"]  # transformers 5.10.4 does not write it
    wrapped = wrap_thinker_config(AutoConfig.from_pretrained(thinker_dir))
    assert isinstance(wrapped, Qwen3OmniMoeConfig) and not wrapped.enable_audio_output
    assert wrapped.architectures == ["Qwen3OmniMoeForConditionalGeneration"]
    vision = wrapped.thinker_config.vision_config
    # 64 position rows = an 8 x 8 grid of 16-px patches: image_size 128, as vLLM sizes its table
    assert (vision.image_size, vision.apply_vit_abs_pos_embed) == (128, True)
    assert wrapped.thinker_config.text_config.tie_word_embeddings is False


def test_the_released_full_config_needs_no_override():
    full = {"model_type": "qwen3_omni_moe", "architectures": ["Qwen3OmniMoeForConditionalGeneration"]}
    assert vllm_engine_overrides({**full, "thinker_config": _released_thinker()}) == {}
    thinker = _released_thinker()
    for key in ("image_size", "apply_vit_abs_pos_embed"):
        del thinker["vision_config"][key]
    assert vllm_engine_overrides({**full, "architectures": None, "thinker_config": thinker}) == {
        "hf_overrides": {
            "architectures": ["Qwen3OmniMoeForConditionalGeneration"],
            "thinker_config": {"vision_config": {"image_size": 768, "apply_vit_abs_pos_embed": True}},
        }
    }


def test_vision_fields_that_contradict_the_checkpoint_are_refused():
    vision = _released_thinker()["vision_config"]
    with pytest.raises(ValueError, match="image_size=512 // patch_size=16 gives 1024 position rows"):
        qwen3_vision_overrides({**vision, "image_size": 512})
    with pytest.raises(ValueError, match="apply_vit_abs_pos_embed=false"):
        qwen3_vision_overrides({**vision, "apply_vit_abs_pos_embed": False})
    assert qwen3_vision_overrides(vision) == {}


# ------------------------------------------------------------------------------------------ avconfuse omni-params
def test_parameter_counts_of_the_30b_a3b_thinker_by_hand():
    from verl_avconfuse.omni.qwen3_omni import parameter_counts

    counts = parameter_counts(_released_thinker())
    experts = 128 * 3 * 2048 * 768  # gate, up, down of 128 experts per layer
    layer = 2048 * 4096 * 2 + 2048 * 512 * 2 + 128 * 2 + experts + 128 * 2048 + 2048 * 2  # attention, router, norms
    embeddings = 152_064 * 2048  # embed_tokens and the untied lm_head
    assert counts["thinker.language_model"] == 48 * layer + 2 * embeddings + 2048 == 30_532_646_912
    # 8 of 128 experts per token: 3.35 B, the "A3B"
    assert counts["thinker.language_model.active"] == counts["thinker.language_model"] - 48 * experts * 120 // 128
    assert counts["thinker.language_model.active"] == 3_353_556_992
    assert (
        counts["thinker"] == counts["thinker.language_model"] + counts["thinker.audio_tower"] + counts["thinker.visual"]
    )
    assert (counts["talker"], counts["code2wav"], counts["total"]) == (0, 0, counts["thinker"])
    # vLLM declares the same numbers in other shapes (q/k/v fused, experts packed)
    assert (
        sum(int(np.prod(shape)) for shape in vllm_qwen3_omni_parameters(_released_thinker()).values())
        == counts["thinker"]
    )


def test_parameter_counts_of_the_full_30b_a3b_model():
    from verl_avconfuse.omni.qwen3_omni import parameter_counts

    full = json.loads((FIXTURE_30B.parent / "qwen3_omni_30b_a3b_talker_code2wav.json").read_text())
    counts = parameter_counts({**full, "thinker_config": _released_thinker()})
    assert counts["thinker"] == parameter_counts(_released_thinker())["thinker"] == 31_719_205_488
    assert counts["total"] == counts["thinker"] + counts["talker"] + counts["code2wav"] == 35_259_818_545
    assert (counts["talker"], counts["code2wav"]) == (3_324_596_480, 216_016_577)


def test_cli_reports_a_qwen3_omni_config(tmp_path):
    result = run_python(
        ["-m", "verl_avconfuse.cli", "omni-params", "--config", str(FIXTURE_30B), "--json"], cwd=tmp_path, timeout=180
    )
    assert result.returncode == 0, result.stderr[-2000:]
    counts = json.loads(result.stdout[result.stdout.index("{") :])
    assert counts["thinker.language_model.active"] == 3_353_556_992 and counts["thinker"] == 31_719_205_488
    other = tmp_path / "qwen3_moe.json"
    other.write_text(json.dumps({"model_type": "qwen3_moe"}))
    result = run_python(["-m", "verl_avconfuse.cli", "omni-params", "--config", str(other)], cwd=tmp_path, timeout=180)
    assert result.returncode == 2 and "model_type='qwen3_moe'" in result.stderr
