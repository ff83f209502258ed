"""The plugin loads through verl's entry point, cheaply, and stays out of the way when disabled."""

from __future__ import annotations

import json
from importlib.metadata import entry_points

from conftest import run_python

PROBE = """
import json, sys
import verl
from verl.plugin.platform import PlatformRegistry
print(json.dumps({
    "platforms": list(PlatformRegistry.registered_names()),
    "plugin_loaded": "verl_avconfuse.integration.plugin" in sys.modules,
    "heavy": [m for m in ("verl.workers.rollout.base", "verl.workers.engine", "sentence_transformers", "av")
              if m in sys.modules],
}))
"""


def _probe(tmp_path, env=None, prelude=""):
    result = run_python(["-c", prelude + PROBE], cwd=tmp_path, env=env, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_entry_point_is_declared_in_the_verl_plugins_group():
    names = {ep.name: ep.value for ep in entry_points(group="verl.plugins")}
    assert names.get("avconfuse") == "verl_avconfuse.integration.plugin"


def test_import_verl_loads_the_plugin_without_heavy_imports(tmp_path):
    state = _probe(tmp_path)
    assert state["plugin_loaded"]
    assert "cpu" in state["platforms"]
    # Registrations into the rollout/engine registries wait until verl imports those modules.
    assert state["heavy"] == []


def test_verl_use_external_plugins_none_leaves_verl_untouched(tmp_path):
    state = _probe(tmp_path, env={"VERL_USE_EXTERNAL_PLUGINS": "none"})
    assert not state["plugin_loaded"]
    assert "cpu" not in state["platforms"]


def test_plugin_survives_missing_optional_dependencies(tmp_path):
    # A None entry in sys.modules makes `import X` raise ImportError, as if X were not installed.
    prelude = "import sys\nfor m in ('av', 'soxr', 'soundfile', 'sentence_transformers', 'librosa'):\n    sys.modules[m] = None\n"
    state = _probe(tmp_path, prelude=prelude)
    assert state["plugin_loaded"] and "cpu" in state["platforms"]


def test_registries_are_filled_when_verl_imports_them(tmp_path):
    code = """
import json, verl
from verl.workers.rollout.base import _ROLLOUT_REGISTRY, get_rollout_class
from verl.workers.rollout.replica import RolloutReplicaRegistry
from verl.workers.engine import EngineRegistry
print(json.dumps({
    "adapter": get_rollout_class("hf", "async").__name__,
    "replica": RolloutReplicaRegistry.get("hf").__name__,
    "engine": EngineRegistry._engines["language_model"]["fsdp2"]["cpu"].__name__,
    "ans_co_engine": EngineRegistry._engines["language_model"]["fsdp2"][("cuda", "avconfuse_ans_co")].__name__,
}))
"""
    result = run_python(["-c", code], cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {
        "adapter": "HFServerAdapter",
        "replica": "HFRolloutReplica",
        "engine": "FSDPEngineWithLMHead",
        "ans_co_engine": "AnsCoFSDPEngineWithLMHead",
    }


def test_vllm_omni_backend_resolves_to_its_classes_and_needs_only_vllm(tmp_path):
    """verl's registries name our classes; without vLLM choosing vllm_omni fails on vLLM's absence alone, with
    vLLM (the lane) both resolve to the real subclasses of verl's vLLM rollout."""
    import importlib.util

    code = """
import json, verl
from verl.workers.rollout.base import _ROLLOUT_REGISTRY, get_rollout_class
from verl.workers.rollout.replica import RolloutReplicaRegistry
resolved = []
for resolve in (lambda: get_rollout_class("vllm_omni", "async"), lambda: RolloutReplicaRegistry.get("vllm_omni")):
    try:
        cls = resolve()
        resolved.append([cls.__module__ + "." + cls.__qualname__, [b.__module__ + "." + b.__qualname__ for b in cls.__mro__]])
    except Exception as e:
        resolved.append(["error", type(e).__name__, str(e)])
print(json.dumps({"adapter": _ROLLOUT_REGISTRY[("vllm_omni", "async")], "resolved": resolved}))
"""
    result = run_python(["-c", code], cwd=tmp_path, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    state = json.loads(result.stdout.strip().splitlines()[-1])
    assert state["adapter"] == "verl_avconfuse.integration.rollout.vllm_omni.OmniVLLMServerAdapter"
    if importlib.util.find_spec("vllm") is None:
        for error in state["resolved"]:  # verl's own vLLM server module refuses to import without vLLM, nothing else
            assert error[0] == "error" and error[1] == "ValueError" and "vllm version None" in error[2], error
        return
    (adapter, adapter_mro), (replica, replica_mro) = state["resolved"]
    assert adapter == "verl_avconfuse.integration.rollout.vllm_omni.OmniVLLMServerAdapter"
    assert "verl.workers.rollout.vllm_rollout.vllm_rollout.ServerAdapter" in adapter_mro
    assert replica == "verl_avconfuse.integration.rollout.vllm_omni.OmniVLLMReplica"
    assert "verl.workers.rollout.vllm_rollout.vllm_async_server.vLLMReplica" in replica_mro
