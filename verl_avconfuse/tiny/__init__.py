"""Tiny offline assets: a locally trained tokenizer, tiny warm-started models and synthetic data.

Everything is built on this machine from a seed -- no hub downloads -- and saved as ordinary HF
directories (see :mod:`verl_avconfuse.tiny.models`). The names below are re-exported lazily, so
importing this package loads neither torch nor transformers.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "build_tokenizer": "verl_avconfuse.tiny.tokenizer",
    "make_qwen2_policy": "verl_avconfuse.tiny.models",
    "make_omni_thinker": "verl_avconfuse.tiny.models",
    "make_full_omni": "verl_avconfuse.tiny.models",
    "make_qwen2_audio": "verl_avconfuse.tiny.models",
    "make_embedder": "verl_avconfuse.tiny.models",
    "make_tiny_models": "verl_avconfuse.tiny.models",
    "TINY_MODELS": "verl_avconfuse.tiny.models",
    "DEFAULT_SET": "verl_avconfuse.tiny.models",
    "WARM_START_STEPS": "verl_avconfuse.tiny.models",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
