"""OmniRLDataset: PyAV decoding in both input modes; unusable media dropped and named, never silent."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from verl_avconfuse.integration.omni_dataset import OmniRLDataset, processor_fps

from conftest import SILENT_VIDEO


def _config(in_video: bool, **media):
    return OmegaConf.create(
        {
            "max_prompt_length": 512,
            "filter_overlong_prompts_workers": 1,
            "mm_processor_kwargs": {"use_audio_in_video": in_video, "fps": 2.0},
            "media": {"max_frames": 8, **media},
        }
    )


@pytest.fixture(scope="module")
def processor(tiny_asset):
    import verl  # noqa: F401  (loads the plugin: the Omni processor path)
    from verl.utils import hf_processor

    return hf_processor(tiny_asset("models/omni_thinker"))


@pytest.mark.parametrize(("dataset", "in_video"), [("omni", False), ("omni_in_video", True)])
def test_rows_load_and_decode_audio_and_video(tiny_asset, processor, dataset, in_video):
    data = OmniRLDataset(tiny_asset(f"data/{dataset}/train.parquet"), processor.tokenizer, _config(in_video), processor)
    assert len(data) == 16 and data.skipped_samples == []
    assert data.num_workers is None  # one filter worker runs in this process, never in a forked pool
    messages = data[0]["raw_prompt"]
    images, videos, audios = OmniRLDataset._process_multi_modal_info(messages, 14, data.config)
    assert images is None
    ((frames, metadata),) = videos
    # 2 s clip sampled at the processor's fps
    assert frames.shape[0] == 2 * processor_fps(data.config) and frames.shape[-1] == 3 and frames.dtype == np.uint8
    # metadata describes the source clip (4 fps); the sampled frames are every other one
    assert metadata["fps"] == pytest.approx(4.0) and metadata["frames_indices"] == [0, 2, 4, 6]
    (audio,) = audios  # separate item, or read from the video itself with use_audio_in_video
    assert audio.dtype == np.float32 and abs(len(audio) - 32000) < 400
    assert np.abs(audio).max() > 0.05 or "muted" in messages[0]["content"][0]["video"]


def test_video_without_soundtrack_is_dropped_counted_and_named(tiny_asset, processor, tmp_path):
    frame = pd.read_parquet(tiny_asset("data/omni/train.parquet"))
    silent = SILENT_VIDEO
    broken = tmp_path / "not_a_video.mp4"
    broken.write_text("not media")
    frame.at[1, "videos"] = [str(silent)]
    frame.at[1, "audios"] = [str(silent)]
    frame.at[4, "videos"] = [str(broken)]
    frame.at[4, "audios"] = [str(broken)]
    path = tmp_path / "train.parquet"
    frame.to_parquet(path)
    data = OmniRLDataset(str(path), processor.tokenizer, _config(False), processor)
    assert len(data) == 14
    reasons = {item["index"]: item["reason"] for item in data.skipped_samples}
    assert set(reasons) == {1, 4}
    assert "video_only_no_audio.mp4" in reasons[1] and "audio" in reasons[1]
    assert "not_a_video.mp4" in reasons[4]


def test_audio_in_video_mode_needs_the_soundtrack_of_each_video(tiny_asset, processor, tmp_path):
    frame = pd.read_parquet(tiny_asset("data/omni_in_video/train.parquet"))
    frame.at[0, "videos"] = [str(SILENT_VIDEO)]
    path = tmp_path / "train.parquet"
    frame.to_parquet(path)
    data = OmniRLDataset(str(path), processor.tokenizer, _config(True), processor)
    assert [item["index"] for item in data.skipped_samples] == [0]


def test_relative_media_paths_resolve_against_media_root(tiny_asset, processor, tmp_path):
    frame = pd.read_parquet(tiny_asset("data/omni/train.parquet")).head(2)
    for i in range(2):
        source = frame.at[i, "videos"][0]
        shutil.copy(source, tmp_path / f"clip{i}.mp4")
        frame.at[i, "videos"] = [f"clip{i}.mp4"]
        frame.at[i, "audios"] = [f"clip{i}.mp4"]
    path = tmp_path / "train.parquet"
    frame.to_parquet(path)
    data = OmniRLDataset(str(path), processor.tokenizer, _config(False, root=str(tmp_path)), processor)
    assert len(data) == 2 and not data.skipped_samples


def test_unknown_media_option_is_rejected_by_name(tiny_asset, processor):
    with pytest.raises(ValueError, match="data.media: unknown option"):
        OmniRLDataset(tiny_asset("data/omni/train.parquet"), processor.tokenizer, _config(False, fsp=2), processor)


def test_the_processor_gives_tmrope_positions_to_a_video(processor):
    """verl's hf_processor (patched: verl alone returns None for Omni) binds the thinker's TMRoPE: hand-computed
    3-D positions for "ab <video of one 2x2 merged grid> ab"."""
    import torch
    from transformers import Qwen2_5OmniProcessor

    assert isinstance(processor, Qwen2_5OmniProcessor)
    tok = processor.tokenizer
    bos, video, eos = tok.convert_tokens_to_ids(["<|vision_bos|>", "<|VIDEO|>", "<|vision_eos|>"])
    text = tok("ab", add_special_tokens=False)["input_ids"]
    assert len(text) == 2  # precondition: "ab" is two tokens
    ids = torch.tensor([[*text, bos, *[video] * 4, eos, *text]])
    # grid (t, h, w) = (1, 4, 4) patches, merged 2x2: four video tokens
    positions, delta = processor.get_rope_index(
        ids, None, torch.tensor([[1, 4, 4]]), torch.ones_like(ids), second_per_grids=torch.tensor([1.0])
    )
    assert positions[:, 0].tolist() == [
        [0, 1, 2, 3, 3, 3, 3, 5, 6, 7],  # time: one frame group
        [0, 1, 2, 3, 3, 4, 4, 5, 6, 7],  # height: rows of the merged grid
        [0, 1, 2, 3, 4, 3, 4, 5, 6, 7],  # width: columns
    ]
    assert delta.tolist() == [[8 - 10]]  # next position (max + 1) minus the sequence length
