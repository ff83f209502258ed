"""Layer-by-layer answer uncertainty on AV-ConfuseBench muted questions (the paper's root-cause analysis).

For each question of a muted-setting file the Omni thinker runs once on the clip (video + its soundtrack)
with the question and the assistant's text up to the answer (``--prompt rl-comm``: the RL-CoMM format
instruction, read right after ``<answer>``; ``paper``: the question verbatim, read at the reply's first
token), and :class:`~verl_avconfuse.diagnosis.lens.LogitLens` gives the next-token logits of every layer
there. :func:`~verl_avconfuse.diagnosis.stats.layer_readout` turns them into the per-layer entropy, P(yes),
yes/no mass and rank of the final answer; :func:`~verl_avconfuse.diagnosis.stats.summarize_groups` averages
them per group (muted vs control, and by instrument count when the file has several) with 95 % CIs.

Outputs (each written atomically, all computed before the first is written, so a failed run leaves a
previous result as it was): ``OUT/layer_entropy.json`` (the per-group curves, every question's raw
per-layer values, the settings and provenance), ``OUT/layer_entropy.md`` (a table per layer) and
``OUT/layer_entropy.png`` (curves per group, when matplotlib is installed). :func:`write_comparison` plots
several results together (a trained checkpoint against its base).
"""

from __future__ import annotations

import datetime
import json
import math
import os
import platform
import shlex
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from verl_avconfuse.diagnosis.stats import CONTROL, MUTED, paired_differences, question_groups, summarize_groups
from verl_avconfuse.errors import InputError

__all__ = [
    "RESULT_NAME",
    "DiagnosisQuestion",
    "answer_prefix_for",
    "answer_tokens",
    "build_result",
    "diagnose",
    "load_diagnosis_questions",
    "load_result",
    "markdown_table",
    "plot_results",
    "write_comparison",
    "write_outputs",
]

RESULT_NAME = "layer_entropy"
COMPARE_NAME = "layer_entropy.compare"
#: Bumped when the JSON layout changes; --compare refuses results of another version.
SCHEMA_VERSION = 1
#: Where the readout is taken, per --prompt: right after the RL-CoMM format's answer tag, or the reply's
#: first token (the paper's base-model protocol: "Your answer can only be 'yes' or 'no'").
ANSWER_PREFIXES = {"rl-comm": "<answer>", "paper": ""}
#: Whether the model writes its reasoning before the readout (:func:`diagnose`).
REASONING_MODES = ("skip", "generate")
#: The readouts plotted (JSON and table have all of :data:`~verl_avconfuse.diagnosis.stats.READOUTS`).
PLOTTED = (("entropy", "entropy of the next-token distribution (nats)"), ("p_yes", "P(yes) / (P(yes) + P(no))"))


@dataclass(frozen=True)
class DiagnosisQuestion:
    """One muted-setting question with its clip and the groups it counts in."""

    id: str
    video_id: str
    question: str
    answer: str
    instruments_len: str
    video: str
    groups: tuple[str, ...]


# ------------------------------------------------------------------------------------------- inputs


def resolve_questions(value: str | os.PathLike) -> Path:
    """``published`` -> the released muted file shipped with the package; else the path as given."""
    if str(value) == "published":
        from verl_avconfuse.bench.schemas import published_questions

        return published_questions("muted")
    return Path(value)


