"""Warm-up SFT data (chat messages with audio/video) -> multi-turn SFT parquet for verl's SFT trainer.

Inputs:

- the release's warm-up file (``warmup_sft_messages.json``): ONE flat JSON list of chat messages,
  user turns ``{"role": "user", "content": [{"type": "audio", "audio_url": "./00000238.mp4"},
  {"type": "text", "text": question}]}`` and assistant turns in the three-part format. The list is
  *not* strictly alternating (it holds 78 user and 79 assistant turns), so turns are paired
  defensively: a user turn with the assistant turn right after it; every other turn is dropped and
  reported (index, role, reason);
- or a JSONL file with one conversation per line (a list of messages, or ``{"messages": [...]}``),
  kept whole when it reads ``[system] user assistant (user assistant)*``, else dropped and reported.

Media items (``audio``/``video`` with ``audio_url``/``video_url``/``audio``/``video``) are resolved
against ``--video-dir`` (``./00000238.mp4`` is a Music-AVQA clip). The release passes the *video*
as an ``audio_url`` and builds inputs with ``use_audio_in_video=True``: the model sees the clip and
hears its soundtrack. So a media file with a picture becomes ``<video><audio>`` (its soundtrack as
the audio item; ``<video>`` alone with ``--audio-in-video``), an audio-only file becomes ``<audio>``.
User text gets RL-CoMM's format instruction (:func:`verl_avconfuse.method.prompts.format_question`), as
in the RL prompts, unless ``--no-format-instruction``.

Output columns (read by :class:`verl_avconfuse.integration.omni_sft_dataset.OmniSFTDataset`)::

    messages    [{"role": "user", "content": "<video><audio>\\n{question} {instruction}"},
                 {"role": "assistant", "content": "<a-think> ... </answer>"}]
    videos      [path, ...]   one per <video>, in order
    audios      [path, ...]   one per <audio>, in order
    data_source "warmup_sft"
    extra_info  {index, source_indices (message indices, or the JSONL line), video_ids}

The dropped turns and unusable media always go to ``OUT.report.json`` (and are printed).

Usage::

    python data_preprocess/warmup_sft.py --input warmup_sft_messages.json --video-dir MUSIC-AVQA/videos \\
        --out data/warmup/train.parquet
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from verl_avconfuse.data_preprocess.common import (
    ConversionError,
    add_common_arguments,
    check_media_files,
    load_json,
    media_reference,
    report_path,
    write_json_atomic,
    write_parquet_atomic,
)
from verl_avconfuse.io import iter_jsonl
from verl_avconfuse.method.prompts import format_question

DATA_SOURCE = "warmup_sft"
_MEDIA_KEYS = {"audio": ("audio_url", "audio"), "video": ("video_url", "video")}


@dataclass
class Dropped:
    """A message (flat list) or a conversation (JSONL line) left out, and why."""

    index: int
    role: str | None
    reason: str


@dataclass
class Conversation:
    messages: list[dict]
    source_indices: list[int]
    dropped_for_media: str | None = None
    media: list[Path] = field(default_factory=list)


# ----------------------------------------------------------------------------------- reading


def _role(message: Any) -> str | None:
    return message.get("role") if isinstance(message, dict) else None


def pair_flat_messages(messages: list) -> tuple[list[Conversation], list[Dropped]]:
    """Pair a flat message list into (user, assistant) conversations; report every other message.

    A user turn pairs with the assistant turn that immediately follows it. Dropped: an assistant
    turn with no unpaired user turn before it, a user turn followed by another user turn (or by
    nothing), any other role, and anything that is not a message.
    """
    conversations: list[Conversation] = []
    dropped: list[Dropped] = []
    pending: int | None = None
    for i, message in enumerate(messages):
        role = _role(message)
        if role not in ("user", "assistant") or "content" not in message:
            what = f"role {role!r}" if role else "not a {role, content} message"
            dropped.append(Dropped(i, role, f"{what}: only user/assistant pairs are kept"))
            continue
        if role == "user":
            if pending is not None:
                dropped.append(Dropped(pending, "user", f"no assistant reply (message {i} is another user turn)"))
            pending = i
            continue
        if pending is None:
            previous = f"message {i - 1} is an assistant turn" if i > 0 else "it opens the list"
            dropped.append(Dropped(i, "assistant", f"no user turn to answer ({previous})"))
            continue
        conversations.append(Conversation([messages[pending], message], [pending, i]))
        pending = None
    if pending is not None:
        dropped.append(Dropped(pending, "user", "no assistant reply (last message of the list)"))
    return conversations, dropped


def read_jsonl_conversations(path: Path) -> tuple[list[Conversation], list[Dropped]]:
    """One conversation per line; malformed lines are dropped and reported by line number (1-based)."""
    conversations: list[Conversation] = []
    dropped: list[Dropped] = []
    for number, record, error in iter_jsonl(path):
        if error is not None:
            dropped.append(Dropped(number, None, f"line {number}: not JSON ({error.msg})"))
            continue
        messages = record.get("messages") if isinstance(record, dict) else record
        roles = [_role(m) for m in messages] if isinstance(messages, list) else None
        body = roles[1:] if roles and roles[0] == "system" else roles
        if (
            not body
            or len(body) % 2
            or any(r != ("user" if k % 2 == 0 else "assistant") for k, r in enumerate(body))
            or any("content" not in m for m in messages)
        ):
            dropped.append(
                Dropped(number, None, f"line {number}: expected [system] user assistant (user assistant)*, got {roles}")
            )
            continue
        conversations.append(Conversation(list(messages), [number]))
    return conversations, dropped


# ---------------------------------------------------------------------------------- messages


def _resolve(reference: str, video_dir: Path) -> Path:
    if reference.startswith("file://"):
        reference = reference[len("file://") :]
    path = Path(reference)
    return path if path.is_absolute() else video_dir / path


def _text_of(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [item.get("text", "") for item in content if isinstance(item, dict) and item.get("type") == "text"]
        return "".join(parts)
    raise ConversionError(f"{where}: content must be a string or a list of parts, got {type(content).__name__}")


def _user_media_and_text(message: dict, video_dir: Path, where: str) -> tuple[list[Path], str]:
    content = message["content"]
    if isinstance(content, str):
        if "<video>" in content or "<audio>" in content:
            raise ConversionError(f"{where}: a text placeholder without a media file; give media as content parts")
        return [], content
    if not isinstance(content, list):
        raise ConversionError(f"{where}: content must be a string or a list of parts")
    media: list[Path] = []
    texts: list[str] = []
    for item in content:
        kind = item.get("type") if isinstance(item, dict) else None
        if kind in _MEDIA_KEYS:
            reference = next((item[k] for k in _MEDIA_KEYS[kind] if isinstance(item.get(k), str)), None)
            if reference is None:
                raise ConversionError(f"{where}: {kind} part without a path ({_MEDIA_KEYS[kind]})")
            media.append(_resolve(reference, video_dir))
        elif kind == "text":
            texts.append(str(item.get("text", "")))
        else:
            raise ConversionError(f"{where}: unsupported content part {item!r}")
    return media, " ".join(t.strip() for t in texts if t.strip())


def conversation_row(
    conversation: Conversation,
    index: int,
    *,
    video_dir: Path,
    has_video: dict[str, bool],
    audio_in_video: bool,
    relative_paths: bool,
    format_instruction: bool,
) -> dict:
    """The SFT row of one conversation (module docstring: the columns)."""
    messages, videos, audios, video_ids = [], [], [], []
    for k, message in enumerate(conversation.messages):
        where = f"conversation {index} message {k}"
        role = message["role"]
        if role != "user":
            text = _text_of(message["content"], where).strip()
            if role == "assistant" and not text:
                raise ConversionError(f"{where}: empty assistant reply")
            messages.append({"role": role, "content": text})
            continue
        media, text = _user_media_and_text(message, video_dir, where)
        placeholders = ""
        for path in media:
            reference = media_reference(path, video_dir, relative_paths)
            video_ids.append(path.stem)
            if has_video[str(path)]:
                videos.append(reference)
                placeholders += "<video>"
                if not audio_in_video:
                    audios.append(reference)
                    placeholders += "<audio>"
            else:
                audios.append(reference)
                placeholders += "<audio>"
        if format_instruction:
            content = format_question(text, placeholders)
        else:
            content = f"{placeholders}\n{text}" if placeholders else text
        messages.append({"role": "user", "content": content})
    return {
        "data_source": DATA_SOURCE,
        "messages": messages,
        "videos": videos,
        "audios": audios,
        "extra_info": {"index": index, "source_indices": conversation.source_indices, "video_ids": video_ids},
    }


# ------------------------------------------------------------------------------------ driver


@dataclass
class SFTConversion:
    rows: list[dict]
    dropped: list[Dropped]
    output: Path | None = None
    report: Path | None = None


def convert_warmup(
    input_path: str | Path,
    *,
    video_dir: str | Path,
    output: str | Path | None,
    audio_in_video: bool = False,
    relative_paths: bool = False,
    format_instruction: bool = True,
    skip_bad: bool = False,
    first: int | None = None,
    subset: int | None = None,
    seed: int = 0,
    progress: bool = True,
) -> SFTConversion:
    """Read, pair, check media, write (module docstring). Raises :class:`ConversionError` before writing."""
    from verl_avconfuse.data_preprocess.common import select_candidates
    from verl_avconfuse.media import probe

    input_path, video_dir = Path(input_path), Path(video_dir)
    if input_path.suffix == ".jsonl":
        if not input_path.is_file():
            raise ConversionError(f"{input_path}: file not found")
        conversations, dropped = read_jsonl_conversations(input_path)
    else:
        data = load_json(input_path)
        if not isinstance(data, list):
            raise ConversionError(f"{input_path}: expected a flat JSON list of chat messages")
        conversations, dropped = pair_flat_messages(data)

    for k, conversation in enumerate(conversations):
        for m, message in enumerate(conversation.messages):
            if message["role"] == "user":
                media, _ = _user_media_and_text(message, video_dir, f"conversation {k} message {m}")
                conversation.media += media

    order, wanted = select_candidates(len(conversations), first=first, subset=subset, seed=seed)
    cache: dict[str, str | None] = {}
    kept: list[int] = []
    media_dropped: list[dict] = []
    if skip_bad:
        # Lazily, in candidate order, so --first N still gives N conversations when enough are usable.
        for k in order:
            if wanted is not None and len(kept) >= wanted:
                break
            paths = [str(p) for p in conversations[k].media]
            check_media_files(paths, cache, needs_audio=True, needs_video=None, progress=False)
            reasons = [cache[p] for p in paths if cache[p]]
            if reasons:
                media_dropped.append(
                    {"conversation": k, "source_indices": conversations[k].source_indices, "reason": reasons[0]}
                )
            else:
                kept.append(k)
    else:
        kept = order if wanted is None else order[:wanted]
        paths = [str(p) for k in kept for p in conversations[k].media]
        check_media_files(paths, cache, needs_audio=True, needs_video=None, progress=progress)
    bad = {p: r for p, r in cache.items() if r}
    if bad and not skip_bad:
        lines = "\n".join(f"  {r}" for _, r in sorted(bad.items()))
        raise ConversionError(
            f"{len(bad)} unusable media file(s); nothing was written (use --skip-bad to drop them):\n{lines}"
        )
    kept = sorted(kept)
    has_video = {p: probe(p).has_video for p in cache if cache[p] is None}
    rows = [
        conversation_row(
            conversations[k],
            i,
            video_dir=video_dir,
            has_video=has_video,
            audio_in_video=audio_in_video,
            relative_paths=relative_paths,
            format_instruction=format_instruction,
        )
        for i, k in enumerate(kept)
    ]
    if not rows:
        raise ConversionError(f"{input_path}: no usable conversations")
    result = SFTConversion(rows=rows, dropped=dropped)
    if output is not None:
        result.output = write_parquet_atomic(rows, output)
        report = {
            "source": str(input_path),
            "output": str(Path(output).resolve()),
            "rows_written": len(rows),
            "dropped_messages": [vars(d) for d in dropped],
            "dropped_for_media": media_dropped,
            "bad_files": dict(sorted(bad.items())),
        }
        result.report = write_json_atomic(report, report_path(output))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", required=True, type=Path, help="flat JSON message list, or JSONL conversations")
    parser.add_argument("--no-format-instruction", action="store_true", help="keep the user text as written")
    add_common_arguments(parser, unit="conversations", split=False)
    args = parser.parse_args(argv)
    try:
        result = convert_warmup(
            args.input,
            video_dir=args.video_dir,
            output=args.out,
            audio_in_video=args.audio_in_video,
            relative_paths=args.relative_paths,
            format_instruction=not args.no_format_instruction,
            skip_bad=args.skip_bad,
            first=args.first,
            subset=args.subset,
            seed=args.seed,
            progress=not args.no_progress,
        )
    except ConversionError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"wrote {len(result.rows)} conversations to {result.output}")
    for d in result.dropped:
        print(f"dropped message {d.index} ({d.role}): {d.reason}")
    print(f"report: {result.report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
