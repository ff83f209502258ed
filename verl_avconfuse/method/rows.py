"""What a reward reports about the row it scored, so a dump can be joined back to the dataset.

verl writes its validation and rollout dumps sorted by a random per-sample uid; the row's own
``extra_info.index`` (every converter in this package writes one) is the only stable key. Rewards report it
as ``data_index`` beside their score (verl dumps each reward extra); it is not a metric.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

DATA_INDEX = "data_index"


def data_index(extra_info: Mapping[str, Any] | None) -> dict[str, int]:
    """``{"data_index": extra_info["index"]}`` when the row has an integer index, else ``{}``."""
    index = (extra_info or {}).get("index")
    try:
        return {DATA_INDEX: int(index)} if index is not None else {}
    except (TypeError, ValueError):
        return {}
