"""Evaluation results on disk: ``{task}.results.json`` (everything), ``{task}.md`` (the tables) and
``{task}.png`` (a bar chart of the summary columns, ours next to the paper's rows).

All three are written atomically (:mod:`verl_avconfuse.io`: temp file in the same folder, then
``os.replace``). The chart needs matplotlib (the ``[plots]`` or ``[test]`` extra); without it the JSON
and markdown are still written and one line says how to get the chart.
"""

from __future__ import annotations

import logging
import math
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from verl_avconfuse.io import atomic_write_figure, atomic_write_json, atomic_write_text

if TYPE_CHECKING:
    from verl_avconfuse.evaluation.task import Task

logger = logging.getLogger(__name__)

__all__ = ["cell_value", "format_value", "markdown_report", "write_chart", "write_report"]

PLOTS_HINT = 'pip install "verl-avconfuse[plots]"'
_DETAIL_NUMERIC = ("accuracy", "precision", "recall", "f1", "yes_rate")


def format_value(value: Any) -> str:
    """A number with two decimals (counts as integers); an en dash for a cell with no value."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def cell_value(metric: Any) -> Any:
    """What a summary column shows of a metric: a cell's ``accuracy`` (else ``value``), or the number."""
    if isinstance(metric, dict):
        return metric.get("accuracy", metric.get("value"))
    return metric


def _summary_rows(result: dict[str, Any], columns: tuple[tuple[str, str], ...]) -> list[str]:
    lines = [
        "| row | " + " | ".join(header for _, header in columns) + " |",
        "|---|" + "---:|" * len(columns),
    ]
    for rule, metrics in result["metrics_by_match"].items():
        label = f"{result['backend']} ({rule} match)"
        lines.append(f"| {label} | " + " | ".join(format_value(cell_value(metrics.get(k))) for k, _ in columns) + " |")
    for name, paper in (result.get("paper") or {}).items():
        cells = [format_value(paper.get(k)) for k, _ in columns]
        lines.append(f"| Qwen2.5-Omni-3B {name} (paper) | " + " | ".join(cells) + " |")
    return lines


def _detail_rows(metrics: dict[str, Any]) -> list[str]:
    cells = {k: v for k, v in metrics.items() if isinstance(v, dict) and k not in ("format_rate", "groups")}
    if not cells:
        return []
    keys = sorted({k for cell in cells.values() for k in cell})
    numeric = [k for k in _DETAIL_NUMERIC if k in keys]
    counts = [k for k in keys if k not in numeric]
    lines = ["| metric | " + " | ".join(numeric + counts) + " |", "|---|" + "---:|" * (len(numeric) + len(counts))]
    for key, cell in cells.items():
        values = [format_value(cell.get(k)) if k in cell else "" for k in numeric]
        values += [format_value(cell.get(k)) if k in cell else "" for k in counts]
        lines.append(f"| {key} | " + " | ".join(values) + " |")
    return lines


def _group_rows(metrics: dict[str, Any], columns: tuple[tuple[str, str], ...]) -> list[str]:
    groups = metrics.get("groups")
    if not groups:
        return []
    shown = [(k, h) for k, h in columns if any(k in g for g in groups.values())]
    lines = [f"| {metrics.get('group_by', 'group')} | n | " + " | ".join(h for _, h in shown) + " |"]
    lines.append("|---|---:|" + "---:|" * len(shown))
    for name, group in groups.items():
        lines.append(f"| {name} | {group['n']} | " + " | ".join(format_value(group.get(k)) for k, _ in shown) + " |")
    return lines


def _data_lines(result: dict[str, Any]) -> list[str]:
    report = result.get("data_report") or {}
    lines = []
    if report.get("duplicate_keys"):
        lines.append(
            f"- duplicate records: {report['duplicate_keys']} release id(s) appear more than once "
            f"({report['duplicate_records']} extra record(s)), {report['contradictory_keys']} of them with "
            "different answers; every record is scored"
        )
    if report.get("short_options"):
        notes = report["short_options"]
        lines.append(f"- {notes['count']} record(s) with None or fewer than 4 options: {notes['action']}")
    return lines


