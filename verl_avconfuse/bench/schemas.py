"""AV-ConfuseBench file formats: the published question files, verl parquet rows, and atomic output writing.

Published formats (``avconfusebench_test_m1.json`` / ``_m2.json``, a JSON list of objects):

- muted: ``video_id``, ``question``, ``answer`` (``"no"``; a built set with controls also has ``"yes"``),
  ``instruments`` (``"violin, acoustic_guitar"``: every source of the original recording), ``instruments_len``
  (``"two"``, ``"three"``, ...).
- modified: ``video_id``, ``filename`` (``combined_{video_id}_{sound_type}.mp4``), ``question``,
  ``sound_type``, ``annotation`` (``"Based on the video, ... Based on the audio, ..."``).

Videos are looked up in a video directory as ``{video_id}.mp4`` (muted) and ``filename`` (modified).

verl rows follow the project's converters (``verl_avconfuse.tiny.data``): ``data_source``, ``prompt`` (one
user turn built by :func:`verl_avconfuse.method.prompts.format_question` with ``<video><audio>``), ``videos`` and
``audios`` (the clip's path in both: its soundtrack is the audio item), ``ability``, ``reward_model``
``{style, ground_truth}`` and ``extra_info`` ``{index, split, question, video_id, setting, ...}``.

Every file is written to a temp file in its directory and moved into place; a build stages its media in a
hidden folder inside the output directory and moves them out only once every item is built and checked
(:class:`StagedDirectory`), so an interrupted build leaves no partial file.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from verl_avconfuse.data_preprocess.common import verl_row
from verl_avconfuse.io import atomic_write_bytes, atomic_write_parquet

SETTINGS = ("muted", "modified")
MUTED_FIELDS = ("video_id", "question", "answer", "instruments", "instruments_len")
MODIFIED_FIELDS = ("video_id", "filename", "question", "sound_type", "annotation")
FIELDS = {"muted": MUTED_FIELDS, "modified": MODIFIED_FIELDS}
DATA_SOURCES = {"muted": "avconfusebench_muted", "modified": "avconfusebench_modified"}
#: Published question-file names, for ``--questions published``.
PUBLISHED_FILES = {"muted": "avconfusebench_test_m1.json", "modified": "avconfusebench_test_m2.json"}


def published_questions(setting: str) -> Path:
    """The released question file of ``setting``, shipped inside the package (``bench/published/``)."""
    from importlib.resources import files

    if setting not in PUBLISHED_FILES:
        raise ValueError(f"setting: expected one of {sorted(PUBLISHED_FILES)}, got {setting!r}")
    return Path(str(files("verl_avconfuse.bench") / "published" / PUBLISHED_FILES[setting]))


#: The published muted question with its typo fixed: 42 of the 73 published items say "Is thera a", the
#: other 31 "Is there a"; everything else (the article "a" before vowels, the spaces around the line
#: breaks, the instrument token with underscores) is kept as published.
MUTED_QUESTION_TEMPLATE = (
    "This is a video of audio corruption where some instrument sound is muted. Please answer:\n"
    " Is there a {source} sound? \nYour answer can only be 'yes' or 'no'"
)
#: The published modified question, verbatim (all 100 items).
MODIFIED_QUESTION = (
    "Describe what you see and what you hear. The output format should be as follows: "
    "Based on the video...\nBased on the audio..."
)
#: Reference annotation of a built modified item. The published ones read "Based on the video, <visual>.
#: Based on the audio,there is a sound of <phrase>.<clip-specific detail>"; the detail describes the
#: particular recording, so a template cannot fill it: a user adds it by editing the output if wanted.
ANNOTATION_TEMPLATE = "Based on the video, {visual} Based on the audio, there is a sound of {sound}."
#: What the published annotations call each sound type ("birds chirpin" typo fixed).
SOUND_PHRASES = {
    "bird": "birds chirping",
    "drill": "drilling",
    "rain": "rain falling",
    "thunderstorm": "thunder",
    "wind": "wind blowing",
}
#: Stands in for the visual description when no manifest gives one; the user replaces it.
VISUAL_PLACEHOLDER = "[describe what the video shows]"
MEDIA_PLACEHOLDERS = "<video><audio>"
YES, NO = "yes", "no"
#: Video files the builders and the evaluator recognise (lower-case extensions).
VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov", ".webm", ".avi")
#: Progress callback of builds and evaluations: ``(done, total, label)``.
ProgressFn = Callable[[int, int, str], None]

_NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
_AUDIO_MARKER = re.compile(r"based on the audio\s*[,:]?", re.IGNORECASE)
_VIDEO_MARKER = re.compile(r"based on the video\s*[,:]?", re.IGNORECASE)
# Hidden staging folders of interrupted builds (a hard kill skips the clean-up) are removed by the next build.
_STAGING_PREFIX = ".bench-staging-"


class BenchFormatError(ValueError):
    """A question file, manifest or bank does not have the expected layout; the message names file and field."""


# ------------------------------------------------------------------------------------------- texts


def number_word(n: int) -> str:
    """``instruments_len`` as published: ``2 -> "two"``; 11 and more as digits."""
    if n < 0:
        raise ValueError(f"number_word: n={n} must be >= 0")
    return _NUMBER_WORDS[n] if n < len(_NUMBER_WORDS) else str(n)


def render_muted_question(template: str, source: str) -> str:
    """The muted question about ``source`` (a Music-AVQA-style token such as ``acoustic_guitar``)."""
    if "{source}" not in template:
        raise ValueError(f"muted question template {template!r} must contain the field {{source}}")
    return template.replace("{source}", source)


def modified_filename(video_id: str, sound_type: str) -> str:
    """The published modified clip name: ``combined_{video_id}_{sound_type}.mp4``."""
    return f"combined_{video_id}_{sound_type}.mp4"


def sound_phrase(sound_type: str) -> str:
    """How an annotation names a sound type: the published phrase, else the type with spaces."""
    return SOUND_PHRASES.get(sound_type, sound_type.replace("_", " "))


def render_annotation(template: str, visual: str, sound_type: str) -> str:
    """Fill an annotation template's ``{visual}``, ``{sound}`` (phrase) and ``{sound_type}`` fields."""
    if "{visual}" not in template or ("{sound}" not in template and "{sound_type}" not in template):
        raise ValueError(f"annotation template {template!r} must contain {{visual}} and {{sound}} or {{sound_type}}")
    visual = visual.strip()
    if visual and visual[-1] not in ".!?":
        visual += "."
    return (
        template.replace("{visual}", visual)
        .replace("{sound_type}", sound_type)
        .replace("{sound}", sound_phrase(sound_type))
    )


