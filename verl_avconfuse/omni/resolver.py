"""``${avconfuse_thinker:PATH}``: a thinker-only directory for a full or thinker-only Omni checkpoint.

Use it as the model path so verl trains the thinker of a full Qwen2.5-Omni checkpoint::

    actor_rollout_ref.model.path='${avconfuse_thinker:/models/Qwen2.5-Omni-3B}'

A thinker-only directory is returned as is; a full checkpoint's thinker is extracted once into
``AVCONFUSE_CACHE_DIR`` (default ``~/.cache/verl_avconfuse``), keyed by the checkpoint's path and
the modification time of its files, under a file lock (driver and workers may resolve at once).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

RESOLVER_NAME = "avconfuse_thinker"


def cache_root() -> Path:
    return Path(os.environ.get("AVCONFUSE_CACHE_DIR") or Path.home() / ".cache" / "verl_avconfuse")


def thinker_path(model_path: str) -> str:
    from filelock import FileLock

    from verl_avconfuse.omni.checkpoint import extract_thinker, is_full_omni

    source = Path(model_path).expanduser().resolve()
    if not (source / "config.json").is_file():
        raise ValueError(f"${{{RESOLVER_NAME}:{model_path}}}: {source / 'config.json'} does not exist")
    if not is_full_omni(source):
        return str(source)
    stamp = "|".join(
        f"{p.name}:{p.stat().st_mtime_ns}:{p.stat().st_size}" for p in sorted(source.iterdir()) if p.is_file()
    )
    key = hashlib.sha256(f"{source}|{stamp}".encode()).hexdigest()[:16]
    target = cache_root() / "thinkers" / f"{source.name}-{key}"
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if not target.exists():
            extract_thinker(source, target)
    return str(target)


def register_resolver() -> None:
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver(RESOLVER_NAME):
        OmegaConf.register_new_resolver(RESOLVER_NAME, thinker_path)
