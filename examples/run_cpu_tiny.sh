#!/usr/bin/env bash
# RL-CoMM stage 2 (Step-RR GRPO) for 2 steps on a CPU-only machine, offline, with tiny models.
# The tiny models and data are built on first use and cached (AVCONFUSE_TINY_DIR, default
# ~/.cache/verl_avconfuse/tiny). Extra arguments are passed to verl as Hydra overrides, e.g.
#   bash examples/run_cpu_tiny.sh trainer.total_training_steps=4
set -euo pipefail

python -m verl.trainer.main_ppo \
    +recipe=avconfuse \
    +machine=cpu_tiny \
    "$@"
