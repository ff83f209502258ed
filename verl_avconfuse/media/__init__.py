"""Media I/O for audio+video training data and benchmark building (PyAV, soundfile, soxr; no torch).

* :mod:`~verl_avconfuse.media.probe`: :func:`probe` / :func:`require_streams` and the :class:`MediaError` family.
* :mod:`~verl_avconfuse.media.audio`: :func:`load_audio` (16 kHz mono float32 by default), :func:`save_wav`.
* :mod:`~verl_avconfuse.media.video`: :func:`load_video_frames` (uniform-in-time sampling, Qwen2-VL sizing)
  and the ``VideoMetadata`` transformers' video processors take.
* :mod:`~verl_avconfuse.media.mux`: :func:`replace_audio` (video stream copied byte for byte, new soundtrack).
* :mod:`~verl_avconfuse.media.synth`: deterministic tones, noise and small clips for tests.
"""

from verl_avconfuse.media.audio import load_audio, save_wav
from verl_avconfuse.media.mux import reencode_with_audio, replace_audio, video_packets_digest
from verl_avconfuse.media.probe import (
    MediaError,
    MediaInfo,
    MissingStreamError,
    UnreadableMediaError,
    probe,
    require_streams,
)
from verl_avconfuse.media.synth import noise, tone, write_synthetic_video, write_wav
from verl_avconfuse.media.video import (
    QWEN_SIZE_FACTOR,
    VideoFrameInfo,
    load_video_frames,
    smart_resize,
    to_video_metadata,
    video_metadata_dict,
)

__all__ = [
    "QWEN_SIZE_FACTOR",
    "MediaError",
    "MediaInfo",
    "MissingStreamError",
    "UnreadableMediaError",
    "VideoFrameInfo",
    "load_audio",
    "load_video_frames",
    "noise",
    "probe",
    "reencode_with_audio",
    "replace_audio",
    "require_streams",
    "save_wav",
    "smart_resize",
    "to_video_metadata",
    "tone",
    "video_metadata_dict",
    "video_packets_digest",
    "write_synthetic_video",
    "write_wav",
]
