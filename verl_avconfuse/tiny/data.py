"""Tiny synthetic datasets in verl's RL parquet schema, for CPU end-to-end runs and tests.

Rows follow ``verl/utils/reward_score`` conventions: ``data_source``, ``prompt`` (chat messages),
``ability``, ``reward_model: {style, ground_truth}``, ``extra_info`` (index, question type, ...).
"""

from __future__ import annotations

import os
import random
import tempfile
from collections.abc import Callable
from pathlib import Path

from verl_avconfuse.prompts import format_question

INSTRUMENTS = ("violin", "piano", "acoustic_guitar", "cello", "flute", "drum", "trumpet", "erhu")
NUMBER_WORDS = ("zero", "one", "two", "three", "four")


def _questions(rng: random.Random, n: int) -> list[dict]:
    rows = []
    for index in range(n):
        kind = index % 3
        instrument = rng.choice(INSTRUMENTS).replace("_", " ")
        if kind == 0:
            question, answer, qtype = f"Is there a {instrument} sound?", rng.choice(("yes", "no")), "Existential"
        elif kind == 1:
            question, answer, qtype = (
                "How many instruments are sounding in the video?",
                rng.choice(NUMBER_WORDS[1:]),
                "Counting",
            )
        else:
            question, answer, qtype = (
                f"Is the {instrument} in the video making a sound?",
                rng.choice(("yes", "no")),
                "Existential",
            )
        rows.append({"question": question, "answer": answer, "type": qtype})
    return rows


def _write_parquet_atomic(rows: list[dict], path: Path) -> None:
    import pandas as pd

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".parquet.tmp")
    os.close(fd)
    try:
        pd.DataFrame(rows).to_parquet(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def build_text_dataset(
    out_dir: Path, *, n_train: int = 32, n_val: int = 8, seed: int = 0, **_: object
) -> dict[str, Path]:
    """Music-AVQA-style yes/no and counting questions with no media (for a text-only policy)."""
    rng = random.Random(seed)
    paths = {}
    for split, n in (("train", n_train), ("val", n_val)):
        rows = []
        for index, q in enumerate(_questions(rng, n)):
            rows.append(
                {
                    "data_source": "avconfuse_tiny",
                    "prompt": [{"role": "user", "content": format_question(q["question"])}],
                    "ability": "audio_visual_qa",
                    "reward_model": {"style": "rule", "ground_truth": q["answer"]},
                    "extra_info": {
                        "index": index,
                        "split": split,
                        "question": q["question"],
                        "question_type": q["type"],
                    },
                }
            )
        paths[split] = Path(out_dir) / f"{split}.parquet"
        _write_parquet_atomic(rows, paths[split])
    return paths


TINY_DATASETS: dict[str, Callable[..., dict[str, Path]]] = {"text": build_text_dataset}


def build_tiny_dataset(name: str, out_dir: Path, *, models_root: Path | None = None, seed: int = 0) -> dict[str, Path]:
    if name not in TINY_DATASETS:
        raise ValueError(f"unknown tiny dataset {name!r}; known: {sorted(TINY_DATASETS)}")
    return TINY_DATASETS[name](Path(out_dir), seed=seed, models_root=models_root)
