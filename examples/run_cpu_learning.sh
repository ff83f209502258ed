#!/usr/bin/env bash
# Does RL-CoMM learn? A tiny CPU run, offline, against a same-seed control (verl_avconfuse/experiments/learning.py).
#   STAGE=2 (default)  Step-RR GRPO vs lr = 0; hyperparameters: recipes/machine/cpu_learning.yaml.
#                      Ends with  LEARNING gain=G control_gain=C noise=S   (G, C: rise of the reward)
#   STAGE=3            Step-RR + Ans-CO vs the policy gradient alone (ansco_coef = 0); recipes/machine/cpu_ansco_learning.yaml.
#                      Ends with  ANSCO entropy_drop=G control_drop=C noise=S   (fall of the answer entropy)
#   OUT_DIR            logs, learning.json and curves.png (default outputs/cpu_learning, outputs/cpu_ansco_learning)
# Echoes verl's step lines of each run as they come ([run] step:N - ..., [control] step:N - ...; the whole
# console logs are OUT_DIR/run.log and OUT_DIR/control.log), then the first-k / last-k means of the stage's
# metrics for both runs, exiting 0 only when G > C + 2 S.
# Extra arguments go to the tool: Hydra overrides for both runs, --k K, --machine NAME (another machine config),
# --arm LABEL:OVERRIDES (a further run against the same control), --result FILE (learning.json with the
# command, commit, machine, dates and load: how benchmarks/results/learning_stage{2,3}.json were written).
set -euo pipefail

STAGE="${STAGE:-2}"
if [[ "$STAGE" == 3 ]]; then default_out=outputs/cpu_ansco_learning; else default_out=outputs/cpu_learning; fi
python -m verl_avconfuse.experiments.learning "${OUT_DIR:-$default_out}" --stage "$STAGE" "$@"
