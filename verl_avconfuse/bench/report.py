"""AV-ConfuseBench's paper numbers and how the published question files are recognised.

The report itself (``{task}.results.json``, ``{task}.md``, ``{task}.png``) is written by the one report
writer of the harness, :mod:`verl_avconfuse.evaluation.report`; this module only says what it needs to know
about AV-ConfuseBench: the paper's Qwen2.5-Omni-3B numbers (:data:`PAPER_RESULTS`, shown next to ours when
the evaluated questions are the published ones, recognised by content: :func:`published_setting`).
"""

from __future__ import annotations

import hashlib
import json

from verl_avconfuse.bench.schemas import FIELDS

#: The paper's AV-ConfuseBench numbers for Qwen2.5-Omni-3B (muted Acc and Yes% in %, A-Acc and V-Acc as 0-5
#: judge means); ``None`` where the paper reports none. Keys are the harness's metric names.
PAPER_RESULTS: dict[str, dict[str, float | None]] = {
    "base": {"muted_accuracy": 8.22, "paper_yes_rate": 91.78, "a_acc": 1.14, "v_acc": 4.10},
    "+ SFT": {"muted_accuracy": 5.48, "paper_yes_rate": 94.52, "a_acc": None, "v_acc": None},
    "+ GRPO": {"muted_accuracy": 15.07, "paper_yes_rate": 84.93, "a_acc": 1.84, "v_acc": 4.47},
    "+ RL-CoMM": {"muted_accuracy": 27.40, "paper_yes_rate": 72.60, "a_acc": 2.36, "v_acc": 4.54},
}
#: sha256 of the published files' items (published fields only, sorted keys; see :func:`items_digest`).
PUBLISHED_DIGESTS = {
    "muted": "ad3410af491d7c3d129a94f32c051b9b9db07c93481402ab52d4e536cd9a07f1",
    "modified": "34fe6bfe4d2465221ae5200bef9a84242827581fa912aa5d2cb053c330959fa4",
}


def items_digest(items: list[dict], setting: str) -> str:
    """sha256 of the items' published fields (sorted keys, UTF-8): equal for a byte-different copy."""
    canonical = [{field: item[field] for field in FIELDS[setting]} for item in items]
    return hashlib.sha256(json.dumps(canonical, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()


def published_setting(items: list[dict], setting: str) -> bool:
    """Whether ``items`` are exactly the published question file of ``setting``."""
    return items_digest(items, setting) == PUBLISHED_DIGESTS.get(setting)
