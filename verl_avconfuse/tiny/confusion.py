"""A synthetic audio-visual confusion task for the CPU-scale ablation (``benchmarks/ablation_replica.py``).

Instruments are *seen* as shapes (one colour and outline per instrument, two instruments side by side) and
*heard* as tones (:data:`verl_avconfuse.tiny.data.INSTRUMENT_TONES_HZ`). A question "Is there a {instrument}
sound?" falls in one of four **cells**, by whether the instrument is on screen and whether it is heard:

============== ========= ======== ====== ==============================================================
cell           on screen heard    answer what a model that only looks says
============== ========= ======== ====== ==============================================================
control        yes       yes      yes    yes (right)
muted          yes       no       no     yes (wrong: the paper's confusion)
offscreen_heard no       yes      yes    no (wrong)
offscreen_silent no      no       no     no (right)
============== ========= ======== ====== ==============================================================

Only listening answers the two **conflict** cells (muted, offscreen_heard); a model that only looks, and one
that says "yes" to everything, both score 50% averaged over the four cells.

Two kinds of clip:

- **sync**: both instruments on screen are heard (the warm-up SFT set, the warm start's held-out gate).
  Sight and sound always agree, so every question can be answered from the picture alone -- the shortcut the
  paper's baseline takes (it says "yes" to 91.78% of muted questions).
- **swap**: one player on screen is silent and an instrument off screen is heard (the RL set, as a visible
  player pausing in Music-AVQA, and the off-screen test cells). Sight and sound disagree on two instruments.

The sets (:func:`build_confusion_task`):

- **SFT**: sync clips; each piece asks about both instruments on screen (control) and two absent ones.
- **RL**: swap clips, each asking about the silent player (muted), the off-screen one (offscreen_heard) and
  one of the other two cells in turn, so two questions in three are conflicts and half the answers "yes".
- **validation** (one parquet, each row's ``extra_info.set`` and ``extra_info.cell``): ``gate``, held-out
  sync clips asked as SFT asks; ``test``, the four cells -- muted and control from sync pieces through
  AV-ConfuseBench's muted builder (:mod:`verl_avconfuse.bench.muted`, one instrument's stem removed while it
  stays on screen, with its controls), offscreen_heard and offscreen_silent from held-out swap clips.

Reasoning texts come from the tiny corpus (:mod:`verl_avconfuse.tiny.corpus`), so they are in the tiny
tokenizer's vocabulary. :func:`train_reference` fits the tiny Qwen2-Audio reference to describe what it
hears, on the exact prompt the reference worker sends (:func:`verl_avconfuse.reference.backends.reference_messages`).
"""

from __future__ import annotations

import functools
import json
import os
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from verl_avconfuse.tiny.corpus import Scene, audio_reasoning, policy_response, visual_reasoning
from verl_avconfuse.tiny.data import CLIP_FPS, CLIP_SECONDS, CLIP_SIZE, INSTRUMENT_TONES_HZ

INSTRUMENTS: tuple[str, ...] = tuple(sorted(INSTRUMENT_TONES_HZ))
#: How each instrument looks: RGB colour and outline, drawn in its half of the frame.
GLYPHS: dict[str, tuple[tuple[int, int, int], str]] = {
    "cello": ((150, 75, 20), "tall"),
    "flute": ((170, 180, 255), "bar"),
    "piano": ((245, 245, 245), "wide"),
    "trumpet": ((250, 215, 0), "triangle"),
    "violin": ((235, 110, 30), "ellipse"),
}
BACKGROUND = (30, 30, 40)
DATA_SOURCE = "avconfuse_confusion"
QUESTION = "Is there a {instrument} sound?"
#: The muted set's question template (bench/muted.py fills ``{source}``): the training question, so the
#: test measures what the model hears, not whether it follows AV-ConfuseBench's longer preamble.
MUTED_QUESTION_TEMPLATE = "Is there a {source} sound?"
#: (on screen, heard) -> cell; the answer is "yes" exactly when the instrument is heard.
CELL_OF: dict[tuple[bool, bool], str] = {
    (True, True): "control",
    (True, False): "muted",
    (False, True): "offscreen_heard",
    (False, False): "offscreen_silent",
}
CELLS: tuple[str, ...] = ("muted", "control", "offscreen_heard", "offscreen_silent")
#: The cells where sight and sound disagree: only listening answers them.
CONFLICT_CELLS: tuple[str, ...] = ("muted", "offscreen_heard")


