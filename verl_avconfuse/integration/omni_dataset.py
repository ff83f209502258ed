"""``OmniRLDataset``: verl's ``RLHFDataset`` for rows with videos and soundtracks.

Rows carry ``videos`` and/or ``audios`` (paths) with ``<video>`` / ``<audio>`` placeholders in the
prompt, exactly as verl's ``RLHFDataset`` expects; this class only changes how media are read:

- PyAV instead of ``qwen_vl_utils`` (whose readers need torchvision's video API, decord or
  torchcodec): frames sampled at ``fps`` up to ``max_frames`` and resized into
  ``[min_pixels, max_pixels]``; audio decoded and resampled to 16 kHz mono;
- ``use_audio_in_video`` (in ``data.mm_processor_kwargs``, shared with the processor): the audio
  of each video is decoded from the video itself and interleaved by the Omni processor;
- every row's media are checked when the dataset loads (file exists, decodes, has the streams
  its placeholders need). Bad rows are counted, logged by file name and reason, and dropped, so
  a video without a soundtrack never reaches a rollout and never stops a training run.

Select it with ``data.custom_cls.path=pkg://verl_avconfuse.integration.omni_dataset`` and
``data.custom_cls.name=OmniRLDataset``; options live under ``data.media`` (see :class:`MediaOptions`).
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Any

from verl.utils.dataset.rl_dataset import RLHFDataset

from verl_avconfuse.media.probe import media_path

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MediaOptions:
    """``data.media``: how media are located and decoded (``fps`` comes from ``mm_processor_kwargs``)."""

    #: Folder that relative media paths are resolved against (default: as given, i.e. the working dir).
    root: str | None = None
    max_frames: int | None = 32
    min_pixels: int | None = None
    max_pixels: int | None = None
    audio_sample_rate: int = 16000
    #: Probe every row's media at load time and drop the unusable ones (counted and logged).
    check_media: bool = True

    @classmethod
    def from_config(cls, config) -> MediaOptions:
        media = dict(config.get("media", None) or {})
        unknown = set(media) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(
                f"data.media: unknown option(s) {sorted(unknown)}; expected {sorted(cls.__dataclass_fields__)}"
            )
        return cls(**media)


DEFAULT_FPS = 2.0


def processor_fps(config) -> float:
    return float((config.get("mm_processor_kwargs", None) or {}).get("fps", DEFAULT_FPS))


def uses_audio_in_video(config) -> bool:
    return bool((config.get("mm_processor_kwargs", None) or {}).get("use_audio_in_video", False))


def load_video_item(path: str, config) -> tuple[Any, dict]:
    """One video as ``(frames uint8 (T, H, W, 3), metadata)``, the pair verl's processor call splits."""
    from verl_avconfuse.media import load_video_frames, video_metadata_dict

    options = MediaOptions.from_config(config)
    frames, info = load_video_frames(
        path,
        fps=processor_fps(config),
        max_frames=options.max_frames,
        min_pixels=options.min_pixels,
        max_pixels=options.max_pixels,
    )
    return frames, video_metadata_dict(info)


