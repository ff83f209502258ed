"""The ${avconfuse_tiny:...} resolver, the tiny datasets and the CLI that exposes them."""

from __future__ import annotations

import pandas as pd
import pytest
from omegaconf import OmegaConf

from verl_avconfuse.tiny.resolver import RESOLVER_NAME, register_resolver, tiny_asset

from conftest import run_python


def test_resolver_builds_the_text_dataset_in_verls_row_schema():
    frame = pd.read_parquet(tiny_asset("data/text/train.parquet"))
    assert len(frame) == 32
    assert set(frame.columns) >= {"data_source", "prompt", "ability", "reward_model", "extra_info"}
    row = frame.iloc[0]
    assert row["prompt"][0]["role"] == "user" and "<answer>" in row["prompt"][0]["content"]
    assert row["reward_model"]["ground_truth"] in {"yes", "no", "one", "two", "three", "four"}


def test_resolver_is_usable_from_a_config_and_caches(monkeypatch):
    from pathlib import Path

    from verl_avconfuse.tiny import data

    register_resolver()
    built = Path(tiny_asset("data/text/val.parquet"))  # built now, or by an earlier test
    before = built.stat()

    def no_rebuild(*args, **kwargs):
        raise AssertionError("a cached tiny dataset was built again")

    monkeypatch.setattr(data, "build_tiny_dataset", no_rebuild)
    config = OmegaConf.create({"path": f"${{{RESOLVER_NAME}:data/text/val.parquet}}"})
    assert config.path == str(built)
    after = built.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


@pytest.mark.parametrize("name", ["weights/x", "models", "data/text", "data/nope/train.parquet"])
def test_resolver_rejects_bad_names_with_the_expected_form(name):
    with pytest.raises(ValueError, match=RESOLVER_NAME):
        tiny_asset(name)


def test_text_dataset_loads_in_verls_rlhf_dataset():
    from omegaconf import OmegaConf
    from transformers import AutoTokenizer
    from verl.utils.dataset.rl_dataset import RLHFDataset

    tokenizer = AutoTokenizer.from_pretrained(tiny_asset("models/qwen2"))
    config = OmegaConf.create({"max_prompt_length": 128, "filter_overlong_prompts_workers": 1})
    dataset = RLHFDataset(tiny_asset("data/text/train.parquet"), tokenizer, config)
    assert len(dataset) == 32
    item = dataset[0]
    assert item["raw_prompt"][0]["role"] == "user"
    assert item["reward_model"]["ground_truth"]


def test_cli_prints_the_cached_path(tmp_path):
    result = run_python(["-m", "verl_avconfuse.cli", "tiny-asset", "data/text/val.parquet"], cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == tiny_asset("data/text/val.parquet")
