"""Environmental sounds for the modified setting: ESC-50, UrbanSound8K or a folder per class.

The paper's five sound types are bird, drill, rain, thunderstorm and wind. ESC-50 has four of them
(categories ``chirping_birds``, ``rain``, ``thunderstorm``, ``wind``); UrbanSound8K has ``drilling``. Several
banks can be combined (:meth:`SoundBank.merge`). A bank's own label becomes a sound type through
:data:`SOUND_TYPE_ALIASES` (unlisted labels are used as they are), so any other class works too.

Layouts read:

- ESC-50: ``meta/esc50.csv`` (``filename,fold,target,category,esc10,src_file,take``), clips in ``audio/``.
- UrbanSound8K: ``metadata/UrbanSound8K.csv`` (``slice_file_name,fsID,start,end,salience,fold,classID,class``),
  clips in ``audio/fold{fold}/``. Only foreground clips (``salience`` 1) are used when a class has any:
  a background-salience drill is a faint drill.
- folder: ``ROOT/{class}/*.wav|flac|ogg|mp3|m4a``.

:func:`prepare_soundtrack` turns one clip into a soundtrack of a video's length: edge silence trimmed,
looped with an equal-power crossfade, then loudness-normalised to an RMS target (dBFS, whole track) under a
peak ceiling (docs/avconfusebench.md: why RMS and not LUFS).
"""

from __future__ import annotations

import csv
import math
import os
import random
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from verl_avconfuse.bench.schemas import BenchFormatError

#: Bank labels -> the paper's sound-type names.
SOUND_TYPE_ALIASES = {
    "chirping_birds": "bird",
    "birds": "bird",
    "bird_chirping": "bird",
    "birdsong": "bird",
    "drilling": "drill",
    "drills": "drill",
    "thunder": "thunderstorm",
    "thunderstorms": "thunderstorm",
}
PAPER_SOUND_TYPES = ("bird", "drill", "rain", "thunderstorm", "wind")
BANK_KINDS = ("esc50", "urbansound8k", "folder")

#: Default loudness of a replacement soundtrack: -20 dBFS RMS (a typical programme level with headroom for
#: transients), never letting a sample above -1 dBFS (AAC decoding overshoots near full scale).
DEFAULT_TARGET_RMS_DBFS = -20.0
DEFAULT_PEAK_CEILING_DBFS = -1.0
#: Crossfade at each loop point: 50 ms hides the seam without smearing the rhythm of rain or a drill.
DEFAULT_CROSSFADE_S = 0.05
#: Samples below this magnitude at a clip's edges are silence (ESC-50 pads short recordings with zeros).
_EDGE_SILENCE = 1e-4
_AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".m4a", ".aiff", ".aif")
_ESC50_COLUMNS = ("filename", "fold", "target", "category", "esc10", "src_file", "take")
_US8K_COLUMNS = ("slice_file_name", "fsID", "start", "end", "salience", "fold", "classID", "class")
_FOREGROUND = "1"


def sound_type_of(label: str) -> str:
    """A bank label as a sound type: lower-cased, spaces as underscores, then :data:`SOUND_TYPE_ALIASES`."""
    key = label.strip().lower().replace(" ", "_").replace("-", "_")
    return SOUND_TYPE_ALIASES.get(key, key)


@dataclass(frozen=True)
class BankClip:
    """One recording of a bank. ``category``: the bank's label; ``sound_type``: after aliasing."""

    path: Path
    sound_type: str
    category: str
    bank: str


class SoundBank:
    """Clips grouped by sound type, each group sorted by path, so a seed picks the same clip everywhere."""

    def __init__(self, clips: Iterable[BankClip], name: str = "bank") -> None:
        self.name = name
        self._by_type: dict[str, list[BankClip]] = {}
        for clip in clips:
            self._by_type.setdefault(clip.sound_type, []).append(clip)
        for group in self._by_type.values():
            group.sort(key=lambda c: str(c.path))

    @classmethod
    def merge(cls, banks: Iterable[SoundBank]) -> SoundBank:
        banks = list(banks)
        return cls((clip for bank in banks for clip in bank.all_clips()), name="+".join(b.name for b in banks))

    def all_clips(self) -> list[BankClip]:
        return [clip for sound_type in self.types() for clip in self._by_type[sound_type]]

    def types(self) -> list[str]:
        return sorted(self._by_type)

    def clips(self, sound_type: str) -> list[BankClip]:
        if sound_type not in self._by_type:
            raise BenchFormatError(
                f"sound bank {self.name}: no clips of sound type {sound_type!r}; it has {', '.join(self.types()) or 'none'}"
            )
        return list(self._by_type[sound_type])

    def choose(self, sound_type: str, key: str, seed: int) -> BankClip:
        """The clip for one (video ``key``, sound type): seeded per item, so adding videos changes no other pick."""
        group = self.clips(sound_type)
        return random.Random(f"{seed}:{key}:{sound_type}").choice(group)

    def __len__(self) -> int:
        return sum(len(g) for g in self._by_type.values())


