"""A benchmark task, declared lmms-eval style: how docs are read, asked, scored and aggregated.

A :class:`Task` bundles ``load_docs`` (the published file -> :class:`EvalDoc` s, through the dataset's
converter in ``data_preprocess/`` or :mod:`verl_avconfuse.bench.schemas`, so training and evaluation
read a release the same way), ``process_results`` (one reply -> a :class:`ScoredDoc`), ``aggregate``
(scored docs -> metrics), the summary columns and the paper's rows. Each benchmark declares one, in a file
of its own under :mod:`verl_avconfuse.evaluation.tasks`; the runner (:mod:`~verl_avconfuse.evaluation.runner`),
the prediction cache, the judge and the report writer are shared and know no task's internals, so adding a
benchmark never touches them.

Prompts (``--prompt``): ``paper`` (default) asks the benchmark's own question as published (Music-AVQA's
filled template, AVQA's question with lettered options, AVHBench's ``text``, AV-ConfuseBench's
``question``), the protocol of the paper's base-model rows; ``rl-comm`` appends the RL-CoMM format
instruction (:func:`verl_avconfuse.method.prompts.format_question`), as the policy was trained.

Answers: :mod:`~verl_avconfuse.evaluation.matching` (``--match strict|release|both``). Metrics are
percentages (0-100) with the counts they come from; each task's module says which.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from verl_avconfuse.evaluation.matching import extract_answer, is_correct, polarity
from verl_avconfuse.method.prompts import format_question

__all__ = [
    "PROMPT_STYLES",
    "EvalDoc",
    "LoadOptions",
    "ScoredDoc",
    "Task",
    "accuracy_cell",
    "docs_from_samples",
    "unique_ids",
    "format_rate",
    "mean",
    "percent",
    "percent_of",
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
    from verl_avconfuse.method.parsing import parse_response

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


def percent(part: int, whole: int) -> float | None:
    """``100 * part / whole``; ``None`` for an empty whole."""
    return 100.0 * part / whole if whole else None


def accuracy_cell(scored: Sequence[ScoredDoc]) -> dict[str, Any]:
    correct = sum(s.correct for s in scored)
    return {"accuracy": percent(correct, len(scored)), "correct": correct, "n": len(scored)}


def format_rate(scored: Sequence[ScoredDoc]) -> dict[str, Any]:
    formed = sum(s.well_formed for s in scored)
    return {"rate": percent(formed, len(scored)), "well_formed": formed, "n": len(scored)}


def mean(values: Sequence[float | None]) -> float | None:
    """The mean of the finite values; ``None`` when there are none."""
    finite = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return sum(finite) / len(finite) if finite else None


def percent_of(flags: Sequence[bool]) -> float | None:
    """The share of true flags, in percent; ``None`` for no flags."""
    return 100.0 * sum(flags) / len(flags) if flags else None


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
    #: A yes/no task's P(yes) of one reply, ``(backend, request, reply) -> float``, which the runner reads on request
    #: (``yes_prob``, a backend with next-token log-probabilities); ``None``: the task has none.
    yes_prob: Callable[[Any, Any, str], float] | None = None
    #: The chart's y range (percent tasks: 100; the judge's scale: 5).
    chart_max: float = 100.0
    #: Its published file ships with the package (``--data published``).
    published_data: Callable[[], Path] | None = None


def unique_ids(keys: Sequence[str]) -> list[str]:
    """The release's ids made unique and stable: a key seen before gets ``#2``, ``#3`` ... in file order."""
    seen: dict[str, int] = {}
    ids = []
    for key in keys:
        seen[key] = seen.get(key, 0) + 1
        ids.append(key if seen[key] == 1 else f"{key}#{seen[key]}")
    return ids


def docs_from_samples(
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
        for s, key, doc_id in zip(samples, keys, unique_ids(keys), strict=True)
    ]
