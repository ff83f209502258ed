"""AVHBench (``QA.json``).

- Asked: each yes/no item's ``text`` (:mod:`verl_avconfuse.data_preprocess.avhbench`); captioning items are not
  evaluated.
- Scored: the shared answer rule; a reply that is neither yes nor no is wrong and counts as neither.
- Grouped: per yes/no task (A->V, V->A hallucination, AV matching, and the audio-/video-only ones when
  present): accuracy and, with "yes" as the positive class, precision, recall, F1 and the yes-rate, as
  AVHBench's leaderboard reports them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from verl_avconfuse.evaluation.task import (
    EvalDoc,
    LoadOptions,
    ScoredDoc,
    Task,
    accuracy_cell,
    docs_from_samples,
    format_rate,
    percent,
)

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
    docs = docs_from_samples(
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
    precision = (percent(tp, tp + fp) if tp + fp else 0.0) if n else None
    recall = percent(tp, positives)
    if precision is None or recall is None:
        f1 = None
    else:
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "accuracy": percent(tp + tn, n),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "yes_rate": percent(tp + fp, n),
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


TASK = Task(
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
)
