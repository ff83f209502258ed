"""Evaluate a model on AV-ConfuseBench (published or built question files) with any evaluation backend.

Each item becomes one :class:`~verl_avconfuse.evaluation.backends.EvalRequest`: the question (by default
followed by the RL-CoMM format instruction, as in training: :func:`verl_avconfuse.prompts.format_question`),
the clip as the video and its own soundtrack as the audio. Replies are cached in ``predictions.jsonl`` (a
re-run with the same backend and questions asks nothing again; the finished file is a valid
``jsonl:`` predictions backend).

Muted metrics (percentages):

- the answer is the ``<answer>`` block (:func:`verl_avconfuse.rewards.parse_response`), or with
  ``strict_format=False`` (default) the whole reply when there is no answer block, so models that ignore the
  format are still scored; it says yes/no by :func:`verl_avconfuse.rewards.answers_match` (``"yes"``,
  ``"Yes, there is ..."``; never substring matching: "piano" does not say "no");
- ``muted_accuracy``: right answers on the "no" items (the paper's Acc); ``paper_yes_rate`` = 100 - that
  (the paper's Yes%); ``yes_rate``: the share of *all* answers that say yes (``other_rate``: neither);
  ``accuracy`` over all items and ``balanced_accuracy`` (mean of the per-answer recalls) when the set has
  control ("yes") items;
- ``mean_p_yes`` (HF backend, ``yes_prob=True``): the model's P(yes) / (P(yes) + P(no)) at the answer
  position (:func:`yes_probability`).

Modified metrics: a judge (:mod:`verl_avconfuse.bench.judge`) scores each reply 0-5 for audio and vision
against the annotation; ``a_acc`` / ``v_acc`` are the means over judged items; failures are counted.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from verl_avconfuse.bench.report import PAPER_RESULTS, items_digest, published_setting, write_report
from verl_avconfuse.bench.schemas import (
    NO,
    VISUAL_PLACEHOLDER,
    YES,
    BenchFormatError,
    ProgressFn,
    load_questions,
    video_path_for,
)
from verl_avconfuse.io import append_jsonl, atomic_write_text, iter_jsonl

logger = logging.getLogger(__name__)

#: Candidate continuations for P(yes) / P(no): case and leading-space variants, because a BPE tokenizer
#: gives "yes", " yes" and " Yes" different first tokens and a model may put its mass on any of them.
YES_STRINGS = ("yes", "Yes", "YES", " yes", " Yes", " YES")
NO_STRINGS = ("no", "No", "NO", " no", " No", " NO")
DEFAULT_MAX_NEW_TOKENS = 256
PREDICTIONS_FILE = "predictions.jsonl"
_ANSWER_OPEN = re.compile(r"<answer>", re.IGNORECASE)
_THINK_CLOSE = re.compile(r"</(?:a-think|v-think)>", re.IGNORECASE)


# ------------------------------------------------------------------------------------------ requests


def build_requests(
    items: Sequence[dict],
    setting: str,
    video_paths: Sequence[Path],
    *,
    format_instruction: bool = True,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
) -> list[Any]:
    """One request per item: id ``{setting}-{index:05d}-{video_id}``, the clip as video and as audio."""
    from verl_avconfuse.evaluation.backends import EvalRequest
    from verl_avconfuse.prompts import format_question

    requests = []
    for index, (item, path) in enumerate(zip(items, video_paths, strict=True)):
        question = format_question(item["question"]) if format_instruction else item["question"].strip()
        requests.append(
            EvalRequest(
                id=f"{setting}-{index:05d}-{item['video_id']}",
                question=question,
                video=str(path),
                audio=str(path),
                max_new_tokens=int(max_new_tokens),
            )
        )
    return requests


def _request_key(backend_name: str, request: Any) -> str:
    payload = json.dumps([backend_name, request.id, request.question, request.video, request.max_new_tokens])
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def generate_with_cache(
    backend: Any,
    requests: Sequence[Any],
    cache_path: str | os.PathLike,
    *,
    chunk_size: int = 16,
    progress: ProgressFn | None = None,
) -> list[str]:
    """Replies for ``requests``, reusing those cached in ``cache_path`` for the same backend and request.

    New replies are appended after each chunk (an interrupted run keeps them); at the end the file is
    rewritten atomically with exactly this run's replies, in request order.
    """
    cache_path = Path(cache_path)
    cached: dict[str, str] = {}
    if cache_path.is_file():
        for _, record, _ in iter_jsonl(cache_path):  # a line torn by a kill is skipped: asked again
            if (
                isinstance(record, dict)
                and isinstance(record.get("key"), str)
                and isinstance(record.get("prediction"), str)
            ):
                cached[record["key"]] = record["prediction"]
    keys = [_request_key(backend.name, r) for r in requests]
    replies: list[str | None] = [cached.get(k) for k in keys]
    todo = [i for i, reply in enumerate(replies) if reply is None]
    done = len(requests) - len(todo)
    if progress is not None and done:
        progress(done, len(requests), "cached")
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    for start in range(0, len(todo), max(1, chunk_size)):
        chunk = todo[start : start + chunk_size]
        answers = backend.generate([requests[i] for i in chunk])
        if len(answers) != len(chunk):
            raise RuntimeError(f"backend {backend.name} returned {len(answers)} replies for {len(chunk)} requests")
        for i, answer in zip(chunk, answers, strict=True):
            replies[i] = answer
        append_jsonl(
            cache_path,
            ({"id": requests[i].id, "key": keys[i], "backend": backend.name, "prediction": replies[i]} for i in chunk),
        )
        done += len(chunk)
        if progress is not None:
            progress(done, len(requests), requests[chunk[-1]].id)
    final = [
        json.dumps({"id": r.id, "key": k, "backend": backend.name, "prediction": reply}, ensure_ascii=False)
        for r, k, reply in zip(requests, keys, replies, strict=True)
    ]
    atomic_write_text(cache_path, "\n".join(final) + "\n")
    return [reply or "" for reply in replies]


# -------------------------------------------------------------------------------------- muted scoring


def extracted_answer(reply: str, strict_format: bool = False) -> str | None:
    """The answer block of ``reply``; without one, the whole reply (``None`` with ``strict_format``)."""
    from verl_avconfuse.rewards import parse_response

    answer = parse_response(reply).answer
    if answer is not None or strict_format:
        return answer
    return reply.strip() or None


def answer_polarity(answer: str | None) -> str | None:
    """``"yes"`` / ``"no"`` when the answer says so by the project's answer rules, else ``None``."""
    from verl_avconfuse.rewards import answers_match

    if answers_match(answer, YES):
        return YES
    if answers_match(answer, NO):
        return NO
    return None