def split_annotation(text: str) -> tuple[str, str]:
    """``(visual part, audio part)`` of a "Based on the video, ... Based on the audio, ..." text.

    The markers are matched case-insensitively and removed. Without the audio marker everything is the
    visual part (audio part ``""``); text before the video marker is dropped only when the marker exists.
    """
    audio_match = _AUDIO_MARKER.search(text)
    visual, audio = (text[: audio_match.start()], text[audio_match.end() :]) if audio_match else (text, "")
    video_match = _VIDEO_MARKER.search(visual)
    if video_match:
        visual = visual[video_match.end() :]
    return visual.strip(), audio.strip()


# ------------------------------------------------------------------------------------ question files


def _check_item(path: Path, index: int, item: Any, setting: str) -> dict:
    where = f"{path}: item {index}"
    if not isinstance(item, dict):
        raise BenchFormatError(f"{where}: expected an object with fields {list(FIELDS[setting])}, got {item!r:.80}")
    for field in FIELDS[setting]:
        if field not in item:
            raise BenchFormatError(f"{where} (video_id {item.get('video_id')!r}): missing field {field!r}")
        if not isinstance(item[field], str) or not item[field].strip():
            raise BenchFormatError(
                f"{where} (video_id {item.get('video_id')!r}): field {field!r} must be a non-empty string, "
                f"got {item[field]!r:.80}"
            )
    if setting == "muted" and item["answer"].strip().lower() not in (YES, NO):
        raise BenchFormatError(
            f"{where} (video_id {item['video_id']!r}): answer must be 'yes' or 'no', got {item['answer']!r}"
        )
    if setting == "modified" and not item["filename"].lower().endswith(VIDEO_SUFFIXES):
        raise BenchFormatError(
            f"{where} (video_id {item['video_id']!r}): filename {item['filename']!r} is not a video file name "
            f"(expected one of {', '.join(VIDEO_SUFFIXES)})"
        )
    return item


