"""What AV-ConfuseBench's two settings (:mod:`.avconfuse_muted`, :mod:`.avconfuse_modified`) share: the
question file (published or built by ``avconfuse bench build``), its clips, and whether it is the published set
(then the paper's rows are shown beside ours)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

from verl_avconfuse.evaluation.task import EvalDoc, LoadOptions


def bench_docs(setting: str) -> Callable[[Path, Path, LoadOptions], tuple[list[EvalDoc], dict]]:
    def load(data: Path, video_dir: Path, options: LoadOptions) -> tuple[list[EvalDoc], dict]:
        from verl_avconfuse.bench.schemas import load_questions, video_path_for

        items = load_questions(data, setting)
        docs = []
        for index, item in enumerate(items):
            truth = item["answer"].strip().lower() if setting == "muted" else item["annotation"]
            group = item.get("instruments_len", "") if setting == "muted" else item["sound_type"]
            docs.append(
                EvalDoc(
                    id=f"{setting}-{index:05d}-{item['video_id']}",
                    question=item["question"],
                    video=os.fspath(video_path_for(item, setting, video_dir)),
                    ground_truth=truth,
                    category=str(group),
                    record_key=f"{setting}-{index:05d}",
                    meta={"item": item},
                )
            )
        return docs, {}

    return load


def bench_published(setting: str) -> Callable[[Sequence[EvalDoc]], bool]:
    def published(docs: Sequence[EvalDoc]) -> bool:
        from verl_avconfuse.bench.report import published_setting

        return published_setting([d.meta["item"] for d in docs], setting)

    return published


def published_file(setting: str) -> Callable[[], Path]:
    def path() -> Path:
        from verl_avconfuse.bench.schemas import published_questions

        return published_questions(setting)

    return path
