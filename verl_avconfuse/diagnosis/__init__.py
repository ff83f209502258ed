"""Looking inside the model: the paper's root-cause analysis as a tool, beside the evaluation harness.

- :mod:`~verl_avconfuse.diagnosis.stats`: the maths (entropy, P(yes) by the evaluation's token rule, rank of
  the final answer, groups, means with confidence intervals); imports no model code.
- :mod:`~verl_avconfuse.diagnosis.lens`: the logit lens on an Omni thinker (both families), from one forward.
- :mod:`~verl_avconfuse.diagnosis.layer_entropy`: questions of an AV-ConfuseBench muted file -> per-layer
  curves per group -> ``layer_entropy.json`` / ``.md`` / ``.png``, and comparisons of several runs.
- :mod:`~verl_avconfuse.diagnosis.cli`: ``avconfuse diagnose layer-entropy``.

docs/diagnosis.md has what the paper's figure shows, how to reproduce it and what the logit lens cannot show.
Submodules are imported on use; importing this package is cheap.
"""