def detect_setting(items: Sequence[dict]) -> str | None:
    """``"modified"`` when the first item has a ``sound_type``, ``"muted"`` when it has ``instruments``."""
    if not items or not isinstance(items[0], dict):
        return None
    if "sound_type" in items[0]:
        return "modified"
    if "instruments" in items[0]:
        return "muted"
    return None


def load_questions(path: str | os.PathLike, setting: str | None = None) -> list[dict]:
    """Read and check a question file (published or built); ``setting=None`` infers it from the fields.

    Raises :class:`BenchFormatError` naming the file, the item and the field for anything malformed.
    Fields beyond the published ones are kept.
    """
    path = Path(path)
    if not path.is_file():
        raise BenchFormatError(f"{path}: question file not found")
    try:
        items = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BenchFormatError(f"{path}: not a JSON file ({e})") from None
    if not isinstance(items, list) or not items:
        raise BenchFormatError(f"{path}: expected a non-empty JSON list of question objects")
    if setting is None:
        setting = detect_setting(items)
        if setting is None:
            raise BenchFormatError(
                f"{path}: cannot tell the setting (items have neither 'instruments' nor 'sound_type')"
            )
    if setting not in SETTINGS:
        raise ValueError(f"setting={setting!r}: expected one of {SETTINGS}")
    return [_check_item(path, i, item, setting) for i, item in enumerate(items)]


def video_path_for(item: dict, setting: str, video_dir: str | os.PathLike) -> Path:
    """Where an item's clip lives in ``video_dir``: ``filename`` (modified) or ``{video_id}.mp4`` (muted).

    Falls back to ``{video_id}`` with another video extension; returns the primary name when none exists
    (the caller reports it missing).
    """
    video_dir = Path(video_dir)
    primary = video_dir / (item["filename"] if setting == "modified" else f"{item['video_id']}.mp4")
    if primary.is_file():
        return primary
    for suffix in VIDEO_SUFFIXES:
        candidate = video_dir / f"{item['video_id']}{suffix}"
        if candidate.is_file():
            return candidate
    return primary


# ----------------------------------------------------------------------------------- build manifests


def manifest_entries(
    path: str | os.PathLike, *, csv_columns: Sequence[str], csv_layout: str, json_layout: str
) -> tuple[bool, list[tuple[str, Any]]]:
    """The entries of a builder's input manifest, a CSV file (by extension) or a JSON list, unchecked.

    Returns ``(is_csv, [(where, entry), ...])``: a CSV row is a dict of its columns and ``where`` is
    ``"{path}: row N"`` (N counts the header as row 1, as a spreadsheet does); a JSON entry is as read and
    ``where`` is ``"{path}: entry i"``. ``csv_layout`` and ``json_layout`` describe the expected format
    in the errors (e.g. ``"video,source,stem[,id]"``, ``"{video, sources}"``).

    Raises:
        BenchFormatError: no such file, a CSV without one of ``csv_columns``, a JSON that is not a list.
    """
    path = Path(path)
    if not path.is_file():
        raise BenchFormatError(f"{path}: manifest not found")
    if path.suffix.lower() == ".csv":
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = [c for c in csv_columns if c not in (reader.fieldnames or [])]
            if missing:
                raise BenchFormatError(f"{path}: missing column(s) {missing}; expected {csv_layout}")
            return True, [(f"{path}: row {n}", row) for n, row in enumerate(reader, start=2)]
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BenchFormatError(f"{path}: not a JSON or CSV manifest ({e})") from None
    if not isinstance(data, list):
        raise BenchFormatError(f"{path}: expected a JSON list of {json_layout} objects")
    return False, [(f"{path}: entry {i}", entry) for i, entry in enumerate(data)]


