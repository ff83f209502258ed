"""Benchmark evaluation, one harness: backends (who answers), tasks (what is asked and how it is scored),
answer rules, runner, report.

- :mod:`~verl_avconfuse.evaluation.backends`: :class:`EvalRequest`, the :class:`Backend` protocol,
  :class:`HFOmniBackend`, :class:`OpenAIBackend`, :class:`PredictionsBackend`, :func:`load_backend`.
- :mod:`~verl_avconfuse.evaluation.tasks`: one declared task per benchmark (Music-AVQA, AVQA, AVHBench,
  AV-ConfuseBench muted and modified).
- :mod:`~verl_avconfuse.evaluation.matching`: answer extraction, the strict and the release answer rules.
- :mod:`~verl_avconfuse.evaluation.runner`: resumable runs with a prediction cache, judge and P(yes) hooks.
- :mod:`~verl_avconfuse.evaluation.report`: JSON + markdown tables + PNG chart.
- :mod:`~verl_avconfuse.evaluation.cli`: ``avconfuse eval TASK ...`` (``avconfuse bench eval`` is an alias).

Submodules are imported on use; importing this package is cheap.
"""