def markdown_report(result: dict[str, Any], columns: tuple[tuple[str, str], ...]) -> str:
    """The summary table (ours per answer rule, then the paper's rows), groups, details, data notes."""
    metrics = result["metrics"]
    scope = f"{result['n_docs']} scored"
    if result.get("n_total") and result["n_total"] != result["n_docs"]:
        scope += f" of {result['n_total']}"
    if result.get("skipped"):
        scope += f", {len(result['skipped'])} skipped (unusable media)"
    if result.get("published") is True and result.get("paper"):
        scope += " (the published set" + ("" if result.get("n_total") == result["n_docs"] else ", a subset") + ")"
    lines = [
        f"# {result['task']}",
        "",
        f"- backend: `{result['backend']}`" + (f"; judge: `{result['judge']}`" if result.get("judge") else ""),
        f"- data: `{result['data']}`",
        f"- questions: {scope}",
        f"- prompt: `{result['prompt']}`; answer rule(s): {', '.join(result['match'])}",
    ]
    formed = metrics.get("format_rate")
    rate = formed.get("rate") if isinstance(formed, dict) else formed
    lines.append(f"- well-formed replies: {format_value(rate)}%")
    lines += _data_lines(result)
    lines += ["", *_summary_rows(result, columns), ""]
    if result.get("paper"):
        lines += ["The paper's rows are Qwen2.5-Omni-3B as reported (RL-CoMM, AAAI-26); the official release's "
                  "scripts grade with the `release` answer rule, so compare them with that row.", ""]  # fmt: skip
    group = _group_rows(metrics, columns)
    if group:
        lines += [*group, ""]
    detail = _detail_rows(metrics)
    if detail:
        lines += [*detail, ""]
    return "\n".join(lines)


def write_chart(result: dict[str, Any], path: str | os.PathLike, columns, chart_max: float = 100.0) -> Path | None:
    """Bar chart of the summary columns: ours per answer rule and the paper's rows. ``None`` without matplotlib."""
    try:
        import matplotlib
    except ImportError:
        print(f"{result['task']}: chart not written: matplotlib is missing ({PLOTS_HINT})", file=sys.stderr)
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    backend = result["backend"]
    short = backend if len(backend) <= 30 else "..." + backend[-27:]
    series = [
        (f"ours ({rule}): {short}", [cell_value(m.get(k)) for k, _ in columns])
        for rule, m in result["metrics_by_match"].items()
    ]
    for name, paper in (result.get("paper") or {}).items():
        series.append((f"paper: Qwen2.5-Omni-3B {name}", [paper.get(k) for k, _ in columns]))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(columns) + 2), 4), dpi=100)
    width = 0.8 / len(series)
    for s, (label, values) in enumerate(series):
        xs = [i + (s - (len(series) - 1) / 2) * width for i in range(len(columns))]
        heights = [float(v) if isinstance(v, (int, float)) and math.isfinite(v) else 0.0 for v in values]
        ax.bar(xs, heights, width=width, label=label)
    ax.set_xticks(range(len(columns)), [h for _, h in columns], rotation=30 if len(columns) > 4 else 0, ha="right")
    ax.set_ylim(0, chart_max)
    ax.set_title(result["task"])
    ax.legend(fontsize=7)
    fig.tight_layout()
    return atomic_write_figure(path, fig, parents=True)


def _json_safe(value: Any) -> Any:
    """NaN/inf become ``null`` (JSON has no NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def write_report(result: dict[str, Any], out_dir: str | os.PathLike, task: Task) -> dict[str, str]:
    """Write ``{task}.results.json``, ``{task}.md`` and (with matplotlib) ``{task}.png``; return their paths."""
    out_dir = Path(out_dir)
    name = result["task"]
    files = {}
    md = atomic_write_text(out_dir / f"{name}.md", markdown_report(result, task.columns), parents=True)
    files["markdown"] = str(md)
    try:
        chart = write_chart(result, out_dir / f"{name}.png", task.columns, task.chart_max)
    except Exception as error:  # noqa: BLE001 - a chart must never lose a finished evaluation
        print(f"{name}: chart not written ({type(error).__name__}: {error})", file=sys.stderr)
        chart = None
    if chart is not None:
        files["chart"] = str(chart)
    files["json"] = str(out_dir / f"{name}.results.json")
    atomic_write_json(out_dir / f"{name}.results.json", _json_safe({**result, "files": files}), parents=True, indent=2)
    return files