def _read_csv(path: Path, columns: tuple[str, ...]) -> list[dict]:
    if not path.is_file():
        raise BenchFormatError(f"{path}: metadata file not found")
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in columns if c not in (reader.fieldnames or [])]
        if missing:
            raise BenchFormatError(f"{path}: missing column(s) {missing}; expected header {','.join(columns)}")
        return list(reader)


def _require_file(path: Path, metadata: Path, row: int) -> Path:
    if not path.is_file():
        raise BenchFormatError(f"{metadata}: row {row} names {path}, which does not exist")
    return path


def load_esc50(root: str | os.PathLike) -> SoundBank:
    root = Path(root)
    meta = root / "meta" / "esc50.csv"
    clips = []
    for row_number, row in enumerate(_read_csv(meta, _ESC50_COLUMNS), start=2):
        path = _require_file(root / "audio" / row["filename"], meta, row_number)
        clips.append(BankClip(path, sound_type_of(row["category"]), row["category"], "esc50"))
    return SoundBank(clips, name=f"esc50:{root}")


def load_urbansound8k(root: str | os.PathLike, foreground_only: bool = True) -> SoundBank:
    root = Path(root)
    meta = root / "metadata" / "UrbanSound8K.csv"
    by_class: dict[str, list[tuple[BankClip, str]]] = {}
    for row_number, row in enumerate(_read_csv(meta, _US8K_COLUMNS), start=2):
        path = _require_file(root / "audio" / f"fold{row['fold']}" / row["slice_file_name"], meta, row_number)
        clip = BankClip(path, sound_type_of(row["class"]), row["class"], "urbansound8k")
        by_class.setdefault(clip.sound_type, []).append((clip, row["salience"].strip()))
    clips = []
    for entries in by_class.values():
        foreground = [c for c, salience in entries if salience == _FOREGROUND]
        clips += foreground if foreground_only and foreground else [c for c, _ in entries]
    return SoundBank(clips, name=f"urbansound8k:{root}")


def load_folder_bank(root: str | os.PathLike) -> SoundBank:
    root = Path(root)
    if not root.is_dir():
        raise BenchFormatError(f"{root}: sound bank folder not found")
    clips = []
    for class_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for path in sorted(class_dir.iterdir()):
            if path.is_file() and path.suffix.lower() in _AUDIO_SUFFIXES:
                clips.append(BankClip(path, sound_type_of(class_dir.name), class_dir.name, "folder"))
    if not clips:
        raise BenchFormatError(f"{root}: no audio files in class folders (expected ROOT/<class>/<clip>.wav)")
    return SoundBank(clips, name=f"folder:{root}")


def load_bank(spec: str | os.PathLike) -> SoundBank:
    """A bank from ``esc50:ROOT``, ``urbansound8k:ROOT``, ``folder:ROOT`` or a bare ROOT (layout detected)."""
    spec = os.fspath(spec)
    kind, sep, target = spec.partition(":")
    if sep and kind in BANK_KINDS:
        root = Path(target)
    else:
        root = Path(spec)
        if (root / "meta" / "esc50.csv").is_file():
            kind = "esc50"
        elif (root / "metadata" / "UrbanSound8K.csv").is_file():
            kind = "urbansound8k"
        else:
            kind = "folder"
    if kind == "esc50":
        return load_esc50(root)
    if kind == "urbansound8k":
        return load_urbansound8k(root)
    return load_folder_bank(root)


# ------------------------------------------------------------------------------------ soundtracks


def rms_dbfs(samples: np.ndarray) -> float:
    """RMS level in dB relative to full scale (a full-scale sine is -3.01 dBFS); ``-inf`` for silence."""
    x = np.asarray(samples, dtype=np.float64)
    power = float(np.mean(x * x)) if x.size else 0.0
    return 10.0 * math.log10(power) if power > 0 else -math.inf


