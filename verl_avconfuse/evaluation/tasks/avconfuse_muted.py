"""AV-ConfuseBench, muted setting (``avconfusebench_test_m1.json``, or a set ``avconfuse bench build muted`` made).

- Asked: "Is there a SOURCE sound?" on a clip whose SOURCE is seen playing but was removed from the soundtrack
  (answer "no"); a built set may add controls, the same question on the intact clip (answer "yes").
- Scored: the shared answer rule, yes/no; on request (``--yes-prob``, a backend with next-token log-probabilities)
  the model's P(yes) at the graded answer's position (:func:`~verl_avconfuse.evaluation.yes_probability.yes_probability`).
- Grouped: the paper's Acc (right answers on the "no" items) and Yes% (100 - Acc), the share of replies that
  say yes / no / neither, accuracy over all items and balanced accuracy when the set has control ("yes")
  items, mean P(yes); per ``instruments_len`` (or per answer, with controls).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from verl_avconfuse.bench.report import PAPER_RESULTS as AVCONFUSE_PAPER
from verl_avconfuse.evaluation.task import ScoredDoc, Task, mean, percent_of
from verl_avconfuse.evaluation.tasks.avconfusebench import bench_docs, bench_published, published_file
from verl_avconfuse.evaluation.yes_probability import yes_probability


def muted_cell(scored: Sequence[ScoredDoc]) -> dict[str, Any]:
    """The muted metrics of a group of scored docs (module docstring)."""
    no_items = [s for s in scored if s.ground_truth == "no"]
    yes_items = [s for s in scored if s.ground_truth == "yes"]
    muted_accuracy = percent_of([s.correct for s in no_items])
    cell: dict[str, Any] = {
        "n": len(scored),
        "n_muted": len(no_items),
        "n_controls": len(yes_items),
        "muted_accuracy": muted_accuracy,
        "paper_yes_rate": None if muted_accuracy is None else 100.0 - muted_accuracy,
        "yes_rate": percent_of([s.polarity == "yes" for s in scored]),
        "no_rate": percent_of([s.polarity == "no" for s in scored]),
        "other_rate": percent_of([s.polarity is None for s in scored]),
        "accuracy": percent_of([s.correct for s in scored]),
        "balanced_accuracy": None,
        "control_accuracy": percent_of([s.correct for s in yes_items]),
        "format_rate": percent_of([s.well_formed for s in scored]),
        "mean_p_yes": mean([s.extra.get("p_yes") for s in scored]),
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


TASK = Task(
    name="avconfuse-muted",
    description="AV-ConfuseBench muted (avconfusebench_test_m1.json): Acc on muted sources, Yes%",
    load_docs=bench_docs("muted"),
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
    is_published=bench_published("muted"),
    yes_prob=yes_probability,
    published_data=published_file("muted"),
)
