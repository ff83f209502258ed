"""The benchmarks, declared lmms-eval style: how docs are read, asked, scored and aggregated.

A :class:`Task` bundles ``load_docs`` (the published file -> :class:`EvalDoc` s, through the dataset's
converter in ``data_preprocess/`` or :mod:`verl_avconfuse.bench.schemas`, so training and evaluation
read a release the same way), ``process_results`` (one reply -> a :class:`ScoredDoc`), ``aggregate``
(scored docs -> metrics), the summary columns and the paper's rows. The runner
(:mod:`~verl_avconfuse.evaluation.runner`), the prediction cache, the judge and the report writer are
shared; adding a benchmark never touches them.

Prompts (``--prompt``): ``paper`` (default) asks the benchmark's own question as published (Music-AVQA's
filled template, AVQA's question with lettered options, AVHBench's ``text``, AV-ConfuseBench's
``question``), the protocol of the paper's base-model rows; ``rl-comm`` appends the RL-CoMM format
instruction (:func:`verl_avconfuse.prompts.format_question`), as the policy was trained.

Answers: :mod:`~verl_avconfuse.evaluation.matching` (``--match strict|release|both``).

Metrics are percentages (0-100) with the counts they come from:

- ``music-avqa``: accuracy per (modality, type) cell, per modality (``Audio/Avg`` ...) and ``Overall``,
  each over *questions* (correct / asked), exactly as the official ``net_grd_avst/main_avst.py`` test
  prints them (not means of the per-type accuracies).
- ``avqa``: accuracy, and per ``question_type`` (the eight types of the official ``validate.py``);
  per ``question_relation`` as extra cells.
- ``avhbench``: per yes/no task: accuracy and, with "yes" as the positive class, precision, recall, F1
  and the yes-rate, as AVHBench's leaderboard reports them. A reply that is neither yes nor no is wrong
  and counts as neither. Captioning items are not evaluated.
- ``avconfuse-muted``: the paper's Acc (right answers on the "no" items) and Yes% (100 - Acc), the share
  of replies that say yes / no / neither, accuracy over all items and balanced accuracy when the set has
  control ("yes") items, mean P(yes) with ``yes_prob``; per ``instruments_len`` (or per answer).
- ``avconfuse-modified``: A-Acc / V-Acc, the means of the judge's 0-5 scores over judged items, failures
  counted; per ``sound_type``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from verl_avconfuse.bench.report import PAPER_RESULTS as AVCONFUSE_PAPER
from verl_avconfuse.evaluation.matching import extract_answer, is_correct, polarity
from verl_avconfuse.prompts import format_question

__all__ = [
    "PROMPT_STYLES",
    "TASKS",
    "EvalDoc",
    "LoadOptions",
    "ScoredDoc",
    "Task",
    "get_task",
    "process_results",
]

PROMPT_STYLES = ("paper", "rl-comm")


@dataclass(frozen=True)
class LoadOptions:
    """How a task reads its file: AVQA's short-option handling, Music-AVQA's modality filter."""

    avqa_options: str = "pad"
    modalities: tuple[str, ...] | None = None


@dataclass(frozen=True)
class EvalDoc:
    """One benchmark question, ready to ask.

    Attributes:
        id: unique within the task and stable across re-runs (the prediction cache key).
        question: what the benchmark asks, verbatim (the ``paper`` prompt).
        video: the clip (its soundtrack is the audio).
        ground_truth: the reference answer (modified setting: the annotation).
        category: the metric group the doc counts in (e.g. ``"Audio-Visual/Temporal"``).
        record_key: the release's own id of the record (duplicates share it), for the data report.
        options: multiple-choice option texts, else ``None``; ``answer_index`` the right one.
        train_text: the question as the RL-CoMM prompt wraps it (``rl-comm``; default ``question``).
    """

    id: str
    question: str
    video: str
    ground_truth: str
    category: str
    record_key: str = ""
    options: tuple[str, ...] | None = None
    answer_index: int | None = None
    train_text: str | None = None
    #: Secondary groupings reported as extra cells (AVQA: its question_relation).
    tags: dict[str, str] = field(default_factory=dict, compare=False)
    meta: dict[str, Any] = field(default_factory=dict, compare=False)

    def prompt(self, style: str = "paper") -> str:
        if style == "paper":
            return self.question.strip()
        if style == "rl-comm":
            return format_question(self.train_text or self.question)
        raise ValueError(f"--prompt: expected one of {PROMPT_STYLES}, got {style!r}")


@dataclass(frozen=True)
class ScoredDoc:
    """A reply graded under one answer rule."""

    id: str
    category: str
    prediction: str
    answer: str | None
    correct: bool
    well_formed: bool
    ground_truth: str = ""
    polarity: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)
    tags: dict[str, str] = field(default_factory=dict, compare=False)


def process_results(
    doc: EvalDoc, reply: str, rule: str = "strict", *, strict_format: bool = False, extra: dict | None = None
) -> ScoredDoc:
    """Grade one reply under ``rule`` (shared by every task with a reference answer)."""
    from verl_avconfuse.rewards import parse_response

    answer = extract_answer(reply, strict_format)
    yes_no = doc.ground_truth in ("yes", "no")
    return ScoredDoc(
        id=doc.id,
        category=doc.category,
        prediction=reply,
        answer=answer,
        correct=is_correct(answer, doc.ground_truth, rule, doc.options, doc.answer_index),
        well_formed=parse_response(reply).well_formed,
        ground_truth=doc.ground_truth,
        polarity=polarity(answer, rule, doc.ground_truth) if yes_no else None,
        extra=dict(extra or {}),
        tags=dict(doc.tags),
    )


def _percent(part: int, whole: int) -> float | None:
    return 100.0 * part / whole if whole else None


def accuracy_cell(scored: Sequence[ScoredDoc]) -> dict[str, Any]:
    correct = sum(s.correct for s in scored)
    return {"accuracy": _percent(correct, len(scored)), "correct": correct, "n": len(scored)}


def format_rate(scored: Sequence[ScoredDoc]) -> dict[str, Any]:
    formed = sum(s.well_formed for s in scored)
    return {"rate": _percent(formed, len(scored)), "well_formed": formed, "n": len(scored)}


@dataclass(frozen=True)
class Task:
    """A benchmark (module docstring).

    ``columns``: the summary table's cells, in order, as ``(metric key, header)``; a metric is a cell dict
    (its ``accuracy``, else ``value``, is shown) or a number. ``paper_rows``: the paper's Qwen2.5-Omni-3B
    numbers by the same keys, shown next to ours unless ``is_published(docs)`` says the docs are not the
    published set. ``judged``: replies are scored by a judge (the runner calls it).
    """

    name: str
    description: str
    load_docs: Callable[[Path, Path, LoadOptions], tuple[list[EvalDoc], dict[str, Any]]]
    aggregate: Callable[[Sequence[ScoredDoc]], dict[str, Any]]
    columns: tuple[tuple[str, str], ...]
    process_results: Callable[..., ScoredDoc] = process_results
    max_new_tokens: int = 256
    #: The column whose value is the task's headline number (for logs).
    headline: str = "Overall"
    paper_rows: dict[str, dict[str, float | None]] = field(default_factory=dict)
    #: ``True``/``False`` when the published file can be recognised (AV-ConfuseBench, by content), ``None``
    #: when it cannot (public benchmarks: the paper's rows are shown as a reference either way).
    is_published: Callable[[Sequence[EvalDoc]], bool | None] = lambda docs: None
    judged: bool = False
    #: A yes/no task whose P(yes) the runner may read (``yes_prob``, HF backend).
    yes_prob: bool = False
    #: The chart's y range (percent tasks: 100; the judge's scale: 5).
    chart_max: float = 100.0
    #: Its published file ships with the package (``--data published``).
    published_data: Callable[[], Path] | None = None


def _unique_ids(keys: Sequence[str]) -> list[str]:
    """The release's ids made unique and stable: a key seen before gets ``#2``, ``#3`` ... in file order."""
    seen: dict[str, int] = {}
    ids = []
    for key in keys:
        seen[key] = seen.get(key, 0) + 1
        ids.append(key if seen[key] == 1 else f"{key}#{seen[key]}")
    return ids


