"""AV-ConfuseBench results as files: ``results.json``, ``results.md`` (a markdown table) and ``results.png``.

When the evaluated questions are the published ones (recognised by content, :func:`published_setting`), the
paper's Qwen2.5-Omni-3B numbers (:data:`PAPER_RESULTS`) are put next to ours in the table and the chart.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path

from verl_avconfuse.bench.schemas import FIELDS, write_json
from verl_avconfuse.io import atomic_write_bytes, atomic_write_text

#: The paper's AV-ConfuseBench numbers for Qwen2.5-Omni-3B (muted accuracy and yes-rate in %, A-Acc and
#: V-Acc as 0-5 judge means); ``None`` where the paper reports none.
PAPER_RESULTS: dict[str, dict[str, float | None]] = {
    "base": {"accuracy": 8.22, "yes_rate": 91.78, "a_acc": 1.14, "v_acc": 4.10},
    "+ SFT": {"accuracy": 5.48, "yes_rate": 94.52, "a_acc": None, "v_acc": None},
    "+ GRPO": {"accuracy": 15.07, "yes_rate": 84.93, "a_acc": 1.84, "v_acc": 4.47},
    "+ RL-CoMM": {"accuracy": 27.40, "yes_rate": 72.60, "a_acc": 2.36, "v_acc": 4.54},
}
#: sha256 of the published files' items (published fields only, sorted keys; see :func:`items_digest`).
PUBLISHED_DIGESTS = {
    "muted": "ad3410af491d7c3d129a94f32c051b9b9db07c93481402ab52d4e536cd9a07f1",
    "modified": "34fe6bfe4d2465221ae5200bef9a84242827581fa912aa5d2cb053c330959fa4",
}
#: Metrics shown per setting: (key in results["metrics"], column title, key in PAPER_RESULTS or None).
COLUMNS = {
    "muted": [
        ("muted_accuracy", "Acc (%)", "accuracy"),
        ("paper_yes_rate", "Yes% (100-Acc)", "yes_rate"),
        ("yes_rate", "says yes (%)", None),
        ("accuracy", "Acc, all items (%)", None),
        ("other_rate", "neither (%)", None),
        ("balanced_accuracy", "balanced Acc (%)", None),
        ("mean_p_yes", "mean P(yes)", None),
        ("format_rate", "well-formed (%)", None),
    ],
    "modified": [
        ("a_acc", "A-Acc (0-5)", "a_acc"),
        ("v_acc", "V-Acc (0-5)", "v_acc"),
        ("n_judged", "judged", None),
        ("n_judge_failures", "judge failures", None),
        ("format_rate", "well-formed (%)", None),
    ],
}

#: Per-group table columns (groups: instruments_len or answer for muted, sound_type for modified).
GROUP_COLUMNS = {
    "muted": [("accuracy", "Acc (%)"), ("yes_rate", "says yes (%)")],
    "modified": [("a_acc", "A-Acc (0-5)"), ("v_acc", "V-Acc (0-5)")],
}


def items_digest(items: list[dict], setting: str) -> str:
    """sha256 of the items' published fields (sorted keys, UTF-8): equal for a byte-different copy."""
    canonical = [{field: item[field] for field in FIELDS[setting]} for item in items]
    return hashlib.sha256(json.dumps(canonical, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()


def published_setting(items: list[dict], setting: str) -> bool:
    """Whether ``items`` are exactly the published question file of ``setting``."""
    return items_digest(items, setting) == PUBLISHED_DIGESTS.get(setting)


def _cell(value: object) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def markdown_table(results: dict) -> str:
    """The headline table: our row, then the paper's rows when the published set was used."""
    setting = results["setting"]
    columns = COLUMNS[setting]
    header = "| model | " + " | ".join(title for _, title, _ in columns) + " |"
    lines = [header, "|" + "---|" * (len(columns) + 1)]
    ours = results["metrics"]
    lines.append(f"| {results['backend']} (ours) | " + " | ".join(_cell(ours.get(key)) for key, _, _ in columns) + " |")
    if results.get("published"):
        for name, paper in PAPER_RESULTS.items():
            cells = [_cell(paper.get(paper_key)) if paper_key else "–" for _, _, paper_key in columns]
            lines.append(f"| Qwen2.5-Omni-3B {name} (paper) | " + " | ".join(cells) + " |")
    text = [f"## AV-ConfuseBench, {setting} setting", "", "\n".join(lines), ""]
    scope = f"{results['n_items']} items from `{results['questions_file']}`"
    if results.get("published"):
        scope += " (the published set" + ("" if results["n_items"] == results["n_total"] else ", a subset") + ")"
    text.append(scope + f"; judge: {results['judge']}." if results.get("judge") else scope + ".")
    groups = results.get("by_group") or {}
    if groups:
        shown = GROUP_COLUMNS[setting]
        text += ["", f"| {results['group_by']} | n | " + " | ".join(t for _, t in shown) + " |"]
        text.append("|---|---|" + "---|" * len(shown))
        for group, values in groups.items():
            text.append(f"| {group} | {values['n']} | " + " | ".join(_cell(values.get(k)) for k, _ in shown) + " |")
    return "\n".join(text) + "\n"


def write_chart(results: dict, path: str | os.PathLike) -> Path:
    """Bar chart of the paper-comparable metrics: ours and, for the published set, the paper's rows."""
    import matplotlib

    matplotlib.use("Agg")
    import io

    import matplotlib.pyplot as plt

    setting = results["setting"]
    shown = [(key, title, paper_key) for key, title, paper_key in COLUMNS[setting] if paper_key is not None]
    backend = results["backend"]
    ours = "ours: " + (backend if len(backend) <= 34 else "..." + backend[-31:])
    series = [(ours, [results["metrics"].get(key) for key, _, _ in shown])]
    if results.get("published"):
        for name, paper in PAPER_RESULTS.items():
            values = [paper.get(pk) for _, _, pk in shown]
            if any(v is not None for v in values):  # the paper has no A-/V-Acc for SFT
                series.append((f"paper: Qwen2.5-Omni-3B {name}", values))
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    width = 0.8 / len(series)
    for s, (label, values) in enumerate(series):
        xs = [i + (s - (len(series) - 1) / 2) * width for i in range(len(shown))]
        heights = [v if isinstance(v, (int, float)) and not math.isnan(v) else 0.0 for v in values]
        ax.bar(xs, heights, width=width, label=label)
    ax.set_xticks(range(len(shown)), [title for _, title, _ in shown])
    ax.set_ylim(0, 100 if setting == "muted" else 5)
    ax.set_title(f"AV-ConfuseBench ({setting})")
    ax.legend(fontsize=7)
    fig.tight_layout()
    buffer = io.BytesIO()
    # No timestamps in the file: the same results give the same bytes.
    fig.savefig(buffer, format="png", metadata={"Software": None})
    plt.close(fig)
    path = Path(path)
    atomic_write_bytes(path, buffer.getvalue(), parents=True)
    return path


def write_report(results: dict, out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write ``results.json``, ``results.md`` and ``results.png`` into ``out_dir`` (atomically each)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "results.json", "markdown": out_dir / "results.md", "chart": out_dir / "results.png"}
    write_json(paths["json"], _json_safe(results))
    atomic_write_text(paths["markdown"], markdown_table(results))
    write_chart(results, paths["chart"])
    return paths


def _json_safe(value: object) -> object:
    """NaN/inf become ``null`` (JSON has no NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value
