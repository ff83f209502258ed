"""Hydra search-path plugin: makes ``+recipe=NAME`` find verl-avconfuse's ``recipes/NAME.yaml``.

Hydra discovers ``SearchPathPlugin`` subclasses in the ``hydra_plugins`` namespace package of any
installed distribution, in every Hydra app (verl's ``main_ppo`` included), whatever the working
directory.
"""

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin

PROVIDER = "verl-avconfuse"


class AvconfuseSearchPathPlugin(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        search_path.append(provider=PROVIDER, path="pkg://verl_avconfuse.hydra_configs")
