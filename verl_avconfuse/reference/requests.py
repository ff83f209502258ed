"""What the reference audio LM is asked for one dataset row: its soundtrack, its question and its answer.

One rule for everyone who asks: the reward manager (when it scores a rollout), the trainer's prefetch (when
it draws a batch) and ``avconfuse reference precompute``. The same row always gives the same request, so the
prefetch's reference is the one the reward finds.
"""

from __future__ import annotations

from verl_avconfuse.reference.cache import ReferenceRequest


def _user_text(messages) -> str:
    parts = []
    for message in messages or []:
        if message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts.extend(
                item.get("text", "") for item in content if isinstance(item, dict) and item.get("type") == "text"
            )
    return " ".join(part.strip() for part in parts if part.strip())


def reference_request_for(non_tensor: dict, media_root: str | None) -> ReferenceRequest | None:
    """The reference audio LM's request for one sample (``None``: the prompt has no audio or video item).

    ``non_tensor``: the sample's ``raw_prompt`` (chat messages), ``extra_info`` and ``reward_model``.
    """
    from verl_avconfuse.media.probe import media_path
    from verl_avconfuse.method.prompts import OUTPUT_FORMAT_INSTRUCTION

    raw_prompt = non_tensor.get("raw_prompt")
    messages = list(raw_prompt) if raw_prompt is not None else []
    audio = video = None
    for message in messages:
        for item in message.get("content") or [] if isinstance(message.get("content"), list) else []:
            if isinstance(item, dict) and item.get("type") == "audio" and audio is None:
                audio = media_path(item, media_root, "audio")
            elif isinstance(item, dict) and item.get("type") == "video" and video is None:
                video = media_path(item, media_root, "video")
    source = audio or video
    if source is None:
        return None
    extra_info = non_tensor.get("extra_info") or {}
    question = extra_info.get("question") or _user_text(messages).replace(OUTPUT_FORMAT_INSTRUCTION, "").strip()
    answer = str((non_tensor.get("reward_model") or {}).get("ground_truth", ""))
    return ReferenceRequest(str(source), str(question), answer)
