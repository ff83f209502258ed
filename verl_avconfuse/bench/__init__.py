"""AV-ConfuseBench: build audio/visual confusion sets from real media (evaluating a model on them is the
evaluation harness's: the ``avconfuse-muted`` / ``avconfuse-modified`` tasks of :mod:`verl_avconfuse.evaluation`).

The benchmark (RL-CoMM, AAAI-26) has two settings:

- **muted** (:mod:`~verl_avconfuse.bench.muted`): one instrument's stem is removed from a multi-track
  recording (URMP layout or a manifest); the picture still shows it playing. "Is there a violin sound?"
  -> "no". Models that trust their eyes answer "yes".
- **modified** (:mod:`~verl_avconfuse.bench.modified`): a video's soundtrack is replaced by an
  environmental sound from a bank (:mod:`~verl_avconfuse.bench.sound_bank`: ESC-50, UrbanSound8K, a
  folder per class); the model is asked to describe what it sees and hears, scored against a reference
  annotation by a judge (:mod:`~verl_avconfuse.evaluation.judge`).

:mod:`~verl_avconfuse.bench.schemas` holds the published file formats and the verl parquet rows,
:mod:`~verl_avconfuse.bench.report` the paper's rows and how a published set is recognised,
:mod:`~verl_avconfuse.bench.cli` is ``avconfuse bench build muted|modified`` (``avconfuse bench eval`` comes from
:mod:`verl_avconfuse.evaluation.cli`). This package imports nothing of the evaluation harness.
docs/avconfusebench.md has the details.

Submodules are imported on use; importing this package is cheap.
"""