def trim_edge_silence(samples: np.ndarray, threshold: float = _EDGE_SILENCE) -> np.ndarray:
    """``samples`` ``(n,)`` without the leading/trailing run of ``|x| < threshold`` (empty if all silent)."""
    loud = np.flatnonzero(np.abs(samples) >= threshold)
    if loud.size == 0:
        return samples[:0]
    return samples[loud[0] : loud[-1] + 1]


def loop_to_length(samples: np.ndarray, n: int, crossfade: int) -> np.ndarray:
    """Repeat ``samples`` ``(m,)`` to exactly ``n`` samples, each seam an equal-power crossfade.

    Copies start every ``m - crossfade`` samples; a copy's first ``crossfade`` samples fade in along
    ``sin`` while the previous copy's last ones fade out along ``cos`` (constant power for uncorrelated
    sound). ``crossfade`` is capped at a quarter of the clip. A clip already long enough is trimmed.
    """
    m = len(samples)
    if m == 0:
        raise ValueError("loop_to_length: empty clip")
    if m >= n:
        return samples[:n].astype(np.float32, copy=True)
    crossfade = max(0, min(int(crossfade), m // 4))
    step = m - crossfade
    out = np.zeros(n + m, dtype=np.float64)
    fade_in = np.sin(0.5 * np.pi * (np.arange(crossfade) + 0.5) / crossfade) if crossfade else np.ones(0)
    fade_out = fade_in[::-1]
    position = 0
    while position < n:
        copy = samples.astype(np.float64, copy=True)
        if position > 0 and crossfade:
            copy[:crossfade] *= fade_in
        if crossfade:
            copy[m - crossfade :] *= fade_out
        out[position : position + m] += copy
        position += step
    return out[:n].astype(np.float32)


@dataclass(frozen=True)
class SoundtrackStats:
    """How a bank clip became a soundtrack. Levels in dBFS; ``gain_db`` applied to the looped clip."""

    clip_seconds: float
    loops: float
    rms_dbfs: float
    peak_dbfs: float
    gain_db: float
    peak_limited: bool


def prepare_soundtrack(
    clip_path: str | os.PathLike,
    n_samples: int,
    sr: int,
    *,
    target_rms_dbfs: float = DEFAULT_TARGET_RMS_DBFS,
    peak_ceiling_dbfs: float = DEFAULT_PEAK_CEILING_DBFS,
    crossfade_s: float = DEFAULT_CROSSFADE_S,
) -> tuple[np.ndarray, SoundtrackStats]:
    """A mono soundtrack ``(n_samples,)`` float32 at ``sr`` Hz from one bank clip, loudness-normalised.

    The gain brings the whole track's RMS to ``target_rms_dbfs``, unless that would push a sample above
    ``peak_ceiling_dbfs``: then the gain stops at the ceiling and ``peak_limited`` is set (a quieter track,
    never a clipped one).
    """
    from verl_avconfuse.media import load_audio

    clip_path = Path(clip_path)
    if n_samples <= 0:
        raise ValueError(f"n_samples={n_samples} must be positive")
    clip = trim_edge_silence(load_audio(clip_path, sr=sr, mono=True))
    if clip.size == 0:
        raise BenchFormatError(f"{clip_path}: the sound clip is silent")
    track = loop_to_length(clip, n_samples, round(crossfade_s * sr))
    level = rms_dbfs(track)
    if not math.isfinite(level):
        raise BenchFormatError(f"{clip_path}: the sound clip is silent")
    gain_db = target_rms_dbfs - level
    peak = float(np.max(np.abs(track)))
    peak_after = 20 * math.log10(peak) + gain_db
    limited = peak_after > peak_ceiling_dbfs
    if limited:
        gain_db -= peak_after - peak_ceiling_dbfs
    track = (track.astype(np.float64) * 10 ** (gain_db / 20)).astype(np.float32)
    stats = SoundtrackStats(
        clip_seconds=len(clip) / sr,
        loops=n_samples / len(clip),
        rms_dbfs=rms_dbfs(track),
        peak_dbfs=20 * math.log10(float(np.max(np.abs(track)))),
        gain_db=gain_db,
        peak_limited=limited,
    )
    return track, stats