def _docs_from_samples(
    samples,
    *,
    category: Callable[[Any], str],
    key_of: Callable[[Any], str],
    paper_text: Callable[[Any], str],
    tags: Callable[[Any], dict[str, str]] = lambda s: {},
) -> list[EvalDoc]:
    keys = [key_of(s) for s in samples]
    return [
        EvalDoc(
            id=doc_id,
            question=paper_text(s),
            video=os.fspath(s.video),
            ground_truth=s.ground_truth,
            category=category(s),
            record_key=key,
            options=tuple(s.options) if s.options else None,
            answer_index=s.extra.get("answer_index"),
            train_text=s.prompt_text,
            tags=tags(s),
            meta={"video_id": s.video_id, "index": s.index, **s.extra},
        )
        for s, key, doc_id in zip(samples, keys, _unique_ids(keys), strict=True)
    ]


# ------------------------------------------------------------------------------------ Music-AVQA

#: Music-AVQA's table: (modality, type) cells then the modality average, in the paper's order.
MUSIC_AVQA_COLUMNS: tuple[tuple[str, str], ...] = (
    ("Audio/Counting", "A Count"),
    ("Audio/Comparative", "A Comp"),
    ("Audio/Avg", "A Avg"),
    ("Visual/Counting", "V Count"),
    ("Visual/Location", "V Local"),
    ("Visual/Avg", "V Avg"),
    ("Audio-Visual/Existential", "AV Exist"),
    ("Audio-Visual/Location", "AV Local"),
    ("Audio-Visual/Counting", "AV Count"),
    ("Audio-Visual/Comparative", "AV Comp"),
    ("Audio-Visual/Temporal", "AV Temp"),
    ("Audio-Visual/Avg", "AV Avg"),
    ("Overall", "Overall"),
)