@dataclass(frozen=True)
class Piece:
    """Two instruments on screen (left, right) and the ones heard."""

    key: str
    seen: tuple[str, str]
    heard: tuple[str, ...]

    @property
    def scene(self) -> Scene:
        return Scene(heard=self.heard, seen=self.seen)

    def cell(self, instrument: str) -> str:
        return CELL_OF[(instrument in self.seen, instrument in self.heard)]


def sample_pieces(n: int, *, seed: int, kind: str = "sync", prefix: str = "piece") -> list[Piece]:
    """``n`` pieces of two distinct instruments on screen; ``sync``: both heard, ``swap``: the first heard,
    the second silent and one instrument off screen heard."""
    if kind not in ("sync", "swap"):
        raise ValueError(f"kind: expected 'sync' or 'swap', got {kind!r}")
    rng = random.Random(f"confusion-{prefix}-{kind}-{seed}")
    pieces = []
    for index in range(n):
        seen = tuple(rng.sample(INSTRUMENTS, 2))
        if kind == "sync":
            heard = seen
        else:
            heard = (seen[0], rng.choice([i for i in INSTRUMENTS if i not in seen]))
        pieces.append(Piece(f"{prefix}_{index:03d}", seen, heard))
    return pieces


def scene_frame(seen: Sequence[str], k: int, size: tuple[int, int] = CLIP_SIZE) -> np.ndarray:
    """Frame ``k`` (uint8 RGB): each instrument's glyph in its half, bobbing a pixel or two per frame."""
    width, height = size
    frame = np.empty((height, width, 3), np.uint8)
    frame[:] = BACKGROUND
    ys, xs = np.mgrid[0:height, 0:width]
    half = width // len(seen)
    for slot, instrument in enumerate(seen):
        colour, shape = GLYPHS[instrument]
        cx, cy = slot * half + half / 2, height / 2 + 2 * np.sin(np.pi * (k + slot) / 2)
        dx, dy = (xs - cx) / (half / 2), (ys - cy) / (height / 2)
        if shape == "ellipse":
            mask = (dx / 0.45) ** 2 + (dy / 0.8) ** 2 <= 1
        elif shape == "tall":
            mask = (abs(dx) <= 0.35) & (abs(dy) <= 0.85)
        elif shape == "wide":
            mask = (abs(dx) <= 0.85) & (abs(dy) <= 0.35)
        elif shape == "bar":
            mask = (abs(dx) <= 0.9) & (abs(dy) <= 0.12)
        else:  # triangle, apex up
            mask = (dy <= 0.7) & (abs(dx) <= (dy + 0.7) / 1.4 * 0.8)
        frame[mask] = colour
    return frame


def stem(instrument: str, seconds: float = CLIP_SECONDS, sr: int = 16000) -> np.ndarray:
    from verl_avconfuse.media import tone

    return tone(INSTRUMENT_TONES_HZ[instrument], seconds, sr=sr)


def mix(instruments: Sequence[str], seconds: float = CLIP_SECONDS, sr: int = 16000) -> np.ndarray:
    """The sum of the instruments' stems (silence for none); peaks stay below full scale (0.3 per tone)."""
    samples = np.zeros(round(seconds * sr), np.float32)
    for instrument in instruments:
        samples += stem(instrument, seconds, sr)
    return samples


def clip_name(piece: Piece, *, audio: bool) -> str:
    """A clip's file name, naming all that decides its content (what is seen, what is heard), so a kept clip
    is never one that another seed or set size drew under the same key."""
    heard = "+".join(piece.heard) if audio else "video-only"
    return f"{piece.key}-{'+'.join(piece.seen)}-{heard or 'silent'}.mp4"


def write_clip(piece: Piece, path: Path, *, audio: bool = True) -> Path:
    """The piece's video (its glyphs) with the mix of what is heard, or video only (``audio=False``); a clip
    already at ``path`` is kept (:func:`clip_name` makes the name say what it holds)."""
    from verl_avconfuse.media import write_synthetic_video

    if not path.exists():
        write_synthetic_video(
            path,
            duration_s=CLIP_SECONDS,
            fps=CLIP_FPS,
            size=CLIP_SIZE,
            audio=mix(piece.heard) if audio else None,
            frame=lambda k: scene_frame(piece.seen, k),
        )
    return path


