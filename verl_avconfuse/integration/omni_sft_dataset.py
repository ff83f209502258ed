"""``OmniSFTDataset``: verl's multi-turn SFT dataset for Qwen2.5-Omni conversations with video and audio.

verl 0.9.1's ``MultiTurnSFTDataset`` cannot feed the Omni thinker: it knows ``<image>`` and
``<video>`` placeholders only (an ``<audio>`` stays text and the audio is dropped), reads videos
through ``qwen_vl_utils`` (which needs torchvision's video API, decord or torchcodec), and computes
Qwen2-VL's M-RoPE, not the thinker's TMRoPE (audio positions, ``use_audio_in_video`` interleaving).
This subclass keeps verl's reading, sampling and output contract and replaces the item builder:

1. ``<video>`` / ``<audio>`` in the messages become media items, in order, from the row's
   ``videos`` / ``audios`` path lists (``data_preprocess/warmup_sft.py`` writes such rows);
2. media are decoded exactly as :class:`~verl_avconfuse.integration.omni_dataset.OmniRLDataset` decodes them for
   RL (PyAV, ``data.media`` options, ``data.mm_processor_kwargs.{fps,use_audio_in_video}``);
3. the whole conversation goes through the Omni processor once (it expands every media
   placeholder into its feature tokens) and position ids come from the processor's bound TMRoPE
   (``get_rope_index``), laid out as verl's actor expects: ``(4, L)`` = text positions + 3 TMRoPE rows;
4. the loss mask covers each assistant reply and its ``<|im_end|>`` (what the model generates), not
   the ``<|im_start|>assistant\\n`` header nor anything the user said.

Select it with ``data.custom_cls.path=pkg://verl_avconfuse.integration.omni_sft_dataset`` and
``data.custom_cls.name=OmniSFTDataset`` (``recipes/sft_warmup.yaml`` does). Only ``pad_mode:
no_padding`` is supported (the engine's only mode), and a conversation longer than
``data.max_length`` is an error: media tokens cannot be truncated safely.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import torch
from verl.utils.dataset.multiturn_sft_dataset import MultiTurnSFTDataset
from verl.utils.py_functional import convert_nested_value_to_list_recursive

logger = logging.getLogger(__name__)

_PLACEHOLDER = re.compile(r"(<video>|<audio>)")


class OmniSFTDataset(MultiTurnSFTDataset):
    """Multi-turn SFT rows with ``<video>`` / ``<audio>`` placeholders for the Qwen2.5-Omni thinker."""

    def __init__(self, parquet_files, tokenizer, config, processor=None, max_samples: int = -1):
        if processor is None or not hasattr(processor, "audio_bos_token") or not hasattr(processor, "get_rope_index"):
            raise ValueError(
                "OmniSFTDataset needs the Qwen2.5-Omni processor with TMRoPE bound (verl_avconfuse's plugin "
                f"provides it for an Omni checkpoint); got {type(processor).__name__}"
            )
        pad_mode = config.get("pad_mode", "right")
        if pad_mode != "no_padding":
            raise ValueError(
                f"OmniSFTDataset: data.pad_mode must be 'no_padding' (verl's engine mode), got {pad_mode!r}"
            )
        self.audio_key = config.get("audio_key", "audios")
        # verl's class keeps no reference to its config; media decoding reads data.media from it.
        self.config = config
        self.skipped_samples: list[dict[str, Any]] = []
        super().__init__(parquet_files, tokenizer, config, processor=processor, max_samples=max_samples)
        self._im_end_id = self.tokenizer.convert_tokens_to_ids("<|im_end|>")

    # ------------------------------------------------------------------------------ loading

    def _read_files_and_process(self):
        super()._read_files_and_process()
        from verl_avconfuse.integration.omni_dataset import MediaOptions

        if MediaOptions.from_config(self.config).check_media:
            self._drop_unusable_media()

    def _row_media(self, index: int) -> list[tuple[str, bool]]:
        """(path, needs_video) of every media file row ``index`` refers to."""
        from verl_avconfuse.integration.omni_dataset import MediaOptions
        from verl_avconfuse.media.probe import media_path

        options = MediaOptions.from_config(self.config)
        row = self.dataframe.iloc[index]
        media = [(media_path(p, options.root, "video"), True) for p in _as_list(row.get(self.video_key))]
        media += [(media_path(p, options.root, "audio"), False) for p in _as_list(row.get(self.audio_key))]
        return media

    def _drop_unusable_media(self) -> None:
        """Probe every row's media once; rows naming a bad file are dropped, counted and logged."""
        from verl_avconfuse.media import MediaError, require_streams

        checked: dict[tuple[str, bool], str | None] = {}
        keep = []
        for index in range(len(self.dataframe)):
            reason = None
            for path, needs_video in self._row_media(index):
                key = (path, needs_video)
                if key not in checked:
                    try:
                        require_streams(path, audio=True, video=needs_video)
                        checked[key] = None
                    except MediaError as error:
                        checked[key] = str(error)
                reason = reason or checked[key]
            if reason:
                self.skipped_samples.append({"index": index, "reason": reason})
            else:
                keep.append(index)
        if not self.skipped_samples:
            return
        logger.warning(
            "OmniSFTDataset: dropped %d of %d rows with unusable media, e.g. %s",
            len(self.skipped_samples),
            len(self.dataframe),
            self.skipped_samples[0]["reason"],
        )
        if not keep:
            raise ValueError(f"{self.parquet_files}: every row refers to unusable media")
        self.dataframe = self.dataframe.iloc[keep]
        self.messages = [self.messages[i] for i in keep]
        if self.tools is not None:
            self.tools = [self.tools[i] for i in keep]
        if self.enable_thinking is not None:
            self.enable_thinking = [self.enable_thinking[i] for i in keep]

    # ------------------------------------------------------------------------------- items

    def _build_messages(self, example: dict) -> list[dict]:
        """Placeholders -> ``{"type": "video"|"audio", ...}`` content items, paths taken in order."""
        messages = convert_nested_value_to_list_recursive(example[self.messages_key])
        pending = {
            "video": list(_as_list(example.get(self.video_key))),
            "audio": list(_as_list(example.get(self.audio_key))),
        }
        for message in messages:
            content = message["content"]
            if not isinstance(content, str):
                raise ValueError(f"OmniSFTDataset: message content must be a string with placeholders, got {content!r}")
            items = []
            for piece in _PLACEHOLDER.split(content):
                if piece in ("<video>", "<audio>"):
                    kind = piece[1:-1]
                    if not pending[kind]:
                        raise ValueError(f"OmniSFTDataset: more {piece} placeholders than {kind} paths in the row")
                    items.append({"type": kind, kind: pending[kind].pop(0)})
                elif piece:
                    items.append({"type": "text", "text": piece})
            message["content"] = items
        left = {k: v for k, v in pending.items() if v}
        if left:
            raise ValueError(f"OmniSFTDataset: media paths without a placeholder: {left}")
        return messages

    def _assistant_loss_mask(self, input_ids: torch.Tensor, messages: list[dict]) -> torch.Tensor:
        """1 on each assistant reply and its ``<|im_end|>``; checked against the reply texts."""
        ids = input_ids.tolist()
        header = list(self.generation_prompt)
        mask = torch.zeros_like(input_ids)
        replies = [m for m in messages if m["role"] == "assistant"]
        spans = []
        start = 0
        while True:
            at = _find(ids, header, start)
            if at < 0:
                break
            begin = at + len(header)
            end = ids.index(self._im_end_id, begin) if self._im_end_id in ids[begin:] else len(ids) - 1
            spans.append((begin, end))
            start = end + 1
        if len(spans) != len(replies):
            raise ValueError(
                f"OmniSFTDataset: found {len(spans)} assistant headers in the tokenised conversation "
                f"but it has {len(replies)} assistant messages"
            )
        for (begin, end), reply in zip(spans, replies, strict=True):
            text = "".join(item.get("text", "") for item in reply["content"])
            decoded = self.tokenizer.decode(ids[begin:end])
            if decoded.strip() != text.strip():
                raise ValueError(f"OmniSFTDataset: assistant span decodes to {decoded!r}, expected {text!r}")
            mask[begin : end + 1] = 1
        return mask

    def __getitem__(self, item):
        from verl.utils.tokenizer import build_multimodal_processor_inputs

        from verl_avconfuse.integration.omni_dataset import OmniRLDataset

        row = self.dataframe.iloc[item].to_dict()
        messages = self._build_messages(row)
        images, videos, audios = OmniRLDataset._process_multi_modal_info(messages, None, self.config)
        text = self.processor.apply_chat_template(
            messages, add_generation_prompt=False, tokenize=False, **self.apply_chat_template_kwargs
        )
        mm_kwargs = dict(self.config.get("mm_processor_kwargs", None) or {})
        inputs = build_multimodal_processor_inputs(
            self.processor, text=[text], images=images, videos=videos, audio=audios, mm_processor_kwargs=mm_kwargs
        )
        features = dict(inputs)
        input_ids = features.pop("input_ids")[0]
        attention_mask = features.pop("attention_mask")[0]
        length = int(input_ids.shape[0])
        if length > self.max_length:
            raise ValueError(
                f"OmniSFTDataset: row {item} is {length} tokens, more than data.max_length={self.max_length} "
                "(media tokens cannot be truncated; raise max_length or lower data.media.max_frames/max_pixels)"
            )
        loss_mask = self._assistant_loss_mask(input_ids, messages)
        rope_kwargs = self.processor.get_rope_index_kwargs(features)  # pops the use_audio_in_video flag
        vision_positions, _ = self.processor.get_rope_index(
            input_ids=input_ids[None],
            image_grid_thw=features.get("image_grid_thw"),
            video_grid_thw=features.get("video_grid_thw"),
            attention_mask=attention_mask[None],
            **rope_kwargs,
        )
        # verl's actor layout: row 0 plain text positions, rows 1-3 the thinker's TMRoPE (t, h, w).
        position_ids = torch.cat([torch.arange(length)[None], vision_positions[:, 0]], dim=0)
        result = {"input_ids": input_ids, "position_ids": position_ids, "loss_mask": loss_mask}
        if features:
            result["multi_modal_inputs"] = features
        return result


def _as_list(value: Any) -> list:
    if value is None:
        return []
    return list(value)


def _find(haystack: list[int], needle: list[int], start: int) -> int:
    n = len(needle)
    for i in range(start, len(haystack) - n + 1):
        if haystack[i : i + n] == needle:
            return i
    return -1
