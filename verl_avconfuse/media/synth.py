"""Deterministic synthetic media for tests: tones, noise, wav files and small mp4 clips.

Same arguments give the same samples and the same pixels every run (the picture is computed, the
noise comes from ``numpy.random.default_rng(seed)``; x264 runs single-threaded, without mbtree, so
the bytes do not vary between runs either). A 2 s 64x48 clip with a soundtrack takes ~30 ms to write.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from verl_avconfuse.media.audio import save_wav
from verl_avconfuse.media.mux import _as_samples, _encode_audio, _fit_length, _mux_interleaved, _open_output
from verl_avconfuse.media.probe import MediaError, _atomic_output

__all__ = ["noise", "tone", "write_synthetic_video", "write_wav"]

# A keyframe every second of video: short enough that seeking in tests has keyframes to land on.
_SYNTH_GOP_S = 1.0


def _n_samples(duration_s: float, sr: int) -> int:
    if not duration_s > 0 or sr <= 0:
        raise ValueError(f"duration_s={duration_s} and sr={sr} must be positive")
    return round(duration_s * sr)


def tone(freq_hz: float, duration_s: float, sr: int = 16000, amplitude: float = 0.3, phase: float = 0.0) -> np.ndarray:
    """``amplitude * sin(2 pi f t + phase)`` at ``t = i / sr``: float32 ``(round(duration_s * sr),)``."""
    if not 0 < freq_hz < sr / 2:
        raise ValueError(f"freq_hz={freq_hz} must be between 0 and the Nyquist frequency {sr / 2} Hz")
    t = np.arange(_n_samples(duration_s, sr), dtype=np.float64) / sr
    return (amplitude * np.sin(2 * np.pi * freq_hz * t + phase)).astype(np.float32)


def noise(duration_s: float, sr: int = 16000, amplitude: float = 0.1, seed: int = 0) -> np.ndarray:
    """White Gaussian noise with standard deviation ``amplitude``, clipped to [-1, 1]: float32 ``(n,)``."""
    rng = np.random.default_rng(seed)
    samples = amplitude * rng.standard_normal(_n_samples(duration_s, sr))
    return np.clip(samples, -1.0, 1.0).astype(np.float32)


def write_wav(path: str | os.PathLike, samples: np.ndarray, sr: int = 16000) -> Path:
    """16-bit PCM wav of float ``samples`` ``(n,)`` or ``(n, channels)``, written atomically."""
    return save_wav(path, samples, sr)


def _synthetic_frame(k: int, fps: float, width: int, height: int, colours: np.ndarray, phase: float) -> np.ndarray:
    """Frame ``k`` (uint8 RGB ``(height, width, 3)``): a drifting gradient, a square sweeping left to
    right once per clip-second and a disc circling the centre, so consecutive frames all differ."""
    t = k / fps
    ys, xs = np.mgrid[0:height, 0:width]
    frame = np.empty((height, width, 3), np.float32)
    frame[..., 0] = 40 + 60 * xs / max(width - 1, 1)
    frame[..., 1] = 40 + 60 * ys / max(height - 1, 1)
    frame[..., 2] = 60 + 40 * np.sin(2 * np.pi * (t * 0.5 + phase))
    side = max(4, min(width, height) // 4)
    x0 = int((t % 1.0) * (width - side))
    y0 = (height - side) // 3
    frame[y0 : y0 + side, x0 : x0 + side] = colours[0]
    radius = max(3, min(width, height) // 6)
    cx = width / 2 + (width / 4) * np.cos(2 * np.pi * (t / 2 + phase))
    cy = height / 2 + (height / 4) * np.sin(2 * np.pi * (t / 2 + phase))
    frame[(xs - cx) ** 2 + (ys - cy) ** 2 <= radius**2] = colours[1]
    return frame.astype(np.uint8)


def write_synthetic_video(
    path: str | os.PathLike,
    duration_s: float = 2.0,
    fps: int = 10,
    size: tuple[int, int] = (64, 48),
    audio: np.ndarray | None = None,
    sr: int = 16000,
    seed: int = 0,
    frame: Callable[[int], np.ndarray] | None = None,
) -> Path:
    """Write an mp4 (or mkv/mov, by extension) of moving coloured shapes, with an optional soundtrack.

    Args:
        path: output file, written atomically.
        duration_s: length in seconds; the clip has ``round(duration_s * fps)`` frames.
        fps: frame rate (integer frames per second).
        size: ``(width, height)`` in pixels, both even (yuv420p chroma is subsampled 2x).
        audio: float samples in [-1, 1], ``(n,)`` or ``(n, channels)`` at ``sr``; encoded as AAC after
            trimming/zero-padding to the video's duration. ``None`` writes a video-only file.
        sr: sample rate of ``audio`` in Hz.
        seed: picks the shapes' colours and motion phase.
        frame: ``frame(k)`` draws frame ``k`` (uint8 RGB ``(height, width, 3)``) instead of the moving shapes.

    Video is h264 (libx264, B-frames, keyframe every second) when PyAV has it, else mpeg4.
    """
    path = Path(path)
    width, height = size
    if width <= 0 or height <= 0 or width % 2 or height % 2:
        raise MediaError(path, f"size={size} must be (width, height) with both sides positive and even")
    if int(fps) != fps or fps <= 0:
        raise MediaError(path, f"fps={fps!r} must be a positive integer")
    n_frames = round(duration_s * fps)
    if n_frames < 1:
        raise MediaError(path, f"duration_s={duration_s} at fps={fps} gives no frames")
    fps = int(fps)
    rng = np.random.default_rng(seed)
    colours = rng.integers(120, 256, size=(2, 3)).astype(np.float32)
    phase = float(rng.random())
    samples = None
    if audio is not None:
        samples, sr = _as_samples(audio, sr, path)
        samples = _fit_length(samples, round(n_frames / fps * sr))

    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    with _atomic_output(path) as tmp, _open_output(tmp, path) as out:
        # mbtree=0: with x264's macroblock-tree rate control on, identical input gave different bytes in
        # ~1 run of 10 (whenever other encoders had run first in the process; gone with asm=0, so a SIMD
        # path reads memory it did not write). Without it 300+ runs at 5 sizes gave one output each.
        options = {
            "preset": "veryfast",
            "g": str(max(1, round(_SYNTH_GOP_S * fps))),
            "bf": "2",
            "x264-params": "mbtree=0",
        }
        video = out.add_stream(codec, rate=fps, options=options if codec == "libx264" else {})
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        frame_time_base = Fraction(1, fps)
        video.time_base = frame_time_base
        video.codec_context.thread_count = 1
        audio_packets: list = []
        if samples is not None:
            audio_packets = _encode_audio(out, samples, sr, "aac", None, None, path)

        def encoded_video():
            for k in range(n_frames):
                pixels = frame(k) if frame is not None else _synthetic_frame(k, fps, width, height, colours, phase)
                if pixels.shape != (height, width, 3) or pixels.dtype != np.uint8:
                    raise MediaError(
                        path, f"frame {k}: expected uint8 {(height, width, 3)}, got {pixels.dtype} {pixels.shape}"
                    )
                picture = av.VideoFrame.from_ndarray(pixels, "rgb24").reformat(format="yuv420p")
                picture.pts = k
                # Not video.time_base: the muxer replaces that (mp4: 1/10240) once the header is written.
                picture.time_base = frame_time_base
                yield from video.encode(picture)
            yield from video.encode(None)

        _mux_interleaved(out, encoded_video(), audio_packets, path)
    return path
