"""What a media file holds (streams, durations, rates) and the errors every media reader raises.

This module is also the shared base of :mod:`verl_avconfuse.media`: opening an input with FFmpeg's
errors turned into :class:`MediaError`, and the temp-file-then-``os.replace`` pattern every writer
uses, live here so the other media modules do not import each other.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from verl_avconfuse.io import atomic_path

__all__ = [
    "MediaError",
    "MediaInfo",
    "MissingStreamError",
    "UnreadableMediaError",
    "media_path",
    "probe",
    "require_streams",
]

# Microseconds: the unit of FFmpeg's container-level duration / start_time (AV_TIME_BASE).
_AV_TIME_BASE = 1_000_000


def media_path(item: Any, root: str | None, key: str) -> str:
    """The file of one media item of a row (a path, or verl's ``{"video": path}`` / ``{"video_url": ...}``),
    ``file://`` stripped and a relative path resolved against ``root``."""
    path = item.get(key) or item.get(f"{key}_url") if isinstance(item, dict) else item
    if not isinstance(path, (str, os.PathLike)):
        raise ValueError(f"{key}: expected a file path, got {type(path).__name__}")
    path = os.fspath(path)
    if path.startswith("file://"):
        path = path[len("file://") :]
    if root and not os.path.isabs(path):
        path = os.path.join(root, path)
    return path


class MediaError(ValueError):
    """A media file is not what the caller needs; the message names the file and what was expected."""

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path.name}: {reason} (file: {self.path})")


class MissingStreamError(MediaError):
    """The file is readable but lacks a stream the caller needs (e.g. a video without a soundtrack)."""


class UnreadableMediaError(MediaError):
    """The file is missing, is not a media file, or FFmpeg fails to read it."""


@dataclass(frozen=True)
class MediaInfo:
    """Stream summary of one media file. Durations in seconds, rates in Hz / frames per second.

    ``video_frames`` is the container's frame count when it stores one (mp4 does), else an estimate
    ``round(duration * fps)``. Audio fields are ``None`` when ``has_audio`` is false, video fields when
    ``has_video`` is false.
    """

    path: Path
    duration_s: float
    has_audio: bool
    has_video: bool
    audio_sample_rate: int | None = None
    audio_channels: int | None = None
    video_width: int | None = None
    video_height: int | None = None
    video_fps: float | None = None
    video_frames: int | None = None
    audio_codec: str | None = None
    video_codec: str | None = None


def _open_input(path: str | os.PathLike) -> Any:
    """``av.open(path)`` with FFmpeg's failures turned into :class:`UnreadableMediaError`."""
    path = Path(path)
    if not path.exists():
        raise UnreadableMediaError(path, "file not found")
    if path.is_dir():
        raise UnreadableMediaError(path, "is a directory, expected a media file")
    try:
        return av.open(str(path))
    except av.error.FFmpegError as e:
        raise UnreadableMediaError(path, f"not a readable media file ({e.strerror or e})") from e


def _first_video_stream(container: Any) -> Any | None:
    # An mp4/m4a's cover art is a one-frame "video" stream flagged attached_pic; it is not the video.
    for stream in container.streams.video:
        if not stream.disposition & av.stream.Disposition.attached_pic:
            return stream
    return None


def _first_audio_stream(container: Any) -> Any | None:
    return container.streams.audio[0] if container.streams.audio else None


def _stream_seconds(value: int | None, time_base: Fraction | None) -> float | None:
    if value is None or time_base is None:
        return None
    return float(value * time_base)


def _container_origin_s(container: Any) -> float:
    """Presentation time (s) that counts as t=0: the container's earliest stream start.

    Audio and video times are both measured from this origin, so they stay in sync for files whose
    streams do not start at 0 (MPEG-TS, trimmed recordings).
    """
    start = container.start_time
    return start / _AV_TIME_BASE if start is not None else 0.0


def _stream_end_s(container: Any, stream: Any) -> float | None:
    """End time (s, from the container origin) of ``stream`` as the container declares it."""
    duration = _stream_seconds(stream.duration, stream.time_base)
    if duration is not None and duration > 0:
        start = _stream_seconds(stream.start_time, stream.time_base) or 0.0
        return start + duration - _container_origin_s(container)
    if container.duration is not None and container.duration > 0:
        return container.duration / _AV_TIME_BASE
    return None


def _info_from_container(path: Path, container: Any) -> MediaInfo:
    audio = _first_audio_stream(container)
    video = _first_video_stream(container)
    if audio is None and video is None:
        raise UnreadableMediaError(path, "no audio or video stream (expected a media file)")

    ends = [end for s in (audio, video) if s is not None and (end := _stream_end_s(container, s)) is not None]
    if container.duration is not None and container.duration > 0:
        duration_s = container.duration / _AV_TIME_BASE
    else:
        duration_s = max(ends, default=0.0)

    fields: dict[str, Any] = {}
    if audio is not None:
        ctx = audio.codec_context
        fields.update(audio_sample_rate=int(ctx.sample_rate), audio_channels=int(ctx.channels), audio_codec=ctx.name)
    if video is not None:
        ctx = video.codec_context
        rate = video.average_rate or video.guessed_rate or video.base_rate
        fps = float(rate) if rate else None
        frames = int(video.frames) if video.frames else None
        if frames is None and fps is not None:
            video_duration = _stream_seconds(video.duration, video.time_base) or duration_s
            frames = round(video_duration * fps)
        fields.update(
            video_width=int(ctx.width),
            video_height=int(ctx.height),
            video_fps=fps,
            video_frames=frames,
            video_codec=ctx.name,
        )
    return MediaInfo(
        path=path, duration_s=duration_s, has_audio=audio is not None, has_video=video is not None, **fields
    )


def probe(path: str | os.PathLike) -> MediaInfo:
    """Read the stream layout of ``path`` from its header (no decoding; ~1 ms for an mp4).

    Raises:
        UnreadableMediaError: the file is missing, not a media file, or has neither audio nor video.
    """
    path = Path(path)
    container = _open_input(path)
    try:
        return _info_from_container(path, container)
    finally:
        container.close()


def require_streams(path: str | os.PathLike, *, audio: bool = False, video: bool = False) -> MediaInfo:
    """:func:`probe` ``path`` and check it has the streams a sample needs.

    Raises:
        MissingStreamError: naming the missing stream(s), e.g. ``clip.mp4: no audio stream (...)``.
        UnreadableMediaError: as :func:`probe`.
    """
    info = probe(path)
    checks = (("audio", "the soundtrack", audio, info.has_audio), ("video", "the picture", video, info.has_video))
    missing = [(name, what) for name, what, wanted, present in checks if wanted and not present]
    if missing:
        names = " and no ".join(name for name, _ in missing)
        needs = " and ".join(what for _, what in missing)
        raise MissingStreamError(info.path, f"no {names} stream (this sample needs {needs})")
    return info


@contextlib.contextmanager
def _atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """:func:`verl_avconfuse.io.atomic_path` for media outputs, with the path checked as a :class:`MediaError`.

    The temp name keeps ``path``'s extension because FFmpeg and libsndfile pick the container format
    from it; an interrupted write leaves neither a truncated ``path`` nor a stray temp file.
    """
    path = Path(path)
    if path.is_dir():
        raise MediaError(path, "output path is a directory, expected a file name")
    if not path.parent.is_dir():
        raise MediaError(path, f"output folder {path.parent} does not exist")
    with atomic_path(path, suffix=path.suffix) as tmp:
        yield tmp
