"""Dataset converters: release formats -> verl rows, subsets, media checks, atomic writes, OmniRLDataset."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest

from verl_avconfuse.data_preprocess import avhbench, avqa, music_avqa  # noqa: E402
from verl_avconfuse.data_preprocess.common import (  # noqa: E402
    ConversionError,
    atomic_path,
    convert,
    parse_stringified_list,
    select_candidates,
)
from verl_avconfuse.method.prompts import format_question

from fixtures.datasets import (
    AVHBENCH_JSON_DIR,
    AVHBENCH_VIDEOS,
    AVQA_JSON,
    AVQA_VIDEOS,
    MUSIC_AVQA_JSON,
    MUSIC_AVQA_VIDEOS,
    copy_real_clip,
    write_clips,
)


@pytest.fixture(scope="module")
def video_dir(tmp_path_factory):
    from fixtures.datasets import OFFICIAL_VIDEOS

    return write_clips(
        tmp_path_factory.mktemp("clips"), MUSIC_AVQA_VIDEOS + AVQA_VIDEOS + AVHBENCH_VIDEOS + OFFICIAL_VIDEOS
    )


def _convert(module, source, video_dir, out=None, **kwargs):
    return convert(module.load_samples(source, video_dir), video_dir=video_dir, output=out, progress=False, **kwargs)


# ------------------------------------------------------------------------------------ Music-AVQA


def test_music_avqa_fills_slots_in_order_and_shows_tokens_with_spaces(video_dir):
    rows = _convert(music_avqa, MUSIC_AVQA_JSON, video_dir).rows
    by_qid = {row["extra_info"]["question_id"]: row for row in rows}
    assert len(rows) == 11 and 10 not in by_qid  # question 10 is flagged question_deleted
    comparative = by_qid[2]
    assert comparative["extra_info"]["question"] == "Is the acoustic guitar louder than the piano?"
    assert comparative["prompt"] == [
        {"role": "user", "content": format_question("Is the acoustic guitar louder than the piano?", "<video><audio>")}
    ]
    assert comparative["reward_model"] == {"style": "rule", "ground_truth": "yes"}
    assert comparative["extra_info"]["question_type"] == "Audio/Comparative"
    assert comparative["videos"] == comparative["audios"] == [str((video_dir / "00000001.mp4").resolve())]
    four_slots = by_qid[8]["extra_info"]["question"]
    assert four_slots == "Is the piano on the left more rhythmic than the violin on the right?"
    # the ground truth keeps the release's token; answers_match treats "_" as a space
    assert by_qid[9]["reward_model"]["ground_truth"] == "acoustic_guitar"
    assert by_qid[9]["extra_info"] | {"index": None} == {
        "index": None,
        "split": "test",
        "question": "What is the third instrument that comes in?",
        "question_type": "Audio-Visual/Temporal",
        "video_id": "00000003",
        "question_id": 9,
    }
    kept_deleted = music_avqa.load_samples(MUSIC_AVQA_JSON, video_dir, keep_deleted=True)
    assert len(kept_deleted) == 12


def test_music_avqa_slot_value_mismatch_names_the_question(tmp_path, video_dir):
    records = json.loads(MUSIC_AVQA_JSON.read_text())
    records[3]["templ_values"] = "[]"
    bad = tmp_path / "avqa-train.json"
    bad.write_text(json.dumps(records))
    with pytest.raises(ConversionError, match=r"avqa-train.json\[3\] \(question_id 4\).*1 slot\(s\).*0 value"):
        music_avqa.load_samples(bad, video_dir)


def test_music_avqa_unknown_type_pair_is_rejected(tmp_path, video_dir):
    records = json.loads(MUSIC_AVQA_JSON.read_text())
    records[0]["type"] = '["Audio", "Location"]'
    bad = tmp_path / "avqa-val.json"
    bad.write_text(json.dumps(records))
    with pytest.raises(ConversionError, match=r"avqa-val.json\[0\]: field 'type'"):
        music_avqa.load_samples(bad, video_dir)


def test_stringified_lists_accept_json_and_python_literals():
    assert parse_stringified_list('["violin", "piano"]', where="x") == ["violin", "piano"]
    assert parse_stringified_list("['violin', 'piano']", where="x") == ["violin", "piano"]
    assert parse_stringified_list("[]", where="x") == []
    with pytest.raises(ConversionError, match=r"f: .*'violin'.* is not a list"):
        parse_stringified_list("'violin'", where="f")
    with pytest.raises(ConversionError, match="not a stringified list"):
        parse_stringified_list("[violin", where="f")


def test_music_avqa_official_quirks_full_width_question_mark_and_trailing_space(video_dir):
    from fixtures.datasets import MUSIC_AVQA_OFFICIAL_JSON

    samples = music_avqa.load_samples(MUSIC_AVQA_OFFICIAL_JSON, video_dir, modalities=None)
    by_key = [(s.video_id, s.extra["question_id"], s.question, s.ground_truth) for s in samples]
    assert by_key[1:3] == [
        ("00005778", 1138, "How many sounding bagpipe in the video?", "two"),
        ("00005778", 1138, "How many sounding bagpipe in the video?", "four"),  # kept: the release has both
    ]
    assert by_key[4][2] == "Are there cello and accordion sound?"  # was "... sound? "
    assert music_avqa.clean_question("  Which is louder？  ") == "Which is louder?"


def test_music_avqa_script_keeps_audio_visual_questions_by_default(tmp_path, video_dir, capsys):
    from fixtures.datasets import MUSIC_AVQA_OFFICIAL_JSON

    out = tmp_path / "train.parquet"
    argv = ["--input", str(MUSIC_AVQA_OFFICIAL_JSON), "--video-dir", str(video_dir), "--out", str(out), "--no-progress"]
    assert music_avqa.main(argv) == 0
    types = [info["question_type"] for info in pd.read_parquet(out)["extra_info"]]
    assert types == ["Audio-Visual/Counting"] * 3 + ["Audio-Visual/Temporal"]
    assert music_avqa.main([*argv, "--modality", "all"]) == 0 and len(pd.read_parquet(out)) == 5
    assert music_avqa.main([*argv, "--modality", "Sound"]) == 1
    assert "--modality 'Sound': expected 'all' or one of ['Audio', 'Visual', 'Audio-Visual']" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ AVQA


def test_avqa_short_and_none_options_are_padded_as_the_official_preprocessing(video_dir):
    from fixtures.datasets import AVQA_QUIRKS_JSON

    samples, notes = avqa.load_samples_with_report(AVQA_QUIRKS_JSON, video_dir)
    assert samples[1].options == ["piano", "null", "drum", "violin"]
    assert samples[2].options == ["yes", "no", "maybe", "NULL"] and samples[2].ground_truth == "no"
    assert [n["problem"] for n in notes] == [
        "multi_choice has 4 option(s), 1 of them None or empty",
        "multi_choice has 3 option(s)",
    ]
    kept, skipped = avqa.load_samples_with_report(AVQA_QUIRKS_JSON, video_dir, options="skip")
    assert [s.extra["question_id"] for s in kept] == [201, 204] and len(skipped) == 2


def test_avqa_lists_lettered_options_and_grades_by_option_text(video_dir):
    from verl_avconfuse.method.answers import answers_match

    rows = _convert(avqa, AVQA_JSON, video_dir).rows
    first = rows[0]
    assert first["prompt"][0]["content"] == format_question(
        "What is making the sound in the video?\nA. dog\nB. cat\nC. car\nD. bird\n"
        "Answer with the option's letter or text.",
        "<video><audio>",
    )
    assert first["reward_model"]["ground_truth"] == "car"
    info = first["extra_info"]
    assert info["options"] == ["dog", "cat", "car", "bird"] and info["answer_index"] == 2
    assert info["question"] == "What is making the sound in the video?" and info["question_type"] == "Both/Which"
    assert first["videos"] == [str((video_dir / "vid_a_000010.mp4").resolve())]
    for reply, right in (("C", True), ("car", True), ("C. car", True), ("B. car", False), ("dog", False)):
        assert answers_match(reply, first["reward_model"]["ground_truth"], info["options"]) is right


def test_avqa_answer_index_outside_the_options_is_rejected(tmp_path, video_dir):
    records = json.loads(AVQA_JSON.read_text())
    records[2]["answer"] = 4
    bad = tmp_path / "val_qa.json"
    bad.write_text(json.dumps(records))
    with pytest.raises(ConversionError, match=r"val_qa.json\[2\]: field 'answer' 4 is not an index into 4 options"):
        avqa.load_samples(bad, video_dir)


def test_avqa_bad_options_and_unknown_question_type_name_the_record(tmp_path, video_dir):
    records = json.loads(AVQA_JSON.read_text())
    bad = tmp_path / "val_qa.json"
    bad.write_text(json.dumps([dict(records[0], multi_choice="dog, cat")]))
    with pytest.raises(
        ConversionError, match=r"val_qa.json\[0\]: field 'multi_choice' must be a list of option texts, got str"
    ):
        avqa.load_samples(bad, video_dir)
    bad.write_text(json.dumps([records[0], dict(records[1], question_type="Whom")]))
    with pytest.raises(
        ConversionError, match=r"val_qa.json\[1\]: field 'question_type' 'Whom' is not one of \['Which', "
    ):
        avqa.load_samples(bad, video_dir)


# -------------------------------------------------------------------------------------- AVHBench


def test_avhbench_reads_per_video_files_lowercases_labels_and_skips_captions(video_dir):
    rows = _convert(avhbench, AVHBENCH_JSON_DIR, video_dir).rows
    assert [r["extra_info"]["item_id"] for r in rows] == [
        "00191#0",
        "00191#1",
        "00191#2",
        "00191#3",
        "00191#4",
        "00191_swap#0",
    ]
    assert [r["reward_model"]["ground_truth"] for r in rows] == ["yes", "no", "yes", "no", "yes", "no"]
    swap = rows[-1]
    assert swap["extra_info"]["task"] == "AV Matching"
    # every item is asked about the clip its own video_id names: the swapped one here
    assert swap["videos"] == [str((video_dir / "00191_swap.mp4").resolve())]
    assert swap["prompt"][0]["content"].startswith(
        "<video><audio>\nAre the contexts of audio and visual content matching? Answer yes or no."
    )
    with_captions = avhbench.load_samples(AVHBENCH_JSON_DIR, video_dir, include_captioning=True)
    caption = [s for s in with_captions if s.question_type == "AV Captioning"]
    assert len(with_captions) == 7 and caption[0].ground_truth.startswith("A young man with no shirt")


def test_avhbench_public_qa_json_is_one_file_without_swap_ids(tmp_path):
    from fixtures.datasets import AVHBENCH_QA_JSON

    clips = write_clips(tmp_path, ["00191", "02060"])
    samples = avhbench.load_samples(AVHBENCH_QA_JSON, clips)
    assert [s.extra["item_id"] for s in samples] == [f"00191#{k}" for k in range(5)] + ["02060#0", "02060#1"]


def test_avhbench_accepts_one_concatenated_list_and_rejects_unknown_tasks(tmp_path, video_dir):
    items = json.loads((AVHBENCH_JSON_DIR / "00191.json").read_text())
    combined = tmp_path / "qa.json"
    combined.write_text(json.dumps(items))
    assert len(avhbench.load_samples(combined, video_dir)) == 5
    items[1]["task"] = "AV Counting"
    combined.write_text(json.dumps(items))
    with pytest.raises(ConversionError, match=r"qa.json\[1\]: unknown task 'AV Counting'.*Align-FT name"):
        avhbench.load_samples(combined, video_dir)


# ---------------------------------------------------------------------------- modes and subsets


def test_audio_in_video_mode_prompts_with_video_only(video_dir):
    rows = _convert(music_avqa, MUSIC_AVQA_JSON, video_dir, audio_in_video=True).rows
    assert all(r["prompt"][0]["content"].startswith("<video>\n") for r in rows)
    assert all("audios" not in r for r in rows)


def test_relative_paths_are_relative_to_the_video_dir(video_dir):
    rows = _convert(avqa, AVQA_JSON, video_dir, relative_paths=True).rows
    assert [r["videos"] for r in rows] == [["vid_a_000010.mp4"]] * 2 + [["vid_b_000020.mp4"]] * 2


def test_first_and_seeded_subset_are_deterministic(video_dir):
    samples = music_avqa.load_samples(MUSIC_AVQA_JSON, video_dir)
    first = convert(samples, video_dir=video_dir, output=None, first=3, progress=False)
    assert [s.index for s in first.kept] == [0, 1, 2]
    order, wanted = select_candidates(11, subset=4, seed=7)
    assert wanted == 4 and sorted(order) == list(range(11))
    picks = [
        [
            s.extra["question_id"]
            for s in convert(samples, video_dir=video_dir, output=None, subset=4, seed=seed, progress=False).kept
        ]
        for seed in (7, 7, 8)
    ]
    assert picks[0] == picks[1] and len(picks[0]) == 4 and picks[0] == sorted(picks[0])
    assert picks[0] != picks[2]
    with pytest.raises(ConversionError, match="mutually exclusive"):
        select_candidates(11, first=2, subset=2)


# ------------------------------------------------------------------------------ media and writes


@pytest.fixture
def broken_video_dir(tmp_path, video_dir, shared_dir):
    """The Music-AVQA clips with 00000002 silent (a real video without audio) and 00000003 not media."""
    folder = tmp_path / "clips"
    shutil.copytree(video_dir, folder)
    copy_real_clip(shared_dir, "video_only_no_audio.mp4", folder / "00000002.mp4")
    (folder / "00000003.mp4").write_text("this is not a video")
    return folder


def test_bad_media_abort_before_writing_and_every_file_is_named(broken_video_dir, tmp_path):
    out = tmp_path / "out" / "train.parquet"
    with pytest.raises(ConversionError) as error:
        _convert(music_avqa, MUSIC_AVQA_JSON, broken_video_dir, out)
    message = str(error.value)
    assert "2 unusable media file(s)" in message and "nothing was written" in message
    assert "00000002.mp4: no audio stream" in message and "00000003.mp4: not a readable media file" in message
    assert not out.parent.exists()  # not even the output folder was created


def test_skip_bad_backfills_the_subset_and_reports_what_was_dropped(broken_video_dir, tmp_path):
    out = tmp_path / "train.parquet"
    result = _convert(music_avqa, MUSIC_AVQA_JSON, broken_video_dir, out, first=3, skip_bad=True)
    # questions 0, 1 are on the good clip 00000001; 2, 3 on the silent one; 4 on the broken one; 6 on 00000001
    assert [s.index for s in result.kept] == [0, 1, 6]
    frame = pd.read_parquet(out)
    assert frame["extra_info"].map(lambda e: e["question_id"]).tolist() == [1, 2, 7]
    report = json.loads((tmp_path / "train.report.json").read_text())
    assert report["rows_written"] == 3 and report["requested"] == 3
    assert [d["index"] for d in report["dropped"]] == [2, 3, 4, 5]
    assert "no audio stream" in report["dropped"][0]["reason"]
    assert sorted(report["bad_files"]) == [
        str(broken_video_dir / "00000002.mp4"),
        str(broken_video_dir / "00000003.mp4"),
    ]


def test_an_interrupted_write_leaves_neither_output_nor_temp_file(tmp_path):
    out = tmp_path / "train.parquet"
    with pytest.raises(KeyboardInterrupt), atomic_path(out) as tmp:
        tmp.write_bytes(b"PAR1 half a file")
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []
    out.write_text("previous run")
    with pytest.raises(RuntimeError), atomic_path(out) as tmp:
        tmp.write_text("new")
        raise RuntimeError("disk full")
    assert out.read_text() == "previous run" and list(tmp_path.iterdir()) == [out]


def test_script_main_writes_parquet_and_exits_1_with_the_reason(video_dir, broken_video_dir, tmp_path, capsys):
    out = tmp_path / "avhbench.parquet"
    args = ["--input", str(AVHBENCH_JSON_DIR), "--video-dir", str(video_dir), "--out", str(out), "--no-progress"]
    assert avhbench.main(args) == 0
    assert len(pd.read_parquet(out)) == 6
    bad = ["--input", str(MUSIC_AVQA_JSON), "--video-dir", str(broken_video_dir), "--out", str(tmp_path / "m.parquet")]
    assert music_avqa.main([*bad, "--no-progress"]) == 1
    assert "00000003.mp4" in capsys.readouterr().err and not (tmp_path / "m.parquet").exists()


# ---------------------------------------------------------------------------- verl's dataset


@pytest.mark.parametrize("module", [music_avqa, avqa, avhbench], ids=lambda m: m.DATA_SOURCE)
@pytest.mark.parametrize("in_video", [False, True], ids=["audio-item", "audio-in-video"])
def test_converted_rows_load_in_omni_rl_dataset(module, in_video, video_dir, tmp_path, tiny_asset, shared_dir):
    import verl  # noqa: F401  (loads the plugin: the Omni processor)
    from omegaconf import OmegaConf
    from verl.utils import hf_processor

    from verl_avconfuse.integration.omni_dataset import OmniRLDataset

    source = {"music_avqa": MUSIC_AVQA_JSON, "avqa": AVQA_JSON, "avhbench": AVHBENCH_JSON_DIR}[module.DATA_SOURCE]
    clips = tmp_path / "clips"
    shutil.copytree(video_dir, clips)
    if module is avqa:  # one real clip (60 s, 480x360, 44.1 kHz stereo AAC)
        copy_real_clip(shared_dir, "combined_00000810_drill.mp4", clips / "vid_b_000020.mp4")
    out = tmp_path / "data.parquet"
    result = _convert(module, source, clips, out, audio_in_video=in_video, relative_paths=True)
    processor = hf_processor(tiny_asset("models/omni_thinker"))
    config = OmegaConf.create(
        {
            "max_prompt_length": 4096,
            "filter_overlong_prompts_workers": 1,
            "mm_processor_kwargs": {"use_audio_in_video": in_video, "fps": 1.0},
            "media": {"root": str(clips), "max_frames": 4, "max_pixels": 3136},
        }
    )
    data = OmniRLDataset(str(out), processor.tokenizer, config, processor)
    assert len(data) == len(result.rows) and data.skipped_samples == []
    item = data[len(data) - 1]
    assert item["data_source"] == module.DATA_SOURCE
    _, videos, audios = OmniRLDataset._process_multi_modal_info(item["raw_prompt"], 14, data.config)
    ((frames, _),) = videos
    (audio,) = audios  # a separate item, or the video's own soundtrack
    assert frames.ndim == 4 and frames.shape[-1] == 3 and audio.ndim == 1 and audio.size > 8000
