"""Read the metrics of a verl run from its console log.

verl's ``console`` logger prints one line per step, ``step:N - key:value - key:value ...``. The
end-to-end tests and the benchmarks read their figures from there, as a user reading a log would.
"""

from __future__ import annotations

import re

_STEP_LINE = re.compile(r"step:(\d+) - (.*)$")
_NUMBER = re.compile(r"^(?:np\.\w+\()?(-?[\d.eE+-]+|nan|inf)\)?$")


def parse_console_metrics(log: str) -> dict[int, dict[str, float]]:
    """``{step: {metric: value}}`` for every step line in ``log`` (numeric values only)."""
    steps: dict[int, dict[str, float]] = {}
    for line in log.splitlines():
        match = _STEP_LINE.search(line)
        if not match:
            continue
        metrics = {}
        for item in match.group(2).split(" - "):
            key, _, value = item.rpartition(":")
            number = _NUMBER.match(value.strip())
            if key and number:
                metrics[key.strip()] = float(number.group(1))
        steps[int(match.group(1))] = metrics
    return steps
