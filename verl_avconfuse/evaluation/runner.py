"""Run a task against a backend, resumably: every reply is cached the moment it exists.

``{out}/{task}.predictions.jsonl`` holds one ``{"id", "key", "backend", "prediction"}`` line per answered
doc, appended and flushed (and fsync'ed) after each generated batch. ``key`` hashes what was asked (backend,
id, prompt, media, reply budget), so a re-run with another ``--prompt`` asks again instead of reusing replies
to another question; a line without ``key`` (hand-written) is trusted by id. A re-run asks the backend only
for the docs it lacks, so a killed run loses at most the batch in flight; a line cut short by the kill is
dropped when the cache is read. The cache records which backend wrote each line, and a run with another
backend refuses to mix its replies in (use another ``--out``). At the end the file is rewritten atomically
with exactly this run's replies in doc order, so it is also a valid input of
:class:`~verl_avconfuse.evaluation.backends.PredictionsBackend` (``jsonl:`` backend).

Then every doc is scored under each requested answer rule, a judge scores judged tasks (modified setting),
and the results JSON, markdown table and chart are written atomically
(:mod:`~verl_avconfuse.evaluation.report`).

Data report (``results["data_report"]``): how many records share a release id (``record_key``), how many
of those disagree on the answer (Music-AVQA ``data/json``: 55 test pairs), plus what the loader noted
(AVQA's padded or skipped options). Every record is kept and scored; doc ids stay unique
(``{video_id}/{question_id}``, then ``#2`` for the second record with that pair).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from verl_avconfuse.errors import InputError
from verl_avconfuse.evaluation.backends import Backend, EvalRequest
from verl_avconfuse.evaluation.matching import match_rules
from verl_avconfuse.evaluation.report import write_report
from verl_avconfuse.evaluation.task import EvalDoc, LoadOptions, Task
from verl_avconfuse.io import append_jsonl, atomic_write_bytes, atomic_write_text, iter_jsonl

logger = logging.getLogger(__name__)

__all__ = [
    "PredictionCache",
    "PreparedDocs",
    "data_report",
    "doc_request",
    "evaluate",
    "evaluate_docs",
    "evaluate_prepared",
    "prepare_docs",
]


def request_key(backend_name: str, request: EvalRequest) -> str:
    payload = json.dumps(
        [backend_name, request.id, request.question, request.video, request.audio, request.max_new_tokens]
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class PredictionCache:
    """The prediction file of one task run (module docstring)."""

    def __init__(self, path: str | os.PathLike, backend_name: str) -> None:
        self.path = Path(path)
        self.backend_name = backend_name
        self.predictions: dict[str, tuple[str | None, str]] = {}
        if self.path.exists():
            self._load()

    def _load(self) -> None:
        data = self.path.read_bytes()
        complete, _, tail = data.rpartition(b"\n")
        if tail.strip():
            # The last line has no newline: the run was killed while writing it. Drop it, so the
            # next append starts on a fresh line.
            logger.warning("%s: dropping an incomplete last line (%d bytes)", self.path, len(tail))
            atomic_write_bytes(self.path, complete + b"\n" if complete else b"")
        for number, record, error in iter_jsonl(self.path):
            if error is not None:
                raise ValueError(f"{self.path}:{number}: not JSON ({error.msg}); the cache is damaged")
            if not isinstance(record, dict) or "id" not in record or not isinstance(record.get("prediction"), str):
                raise ValueError(f"{self.path}:{number}: expected an object with 'id' and a string 'prediction'")
            if record.get("backend") != self.backend_name:
                raise ValueError(
                    f"{self.path}:{number}: written by backend {record.get('backend')!r}, this run uses "
                    f"{self.backend_name!r}; evaluate into another --out folder or delete the cache"
                )
            self.predictions[str(record["id"])] = (record.get("key"), record["prediction"])

    def get(self, doc_id: str, key: str) -> str | None:
        cached = self.predictions.get(doc_id)
        if cached is None or (cached[0] is not None and cached[0] != key):
            return None
        return cached[1]

    def append(self, ids: Sequence[str], keys: Sequence[str], replies: Sequence[str]) -> None:
        append_jsonl(
            self.path,
            (
                {"id": i, "key": k, "backend": self.backend_name, "prediction": r}
                for i, k, r in zip(ids, keys, replies, strict=True)
            ),
        )
        self.predictions.update({i: (k, r) for i, k, r in zip(ids, keys, replies, strict=True)})

    def rewrite(self, ids: Sequence[str], keys: Sequence[str]) -> None:
        """Keep exactly these docs' replies, in this order (atomically)."""
        lines = [
            json.dumps(
                {"id": i, "key": k, "backend": self.backend_name, "prediction": self.predictions[i][1]},
                ensure_ascii=False,
            )
            for i, k in zip(ids, keys, strict=True)
        ]
        atomic_write_text(self.path, "".join(line + "\n" for line in lines))