def require_unique_keys(keys: Sequence[str], what: str) -> None:
    """Raise :class:`BenchFormatError` ``"{what} must be unique; repeated: [...]"`` if a key repeats.

    Keys seed the per-video picks and name the outputs, so two inputs with one key would collide.
    """
    repeated = sorted(key for key, count in Counter(keys).items() if count > 1)
    if repeated:
        raise BenchFormatError(f"{what} must be unique; repeated: {repeated}")


# ---------------------------------------------------------------------------------------- verl rows


def item_row(item: dict, setting: str, index: int, video_path: str | os.PathLike, extra: dict | None = None) -> dict:
    """One verl RL parquet row for a benchmark item (module docstring: the schema).

    Muted rows are graded by rule (``ground_truth`` = ``"yes"``/``"no"``); modified rows carry the reference
    annotation as ``ground_truth`` with style ``"model"`` (a judge grades them). ``extra`` adds keys to
    ``extra_info``; every row of one file must use the same keys (parquet structs are typed per column).
    """

    if setting not in SETTINGS:
        raise ValueError(f"setting={setting!r}: expected one of {SETTINGS}")
    path = str(Path(video_path).resolve())
    if setting == "muted":
        reward = {"style": "rule", "ground_truth": item["answer"]}
        info = {"instruments": item["instruments"], "instruments_len": item["instruments_len"]}
    else:
        reward = {"style": "model", "ground_truth": item["annotation"]}
        info = {"filename": item["filename"], "sound_type": item["sound_type"], "annotation": item["annotation"]}
    return verl_row(
        data_source=DATA_SOURCES[setting],
        question=item["question"],
        placeholders=MEDIA_PLACEHOLDERS,
        videos=[path],
        audios=[path],
        reward_style=reward["style"],
        ground_truth=reward["ground_truth"],
        index=index,
        split="test",
        extra_info={"video_id": item["video_id"], "setting": setting, **info, **(extra or {})},
    )


