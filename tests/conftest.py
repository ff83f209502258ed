"""Shared fixtures, and what keeps the suite independent of the machine it runs on.

A run reads nothing it did not make or ship: the tiny offline models are built per session or per
builder-source key (never reused from another version of the builders), Hugging Face, matplotlib and
Ray caches are the session's own, Hypothesis keeps no example database in the working directory, and
data a test needs ships in ``tests/fixtures/`` or comes from the project's ``shared/`` folder, whose
absence skips the few tests that need it with a message saying where to put it.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"
#: Small real media files shipped with the tests (copies of shared/data/media/; see fixtures/media/README.md).
MEDIA = FIXTURES / "media"
SILENT_VIDEO = MEDIA / "video_only_no_audio.mp4"
WAV_16K = MEDIA / "clip_16k_mono.wav"
#: The published warm-up SFT message list (a copy of shared/data/warmup/).
WARMUP_RELEASE = FIXTURES / "warmup" / "warmup_sft_messages.json"

#: The project's read-only data folder (see shared/README.md): next to the checkout, or AVCONFUSE_SHARED_DIR.
DEFAULT_SHARED = REPO.parent / "shared"
SHARED = Path(os.environ.get("AVCONFUSE_SHARED_DIR") or DEFAULT_SHARED)
SHARED_HINT = (
    f"to run it, place the project's shared/ folder at {DEFAULT_SHARED} (next to the checkout) "
    "or set AVCONFUSE_SHARED_DIR=/path/to/shared"
)
#: The real 60 s audio-modified AV-ConfuseBench clip: 3.3 MB and one of the release's videos, which are not
#: redistributed, so it is read from shared/ and never copied into the repository.
DRILL_NAME = "combined_00000810_drill.mp4"

_SESSION_TMP: Path | None = None


def shared_file(relative: str) -> Path:
    """``SHARED/relative``, or skip the calling test saying how to provide it."""
    path = SHARED / relative
    if not path.is_file():
        pytest.skip(f"needs {relative} from the project's shared/ folder ({path} is absent); {SHARED_HINT}")
    return path


def _tiny_builders_key() -> str:
    """Digest of what decides the tiny assets' bytes: the installed builders' sources and library versions."""
    import importlib.util
    from importlib.metadata import version

    package = Path(next(iter(importlib.util.find_spec("verl_avconfuse").submodule_search_locations)))
    digest = hashlib.sha256(" ".join(version(name) for name in ("torch", "transformers", "tokenizers")).encode())
    # the builders (tiny/) and the synthetic clips their datasets hold (media/)
    for source in sorted([*package.glob("tiny/*.py"), *package.glob("media/*.py")]):
        digest.update(source.relative_to(package).as_posix().encode() + source.read_bytes())
    return digest.hexdigest()[:16]


def pytest_configure(config):
    global _SESSION_TMP
    _SESSION_TMP = Path(tempfile.mkdtemp(prefix="avconfuse-tests-"))
    # Every test (and every subprocess it starts) shares one tiny-asset folder, so the tiny models are
    # built once. CI points AVCONFUSE_TINY_DIR at a fresh folder. Otherwise pytest's cache keeps them
    # between runs, under a key that changes with the builders (a stale build is never reused); without
    # the cache plugin (-p no:cacheprovider) they are built in this session's temporary folder.
    if not os.environ.get("AVCONFUSE_TINY_DIR"):
        cache = getattr(config, "cache", None)
        if cache is None:
            folder = _SESSION_TMP / "tiny"
        else:
            root = Path(cache.mkdir("avconfuse_tiny"))
            folder = root / _tiny_builders_key()
            for stale in root.iterdir():  # builds of other builder versions are never read again
                if stale != folder:
                    shutil.rmtree(stale, ignore_errors=True)
        os.environ["AVCONFUSE_TINY_DIR"] = str(folder)
    # Nothing from the user's caches or the network: the tests build every model they load.
    os.environ["HF_HOME"] = str(_SESSION_TMP / "hf")
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["MPLCONFIGDIR"] = str(_SESSION_TMP / "matplotlib")
    os.environ["MPLBACKEND"] = "Agg"
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    # Ray 2.60 authenticates with a token that it otherwise reads from, or writes to, ~/.ray/auth_token:
    # a token of the session's own keeps token auth on and the user's HOME out of it (HOME may be read-only).
    os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)

    # Property tests: no example database in the working directory (an earlier run's failures would
    # change what this run tests) and no timing health check (a loaded machine is not a failure).
    from hypothesis import HealthCheck, settings
    from hypothesis.configuration import set_hypothesis_home_dir

    os.environ["HYPOTHESIS_STORAGE_DIRECTORY"] = str(_SESSION_TMP / "hypothesis")
    set_hypothesis_home_dir(_SESSION_TMP / "hypothesis")  # its caches too: nothing written to the cwd
    settings.register_profile("avconfuse", database=None, suppress_health_check=[HealthCheck.too_slow])
    settings.load_profile("avconfuse")


def pytest_unconfigure(config):
    if _SESSION_TMP is not None:
        shutil.rmtree(_SESSION_TMP, ignore_errors=True)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The project's shared/ folder (read-only), for the few tests that need data not shipped here."""
    if not SHARED.is_dir():
        pytest.skip(f"the project's shared/ folder {SHARED} is absent; {SHARED_HINT}")
    return SHARED


