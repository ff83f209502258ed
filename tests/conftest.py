"""Shared fixtures: one tiny-asset cache per test session, helpers to run verl in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def pytest_configure(config):
    # Every test (and every subprocess it starts) shares one tiny-asset cache per session, so the
    # tiny models are built once. CI points AVCONFUSE_TINY_DIR at a fresh folder.
    if not os.environ.get("AVCONFUSE_TINY_DIR"):
        os.environ["AVCONFUSE_TINY_DIR"] = str(Path(config.cache.mkdir("avconfuse_tiny")))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"shared data folder {SHARED} is absent")
    return SHARED


@pytest.fixture(scope="session")
def tiny_asset():
    from verl_avconfuse.tiny.resolver import tiny_asset as resolve

    return resolve


def run_python(
    args: list[str], *, cwd: Path, env: dict[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess:
    """Run ``python ARGS`` in a clean subprocess (verl's own entry points run this way)."""
    full_env = {**os.environ, **(env or {})}
    full_env.setdefault("PYTHONUNBUFFERED", "1")
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout
    )
