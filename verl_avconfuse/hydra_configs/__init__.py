"""Hydra config root: ``recipe/`` here is the top-level ``recipes/`` folder, mapped at install time."""
