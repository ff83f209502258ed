"""Turn ``trainer.device=cpu`` into the CPU platform before verl's ``main`` runs.

verl 0.9.1's ``main_ppo.main`` starts with ``auto_set_device(config)``, which replaces
``trainer.device`` with whatever platform the driver resolved; on a machine without an accelerator
that is the ``nvidia`` fallback, so ``trainer.device=cpu`` alone would be silently rewritten to
``cuda``. Hydra calls ``on_job_start`` after composing the config and before the task function, so
this callback can select the CPU platform first. The recipes install it under
``hydra.callbacks.avconfuse_cpu_platform``; without a recipe, ``VERL_PLATFORM=cpu`` does the same.
"""

from __future__ import annotations

import logging
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

logger = logging.getLogger(__name__)


class CpuPlatformCallback(Callback):
    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        device = OmegaConf.select(config, "trainer.device", default=None)
        if device != "cpu":
            return
        from .cpu import activate_cpu_platform

        activate_cpu_platform()
        logger.info("trainer.device=cpu: verl runs on the CPU platform (VERL_PLATFORM=cpu)")
