"""Warm-up SFT: the release's message list -> SFT parquet -> OmniSFTDataset -> verl's SFT trainer on CPU."""

from __future__ import annotations

import json
import math
import re
import shutil
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from verl_avconfuse.data_preprocess import warmup_sft  # noqa: E402
from verl_avconfuse.data_preprocess.common import ConversionError  # noqa: E402
from verl_avconfuse.method.prompts import format_question

from conftest import SILENT_VIDEO, WARMUP_RELEASE, WAV_16K
from fixtures.datasets import WARMUP_JSONL, write_clips

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def release() -> list[dict]:
    return json.loads(WARMUP_RELEASE.read_text())


@pytest.fixture(scope="module")
def warmup(tmp_path_factory, release):
    """The release's warm-up file converted, with a synthetic clip for every video it names."""
    folder = tmp_path_factory.mktemp("warmup")
    ids = sorted(
        {Path(p["audio_url"]).stem for m in release if m["role"] == "user" for p in m["content"] if "audio_url" in p}
    )
    write_clips(folder / "clips", ids)
    result = warmup_sft.convert_warmup(
        WARMUP_RELEASE,
        video_dir=folder / "clips",
        output=folder / "train.parquet",
        relative_paths=True,
    )
    return folder, result


# -------------------------------------------------------------------------------------- conversion


def test_the_release_list_pairs_each_user_turn_with_the_next_assistant_turn(warmup, release):
    folder, result = warmup
    # 78 user and 79 assistant turns: message 110 answers nobody (109 already answered 108)
    assert len(result.rows) == 78
    assert [(d.index, d.role) for d in result.dropped] == [(110, "assistant")]
    assert result.dropped[0].reason == "no user turn to answer (message 109 is an assistant turn)"
    report = json.loads((folder / "train.report.json").read_text())
    assert report["dropped_messages"] == [{"index": 110, "role": "assistant", "reason": result.dropped[0].reason}]
    assert report["rows_written"] == 78 and report["bad_files"] == {}
    first = result.rows[0]
    assert first["messages"] == [
        {
            "role": "user",
            "content": format_question("How many instruments are sounding in the video?", "<video><audio>"),
        },
        {"role": "assistant", "content": release[1]["content"]},
    ]
    assert first["videos"] == first["audios"] == ["00000238.mp4"]
    sources = [row["extra_info"]["source_indices"] for row in result.rows]
    assert sources[54:56] == [[108, 109], [111, 112]]
    assert pd.read_parquet(folder / "train.parquet")["messages"].map(len).tolist() == [2] * 78


def test_jsonl_conversations_are_kept_whole_or_dropped_by_line(tmp_path):
    clips = write_clips(tmp_path / "clips", ["00000001", "00000002"])
    result = warmup_sft.convert_warmup(WARMUP_JSONL, video_dir=clips, output=None, audio_in_video=True)
    assert [(d.index, d.reason.split(":")[0]) for d in result.dropped] == [(3, "line 3")]
    multi = result.rows[1]
    assert [m["role"] for m in multi["messages"]] == ["system", "user", "assistant", "user", "assistant"]
    assert multi["messages"][1]["content"] == format_question("Is the piano playing?", "<video>")
    assert multi["messages"][3]["content"] == format_question("Where is the piano?")
    assert multi["videos"] == [str((clips / "00000002.mp4").resolve())] and multi["audios"] == []


