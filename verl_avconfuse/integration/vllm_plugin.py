"""verl-avconfuse as a vLLM plugin: the module named by the ``vllm.general_plugins`` entry point.

vLLM calls ``register`` in each of its processes (``vllm/plugins/__init__.py: load_general_plugins``, from
the engine arguments, the engine core and every worker), whoever started it: verl's rollout server, the
reference audio LM, ``avconfuse eval --backend vllm:PATH`` or a plain ``vllm serve``. It installs the Omni
thinker patches of :mod:`verl_avconfuse.integration.patches` (``VLLM_MODULE_PATCHES``), each when vLLM imports the
model module it targets, so a process that serves another model pays nothing. ``VLLM_PLUGINS`` (vLLM's own
switch) selects which plugins load; leave ``avconfuse`` out of it to run vLLM unpatched.

This module must stay cheap and never raise: it imports neither vLLM nor verl.
"""

from __future__ import annotations

import logging

logger = logging.getLogger("verl_avconfuse")

_REGISTERED = False


def register() -> None:
    """Install the vLLM patches lazily (idempotent)."""
    global _REGISTERED
    if _REGISTERED:
        return
    _REGISTERED = True
    try:
        from verl_avconfuse.integration import patches
        from verl_avconfuse.integration.import_hooks import when_imported

        for module_name, module_patches in patches.VLLM_MODULE_PATCHES.items():
            for target, patch in module_patches:
                when_imported(module_name, _logged(target, patch))
    except Exception:
        logger.warning("verl-avconfuse: could not register its vLLM patches", exc_info=True)


def _logged(target, patch):
    def apply(module) -> None:
        try:
            patch(module)
        except Exception:
            logger.warning("verl-avconfuse: could not patch %s.%s", target.module, target.attribute, exc_info=True)

    return apply