def load_diagnosis_questions(
    questions: str | os.PathLike,
    video_dir: str | os.PathLike,
    *,
    limit: int | None = None,
    skip_bad: bool = False,
    progress: bool = False,
) -> tuple[list[DiagnosisQuestion], list[dict]]:
    """The file's questions whose clip is usable, and the skipped ones (``skip_bad``) with the reason.

    Raises:
        BenchFormatError: a malformed file, or one of the modified setting (names the file and field).
        InputError: a clip missing or unusable in ``video_dir`` (without ``skip_bad``), naming the file and
            the clip; nothing has been run.
    """
    from verl_avconfuse.bench.schemas import BenchFormatError, detect_setting, load_questions, video_path_for
    from verl_avconfuse.data_preprocess.common import check_media_files

    path = resolve_questions(questions)
    if path.is_file():
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raw = None  # load_questions words the error
        if isinstance(raw, list) and detect_setting(raw) == "modified":
            raise BenchFormatError(
                f"{path}: a modified-setting file (items have 'sound_type'); layer-entropy needs the muted "
                "setting's yes/no questions (avconfusebench_test_m1.json or `avconfuse bench build muted`)"
            )
    video_dir = Path(video_dir)
    if not video_dir.is_dir():
        raise InputError(f"--video-dir {video_dir}: no such folder")
    items = load_questions(path, "muted")
    if limit is not None:
        items = items[:limit]
    by_count = len({item["instruments_len"] for item in items}) > 1
    found = [
        DiagnosisQuestion(
            id=f"muted-{index:05d}-{item['video_id']}",
            video_id=item["video_id"],
            question=item["question"],
            answer=item["answer"].strip().lower(),
            instruments_len=item["instruments_len"],
            video=os.fspath(video_path_for(item, "muted", video_dir)),
            groups=tuple(question_groups(item["answer"], item["instruments_len"], by_count)),
        )
        for index, item in enumerate(items)
    ]
    reasons: dict[str, str | None] = {}
    check_media_files([q.video for q in found], reasons, progress=progress)
    bad = sorted(clip for clip, reason in reasons.items() if reason)
    if bad and not skip_bad:
        shown = "; ".join(str(reasons[clip]) for clip in bad[:5]) + (
            f"; ... and {len(bad) - 5} more" if len(bad) > 5 else ""
        )
        raise InputError(
            f"{path}: {len(bad)} clip(s) missing or unusable in --video-dir {video_dir}; nothing was run "
            f"(--skip-bad leaves their questions out): {shown}"
        )
    kept = [q for q in found if not reasons[q.video]]
    skipped = [{"id": q.id, "video": q.video, "reason": reasons[q.video]} for q in found if reasons[q.video]]
    if not kept:
        raise InputError(f"{path}: no question has a usable clip in --video-dir {video_dir}")
    return kept, skipped


def answer_prefix_for(prompt: str, override: str | None = None) -> str:
    if override is not None:
        return override
    if prompt not in ANSWER_PREFIXES:
        raise InputError(f"--prompt {prompt}: expected one of {', '.join(ANSWER_PREFIXES)}")
    return ANSWER_PREFIXES[prompt]


def prompt_text(question: DiagnosisQuestion, prompt: str) -> str:
    from verl_avconfuse.method.prompts import format_question

    return format_question(question.question) if prompt == "rl-comm" else question.question.strip()


def answer_tokens(tokenizer: Any) -> dict[str, dict[str, int]]:
    """``{"yes": {string: id}, "no": {...}}``: the evaluation's yes/no variants that are one token.

    The same rule as ``mean_p_yes`` (:func:`verl_avconfuse.evaluation.yes_probability.single_token_variants` of
    ``YES_STRINGS`` / ``NO_STRINGS``); a layer's readout needs one token per variant, so a tokenizer with
    no single-token "yes" (or "no") variant is an error.
    """
    from verl_avconfuse.evaluation.yes_probability import NO_STRINGS, YES_STRINGS

    tokens: dict[str, dict[str, int]] = {}
    for side, variants in (("yes", YES_STRINGS), ("no", NO_STRINGS)):
        single = {}
        for variant in variants:
            ids = tokenizer.encode(variant, add_special_tokens=False)
            if len(ids) == 1:
                single[variant] = int(ids[0])
        if not single:
            raise InputError(
                f"the tokenizer encodes none of {list(variants)} as one token; P({side}) per layer needs one"
            )
        tokens[side] = single
    return tokens


# ------------------------------------------------------------------------------------------- the run


