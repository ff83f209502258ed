"""verl-avconfuse: RL-CoMM (arXiv 2511.10059) as a verl plugin.

Importing this package is cheap and has no side effects on verl; the registrations happen in
:mod:`verl_avconfuse.integration.plugin`, which verl imports through its ``verl.plugins`` entry point.

``verl_avconfuse.reward_fns``, ``verl_avconfuse.data_preprocess`` and the Hydra groups in
``verl_avconfuse.hydra_configs`` are links to the top-level ``reward_fns/``, ``data_preprocess/`` and
``recipes/`` folders: one copy of each, the same in a source checkout and in an installed wheel.
"""

from verl_avconfuse.version import __version__

__all__ = ["__version__"]
