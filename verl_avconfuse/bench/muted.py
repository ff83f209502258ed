"""The muted setting: remove one source from a multi-track recording, keep the picture of it playing.

Input: per-source stems plus the video, from a URMP-layout folder (:func:`scan_urmp`) or a manifest
(:func:`load_muted_manifest`). For each chosen source of a piece, :func:`build_muted`

1. mixes the *other* stems at their original gain (a plain sum, as the original mix) and scales the sum
   down only when its peak would exceed :data:`DEFAULT_MIX_CEILING_DBFS` (no clipping; the scale is
   recorded);
2. muxes that mix with the original video, the video stream copied packet for packet
   (:func:`verl_avconfuse.media.replace_audio`), the audio AAC-encoded at the stems' sample rate;
3. asks the published question about the removed source (answer ``"no"``) and, with ``controls``,
   about each source still audible (answer ``"yes"``);
4. verifies the written file (:func:`verify_muted`): the soundtrack decoded back is fitted by least
   squares as ``sum_k g_k * stem_k`` over *all* stems; the removed stem's gain must be below the
   residual threshold (default -40 dB, i.e. |g| < 0.01 of its level in the original mix), every kept
   stem's gain must match the mix scale within a tolerance (default 1 dB: AAC keeps levels to ~0.1 dB),
   and the video packets must be byte-identical to the source's (:func:`video_packets_digest`).

A source is not muted when another source of the piece has the same instrument name (a duet of two
violins with one muted still has a violin sound: the answer would not be "no"), or when its stem is
silent during the video (nothing would be removed); both are listed in the manifest's ``skipped``.
"""

from __future__ import annotations

import json
import math
import os
import random
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from verl_avconfuse.bench.schemas import (
    BUILDER_VERSION,
    MUTED_QUESTION_TEMPLATE,
    NO,
    VIDEO_SUBDIR,
    VIDEO_SUFFIXES,
    YES,
    BenchFormatError,
    BuildResult,
    ProgressFn,
    StagedDirectory,
    commit_build,
    file_fingerprint,
    item_row,
    manifest_entries,
    number_word,
    output_names,
    render_muted_question,
    require_unique_keys,
    reusable_outputs,
    sha256_file,
    spec_digest,
)
from verl_avconfuse.errors import RunFailed

#: URMP's instrument abbreviations -> Music-AVQA-style tokens (the published files' vocabulary).
URMP_INSTRUMENTS = {
    "vn": "violin",
    "va": "viola",
    "vc": "cello",
    "db": "double_bass",
    "fl": "flute",
    "ob": "oboe",
    "cl": "clarinet",
    "sax": "saxophone",
    "bn": "bassoon",
    "tpt": "trumpet",
    "hn": "horn",
    "tbn": "trombone",
    "tba": "tuba",
}
#: The remix is scaled down only when its peak would pass -1 dBFS: AAC decoding overshoots a little, and a
#: decoded sample clipped at full scale would bias the residual check.
DEFAULT_MIX_CEILING_DBFS = -1.0
#: The removed stem's fitted gain must stay below this (dB relative to its gain in the original mix).
DEFAULT_RESIDUAL_THRESHOLD_DB = -40.0
#: Kept stems' fitted gains must equal the mix scale within this (dB).
DEFAULT_LEVEL_TOLERANCE_DB = 1.0
#: A removed stem quieter than this over the clip (RMS, dBFS) is "silent": muting it removes nothing.
SILENT_STEM_DBFS = -60.0

_FIT_CHUNK = 1 << 20
_URMP_DIR = re.compile(r"^(\d+)_([^_]+)_(.+)$")
_URMP_STEM = re.compile(r"^AuSep_(\d+)_([A-Za-z]+)_(\d+)_(.+)\.wav$", re.IGNORECASE)


class MutedCheckError(RunFailed):
    """A built muted clip failed verification (names the clip and the measured values)."""