def answer_prefix(reply: str) -> str:
    """The reply up to and including the answer's opening tag: where P(yes) is read.

    The tag is the first ``<answer>`` after the last ``</a-think>``/``</v-think>`` (else the first one), the
    same answer :func:`~verl_avconfuse.rewards.parse_response` grades. A reply without one gets
    ``<answer>`` appended, i.e. the probability of the answer the model would give if made to answer now.
    """
    think_end = max((m.end() for m in _THINK_CLOSE.finditer(reply)), default=0)
    openings = list(_ANSWER_OPEN.finditer(reply))
    chosen = next((m for m in openings if m.start() >= think_end), openings[0] if openings else None)
    if chosen is not None:
        return reply[: chosen.end()]
    return (reply.rstrip() + "\n" if reply.strip() else "") + "<answer>"


def _logsumexp(values: Sequence[float]) -> float:
    top = max(values)
    if top == -math.inf:
        return -math.inf
    return top + math.log(sum(math.exp(v - top) for v in values))


def single_token_variants(backend: Any, variants: Sequence[str]) -> list[str]:
    """The variants the backend's tokenizer encodes as one token (all of them when none is, or when the
    backend exposes no tokenizer). One-token candidates share a single forward pass; each longer one costs
    another full pass over the video and audio, and its probability is the product over its tokens anyway
    dominated by the first (Qwen's vocabulary has all of yes/Yes/ yes/ Yes/no/No/ no/ No as single tokens)."""
    tokenizer = getattr(backend, "tokenizer", None)
    if tokenizer is None:
        return list(variants)
    single = [v for v in variants if len(tokenizer.encode(v, add_special_tokens=False)) == 1]
    return single or list(variants)


def yes_probability(backend: Any, request: Any, reply: str) -> float:
    """``P(yes) / (P(yes) + P(no))`` after :func:`answer_prefix` of ``reply``, each side summed over its
    :data:`YES_STRINGS` / :data:`NO_STRINGS` variants that are single tokens (:func:`single_token_variants`).

    Needs a backend with ``next_token_logprobs`` (the HF backend). The reply is re-tokenised from text, so
    the prefix tokens can differ slightly from the generated ones (special tokens were removed).
    """
    yes_strings, no_strings = single_token_variants(backend, YES_STRINGS), single_token_variants(backend, NO_STRINGS)
    log_probs = backend.next_token_logprobs(request, answer_prefix(reply), [*yes_strings, *no_strings])
    yes = _logsumexp([log_probs[s] for s in yes_strings])
    no = _logsumexp([log_probs[s] for s in no_strings])
    top = max(yes, no)
    if top == -math.inf:
        return math.nan
    return math.exp(yes - top) / (math.exp(yes - top) + math.exp(no - top))