def absent_instrument(piece: Piece, rng: random.Random) -> str:
    """An instrument neither on screen nor heard."""
    return rng.choice([i for i in INSTRUMENTS if i not in piece.seen and i not in piece.heard])


def asked_instruments(piece: Piece, rng: random.Random, index: int) -> list[str]:
    """What a piece is asked about. Sync: both on screen and two absent ones (half "yes", half "no"). Swap:
    the silent player, the off-screen one, then (alternating by ``index``) the one heard on screen or an
    absent one."""
    if set(piece.heard) == set(piece.seen):
        return [*piece.seen, *rng.sample([i for i in INSTRUMENTS if i not in piece.seen], 2)]
    silent = next(i for i in piece.seen if i not in piece.heard)
    offscreen = next(i for i in piece.heard if i not in piece.seen)
    third = next(i for i in piece.seen if i in piece.heard) if index % 2 == 0 else absent_instrument(piece, rng)
    return [silent, offscreen, third]


def questions(piece: Piece, instruments: Sequence[str]) -> list[tuple[str, str, str]]:
    """(question, answer, cell) for each instrument asked about: the answer is what is heard."""
    return [(QUESTION.format(instrument=i), "yes" if i in piece.heard else "no", piece.cell(i)) for i in instruments]


def audio_think(scene: Scene, instrument: str, rng: random.Random) -> str:
    """An ``<a-think>``: what the audio contains, then whether the asked instrument is among it (the reasoning
    of the paper's warm-up data, and of its reference, which is told the question, is about the question)."""
    verdict = "is heard" if instrument in scene.heard else "is not heard"
    return f"{audio_reasoning(scene, rng)} The {instrument} {verdict}."


def visual_think(scene: Scene, instrument: str, rng: random.Random) -> str:
    """A ``<v-think>``: what the video shows, then whether the asked instrument is on screen."""
    verdict = "is seen" if instrument in scene.seen else "is not seen"
    return f"{visual_reasoning(scene, rng)} The {instrument} {verdict}."