def _music_avqa_docs(data: Path, video_dir: Path, options: LoadOptions) -> tuple[list[EvalDoc], dict]:
    from verl_avconfuse.data_preprocess import music_avqa

    samples = music_avqa.load_samples(data, video_dir, modalities=options.modalities)
    docs = _docs_from_samples(
        samples,
        category=lambda s: s.question_type,
        key_of=lambda s: f"{s.video_id}/{s.extra['question_id']}",
        paper_text=lambda s: s.question,
    )
    return docs, {}


def _music_avqa_metrics(scored: Sequence[ScoredDoc]) -> dict[str, Any]:
    from verl_avconfuse.data_preprocess.music_avqa import QUESTION_TYPES

    metrics: dict[str, Any] = {}
    for modality, kinds in QUESTION_TYPES.items():
        for kind in kinds:
            metrics[f"{modality}/{kind}"] = accuracy_cell([s for s in scored if s.category == f"{modality}/{kind}"])
        metrics[f"{modality}/Avg"] = accuracy_cell([s for s in scored if s.category.split("/")[0] == modality])
    metrics["Overall"] = accuracy_cell(scored)
    metrics["format_rate"] = format_rate(scored)
    return metrics


# ------------------------------------------------------------------------------------------ AVQA


def _avqa_docs(data: Path, video_dir: Path, options: LoadOptions) -> tuple[list[EvalDoc], dict]:
    from verl_avconfuse.data_preprocess import avqa

    samples, notes = avqa.load_samples_with_report(data, video_dir, options=options.avqa_options)
    docs = _docs_from_samples(
        samples,
        category=lambda s: s.extra["avqa_question_type"],
        key_of=lambda s: str(s.extra["question_id"]),
        paper_text=lambda s: s.prompt_text,
        tags=lambda s: {"relation": s.extra["question_relation"]},
    )
    report = {}
    if notes:
        action = "padded as the official preprocessing does" if options.avqa_options == "pad" else "left out"
        report["short_options"] = {"count": len(notes), "action": action, "records": notes}
    return docs, report


