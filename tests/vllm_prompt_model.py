"""A model of vLLM 0.24.0's prompt updates for the Qwen2.5-Omni thinker, for the contract tests only.

vLLM cannot run here; ``tests/test_omni_vllm_contract.py`` checks that the collapsed prompt the rollout
sends (``verl_avconfuse.omni.vllm_contract.collapse_placeholders``), expanded the way vLLM expands it
(:func:`predict_vllm_prompt_ids`), is exactly the prompt the actor trains on. Nothing in the package
needs this model, so it lives with the tests.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from verl_avconfuse.omni.vllm_contract import SECONDS_PER_CHUNK, TOKENS_PER_SECOND, OmniTokenIds

#: ``vision_config.spatial_merge_size`` of Qwen2.5-Omni: 2x2 patches per video/image token.
SPATIAL_MERGE_SIZE = 2


def audio_token_count(num_mel_frames: int) -> int:
    """Audio tokens the thinker's encoder makes from ``num_mel_frames`` Whisper frames (10 ms each).

    Two stride-2 stages: ``((L - 1) // 2 + 1 - 2) // 2 + 1``, as in ``Qwen2_5OmniProcessor.__call__`` and
    vLLM's ``qwen2_audio._get_feat_extract_output_lengths``: 25 tokens per second of audio.
    """
    return ((int(num_mel_frames) - 1) // 2 + 1 - 2) // 2 + 1


def _interleaved_region(
    token_ids: OmniTokenIds,
    grid_thw: Sequence[int],
    n_audio: int,
    second_per_grid: float,
    spatial_merge_size: int,
    tokens_per_second: int,
    seconds_per_chunk: float,
) -> list[int]:
    """vLLM 0.24's audio-in-video replacement of one ``<|VIDEO|>`` (``omni_get_updates_use_audio_in_video``).

    Video grids are bucketed by their TMRoPE time ``int(k * second_per_grid * tokens_per_second)`` into
    chunks of ``tokens_per_second * seconds_per_chunk``; empty buckets count (``split_list_into_ranges``),
    each bucket is followed by up to one chunk of audio, and leftover audio goes at the end.
    """
    grid_t, grid_h, grid_w = (int(x) for x in grid_thw)
    per_chunk = int(tokens_per_second * seconds_per_chunk)
    times = [int(k * second_per_grid * tokens_per_second) for k in range(grid_t)]
    buckets = [0] * (max(times) // per_chunk + 1)
    for time in times:
        buckets[time // per_chunk] += 1
    region, added = [token_ids.audio_bos], 0
    for grids_in_bucket in buckets:
        region += [token_ids.video] * (grids_in_bucket * grid_h * grid_w // spatial_merge_size**2)
        take = min(per_chunk, n_audio - added)
        region += [token_ids.audio] * take
        added += take
    region += [token_ids.audio] * (n_audio - added)
    region.append(token_ids.audio_eos)
    return region


def predict_vllm_prompt_ids(
    collapsed_ids: Sequence[int],
    token_ids: OmniTokenIds,
    *,
    audio_token_counts: Sequence[int] = (),
    image_token_counts: Sequence[int] = (),
    video_grid_thw: Sequence[Sequence[int]] = (),
    use_audio_in_video: bool = False,
    second_per_grid_ts: Sequence[float] | None = None,
    spatial_merge_size: int = SPATIAL_MERGE_SIZE,
    tokens_per_second: int = TOKENS_PER_SECOND,
    seconds_per_chunk: float = SECONDS_PER_CHUNK,
) -> list[int]:
    """The prompt vLLM 0.24.0 builds from ``collapsed_ids`` (a model of its prompt updates, for checks).

    ``audio_token_counts[k]``: tokens of the k-th audio item (:func:`audio_token_count`); with
    ``use_audio_in_video`` the k-th audio belongs to the k-th video. ``image_token_counts[k]``:
    ``prod(image_grid_thw[k]) // merge**2``. ``video_grid_thw[k]``: ``(t, h, w)`` in patches, as the HF
    processor returns it. ``second_per_grid_ts[k]``: what vLLM reads from ``mm_processor_kwargs`` (1.0 when
    None, as vLLM). When the HF processor's chunking agrees (``second_per_grid <= seconds_per_chunk``), the
    result equals the HF-expanded prompt the actor trains on.
    """
    t = token_ids
    seconds = list(second_per_grid_ts) if second_per_grid_ts else [1.0] * len(video_grid_thw)
    out: list[int] = []
    n_audio = n_image = n_video = 0
    try:
        for tok in collapsed_ids.tolist() if hasattr(collapsed_ids, "tolist") else collapsed_ids:
            tok = int(tok)
            if tok == t.audio:
                out += [t.audio] * int(audio_token_counts[n_audio])
                n_audio += 1
            elif tok == t.image:
                out += [t.image] * int(image_token_counts[n_image])
                n_image += 1
            elif tok == t.video:
                grid = video_grid_thw[n_video]
                if use_audio_in_video:
                    out += _interleaved_region(
                        t,
                        grid,
                        int(audio_token_counts[n_video]),
                        float(seconds[n_video]),
                        spatial_merge_size,
                        tokens_per_second,
                        seconds_per_chunk,
                    )
                else:
                    out += [t.video] * (int(np.prod([int(x) for x in grid])) // spatial_merge_size**2)
                n_video += 1
            else:
                out.append(tok)
    except IndexError:
        raise ValueError(
            f"collapsed_ids has more placeholders than media: {n_audio} audio, {n_image} image, {n_video} video "
            f"consumed, given {len(audio_token_counts)} / {len(image_token_counts)} / {len(video_grid_thw)}"
        ) from None
    expected_audio = n_video if use_audio_in_video else n_audio
    if (len(audio_token_counts), len(image_token_counts), len(video_grid_thw)) != (expected_audio, n_image, n_video):
        raise ValueError(
            f"collapsed_ids has {expected_audio} audio, {n_image} image, {n_video} video placeholders; given "
            f"{len(audio_token_counts)} / {len(image_token_counts)} / {len(video_grid_thw)} media"
        )
    return out
