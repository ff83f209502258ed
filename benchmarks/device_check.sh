#!/usr/bin/env bash
# The GPU check (benchmarks/device_check.py): Ans-CO at Qwen2.5-Omni-3B's dimensions, HF rollout of a
# random-init 3B thinker and the same thinker on vLLM (when vLLM is installed, e.g. verl[vllm]==0.9.1; skipped
# and said so otherwise), Qwen3-Embedding-0.6B-sized similarity, and RL-CoMM's 7B-shaped reference against
# that rollout (the reference prefetch's comparison at real sizes). One GPU, bf16, random weights, offline.
#
#   bash benchmarks/device_check.sh [OUT_DIR [device_check.py options]]   # OUT_DIR: $OUT, else benchmarks/results
#
# Needs torch and transformers only (this checkout goes on PYTHONPATH; nothing is downloaded). Wheels
# put in benchmarks/wheels/ are installed first (none are needed today). Stops itself after
# DEVICE_CHECK_TIMEOUT_S (default 450 s) so that a whole run fits in 8 minutes; device_check.json
# is rewritten after every section, so a run cut short keeps what it measured.
set -euo pipefail
cd "$(dirname "$0")/.."
out_dir="${1:-${OUT:-benchmarks/results}}"
if [ $# -gt 0 ]; then shift; fi
mkdir -p "$out_dir"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false

if compgen -G "benchmarks/wheels/*.whl" >/dev/null; then
    python -m pip install --no-index --no-deps --quiet benchmarks/wheels/*.whl
fi
{ nvidia-smi || echo "nvidia-smi: not found"; } >"$out_dir/nvidia-smi.txt" 2>&1
python - <<'PY'
import torch, transformers
assert torch.cuda.is_available(), "device_check.sh: torch sees no CUDA device"
print(f"torch {torch.__version__}, transformers {transformers.__version__}, {torch.cuda.get_device_name(0)}")
import verl_avconfuse.method.ans_co  # the checkout's Ans-CO must import with torch alone
PY
timeout "${DEVICE_CHECK_TIMEOUT_S:-450}" python benchmarks/device_check.py --out "$out_dir/device_check.json" "$@" \
    2>&1 | tee "$out_dir/device_check.log"
