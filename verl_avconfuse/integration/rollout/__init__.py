"""Rollout backends. ``hf_server`` is imported lazily: it pulls in verl's rollout stack."""

#: The name users put in ``actor_rollout_ref.rollout.name``.
ROLLOUT_NAME = "hf"

__all__ = ["ROLLOUT_NAME"]