def test_an_audio_only_file_is_an_audio_item_and_bad_media_abort_or_are_reported(tmp_path):
    clips = write_clips(tmp_path / "clips", ["00000001"])
    shutil.copy(WAV_16K, clips / "speech.wav")
    shutil.copy(SILENT_VIDEO, clips / "silent.mp4")
    lines = [
        [
            {
                "role": "user",
                "content": [{"type": "audio", "audio_url": name}, {"type": "text", "text": "What is heard?"}],
            },
            {"role": "assistant", "content": "<answer> a tone </answer>"},
        ]
        for name in ("./00000001.mp4", "speech.wav", "silent.mp4")
    ]
    source = tmp_path / "chat.jsonl"
    source.write_text("".join(json.dumps(line) + "\n" for line in lines))
    out = tmp_path / "sft.parquet"
    with pytest.raises(ConversionError, match=r"1 unusable media file\(s\).*\n  silent.mp4: no audio stream"):
        warmup_sft.convert_warmup(source, video_dir=clips, output=out)
    assert not out.exists()
    result = warmup_sft.convert_warmup(source, video_dir=clips, output=out, skip_bad=True)
    assert [r["messages"][0]["content"].split("\n")[0] for r in result.rows] == ["<video><audio>", "<audio>"]
    assert result.rows[1]["videos"] == [] and result.rows[1]["audios"] == [str((clips / "speech.wav").resolve())]
    report = json.loads((tmp_path / "sft.report.json").read_text())
    assert [d["source_indices"] for d in report["dropped_for_media"]] == [[3]]


# ----------------------------------------------------------------------------------------- dataset


def _data_config(folder: Path, in_video: bool):
    from omegaconf import OmegaConf

    return OmegaConf.create(
        {
            "pad_mode": "no_padding",
            "max_length": 4096,
            "truncation": "error",
            "mm_processor_kwargs": {"use_audio_in_video": in_video, "fps": 2.0},
            "media": {"root": str(folder / "clips"), "max_frames": 4},
        }
    )


@pytest.fixture(scope="module")
def processor(tiny_asset):
    import verl  # noqa: F401  (the plugin: Omni processor with TMRoPE)
    from verl.utils import hf_processor

    return hf_processor(tiny_asset("models/omni_thinker"))


@pytest.mark.parametrize("in_video", [False, True], ids=["audio-item", "audio-in-video"])
def test_dataset_items_carry_video_and_audio_features_and_train_only_the_replies(warmup, processor, in_video):
    from vllm_prompt_model import audio_token_count

    from verl_avconfuse.integration.omni_sft_dataset import OmniSFTDataset

    folder, result = warmup
    dataset = OmniSFTDataset(
        str(folder / "train.parquet"), processor.tokenizer, _data_config(folder, in_video), processor
    )
    assert len(dataset) == 78 and dataset.skipped_samples == []
    item = dataset[0]
    features = item["multi_modal_inputs"]
    assert {"pixel_values_videos", "video_grid_thw", "input_features", "feature_attention_mask"} <= set(features)
    ids = item["input_ids"]
    tokenizer = processor.tokenizer
    audio_id, video_id = (tokenizer.convert_tokens_to_ids(t) for t in ("<|AUDIO|>", "<|VIDEO|>"))
    n_audio, n_video = int((ids == audio_id).sum()), int((ids == video_id).sum())
    assert n_audio == audio_token_count(int(features["feature_attention_mask"].sum())) > 0
    assert n_video == int(features["video_grid_thw"].prod()) // 4 > 0
    media_positions = torch.nonzero((ids == audio_id) | (ids == video_id)).flatten()
    kinds = ids[media_positions]
    switches = int((kinds[1:] != kinds[:-1]).sum())
    # separate items: one video run then one audio run; in the video: 2 s chunks interleave (1 s clip: 1 chunk)
    assert switches == 1
    first_audio = int(torch.nonzero(ids == audio_id)[0])
    in_vision_block = ids[:first_audio].tolist().count(tokenizer.convert_tokens_to_ids("<|vision_eos|>")) == 0
    assert in_vision_block is in_video
    trained = tokenizer.decode(ids[item["loss_mask"].bool()])
    assert trained == result.rows[0]["messages"][1]["content"] + "<|im_end|>"
    positions = item["position_ids"]
    assert positions.shape == (4, len(ids)) and torch.equal(positions[0], torch.arange(len(ids)))
    assert not torch.equal(positions[1], positions[0])  # TMRoPE: media compress the text positions