def doc_request(doc: EvalDoc, max_new_tokens: int, prompt: str = "paper") -> EvalRequest:
    """The backend request of a doc: the clip as video and its soundtrack as audio."""
    return EvalRequest(
        id=doc.id, question=doc.prompt(prompt), video=doc.video, audio=doc.video, max_new_tokens=max_new_tokens
    )


def data_report(docs: Sequence[EvalDoc], loader_notes: dict[str, Any] | None = None) -> dict[str, Any]:
    """Duplicate and contradictory records among ``docs`` (by ``record_key``) and the loader's notes."""
    groups: dict[str, list[EvalDoc]] = {}
    for doc in docs:
        groups.setdefault(doc.record_key or doc.id, []).append(doc)
    repeated = {k: g for k, g in groups.items() if len(g) > 1}
    contradictory = {k: g for k, g in repeated.items() if len({d.ground_truth for d in g}) > 1}
    report: dict[str, Any] = {
        "records": len(docs),
        "duplicate_keys": len(repeated),
        "duplicate_records": sum(len(g) - 1 for g in repeated.values()),
        "contradictory_keys": len(contradictory),
        "contradictory_examples": [
            {"record_key": k, "ids": [d.id for d in g], "ground_truths": [d.ground_truth for d in g]}
            for k, g in list(contradictory.items())[:10]
        ],
    }
    report.update(loader_notes or {})
    return report


def _check_media(docs: Sequence[EvalDoc], skip_bad: bool, progress: bool) -> tuple[list[EvalDoc], list[dict]]:
    from verl_avconfuse.data_preprocess.common import check_media_files

    cache: dict[str, str | None] = {}
    check_media_files([d.video for d in docs], cache, progress=progress)
    bad = {p: r for p, r in cache.items() if r}
    if bad and not skip_bad:
        shown = sorted(bad.items())[:10]
        lines = "; ".join(r for _, r in shown) + (f"; ... and {len(bad) - 10} more" if len(bad) > 10 else "")
        raise InputError(
            f"{len(bad)} unusable media file(s); nothing was evaluated (--skip-bad leaves them out): {lines}"
        )
    kept = [d for d in docs if not cache[d.video]]
    skipped = [{"id": d.id, "video": d.video, "reason": cache[d.video]} for d in docs if cache[d.video]]
    return kept, skipped


def _yes_probabilities(task: Task, backend: Any, requests: Sequence[EvalRequest], replies: Sequence[str]) -> list[dict]:
    return [{"p_yes": task.yes_prob(backend, r, reply)} for r, reply in zip(requests, replies, strict=True)]


def _judge(judge: Any, docs: Sequence[EvalDoc], replies: Sequence[str]) -> list[dict]:
    from verl_avconfuse.bench.schemas import VISUAL_PLACEHOLDER

    placeholders = sum(VISUAL_PLACEHOLDER in d.ground_truth for d in docs)
    if placeholders:
        logger.warning(
            "%d annotation(s) still hold the visual placeholder %r: their visual scores compare against it",
            placeholders,
            VISUAL_PLACEHOLDER,
        )
    scores = judge.score(list(zip(replies, [d.ground_truth for d in docs], strict=True)), [d.category for d in docs])
    return [{"audio_score": s.audio, "visual_score": s.visual, "judge_error": s.error} for s in scores]


