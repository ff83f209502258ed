"""A persistent cache of reference ``<a-think>`` paragraphs, keyed by content.

The key is a hash of (the audio file's bytes, question, answer, model, generation settings, prompt
version): the same clip under another path hits; an edited clip, another model, another temperature,
top-p, token budget, seed or backend, or another prompt misses. The reference worker owns the cache
(reward workers on other nodes ask the worker, never a file that may not exist on their node). SQLite in WAL mode
makes it safe for one writer (the reference worker) and many readers (reward workers, the
precompute CLI), and every insert is a transaction: a crash loses at most the current batch.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from verl_avconfuse.method.prompts import REFERENCE_PROMPT_VERSION

_HASH_CHUNK = 1 << 20
_identity_memo: dict[tuple[str, int, int], str] = {}
_memo_lock = threading.Lock()


def audio_identity(path: str | os.PathLike) -> str:
    """sha256 of the file's bytes (memoised per path, size and mtime within the process)."""
    path = os.path.abspath(os.fspath(path))
    stat = os.stat(path)
    memo_key = (path, stat.st_size, stat.st_mtime_ns)
    with _memo_lock:
        if memo_key in _identity_memo:
            return _identity_memo[memo_key]
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            digest.update(chunk)
    identity = digest.hexdigest()
    with _memo_lock:
        _identity_memo[memo_key] = identity
    return identity


@dataclass(frozen=True)
class ReferenceRequest:
    """What the reference audio LM is asked: the audio (a file with a soundtrack), question and answer."""

    audio_path: str
    question: str
    answer: str


def reference_key(
    request: ReferenceRequest,
    model_id: str,
    generation_settings: dict | None = None,
    prompt_version: str = REFERENCE_PROMPT_VERSION,
) -> str:
    """Content key: the clip's bytes, question, answer, model, every generation setting, prompt version."""
    payload = [
        audio_identity(request.audio_path),
        request.question.strip(),
        request.answer.strip(),
        model_id,
        sorted((generation_settings or {}).items()),
        prompt_version,
    ]
    return hashlib.sha256(json.dumps(payload).encode()).hexdigest()


class ReferenceCache:
    """``key -> a_think`` in ``<dir>/reference_a_think.sqlite``."""

    FILENAME = "reference_a_think.sqlite"

    def __init__(self, directory: str | os.PathLike, *, readonly: bool = False):
        self.path = Path(directory).expanduser() / self.FILENAME
        self.readonly = readonly
        if not readonly:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        if not readonly:
            with self._connection() as db:
                db.execute(
                    "CREATE TABLE IF NOT EXISTS reference (key TEXT PRIMARY KEY, a_think TEXT NOT NULL, "
                    "raw TEXT NOT NULL, model TEXT NOT NULL, prompt_version TEXT NOT NULL, created REAL NOT NULL)"
                )

    def _connection(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            if self.readonly:
                if not self.path.exists():
                    raise FileNotFoundError(f"{self.path}: no reference cache here yet")
                db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30)
            else:
                db = sqlite3.connect(self.path, timeout=30)
                db.execute("PRAGMA journal_mode=WAL")
            self._local.db = db
        return db

    def get_many(self, keys: list[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        db = self._connection()
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            rows = db.execute(
                f"SELECT key, a_think FROM reference WHERE key IN ({','.join('?' * len(chunk))})", chunk
            ).fetchall()
            found.update(rows)
        return found

    def put_many(
        self, entries: list[tuple[str, str, str]], *, model: str, prompt_version: str = REFERENCE_PROMPT_VERSION
    ) -> None:
        """Store ``(key, a_think, raw_generation)`` triples in one transaction."""
        if self.readonly:
            raise PermissionError(f"{self.path}: opened read-only")
        now = time.time()
        with self._connection() as db:
            db.executemany(
                "INSERT OR REPLACE INTO reference VALUES (?, ?, ?, ?, ?, ?)",
                [(key, a_think, raw, model, prompt_version, now) for key, a_think, raw in entries],
            )

    def __len__(self) -> int:
        return self._connection().execute("SELECT COUNT(*) FROM reference").fetchone()[0]