def test_dataset_refuses_right_padding(warmup, processor):
    from verl_avconfuse.integration.omni_sft_dataset import OmniSFTDataset

    folder, _ = warmup
    config = _data_config(folder, False)
    config.pad_mode = "right"
    with pytest.raises(ValueError, match="pad_mode must be 'no_padding'"):
        OmniSFTDataset(str(folder / "train.parquet"), processor.tokenizer, config, processor)


# ------------------------------------------------------------------------------ verl's SFT trainer


#: The trainer's step-1 loss and the recomputation below run the same fp32 forward of the same weights on
#: the same tokens (the trainer's composed data config, its sampler's first batch); they differ only in
#: summation order (FSDP2, the thread count) and in the logged loss being one fp32 number (ulp 1e-6 at 10,
#: i.e. 1e-7 relative). Measured: 1e-8 relative. 1e-5 leaves two orders of magnitude for thread counts and
#: CPUs, and stays far below what the test shows it detects: the media dropped, another batch, or the mean
#: of per-sequence means instead of verl's per-token mean each move the tiny thinker's loss by >= 1%.
SFT_LOSS_REL_TOL = 1e-5


def _reply_nll(dataset, model_path: str, batch: list[int], with_media: bool) -> list[tuple[float, int]]:
    """(summed NLL, token count) of the trained tokens of each item of ``batch``, with an fp32 HF forward.

    Mirrors verl's ``sft_loss`` (verl/workers/utils/losses.py, no_padding): log-probability of token t+1 at
    position t, the dataset's ``loss_mask`` shifted by one, summed over the batch's trained tokens.
    """
    from transformers import Qwen2_5OmniThinkerForConditionalGeneration

    model = Qwen2_5OmniThinkerForConditionalGeneration.from_pretrained(
        model_path, attn_implementation="sdpa", dtype=torch.float32
    ).eval()
    sums = []
    with torch.no_grad():
        for index in batch:
            item = dataset[index]
            ids = item["input_ids"][None]
            features = item["multi_modal_inputs"] if with_media else {}
            logits = model(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                position_ids=item["position_ids"][:, None],
                **features,
            ).logits[0, :-1]
            log_probs = torch.log_softmax(logits.float(), -1).gather(-1, ids[0, 1:, None]).squeeze(-1)
            mask = item["loss_mask"][1:].bool()
            sums.append((-float(log_probs[mask].double().sum()), int(mask.sum())))
    return sums


def _token_mean(sums: list[tuple[float, int]]) -> float:
    """verl's reduction: every trained token of the global batch weighs the same (sum / batch_num_tokens)."""
    return sum(s for s, _ in sums) / sum(n for _, n in sums)


