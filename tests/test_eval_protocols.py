"""The one evaluation harness on excerpts of the official files: duplicate and contradictory records,
full-width questions, AVQA's option collisions and short options, AVHBench's QA.json and Align-FT names,
the two answer rules, the two prompts, the muted setting and the chart's graceful absence."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from verl_avconfuse.evaluation.backends import PredictionsBackend
from verl_avconfuse.evaluation.matching import is_correct, polarity, release_match
from verl_avconfuse.evaluation.runner import evaluate
from verl_avconfuse.evaluation.tasks import TASKS, LoadOptions
from verl_avconfuse.method.prompts import format_question

from fixtures.datasets import (
    AVHBENCH_ALIGN_FT_JSON,
    AVHBENCH_QA_JSON,
    AVHBENCH_VIDEOS,
    AVQA_QUIRKS_JSON,
    AVQA_VIDEOS,
    MUSIC_AVQA_OFFICIAL_JSON,
    MUTED_EXCERPT_JSON,
    OFFICIAL_VIDEOS,
    write_clips,
)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    return write_clips(tmp_path_factory.mktemp("clips"), OFFICIAL_VIDEOS + AVQA_VIDEOS + AVHBENCH_VIDEOS)


def _predictions(folder: Path, replies: dict[str, str]) -> PredictionsBackend:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "predictions.jsonl"
    path.write_text("".join(json.dumps({"id": k, "prediction": v}) + "\n" for k, v in replies.items()))
    return PredictionsBackend(path)


class RecordingBackend:
    """Forwards to a backend and records the questions it was asked."""

    def __init__(self, backend):
        self.backend, self.name, self.questions = backend, backend.name, []

    def generate(self, requests):
        self.questions += [r.question for r in requests]
        return self.backend.generate(requests)


# ------------------------------------------------------------------------------------ answer rules


def test_release_rule_is_two_way_substring_without_spaces_and_underscores():
    assert release_match("There are two instruments.", "two")
    assert release_match("acoustic guitar", "acoustic_guitar")
    assert release_match("piano", "no")  # the release's known failure: "no" is inside "piano"
    assert not release_match("", "no") and not release_match(None, "no")
    assert not is_correct("There are two instruments.", "two", "strict")
    assert not is_correct("piano", "no", "strict")
    assert polarity("piano", "strict") is None and polarity("piano", "release", "no") == "no"
    assert polarity("Yes, there is.", "strict") == "yes"


def test_option_index_decides_when_two_options_normalise_alike():
    options = ("dog", "cat", "The dog", "bird")
    from verl_avconfuse.method.answers import answers_match

    assert not answers_match("C", "The dog", list(options))  # by text the truth resolves to option A
    assert is_correct("C", "The dog", "strict", options, answer_index=2)
    assert is_correct("The dog", "The dog", "strict", options, answer_index=2)  # the exact option text
    assert not is_correct("A", "The dog", "strict", options, answer_index=2)


# ------------------------------------------------------------------------------------ Music-AVQA


MUSIC_REPLIES = {
    "00000100/35": "There are three violins.",  # AV/Counting "three": release right, strict wrong
    "00005778/1138": "<answer>two</answer>",  # AV/Counting "two": right
    "00005778/1138#2": "<answer>two</answer>",  # the same pair's second record, "four": wrong
    "00008294/1464": "<answer>piano</answer>",  # AV/Temporal "flute": wrong
    "00005077/4164": "yes",  # Audio/Counting "yes": right
}


def test_official_music_avqa_file_with_a_contradictory_duplicate_is_scored_and_counted(tmp_path, clips):
    backend = RecordingBackend(_predictions(tmp_path, MUSIC_REPLIES))
    out = tmp_path / "out"
    result = evaluate(TASKS["music-avqa"], backend, MUSIC_AVQA_OFFICIAL_JSON, clips, out, match="both", progress=False)
    assert [d["id"] for d in result["docs"]] == list(MUSIC_REPLIES)
    assert [d["ground_truth"] for d in result["docs"]] == ["three", "two", "four", "flute", "yes"]
    # Full-width "？" and the trailing space are gone; the paper prompt is the bare question.
    assert backend.questions[1] == "How many sounding bagpipe in the video?"
    assert backend.questions[4] == "Are there cello and accordion sound?"
    strict, release = result["metrics_by_match"]["strict"], result["metrics_by_match"]["release"]
    assert (strict["Audio-Visual/Counting"]["correct"], strict["Audio-Visual/Counting"]["n"]) == (1, 3)
    assert (release["Audio-Visual/Counting"]["correct"], release["Audio-Visual/Counting"]["n"]) == (2, 3)
    assert strict["Audio-Visual/Avg"]["accuracy"] == 25.0 and release["Audio-Visual/Avg"]["accuracy"] == 50.0
    assert strict["Audio/Counting"]["accuracy"] == 100.0 and strict["Visual/Avg"]["n"] == 0
    assert strict["Overall"]["accuracy"] == 40.0 and release["Overall"]["accuracy"] == 60.0
    assert result["metrics"] == strict
    report = result["data_report"]
    assert (report["duplicate_keys"], report["duplicate_records"], report["contradictory_keys"]) == (1, 1, 1)
    assert report["contradictory_examples"][0]["ground_truths"] == ["two", "four"]
    table = (out / "music-avqa.md").read_text()
    assert "1 release id(s) appear more than once (1 extra record(s)), 1 of them with different answers" in table
    # A-Count A-Comp A-Avg V-Count V-Local V-Avg AV-Exist AV-Local AV-Count AV-Comp AV-Temp AV-Avg Overall
    assert "| 100.00 | – | 100.00 | – | – | – | – | – | 33.33 | – | 0.00 | 25.00 | 40.00 |" in table
    assert "| 100.00 | – | 100.00 | – | – | – | – | – | 66.67 | – | 0.00 | 50.00 | 60.00 |" in table
    assert "| Qwen2.5-Omni-3B + RL-CoMM (paper) |" in table and "79.46" in table
    assert result["published"] is None and "(the published set" not in table  # not recognisable by content
    assert (out / "music-avqa.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    again = evaluate(TASKS["music-avqa"], backend, MUSIC_AVQA_OFFICIAL_JSON, clips, out, progress=False)
    assert again["generated"] == 0 and [d["id"] for d in again["docs"]] == list(MUSIC_REPLIES)


def test_rl_comm_prompt_appends_the_format_and_is_not_served_from_the_paper_cache(tmp_path, clips):
    backend = RecordingBackend(_predictions(tmp_path, MUSIC_REPLIES))
    out = tmp_path / "out"
    evaluate(TASKS["music-avqa"], backend, MUSIC_AVQA_OFFICIAL_JSON, clips, out, progress=False)
    result = evaluate(
        TASKS["music-avqa"], backend, MUSIC_AVQA_OFFICIAL_JSON, clips, out, prompt="rl-comm", progress=False
    )
    assert result["generated"] == 5  # another question: asked again, not read from the cache
    assert backend.questions[-4] == format_question("How many sounding bagpipe in the video?")


def test_modality_filter_keeps_one_modality(clips):
    docs, _ = TASKS["music-avqa"].load_docs(MUSIC_AVQA_OFFICIAL_JSON, clips, LoadOptions(modalities=("Audio",)))
    assert [d.id for d in docs] == ["00005077/4164"]


# ------------------------------------------------------------------------------------------ AVQA


AVQA_REPLIES = {"201": "C", "202": "A. piano", "203": "B", "204": "The bus"}


def test_avqa_grades_by_answer_index_pads_short_options_and_reports_per_question_type(tmp_path, clips):
    backend = RecordingBackend(_predictions(tmp_path, AVQA_REPLIES))
    result = evaluate(TASKS["avqa"], backend, AVQA_QUIRKS_JSON, clips, tmp_path / "o", match="both", progress=False)
    assert [d["correct"] for d in result["docs"]] == [True, True, True, False]
    strict, release = result["metrics_by_match"]["strict"], result["metrics_by_match"]["release"]
    assert strict["Overall"] == {"accuracy": 75.0, "correct": 3, "n": 4}
    assert release["Overall"]["correct"] == 1  # only "A. piano" contains its truth's text
    assert [strict[f"type/{k}"]["accuracy"] for k in ("Which", "Come From", "Why", "Happening", "When")] == [
        100.0,
        100.0,
        100.0,
        0.0,
        None,
    ]
    assert strict["relation/View"] == {"accuracy": 50.0, "correct": 1, "n": 2}
    # the official preprocessing: a None option is "null", a missing one "NULL", four candidates each
    assert "\nB. null\n" in backend.questions[1] and "\nD. NULL\n" in backend.questions[2]
    notes = result["data_report"]["short_options"]
    assert notes["count"] == 2 and [r["id"] for r in notes["records"]] == [202, 203]
    assert "2 record(s) with None or fewer than 4 options: padded" in (tmp_path / "o" / "avqa.md").read_text()


def test_avqa_skip_mode_leaves_short_option_records_out_and_says_so(tmp_path, clips):
    backend = _predictions(tmp_path, AVQA_REPLIES)
    result = evaluate(
        TASKS["avqa"],
        backend,
        AVQA_QUIRKS_JSON,
        clips,
        tmp_path / "o",
        load_options=LoadOptions("skip"),
        progress=False,
    )
    assert [d["id"] for d in result["docs"]] == ["201", "204"]
    assert result["metrics"]["Overall"]["accuracy"] == 50.0
    assert result["data_report"]["short_options"]["action"] == "left out"


# -------------------------------------------------------------------------------------- AVHBench


def test_avhbench_public_qa_json_has_per_task_precision_recall(tmp_path, clips):
    replies = {
        "00191#0": "Yes",  # V->A yes: tp
        "00191#1": "No",  # V->A no: tn
        "00191#2": "yes",  # A->V yes: tp
        "00191#3": "yes",  # A->V no: fp
        "00191#4": "no",  # AV matching yes: fn
        "02060#0": "Yes, the car.",  # V->A yes: tp
        "02060#1": "no",  # AV matching no: tn
    }
    result = evaluate(TASKS["avhbench"], _predictions(tmp_path, replies), AVHBENCH_QA_JSON, clips, tmp_path / "o",
                      progress=False)  # fmt: skip
    m = result["metrics"]
    v2a, a2v, match = m["V->A hallucination"], m["A->V hallucination"], m["AV matching"]
    assert (v2a["accuracy"], v2a["precision"], v2a["recall"], v2a["yes_rate"]) == (
        100.0,
        100.0,
        100.0,
        pytest.approx(200 / 3),
    )
    assert (a2v["accuracy"], a2v["precision"], a2v["recall"], a2v["f1"], a2v["yes_rate"]) == (
        50.0, 50.0, 100.0, pytest.approx(200 / 3), 100.0
    )  # fmt: skip
    assert (match["accuracy"], match["precision"], match["recall"], match["yes_rate"]) == (50.0, 0.0, 0.0, 0.0)


def test_avhbench_align_ft_task_names_are_mapped(clips):
    from verl_avconfuse.data_preprocess import avhbench

    samples = avhbench.load_samples(AVHBENCH_ALIGN_FT_JSON, clips)
    assert [s.question_type for s in samples] == [
        "Video-driven Audio Hallucination",
        "Audio-only Hallucination",
        "Audio-driven Video Hallucination",
        "Video-only Hallucination",
        "AV Matching",
    ]
    assert [s.extra["item_id"] for s in samples] == [f"02060#{k}" for k in range(5)]
    docs, _ = TASKS["avhbench"].load_docs(AVHBENCH_ALIGN_FT_JSON, clips, LoadOptions())
    assert docs[1].category == "audio-only hallucination"


# ---------------------------------------------------------------------------------- AV-ConfuseBench


def test_muted_setting_under_both_rules_shows_the_release_rule_counting_piano_as_no(tmp_path, clips):
    replies = {
        "muted-00000-000001": "<answer>no</answer>",
        "muted-00001-000002": "piano",
        "muted-00002-000003": "Yes, there is.",
    }
    backend = RecordingBackend(_predictions(tmp_path, replies))
    result = evaluate(TASKS["avconfuse-muted"], backend, MUTED_EXCERPT_JSON, clips, tmp_path / "o", match="both",
                      progress=False)  # fmt: skip
    assert (
        backend.questions[0].startswith("This is a video of audio corruption")
        and "<answer>" not in backend.questions[0]
    )
    strict, release = result["metrics_by_match"]["strict"], result["metrics_by_match"]["release"]
    assert (strict["muted_accuracy"], strict["paper_yes_rate"], strict["balanced_accuracy"]) == (50.0, 50.0, 75.0)
    assert strict["yes_rate"] == pytest.approx(100 / 3) and strict["other_rate"] == pytest.approx(100 / 3)
    assert (release["muted_accuracy"], release["paper_yes_rate"]) == (100.0, 0.0)
    assert result["published"] is False and result["paper"] is None


def test_a_missing_matplotlib_costs_the_chart_only(tmp_path, clips, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    out = tmp_path / "o"
    result = evaluate(TASKS["avqa"], _predictions(tmp_path, AVQA_REPLIES), AVQA_QUIRKS_JSON, clips, out, progress=False)
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ['avqa: chart not written: matplotlib is missing (pip install "verl-avconfuse[plots]")']
    assert "chart" not in result["files"] and not (out / "avqa.png").exists()
    assert json.loads((out / "avqa.results.json").read_text())["metrics"]["Overall"]["correct"] == 3


def test_bench_eval_is_an_alias_of_the_muted_task(tmp_path, clips, monkeypatch, capsys):
    from verl_avconfuse import cli

    monkeypatch.setitem(
        cli.COMMANDS, "bench", (("verl_avconfuse.bench.cli", "verl_avconfuse.evaluation.cli"), "AV-ConfuseBench")
    )
    monkeypatch.setitem(cli.COMMANDS, "eval", ("verl_avconfuse.evaluation.cli", "evaluate a model"))
    replies = {"muted-00000-000001": "no", "muted-00001-000002": "yes", "muted-00002-000003": "yes"}
    backend = _predictions(tmp_path, replies)
    common = ["--video-dir", str(clips), "--backend", f"jsonl:{backend.path}", "--no-progress"]
    argv = ["bench", "eval", "--setting", "muted", "--questions", str(MUTED_EXCERPT_JSON), *common]
    assert cli.main([*argv, "--out", str(tmp_path / "bench")]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["task"] == "avconfuse-muted" and summary["metrics"]["muted_accuracy"] == 50.0
    assert (
        cli.main(["eval", "avconfuse-muted", "--data", str(MUTED_EXCERPT_JSON), *common, "--out", str(tmp_path / "e")])
        == 0
    )
    assert (tmp_path / "e" / "avconfuse-muted.results.json").read_bytes().count(b'"muted_accuracy": 50.0') >= 1
    capsys.readouterr()
    modified = ["eval", "avconfuse-modified", "--data", "published", *common, "--out", str(tmp_path / "m")]
    assert cli.main(modified) == 2  # a usage error (docs/cli.md), found before anything runs
    assert (
        capsys.readouterr().err.strip()
        == "avconfuse eval: error: avconfuse-modified: needs a judge (--judge offline or openai:URL#MODEL)"
    )
    assert not (tmp_path / "m").exists()  # nothing created for a refused run


def test_a_damaged_cache_line_is_one_error_naming_file_and_line(tmp_path, clips):
    out = tmp_path / "o"
    out.mkdir()
    backend = _predictions(tmp_path, AVQA_REPLIES)
    (out / "avqa.predictions.jsonl").write_text('{"id": "201", "backend": "x"}\n{"id": "202"}\n')
    with pytest.raises(
        ValueError, match=r"avqa.predictions.jsonl:1: expected an object with 'id' and a string 'prediction'"
    ):
        evaluate(TASKS["avqa"], backend, AVQA_QUIRKS_JSON, clips, out, progress=False)


def test_both_rules_are_kept_per_doc(tmp_path, clips):
    result = evaluate(TASKS["avqa"], _predictions(tmp_path, AVQA_REPLIES), AVQA_QUIRKS_JSON, clips, tmp_path / "o",
                      match="both", progress=False)  # fmt: skip
    assert [(d["correct_strict"], d["correct_release"]) for d in result["docs"]] == [
        (True, False),
        (True, True),
        (True, False),
        (False, False),
    ]
    assert (
        "| jsonl:" in (tmp_path / "o" / "avqa.md").read_text()
        and "(release match) | 25.00 |" in (tmp_path / "o" / "avqa.md").read_text()
    )