# ------------------------------------------------------------------------------------------ writing


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def json_bytes(obj: Any) -> bytes:
    """The JSON text every output file uses: UTF-8, 2-space indent, keys in insertion order, final newline."""
    return (json.dumps(obj, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as :func:`json_bytes` atomically (:mod:`verl_avconfuse.io`), creating the folder."""
    return atomic_write_bytes(path, json_bytes(obj), parents=True)


def write_parquet(path: str | os.PathLike, rows: list[dict]) -> Path:
    """Write rows as parquet atomically. pyarrow's output is byte-identical for identical rows (checked)."""
    return atomic_write_parquet(path, rows, parents=True, index=False)


class StagedDirectory:
    """Files of one build, written into a hidden folder of ``out_dir`` and moved out together.

    ``path(name)`` gives the staging path of an output (``name`` relative to ``out_dir``); :meth:`commit`
    moves every staged file to ``out_dir / name`` (``os.replace``, same file system) in the given order and
    removes the folder; :meth:`abort` deletes the folder, and ``out_dir`` too when this build created it and
    it is still empty. Used as a context manager, an exception (or ``KeyboardInterrupt``) aborts. Staging folders left by a hard-killed build are removed on creation.
    """

    def __init__(self, out_dir: str | os.PathLike) -> None:
        self.out_dir = Path(out_dir)
        # The folders this build creates (out_dir and missing parents): an aborted build removes them again
        # when they are still empty, so a failed first build leaves no empty --out folder behind.
        self._created = [p for p in (self.out_dir, *self.out_dir.parents) if not p.exists()]
        self.out_dir.mkdir(parents=True, exist_ok=True)
        for stale in self.out_dir.glob(f"{_STAGING_PREFIX}*"):
            if stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
        self.root = Path(tempfile.mkdtemp(prefix=_STAGING_PREFIX, dir=self.out_dir))
        self._staged: list[str] = []

    def path(self, name: str) -> Path:
        staged = self.root / name
        staged.parent.mkdir(parents=True, exist_ok=True)
        if name not in self._staged:
            self._staged.append(name)
        return staged

    def commit(self, last: Iterable[str] = ()) -> list[Path]:
        """Move staged files into ``out_dir``; names in ``last`` go last, in that order (the indexes)."""
        last = list(last)
        order = [n for n in self._staged if n not in last] + [n for n in last if n in self._staged]
        moved = []
        for name in order:
            source = self.root / name
            if not source.exists():
                continue  # staged path handed out but never written (e.g. a reused output)
            target = self.out_dir / name
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(source, target)
            moved.append(target)
        shutil.rmtree(self.root, ignore_errors=True)
        return moved

    def abort(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
        for folder in self._created:  # innermost first
            try:
                folder.rmdir()
            except OSError:  # not empty (someone else wrote there) or already gone
                break

    def __enter__(self) -> StagedDirectory:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()


def file_fingerprint(path: str | os.PathLike) -> dict:
    """What identifies an input file for reuse decisions: resolved path, size, modification time (ns)."""
    path = Path(path)
    stat = path.stat()
    return {"path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def spec_digest(spec: dict) -> str:
    """sha256 of a JSON-serialisable build spec (sorted keys), the key that decides whether to rebuild."""
    return hashlib.sha256(json.dumps(spec, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()


def reusable_outputs(out_dir: Path, manifest_name: str) -> dict[str, dict]:
    """``{spec_sha256: manifest record}`` of a previous build whose output file still has its recorded hash."""
    manifest = out_dir / manifest_name
    if not manifest.is_file():
        return {}
    try:
        records = json.loads(manifest.read_text(encoding="utf-8")).get("items", [])
    except (json.JSONDecodeError, AttributeError, UnicodeDecodeError):
        return {}
    reusable = {}
    for record in records:
        if not isinstance(record, dict) or not record.get("spec_sha256") or not record.get("file"):
            continue
        target = out_dir / record["file"]
        if target.is_file() and sha256_file(target) == record.get("sha256"):
            reusable[record["spec_sha256"]] = record
    return reusable


def previous_outputs(out_dir: Path, manifest_name: str) -> set[str]:
    """Files (relative to ``out_dir``) a previous build's manifest lists."""
    manifest = out_dir / manifest_name
    try:
        records = json.loads(manifest.read_text(encoding="utf-8")).get("items", [])
    except (OSError, json.JSONDecodeError, AttributeError, UnicodeDecodeError):
        return set()
    return {r["file"] for r in records if isinstance(r, dict) and isinstance(r.get("file"), str)}


#: Part of every build spec: bump when a builder's output for the same inputs changes.
BUILDER_VERSION = "1"
VIDEO_SUBDIR = "videos"


@dataclass
class BuildResult:
    """What a build wrote: published items, verl rows, the manifest, and the output paths."""

    items: list[dict]
    rows: list[dict]
    manifest: dict
    paths: dict[str, Path]
    built: int
    reused: int


def output_names(setting: str) -> dict[str, str]:
    """File names of a build in its output folder: question JSON, verl parquet, build manifest."""
    stem = f"avconfusebench_{setting}"
    return {"questions": f"{stem}.json", "parquet": f"{stem}.parquet", "manifest": f"{stem}.manifest.json"}


def commit_build(
    staging: StagedDirectory, setting: str, items: list[dict], rows: list[dict], manifest: dict
) -> dict[str, Path]:
    """Stage the three index files, move everything into place (indexes last), delete stale outputs.

    Stale outputs are media files the previous manifest of this setting listed that the new one does not
    (a re-run with fewer items); nothing else in the folder is touched.
    """
    names = output_names(setting)
    out_dir = staging.out_dir
    before = previous_outputs(out_dir, names["manifest"])
    write_json(staging.path(names["questions"]), items)
    write_parquet(staging.path(names["parquet"]), rows)
    write_json(staging.path(names["manifest"]), manifest)
    staging.commit(last=[names["questions"], names["parquet"], names["manifest"]])
    current = {record["file"] for record in manifest["items"]}
    for stale in sorted(before - current):
        target = out_dir / stale
        if target.is_file() and target.resolve().is_relative_to(out_dir.resolve()):
            target.unlink()
    return {key: out_dir / name for key, name in names.items()}
