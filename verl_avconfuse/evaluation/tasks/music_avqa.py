"""Music-AVQA (``data/json`` or ``data/json_update``: ``avqa-*.json``).

- Asked: the filled question template of each record, on its clip (:mod:`verl_avconfuse.data_preprocess.music_avqa`
  reads the release, as training does).
- Scored: the shared answer rule (:func:`~verl_avconfuse.evaluation.task.process_results`).
- Grouped: accuracy per (modality, type) cell, per modality (``Audio/Avg`` ...) and ``Overall``, each over
  *questions* (correct / asked), exactly as the official ``net_grd_avst/main_avst.py`` test prints them (not
  means of the per-type accuracies).
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
    docs = docs_from_samples(
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


TASK = Task(
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
)
