"""load_video_frames: sampling rule, skip/seek path == full decode, Qwen2-VL sizing, VideoMetadata."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from verl_avconfuse.media import (
    MediaError,
    MissingStreamError,
    load_video_frames,
    smart_resize,
    to_video_metadata,
    video_metadata_dict,
    write_synthetic_video,
)

from conftest import MEDIA

# Real files: these two ship in tests/fixtures/media/; the 60 s drill clip is conftest's drill_clip (shared/).
SILENT_VIDEO = "video_only_no_audio.mp4"
WAV = "clip_16k_mono.wav"


@pytest.fixture(scope="module")
def synthetic_clip(tmp_path_factory) -> Path:
    # 3 s at 10 fps, x264 with B-frames and a keyframe every second.
    return write_synthetic_video(tmp_path_factory.mktemp("video") / "clip.mp4", duration_s=3.0, fps=10, size=(96, 64))


def test_fps2_on_a_5s_clip_samples_every_half_second():
    frames, info = load_video_frames(MEDIA / SILENT_VIDEO, fps=2.0)
    assert frames.shape == (10, 224, 224, 3) and frames.dtype == np.uint8
    assert info.timestamps == pytest.approx([0.5 * k for k in range(10)])
    assert info.frame_indices == tuple(range(0, 150, 15))  # 30 fps: t = k/2 is frame 15k
    assert info.fps == 2.0 and info.requested_fps == 2.0
    assert (info.native_fps, info.native_num_frames, info.duration_s) == (30.0, 150, pytest.approx(5.0))
    assert (info.width, info.height) == (224, 224)
    assert len({frame.tobytes() for frame in frames}) == 10  # ten different pictures


def test_drill_clip_at_fps2_covers_the_whole_minute(drill_clip):
    frames, info = load_video_frames(drill_clip, fps=2.0)
    # Targets 0, 0.5, ..., 60.0 (< 60.033 s): 121 frames, frame 30k at 60 fps.
    assert frames.shape == (121, 360, 480, 3)
    assert info.frame_indices == tuple(range(0, 3601, 30))


def test_time_window(drill_clip):
    frames, info = load_video_frames(drill_clip, fps=2.0, start_s=30.0, end_s=32.0)
    assert len(frames) == 4
    assert info.timestamps == pytest.approx([30.0, 30.5, 31.0, 31.5])
    assert info.frame_indices == (1800, 1830, 1860, 1890)
    assert (info.start_s, info.end_s) == (30.0, 32.0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"fps": 0.2},  # one frame every 5 s: seeks between keyframes
        {"fps": 2.0, "start_s": 40.0, "end_s": 43.0},  # seeks to the window, then skips non-reference frames
        {"fps": 5.3, "max_frames": 7, "max_pixels": 100352},
    ],
)
def test_skip_and_seek_path_equals_decoding_every_frame_on_the_drill_clip(drill_clip, kwargs):
    fast_frames, fast = load_video_frames(drill_clip, **kwargs)
    ref_frames, ref = load_video_frames(drill_clip, strategy="sequential", **kwargs)
    np.testing.assert_array_equal(fast_frames, ref_frames)
    assert fast.frame_indices == ref.frame_indices
    assert fast.timestamps == pytest.approx(ref.timestamps)


@pytest.mark.parametrize(
    "kwargs", [{"fps": 2.0}, {"fps": 0.5}, {"fps": 3.0, "start_s": 0.7}, {"fps": 10.0}, {"fps": 25.0}]
)
def test_skip_and_seek_path_equals_decoding_every_frame_on_a_b_frame_clip(synthetic_clip, kwargs):
    fast_frames, fast = load_video_frames(synthetic_clip, **kwargs)
    ref_frames, ref = load_video_frames(synthetic_clip, strategy="sequential", **kwargs)
    np.testing.assert_array_equal(fast_frames, ref_frames)
    assert fast.frame_indices == ref.frame_indices


def test_nearest_frame_rule_hand_computed(synthetic_clip):
    # Targets 0.7, 1.0333, 1.3667, 1.7 (< 2.0) on a 10 fps clip: nearest frames 7, 10, 14, 17.
    _, info = load_video_frames(synthetic_clip, fps=3.0, start_s=0.7, end_s=2.0)
    assert info.frame_indices == (7, 10, 14, 17)
    assert info.timestamps == pytest.approx([0.7, 1.0, 1.4, 1.7])


def test_sampling_faster_than_the_video_repeats_frames(synthetic_clip):
    # Targets k/20 s on a 10 fps clip: odd targets sit halfway between two frames; ties take the earlier.
    frames, info = load_video_frames(synthetic_clip, fps=20.0, end_s=1.0)
    assert info.frame_indices == tuple(k // 2 for k in range(20))
    np.testing.assert_array_equal(frames[0], frames[1])


def test_max_frames_subsamples_uniformly():
    frames, info = load_video_frames(MEDIA / SILENT_VIDEO, fps=2.0, max_frames=4)
    # linspace(0, 9, 4) over the 10 targets -> targets 0, 3, 6, 9 -> t = 0, 1.5, 3, 4.5 s.
    assert info.timestamps == pytest.approx([0.0, 1.5, 3.0, 4.5])
    assert info.frame_indices == (0, 45, 90, 135)
    assert info.fps == pytest.approx(2.0 * 4 / 10)
    full, _ = load_video_frames(MEDIA / SILENT_VIDEO, fps=2.0)
    np.testing.assert_array_equal(frames, full[[0, 3, 6, 9]])


@pytest.mark.parametrize(
    ("height", "width", "bounds", "expected"),
    [
        (360, 480, {"max_pixels": 100352}, (252, 364)),  # beta = sqrt(172800/100352): floor(9.80)=9, floor(13.06)=13
        (224, 224, {"min_pixels": 90000}, (308, 308)),  # beta = sqrt(90000/50176): ceil(10.71) = 11
        (224, 224, {"max_pixels": 10000}, (84, 84)),  # 224 / 2.24 = 100 -> floor(3.57) = 3
        (100, 150, {"max_pixels": 10**6}, (112, 140)),  # only rounding: round(3.57)=4, round(5.36)=5
        (224, 224, {"min_pixels": 56 * 56, "max_pixels": 10**6}, (224, 224)),  # already fine: unchanged
    ],
)
def test_smart_resize_hand_computed(height, width, bounds, expected):
    assert smart_resize(height, width, **bounds) == expected


def test_smart_resize_factor_is_a_parameter():
    assert smart_resize(360, 480, max_pixels=100352, size_factor=14) == (266, 364)
    assert smart_resize(360, 480, max_pixels=100352, size_factor=32) == (256, 352)


@settings(max_examples=300, deadline=None)
@given(
    height=st.integers(1, 2000),
    width=st.integers(1, 2000),
    min_pixels=st.integers(1, 600 * 600),
    extra=st.integers(0, 1000 * 1000),
    factor=st.sampled_from([14, 28, 32]),
)
def test_smart_resize_properties_and_agreement_with_transformers(height, width, min_pixels, extra, factor):
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize as hf_smart_resize

    assume(max(height, width) / min(height, width) <= 200)
    max_pixels = min_pixels + extra
    h, w = smart_resize(height, width, min_pixels=min_pixels, max_pixels=max_pixels, size_factor=factor)
    assert h % factor == 0 and w % factor == 0 and h >= factor and w >= factor
    # The processor applies transformers' rule to every frame: ours must give the same size.
    assert (h, w) == hf_smart_resize(height, width, factor=factor, min_pixels=min_pixels, max_pixels=max_pixels)
    rounded_area = round(height / factor) * factor * round(width / factor) * factor
    if rounded_area > max_pixels and min(height, width) * math.sqrt(max_pixels / (height * width)) >= factor:
        assert h * w <= max_pixels  # shrunk into the budget
    if rounded_area < min_pixels:
        assert h * w >= min_pixels  # grown to the floor
    if min_pixels <= h * w <= max_pixels:
        # A size inside the bounds is a fixed point, so the processor does not resize our frames again.
        assert smart_resize(h, w, min_pixels=min_pixels, max_pixels=max_pixels, size_factor=factor) == (h, w)
    if min(h, w) > factor and min(height, width) >= factor:
        # Aspect ratio kept up to the grid: each side is off by less than one factor step after scaling.
        assert abs(math.log((h / w) / (height / width))) < 2 * factor / min(h, w) + 2 * factor / min(height, width)


def test_resized_frames_keep_the_picture():
    native, _ = load_video_frames(MEDIA / SILENT_VIDEO, fps=1.0)
    small, info = load_video_frames(MEDIA / SILENT_VIDEO, fps=1.0, max_pixels=10000)
    large, large_info = load_video_frames(MEDIA / SILENT_VIDEO, fps=1.0, min_pixels=90000)
    assert small.shape == (5, 84, 84, 3) and (info.height, info.width) == (84, 84)
    assert large.shape == (5, 308, 308, 3) and (large_info.height, large_info.width) == (308, 308)
    assert (info.native_height, info.native_width) == (224, 224)
    # Same picture at another size: per-channel means agree to a few grey levels.
    for resized in (small, large):
        diff = resized.mean(axis=(1, 2)) - native.mean(axis=(1, 2))
        assert np.abs(diff).max() < 3.0


def test_video_metadata_for_transformers():
    from transformers.video_utils import VideoMetadata

    _, info = load_video_frames(MEDIA / SILENT_VIDEO, fps=2.0)
    meta = to_video_metadata(info)
    assert isinstance(meta, VideoMetadata)
    assert dict(meta) == video_metadata_dict(info)
    assert (meta.total_num_frames, meta.fps, meta.width, meta.height) == (150, 30.0, 224, 224)
    assert meta.duration == pytest.approx(5.0)
    assert meta.frames_indices == list(range(0, 150, 15))
    assert meta.timestamps == pytest.approx(list(info.timestamps))
    assert meta.sampled_fps == pytest.approx(2.0)


def test_qwen2_vl_video_processor_accepts_the_frames_without_resizing_them():
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    bounds = {"min_pixels": 56 * 56, "max_pixels": 150 * 150}
    frames, info = load_video_frames(MEDIA / SILENT_VIDEO, fps=2.0, **bounds)
    assert frames.shape == (10, 140, 140, 3)
    processed = Qwen2VLVideoProcessor()(
        videos=[frames], video_metadata=[to_video_metadata(info)], do_sample_frames=False, return_tensors="np", **bounds
    )
    # Grid = (T / temporal patch 2, H / 14, W / 14): the processor kept our 140x140 size.
    assert processed["video_grid_thw"].tolist() == [[5, 10, 10]]


def test_errors_name_the_file():
    with pytest.raises(MissingStreamError, match=rf"{WAV}: no video stream"):
        load_video_frames(MEDIA / WAV)
    with pytest.raises(MediaError, match=rf"{SILENT_VIDEO}: fps=0"):
        load_video_frames(MEDIA / SILENT_VIDEO, fps=0)
    with pytest.raises(MediaError, match="past the end of the video"):
        load_video_frames(MEDIA / SILENT_VIDEO, start_s=6.0)
    with pytest.raises(MediaError, match="max_frames"):
        load_video_frames(MEDIA / SILENT_VIDEO, max_frames=0)