def sft_conversations(
    pieces: Sequence[Piece], clips: dict[str, Path], seed: int, *, annotated: dict[str, Piece] | None = None
) -> list[dict]:
    """The warm-up SFT set as conversations in the release's JSONL shape (data_preprocess/warmup_sft.py).

    ``annotated``: per piece key, the piece the reasoning describes when it is not the clip's own (a clip
    whose soundtrack was lost, described from the picture)."""
    rng = random.Random(f"confusion-sft-{seed}")
    conversations = []
    for index, piece in enumerate(pieces):
        described = (annotated or {}).get(piece.key, piece)
        for instrument in asked_instruments(described, rng, index):
            question, answer, _ = questions(described, [instrument])[0]
            response, _ = policy_response(
                audio_think(described.scene, instrument, rng),
                visual_think(described.scene, instrument, rng),
                answer,
                rng,
                0.0,
            )
            user = [{"type": "video", "video_url": os.fspath(clips[piece.key])}, {"type": "text", "text": question}]
            conversations.append(
                {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": response}]}
            )
    return conversations


def task_row(question: str, answer: str, clip: str, extra_info: dict) -> dict:
    """One verl RL row of this task (:func:`verl_avconfuse.data_preprocess.common.verl_row`): the clip as video
    and as audio, ``extra_info`` with its ``index`` and ``split`` (set by the caller)."""
    from verl_avconfuse.data_preprocess.common import verl_row

    info = {"question_type": "Existential", **extra_info}
    index, split = info.pop("index"), info.pop("split")
    return verl_row(
        data_source=DATA_SOURCE,
        question=question,
        ground_truth=answer,
        index=index,
        split=split,
        extra_info=info,
        placeholders="<video><audio>",
        videos=[clip],
        audios=[clip],
    )


def rl_rows(
    pieces: Sequence[Piece],
    clips: dict[str, Path],
    seed: int,
    split: str,
    *,
    only: Sequence[str] | None = None,
) -> list[dict]:
    """verl rows, one per question (:func:`asked_instruments`, or only the cells in ``only``);
    ``extra_info`` keeps the piece, the cell and the set (``split``)."""
    rng = random.Random(f"confusion-rl-{seed}-{split}")
    rows = []
    for index, piece in enumerate(pieces):
        asked = asked_instruments(piece, rng, index)
        if only is not None:
            wanted = {piece.cell(i): i for i in [*piece.seen, *piece.heard]}
            wanted.setdefault("offscreen_silent", absent_instrument(piece, rng))
            asked = [wanted[c] for c in only if c in wanted]
        for question, answer, cell in questions(piece, asked):
            row = task_row(
                question,
                answer,
                os.fspath(clips[piece.key]),
                {
                    "index": len(rows),
                    "split": split,
                    "set": split,
                    "cell": cell,
                    "video_id": piece.key,
                    "seen": ", ".join(piece.seen),
                    "heard": ", ".join(piece.heard),
                },
            )
            rows.append(row)
    return rows


def muted_manifest(pieces: Sequence[Piece], clips: dict[str, Path], stems_dir: Path) -> list[dict]:
    """bench/muted.py's JSON manifest: each sync piece's (video-only) clip and one stem per instrument."""
    from verl_avconfuse.media import write_wav

    stems_dir.mkdir(parents=True, exist_ok=True)
    entries = []
    for piece in pieces:
        sources = {}
        for instrument in piece.seen:
            path = stems_dir / f"{piece.key}_{instrument}.wav"
            if not path.exists():
                write_wav(path, stem(instrument))
            sources[instrument] = os.fspath(path)
        entries.append({"id": piece.key, "video": os.fspath(clips[piece.key]), "sources": sources})
    return entries


def muted_rows(muted_parquet: Path, question_template: str = MUTED_QUESTION_TEMPLATE) -> list[dict]:
    """The muted builder's verl rows as test rows: the same prompt and clip, ``extra_info`` in this task's
    shape (cell ``muted`` for a "no", ``control`` for a "yes")."""
    import pandas as pd

    rows = []
    for record in pd.read_parquet(muted_parquet).to_dict("records"):
        info = dict(record["extra_info"])
        answer = record["reward_model"]["ground_truth"]
        if answer not in ("yes", "no"):
            raise ValueError(f"{muted_parquet}: reward_model.ground_truth: expected 'yes' or 'no', got {answer!r}")
        clip = str(list(record["videos"])[0])
        row = task_row(
            str(info["question"]),
            answer,
            clip,
            {
                "index": 0,
                "split": "test",
                "set": "test",
                "cell": "control" if answer == "yes" else "muted",
                "video_id": str(info.get("video_id", Path(clip).stem)),
                "seen": "",
                "heard": "",
            },
        )
        # The builder's own prompt (its question template and media placeholders), not a rebuilt one.
        row["prompt"] = [dict(m) for m in record["prompt"]]
        row["audios"] = [str(a) for a in record["audios"]]
        rows.append(row)
    return rows


@dataclass(frozen=True)
class TaskFiles:
    sft_jsonl: Path
    sft_parquet: Path
    rl_train: Path
    reference_examples: Path
    val_parquet: Path
    muted_json: Path
    muted_parquet: Path
    muted_videos: Path


def build_confusion_task(
    out_dir: str | os.PathLike,
    *,
    n_sft: int = 96,
    n_rl: int = 32,
    n_gate: int = 12,
    n_test: int = 12,
    sft_lost_soundtrack: float = 0.5,
    seed: int = 0,
) -> TaskFiles:
    """Write the task's clips and files into ``out_dir`` (idempotent: existing clips are kept).

    ``sft/`` sync clips and ``conversations.jsonl`` -> ``train.parquet`` (the real warm-up converter); a
    share ``sft_lost_soundtrack`` of them have a silent soundtrack but are described as if heard (module
    docstring: the warm start's visual bias);
    ``rl/`` swap clips, ``train.parquet`` and ``reference.jsonl`` (what the reference hears and should say);
    ``val.parquet``: the gate (``n_gate`` held-out sync pieces) and the test's four cells (``n_test`` sync
    pieces through AV-ConfuseBench's muted builder with controls, ``2 * n_test`` held-out swap pieces asked
    about the instrument off screen and an absent one: as many questions as the muted builder's).
    """
    from verl_avconfuse.bench.muted import build_muted, load_muted_manifest
    from verl_avconfuse.data_preprocess import warmup_sft
    from verl_avconfuse.io import atomic_write_parquet, atomic_write_text

    out = Path(out_dir)
    described = sample_pieces(n_sft, seed=seed, prefix="sft")
    lost = set(random.Random(f"confusion-sft-lost-{seed}").sample(range(n_sft), round(n_sft * sft_lost_soundtrack)))
    sets = {
        "sft": [Piece(p.key, p.seen, ()) if i in lost else p for i, p in enumerate(described)],
        "rl": sample_pieces(n_rl, seed=seed, kind="swap", prefix="rl"),
        "gate": sample_pieces(n_gate, seed=seed, prefix="gate"),
        "test": sample_pieces(n_test, seed=seed, prefix="test"),
        "offscreen": sample_pieces(2 * n_test, seed=seed, kind="swap", prefix="offscreen"),
    }
    clips: dict[str, Path] = {}
    for name, pieces in sets.items():
        (out / name / "clips").mkdir(parents=True, exist_ok=True)
        for piece in pieces:
            audio = name != "test"
            clips[piece.key] = write_clip(piece, out / name / "clips" / clip_name(piece, audio=audio), audio=audio)

    sft_jsonl = out / "sft" / "conversations.jsonl"
    atomic_write_text(
        sft_jsonl,
        "".join(
            json.dumps(c) + "\n"
            for c in sft_conversations(sets["sft"], clips, seed, annotated={p.key: p for p in described})
        ),
    )
    sft_parquet = out / "sft" / "train.parquet"
    warmup_sft.convert_warmup(sft_jsonl, video_dir=out / "sft" / "clips", output=sft_parquet, progress=False)

    rows = rl_rows(sets["rl"], clips, seed, "train")
    rl_train = out / "rl" / "train.parquet"
    atomic_write_parquet(rl_train, rows, parents=True)
    reference = out / "rl" / "reference.jsonl"
    rng = random.Random(f"confusion-reference-{seed}")
    by_key = {p.key: p for p in sets["rl"]}
    examples = [
        {
            "audio": row["audios"][0],
            "question": row["extra_info"]["question"],
            "answer": row["reward_model"]["ground_truth"],
            "heard": list(by_key[row["extra_info"]["video_id"]].heard),
            "a_think": audio_think(
                by_key[row["extra_info"]["video_id"]].scene, row["extra_info"]["question"].split()[3], rng
            ),
        }
        for row in rows
    ]
    atomic_write_text(reference, "".join(json.dumps(e) + "\n" for e in examples))

    manifest = out / "test" / "manifest.json"
    atomic_write_text(manifest, json.dumps(muted_manifest(sets["test"], clips, out / "test" / "stems"), indent=1))
    muted_dir = out / "test" / "muted"
    build_muted(
        load_muted_manifest(manifest), muted_dir, controls=True, question_template=MUTED_QUESTION_TEMPLATE, seed=seed
    )
    val = [
        *rl_rows(sets["gate"], clips, seed, "gate"),
        *muted_rows(muted_dir / "avconfusebench_muted.parquet"),
        *rl_rows(sets["offscreen"], clips, seed, "test", only=("offscreen_heard", "offscreen_silent")),
    ]
    for index, row in enumerate(val):
        row["extra_info"]["index"] = index
    val_parquet = out / "val.parquet"
    atomic_write_parquet(val_parquet, val)
    return TaskFiles(
        sft_jsonl,
        sft_parquet,
        rl_train,
        reference,
        val_parquet,
        muted_dir / "avconfusebench_muted.json",
        muted_dir / "avconfusebench_muted.parquet",
        muted_dir / "videos",
    )


# ------------------------------------------------------------------------------------------ reference


@functools.lru_cache(maxsize=1024)
def _audio(path: str, sr: int) -> np.ndarray:
    from verl_avconfuse.media import load_audio

    return load_audio(path, sr=sr)


def _reference_inputs(processor, examples: Sequence[dict], with_target: bool) -> dict[str, Any]:
    """The reference worker's prompt (chat template + audio) for each example; with the target a-think,
    right-padded with labels on the target only, else left-padded for generation."""
    import torch

    from verl_avconfuse.reference.backends import reference_messages
    from verl_avconfuse.reference.cache import ReferenceRequest

    sr = int(processor.feature_extractor.sampling_rate)
    prompts = [
        processor.apply_chat_template(
            reference_messages(ReferenceRequest(e["audio"], e["question"], e["answer"])),
            add_generation_prompt=True,
            tokenize=False,
        )
        for e in examples
    ]
    audios = [_audio(e["audio"], sr) for e in examples]
    eos = processor.tokenizer.convert_ids_to_tokens(processor.tokenizer.eos_token_id)
    texts = [
        p + f"<a-think> {e['a_think']} </a-think>{eos}" if with_target else p
        for p, e in zip(prompts, examples, strict=True)
    ]
    processor.tokenizer.padding_side = "right" if with_target else "left"
    inputs = processor(text=texts, audio=audios, sampling_rate=sr, return_tensors="pt", padding=True)
    if with_target:
        prompt_lengths = [
            int(processor(text=[p], audio=[a], sampling_rate=sr, return_tensors="pt")["input_ids"].shape[1])
            for p, a in zip(prompts, audios, strict=True)
        ]
        labels = inputs["input_ids"].clone()
        labels[inputs["attention_mask"] == 0] = -100
        for row, length in enumerate(prompt_lengths):
            labels[row, :length] = -100
        inputs["labels"] = labels
        inputs["prompt_lengths"] = torch.tensor(prompt_lengths)
    return inputs


def names_heard(a_think: str) -> set[str]:
    """The task's instruments an a-think says it hears: every one it names, except where it says
    "The {instrument} is not heard"."""
    said = re.sub(r"The \w+ is not heard\.?", "", a_think)
    return {i for i in INSTRUMENTS if i in said}


def train_reference(
    base: str | os.PathLike,
    examples: Sequence[dict],
    out_dir: str | os.PathLike,
    *,
    steps: int = 150,
    batch_size: int = 8,
    lr: float = 3e-3,
    seed: int = 0,
) -> dict[str, Any]:
    """Fit the tiny Qwen2-Audio at ``base`` to write ``<a-think> {what it hears} </a-think>`` for each example.

    The prompt is the reference worker's own (question, answer and audio); the loss covers the a-think
    and the end-of-turn token. The audio tower trains too: a random one has not learnt to tell tones
    apart. Saved with its processor at ``out_dir`` (atomically). Returns the losses and, on greedy
    decoding of every example, the share whose a-think names exactly the instruments heard.
    """
    import torch
    import transformers
    from transformers import AutoConfig, AutoProcessor

    from verl_avconfuse.io import atomic_directory
    from verl_avconfuse.tiny.models import deterministic_torch

    processor = AutoProcessor.from_pretrained(base)
    config = AutoConfig.from_pretrained(base)
    model_cls = getattr(transformers, config.architectures[0])
    with deterministic_torch(seed), atomic_directory(out_dir) as tmp:
        model = model_cls.from_pretrained(base, dtype=torch.float32)
        model.train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
        rng = random.Random(f"reference-fit-{seed}")
        losses = []
        for step in range(steps):
            batch = _reference_inputs(processor, rng.sample(list(examples), min(batch_size, len(examples))), True)
            batch.pop("prompt_lengths")
            loss = model(**batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            for group in optimizer.param_groups:
                group["lr"] = lr * max(0.1, 1 - step / steps)
            losses.append(loss.item())
        model.eval()
        hits = 0
        for start in range(0, len(examples), batch_size):
            chunk = list(examples[start : start + batch_size])
            inputs = _reference_inputs(processor, chunk, False)
            with torch.inference_mode():
                out = model.generate(**inputs, do_sample=False, max_new_tokens=24)
            replies = processor.batch_decode(out[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
            hits += sum(names_heard(r) == set(e["heard"]) for r, e in zip(replies, chunk, strict=True))
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
    return {"losses": losses, "heard_accuracy": hits / len(examples), "n": len(examples)}