def _avqa_metrics(scored: Sequence[ScoredDoc]) -> dict[str, Any]:
    from verl_avconfuse.data_preprocess.avqa import QUESTION_TYPES

    metrics: dict[str, Any] = {"Overall": accuracy_cell(scored)}
    for kind in QUESTION_TYPES:
        metrics[f"type/{kind}"] = accuracy_cell([s for s in scored if s.category == kind])
    for relation in sorted({s.tags.get("relation", "") for s in scored}):
        metrics[f"relation/{relation}"] = accuracy_cell([s for s in scored if s.tags.get("relation", "") == relation])
    metrics["format_rate"] = format_rate(scored)
    return metrics


# -------------------------------------------------------------------------------------- AVHBench

AVHBENCH_TASK_KEYS = {
    "Audio-driven Video Hallucination": "A->V hallucination",
    "Video-driven Audio Hallucination": "V->A hallucination",
    "AV Matching": "AV matching",
    "Audio-only Hallucination": "audio-only hallucination",
    "Video-only Hallucination": "video-only hallucination",
}
AVHBENCH_COLUMNS = tuple((key, key) for key in list(AVHBENCH_TASK_KEYS.values())[:3])


def _avhbench_docs(data: Path, video_dir: Path, options: LoadOptions) -> tuple[list[EvalDoc], dict]:
    from verl_avconfuse.data_preprocess import avhbench

    samples = avhbench.load_samples(data, video_dir, include_captioning=False)
    docs = _docs_from_samples(
        samples,
        category=lambda s: AVHBENCH_TASK_KEYS[s.question_type],
        key_of=lambda s: s.extra["item_id"],
        paper_text=lambda s: s.question,
    )
    return docs, {}


def yes_no_cell(scored: Sequence[ScoredDoc]) -> dict[str, Any]:
    """Accuracy, and with "yes" positive: precision, recall, F1, yes-rate (percent) and the counts.

    Precision is 0 when nothing was answered "yes"; recall is ``None`` when no truth is "yes".
    """
    tp = sum(s.polarity == "yes" and s.ground_truth == "yes" for s in scored)
    fp = sum(s.polarity == "yes" and s.ground_truth == "no" for s in scored)
    tn = sum(s.polarity == "no" and s.ground_truth == "no" for s in scored)
    fn = sum(s.polarity == "no" and s.ground_truth == "yes" for s in scored)
    positives = sum(s.ground_truth == "yes" for s in scored)
    n = len(scored)
    precision = (_percent(tp, tp + fp) if tp + fp else 0.0) if n else None
    recall = _percent(tp, positives)
    if precision is None or recall is None:
        f1 = None
    else:
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "accuracy": _percent(tp + tn, n),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "yes_rate": _percent(tp + fp, n),
        "correct": tp + tn,
        "n": n,
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
        "neither": sum(s.polarity is None for s in scored),
    }


def _avhbench_metrics(scored: Sequence[ScoredDoc]) -> dict[str, Any]:
    metrics: dict[str, Any] = {}
    for key in AVHBENCH_TASK_KEYS.values():
        group = [s for s in scored if s.category == key]
        if group or key in dict(AVHBENCH_COLUMNS):
            metrics[key] = yes_no_cell(group)
    metrics["Overall"] = accuracy_cell(scored)
    metrics["format_rate"] = format_rate(scored)
    return metrics


# ----------------------------------------------------------------------------- AV-ConfuseBench


def _bench_docs(setting: str) -> Callable[[Path, Path, LoadOptions], tuple[list[EvalDoc], dict]]:
    def load(data: Path, video_dir: Path, options: LoadOptions) -> tuple[list[EvalDoc], dict]:
        from verl_avconfuse.bench.schemas import load_questions, video_path_for

        items = load_questions(data, setting)
        docs = []
        for index, item in enumerate(items):
            truth = item["answer"].strip().lower() if setting == "muted" else item["annotation"]
            group = item.get("instruments_len", "") if setting == "muted" else item["sound_type"]
            docs.append(
                EvalDoc(
                    id=f"{setting}-{index:05d}-{item['video_id']}",
                    question=item["question"],
                    video=os.fspath(video_path_for(item, setting, video_dir)),
                    ground_truth=truth,
                    category=str(group),
                    record_key=f"{setting}-{index:05d}",
                    meta={"item": item},
                )
            )
        return docs, {}

    return load