def _pct(values: Sequence[bool]) -> float | None:
    return 100.0 * sum(values) / len(values) if values else None


def _mean(values: Sequence[float]) -> float | None:
    finite = [v for v in values if v is not None and not math.isnan(v)]
    return sum(finite) / len(finite) if finite else None


def muted_metrics(records: Sequence[dict]) -> dict:
    """Muted metrics from per-item records with ``answer`` (ground truth), ``says``, ``correct``,
    ``well_formed`` and optionally ``p_yes`` (module docstring: definitions)."""
    no_items = [r for r in records if r["answer"] == NO]
    yes_items = [r for r in records if r["answer"] == YES]
    muted_accuracy = _pct([r["correct"] for r in no_items])
    metrics: dict[str, Any] = {
        "n": len(records),
        "n_muted": len(no_items),
        "n_controls": len(yes_items),
        "muted_accuracy": muted_accuracy,
        "paper_yes_rate": None if muted_accuracy is None else 100.0 - muted_accuracy,
        "yes_rate": _pct([r["says"] == YES for r in records]),
        "no_rate": _pct([r["says"] == NO for r in records]),
        "other_rate": _pct([r["says"] is None for r in records]),
        "accuracy": _pct([r["correct"] for r in records]),
        "balanced_accuracy": None,
        "format_rate": _pct([r["well_formed"] for r in records]),
        "mean_p_yes": None,
    }
    if yes_items and no_items:
        metrics["control_accuracy"] = _pct([r["correct"] for r in yes_items])
        metrics["balanced_accuracy"] = (metrics["control_accuracy"] + muted_accuracy) / 2
    probabilities = [r.get("p_yes") for r in records if r.get("p_yes") is not None]
    if probabilities:
        metrics["mean_p_yes"] = _mean(probabilities)
        metrics["p_yes_accuracy"] = _pct(
            [(r["p_yes"] > 0.5) == (r["answer"] == YES) for r in records if r.get("p_yes") is not None]
        )
    return metrics


def modified_metrics(records: Sequence[dict]) -> dict:
    """A-Acc / V-Acc (means of the 0-5 judge scores over judged items) and counts."""
    judged = [r for r in records if r.get("audio_score") is not None]
    return {
        "n": len(records),
        "a_acc": _mean([r["audio_score"] for r in judged]),
        "v_acc": _mean([r["visual_score"] for r in judged if r.get("visual_score") is not None]),
        "n_judged": len(judged),
        "n_judge_failures": len(records) - len(judged),
        "format_rate": _pct([r["well_formed"] for r in records]),
    }


# ---------------------------------------------------------------------------------------------- run


def _resolve_videos(
    items: list[dict], setting: str, video_dir: Path, skip_missing: bool, questions: Path
) -> tuple[list[dict], list[Path], list[str]]:
    kept, paths, missing = [], [], []
    for item in items:
        path = video_path_for(item, setting, video_dir)
        if path.is_file():
            kept.append(item)
            paths.append(path)
        else:
            missing.append(path.name)
    if missing and not skip_missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise BenchFormatError(
            f"{video_dir}: {len(missing)} video(s) of {questions} are missing: {shown} "
            "(muted clips are looked up as {video_id}.mp4, modified clips by 'filename'; "
            "--skip-missing evaluates the rest)"
        )
    return kept, paths, missing


