"""Helpers for the end-to-end tests: run verl's entry point, read its console metrics."""

from __future__ import annotations

import subprocess
from pathlib import Path

from verl_avconfuse.console_metrics import parse_console_metrics

from conftest import REPO, run_python


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
