"""Evaluation results on disk: ``{task}.results.json`` (everything) and ``{task}.md`` (the table).

Both are written atomically (:mod:`verl_avconfuse.io`: temp file in the same folder, then ``os.replace``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from verl_avconfuse.io import atomic_write_json, atomic_write_text

__all__ = ["format_value", "markdown_report", "write_report"]


def format_value(value: float | None) -> str:
    """A percentage with two decimals; an en dash for a cell with no questions."""
    return "–" if value is None else f"{value:.2f}"


def _cell_value(cell: dict[str, Any]) -> float | None:
    return cell.get("accuracy")


def markdown_report(result: dict[str, Any], columns: tuple[tuple[str, str], ...]) -> str:
    """The summary table (one row), then a detail table of every metric cell with its counts."""
    metrics = result["metrics"]
    lines = [
        f"# {result['task']}",
        "",
        f"- backend: `{result['backend']}`",
        f"- data: `{result['data']}`",
        f"- questions: {result['n_docs']} scored"
        + (f", {len(result['skipped'])} skipped (unusable media)" if result.get("skipped") else ""),
        f"- well-formed replies: {format_value(metrics['format_rate']['rate'])}%",
        "",
        "| " + " | ".join(header for _, header in columns) + " |",
        "|" + "---:|" * len(columns),
        "| " + " | ".join(format_value(_cell_value(metrics[key])) for key, _ in columns) + " |",
        "",
    ]
    detail_keys = sorted({k for cell in metrics.values() for k in cell if k not in ("rate", "well_formed")})
    numeric = [k for k in ("accuracy", "precision", "recall", "f1", "yes_rate") if k in detail_keys]
    counts = [k for k in detail_keys if k not in numeric]
    lines += [
        "| metric | " + " | ".join(numeric + counts) + " |",
        "|---|" + "---:|" * (len(numeric) + len(counts)),
    ]
    for key, cell in metrics.items():
        if key == "format_rate":
            continue
        values = [format_value(cell.get(k)) if k in cell else "" for k in numeric]
        values += [str(cell.get(k, "")) for k in counts]
        lines.append(f"| {key} | " + " | ".join(values) + " |")
    return "\n".join(lines) + "\n"


def write_report(result: dict[str, Any], out_dir: str | os.PathLike, columns: tuple[tuple[str, str], ...]) -> dict:
    """Write ``{task}.results.json`` and ``{task}.md`` into ``out_dir``; return their paths."""
    out_dir = Path(out_dir)
    json_path = atomic_write_json(out_dir / f"{result['task']}.results.json", result, parents=True, indent=2)
    md_path = atomic_write_text(out_dir / f"{result['task']}.md", markdown_report(result, columns), parents=True)
    return {"json": str(json_path), "markdown": str(md_path)}
