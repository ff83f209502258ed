"""Everything that touches verl or Ray, in one layer: the plugin verl loads, the monkeypatches, the trainer,
the Ray placement of the reference and similarity workers, the ``step_rr`` reward manager, the Ans-CO actor
wiring, the Omni datasets, the ``hf`` and ``vllm_omni`` rollouts, the CPU platform and its Hydra callback.

The method (:mod:`verl_avconfuse.method`) and the domain parts (omni, reference, media, data, evaluation,
bench, tiny) never import this package; docs/architecture.md has the allowed arrows. Submodules are imported
on use; importing this package imports none of them (the plugin keeps ``import verl`` cheap).
"""
