"""Run a task against a backend, resumably: every reply is cached the moment it exists.

``{out}/{task}.predictions.jsonl`` holds one ``{"id", "prediction", "backend"}`` line per answered
doc, appended and flushed (and fsync'ed) after each generated batch. A re-run reads it and asks the
backend only for the docs it lacks, so a killed run loses at most the batch in flight; a line cut
short by the kill is dropped when the cache is read. The cache records which backend wrote each
line, and a run with another backend refuses to mix its replies in (use another ``--out``). The
file is also a valid input of :class:`~verl_avconfuse.evaluation.backends.PredictionsBackend`.

When every doc has a reply, the docs are scored and aggregated and the results JSON + markdown
table are written atomically (:mod:`~verl_avconfuse.evaluation.report`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from verl_avconfuse.evaluation.backends import Backend, EvalRequest
from verl_avconfuse.evaluation.report import write_report
from verl_avconfuse.evaluation.tasks import EvalDoc, Task
from verl_avconfuse.io import append_jsonl, atomic_write_bytes, iter_jsonl

logger = logging.getLogger(__name__)

__all__ = ["PredictionCache", "doc_request", "evaluate", "evaluate_docs"]


class PredictionCache:
    """The append-only prediction file of one task run (module docstring)."""

    def __init__(self, path: str | os.PathLike, backend_name: str) -> None:
        self.path = Path(path)
        self.backend_name = backend_name
        self.predictions: dict[str, str] = {}
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
            if record.get("backend") != self.backend_name:
                raise ValueError(
                    f"{self.path}:{number}: written by backend {record.get('backend')!r}, this run uses "
                    f"{self.backend_name!r}; evaluate into another --out folder or delete the cache"
                )
            self.predictions[str(record["id"])] = record["prediction"]

    def append(self, ids: Sequence[str], replies: Sequence[str]) -> None:
        append_jsonl(
            self.path,
            ({"id": i, "prediction": r, "backend": self.backend_name} for i, r in zip(ids, replies, strict=True)),
        )
        self.predictions.update(zip(ids, replies, strict=True))


def doc_request(doc: EvalDoc, max_new_tokens: int) -> EvalRequest:
    """The backend request of a doc: the clip as video and its soundtrack as audio."""
    return EvalRequest(id=doc.id, question=doc.prompt, video=doc.video, audio=doc.video, max_new_tokens=max_new_tokens)


def _check_media(docs: Sequence[EvalDoc], skip_bad: bool, progress: bool) -> tuple[list[EvalDoc], list[dict]]:
    from verl_avconfuse.data_preprocess.common import check_media_files

    cache: dict[str, str | None] = {}
    check_media_files([d.video for d in docs], cache, progress=progress)
    bad = {p: r for p, r in cache.items() if r}
    if bad and not skip_bad:
        lines = "\n".join(f"  {r}" for _, r in sorted(bad.items()))
        raise ValueError(f"{len(bad)} unusable media file(s); nothing was evaluated (use --skip-bad):\n{lines}")
    kept = [d for d in docs if not cache[d.video]]
    skipped = [{"id": d.id, "video": d.video, "reason": cache[d.video]} for d in docs if cache[d.video]]
    return kept, skipped


def evaluate_docs(
    task: Task,
    backend: Backend,
    docs: Sequence[EvalDoc],
    out_dir: str | os.PathLike,
    *,
    batch_size: int = 8,
    max_new_tokens: int | None = None,
    progress: bool = True,
    data: str = "",
    skipped: Sequence[dict] = (),
) -> dict[str, Any]:
    """Generate what the cache lacks, score every doc, write the report; return the results dict.

    ``results["generated"]`` is how many replies this call asked the backend for.
    """
    from tqdm import tqdm

    ids = [d.id for d in docs]
    if len(set(ids)) != len(ids):
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        raise ValueError(f"{task.name}: duplicate doc ids {duplicates[:10]}")
    out_dir = Path(out_dir)
    cache = PredictionCache(out_dir / f"{task.name}.predictions.jsonl", backend.name)
    budget = max_new_tokens or task.max_new_tokens
    todo = [d for d in docs if d.id not in cache.predictions]
    with tqdm(total=len(docs), initial=len(docs) - len(todo), desc=task.name, unit="q", disable=not progress) as bar:
        for start in range(0, len(todo), batch_size):
            chunk = todo[start : start + batch_size]
            replies = backend.generate([doc_request(d, budget) for d in chunk])
            if len(replies) != len(chunk):
                raise RuntimeError(f"backend {backend.name} returned {len(replies)} replies for {len(chunk)} requests")
            cache.append([d.id for d in chunk], replies)
            bar.update(len(chunk))

    scored = [task.process_results(d, cache.predictions[d.id]) for d in docs]
    result: dict[str, Any] = {
        "task": task.name,
        "backend": backend.name,
        "data": data,
        "n_docs": len(docs),
        "generated": len(todo),
        "max_new_tokens": budget,
        "metrics": task.aggregate(scored),
        "skipped": list(skipped),
        "docs": [
            {
                "id": s.id,
                "category": s.category,
                "ground_truth": s.ground_truth,
                "prediction": s.prediction,
                "answer": s.answer,
                "correct": s.correct,
                "well_formed": s.well_formed,
            }
            for s in scored
        ],
    }
    result["files"] = write_report(result, out_dir, task.columns)
    return result


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
) -> dict[str, Any]:
    """Read the benchmark release, check its media, then :func:`evaluate_docs` (``limit``: the first N docs)."""
    docs = task.load_docs(Path(data), Path(video_dir))
    if limit is not None:
        if limit < 1:
            raise ValueError(f"--limit must be >= 1, got {limit}")
        docs = docs[:limit]
    docs, skipped = _check_media(docs, skip_bad, progress)
    if not docs:
        raise ValueError(f"{data}: no docs with usable media")
    return evaluate_docs(
        task,
        backend,
        docs,
        out_dir,
        batch_size=batch_size,
        max_new_tokens=max_new_tokens,
        progress=progress,
        data=str(data),
        skipped=skipped,
    )
