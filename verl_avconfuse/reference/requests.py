"""What the reference audio LM is asked for one dataset row: its soundtrack, its question and its answer.

One rule for everyone who asks: the reward manager (when it scores a rollout), the trainer's prefetch (when
it draws a batch) and ``avconfuse reference precompute``. The request is read from the row's own fields: the
first audio item, else the first video's soundtrack; ``extra_info.question`` (every converter of this package
writes it); ``reward_model.ground_truth``. The same row always gives the same request, so the prefetch's
reference is the one the reward finds, and the one precompute wrote.

A row comes in two shapes: as written to the parquet (:func:`request_for_row`: ``audios`` / ``videos``) and as
verl hands a sample to the reward loop and the trainer (:func:`reference_request_for`: verl's dataset moves
the media into the ``raw_prompt`` messages).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from verl_avconfuse.reference.cache import ReferenceRequest

#: The placeholders a row's prompt text carries for its media (verl's ``RLHFDataset``).
_PLACEHOLDERS = ("<video>", "<audio>", "<image>")


def _prompt_question(messages) -> str:
    """The question of a row without ``extra_info.question`` (a parquet written elsewhere): the user text, media
    placeholders and the output-format instruction removed."""
    from verl_avconfuse.method.prompts import OUTPUT_FORMAT_INSTRUCTION

    parts = []
    for message in messages or []:
        if message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            for placeholder in _PLACEHOLDERS:
                content = content.replace(placeholder, "")
            parts.append(content)
        elif isinstance(content, list):
            parts.extend(
                item.get("text", "") for item in content if isinstance(item, dict) and item.get("type") == "text"
            )
    text = " ".join(part.strip() for part in parts if part.strip())
    return text.replace(OUTPUT_FORMAT_INSTRUCTION, "").strip()


def reference_request(
    media: Iterable[tuple[str, Any]], extra_info, reward_model, media_root: str | None, messages=None
) -> ReferenceRequest | None:
    """The request for a row whose media items are ``media`` (``(kind, item)``, kind ``audio`` or ``video``).

    ``None``: the row has no audio or video item. ``messages`` (the prompt) give the question only when
    ``extra_info`` has none.
    """
    from verl_avconfuse.media.probe import media_path

    audio = video = None
    for kind, item in media:
        if kind == "audio" and audio is None:
            audio = media_path(item, media_root, "audio")
        elif kind == "video" and video is None:
            video = media_path(item, media_root, "video")
    source = audio or video
    if source is None:
        return None
    extra_info = extra_info or {}
    question = extra_info.get("question") or _prompt_question(messages)
    answer = str((reward_model or {}).get("ground_truth", ""))
    return ReferenceRequest(str(source), str(question), answer)


def request_for_row(row: dict, media_root: str | None) -> ReferenceRequest | None:
    """The request for a parquet row (``audios``, ``videos``, ``extra_info``, ``reward_model``, ``prompt``)."""
    media = [
        (kind, item)
        for key, kind in (("audios", "audio"), ("videos", "video"))
        for item in (row.get(key) if row.get(key) is not None else [])
    ]
    prompt = row.get("prompt")
    return reference_request(
        media, row.get("extra_info"), row.get("reward_model"), media_root, list(prompt) if prompt is not None else None
    )


def reference_request_for(sample: dict, media_root: str | None) -> ReferenceRequest | None:
    """The request for one sample as verl holds it (its ``raw_prompt`` chat messages, ``extra_info`` and
    ``reward_model``: verl's dataset moved the row's media into the messages)."""
    raw_prompt = sample.get("raw_prompt")
    messages = list(raw_prompt) if raw_prompt is not None else []
    media = [
        (item["type"], item)
        for message in messages
        if isinstance(message.get("content"), list)
        for item in message["content"]
        if isinstance(item, dict) and item.get("type") in ("audio", "video")
    ]
    return reference_request(media, sample.get("extra_info"), sample.get("reward_model"), media_root, messages)