@dataclass(frozen=True)
class Piece:
    """One recording: its video and its sources in order, as ``(instrument name, stem wav path)``."""

    key: str
    video: Path
    sources: tuple[tuple[str, Path], ...]

    @property
    def instruments(self) -> list[str]:
        return [name for name, _ in self.sources]


# ------------------------------------------------------------------------------------------- inputs


def urmp_instrument(abbreviation: str) -> str:
    return URMP_INSTRUMENTS.get(abbreviation.lower(), abbreviation.lower())


def scan_urmp(root: str | os.PathLike) -> list[Piece]:
    """Pieces of a URMP-layout folder: ``NN_Piece_inst1_inst2/`` with ``AuSep_{k}_{inst}_{NN}_{Piece}.wav``
    stems (ordered by ``k``) and one ``Vid_*.mp4``. Folders without a video or stems raise, naming them."""
    root = Path(root)
    if not root.is_dir():
        raise BenchFormatError(f"{root}: URMP folder not found")
    pieces = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and _URMP_DIR.match(p.name)):
        stems = []
        for path in folder.iterdir():
            match = _URMP_STEM.match(path.name)
            if match:
                stems.append((int(match.group(1)), urmp_instrument(match.group(2)), path))
        videos = sorted(p for p in folder.glob("Vid_*") if p.suffix.lower() in VIDEO_SUFFIXES)
        if not stems:
            raise BenchFormatError(f"{folder}: no AuSep_{{k}}_{{inst}}_{{NN}}_{{Piece}}.wav stems")
        if len(videos) != 1:
            raise BenchFormatError(f"{folder}: expected one Vid_*.mp4 video, found {len(videos)}")
        stems.sort(key=lambda s: s[0])
        pieces.append(Piece(folder.name, videos[0], tuple((name, path) for _, name, path in stems)))
    if not pieces:
        raise BenchFormatError(f"{root}: no URMP piece folders (expected NN_Piece_inst1_inst2/)")
    return pieces


def _resolve(base: Path, value: object, where: str) -> Path:
    if not isinstance(value, str) or not value:
        raise BenchFormatError(f"{where}: expected a file path string, got {value!r}")
    path = Path(value)
    path = path if path.is_absolute() else base / path
    if not path.is_file():
        raise BenchFormatError(f"{where}: {path} does not exist")
    return path


_NAME_SEPARATORS = re.compile(r"[\s-]+")
_TRAILING_NUMBER = re.compile(r"_?\d+$")


def instrument_name(raw: object, where: str) -> str:
    """The Music-AVQA-style token of a source name: trimmed, lower case, spaces/hyphens as ``_``.

    ``"Violin"``, ``"violin "`` and ``"violin"`` are one instrument (the builder skips muting one of two
    sources of one instrument, and asks "Is there a violin sound?"); ``"Acoustic Guitar"`` is
    ``acoustic_guitar``. A name ending in a number (``violin1``) is refused: it would be asked about
    verbatim, and two violins are listed as two stems of one name instead.
    """
    if not isinstance(raw, str) or not raw.strip():
        raise BenchFormatError(f"{where}: expected an instrument name, got {raw!r}")
    name = _NAME_SEPARATORS.sub("_", raw.strip().lower()).strip("_")
    if _TRAILING_NUMBER.search(name):
        base = _TRAILING_NUMBER.sub("", name) or name
        raise BenchFormatError(
            f"{where}: source name {raw!r} ends with a number, and the question would be 'Is there a {name} "
            f"sound?'; name the instrument ({base!r}) and list several stems of it as "
            f'"sources": {{"{base}": ["a.wav", "b.wav"]}} or [["{base}", "a.wav"], ["{base}", "b.wav"]]'
        )
    return name


