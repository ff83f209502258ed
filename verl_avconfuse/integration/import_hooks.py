"""Run a callback right after a module is imported (or now, if it already is).

verl loads ``verl.plugins`` entry points at the end of ``import verl`` in every process, including
every Ray worker. Most of what this plugin registers lives in modules that are expensive to import
(``verl.workers.rollout.base`` alone pulls in ~2 s of transformers/vLLM-facing code), and a Ray
worker that never builds a rollout must not pay for it. So registrations are deferred: each one
fires when verl itself imports the module that owns the registry.
"""

from __future__ import annotations

import importlib.abc
import logging
import sys
import threading
from collections import defaultdict
from collections.abc import Callable
from types import ModuleType

logger = logging.getLogger(__name__)

Callback = Callable[[ModuleType], None]

_pending: dict[str, list[Callback]] = defaultdict(list)
_lock = threading.RLock()
_finder: _PostImportFinder | None = None


def _run(name: str, module: ModuleType, callbacks: list[Callback]) -> None:
    for callback in callbacks:
        try:
            callback(module)
        except Exception:  # a broken registration must not break verl's own import
            logger.warning("verl-avconfuse: post-import hook %r for %s failed", callback, name, exc_info=True)


class _PostImportFinder(importlib.abc.MetaPathFinder):
    """Finds nothing itself; wraps the real loader of watched modules so hooks run after exec."""

    def __init__(self) -> None:
        self._resolving: set[str] = set()

    def find_spec(self, fullname, path, target=None):
        if fullname not in _pending or fullname in self._resolving:
            return None
        self._resolving.add(fullname)
        try:
            spec = None
            for finder in sys.meta_path:
                if finder is self or not hasattr(finder, "find_spec"):
                    continue
                spec = finder.find_spec(fullname, path, target)
                if spec is not None:
                    break
        finally:
            self._resolving.discard(fullname)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        original_exec = spec.loader.exec_module

        def exec_module(module: ModuleType) -> None:
            original_exec(module)
            with _lock:
                callbacks = _pending.pop(fullname, [])
            _run(fullname, module, callbacks)

        # Loaders are created per spec (SourceFileLoader(fullname, path)), so this is local.
        spec.loader.exec_module = exec_module
        return spec


def when_imported(module_name: str, callback: Callback) -> None:
    """Call ``callback(module)`` once ``module_name`` has been imported (immediately if it has)."""
    global _finder
    with _lock:
        module = sys.modules.get(module_name)
        initialized = module is not None and not getattr(getattr(module, "__spec__", None), "_initializing", False)
        if not initialized:
            _pending[module_name].append(callback)
            if _finder is None:
                _finder = _PostImportFinder()
                sys.meta_path.insert(0, _finder)
            return
    _run(module_name, module, [callback])


def pending_hooks() -> dict[str, int]:
    """Modules still awaited, with the number of hooks each (for diagnostics and tests)."""
    with _lock:
        return {name: len(callbacks) for name, callbacks in _pending.items() if callbacks}