def diagnose(
    backend: Any,
    questions: Sequence[DiagnosisQuestion],
    *,
    prompt: str = "rl-comm",
    answer_prefix: str | None = None,
    reasoning: str = "skip",
    max_new_tokens: int = 256,
    batch_size: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[list[dict], dict]:
    """Every question's per-layer readout, from one forward each (``batch_size`` at a time, left-padded).

    Args:
        backend: an :class:`~verl_avconfuse.evaluation.backends.HFOmniBackend` (its model, tokenizer and
            ``prompt_features``: media as in evaluation and training; ``generate`` for ``reasoning``).
        reasoning: ``"skip"``: the assistant text is ``answer_prefix`` alone (one forward: the answer the model
            gives if made to answer now); ``"generate"``: the model first writes its greedy reply
            (``max_new_tokens``) and the readout is taken where that reply's answer starts
            (:func:`verl_avconfuse.evaluation.yes_probability.answer_prefix`, the position of the evaluation's
            ``mean_p_yes``): the answer after the model's own audio and visual reasoning.

    Returns:
        ``(records, checks)``: one record per question (its groups, the final answer token, and per layer
        ``entropy``, ``p_yes``, ``yes_no_mass``, ``answer_rank``, ``top_token``); ``checks`` has the largest
        difference between the lens's last row and the model's own log-probabilities over all questions.
    """
    import torch

    from verl_avconfuse.diagnosis.lens import LogitLens
    from verl_avconfuse.diagnosis.stats import layer_readout
    from verl_avconfuse.evaluation.backends import EvalRequest
    from verl_avconfuse.evaluation.yes_probability import answer_prefix as reply_answer_prefix

    if reasoning not in REASONING_MODES:
        raise InputError(f"--reasoning {reasoning}: expected one of {', '.join(REASONING_MODES)}")
    prefix = answer_prefix_for(prompt, answer_prefix)
    tokens = answer_tokens(backend.tokenizer)
    yes_ids, no_ids = sorted(set(tokens["yes"].values())), sorted(set(tokens["no"].values()))
    lens = LogitLens(backend.model)
    tokenizer = backend.tokenizer
    records: list[dict] = []
    worst = 0.0
    for start in range(0, len(questions), batch_size):
        chunk = questions[start : start + batch_size]
        requests = [
            EvalRequest(
                id=q.id, question=prompt_text(q, prompt), video=q.video, audio=q.video, max_new_tokens=max_new_tokens
            )
            for q in chunk
        ]
        replies: list[str | None] = [None] * len(chunk)
        prefixes = [prefix] * len(chunk)
        if reasoning == "generate":
            replies = list(backend.generate(requests))
            prefixes = [reply_answer_prefix(reply) for reply in replies]
        lens_logits, final = lens.forward(backend.prompt_features(requests, prefixes))
        for row, question in enumerate(chunk):
            answer_id = int(final[row].argmax())
            readout = layer_readout(lens_logits[row], yes_ids, no_ids, answer_id)
            gap = (torch.log_softmax(lens_logits[row, -1], -1) - torch.log_softmax(final[row], -1)).abs().max()
            worst = max(worst, float(gap))
            polarity = "yes" if answer_id in yes_ids else "no" if answer_id in no_ids else None
            records.append(
                {
                    "id": question.id,
                    "video_id": question.video_id,
                    "question": question.question,
                    "answer": question.answer,
                    "instruments_len": question.instruments_len,
                    "groups": list(question.groups),
                    "reply": replies[row],
                    "answer_prefix": prefixes[row],
                    "final_token": tokenizer.decode([answer_id]),
                    "final_polarity": polarity,
                    **{k: v for k, v in readout.items() if k != "top_token"},
                    "top_token": [tokenizer.decode([t]) for t in readout["top_token"]],
                }
            )
        if progress is not None:
            progress(min(start + batch_size, len(questions)), len(questions))
    checks = {"last_layer_max_abs_logprob_diff": worst}
    return records, checks


def provenance(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Command, commit (of the package's checkout, when it is one), machine and UTC date of a result."""
    import torch

    from verl_avconfuse.version import __version__

    package_dir = Path(__file__).resolve().parents[2]
    commit = None
    try:
        commit = (
            subprocess.run(
                ["git", "-C", str(package_dir), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
            ).stdout.strip()
            or None
        )
        if commit:
            dirty = subprocess.run(
                ["git", "-C", str(package_dir), "status", "--porcelain", "--untracked-files=no"],
                capture_output=True,
                text=True,
                timeout=10,
            ).stdout.strip()
            commit += " (with uncommitted changes)" if dirty else ""
    except (OSError, subprocess.SubprocessError):
        pass
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return {
        "command": shlex.join(["avconfuse", *(sys.argv[1:] if argv is None else argv)]),
        "version": __version__,
        "commit": commit,
        "machine": f"{os.cpu_count()} x {cpu}, {device}, torch {torch.__version__}",
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def build_result(
    records: Sequence[dict],
    *,
    model: str,
    model_type: str | None,
    questions_file: str,
    video_dir: str,
    prompt: str,
    answer_prefix: str,
    tokens: dict[str, dict[str, int]],
    reasoning: str = "skip",
    checks: dict,
    skipped: Sequence[dict] = (),
    label: str | None = None,
    settings: dict | None = None,
    confidence: float = 0.95,
    run_info: dict | None = None,
) -> dict[str, Any]:
    """The ``layer_entropy.json`` object (module docstring); ``records`` from :func:`diagnose`."""
    groups = summarize_groups(records, confidence)
    n_layers = len(records[0]["entropy"])
    by_count = any("/" in name for name in groups)
    return {
        "schema": SCHEMA_VERSION,
        "label": label or Path(model.partition(":")[2] or model).name,
        "model": model,
        "model_type": model_type,
        "questions_file": questions_file,
        "video_dir": video_dir,
        "n_questions": len(records),
        "skipped": list(skipped),
        "prompt": prompt,
        "reasoning": reasoning,
        "answer_prefix": answer_prefix if reasoning == "skip" else "the model's own reply up to its answer",
        "final_polarity": _polarity_counts(records),
        "yes_tokens": tokens["yes"],
        "no_tokens": tokens["no"],
        "readout": "logit lens: each layer's residual stream at the answer position through the model's final "
        "norm and lm_head; the last layer is the model's own next-token distribution",
        "embedding_output_included": True,
        "num_hidden_layers": n_layers - 1,
        "layers": list(range(n_layers)),
        "layer_names": ["embedding output"] + [f"layer {i}" for i in range(1, n_layers)],
        "group_by": ["answer", "instruments_len"] if by_count else ["answer"],
        "confidence": confidence,
        "checks": checks,
        "settings": settings or {},
        **(run_info or {}),
        "groups": groups,
        "muted_minus_control": paired_differences(records, confidence),
        "questions": list(records),
    }


def _polarity_counts(records: Sequence[dict]) -> dict[str, dict[str, int]]:
    """Per kind of question, how often the model's top token at the readout is a yes, a no or another token."""
    counts: dict[str, dict[str, int]] = {}
    for record in records:
        kind = record["groups"][0]
        bucket = counts.setdefault(kind, {"yes": 0, "no": 0, "other": 0})
        bucket[record["final_polarity"] or "other"] += 1
    return counts


# ------------------------------------------------------------------------------------------- outputs


def _cell(point: dict, digits: int) -> str:
    if point["mean"] is None:
        return "–"
    if point["ci_low"] is None:
        return f"{point['mean']:.{digits}f}"
    return f"{point['mean']:.{digits}f} [{point['ci_low']:.{digits}f}, {point['ci_high']:.{digits}f}]"


def _layer_name(layer: int) -> str:
    return "0 (embedding output)" if layer == 0 else str(layer)


def markdown_table(result: dict) -> str:
    """Per layer, per group: mean entropy and mean P(yes) with their CIs."""
    groups = result["groups"]
    lines = [
        f"# Layer-by-layer answer uncertainty: {result['label']}",
        "",
        f"- model: `{result['model']}` ({result['model_type']}), {result['num_hidden_layers']} decoder layers; "
        "row 0 is the embedding output",
        f"- questions: `{result['questions_file']}`, {result['n_questions']} ("
        + ", ".join(f"{name} {entry['n']}" for name, entry in groups.items())
        + f"); {len(result['skipped'])} skipped",
        f"- prompt `{result['prompt']}`, "
        + (
            f"read after the assistant text {json.dumps(result['answer_prefix'])} (reasoning skipped)"
            if result["reasoning"] == "skip"
            else "read where the model's own greedy reply gives its answer"
        )
        + f"; logit lens (final norm + lm_head); mean [{result['confidence']:.0%} CI, Student's t] over questions",
        "- the model's top token at the readout (last layer): "
        + "; ".join(
            f"{kind}: yes {c['yes']}, no {c['no']}, other {c['other']}" for kind, c in result["final_polarity"].items()
        ),
        "",
    ]
    for name, title, digits in (("entropy", "entropy (nats)", 3), ("p_yes", "P(yes) / (P(yes) + P(no))", 3)):
        lines.append(f"## {title}")
        lines.append("")
        lines.append("| layer | " + " | ".join(f"{g} (n={groups[g]['n']})" for g in groups) + " |")
        lines.append("|---|" + "---|" * len(groups))
        for layer in result["layers"]:
            cells = " | ".join(_cell(groups[g][name][layer], digits) for g in groups)
            lines.append(f"| {_layer_name(layer)} | {cells} |")
        lines.append("")
    difference = result.get("muted_minus_control")
    if difference:
        lines += [
            f"## muted - control, within each clip ({difference['n_clips']} clips with both)",
            "",
            "| layer | entropy (nats) | P(yes) |",
            "|---|---|---|",
        ]
        for layer in result["layers"]:
            cells = " | ".join(_cell(difference[name][layer], 3) for name in ("entropy", "p_yes"))
            lines.append(f"| {_layer_name(layer)} | {cells} |")
        lines.append("")
    return "\n".join(lines)


def plot_results(results: Sequence[dict], path: str | os.PathLike) -> str:
    """Curves per group over layers (entropy, P(yes)) with CI bands; one line style per result.

    Results of different depths are drawn against relative depth (layer / number of layers). Returns a
    line for the user: the chart's path, or why it was not written (matplotlib missing).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return 'chart not written: matplotlib is missing (pip install "verl-avconfuse[plots]")'
    from verl_avconfuse.io import atomic_write_figure

    relative = len({r["num_hidden_layers"] for r in results}) > 1
    styles = ["-", "--", ":", "-."]
    colours = {MUTED: "C3", CONTROL: "C0"}
    figure, axes = plt.subplots(1, len(PLOTTED), figsize=(5.2 * len(PLOTTED), 3.8))
    for axis, (name, title) in zip(axes, PLOTTED, strict=True):
        for k, result in enumerate(results):
            depth = result["num_hidden_layers"]
            xs = [layer / depth if relative else layer for layer in result["layers"]]
            groups = result["groups"]
            # Per-count groups are drawn thin, only for a single result (several results: one line per kind).
            shown = [g for g in groups if "/" not in g or len(results) == 1]
            # Controls first and hollow, muted on top: where the two coincide (a model that does not hear the
            # difference) both stay visible.
            shown.sort(key=lambda g: g.split("/")[0] == MUTED)
            for extra, group in enumerate(shown):
                kind = group.split("/")[0]
                points = groups[group][name]
                means = [p["mean"] if p["mean"] is not None else math.nan for p in points]
                colour = colours.get(kind, f"C{2 + extra}") if "/" not in group else f"C{2 + extra}"
                label = (
                    f"{result['label']}: {group} (n={groups[group]['n']})"
                    if len(results) > 1
                    else (f"{group} (n={groups[group]['n']})")
                )
                axis.plot(
                    xs,
                    means,
                    styles[k % len(styles)],
                    color=colour,
                    marker="s" if kind == CONTROL else "o",
                    markersize=6 if kind == CONTROL else 3,
                    markerfacecolor="none" if kind == CONTROL else colour,
                    linewidth=1.8 if "/" not in group else 0.9,
                    label=label,
                )
                lows = [p["ci_low"] if p["ci_low"] is not None else m for p, m in zip(points, means, strict=True)]
                highs = [p["ci_high"] if p["ci_high"] is not None else m for p, m in zip(points, means, strict=True)]
                if "/" not in group:
                    axis.fill_between(xs, lows, highs, color=colour, alpha=0.12, linewidth=0)
        axis.set_title(title, fontsize=9)
        axis.set_xlabel(
            "relative depth (layer / layers; 0 = embedding output)" if relative else "layer (0 = embedding output)",
            fontsize=8,
        )
        if not relative:
            from matplotlib.ticker import MaxNLocator

            axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        if name == "p_yes":
            axis.set_ylim(-0.02, 1.02)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
    names = ", ".join(r["label"] for r in results)
    figure.suptitle(f"logit lens at the answer position, AV-ConfuseBench muted: {names}", fontsize=9)
    figure.tight_layout()
    atomic_write_figure(path, figure, dpi=110, parents=True)
    return f"chart: {path}"


def write_outputs(result: dict, out_dir: str | os.PathLike) -> dict[str, str]:
    """Write the chart, the table and, last, the JSON, each atomically; return what was written."""
    from verl_avconfuse.io import atomic_write_json, atomic_write_text

    out_dir = Path(out_dir)
    files = {"json": str(out_dir / f"{RESULT_NAME}.json"), "markdown": str(out_dir / f"{RESULT_NAME}.md")}
    chart = plot_results([result], out_dir / f"{RESULT_NAME}.png")
    if chart.startswith("chart: "):
        files["png"] = str(out_dir / f"{RESULT_NAME}.png")
    atomic_write_text(files["markdown"], markdown_table(result) + "\n", parents=True)
    atomic_write_json(files["json"], {**result, "files": files}, parents=True, indent=1, ensure_ascii=False)
    return files


def load_result(path: str | os.PathLike, option: str = "--compare") -> dict:
    """A stored ``layer_entropy.json`` (or the folder holding one), checked enough to plot it."""
    path = Path(path)
    if path.is_dir():
        path = path / f"{RESULT_NAME}.json"
    if not path.is_file():
        raise InputError(f"{option} {path}: no such file; expected a {RESULT_NAME}.json written by this command")
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InputError(f"{option} {path}: not a JSON file ({error})") from None
    if not isinstance(result, dict) or result.get("schema") != SCHEMA_VERSION:
        raise InputError(
            f"{option} {path}: field 'schema': expected {SCHEMA_VERSION} (a {RESULT_NAME}.json of this version), "
            f"got {result.get('schema') if isinstance(result, dict) else type(result).__name__!r}"
        )
    for field in ("label", "layers", "num_hidden_layers", "groups"):
        if field not in result:
            raise InputError(f"{option} {path}: missing field {field!r}")
    return result


def comparison_table(results: Sequence[dict]) -> str:
    """Mean entropy and P(yes) per layer, one column per (result, group) with the kind groups only."""
    lines = ["# Layer-by-layer answer uncertainty: " + " vs ".join(r["label"] for r in results), ""]
    for r in results:
        lines.append(
            f"- {r['label']}: `{r['model']}`, {r['num_hidden_layers']} layers, prompt `{r['prompt']}`, "
            f"{r['n_questions']} questions from `{r['questions_file']}`"
        )
    lines.append("")
    columns = [(r, g) for r in results for g in r["groups"] if "/" not in g]
    depth = max(len(r["layers"]) for r in results)
    for name, title in (("entropy", "entropy (nats)"), ("p_yes", "P(yes) / (P(yes) + P(no))")):
        lines += [f"## {title}", "", "| layer | " + " | ".join(f"{r['label']}: {g}" for r, g in columns) + " |"]
        lines.append("|---|" + "---|" * len(columns))
        for layer in range(depth):
            cells = [_cell(r["groups"][g][name][layer], 3) if layer < len(r["layers"]) else "" for r, g in columns]
            lines.append(f"| {_layer_name(layer)} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def write_comparison(results: Sequence[dict], out_dir: str | os.PathLike) -> dict[str, str]:
    """``OUT/layer_entropy.compare.{md,png}``: several results on one chart and one table."""
    from verl_avconfuse.io import atomic_write_text

    out_dir = Path(out_dir)
    files = {"markdown": str(out_dir / f"{COMPARE_NAME}.md")}
    chart = plot_results(results, out_dir / f"{COMPARE_NAME}.png")
    if chart.startswith("chart: "):
        files["png"] = str(out_dir / f"{COMPARE_NAME}.png")
    atomic_write_text(files["markdown"], comparison_table(results) + "\n", parents=True)
    return files
