"""Hydra search-path plugin: puts verl-avconfuse's config groups on every Hydra app's search path.

Hydra discovers plugins in the ``hydra_plugins`` namespace package of any installed distribution, in
every Hydra app (verl's ``main_ppo`` and ``sft_trainer`` included), whatever the working directory.
This one appends ``pkg://verl_avconfuse.hydra_configs``, Hydra's own package config source, which holds
three groups (the top-level ``recipes/`` folder and its ``machine/`` and ``policy/``, linked into the package):

- ``recipe``: what to train (``+recipe=avconfuse``, ``+recipe=avconfuse_ansco``, ...);
- ``policy``: a policy model family other than Qwen2.5-Omni (``+policy=qwen3_omni``), after the recipe;
- ``machine``: where and at what scale (``+machine=cpu_tiny``), last.
"""

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin

PROVIDER = "verl-avconfuse"
SEARCH_PATH = "pkg://verl_avconfuse.hydra_configs"


class AvconfuseSearchPathPlugin(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        search_path.append(provider=PROVIDER, path=SEARCH_PATH)