def _bench_published(setting: str) -> Callable[[Sequence[EvalDoc]], bool]:
    def published(docs: Sequence[EvalDoc]) -> bool:
        from verl_avconfuse.bench.report import published_setting

        return published_setting([d.meta["item"] for d in docs], setting)

    return published


def _published_file(setting: str) -> Callable[[], Path]:
    def path() -> Path:
        from verl_avconfuse.bench.schemas import published_questions

        return published_questions(setting)

    return path


def _mean(values: Sequence[float | None]) -> float | None:
    finite = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return sum(finite) / len(finite) if finite else None


def _pct(flags: Sequence[bool]) -> float | None:
    return 100.0 * sum(flags) / len(flags) if flags else None


def muted_cell(scored: Sequence[ScoredDoc]) -> dict[str, Any]:
    """The muted metrics of a group of scored docs (module docstring)."""
    no_items = [s for s in scored if s.ground_truth == "no"]
    yes_items = [s for s in scored if s.ground_truth == "yes"]
    muted_accuracy = _pct([s.correct for s in no_items])
    cell: dict[str, Any] = {
        "n": len(scored),
        "n_muted": len(no_items),
        "n_controls": len(yes_items),
        "muted_accuracy": muted_accuracy,
        "paper_yes_rate": None if muted_accuracy is None else 100.0 - muted_accuracy,
        "yes_rate": _pct([s.polarity == "yes" for s in scored]),
        "no_rate": _pct([s.polarity == "no" for s in scored]),
        "other_rate": _pct([s.polarity is None for s in scored]),
        "accuracy": _pct([s.correct for s in scored]),
        "balanced_accuracy": None,
        "control_accuracy": _pct([s.correct for s in yes_items]),
        "format_rate": _pct([s.well_formed for s in scored]),
        "mean_p_yes": _mean([s.extra.get("p_yes") for s in scored]),
    }
    if yes_items and no_items:
        cell["balanced_accuracy"] = (cell["control_accuracy"] + muted_accuracy) / 2
    return cell


def _muted_metrics(scored: Sequence[ScoredDoc]) -> dict[str, Any]:
    overall = muted_cell(scored)
    metrics: dict[str, Any] = dict(overall)
    by_answer = overall["n_controls"] and overall["n_muted"]
    groups: dict[str, list[ScoredDoc]] = {}
    for s in scored:
        groups.setdefault(s.ground_truth if by_answer else s.category, []).append(s)
    metrics["group_by"] = "answer" if by_answer else "instruments_len"
    metrics["groups"] = {name: muted_cell(group) for name, group in sorted(groups.items())}
    return metrics


def process_judged(
    doc: EvalDoc, reply: str, rule: str = "strict", *, strict_format: bool = False, extra: dict | None = None
) -> ScoredDoc:
    """A modified-setting reply: its judge scores (``extra``) are the grade; no answer is extracted."""
    from verl_avconfuse.rewards import parse_response

    extra = dict(extra or {})
    return ScoredDoc(
        id=doc.id,
        category=doc.category,
        prediction=reply,
        answer=None,
        correct=extra.get("audio_score") is not None,
        well_formed=parse_response(reply).well_formed,
        ground_truth=doc.ground_truth,
        extra=extra,
    )


def modified_cell(scored: Sequence[ScoredDoc]) -> dict[str, Any]:
    judged = [s for s in scored if s.extra.get("audio_score") is not None]
    return {
        "n": len(scored),
        "a_acc": _mean([s.extra["audio_score"] for s in judged]),
        "v_acc": _mean([s.extra.get("visual_score") for s in judged]),
        "n_judged": len(judged),
        "n_judge_failures": len(scored) - len(judged),
        "format_rate": _pct([s.well_formed for s in scored]),
    }


def _modified_metrics(scored: Sequence[ScoredDoc]) -> dict[str, Any]:
    metrics: dict[str, Any] = dict(modified_cell(scored))
    groups: dict[str, list[ScoredDoc]] = {}
    for s in scored:
        groups.setdefault(s.category, []).append(s)
    metrics["group_by"] = "sound_type"
    metrics["groups"] = {name: modified_cell(group) for name, group in sorted(groups.items())}
    return metrics


# ---------------------------------------------------------------------------------- registry

