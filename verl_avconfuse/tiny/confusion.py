"""A synthetic audio-visual confusion task for the CPU-scale ablation (``benchmarks/ablation_replica.py``).

Instruments are *seen* as shapes (one colour and outline per instrument, two instruments side by side) and
*heard* as tones (:data:`verl_avconfuse.tiny.data.INSTRUMENT_TONES_HZ`). Three kinds of clip, mirroring the
paper's data:

- **sync** (the warm-up SFT set): every instrument on screen is heard. Audio and picture always agree, so
  "is there a violin sound?" can be answered from the picture alone -- the shortcut the paper's baseline
  takes (it says "yes" to 91.78% of muted questions).
- **rest** (part of the RL set, as in Music-AVQA, where a visible player often pauses): one of the two
  instruments on screen is silent. Only the audio tells which.
- **muted** (the test set): built from sync pieces by :mod:`verl_avconfuse.bench.muted` -- the same builder
  as AV-ConfuseBench's -- with one instrument's stem removed while it stays on screen, plus its controls
  (the instrument still heard: "yes").

Questions are Music-AVQA's existential template, "Is there a {instrument} sound?". Reasoning texts come
from the tiny corpus (:mod:`verl_avconfuse.tiny.corpus`), so they are in the tiny tokenizer's vocabulary.
:func:`train_reference` fits the tiny Qwen2-Audio reference to describe what it hears, on the exact prompt
the reference worker sends (:func:`verl_avconfuse.reference.backends.reference_messages`).
"""

from __future__ import annotations

import functools
import json
import os
import random
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


@dataclass(frozen=True)
class Piece:
    """Two instruments on screen (left, right) and the ones heard, in the same order."""

    key: str
    seen: tuple[str, str]
    heard: tuple[str, ...]

    @property
    def scene(self) -> Scene:
        return Scene(heard=self.heard, seen=self.seen)


def sample_pieces(n: int, *, seed: int, rest_fraction: float = 0.0, prefix: str = "piece") -> list[Piece]:
    """``n`` pieces of two distinct instruments; ``round(n * rest_fraction)`` of them with one player silent."""
    rng = random.Random(f"confusion-{prefix}-{seed}")
    resting = set(rng.sample(range(n), round(n * rest_fraction)))
    pieces = []
    for index in range(n):
        seen = tuple(rng.sample(INSTRUMENTS, 2))
        heard = (seen[rng.randrange(2)],) if index in resting else seen
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


def questions(piece: Piece, rng: random.Random, *, absent: bool) -> list[tuple[str, str]]:
    """(question, answer) about both instruments on screen, and with ``absent`` one not in the piece."""
    asked = list(piece.seen)
    if absent:
        asked.append(rng.choice([i for i in INSTRUMENTS if i not in piece.seen]))
    return [(QUESTION.format(instrument=i), "yes" if i in piece.heard else "no") for i in asked]


def sft_conversations(pieces: Sequence[Piece], clips: dict[str, Path], seed: int) -> list[dict]:
    """The warm-up SFT set as conversations in the release's JSONL shape (data_preprocess/warmup_sft.py)."""
    rng = random.Random(f"confusion-sft-{seed}")
    conversations = []
    for piece in pieces:
        for question, answer in questions(piece, rng, absent=True):
            response, _ = policy_response(
                audio_reasoning(piece.scene, rng), visual_reasoning(piece.scene, rng), answer, rng, 0.0
            )
            user = [{"type": "video", "video_url": os.fspath(clips[piece.key])}, {"type": "text", "text": question}]
            conversations.append(
                {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": response}]}
            )
    return conversations


def rl_rows(pieces: Sequence[Piece], clips: dict[str, Path], seed: int, split: str) -> list[dict]:
    """verl RL rows (the tiny dataset's schema), one per question; ``extra_info`` keeps the piece."""
    from verl_avconfuse.method.prompts import format_question

    rng = random.Random(f"confusion-rl-{seed}-{split}")
    rows = []
    for piece in pieces:
        for question, answer in questions(piece, rng, absent=True):
            path = os.fspath(clips[piece.key])
            rows.append(
                {
                    "data_source": DATA_SOURCE,
                    "prompt": [{"role": "user", "content": format_question(question, "<video><audio>")}],
                    "videos": [path],
                    "audios": [path],
                    "ability": "audio_visual_qa",
                    "reward_model": {"style": "rule", "ground_truth": answer},
                    "extra_info": {
                        "index": len(rows),
                        "split": split,
                        "question": question,
                        "question_type": "Existential",
                        "video_id": piece.key,
                        "seen": ", ".join(piece.seen),
                        "heard": ", ".join(piece.heard),
                    },
                }
            )
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


@dataclass(frozen=True)
class TaskFiles:
    sft_jsonl: Path
    sft_parquet: Path
    rl_train: Path
    reference_examples: Path
    muted_json: Path
    muted_parquet: Path
    muted_videos: Path


def build_confusion_task(
    out_dir: str | os.PathLike,
    *,
    n_sft: int = 24,
    n_rl: int = 16,
    n_test: int = 12,
    rest_fraction: float = 0.5,
    seed: int = 0,
) -> TaskFiles:
    """Write the task's clips and files into ``out_dir`` (idempotent: existing clips are kept).

    ``sft/`` sync clips and ``conversations.jsonl`` -> ``train.parquet`` (the real warm-up converter);
    ``rl/`` sync and rest clips, ``train.parquet`` and ``reference.jsonl`` (what the reference hears and
    should say); ``test/`` the muted set built by AV-ConfuseBench's builder with controls.
    """
    from verl_avconfuse.bench.muted import build_muted, load_muted_manifest
    from verl_avconfuse.data_preprocess import warmup_sft
    from verl_avconfuse.io import atomic_write_parquet, atomic_write_text

    out = Path(out_dir)
    sets = {
        "sft": sample_pieces(n_sft, seed=seed, prefix="sft"),
        "rl": sample_pieces(n_rl, seed=seed, rest_fraction=rest_fraction, prefix="rl"),
        "test": sample_pieces(n_test, seed=seed, prefix="test"),
    }
    clips: dict[str, Path] = {}
    for name, pieces in sets.items():
        (out / name / "clips").mkdir(parents=True, exist_ok=True)
        for piece in pieces:
            audio = name != "test"
            clips[piece.key] = write_clip(piece, out / name / "clips" / clip_name(piece, audio=audio), audio=audio)

    sft_jsonl = out / "sft" / "conversations.jsonl"
    atomic_write_text(sft_jsonl, "".join(json.dumps(c) + "\n" for c in sft_conversations(sets["sft"], clips, seed)))
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
            "a_think": audio_reasoning(by_key[row["extra_info"]["video_id"]].scene, rng),
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
    return TaskFiles(
        sft_jsonl,
        sft_parquet,
        rl_train,
        reference,
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
    """The task's instruments an a-think names."""
    return {i for i in INSTRUMENTS if i in a_think}


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

    from verl_avconfuse.tiny.models import atomic_directory, deterministic_torch

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