def test_verl_sft_trainer_trains_the_omni_thinker_on_video_and_audio(warmup, processor, tiny_asset, tmp_path):
    import yaml
    from omegaconf import OmegaConf
    from safetensors.torch import load_file
    from torch.utils.data import DistributedSampler

    from verl_avconfuse.integration.omni_sft_dataset import OmniSFTDataset

    from conftest import free_port, run_python

    folder, _ = warmup
    model_path = tiny_asset("models/omni_thinker")
    checkpoints = tmp_path / "ckpt"
    overrides = [
        "+recipe=sft_warmup",
        f"model.path={model_path}",
        f"data.train_files={folder / 'train.parquet'}",
        f"data.media.root={folder / 'clips'}",
        "data.media.max_frames=4",
        "data.max_length=4096",
        "data.train_batch_size=4",
        "data.num_workers=0",
        # the CPU platform, fp32, no flash-attn, no compile
        "trainer.device=cpu",
        "model.override_config.attn_implementation=sdpa",
        "model.enable_gradient_checkpointing=false",
        "engine.use_torch_compile=false",
        "engine.model_dtype=fp32",
        "engine.dtype=float32",
        # verl's FSDP engine computes in bf16 unless told otherwise (param_dtype defaults to bf16 whatever
        # model_dtype says); the recomputation below is fp32, so the trainer must be too
        "+engine.mixed_precision.param_dtype=fp32",
        "+engine.mixed_precision.reduce_dtype=fp32",
        "+engine.mixed_precision.buffer_dtype=fp32",
        # a tiny random model needs a visible step
        "optim.lr=1e-3",
        "trainer.total_training_steps=2",
        "trainer.logger=[console]",
        f"trainer.default_local_dir={checkpoints}",
    ]
    env = {
        "VERL_PLATFORM": "cpu",
        "RANK": "0",
        "LOCAL_RANK": "0",
        "WORLD_SIZE": "1",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(free_port()),
    }
    run = run_python(["-m", "verl.trainer.sft_trainer", *overrides], cwd=tmp_path, env=env, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    losses = {int(step): float(loss) for step, loss in re.findall(r"step:(\d+) - .*?train/loss:([-\d.e]+)", run.stdout)}
    assert sorted(losses) == [1, 2] and all(math.isfinite(v) for v in losses.values())

    # Step 1 is the first sampler batch with the initial weights: its loss is the token-mean NLL of the
    # replies given the video frames and the soundtrack (see SFT_LOSS_REL_TOL for the tolerance). The
    # dataset is built from the trainer's own composed data config: a media option left at another value
    # (e.g. max_pixels, which resamples the frames) changes the loss by more than the tolerance.
    job = run_python(["-m", "verl.trainer.sft_trainer", *overrides, "--cfg", "job"], cwd=tmp_path, env=env)
    assert job.returncode == 0, job.stderr[-3000:]
    data_config = OmegaConf.create(yaml.safe_load(job.stdout)["data"])
    dataset = OmniSFTDataset(str(folder / "train.parquet"), processor.tokenizer, data_config, processor)
    # verl's SFT trainer: DistributedSampler(shuffle=True, drop_last=True), default seed, epoch 0
    sampler = DistributedSampler(dataset, shuffle=True, num_replicas=1, rank=0, drop_last=True)
    sampler.set_epoch(0)
    order = list(sampler)
    first, other = order[:4], order[4:8]
    with_media = _reply_nll(dataset, model_path, first, True)
    expected = _token_mean(with_media)
    tolerance = SFT_LOSS_REL_TOL * expected
    print(f"SFT step-1 loss {losses[1]!r}, recomputed {expected!r}", file=sys.stderr)
    assert losses[1] == pytest.approx(expected, abs=tolerance)
    # The check has power: had the trainer dropped the media, fed another batch or averaged per sequence,
    # the logged loss would be outside the tolerance.
    alternatives = {
        "without media": _token_mean(_reply_nll(dataset, model_path, first, False)),
        "another batch": _token_mean(_reply_nll(dataset, model_path, other, True)),
        "mean of the sequence means": sum(s / n for s, n in with_media) / len(with_media),
    }
    print(f"SFT step-1 alternatives: {alternatives}", file=sys.stderr)
    for name, value in alternatives.items():
        assert abs(value - expected) > 10 * tolerance, (name, value, expected)

    saved = checkpoints / "global_step_2" / "huggingface"
    assert (saved / "processor_config.json").exists()
    before = load_file(str(Path(model_path) / "model.safetensors"))
    after = load_file(str(saved / "model.safetensors"))
    assert before.keys() == after.keys()
    assert any(not torch.equal(before[k], after[k].to(before[k].dtype)) for k in before)
    # the saved thinker is what the RL stage and the evaluation load
    from verl_avconfuse.evaluation.backends import EvalRequest, HFOmniBackend

    clip = str(folder / "clips" / "00000238.mp4")
    (reply,) = HFOmniBackend(str(saved), device="cpu", max_frames=4).generate(
        [EvalRequest("x", "Which?", clip, clip, 8)]
    )
    assert isinstance(reply, str)
