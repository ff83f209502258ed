"""Helpers for the end-to-end tests: run verl's entry point, read its console metrics."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from conftest import REPO, run_python

_STEP_LINE = re.compile(r"step:(\d+) - (.*)$")
_NUMBER = re.compile(r"^(?:np\.\w+\()?(-?[\d.eE+-]+|nan|inf)\)?$")


def parse_console_metrics(log: str) -> dict[int, dict[str, float]]:
    """verl's console logger prints ``step:N - key:value - key:value ...``; numbers only."""
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


def ray_processes() -> set[int]:
    out = subprocess.run(["pgrep", "-f", "raylet|gcs_server|ray::"], capture_output=True, text=True).stdout
    return {int(pid) for pid in out.split()}


def run_main_ppo(tmp_path: Path, *overrides: str, timeout: float = 900) -> tuple[subprocess.CompletedProcess, dict]:
    result = run_python(["-m", "verl.trainer.main_ppo", *overrides], cwd=tmp_path, timeout=timeout)
    return result, parse_console_metrics(result.stdout + result.stderr)


def run_example(tmp_path: Path, script: str, *overrides: str, timeout: float = 900):
    import os
    import sys

    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}", "PYTHONUNBUFFERED": "1"}
    result = subprocess.run(
        ["bash", str(REPO / "examples" / script), *overrides],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return result, parse_console_metrics(result.stdout + result.stderr)
