"""Qwen2.5-Omni (thinker) as verl's RL policy: processor, TMRoPE, checkpoints, vLLM contract.

Submodules are imported on use; this package imports nothing heavy.
"""
