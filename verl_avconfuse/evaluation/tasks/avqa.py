"""AVQA (``train_qa.json`` / ``val_qa.json``).

- Asked: the question with its lettered options (:mod:`verl_avconfuse.data_preprocess.avqa`; records with fewer
  than four options padded as the official preprocessing does, or left out, ``LoadOptions.avqa_options``).
- Scored: the shared answer rule, an option's letter or text.
- Grouped: accuracy, and per ``question_type`` (the eight types of the official ``validate.py``); per
  ``question_relation`` as extra cells.
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
)


def _avqa_docs(data: Path, video_dir: Path, options: LoadOptions) -> tuple[list[EvalDoc], dict]:
    from verl_avconfuse.data_preprocess import avqa

    samples, notes = avqa.load_samples_with_report(data, video_dir, options=options.avqa_options)
    docs = docs_from_samples(
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


TASK = Task(
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
)
