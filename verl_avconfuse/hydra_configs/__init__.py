"""Hydra config root (``pkg://verl_avconfuse.hydra_configs``): the groups ``recipe/``, ``policy/`` and ``machine/``.

Both are links to the top-level ``recipes/`` folder (``recipes/*.yaml``, ``recipes/policy/*.yaml``, ``recipes/machine/*.yaml``),
so a source checkout and an installed wheel (where setuptools copies the files) read the same YAMLs.
"""
