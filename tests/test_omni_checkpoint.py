"""Thinker extraction, export back into a full Omni checkpoint, and parameter counts."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from verl_avconfuse.omni import checkpoint
from verl_avconfuse.omni.checkpoint import CheckpointError, extract_thinker, merge_thinker, parameter_counts
from verl_avconfuse.omni.cli import default_config_path

from conftest import run_python


@pytest.fixture(scope="module")
def full_dir(tiny_asset):
    return tiny_asset("models/omni_full")


def _state(model):
    return {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}


def test_extracted_thinker_loads_alone_with_the_full_models_thinker_weights(full_dir, tmp_path):
    from transformers import (
        AutoProcessor,
        Qwen2_5OmniForConditionalGeneration,
        Qwen2_5OmniThinkerForConditionalGeneration,
    )

    out = extract_thinker(full_dir, tmp_path / "thinker")
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "qwen2_5_omni_thinker"
    thinker = Qwen2_5OmniThinkerForConditionalGeneration.from_pretrained(out)
    full = Qwen2_5OmniForConditionalGeneration.from_pretrained(full_dir)
    expected = _state(full.thinker)
    got = _state(thinker)
    assert got.keys() == expected.keys()
    assert all(torch.equal(got[name], expected[name]) for name in expected)
    # the talker / token2wav tensors never made it into the thinker directory
    stored = load_file(str(out / "model.safetensors"))
    assert not any(name.startswith(("talker.", "token2wav.", "thinker.")) for name in stored)
    assert type(AutoProcessor.from_pretrained(out)).__name__ == "Qwen2_5OmniProcessor"


def test_export_puts_the_trained_thinker_back_and_keeps_talker_and_token2wav(full_dir, tmp_path):
    from transformers import Qwen2_5OmniForConditionalGeneration

    thinker_dir = extract_thinker(full_dir, tmp_path / "thinker")
    weights = load_file(str(thinker_dir / "model.safetensors"))
    generator = torch.Generator().manual_seed(0)
    trained = {name: t + 0.01 * torch.randn(t.shape, generator=generator).to(t.dtype) for name, t in weights.items()}
    save_file(trained, str(thinker_dir / "model.safetensors"), metadata={"format": "pt"})

    out = merge_thinker(full_dir, thinker_dir, tmp_path / "exported")
    original = Qwen2_5OmniForConditionalGeneration.from_pretrained(full_dir)
    exported = Qwen2_5OmniForConditionalGeneration.from_pretrained(out)
    exported_thinker = _state(exported.thinker)
    for name, tensor in trained.items():
        assert torch.equal(exported_thinker[name], tensor), name
    for part in ("talker", "token2wav"):
        before, after = _state(getattr(original, part)), _state(getattr(exported, part))
        assert before.keys() == after.keys()
        assert all(torch.equal(before[name], after[name]) for name in before), part
    # non-weight files (processor, tokenizer, speaker dictionary) travel with the export
    assert {p.name for p in checkpoint.Path(full_dir).iterdir() if p.suffix != ".safetensors"} <= {
        p.name for p in out.iterdir()
    }


def test_export_refuses_a_thinker_that_does_not_fit(full_dir, tmp_path):
    thinker_dir = extract_thinker(full_dir, tmp_path / "thinker")
    weights = load_file(str(thinker_dir / "model.safetensors"))
    name = next(iter(weights))
    weights[name] = torch.zeros(3, 3)
    save_file(weights, str(thinker_dir / "model.safetensors"))
    with pytest.raises(CheckpointError, match="shapes differ"):
        merge_thinker(full_dir, thinker_dir, tmp_path / "out")
    del weights[name]
    save_file(weights, str(thinker_dir / "model.safetensors"))
    with pytest.raises(CheckpointError, match="missing"):
        merge_thinker(full_dir, thinker_dir, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")] == []


def test_extract_and_export_name_what_is_wrong(full_dir, tiny_asset, tmp_path):
    with pytest.raises(CheckpointError, match="expected a full Qwen2.5-Omni config"):
        extract_thinker(tiny_asset("models/omni_thinker"), tmp_path / "x")
    with pytest.raises(CheckpointError, match="expected model_type 'qwen2_5_omni_thinker'"):
        merge_thinker(full_dir, full_dir, tmp_path / "y")
    (tmp_path / "exists").mkdir()
    with pytest.raises(CheckpointError, match="already exists"):
        extract_thinker(full_dir, tmp_path / "exists")


def test_thinker_resolver_extracts_a_full_checkpoint_once(full_dir, tiny_asset, tmp_path, monkeypatch):
    from verl_avconfuse.omni.resolver import thinker_path

    monkeypatch.setenv("AVCONFUSE_CACHE_DIR", str(tmp_path))
    copy = tmp_path / "omni_full"
    shutil.copytree(full_dir, copy)
    first = thinker_path(str(copy))
    assert json.loads((checkpoint.Path(first) / "config.json").read_text())["model_type"] == "qwen2_5_omni_thinker"
    assert thinker_path(str(copy)) == first
    thinker = tiny_asset("models/omni_thinker")
    assert thinker_path(thinker) == str(checkpoint.Path(thinker).resolve())


def test_parameter_counts_of_the_recorded_qwen2_5_omni_3b_config():
    counts = parameter_counts(json.loads(default_config_path().read_text()))
    # Published size of Qwen2.5-Omni-3B: 5.54 B parameters.
    assert counts["total"] == 5_537_120_640
    assert counts["thinker"] == 4_703_464_448
    assert (
        counts["thinker"] == counts["thinker.audio_tower"] + counts["thinker.visual"] + counts["thinker.language_model"]
    )
    assert counts["total"] == counts["thinker"] + counts["talker"] + counts["token2wav"]


def test_parameter_counts_match_a_real_model(full_dir):
    from transformers import Qwen2_5OmniForConditionalGeneration

    model = Qwen2_5OmniForConditionalGeneration.from_pretrained(full_dir)
    counts = parameter_counts(str(checkpoint.Path(full_dir) / "config.json"))
    assert counts["total"] == sum(p.numel() for p in model.parameters())
    assert counts["thinker"] == sum(p.numel() for p in model.thinker.parameters())


def test_cli_reports_thinker_versus_full_model(tmp_path):
    result = run_python(["-m", "verl_avconfuse.cli", "omni-params", "--json"], cwd=tmp_path, timeout=180)
    assert result.returncode == 0, result.stderr[-2000:]
    counts = json.loads(result.stdout[result.stdout.index("{") :])
    assert counts["thinker"] == 4_703_464_448