def _json_sources(base: Path, sources: object, where: str) -> tuple[tuple[str, Path], ...]:
    """A JSON entry's sources: ``{name: stem | [stem, ...]}`` or ``[[name, stem], ...]`` /
    ``[{"name": ..., "stem": ...}, ...]`` (the list forms keep any order and repeat names freely)."""
    pairs: list[tuple[object, object]] = []
    if isinstance(sources, dict):
        for name, stems in sources.items():
            for stem in stems if isinstance(stems, list) else [stems]:
                pairs.append((name, stem))
    elif isinstance(sources, list):
        for k, item in enumerate(sources):
            if isinstance(item, dict) and "stem" in item:
                pairs.append((item.get("name", item.get("instrument")), item["stem"]))
            elif isinstance(item, (list, tuple)) and len(item) == 2:
                pairs.append((item[0], item[1]))
            else:
                raise BenchFormatError(
                    f"{where}: sources[{k}] must be [NAME, STEM] or {{name, stem}}, got {item!r:.80}"
                )
    if not pairs:
        raise BenchFormatError(
            f"{where}: expected 'sources' as {{NAME: STEM_WAV or [STEM_WAV, ...]}} or [[NAME, STEM_WAV], ...]"
        )
    return tuple(
        (instrument_name(name, f"{where} (source {name!r})"), _resolve(base, stem, f"{where} (source {name!r})"))
        for name, stem in pairs
    )


def load_muted_manifest(path: str | os.PathLike) -> list[Piece]:
    """Pieces from a manifest; relative paths are relative to the manifest's folder.

    - JSON: a list of ``{"video": PATH, "sources": SOURCES, "id": KEY?}`` where SOURCES is
      ``{NAME: STEM_WAV or [STEM_WAV, ...]}`` or ``[[NAME, STEM_WAV], ...]`` (source order kept; a list of
      stems or repeated pairs: several sources of one instrument); ``id`` defaults to the video's file stem;
    - CSV: columns ``video,source,stem`` (optional ``id``), one row per stem, a piece's rows together.

    Names are normalised by :func:`instrument_name`.
    """
    path = Path(path)
    is_csv, entries = manifest_entries(
        path,
        csv_columns=("video", "source", "stem"),
        csv_layout="video,source,stem[,id]",
        json_layout="{video, sources}",
    )
    base = path.parent
    pieces: list[Piece] = []
    if is_csv:
        grouped: dict[tuple[str, str], list[tuple[str, Path]]] = {}
        for where, row in entries:
            video = _resolve(base, row["video"], f"{where} (video)")
            stem = _resolve(base, row["stem"], f"{where} (stem)")
            name = instrument_name(row["source"], f"{where} (source)")
            key = (row.get("id") or "").strip() or video.stem
            grouped.setdefault((key, str(video)), []).append((name, stem))
        pieces = [Piece(key, Path(video), tuple(sources)) for (key, video), sources in grouped.items()]
    else:
        for where, entry in entries:
            if not isinstance(entry, dict) or not entry.get("sources"):
                raise BenchFormatError(f"{where}: expected {{'video': PATH, 'sources': {{NAME: STEM_WAV}}}}")
            video = _resolve(base, entry.get("video"), f"{where} (video)")
            pieces.append(
                Piece(str(entry.get("id") or video.stem), video, _json_sources(base, entry["sources"], where))
            )
    if not pieces:
        raise BenchFormatError(f"{path}: the manifest lists no pieces")
    require_unique_keys([p.key for p in pieces], f"{path}: piece ids")
    return pieces


# ------------------------------------------------------------------------------------------ mixing


def load_stems(piece: Piece, sr: int) -> np.ndarray:
    """The piece's stems as float32 ``(n_sources, n)`` mono at ``sr`` Hz, zero-padded to the longest."""
    from verl_avconfuse.media import load_audio

    stems = [load_audio(path, sr=sr, mono=True) for _, path in piece.sources]
    n = max(len(s) for s in stems)
    out = np.zeros((len(stems), n), dtype=np.float32)
    for i, stem in enumerate(stems):
        out[i, : len(stem)] = stem
    return out