def evaluate(
    questions: str | os.PathLike,
    video_dir: str | os.PathLike,
    backend: Any,
    out_dir: str | os.PathLike,
    *,
    setting: str | None = None,
    judge: Any | None = None,
    limit: int | None = None,
    skip_missing: bool = False,
    yes_prob: bool = False,
    format_instruction: bool = True,
    strict_format: bool = False,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    chunk_size: int = 16,
    progress: ProgressFn | None = None,
) -> dict:
    """Run ``backend`` on a question file and write ``predictions.jsonl`` and the report into ``out_dir``.

    Args:
        questions: a published or built question JSON.
        video_dir: folder with the clips (``{video_id}.mp4`` / ``filename``).
        backend: any :mod:`verl_avconfuse.evaluation.backends` backend.
        setting: ``"muted"`` / ``"modified"``; ``None`` infers it from the file.
        judge: modified setting: :class:`~verl_avconfuse.bench.judge.LLMJudge` or ``OfflineJudge`` (required).
        limit: evaluate only the first ``limit`` items.
        yes_prob: muted: also the P(yes) of every reply (needs ``backend.next_token_logprobs``).
        format_instruction: append the RL-CoMM format instruction to each question.
        strict_format: muted: a reply without an ``<answer>`` block has no answer.

    Returns:
        The results dict written to ``results.json`` (metrics, per-item records, paper numbers when the
        published set was used).
    """
    from verl_avconfuse.rewards import parse_response

    questions = Path(questions)
    out_dir = Path(out_dir)
    all_items = load_questions(questions, setting)
    if setting is None:
        from verl_avconfuse.bench.schemas import detect_setting

        setting = detect_setting(all_items)
    assert setting is not None
    if setting == "modified" and judge is None:
        raise ValueError("the modified setting needs a judge (LLMJudge or OfflineJudge)")
    if yes_prob and setting != "muted":
        raise ValueError("yes_prob applies to the muted setting only")
    if yes_prob and not hasattr(backend, "next_token_logprobs"):
        raise ValueError(f"yes_prob needs a backend with next_token_logprobs (an hf: backend), not {backend.name}")
    if limit is not None and limit < 1:
        raise ValueError(f"limit={limit} must be >= 1")
    published = published_setting(all_items, setting)
    items = all_items[:limit] if limit is not None else all_items
    items, paths, missing = _resolve_videos(items, setting, Path(video_dir), skip_missing, questions)
    if not items:
        raise BenchFormatError(f"{video_dir}: none of the {len(all_items)} videos of {questions} is there")
    requests = build_requests(
        items, setting, paths, format_instruction=format_instruction, max_new_tokens=max_new_tokens
    )
    replies = generate_with_cache(
        backend, requests, out_dir / PREDICTIONS_FILE, chunk_size=chunk_size, progress=progress
    )

    records: list[dict] = []
    for item, request, reply in zip(items, requests, replies, strict=True):
        parsed = parse_response(reply)
        record = {
            "id": request.id,
            "video_id": item["video_id"],
            "video": request.video,
            "prediction": reply,
            "well_formed": parsed.well_formed,
        }
        if setting == "muted":
            answer = extracted_answer(reply, strict_format)
            truth = item["answer"].strip().lower()
            from verl_avconfuse.rewards import answers_match

            record.update(
                answer=truth,
                extracted_answer=answer,
                says=answer_polarity(answer),
                correct=answers_match(answer, truth),
            )
            if yes_prob:
                record["p_yes"] = yes_probability(backend, request, reply)
        else:
            record.update(sound_type=item["sound_type"], annotation=item["annotation"])
        records.append(record)

    if setting == "modified":
        placeholders = sum(VISUAL_PLACEHOLDER in r["annotation"] for r in records)
        if placeholders:
            logger.warning(
                "%d annotation(s) still hold the visual placeholder %r: their visual scores compare against it "
                "(the offline judge skips them)",
                placeholders,
                VISUAL_PLACEHOLDER,
            )
        scores = judge.score([(r["prediction"], r["annotation"]) for r in records], [r["sound_type"] for r in records])
        for record, score in zip(records, scores, strict=True):
            record.update(audio_score=score.audio, visual_score=score.visual, judge_error=score.error)
        metrics = modified_metrics(records)
        group_by = "sound_type"
    else:
        metrics = muted_metrics(records)
        group_by = "answer" if metrics["n_controls"] and metrics["n_muted"] else "instruments_len"

    groups: dict[str, list[dict]] = {}
    for item, record in zip(items, records, strict=True):
        groups.setdefault(str(item[group_by] if group_by in item else record[group_by]), []).append(record)
    metric_fn = modified_metrics if setting == "modified" else muted_metrics
    by_group = {name: metric_fn(group) for name, group in sorted(groups.items())}

    results = {
        "setting": setting,
        "questions_file": str(questions),
        "questions_sha256": items_digest(all_items, setting),
        "published": published,
        "n_total": len(all_items),
        "n_items": len(items),
        "missing_videos": missing,
        "backend": backend.name,
        "judge": getattr(judge, "name", None),
        "config": {
            "limit": limit,
            "format_instruction": format_instruction,
            "strict_format": strict_format,
            "max_new_tokens": max_new_tokens,
            "yes_prob": yes_prob,
        },
        "metrics": metrics,
        "group_by": group_by,
        "by_group": by_group,
        "paper": PAPER_RESULTS if published else None,
        "items": records,
    }
    results["report_files"] = {k: str(v) for k, v in write_report(results, out_dir).items()}
    return results
