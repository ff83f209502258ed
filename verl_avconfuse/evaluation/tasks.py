"""The benchmarks, declared lmms-eval style: how docs are read, asked, scored and aggregated.

A :class:`Task` bundles ``load_docs`` (the release file -> :class:`EvalDoc` s, through the dataset's
converter in ``data_preprocess/``, so training and evaluation read a release the same way),
``process_results`` (one reply -> a :class:`ScoredDoc`) and ``aggregate`` (scored docs -> metrics).
The runner and the report writer are shared; adding a benchmark never touches them.

Answer extraction, the same rule for every task here: the ``<answer>`` block when the reply has one
(:func:`verl_avconfuse.rewards.parse_response`), else the whole reply. A base model that ignores the
three-part format is still graded on what it said (the paper compares base models that do not use
the tags); RL rewards, unlike evaluation, give no answer credit without the tag. Correctness is
:func:`verl_avconfuse.rewards.answers_match` (whole-answer comparison after normalisation, never
substring matching). ``format_rate`` reports how many replies were well formed.

Metrics are percentages (0-100) with the counts they come from:

- ``music-avqa``: accuracy per question type (Audio: Counting, Comparative; Visual: Counting,
  Location; Audio-Visual: Existential, Location, Counting, Comparative, Temporal), per modality
  (``Audio/Avg`` ...) and ``Overall``. Averages are over *questions* (correct / asked), as the
  Music-AVQA evaluation code computes them, not means of the per-type accuracies.
- ``avqa``: accuracy, and accuracy per ``question_relation``.
- ``avhbench``: per yes/no task (audio-driven video hallucination, video-driven audio
  hallucination, AV matching): accuracy, and with "yes" as the positive class precision, recall,
  F1 and the yes-rate, as AVHBench's leaderboard reports them. A reply that is neither yes nor no
  is wrong and counts as neither. Captioning items are not evaluated.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from verl_avconfuse.prompts import format_question

__all__ = [
    "TASKS",
    "EvalDoc",
    "ScoredDoc",
    "Task",
    "extract_answer",
    "get_task",
    "process_results",
]


@dataclass(frozen=True)
class EvalDoc:
    """One benchmark question, ready to ask.

    Attributes:
        id: unique within the task (the prediction cache key).
        prompt: the full user text (question, options, format instruction), no media placeholders.
        video: the clip (its soundtrack is the audio).
        ground_truth: the reference answer.
        category: the metric group the doc counts in (e.g. ``"Audio-Visual/Temporal"``).
        options: multiple-choice option texts, else ``None``.
        question: the plain question.
    """

    id: str
    prompt: str
    video: str
    ground_truth: str
    category: str
    options: tuple[str, ...] | None = None
    question: str = ""
    meta: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class ScoredDoc:
    """A reply graded: the extracted answer, whether it is right, and its yes/no reading."""

    id: str
    category: str
    prediction: str
    answer: str | None
    correct: bool
    well_formed: bool
    ground_truth: str = ""
    polarity: str | None = None


def extract_answer(reply: str) -> str | None:
    """The ``<answer>`` block, else the whole reply stripped (``None`` when blank); module docstring."""
    from verl_avconfuse.rewards import parse_response

    parsed = parse_response(reply)
    if parsed.answer is not None:
        return parsed.answer
    return reply.strip() or None


def _polarity(answer: str | None) -> str | None:
    from verl_avconfuse.rewards import answers_match

    for value in ("yes", "no"):
        if answers_match(answer, value):
            return value
    return None


def process_results(doc: EvalDoc, reply: str) -> ScoredDoc:
    """Grade one reply (shared by every task here)."""
    from verl_avconfuse.rewards import answers_match, parse_response

    answer = extract_answer(reply)
    return ScoredDoc(
        id=doc.id,
        category=doc.category,
        prediction=reply,
        answer=answer,
        correct=answers_match(answer, doc.ground_truth, list(doc.options) if doc.options else None),
        well_formed=parse_response(reply).well_formed,
        ground_truth=doc.ground_truth,
        polarity=_polarity(answer) if doc.ground_truth in ("yes", "no") else None,
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
    """A benchmark: ``load_docs(data, video_dir) -> docs``, ``process_results``, ``aggregate``.

    ``columns`` name the metric cells of the summary table, in order, as ``(metric key, header)``.
    """

    name: str
    description: str
    load_docs: Callable[[Path, Path], list[EvalDoc]]
    aggregate: Callable[[Sequence[ScoredDoc]], dict[str, Any]]
    columns: tuple[tuple[str, str], ...]
    process_results: Callable[[EvalDoc, str], ScoredDoc] = process_results
    max_new_tokens: int = 256
    #: The column whose value is the task's headline number (for logs).
    headline: str = "Overall"


def _docs_from_samples(samples, category: Callable[[Any], str], id_of: Callable[[Any], str]) -> list[EvalDoc]:
    docs = []
    for sample in samples:
        docs.append(
            EvalDoc(
                id=id_of(sample),
                prompt=format_question(sample.prompt_text),
                video=os.fspath(sample.video),
                ground_truth=sample.ground_truth,
                category=category(sample),
                options=tuple(sample.options) if sample.options else None,
                question=sample.question,
                meta={"video_id": sample.video_id, "index": sample.index, **sample.extra},
            )
        )
    return docs


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


def _music_avqa_docs(data: Path, video_dir: Path) -> list[EvalDoc]:
    from verl_avconfuse.data_preprocess import music_avqa

    samples = music_avqa.load_samples(data, video_dir)
    return _docs_from_samples(
        samples, category=lambda s: s.question_type, id_of=lambda s: f"{s.video_id}/{s.extra['question_id']}"
    )


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


def _avqa_docs(data: Path, video_dir: Path) -> list[EvalDoc]:
    from verl_avconfuse.data_preprocess import avqa

    samples = avqa.load_samples(data, video_dir)
    return _docs_from_samples(
        samples, category=lambda s: s.extra["question_relation"], id_of=lambda s: str(s.extra["question_id"])
    )


def _avqa_metrics(scored: Sequence[ScoredDoc]) -> dict[str, Any]:
    metrics: dict[str, Any] = {"Overall": accuracy_cell(scored)}
    for relation in sorted({s.category for s in scored}):
        metrics[f"relation/{relation}"] = accuracy_cell([s for s in scored if s.category == relation])
    metrics["format_rate"] = format_rate(scored)
    return metrics


# -------------------------------------------------------------------------------------- AVHBench

AVHBENCH_TASK_KEYS = {
    "Audio-driven Video Hallucination": "A->V hallucination",
    "Video-driven Audio Hallucination": "V->A hallucination",
    "AV Matching": "AV matching",
}


def _avhbench_docs(data: Path, video_dir: Path) -> list[EvalDoc]:
    from verl_avconfuse.data_preprocess import avhbench

    samples = avhbench.load_samples(data, video_dir, include_captioning=False)
    return _docs_from_samples(
        samples, category=lambda s: AVHBENCH_TASK_KEYS[s.question_type], id_of=lambda s: s.extra["item_id"]
    )


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
    metrics: dict[str, Any] = {
        key: yes_no_cell([s for s in scored if s.category == key]) for key in AVHBENCH_TASK_KEYS.values()
    }
    metrics["Overall"] = accuracy_cell(scored)
    metrics["format_rate"] = format_rate(scored)
    return metrics


# ---------------------------------------------------------------------------------- registry

TASKS: dict[str, Task] = {
    "music-avqa": Task(
        name="music-avqa",
        description="Music-AVQA (avqa-test.json): accuracy per question type and modality",
        load_docs=_music_avqa_docs,
        aggregate=_music_avqa_metrics,
        columns=MUSIC_AVQA_COLUMNS,
    ),
    "avqa": Task(
        name="avqa",
        description="AVQA (val_qa.json): multiple-choice accuracy",
        load_docs=_avqa_docs,
        aggregate=_avqa_metrics,
        columns=(("Overall", "Accuracy"),),
    ),
    "avhbench": Task(
        name="avhbench",
        description="AVHBench (json folder): A->V, V->A hallucination and AV matching accuracy",
        load_docs=_avhbench_docs,
        aggregate=_avhbench_metrics,
        columns=tuple((key, key) for key in AVHBENCH_TASK_KEYS.values()),
        headline="AV matching",
    ),
}


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; known: {sorted(TASKS)}")
    return TASKS[name]
