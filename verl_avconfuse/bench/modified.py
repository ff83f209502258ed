"""The modified setting: give a video a different soundtrack (bird, drill, rain, thunder, wind, ...).

Works for any video (music, speech, ambient): :func:`build_modified` takes each video (a folder scanned by
:func:`scan_videos`, or a manifest read by :func:`load_video_manifest` that can also give each video's
visual description), and for each chosen sound type

1. picks one clip of that type from the sound bank, seeded per (video, type);
2. makes it a soundtrack of the video's length (:func:`~verl_avconfuse.bench.sound_bank.prepare_soundtrack`:
   looped with crossfades, RMS-normalised to -20 dBFS by default under a -1 dBFS peak ceiling);
3. muxes it with the video stream copied byte for byte (:func:`verl_avconfuse.media.replace_audio`);
4. verifies the written file: video packets identical to the source's, and the decoded soundtrack's RMS
   within a tolerance (default 1 dB) of the prepared one's, both measured at 16 kHz (what the model hears);
5. writes the published question and a reference annotation, ``"Based on the video, {visual} Based on the
   audio, there is a sound of {sound}."``: ``{visual}`` from the manifest, else a placeholder for the user
   to fill (the manifest records which items still have it).
"""

from __future__ import annotations

import os
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from verl_avconfuse.bench.schemas import (
    ANNOTATION_TEMPLATE,
    BUILDER_VERSION,
    MODIFIED_QUESTION,
    VIDEO_SUBDIR,
    VIDEO_SUFFIXES,
    VISUAL_PLACEHOLDER,
    BenchFormatError,
    BuildResult,
    ProgressFn,
    StagedDirectory,
    commit_build,
    file_fingerprint,
    item_row,
    manifest_entries,
    modified_filename,
    output_names,
    render_annotation,
    require_unique_keys,
    reusable_outputs,
    sha256_file,
    spec_digest,
)
from verl_avconfuse.bench.sound_bank import (
    DEFAULT_CROSSFADE_S,
    DEFAULT_PEAK_CEILING_DBFS,
    DEFAULT_TARGET_RMS_DBFS,
    PAPER_SOUND_TYPES,
    SoundBank,
    prepare_soundtrack,
    rms_dbfs,
)
from verl_avconfuse.errors import RunFailed

#: The released clips' audio: 44.1 kHz stereo AAC (``combined_00000810_drill.mp4``).
DEFAULT_SAMPLE_RATE = 44100
DEFAULT_CHANNELS = 2
#: Decoded RMS must be within this of the prepared soundtrack's (AAC keeps levels to ~0.1 dB), both
#: measured at CHECK_SAMPLE_RATE, the rate Qwen2.5-Omni's audio encoder reads.
DEFAULT_LOUDNESS_TOLERANCE_DB = 1.0
CHECK_SAMPLE_RATE = 16000


class ModifiedCheckError(RunFailed):
    """A built modified clip failed verification (names the clip and the measured values)."""


@dataclass(frozen=True)
class VideoSource:
    """A video to re-soundtrack: ``key`` (unique, seeds the picks), path, optional visual description."""

    key: str
    path: Path
    visual: str | None = None


def scan_videos(folder: str | os.PathLike) -> list[VideoSource]:
    """Every video file (mp4, mkv, mov, webm, avi) directly in ``folder``, keyed by file stem."""
    folder = Path(folder)
    if not folder.is_dir():
        raise BenchFormatError(f"{folder}: video folder not found")
    videos = [
        VideoSource(p.stem, p) for p in sorted(folder.iterdir()) if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES
    ]
    if not videos:
        raise BenchFormatError(f"{folder}: no video files ({', '.join(VIDEO_SUFFIXES)})")
    return videos


def load_video_manifest(path: str | os.PathLike) -> list[VideoSource]:
    """Videos from a JSON list of ``{"video": PATH, "visual": TEXT?, "id": KEY?}`` or a CSV with columns
    ``video[,visual][,id]``; relative paths are relative to the manifest. ``visual`` fills the annotation."""
    path = Path(path)
    _, entries = manifest_entries(
        path, csv_columns=("video",), csv_layout="video[,visual][,id]", json_layout="{video, visual?, id?}"
    )
    videos = []
    for where, entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("video"), str) or not entry["video"]:
            raise BenchFormatError(f"{where}: expected a 'video' path")
        video = Path(entry["video"])
        video = video if video.is_absolute() else path.parent / video
        if not video.is_file():
            raise BenchFormatError(f"{where}: video {video} does not exist")
        visual = entry.get("visual")
        if visual is not None and not isinstance(visual, str):
            raise BenchFormatError(f"{where}: 'visual' must be text, got {type(visual).__name__}")
        videos.append(VideoSource(str(entry.get("id") or video.stem), video, (visual or "").strip() or None))
    if not videos:
        raise BenchFormatError(f"{path}: the manifest lists no videos")
    require_unique_keys([v.key for v in videos], f"{path}: video ids")
    return videos


