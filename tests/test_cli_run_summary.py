"""The main job's last lines: steps, the last step's rewards, where checkpoints and metrics went."""

from __future__ import annotations

from omegaconf import OmegaConf

from verl_avconfuse.integration.trainer import run_summary


def _trainer(**overrides):
    base = {
        "project_name": "avconfuse",
        "experiment_name": "cpu_tiny",
        "default_local_dir": "checkpoints/avconfuse/cpu_tiny",
        "save_freq": -1,
        "logger": ["console"],
        "rollout_data_dir": None,
    }
    return OmegaConf.create({**base, **overrides})


def test_summary_of_a_cpu_tiny_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    metrics = {"critic/score/mean": 1.503125, "reward/arr/mean": 0.25, "reward/format/mean": 0.5, "timing/s": 9.0}
    text = run_summary(_trainer(), 2, metrics, 104.6)
    assert text.splitlines() == [
        "avconfuse: training finished: 2 step(s) in 105 s",
        "  last step: critic/score/mean 1.503, reward/format/mean 0.5, reward/arr/mean 0.25",
        "  checkpoints: none saved (trainer.save_freq=-1; set it to save)",
        "  metrics: console (the step: lines above)",
    ]


def test_summary_names_absolute_checkpoint_log_and_rollout_folders(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("VERL_FILE_LOGGER_PATH", raising=False)
    monkeypatch.delenv("VERL_FILE_LOGGER_ROOT", raising=False)
    monkeypatch.setenv("TENSORBOARD_DIR", "tb")
    config = _trainer(save_freq=5, logger=["console", "file", "tensorboard", "wandb"], rollout_data_dir="dumps")
    lines = run_summary(config, 10, {}, 3600.0).splitlines()
    assert lines[0] == "avconfuse: training finished: 10 step(s) in 3600 s"  # no rewards logged: no line
    assert lines[1].startswith(f"  checkpoints: {tmp_path}/checkpoints/avconfuse/cpu_tiny/global_step_N")
    assert lines[2] == (
        f"  metrics: console (the step: lines above); file {tmp_path}/avconfuse/cpu_tiny.jsonl; "
        f"tensorboard {tmp_path}/tb; wandb (project avconfuse, experiment cpu_tiny)"
    )
    assert lines[3] == f"  rollouts: {tmp_path}/dumps"


def test_summary_adds_up_the_reference_costs_over_the_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    totals = {
        "timing_s/reference_generate": 12.34,
        "timing_s/reference_wait": 0.5,
        "timing_s/similarity": 3.21,
        "timing_s/step": 50.0,
        "reference/prefetched": 16.0,
    }
    lines = run_summary(_trainer(), 8, {"reward/arr/mean": 0.25}, 60.0, totals).splitlines()
    assert lines[2] == (
        "  reference over the run: generated 12.3 s, the rewards waited 0.5 s (1% of the steps' time), "
        "embedder 3.2 s; 16 prompts prefetched"
    )
    # Without a reference worker (precomputed references, other rewards) there is nothing to add up.
    assert not any("reference over the run" in line for line in run_summary(_trainer(), 8, {}, 60.0, {}).splitlines())