def evaluate_docs(
    task: Task,
    backend: Backend,
    docs: Sequence[EvalDoc],
    out_dir: str | os.PathLike,
    *,
    batch_size: int = 8,
    max_new_tokens: int | None = None,
    prompt: str = "paper",
    match: str = "strict",
    strict_format: bool = False,
    judge: Any | None = None,
    yes_prob: bool = False,
    progress: bool = True,
    data: str = "",
    skipped: Sequence[dict] = (),
    loader_notes: dict[str, Any] | None = None,
    n_total: int | None = None,
    published: bool | None = None,
) -> dict[str, Any]:
    """Generate what the cache lacks, score every doc, write the report; return the results dict.

    ``results["generated"]`` is how many replies this call asked the backend for. ``match``:
    ``strict``, ``release`` or ``both`` (:mod:`~verl_avconfuse.evaluation.matching`); the first rule's
    metrics are ``results["metrics"]``, every rule's are in ``results["metrics_by_match"]``.
    """
    from tqdm import tqdm

    rules = match_rules(match)
    if task.judged and judge is None:
        raise InputError(f"{task.name}: needs a judge (--judge offline or openai:URL#MODEL)")
    if yes_prob and not task.yes_prob:
        raise InputError(f"{task.name}: --yes-prob applies to the muted setting only")
    if yes_prob and not hasattr(backend, "next_token_logprobs"):
        raise InputError(
            f"yes_prob needs a backend with next_token_logprobs (an hf: or vllm: backend), not {backend.name}"
        )
    ids = [d.id for d in docs]
    if len(set(ids)) != len(ids):  # a task bug: ids are made unique when docs are loaded
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        raise ValueError(f"{task.name}: duplicate doc ids {duplicates[:10]}")
    out_dir = Path(out_dir)
    budget = max_new_tokens or task.max_new_tokens
    requests = [doc_request(d, budget, prompt) for d in docs]
    keys = [request_key(backend.name, r) for r in requests]
    cache = PredictionCache(out_dir / f"{task.name}.predictions.jsonl", backend.name)
    todo = [i for i, (d, k) in enumerate(zip(docs, keys, strict=True)) if cache.get(d.id, k) is None]
    with tqdm(total=len(docs), initial=len(docs) - len(todo), desc=task.name, unit="q", disable=not progress) as bar:
        for start in range(0, len(todo), batch_size):
            chunk = todo[start : start + batch_size]
            replies = backend.generate([requests[i] for i in chunk])
            if len(replies) != len(chunk):
                raise RuntimeError(f"backend {backend.name} returned {len(replies)} replies for {len(chunk)} requests")
            cache.append([ids[i] for i in chunk], [keys[i] for i in chunk], replies)
            bar.update(len(chunk))
    cache.rewrite(ids, keys)
    replies = [cache.get(d.id, k) or "" for d, k in zip(docs, keys, strict=True)]

    extras: list[dict] = [{} for _ in docs]
    if yes_prob:
        extras = _yes_probabilities(task, backend, requests, replies)
    if task.judged:
        extras = _judge(judge, docs, replies)

    metrics_by_match: dict[str, Any] = {}
    scored_by_match = {}
    for rule in rules:
        scored = [
            task.process_results(d, reply, rule, strict_format=strict_format, extra=extra)
            for d, reply, extra in zip(docs, replies, extras, strict=True)
        ]
        scored_by_match[rule] = scored
        metrics_by_match[rule] = task.aggregate(scored)
    primary = scored_by_match[rules[0]]
    # evaluate() passes what the whole file is (a --limit run is a subset of it); None: ask the task
    published = task.is_published(docs) if published is None else published
    result: dict[str, Any] = {
        "task": task.name,
        "backend": backend.name,
        "data": data,
        "prompt": prompt,
        "match": list(rules),
        "strict_format": strict_format,
        "judge": getattr(judge, "name", None),
        "n_docs": len(docs),
        "n_total": len(docs) if n_total is None else n_total,
        "generated": len(todo),
        "max_new_tokens": budget,
        "published": published,
        "metrics": metrics_by_match[rules[0]],
        "metrics_by_match": metrics_by_match,
        "paper": task.paper_rows if published is not False and task.paper_rows else None,
        "data_report": data_report(docs, loader_notes),
        "skipped": list(skipped),
        "docs": [
            {
                "id": s.id,
                "record_key": d.record_key,
                "category": s.category,
                "video": d.video,
                "ground_truth": s.ground_truth,
                "prediction": s.prediction,
                "answer": s.answer,
                "correct": s.correct,
                **({f"correct_{rule}": scored_by_match[rule][k].correct for rule in rules} if len(rules) > 1 else {}),
                "polarity": s.polarity,
                "well_formed": s.well_formed,
                **s.extra,
            }
            for k, (d, s) in enumerate(zip(docs, primary, strict=True))
        ],
    }
    result["files"] = write_report(result, out_dir, task)
    return result


