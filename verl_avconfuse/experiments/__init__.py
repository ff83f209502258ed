"""Experiments run on top of verl's own entry points, as subprocesses: "does it learn?" (:mod:`.learning`), the
metrics read back from verl's console lines (:mod:`.console_metrics`) and the provenance a result file records
(:mod:`.provenance`: command, commit, machine, dates, load)."""
