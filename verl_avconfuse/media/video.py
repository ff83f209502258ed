"""Sample RGB frames from a video uniformly in time, sized the way Qwen2-VL / Qwen2.5-Omni's vision tower wants.

Sampling rule: target times ``t_k = start + k / fps`` for every ``t_k < end``; each target takes the
decoded frame whose presentation time is nearest (ties go to the earlier frame). With ``max_frames``
the targets are subsampled uniformly (``linspace`` over their indices) first.

Decoding reads the stream's packet index first (demux only, ~17 ms for 60 s of 60 fps h264), so the
frames to keep are known before any decoding. Two savings follow, neither changing a pixel:

* a packet whose frame is not kept is decoded with ``skip_frame=NONREF``: the decoder drops it if no
  other frame references it (non-reference B-frames, ~half of an x264 stream);
* when the next kept frame lies past a keyframe still ahead, the demuxer seeks to that keyframe
  instead of decoding the frames in between (low ``fps``, ``start_s`` late in the clip).

``strategy="sequential"`` decodes every frame instead; it is the reference the fast path is tested
against, and the fallback when a container gives packets without timestamps.
"""

from __future__ import annotations

import bisect
import itertools
import math
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import av
import numpy as np

from verl_avconfuse.media.probe import (
    MediaError,
    MissingStreamError,
    UnreadableMediaError,
    _container_origin_s,
    _first_video_stream,
    _open_input,
    _stream_end_s,
)

__all__ = ["VideoFrameInfo", "load_video_frames", "smart_resize", "to_video_metadata", "video_metadata_dict"]

# Qwen2-VL's resize factor: ViT patch 14 x spatial merge 2. Frame sides must be multiples of it.
QWEN_SIZE_FACTOR = 28
# Qwen2-VL's smart_resize refuses frames more elongated than this.
_MAX_ASPECT_RATIO = 200
# swscale's bicubic is the filter Qwen's own preprocessing (torchvision, antialias) approximates best.
_RESIZE_INTERPOLATION = "BICUBIC"
# Times closer than this (s) count as equal: k / fps and pts * time_base are both rounded floats.
_TIME_EPS = 1e-6


@dataclass(frozen=True)
class VideoFrameInfo:
    """What :func:`load_video_frames` returned and where it came from.

    ``timestamps`` are the presentation times (s, from the start of the file) of the returned frames,
    ``frame_indices`` their positions among all frames of the stream in presentation order. ``fps`` is
    the effective sampling rate ``requested_fps * T / n_targets`` (lower than requested when
    ``max_frames`` capped the count). ``width``/``height`` are the returned frame size, ``native_*``
    the stream's own.
    """

    path: Path
    timestamps: tuple[float, ...]
    frame_indices: tuple[int, ...]
    fps: float
    requested_fps: float
    start_s: float
    end_s: float
    width: int
    height: int
    native_width: int
    native_height: int
    native_fps: float
    native_num_frames: int
    duration_s: float

    @property
    def num_frames(self) -> int:
        return len(self.timestamps)