@pytest.fixture(scope="session")
def drill_clip() -> Path:
    """The real 60 s AV-ConfuseBench clip (h264 480x360, AAC stereo 44.1 kHz) from shared/data/media/."""
    return shared_file(f"data/media/{DRILL_NAME}")


@pytest.fixture(scope="session")
def tiny_asset():
    from verl_avconfuse.tiny.resolver import tiny_asset as resolve

    return resolve


def free_port() -> int:
    """A TCP port nobody listens on now, for torch.distributed's MASTER_PORT (a fixed one collides with
    another run of the same test on the machine)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_python(
    args: list[str], *, cwd: Path, env: dict[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess:
    """Run ``python ARGS`` in a clean subprocess (verl's own entry points run this way)."""
    full_env = {**os.environ, **(env or {})}
    full_env.setdefault("PYTHONUNBUFFERED", "1")
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout
    )


def verl_trainer_config(*overrides: str):
    """verl's ``ppo_trainer`` config composed with OVERRIDES (recipes included), as ``main_ppo`` composes it."""
    import verl
    from hydra import compose, initialize_config_dir

    config_dir = os.path.join(os.path.dirname(verl.__file__), "trainer", "config")
    with initialize_config_dir(config_dir=config_dir, version_base=None):
        return compose(config_name="ppo_trainer", overrides=list(overrides))


def verl_actor_config(*overrides: str):
    """verl's ``ActorConfig`` dataclass as ``main_ppo`` would build it from ``ppo_trainer`` plus OVERRIDES
    (recipes included), for tests that call verl's loss functions directly."""
    from omegaconf import OmegaConf
    from verl.utils.config import omega_conf_to_dataclass

    config = verl_trainer_config(*overrides)
    actor = OmegaConf.to_container(config.actor_rollout_ref.actor, resolve=False)
    return omega_conf_to_dataclass(OmegaConf.create(actor))


def _vllm_importable() -> bool:
    import importlib.util

    return importlib.util.find_spec("vllm") is not None


def pytest_collection_modifyitems(config, items):
    """Tests marked ``vllm`` run in the vLLM lane; elsewhere they are skipped, saying how to run them.

    In the lane (``AVCONFUSE_VLLM_LANE=1``, set by .ci/run) a missing vLLM is an error, not a skip.
    """
    if _vllm_importable():
        return
    if os.environ.get("AVCONFUSE_VLLM_LANE") == "1":
        raise pytest.UsageError(
            "AVCONFUSE_VLLM_LANE=1 but vLLM is not importable: build the lane with .ci/vllm_cpu_env.sh"
        )
    skip = pytest.mark.skip(
        reason="needs vLLM's CPU build: bash .ci/vllm_cpu_env.sh DIR; DIR/bin/python -m pytest -m vllm"
    )
    for item in items:
        if "vllm" in item.keywords:
            item.add_marker(skip)