def remix_without(
    stems: np.ndarray, removed: int, ceiling_dbfs: float = DEFAULT_MIX_CEILING_DBFS
) -> tuple[np.ndarray, float]:
    """``(mix (n,), scale)``: ``scale * sum of stems except row removed`` with ``scale = 1`` unless the
    sum's peak exceeds ``ceiling_dbfs``, then ``ceiling / peak`` (the only level change)."""
    keep = [i for i in range(stems.shape[0]) if i != removed]
    mix = stems[keep].astype(np.float64).sum(axis=0) if keep else np.zeros(stems.shape[1])
    peak = float(np.max(np.abs(mix))) if mix.size else 0.0
    ceiling = 10 ** (ceiling_dbfs / 20)
    scale = ceiling / peak if peak > ceiling else 1.0
    return (mix * scale).astype(np.float32), scale


def fit_stem_gains(mixture: np.ndarray, stems: np.ndarray) -> np.ndarray:
    """Least-squares gains ``g`` ``(k,)`` with ``mixture (n,) ~= g @ stems (k, n)`` (stems trimmed or padded
    to the mixture's length). Fitting every stem at once keeps correlated stems (two instruments in unison)
    from taking credit for each other."""
    k = stems.shape[0]
    m = min(len(mixture), stems.shape[1])  # stem samples past the mixture's end are zero padding there
    gram = np.zeros((k, k))
    target = np.zeros(k)
    # Normal equations accumulated over chunks in float64: a 5-minute 48 kHz quintet stays ~100 MB.
    for start in range(0, m, _FIT_CHUNK):
        block = stems[:, start : min(m, start + _FIT_CHUNK)].astype(np.float64)
        gram += block @ block.T
        target += block @ mixture[start : start + block.shape[1]].astype(np.float64)
    gains, *_ = np.linalg.lstsq(gram, target, rcond=None)
    return gains


def _db(value: float) -> float:
    return 20 * math.log10(abs(value)) if value != 0 else -math.inf


@dataclass(frozen=True)
class MuteCheck:
    """Measured on the written clip. ``removed_residual_db``: 20 log10 |g_removed| (its original gain is 1);
    ``kept_gain_error_db``: the largest |20 log10(g_k / scale)| over kept stems that are not silent."""

    removed_residual_db: float
    kept_gain_error_db: float
    video_identical: bool

    def failures(self, threshold_db: float, tolerance_db: float) -> list[str]:
        problems = []
        if not self.removed_residual_db < threshold_db:
            problems.append(f"removed stem still at {self.removed_residual_db:.1f} dB (threshold {threshold_db} dB)")
        if not self.kept_gain_error_db <= tolerance_db:
            problems.append(f"kept stems' level off by {self.kept_gain_error_db:.2f} dB (tolerance {tolerance_db} dB)")
        if not self.video_identical:
            problems.append("video packets differ from the source video")
        return problems


def verify_muted(
    clip: str | os.PathLike, source_video: str | os.PathLike, stems: np.ndarray, removed: int, scale: float, sr: int
) -> MuteCheck:
    """Decode ``clip``'s soundtrack at ``sr`` and measure it against ``stems`` (module docstring: the checks)."""
    from verl_avconfuse.media import load_audio, video_packets_digest

    decoded = load_audio(clip, sr=sr, mono=True)
    gains = fit_stem_gains(decoded, stems)
    span = stems[:, : len(decoded)]
    errors = [
        abs(_db(gains[k] / scale))
        for k in range(stems.shape[0])
        if k != removed and _rms_dbfs(span[k]) > SILENT_STEM_DBFS
    ]
    return MuteCheck(
        removed_residual_db=_db(float(gains[removed])),
        kept_gain_error_db=max(errors, default=0.0),
        video_identical=video_packets_digest(clip) == video_packets_digest(source_video),
    )


def _rms_dbfs(x: np.ndarray) -> float:
    power = float(np.mean(np.asarray(x, dtype=np.float64) ** 2)) if x.size else 0.0
    return 10 * math.log10(power) if power > 0 else -math.inf