TASKS: dict[str, Task] = {
    "music-avqa": Task(
        name="music-avqa",
        description="Music-AVQA (data/json or data/json_update avqa-*.json): accuracy per (modality, type)",
        load_docs=_music_avqa_docs,
        aggregate=_music_avqa_metrics,
        columns=MUSIC_AVQA_COLUMNS,
        headline="Audio-Visual/Avg",
        paper_rows={
            "base": {"Audio-Visual/Avg": 54.95},
            "+ SFT": {"Audio-Visual/Avg": 70.41},
            "+ GRPO": {"Audio-Visual/Avg": 70.05},
            "+ RL-CoMM": {"Audio-Visual/Avg": 79.46},
        },
    ),
    "avqa": Task(
        name="avqa",
        description="AVQA (train_qa.json / val_qa.json): accuracy, per question_type as the official validate.py",
        load_docs=_avqa_docs,
        aggregate=_avqa_metrics,
        columns=(
            ("Overall", "Accuracy"),
            ("type/Which", "Which"),
            ("type/Come From", "Come From"),
            ("type/Happening", "Happening"),
            ("type/Where", "Where"),
            ("type/Why", "Why"),
            ("type/Before Next", "Before Next"),
            ("type/When", "When"),
            ("type/Used For", "Used For"),
        ),
        paper_rows={
            "base": {"Overall": 83.78},
            "+ SFT": {"Overall": 90.41},
            "+ GRPO": {"Overall": 85.31},
            "+ RL-CoMM": {"Overall": 95.87},
        },
    ),
    "avhbench": Task(
        name="avhbench",
        description="AVHBench (QA.json): A->V, V->A hallucination and AV matching: acc, precision, recall, F1, yes%",
        load_docs=_avhbench_docs,
        aggregate=_avhbench_metrics,
        columns=AVHBENCH_COLUMNS,
        headline="AV matching",
        paper_rows={
            "base": {"A->V hallucination": 65.85, "V->A hallucination": 59.65, "AV matching": 48.77},
            "+ RL-CoMM": {"A->V hallucination": 78.96, "V->A hallucination": 65.63, "AV matching": 51.85},
        },
    ),
    "avconfuse-muted": Task(
        name="avconfuse-muted",
        description="AV-ConfuseBench muted (avconfusebench_test_m1.json): Acc on muted sources, Yes%",
        load_docs=_bench_docs("muted"),
        aggregate=_muted_metrics,
        columns=(
            ("muted_accuracy", "Acc"),
            ("paper_yes_rate", "Yes% (100-Acc)"),
            ("yes_rate", "says yes"),
            ("accuracy", "Acc, all items"),
            ("other_rate", "neither"),
            ("balanced_accuracy", "balanced Acc"),
        ),
        headline="muted_accuracy",
        paper_rows={
            k: {"muted_accuracy": v["muted_accuracy"], "paper_yes_rate": v["paper_yes_rate"]}
            for k, v in AVCONFUSE_PAPER.items()
        },  # fmt: skip
        is_published=_bench_published("muted"),
        yes_prob=True,
        published_data=_published_file("muted"),
    ),
    "avconfuse-modified": Task(
        name="avconfuse-modified",
        description="AV-ConfuseBench modified (avconfusebench_test_m2.json): judge A-Acc / V-Acc (0-5)",
        load_docs=_bench_docs("modified"),
        aggregate=_modified_metrics,
        columns=(("a_acc", "A-Acc (0-5)"), ("v_acc", "V-Acc (0-5)"), ("n_judge_failures", "judge failures")),
        process_results=process_judged,
        headline="a_acc",
        paper_rows={
            k: {"a_acc": v["a_acc"], "v_acc": v["v_acc"]} for k, v in AVCONFUSE_PAPER.items() if v["a_acc"] is not None
        },  # fmt: skip
        is_published=_bench_published("modified"),
        judged=True,
        chart_max=5.0,
        published_data=_published_file("modified"),
    ),
}

#: ``avconfuse bench eval --setting S`` runs this task.
SETTING_TASKS = {"muted": "avconfuse-muted", "modified": "avconfuse-modified"}


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; known: {sorted(TASKS)}")
    return TASKS[name]