@dataclass
class PreparedDocs:
    """A benchmark file read and its media checked: what :func:`evaluate_docs` scores (no model involved)."""

    docs: list[EvalDoc]
    data: str
    skipped: list[dict]
    notes: dict[str, Any]
    n_total: int
    published: bool | None


def prepare_docs(
    task: Task,
    data: str | os.PathLike,
    video_dir: str | os.PathLike,
    *,
    limit: int | None = None,
    skip_bad: bool = False,
    progress: bool = True,
    load_options: LoadOptions | None = None,
) -> PreparedDocs:
    """Read the benchmark file and check every clip, before any model loads (``limit``: the first N docs).

    ``data="published"`` reads the file shipped with the package (AV-ConfuseBench tasks).

    Raises:
        InputError: no such file or folder, a malformed file, unusable media (without ``skip_bad``).
    """
    if str(data) == "published":
        if task.published_data is None:
            raise InputError(f"{task.name}: no published file ships with the package; pass --data FILE")
        data = task.published_data()
    if not Path(data).exists():
        raise InputError(f"--data {data}: no such file")
    if not Path(video_dir).is_dir():
        raise InputError(f"--video-dir {video_dir}: no such folder")
    if limit is not None and limit < 1:
        raise InputError(f"--limit must be >= 1, got {limit}")
    docs, notes = task.load_docs(Path(data), Path(video_dir), load_options or LoadOptions())
    n_total = len(docs)
    published = task.is_published(docs)  # of the whole file: a --limit run is a subset of the published set
    if limit is not None:
        docs = docs[:limit]
    docs, skipped = _check_media(docs, skip_bad, progress)
    if not docs:
        raise InputError(f"{data}: no questions with usable media in --video-dir {video_dir}")
    return PreparedDocs(list(docs), str(data), skipped, notes, n_total, published)


def evaluate(
    task: Task,
    backend: Backend,
    data: str | os.PathLike,
    video_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    limit: int | None = None,
    batch_size: int = 8,
    max_new_tokens: int | None = None,
    skip_bad: bool = False,
    progress: bool = True,
    prompt: str = "paper",
    match: str = "strict",
    strict_format: bool = False,
    judge: Any | None = None,
    yes_prob: bool = False,
    load_options: LoadOptions | None = None,
) -> dict[str, Any]:
    """:func:`prepare_docs`, then :func:`evaluate_docs`."""
    if task.judged and judge is None:  # before any media is read
        raise InputError(f"{task.name}: needs a judge (--judge offline or openai:URL#MODEL)")
    prepared = prepare_docs(
        task, data, video_dir, limit=limit, skip_bad=skip_bad, progress=progress, load_options=load_options
    )
    return evaluate_prepared(
        task,
        backend,
        prepared,
        out_dir,
        batch_size=batch_size,
        max_new_tokens=max_new_tokens,
        prompt=prompt,
        match=match,
        strict_format=strict_format,
        judge=judge,
        yes_prob=yes_prob,
        progress=progress,
    )


def evaluate_prepared(task: Task, backend: Backend, prepared: PreparedDocs, out_dir, **kwargs: Any) -> dict[str, Any]:
    """:func:`evaluate_docs` on the docs of :func:`prepare_docs` (``kwargs``: its options)."""
    return evaluate_docs(
        task,
        backend,
        prepared.docs,
        out_dir,
        data=prepared.data,
        skipped=prepared.skipped,
        loader_notes=prepared.notes,
        n_total=prepared.n_total,
        published=prepared.published,
        **kwargs,
    )