def smart_resize(
    height: int,
    width: int,
    *,
    min_pixels: int | None = None,
    max_pixels: int | None = None,
    size_factor: int = QWEN_SIZE_FACTOR,
) -> tuple[int, int]:
    """Qwen2-VL's ``smart_resize``: the (height, width) nearest the input with both sides multiples of
    ``size_factor``, ``height * width`` within ``[min_pixels, max_pixels]`` and the aspect ratio kept.

    Rule (Qwen2-VL image processor): round each side to the nearest multiple; if the area is over
    ``max_pixels`` scale both sides by ``beta = sqrt(h*w / max_pixels)`` and round *down*; if under
    ``min_pixels`` scale by ``sqrt(min_pixels / (h*w))`` and round *up*. Because the processor applies
    the same rule, frames already resized here pass through it unchanged. (Where the original would
    return a 0 side, a side under ``size_factor / 2`` with no ``min_pixels``, this returns ``size_factor``.)
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"frame size must be positive, got {height}x{width}")
    if size_factor <= 0:
        raise ValueError(f"size_factor must be positive, got {size_factor}")
    if min_pixels is not None and max_pixels is not None and min_pixels > max_pixels:
        raise ValueError(f"min_pixels={min_pixels} must be <= max_pixels={max_pixels}")
    if max(height, width) / min(height, width) > _MAX_ASPECT_RATIO:
        raise ValueError(f"aspect ratio of {height}x{width} exceeds Qwen2-VL's limit of {_MAX_ASPECT_RATIO}")
    f = size_factor
    h_bar = round(height / f) * f
    w_bar = round(width / f) * f
    if max_pixels is not None and h_bar * w_bar > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h_bar = max(f, math.floor(height / beta / f) * f)
        w_bar = max(f, math.floor(width / beta / f) * f)
    elif min_pixels is not None and h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / f) * f
        w_bar = math.ceil(width * beta / f) * f
    # Without a min_pixels to lift it, a side under f/2 rounds to 0; never return an empty frame.
    return max(f, h_bar), max(f, w_bar)


def _target_times(start: float, end: float, fps: float, max_frames: int | None) -> tuple[np.ndarray, float]:
    """Target times ``start + k/fps < end`` (then subsampled to ``max_frames``) and the effective fps."""
    n = max(1, math.ceil((end - start) * fps - _TIME_EPS))
    times = start + np.arange(n, dtype=np.float64) / fps
    if max_frames is not None and n > max_frames:
        keep = np.round(np.linspace(0, n - 1, max_frames)).astype(np.int64)
        times = times[keep]
    return times, fps * len(times) / n


def _nearest(frame_times: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Index of the frame nearest each target (``frame_times`` ascending); ties go to the earlier frame."""
    right = np.clip(np.searchsorted(frame_times, targets), 0, len(frame_times) - 1)
    left = np.clip(right - 1, 0, len(frame_times) - 1)
    take_left = (targets - frame_times[left]) <= (frame_times[right] - targets) + _TIME_EPS
    return np.where(take_left, left, right)


@dataclass
class _PacketIndex:
    """Video packets in decode order (one frame each, as in mp4/mkv/webm)."""

    pts: list[int]
    keyframe_positions: list[int]
    end_pts: int

    @property
    def sorted_pts(self) -> np.ndarray:
        return np.sort(np.asarray(self.pts, dtype=np.int64))


def _index_packets(container: Any, stream: Any) -> _PacketIndex | None:
    """Demux (no decode) the video stream; ``None`` if packets lack or repeat timestamps."""
    pts: list[int] = []
    keyframes: list[int] = []
    end_pts = None
    for packet in container.demux(stream):
        if packet.size == 0:
            continue  # the demuxer's end-of-stream marker
        if packet.pts is None:
            return None
        if packet.is_keyframe:
            keyframes.append(len(pts))
        pts.append(packet.pts)
        packet_end = packet.pts + (packet.duration or 0)
        end_pts = packet_end if end_pts is None else max(end_pts, packet_end)
    if not pts or not keyframes or len(set(pts)) != len(pts):
        return None
    return _PacketIndex(pts=pts, keyframe_positions=keyframes, end_pts=end_pts)


class _FrameSink:
    """Converts kept frames to RGB into the preallocated output (one frame may fill several slots)."""

    def __init__(self, n: int, height: int, width: int, resize: bool) -> None:
        self.out = np.empty((n, height, width, 3), dtype=np.uint8)
        self.height, self.width, self.resize = height, width, resize

    def put(self, frame: Any, slots: list[int]) -> None:
        if self.resize:
            rgb = frame.to_ndarray(
                format="rgb24", width=self.width, height=self.height, interpolation=_RESIZE_INTERPOLATION
            )
        else:
            rgb = frame.to_ndarray(format="rgb24")
        for slot in slots:
            self.out[slot] = rgb


def _decode_indexed(
    container: Any, stream: Any, index: _PacketIndex, wanted: dict[int, list[int]], sink: _FrameSink
) -> bool:
    """Decode just what the kept frames (``wanted``: pts -> output slots) need. False if one never appeared."""
    ctx = stream.codec_context
    position = {p: i for i, p in enumerate(index.pts)}
    pending = set(wanted)
    skip_mode = ctx.skip_frame
    next_position = 0
    packets = container.demux(stream)

    for target in sorted(wanted, key=position.__getitem__):
        if target not in pending:
            continue
        target_position = position[target]
        preceding = bisect.bisect_right(index.keyframe_positions, target_position)
        # No keyframe before the target (a stream cut mid-GOP): decode on from where we are.
        key = index.keyframe_positions[preceding - 1] if preceding else 0
        if key > next_position:
            # A keyframe is ahead and no kept frame lies before it: jump there. Seeking backward to
            # the keyframe's pts lands on it (mov compares pts; a dts-keyed index, dts <= pts, too).
            container.seek(index.pts[key], stream=stream, backward=True)
            packets = container.demux(stream)
            landed = next(packets, None)
            if landed is None or position.get(landed.pts, key + 1) > key:
                return False  # overshot: frames after it would lack their references
            packets = itertools.chain([landed], packets)
        while target in pending:
            packet = next(packets, None)
            if packet is None:
                return False
            if packet.size:
                next_position = position.get(packet.pts, next_position) + 1
                # Reference frames must still decode (later frames predict from them); a frame nothing
                # references and we do not keep is dropped by the decoder without being reconstructed.
                mode = "DEFAULT" if packet.pts in pending else "NONREF"
                if mode != skip_mode:
                    ctx.skip_frame = skip_mode = mode
            # The demuxer's final empty packet drains the decoder's reorder buffer.
            for frame in packet.decode():
                if frame.pts in pending:
                    sink.put(frame, wanted[frame.pts])
                    pending.discard(frame.pts)
            if packet.size == 0 and target in pending:
                return False
    return True


