"""Benchmark evaluation: backends (who answers), tasks (what is asked and how it is scored), runner, report.

- :mod:`~verl_avconfuse.evaluation.backends`: :class:`EvalRequest`, the :class:`Backend` protocol,
  :class:`HFOmniBackend`, :class:`OpenAIBackend`, :class:`PredictionsBackend`, :func:`load_backend`.
- :mod:`~verl_avconfuse.evaluation.tasks`: one declared task per benchmark (Music-AVQA, AVQA, AVHBench).
- :mod:`~verl_avconfuse.evaluation.runner`: resumable runs with a prediction cache.
- :mod:`~verl_avconfuse.evaluation.report`: JSON + markdown tables.
- :mod:`~verl_avconfuse.evaluation.cli`: ``avconfuse eval TASK ...``.

Submodules are imported on use; importing this package is cheap.
"""
