"""Tiny synthetic datasets in verl's RL parquet schema, for CPU end-to-end runs and tests.

Rows follow ``verl/utils/reward_score`` conventions: ``data_source``, ``prompt`` (chat messages),
``ability``, ``reward_model: {style, ground_truth}``, ``extra_info`` (index, question type, ...).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

from verl_avconfuse.data_preprocess.common import verl_row
from verl_avconfuse.io import atomic_write_parquet

#: ``data_source`` of every tiny row.
DATA_SOURCE = "avconfuse_tiny"

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
                verl_row(
                    data_source=DATA_SOURCE,
                    question=q["question"],
                    ground_truth=q["answer"],
                    index=index,
                    split=split,
                    extra_info={"question_type": q["type"]},
                )
            )
        paths[split] = Path(out_dir) / f"{split}.parquet"
        atomic_write_parquet(paths[split], rows, parents=True)
    return paths


#: Instrument -> tone frequency of its synthetic "sound"; a muted clip has silence instead. The tiny models'
#: warm start covers these instruments' questions (:data:`verl_avconfuse.tiny.corpus.TASK_INSTRUMENTS`).
INSTRUMENT_TONES_HZ = {"violin": 660.0, "piano": 262.0, "cello": 131.0, "flute": 880.0, "trumpet": 466.0}
CLIP_SECONDS = 2.0
CLIP_FPS = 4
CLIP_SIZE = (64, 48)


def _write_clips(media_dir: Path, n: int, seed: int) -> list[dict]:
    """Synthetic clips: moving shapes plus a tone per 'instrument'; every third clip is muted."""
    import numpy as np

    from verl_avconfuse.media import tone, write_synthetic_video

    rng = random.Random(seed)
    clips = []
    for index in range(n):
        instrument = rng.choice(sorted(INSTRUMENT_TONES_HZ))
        muted = index % 3 == 2
        samples = tone(INSTRUMENT_TONES_HZ[instrument], CLIP_SECONDS)
        if muted:
            samples = np.zeros_like(samples)
        path = media_dir / f"clip_{index:03d}_{instrument}{'_muted' if muted else ''}.mp4"
        if not path.exists():
            write_synthetic_video(
                path, duration_s=CLIP_SECONDS, fps=CLIP_FPS, size=CLIP_SIZE, audio=samples, seed=seed + index
            )
        clips.append({"path": str(path), "instrument": instrument, "muted": muted})
    return clips


def _omni_rows(clips: list[dict], *, audio_in_video: bool, split: str) -> list[dict]:
    rows = []
    placeholders = "<video>" if audio_in_video else "<video><audio>"
    for index, clip in enumerate(clips):
        instrument = clip["instrument"]
        question = f"Is there a {instrument} sound?"
        answer = "no" if clip["muted"] else "yes"
        path = clip["path"]
        row = verl_row(
            data_source=DATA_SOURCE,
            question=question,
            placeholders=placeholders,
            videos=[path],
            audios=[] if audio_in_video else [path],
            ground_truth=answer,
            index=index,
            split=split,
            extra_info={"question_type": "Existential", "video_id": Path(path).stem},
        )
        rows.append(row)
    return rows


def _build_omni(
    out_dir: Path, *, audio_in_video: bool, n_train: int, n_val: int, seed: int, models_root=None, **_
) -> dict[str, Path]:
    # Both input modes read the same clips, kept next to the first dataset built.
    media_dir = Path(out_dir).parent / "omni_media"
    media_dir.mkdir(parents=True, exist_ok=True)
    clips = _write_clips(media_dir, n_train + n_val, seed)
    paths = {}
    for split, part in (("train", clips[:n_train]), ("val", clips[n_train:])):
        paths[split] = Path(out_dir) / f"{split}.parquet"
        atomic_write_parquet(paths[split], _omni_rows(part, audio_in_video=audio_in_video, split=split), parents=True)
    return paths


def build_omni_dataset(out_dir: Path, *, n_train: int = 16, n_val: int = 4, seed: int = 0, **kwargs) -> dict[str, Path]:
    """Audio + video questions, the soundtrack as a separate ``<audio>`` item next to the ``<video>``."""
    return _build_omni(out_dir, audio_in_video=False, n_train=n_train, n_val=n_val, seed=seed, **kwargs)


def build_omni_in_video_dataset(
    out_dir: Path, *, n_train: int = 16, n_val: int = 4, seed: int = 0, **kwargs
) -> dict[str, Path]:
    """The same questions with ``<video>`` only: the soundtrack is read from the video (use_audio_in_video)."""
    return _build_omni(out_dir, audio_in_video=True, n_train=n_train, n_val=n_val, seed=seed, **kwargs)


TINY_DATASETS: dict[str, Callable[..., dict[str, Path]]] = {
    "text": build_text_dataset,
    "omni": build_omni_dataset,
    "omni_in_video": build_omni_in_video_dataset,
}


def build_tiny_dataset(name: str, out_dir: Path, *, models_root: Path | None = None, seed: int = 0) -> dict[str, Path]:
    if name not in TINY_DATASETS:
        raise ValueError(f"unknown tiny dataset {name!r}; known: {sorted(TINY_DATASETS)}")
    return TINY_DATASETS[name](Path(out_dir), seed=seed, models_root=models_root)
