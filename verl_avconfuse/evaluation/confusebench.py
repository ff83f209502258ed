"""AV-ConfuseBench evaluation: the muted and modified settings are tasks of the one harness.

``evaluate(questions, video_dir, backend, out_dir, setting=...)`` runs the ``avconfuse-muted`` /
``avconfuse-modified`` task (:mod:`verl_avconfuse.evaluation.tasks`) on the shared runner
(:mod:`verl_avconfuse.evaluation.runner`: one prediction cache, one report writer, one answer-matching
module), the setting read from the question file when not given.
"""

from __future__ import annotations

import os
from typing import Any


def evaluate(
    questions: str | os.PathLike,
    video_dir: str | os.PathLike,
    backend: Any,
    out_dir: str | os.PathLike,
    *,
    setting: str | None = None,
    **kwargs: Any,
) -> dict:
    """Run the AV-ConfuseBench task of ``setting`` (``None``: read from the file) on ``questions``.

    Keyword arguments are those of :func:`verl_avconfuse.evaluation.runner.evaluate` (``judge``,
    ``limit``, ``skip_bad``, ``yes_prob``, ``prompt``, ``match``, ``strict_format``, ``max_new_tokens`` ...).
    """
    from verl_avconfuse.bench.schemas import detect_setting, load_questions
    from verl_avconfuse.evaluation.runner import evaluate as run
    from verl_avconfuse.evaluation.tasks import SETTING_TASKS, get_task

    if str(questions) == "published" and setting is None:
        raise ValueError("questions='published' needs a setting")
    if setting is None:
        setting = detect_setting(load_questions(questions))
    kwargs.setdefault("progress", False)
    return run(get_task(SETTING_TASKS[setting]), backend, questions, video_dir, out_dir, **kwargs)