# ------------------------------------------------------------------------------------------- build


def _chosen_sources(piece: Piece, mute: str | int, seed: int, skipped: list[dict]) -> list[int]:
    names = piece.instruments
    eligible = []
    for i, name in enumerate(names):
        if names.count(name) > 1:
            skipped.append({"piece": piece.key, "source": name, "reason": "another source has the same instrument"})
        else:
            eligible.append(i)
    if mute == "all":
        return eligible
    count = int(mute)
    if count < 1:
        raise ValueError(f"mute={mute!r}: expected 'all' or a positive number of sources per piece")
    return sorted(random.Random(f"{seed}:{piece.key}").sample(eligible, min(count, len(eligible))))


def build_muted(
    pieces: list[Piece],
    out_dir: str | os.PathLike,
    *,
    seed: int = 0,
    mute: str | int = "all",
    controls: bool = False,
    question_template: str = MUTED_QUESTION_TEMPLATE,
    sample_rate: int | None = None,
    audio_bitrate: int | None = None,
    residual_threshold_db: float = DEFAULT_RESIDUAL_THRESHOLD_DB,
    level_tolerance_db: float = DEFAULT_LEVEL_TOLERANCE_DB,
    mix_ceiling_dbfs: float = DEFAULT_MIX_CEILING_DBFS,
    progress: ProgressFn | None = None,
) -> BuildResult:
    """Build the muted set into ``out_dir`` (module docstring: the procedure).

    Writes ``videos/{video_id}.mp4`` (video ids ``000001``, ... in piece order, then source order),
    ``avconfusebench_muted.json`` (published fields), ``avconfusebench_muted.parquet`` (verl rows) and
    ``avconfusebench_muted.manifest.json`` (provenance, measured checks, skipped sources). Same inputs and
    arguments give byte-identical files; a clip whose inputs and settings are unchanged since the last build
    is kept, not re-encoded. Everything is staged and moved into place at the end, so an exception or
    interrupt leaves ``out_dir`` as it was.

    Args:
        pieces: from :func:`scan_urmp` or :func:`load_muted_manifest`; pieces are ordered by key.
        seed: picks the sources when ``mute`` is a number.
        mute: ``"all"`` (one clip per eligible source) or how many sources to mute per piece.
        controls: also ask about each source still audible (answer "yes") in every muted clip.
        question_template: with a ``{source}`` field (default: the published question, typo fixed).
        sample_rate: of the mix and the encoded audio (Hz); default: the first stem's own rate.
        audio_bitrate: AAC bits per second (default: the encoder's).
        progress: called ``(done, total, label)`` after every clip.

    Raises:
        MutedCheckError: a written clip failed verification (nothing is moved into ``out_dir``).
    """
    from verl_avconfuse.media import probe, replace_audio

    out_dir = Path(out_dir)
    names = output_names("muted")
    pieces = sorted(pieces, key=lambda p: p.key)
    skipped: list[dict] = []
    plan: list[tuple[Piece, list[int]]] = []
    for piece in pieces:
        if len(piece.sources) < 2:
            skipped.append({"piece": piece.key, "source": None, "reason": "fewer than two sources"})
            continue
        plan.append((piece, _chosen_sources(piece, mute, seed, skipped)))
    total = sum(len(chosen) for _, chosen in plan)

    items: list[dict] = []
    rows: list[dict] = []
    records: list[dict] = []
    built = reused = 0
    with StagedDirectory(out_dir) as staging:
        reusable = reusable_outputs(out_dir, names["manifest"])
        for piece, chosen in plan:
            if not chosen:
                continue
            sr = int(sample_rate or probe(piece.sources[0][1]).audio_sample_rate)
            stems = load_stems(piece, sr)
            clip_samples = round(probe(piece.video).duration_s * sr)
            fingerprints = {
                "video": file_fingerprint(piece.video),
                "stems": [file_fingerprint(path) for _, path in piece.sources],
            }
            for removed in chosen:
                name = piece.instruments[removed]
                if _rms_dbfs(stems[removed, :clip_samples]) <= SILENT_STEM_DBFS:
                    skipped.append({"piece": piece.key, "source": name, "reason": "stem is silent during the video"})
                    total -= 1
                    continue
                video_id = f"{len(records) + 1:06d}"
                relative = f"{VIDEO_SUBDIR}/{video_id}.mp4"
                spec = {
                    "builder": BUILDER_VERSION,
                    "setting": "muted",
                    "file": relative,
                    "inputs": fingerprints,
                    "removed": removed,
                    "sample_rate": sr,
                    "audio_bitrate": audio_bitrate,
                    "mix_ceiling_dbfs": mix_ceiling_dbfs,
                }
                digest = spec_digest(spec)
                previous = reusable.get(digest)
                if previous is not None:
                    check = previous["checks"]
                    scale = previous["mix_scale"]
                    sha = previous["sha256"]
                    reused += 1
                else:
                    mix, scale = remix_without(stems, removed, mix_ceiling_dbfs)
                    staged = staging.path(relative)
                    replace_audio(piece.video, mix, staged, sr=sr, audio_bitrate=audio_bitrate)
                    measured = verify_muted(staged, piece.video, stems, removed, scale, sr)
                    problems = measured.failures(residual_threshold_db, level_tolerance_db)
                    if problems:
                        raise MutedCheckError(
                            f"muted clip {video_id} (piece {piece.key}, {name} removed): " + "; ".join(problems)
                        )
                    check = {
                        "removed_residual_db": round(measured.removed_residual_db, 2),
                        "kept_gain_error_db": round(measured.kept_gain_error_db, 3),
                        "video_identical": measured.video_identical,
                    }
                    sha = sha256_file(staged)
                    built += 1
                instruments = ", ".join(piece.instruments)
                questions = [(name, NO)]
                if controls:
                    kept = [n for i, n in enumerate(piece.instruments) if i != removed]
                    questions += [(n, YES) for n in dict.fromkeys(kept)]
                for asked, answer in questions:
                    item = {
                        "video_id": video_id,
                        "question": render_muted_question(question_template, asked),
                        "answer": answer,
                        "instruments": instruments,
                        "instruments_len": number_word(len(piece.sources)),
                    }
                    rows.append(
                        item_row(
                            item,
                            "muted",
                            len(items),
                            out_dir / relative,
                            {"asked_source": asked, "muted_source": name, "control": answer == YES},
                        )
                    )
                    items.append(item)
                records.append(
                    {
                        "video_id": video_id,
                        "file": relative,
                        "sha256": sha,
                        "spec_sha256": digest,
                        "piece": piece.key,
                        "source_video": str(piece.video.resolve()),
                        "muted_source": name,
                        "stems": [[n, str(p.resolve())] for n, p in piece.sources],
                        "sample_rate": sr,
                        "mix_scale": scale,
                        "mix_scale_db": round(_db(scale), 3),
                        "checks": check,
                    }
                )
                if progress is not None:
                    progress(len(records), total, f"{piece.key}: {name} muted")
        if not records:
            raise BenchFormatError(
                "muted build: no source could be muted (see the reasons: " + json.dumps(skipped) + ")"
            )
        manifest = {
            "setting": "muted",
            "builder": BUILDER_VERSION,
            "params": {
                "seed": seed,
                "mute": mute,
                "controls": controls,
                "question_template": question_template,
                "sample_rate": sample_rate,
                "audio_bitrate": audio_bitrate,
                "residual_threshold_db": residual_threshold_db,
                "level_tolerance_db": level_tolerance_db,
                "mix_ceiling_dbfs": mix_ceiling_dbfs,
            },
            "items": records,
            "skipped": skipped,
        }
        paths = commit_build(staging, "muted", items, rows, manifest)
    return BuildResult(items, rows, manifest, paths, built, reused)
