"""AV-ConfuseBench, modified setting (``avconfusebench_test_m2.json``, or a set ``avconfuse bench build modified``
made).

- Asked: to describe what is seen and heard, on a clip whose soundtrack was replaced by an environmental sound.
- Scored: by a judge against the reference annotation (:mod:`verl_avconfuse.evaluation.judge`: an audio and a
  visual score, 0-5); no answer is extracted.
- Grouped: A-Acc / V-Acc, the means of the judge's scores over judged items, failures counted; per
  ``sound_type``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from verl_avconfuse.bench.report import PAPER_RESULTS as AVCONFUSE_PAPER
from verl_avconfuse.evaluation.task import EvalDoc, ScoredDoc, Task, mean, percent_of
from verl_avconfuse.evaluation.tasks.avconfusebench import bench_docs, bench_published, published_file


def process_judged(
    doc: EvalDoc, reply: str, rule: str = "strict", *, strict_format: bool = False, extra: dict | None = None
) -> ScoredDoc:
    """A modified-setting reply: its judge scores (``extra``) are the grade; no answer is extracted."""
    from verl_avconfuse.method.parsing import parse_response

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
        "a_acc": mean([s.extra["audio_score"] for s in judged]),
        "v_acc": mean([s.extra.get("visual_score") for s in judged]),
        "n_judged": len(judged),
        "n_judge_failures": len(scored) - len(judged),
        "format_rate": percent_of([s.well_formed for s in scored]),
    }


def _modified_metrics(scored: Sequence[ScoredDoc]) -> dict[str, Any]:
    metrics: dict[str, Any] = dict(modified_cell(scored))
    groups: dict[str, list[ScoredDoc]] = {}
    for s in scored:
        groups.setdefault(s.category, []).append(s)
    metrics["group_by"] = "sound_type"
    metrics["groups"] = {name: modified_cell(group) for name, group in sorted(groups.items())}
    return metrics


TASK = Task(
    name="avconfuse-modified",
    description="AV-ConfuseBench modified (avconfusebench_test_m2.json): judge A-Acc / V-Acc (0-5)",
    load_docs=bench_docs("modified"),
    aggregate=_modified_metrics,
    columns=(("a_acc", "A-Acc (0-5)"), ("v_acc", "V-Acc (0-5)"), ("n_judge_failures", "judge failures")),
    process_results=process_judged,
    headline="a_acc",
    paper_rows={
        k: {"a_acc": v["a_acc"], "v_acc": v["v_acc"]} for k, v in AVCONFUSE_PAPER.items() if v["a_acc"] is not None
    },  # fmt: skip
    is_published=bench_published("modified"),
    judged=True,
    chart_max=5.0,
    published_data=published_file("modified"),
)
