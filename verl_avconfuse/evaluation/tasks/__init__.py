"""The benchmarks, one declared task per module (:class:`~verl_avconfuse.evaluation.task.Task`): what is asked,
how it is scored, how it is grouped, and the paper's rows.

==========================  ===============================================
``music-avqa``              :mod:`.music_avqa`
``avqa``                    :mod:`.avqa`
``avhbench``                :mod:`.avhbench`
``avconfuse-muted``         :mod:`.avconfuse_muted`
``avconfuse-modified``      :mod:`.avconfuse_modified`
==========================  ===============================================

A new benchmark is a new module with a ``TASK`` and a line in :data:`TASKS`; the runner, cache, judge and
report need no change (docs/architecture.md).
"""

from __future__ import annotations

from verl_avconfuse.evaluation.task import EvalDoc, LoadOptions, ScoredDoc, Task, process_results
from verl_avconfuse.evaluation.tasks import avconfuse_modified, avconfuse_muted, avhbench, avqa, music_avqa
from verl_avconfuse.evaluation.tasks.avconfuse_muted import muted_cell

__all__ = [
    "SETTING_TASKS",
    "TASKS",
    "EvalDoc",
    "LoadOptions",
    "ScoredDoc",
    "Task",
    "get_task",
    "muted_cell",
    "process_results",
]

#: Every task by name, in the order the command line lists them.
TASKS: dict[str, Task] = {
    module.TASK.name: module.TASK for module in (music_avqa, avqa, avhbench, avconfuse_muted, avconfuse_modified)
}

#: ``avconfuse bench eval --setting S`` runs this task.
SETTING_TASKS = {"muted": "avconfuse-muted", "modified": "avconfuse-modified"}


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; known: {sorted(TASKS)}")
    return TASKS[name]