def _decode_sequential(
    path: Path, container: Any, stream: Any, targets: np.ndarray, origin: float, sink: _FrameSink
) -> tuple[list[float], list[int]]:
    """Decode every frame, giving each target the nearest frame. Returns (times, frame indices) per slot."""
    time_base = stream.time_base
    times: list[float] = []
    indices: list[int] = []
    previous: tuple[Any, float, int] | None = None
    j = 0
    for i, frame in enumerate(container.decode(stream)):
        t = float(frame.pts * time_base) - origin if frame.pts is not None else (previous[1] if previous else 0.0)
        slots: list[int] = []
        previous_slots: list[int] = []
        while j < len(targets) and t >= targets[j] - _TIME_EPS:
            if previous is not None and targets[j] - previous[1] <= t - targets[j] + _TIME_EPS:
                previous_slots.append(j)
            else:
                slots.append(j)
            j += 1
        if previous_slots:
            sink.put(previous[0], previous_slots)
            times += [previous[1]] * len(previous_slots)
            indices += [previous[2]] * len(previous_slots)
        if slots:
            sink.put(frame, slots)
            times += [t] * len(slots)
            indices += [i] * len(slots)
        previous = (frame, t, i)
        if j == len(targets):
            break
    if previous is None:
        raise UnreadableMediaError(path, "video stream decoded to no frames")
    if j < len(targets):  # targets past the last frame take the last frame
        rest = list(range(j, len(targets)))
        sink.put(previous[0], rest)
        times += [previous[1]] * len(rest)
        indices += [previous[2]] * len(rest)
    return times, indices


