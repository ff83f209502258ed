#!/usr/bin/env bash
# Does RL-CoMM learn? Stage 2 (Step-RR GRPO) on the tiny CPU task, offline, against a same-seed control
# with lr = 0 (verl_avconfuse/learning.py). Hyperparameters: recipes/cpu_learning.yaml on cpu_tiny.
#   OUT_DIR   logs, learning.json and curves.png (default outputs/cpu_learning)
# Prints first-k / last-k means of reward, format, accuracy and ARR for both runs, and ends with
#   LEARNING gain=G control_gain=C noise=S
# exiting 0 only when G > C + 2 S. Extra arguments are Hydra overrides for both runs.
set -euo pipefail

python -m verl_avconfuse.learning "${OUT_DIR:-outputs/cpu_learning}" "$@"