def _chosen_types(video: VideoSource, sound_types: Sequence[str], per_video: str | int, seed: int) -> list[str]:
    if per_video == "all":
        return list(sound_types)
    count = int(per_video)
    if count < 1:
        raise ValueError(f"per_video={per_video!r}: expected 'all' or a positive number of sound types per video")
    picked = set(random.Random(f"{seed}:{video.key}").sample(list(sound_types), min(count, len(sound_types))))
    return [t for t in sound_types if t in picked]


def build_modified(
    videos: list[VideoSource],
    bank: SoundBank,
    out_dir: str | os.PathLike,
    *,
    sound_types: Sequence[str] = PAPER_SOUND_TYPES,
    per_video: str | int = "all",
    seed: int = 0,
    question: str = MODIFIED_QUESTION,
    annotation_template: str = ANNOTATION_TEMPLATE,
    sample_rate: int = DEFAULT_SAMPLE_RATE,
    channels: int = DEFAULT_CHANNELS,
    target_rms_dbfs: float = DEFAULT_TARGET_RMS_DBFS,
    peak_ceiling_dbfs: float = DEFAULT_PEAK_CEILING_DBFS,
    crossfade_s: float = DEFAULT_CROSSFADE_S,
    audio_bitrate: int | None = None,
    loudness_tolerance_db: float = DEFAULT_LOUDNESS_TOLERANCE_DB,
    progress: ProgressFn | None = None,
) -> BuildResult:
    """Build the modified set into ``out_dir`` (module docstring: the procedure).

    Writes ``videos/combined_{video_id}_{sound_type}.mp4`` (ids ``000001``, ... in video-key order, then
    ``sound_types`` order), ``avconfusebench_modified.json`` (published fields), ``.parquet`` (verl rows) and
    ``.manifest.json`` (source video, bank clip, soundtrack levels, checks, whether the visual description is
    still the placeholder). Deterministic for a seed, unchanged clips are kept, staged and atomic like
    :func:`verl_avconfuse.bench.muted.build_muted`.

    Args:
        videos: from :func:`scan_videos` or :func:`load_video_manifest`.
        bank: the sound bank; every type in ``sound_types`` must be in it.
        sound_types: types to use (default: the paper's five).
        per_video: ``"all"`` (every type for every video, as the release: 5 per video) or how many types
            per video, picked by ``seed``.
        sample_rate, channels: of the new soundtrack (mono clips are duplicated to stereo).
        target_rms_dbfs, peak_ceiling_dbfs, crossfade_s: loudness and looping (see ``prepare_soundtrack``).
        progress: called ``(done, total, label)`` after every clip.

    Raises:
        ModifiedCheckError: a written clip failed verification (nothing is moved into ``out_dir``).
    """
    import soxr

    from verl_avconfuse.media import load_audio, probe, replace_audio, video_packets_digest

    if channels not in (1, 2):
        raise ValueError(f"channels={channels}: expected 1 or 2")
    sound_types = list(dict.fromkeys(sound_types))
    if not sound_types:
        raise ValueError("sound_types is empty")
    for sound_type in sound_types:
        bank.clips(sound_type)  # fails early, naming the bank and what it has
    out_dir = Path(out_dir)
    names = output_names("modified")
    videos = sorted(videos, key=lambda v: v.key)
    require_unique_keys([v.key for v in videos], "video keys")
    plan = [(video, _chosen_types(video, sound_types, per_video, seed)) for video in videos]
    total = sum(len(types) for _, types in plan)
    sound_params = {
        "sample_rate": sample_rate,
        "channels": channels,
        "target_rms_dbfs": target_rms_dbfs,
        "peak_ceiling_dbfs": peak_ceiling_dbfs,
        "crossfade_s": crossfade_s,
        "audio_bitrate": audio_bitrate,
    }

    items: list[dict] = []
    rows: list[dict] = []
    records: list[dict] = []
    built = reused = 0
    with StagedDirectory(out_dir) as staging:
        reusable = reusable_outputs(out_dir, names["manifest"])
        for video, types in plan:
            if not types:
                continue
            duration = probe(video.path).duration_s
            source_digest = None
            for sound_type in types:
                video_id = f"{len(records) + 1:06d}"
                filename = modified_filename(video_id, sound_type)
                relative = f"{VIDEO_SUBDIR}/{filename}"
                clip = bank.choose(sound_type, video.key, seed)
                spec = {
                    "builder": BUILDER_VERSION,
                    "setting": "modified",
                    "file": relative,
                    "video": file_fingerprint(video.path),
                    "clip": file_fingerprint(clip.path),
                    **sound_params,
                }
                digest = spec_digest(spec)
                previous = reusable.get(digest)
                if previous is not None:
                    soundtrack = previous["soundtrack"]
                    check = previous["checks"]
                    sha = previous["sha256"]
                    reused += 1
                else:
                    track, stats = prepare_soundtrack(
                        clip.path,
                        round(duration * sample_rate),
                        sample_rate,
                        target_rms_dbfs=target_rms_dbfs,
                        peak_ceiling_dbfs=peak_ceiling_dbfs,
                        crossfade_s=crossfade_s,
                    )
                    audio = np.repeat(track[:, None], channels, axis=1)
                    staged = staging.path(relative)
                    replace_audio(video.path, audio, staged, sr=sample_rate, audio_bitrate=audio_bitrate)
                    # Compared at the model's input rate: AAC low-passes above ~15 kHz (1.5 dB of white
                    # noise's power at the default bitrate), a band no 16 kHz audio encoder hears.
                    prepared_db = rms_dbfs(soxr.resample(track, sample_rate, CHECK_SAMPLE_RATE, quality="HQ"))
                    decoded_db = rms_dbfs(load_audio(staged, sr=CHECK_SAMPLE_RATE, mono=True))
                    if source_digest is None:
                        source_digest = video_packets_digest(video.path)
                    identical = video_packets_digest(staged) == source_digest
                    error_db = abs(decoded_db - prepared_db)
                    problems = []
                    if not identical:
                        problems.append("video packets differ from the source video")
                    if not error_db <= loudness_tolerance_db:
                        problems.append(
                            f"decoded RMS {decoded_db:.2f} dBFS is {error_db:.2f} dB from the soundtrack's "
                            f"{prepared_db:.2f} dBFS at {CHECK_SAMPLE_RATE} Hz (tolerance {loudness_tolerance_db} dB)"
                        )
                    if problems:
                        raise ModifiedCheckError(
                            f"modified clip {filename} (video {video.key}): " + "; ".join(problems)
                        )
                    soundtrack = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in asdict(stats).items()}
                    check = {
                        "rms_dbfs_16k": round(prepared_db, 3),
                        "decoded_rms_dbfs_16k": round(decoded_db, 3),
                        "loudness_error_db": round(error_db, 3),
                        "video_identical": identical,
                    }
                    sha = sha256_file(staged)
                    built += 1
                visual = video.visual or VISUAL_PLACEHOLDER
                item = {
                    "video_id": video_id,
                    "filename": filename,
                    "question": question,
                    "sound_type": sound_type,
                    "annotation": render_annotation(annotation_template, visual, sound_type),
                }
                rows.append(item_row(item, "modified", len(items), out_dir / relative, {"source_video": video.key}))
                items.append(item)
                records.append(
                    {
                        "video_id": video_id,
                        "file": relative,
                        "sha256": sha,
                        "spec_sha256": digest,
                        "source_video": str(video.path.resolve()),
                        "source_key": video.key,
                        "sound_type": sound_type,
                        "bank_clip": str(Path(clip.path).resolve()),
                        "bank_category": clip.category,
                        "visual_filled": video.visual is not None,
                        "soundtrack": soundtrack,
                        "checks": check,
                    }
                )
                if progress is not None:
                    progress(len(records), total, f"{video.key}: {sound_type}")
        if not records:
            raise BenchFormatError("modified build: nothing to build (no videos or no sound types)")
        manifest = {
            "setting": "modified",
            "builder": BUILDER_VERSION,
            "params": {
                "seed": seed,
                "sound_types": sound_types,
                "per_video": per_video,
                "question": question,
                "annotation_template": annotation_template,
                "loudness_tolerance_db": loudness_tolerance_db,
                "bank": bank.name,
                **sound_params,
            },
            "visual_placeholder": VISUAL_PLACEHOLDER,
            "items_missing_visual": sum(1 for r in records if not r["visual_filled"]),
            "items": records,
        }
        paths = commit_build(staging, "modified", items, rows, manifest)
    return BuildResult(items, rows, manifest, paths, built, reused)
