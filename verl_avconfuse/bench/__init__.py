"""AV-ConfuseBench: build audio/visual confusion sets from real media and evaluate any model on them.

The benchmark (RL-CoMM, AAAI-26) has two settings:

- **muted** (:mod:`~verl_avconfuse.bench.muted`): one instrument's stem is removed from a multi-track
  recording (URMP layout or a manifest); the picture still shows it playing. "Is there a violin sound?"
  -> "no". Models that trust their eyes answer "yes".
- **modified** (:mod:`~verl_avconfuse.bench.modified`): a video's soundtrack is replaced by an
  environmental sound from a bank (:mod:`~verl_avconfuse.bench.sound_bank`: ESC-50, UrbanSound8K, a
  folder per class); the model is asked to describe what it sees and hears, scored against a reference
  annotation by a judge (:mod:`~verl_avconfuse.bench.judge`).

:mod:`~verl_avconfuse.bench.schemas` holds the published file formats and the verl parquet rows,
:mod:`~verl_avconfuse.bench.evaluate` runs a model (any :mod:`verl_avconfuse.evaluation.backends` backend),
:mod:`~verl_avconfuse.bench.report` writes JSON, markdown and a chart, :mod:`~verl_avconfuse.bench.cli` is
``avconfuse bench build muted|modified`` and ``avconfuse bench eval``. docs/avconfusebench.md has the details.

Submodules are imported on use; importing this package is cheap.
"""
