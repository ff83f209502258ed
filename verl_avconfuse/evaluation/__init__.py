"""Benchmark evaluation, one harness: backends (who answers), tasks (what is asked and how it is scored),
answer rules, runner, report.

- :mod:`~verl_avconfuse.evaluation.backends`: :class:`EvalRequest`, the :class:`Backend` protocol,
  :class:`HFOmniBackend`, :class:`OpenAIBackend`, :class:`PredictionsBackend`, :func:`load_backend`.
- :mod:`~verl_avconfuse.evaluation.task`: what a declared task is (:class:`Task`, :class:`EvalDoc`, the shared
  scoring); :mod:`~verl_avconfuse.evaluation.tasks`: one module per benchmark (Music-AVQA, AVQA, AVHBench,
  AV-ConfuseBench muted and modified) and the registry.
- :mod:`~verl_avconfuse.evaluation.judge`: the modified setting's judge (offline or an OpenAI-compatible LLM);
  :mod:`~verl_avconfuse.evaluation.yes_probability`: a yes/no reply's P(yes);
  :mod:`~verl_avconfuse.evaluation.confusebench`: AV-ConfuseBench's ``evaluate``.
- :mod:`~verl_avconfuse.evaluation.matching`: answer extraction, the strict and the release answer rules.
- :mod:`~verl_avconfuse.evaluation.runner`: resumable runs with a prediction cache, judge and P(yes) hooks.
- :mod:`~verl_avconfuse.evaluation.report`: JSON + markdown tables + PNG chart.
- :mod:`~verl_avconfuse.evaluation.cli`: ``avconfuse eval TASK ...`` (``avconfuse bench eval`` is an alias).

Submodules are imported on use; importing this package is cheap.
"""