class OmniRLDataset(RLHFDataset):
    """RLHFDataset whose media are decoded with PyAV and checked up front (see module docstring)."""

    def __init__(self, *args, **kwargs):
        self.skipped_samples: list[dict[str, Any]] = []
        super().__init__(*args, **kwargs)

    # ---------------------------------------------------------------------------- loading checks

    def maybe_filter_out_long_prompts(self, dataframe=None):
        options = MediaOptions.from_config(self.config)
        if options.check_media:
            dataframe = self._drop_unusable_media(dataframe, options)
        # datasets >= 4 forks a pool even for num_proc=1. The length filter decodes media and runs the
        # processor (torch) in that child, and a fork taken after the parent has run a model can die
        # (seen on 2-core CI). One worker buys no parallelism, so filter in this process instead.
        if self.num_workers is not None and self.num_workers <= 1:
            self.num_workers = None
        return super().maybe_filter_out_long_prompts(dataframe)

    def _row_requirements(self, row: dict, options: MediaOptions) -> list[tuple[str, bool, bool]]:
        """(path, needs_audio, needs_video) for every media file a row refers to."""
        needs = []
        in_video = uses_audio_in_video(self.config)
        for item in row.get(self.video_key) or []:
            needs.append((media_path(item, options.root, "video"), in_video, True))
        for item in row.get(self.audio_key) or []:
            needs.append((media_path(item, options.root, "audio"), True, False))
        return needs

    def _drop_unusable_media(self, dataframe, options: MediaOptions):
        from verl_avconfuse.media import MediaError, require_streams

        keep: list[int] = []
        checked: dict[tuple[str, bool, bool], str | None] = {}
        for index in range(len(dataframe)):
            row = dataframe[index]
            reason = None
            try:
                for requirement in self._row_requirements(row, options):
                    if requirement not in checked:
                        path, audio, video = requirement
                        try:
                            require_streams(path, audio=audio, video=video)
                            checked[requirement] = None
                        except MediaError as error:
                            checked[requirement] = str(error)
                    reason = checked[requirement]
                    if reason:
                        break
            except ValueError as error:
                reason = f"row {index}: {error}"
            if reason:
                self.skipped_samples.append({"index": index, "reason": reason})
            else:
                keep.append(index)
        if self.skipped_samples:
            shown = "; ".join(item["reason"] for item in self.skipped_samples[:5])
            logger.warning(
                "OmniRLDataset: dropped %d of %d rows with unusable media (%s%s)",
                len(self.skipped_samples),
                len(dataframe),
                shown,
                "; ..." if len(self.skipped_samples) > 5 else "",
            )
            print(f"OmniRLDataset: dropped {len(self.skipped_samples)} of {len(dataframe)} rows with unusable media")
        if len(keep) == len(dataframe):
            return dataframe
        if not keep:
            raise ValueError(
                f"{self.data_files}: every row refers to unusable media, e.g. {self.skipped_samples[0]['reason']}"
            )
        return dataframe.select(keep)

    def skipped_report(self) -> str:
        """The dropped rows as JSON (index and reason naming the file), for logs and tests."""
        return json.dumps(self.skipped_samples, indent=2)

    # ------------------------------------------------------------------------- media decoding

    @classmethod
    def _process_multi_modal_info(cls, messages: list[dict], image_patch_size, config):
        from PIL import Image

        from verl_avconfuse.media import load_audio

        options = MediaOptions.from_config(config)
        in_video = uses_audio_in_video(config)
        images, videos, audios = [], [], []
        for message in messages:
            content = message.get("content")
            if not isinstance(content, list):
                continue
            for item in content:
                if not isinstance(item, dict):
                    continue
                kind = item.get("type")
                if kind == "image":
                    image = item.get("image")
                    images.append(
                        image
                        if isinstance(image, Image.Image)
                        else Image.open(media_path(item, options.root, "image")).convert("RGB")
                    )
                elif kind == "video":
                    path = media_path(item, options.root, "video")
                    videos.append(load_video_item(path, config))
                    if in_video:
                        audios.append(load_audio(path, sr=options.audio_sample_rate))
                elif kind == "audio":
                    path = media_path(item, options.root, "audio")
                    audios.append(load_audio(path, sr=options.audio_sample_rate))
        return images or None, videos or None, audios or None

    @classmethod
    async def process_multi_modal_info(cls, messages: list[dict], image_patch_size, config):
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            None, lambda: cls._process_multi_modal_info(messages, image_patch_size=image_patch_size, config=config)
        )

    @classmethod
    async def process_vision_info(cls, messages: list[dict], image_patch_size, config):
        images, videos, _ = await cls.process_multi_modal_info(messages, image_patch_size, config)
        return images, videos
