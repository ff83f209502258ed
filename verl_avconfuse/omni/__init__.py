"""The Qwen Omni families (Qwen2.5-Omni, Qwen3-Omni) as the RL policy: processors, TMRoPE (:mod:`.thinker`),
checkpoints, LoRA, the vLLM request and weight contract, vLLM's CPU environment. What verl is told about them
(datasets, rollout servers, the processor patch) is the integration layer's.

Submodules are imported on use; this package imports nothing heavy.
"""