def load_video_frames(
    path: str | os.PathLike,
    fps: float = 2.0,
    max_frames: int | None = None,
    min_pixels: int | None = None,
    max_pixels: int | None = None,
    start_s: float | None = None,
    end_s: float | None = None,
    *,
    size_factor: int = QWEN_SIZE_FACTOR,
    strategy: Literal["auto", "sequential"] = "auto",
) -> tuple[np.ndarray, VideoFrameInfo]:
    """Frames of ``path`` sampled at ``fps`` (nearest decoded frame to each ``start + k/fps``).

    Args:
        path: video file (its first non-cover-art video stream is read).
        fps: sampling rate in frames per second of video time.
        max_frames: cap on the number of frames; extra targets are dropped uniformly.
        min_pixels, max_pixels: when either is given, frames are resized by :func:`smart_resize`
            (sides multiples of ``size_factor``, aspect ratio kept); otherwise native size.
        start_s, end_s: sampled range in seconds (``end_s`` past the end is clipped to the end).
        size_factor: side multiple for resizing (Qwen2-VL: patch 14 x merge 2 = 28).
        strategy: ``"auto"`` (skip/seek, bit-identical to) ``"sequential"`` (decode every frame).

    Returns:
        ``(frames, info)``: uint8 RGB array ``(T, H, W, 3)`` and :class:`VideoFrameInfo`. When ``fps``
        exceeds the native rate, neighbouring targets share a frame and it repeats.

    Raises:
        MissingStreamError: the file has no video stream.
        UnreadableMediaError: missing or undecodable file.
        MediaError: invalid arguments or an empty time range.
    """
    path = Path(path)
    if not (isinstance(fps, (int, float)) and math.isfinite(fps) and fps > 0):
        raise MediaError(path, f"fps={fps!r} must be a positive number of frames per second")
    if max_frames is not None and max_frames < 1:
        raise MediaError(path, f"max_frames={max_frames!r} must be >= 1")
    start = 0.0 if start_s is None else float(start_s)
    if start < 0:
        raise MediaError(path, f"start_s={start_s!r} must be >= 0 seconds")
    if end_s is not None and not end_s > start:
        raise MediaError(path, f"end_s={end_s!r} must be greater than start_s={start}")
    if strategy not in ("auto", "sequential"):
        raise MediaError(path, f"strategy={strategy!r} must be 'auto' or 'sequential'")

    container = _open_input(path)
    try:
        stream = _first_video_stream(container)
        if stream is None:
            raise MissingStreamError(path, "no video stream (this sample needs the picture)")
        origin = _container_origin_s(container)
        time_base: Fraction = stream.time_base
        native_w, native_h = int(stream.codec_context.width), int(stream.codec_context.height)
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        index = _index_packets(container, stream) if strategy == "auto" else None

        if index is not None:
            frame_pts = index.sorted_pts
            frame_times = frame_pts.astype(np.float64) * float(time_base) - origin
            video_end = float(index.end_pts * time_base) - origin
            native_frames = len(frame_pts)
        else:
            declared_end = _stream_end_s(container, stream)
            if declared_end is None:
                raise UnreadableMediaError(path, "video stream declares no duration and its packets have no timestamps")
            video_end = declared_end
            native_frames = int(stream.frames) or round(video_end * float(rate or 0))
        native_fps = float(rate) if rate else native_frames / max(video_end, _TIME_EPS)

        end = video_end if end_s is None else min(float(end_s), video_end)
        if start >= end:
            raise MediaError(path, f"start_s={start} is at or past the end of the video ({video_end:.3f} s)")
        targets, effective_fps = _target_times(start, end, float(fps), max_frames)

        resize = min_pixels is not None or max_pixels is not None
        out_h, out_w = native_h, native_w
        if resize:
            out_h, out_w = smart_resize(
                native_h, native_w, min_pixels=min_pixels, max_pixels=max_pixels, size_factor=size_factor
            )
        sink = _FrameSink(len(targets), out_h, out_w, resize)

        try:
            chosen = None
            if index is not None:
                chosen = _nearest(frame_times, targets)
                wanted: dict[int, list[int]] = {}
                for slot, frame_index in enumerate(chosen):
                    wanted.setdefault(int(frame_pts[frame_index]), []).append(slot)
                container.seek(0, stream=stream, backward=True)
                if not _decode_indexed(container, stream, index, wanted, sink):
                    chosen = None  # a kept frame never came out of the decoder: redo the slow, sure way
                    container.close()
                    container = _open_input(path)
                    stream = _first_video_stream(container)
            if chosen is not None:
                times = [float(frame_times[i]) for i in chosen]
                indices = [int(i) for i in chosen]
            else:
                times, indices = _decode_sequential(path, container, stream, targets, origin, sink)
        except av.error.FFmpegError as e:
            raise UnreadableMediaError(path, f"video stream cannot be decoded ({e.strerror or e})") from e
    finally:
        container.close()

    info = VideoFrameInfo(
        path=path,
        timestamps=tuple(times),
        frame_indices=tuple(indices),
        fps=effective_fps,
        requested_fps=float(fps),
        start_s=start,
        end_s=end,
        width=out_w,
        height=out_h,
        native_width=native_w,
        native_height=native_h,
        native_fps=native_fps,
        native_num_frames=native_frames,
        duration_s=video_end,
    )
    return sink.out, info


def video_metadata_dict(info: VideoFrameInfo) -> dict[str, Any]:
    """``info`` as the fields of ``transformers.video_utils.VideoMetadata`` (5.10.4).

    As transformers' own readers fill it: ``total_num_frames``/``fps``/``width``/``height``/``duration``
    describe the source video, ``frames_indices`` the sampled frames, so ``VideoMetadata.timestamps``
    (``index / fps``) gives each returned frame's time.
    """
    return {
        "total_num_frames": info.native_num_frames,
        "fps": info.native_fps,
        "width": info.native_width,
        "height": info.native_height,
        "duration": info.duration_s,
        "video_backend": "pyav",
        "frames_indices": list(info.frame_indices),
    }


def to_video_metadata(info: VideoFrameInfo) -> Any:
    """A ``transformers.video_utils.VideoMetadata`` for ``info`` (pass as ``video_metadata=`` to a video processor)."""
    from transformers.video_utils import VideoMetadata

    return VideoMetadata(**video_metadata_dict(info))
