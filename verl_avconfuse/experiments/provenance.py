"""Where a published figure came from: the record every result file in ``benchmarks/results/`` starts with.

A figure the README or ``docs/`` quote lives in a JSON file written, atomically, by the command that
measured it: :func:`result_record` gives that file's header (the command line, the checkout's commit and
whether it had uncommitted changes, the machine, the UTC start and end, the 1-minute load average at both)
and :func:`write_result` adds the raw values and writes it. ``tests/test_figures.py`` reads every quoted
figure back from these files.

Nothing here imports torch or verl at module level.
"""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

from verl_avconfuse.io import atomic_write_json

REPO = Path(__file__).resolve().parents[2]


def _git(*args: str) -> str | None:
    try:
        result = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def machine() -> dict[str, Any]:
    """CPU model and count, Python, torch and the device torch sees (no GPU: ``cpu``)."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    info: dict[str, Any] = {"cpu": cpu, "cpu_count": os.cpu_count(), "python": platform.python_version()}
    try:
        import torch

        info["torch"] = torch.__version__
        info["device"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
        info["torch_threads"] = torch.get_num_threads()
    except ImportError:
        pass
    return info


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def result_record(argv: list[str] | None = None) -> dict[str, Any]:
    """The header of a result file, taken when the measurement starts; :func:`write_result` completes it."""
    dirty = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "command": " ".join(argv if argv is not None else [Path(sys.executable).name, *sys.argv]),
        "commit": _git("rev-parse", "HEAD"),
        "uncommitted_changes": bool(dirty) if dirty is not None else None,
        "machine": machine(),
        "started": _now(),
        "load_1min_at_start": round(os.getloadavg()[0], 2),
    }


def write_result(path: str | os.PathLike, record: dict[str, Any], values: dict[str, Any]) -> Path:
    """``record`` (from :func:`result_record`) + end time and load + ``values``, written atomically."""
    payload = {**record, "finished": _now(), "load_1min_at_end": round(os.getloadavg()[0], 2), **values}
    return atomic_write_json(path, payload, parents=True, indent=1, sort_keys=True)
