"""Give a video a new soundtrack without touching its picture (AV-ConfuseBench's "modified" clips).

:func:`replace_audio` copies the source video stream packet by packet (no decode, no re-encode: the
video bytes are identical, checkable with :func:`video_packets_digest`) and encodes the new audio.
:func:`reencode_with_audio` re-encodes the video too; it exists for the benchmark that shows why the
copy is the default (60 s 480x360 60 fps clip: see ``benchmarks/bench_media_io.py``).

Every output is written to a temp file beside ``out_path`` and moved into place at the end, so a
failed or interrupted write leaves no partial file. Streams other than the first video stream of the
source (its old soundtrack, subtitles, data) are not copied.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from verl_avconfuse.media.audio import load_audio
from verl_avconfuse.media.probe import (
    MediaError,
    MediaInfo,
    MissingStreamError,
    _atomic_output,
    _first_video_stream,
    _open_input,
    _stream_end_s,
    probe,
)

__all__ = ["reencode_with_audio", "replace_audio", "video_packets_digest"]

_CHANNEL_LAYOUTS = {1: "mono", 2: "stereo"}
# FFmpeg's native AAC encoder defaults to the "twoloop" coder; "fast" encoded 60 s of 16 kHz mono in
# about half the time (0.064 s vs 0.132 s) at 1.7 dB lower SNR (31.2 vs 32.9 dB at the default rate),
# a difference no 16 kHz speech/sound model hears. Callers wanting the slow coder pass audio_options.
_DEFAULT_ENCODER_OPTIONS = {"aac": {"aac_coder": "fast"}}
# Re-encode settings for the comparison benchmark: libx264's CRF 23 is its default quality.
_REENCODE_CRF = 23
_REENCODE_PRESET = "veryfast"


def _as_samples(audio: np.ndarray | str | os.PathLike, sr: int | None, out_path: Path) -> tuple[np.ndarray, int]:
    """The new soundtrack as float32 ``(n, channels)`` and its sample rate."""
    if sr is not None and (int(sr) != sr or sr <= 0):
        raise MediaError(out_path, f"sr={sr!r} must be a positive integer sample rate in Hz")
    if isinstance(audio, (str, os.PathLike)):
        samples = load_audio(audio, sr=sr, mono=False)
        rate = sr if sr is not None else probe(audio).audio_sample_rate
        if samples.shape[1] not in _CHANNEL_LAYOUTS:
            samples = samples.mean(axis=1, keepdims=True)  # surround sound: fold down to mono
        return samples, int(rate)
    samples = np.asarray(audio)
    if sr is None:
        raise MediaError(out_path, "sr (sample rate in Hz) is required when the audio is given as an array")
    if samples.ndim == 1:
        samples = samples[:, None]
    if samples.ndim != 2 or samples.shape[0] == 0:
        raise MediaError(out_path, f"audio must be a non-empty (n,) or (n, channels) array, got shape {samples.shape}")
    if samples.shape[1] not in _CHANNEL_LAYOUTS:
        raise MediaError(out_path, f"audio must have 1 or 2 channels as (n, channels), got shape {samples.shape}")
    if not np.issubdtype(samples.dtype, np.floating):
        raise MediaError(out_path, f"audio must be floating point in [-1, 1], got dtype {samples.dtype}")
    if not np.all(np.isfinite(samples)):
        raise MediaError(out_path, "audio contains NaN or inf")
    return np.clip(samples, -1.0, 1.0).astype(np.float32), int(sr)


def _fit_length(samples: np.ndarray, n: int) -> np.ndarray:
    """Trim or zero-pad ``(n_in, channels)`` to exactly ``n`` samples (silence after a short soundtrack)."""
    if len(samples) >= n:
        return samples[:n]
    return np.concatenate([samples, np.zeros((n - len(samples), samples.shape[1]), samples.dtype)])


def _encode_audio(
    container: Any,
    samples: np.ndarray,
    sr: int,
    codec: str,
    bitrate: int | None,
    options: dict[str, str] | None,
    out_path: Path,
) -> list[Any]:
    """Add an audio stream to ``container`` and encode ``samples`` ``(n, channels)`` into its packets,
    each bound to that stream and ready to mux.

    Encoding happens before anything is muxed because the container header needs the encoder's
    extradata (AAC's AudioSpecificConfig), which exists only once the encoder has opened.
    """
    layout = _CHANNEL_LAYOUTS[samples.shape[1]]
    if options is None:
        options = _DEFAULT_ENCODER_OPTIONS.get(codec, {})
    try:
        stream = container.add_stream(codec, rate=sr, layout=layout, options=dict(options))
    except (ValueError, av.error.FFmpegError) as e:
        raise MediaError(out_path, f"cannot add a {codec!r} audio stream to a {out_path.suffix} file ({e})") from e
    if bitrate is not None:
        stream.bit_rate = int(bitrate)
    # One planar frame; PyAV converts it to the encoder's sample format and cuts it into frame_size chunks.
    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples.T), format="fltp", layout=layout)
    frame.sample_rate = sr
    frame.pts = 0
    frame.time_base = Fraction(1, sr)
    try:
        packets = list(stream.encode(frame)) + list(stream.encode(None))
    except av.error.FFmpegError as e:
        raise MediaError(out_path, f"{codec!r} encoder failed ({e})") from e
    for packet in packets:
        packet.stream = stream
    return packets


def _packet_time(packet: Any) -> float:
    ts = packet.dts if packet.dts is not None else packet.pts
    return float(ts * packet.time_base) if ts is not None else 0.0


def _mux_interleaved(container: Any, video_packets: Iterable[Any], audio_packets: list[Any], out_path: Path) -> None:
    """Mux both streams in decode-time order, so players and demuxers never buffer far ahead."""
    audio_iter = iter(audio_packets)
    pending_audio = next(audio_iter, None)
    try:
        for packet in video_packets:
            t = _packet_time(packet)
            while pending_audio is not None and _packet_time(pending_audio) <= t:
                container.mux(pending_audio)
                pending_audio = next(audio_iter, None)
            container.mux(packet)
        while pending_audio is not None:
            container.mux(pending_audio)
            pending_audio = next(audio_iter, None)
    except av.error.FFmpegError as e:
        raise MediaError(out_path, f"writing the {out_path.suffix} container failed ({e})") from e


def _open_video_source(video_path: str | os.PathLike) -> tuple[Any, Any, float]:
    """(container, first video stream, video duration in s); MissingStreamError without a video stream."""
    container = _open_input(video_path)
    stream = _first_video_stream(container)
    if stream is None:
        container.close()
        raise MissingStreamError(Path(video_path), "no video stream (the soundtrack needs a picture to go with)")
    duration = _stream_end_s(container, stream)
    if duration is None or duration <= 0:
        container.close()
        raise MediaError(Path(video_path), "video stream declares no duration (cannot fit the soundtrack to it)")
    return container, stream, duration


def _open_output(tmp: Path, out_path: Path) -> Any:
    """``av.open(tmp, "w")``; the container format comes from the extension ``tmp`` shares with ``out_path``."""
    try:
        return av.open(str(tmp), "w")
    except (ValueError, av.error.FFmpegError) as e:
        raise MediaError(out_path, f"no container format for extension {out_path.suffix!r} ({e})") from e


def replace_audio(
    video_path: str | os.PathLike,
    audio: np.ndarray | str | os.PathLike,
    out_path: str | os.PathLike,
    sr: int | None = None,
    audio_codec: str = "aac",
    audio_bitrate: int | None = None,
    *,
    audio_options: dict[str, str] | None = None,
) -> MediaInfo:
    """Write ``out_path`` = the video stream of ``video_path`` (copied byte for byte) + ``audio``.

    Args:
        video_path: source video; its own soundtrack (if any) is dropped.
        audio: float samples in [-1, 1], ``(n,)`` or ``(n, channels)`` at ``sr`` Hz, or a path to an
            audio/video file whose soundtrack is used (resampled to ``sr`` if given, else its own rate).
        out_path: output file; its extension picks the container (mp4, mkv, mov, ...).
        sr: sample rate of ``audio`` in Hz (required for arrays); the encoded stream keeps it.
        audio_codec: FFmpeg encoder: ``aac`` (mp4's usual), ``pcm_s16le`` (mkv/mov/mp4), ``flac``, ...
        audio_bitrate: bits per second for lossy codecs; ``None`` is the encoder's default.
        audio_options: encoder options (default for aac: ``{"aac_coder": "fast"}``).

    The soundtrack is trimmed or zero-padded to the video stream's duration, ``round(duration * sr)``
    samples. Returns :func:`probe` of the written file.
    """
    out_path = Path(out_path)
    samples, rate = _as_samples(audio, sr, out_path)
    source, video_in, duration = _open_video_source(video_path)
    try:
        samples = _fit_length(samples, round(duration * rate))
        with _atomic_output(out_path) as tmp, _open_output(tmp, out_path) as out:
            try:
                video_out = out.add_stream_from_template(video_in)
            except ValueError as e:
                raise MediaError(out_path, f"cannot copy the {video_in.codec_context.name} video into it ({e})") from e
            audio_packets = _encode_audio(out, samples, rate, audio_codec, audio_bitrate, audio_options, out_path)

            def copied_video() -> Iterator[Any]:
                for packet in source.demux(video_in):
                    if packet.size == 0:
                        continue  # the demuxer's end-of-stream marker carries no data
                    packet.stream = video_out
                    yield packet

            _mux_interleaved(out, copied_video(), audio_packets, out_path)
    finally:
        source.close()
    return probe(out_path)


def _pick_video_encoder() -> str:
    return "libx264" if "libx264" in av.codecs_available else "mpeg4"


def reencode_with_audio(
    video_path: str | os.PathLike,
    audio: np.ndarray | str | os.PathLike,
    out_path: str | os.PathLike,
    sr: int | None = None,
    audio_codec: str = "aac",
    audio_bitrate: int | None = None,
    *,
    video_codec: str | None = None,
    crf: int = _REENCODE_CRF,
    preset: str = _REENCODE_PRESET,
    audio_options: dict[str, str] | None = None,
) -> MediaInfo:
    """:func:`replace_audio`, but decoding and re-encoding the video (libx264, else mpeg4).

    Only the stream-copy-vs-re-encode benchmark uses it: re-encoding is lossy and an order of magnitude
    slower. ``crf``/``preset`` apply to libx264.
    """
    out_path = Path(out_path)
    samples, rate = _as_samples(audio, sr, out_path)
    codec = video_codec or _pick_video_encoder()
    source, video_in, duration = _open_video_source(video_path)
    try:
        samples = _fit_length(samples, round(duration * rate))
        ctx_in = video_in.codec_context
        with _atomic_output(out_path) as tmp, _open_output(tmp, out_path) as out:
            options = {"crf": str(crf), "preset": preset} if codec == "libx264" else {}
            video_out = out.add_stream(codec, rate=video_in.average_rate or video_in.guessed_rate, options=options)
            video_out.width, video_out.height, video_out.pix_fmt = ctx_in.width, ctx_in.height, "yuv420p"
            video_out.time_base = video_in.time_base
            audio_packets = _encode_audio(out, samples, rate, audio_codec, audio_bitrate, audio_options, out_path)

            def encoded_video() -> Iterator[Any]:
                for frame in source.decode(video_in):
                    frame.pict_type = av.video.frame.PictureType.NONE  # let the encoder choose
                    yield from video_out.encode(frame)
                yield from video_out.encode(None)

            _mux_interleaved(out, encoded_video(), audio_packets, out_path)
    finally:
        source.close()
    return probe(out_path)


def video_packets_digest(path: str | os.PathLike) -> str:
    """sha256 (hex) over the first video stream's packets in file order, each as 8-byte length + bytes.

    Equal digests mean the compressed video is byte-identical (the length prefix keeps two different
    packet splits of the same bytes apart). Raises MissingStreamError for a file without video.
    """
    container = _open_input(path)
    try:
        stream = _first_video_stream(container)
        if stream is None:
            raise MissingStreamError(Path(path), "no video stream (nothing to digest)")
        digest = hashlib.sha256()
        for packet in container.demux(stream):
            if packet.size == 0:
                continue
            data = bytes(packet)
            digest.update(len(data).to_bytes(8, "little"))
            digest.update(data)
        return digest.hexdigest()
    finally:
        container.close()
