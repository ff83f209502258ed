"""Hydra plugins that make ``+recipe=NAME`` find verl-avconfuse's ``recipes/NAME.yaml``.

Hydra discovers plugins in the ``hydra_plugins`` namespace package of any installed distribution,
in every Hydra app (verl's ``main_ppo`` and ``sft_trainer`` included), whatever the working directory:

- :class:`AvconfuseSearchPathPlugin` appends ``avconfuse://recipes`` to the config search path;
- :class:`AvconfuseRecipeSource` serves the config group ``recipe`` from the recipes folder, which
  is ``verl_avconfuse/hydra_configs/recipe/`` in an installed wheel and the top-level ``recipes/``
  when ``verl_avconfuse`` is imported from a source checkout (tests, ``PYTHONPATH=.``).
"""

from __future__ import annotations

import os

from hydra.core.config_search_path import ConfigSearchPath
from hydra.core.object_type import ObjectType
from hydra.plugins.config_source import ConfigLoadError, ConfigResult, ConfigSource
from hydra.plugins.search_path_plugin import SearchPathPlugin
from omegaconf import OmegaConf

PROVIDER = "verl-avconfuse"
SCHEME = "avconfuse"
GROUP = "recipe"


def recipes_dir() -> str | None:
    """The folder holding the recipe YAMLs of the ``verl_avconfuse`` Python imports."""
    import importlib.util

    spec = importlib.util.find_spec("verl_avconfuse")
    if spec is None or not spec.submodule_search_locations:
        return None
    for package_dir in spec.submodule_search_locations:
        for candidate in (
            os.path.join(package_dir, "hydra_configs", GROUP),
            os.path.join(os.path.dirname(package_dir), "recipes"),
        ):
            if os.path.isdir(candidate):
                return os.path.realpath(candidate)
    return None


class AvconfuseRecipeSource(ConfigSource):
    @staticmethod
    def scheme() -> str:
        return SCHEME

    def __init__(self, provider: str, path: str) -> None:
        super().__init__(provider=provider, path=path)
        self.recipes = recipes_dir()

    def _file(self, config_path: str) -> str | None:
        group, _, name = config_path.strip("/").partition("/")
        if group != GROUP or not name or self.recipes is None:
            return None
        return os.path.join(self.recipes, self._normalize_file_name(name))

    def available(self) -> bool:
        return self.recipes is not None

    def is_group(self, config_path: str) -> bool:
        return self.recipes is not None and config_path.strip("/") in ("", GROUP)

    def is_config(self, config_path: str) -> bool:
        path = self._file(config_path)
        return path is not None and os.path.isfile(path)

    def load_config(self, config_path: str) -> ConfigResult:
        path = self._file(config_path)
        if path is None or not os.path.isfile(path):
            raise ConfigLoadError(f"Config not found: {config_path} (verl-avconfuse recipes in {self.recipes})")
        with open(path, encoding="utf-8") as f:
            header = ConfigSource._get_header_dict(f.read(512))
            f.seek(0)
            return ConfigResult(
                config=OmegaConf.load(f), path=f"{SCHEME}://{path}", provider=self.provider, header=header
            )

    def list(self, config_path: str, results_filter: ObjectType | None) -> list[str]:
        files: list[str] = []
        where = config_path.strip("/")
        if where == "":
            self._list_add_result(files=files, file_path=GROUP, file_name=GROUP, results_filter=results_filter)
        elif where == GROUP and self.recipes is not None:
            for name in os.listdir(self.recipes):
                self._list_add_result(
                    files=files, file_path=f"{GROUP}/{name}", file_name=name, results_filter=results_filter
                )
        return sorted(set(files))


class AvconfuseSearchPathPlugin(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        search_path.append(provider=PROVIDER, path=f"{SCHEME}://recipes")
