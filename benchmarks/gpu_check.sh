#!/usr/bin/env bash
# GPU check for the training wing: bf16-autocast LoRA vs fp32 full fine-tuning on one GPU,
# steps per second and peak GPU memory, for the MiniLM backbone and an xlm-roberta-base-shaped
# one. Self-contained Python (torch, transformers, peft; no polars/faiss/datasets, no curation
# imports): benchmarks/training_gpu_check.py. Budget: well under 8 minutes on one H100/H200.
#
#   bash benchmarks/gpu_check.sh                     # on the GPU machine (results also in $OUT)
#   bash benchmarks/gpu_check.sh --device cpu --steps 5   # smoke mode on CPU
#
# Extra arguments go to the Python script (see its --help). PYTHON picks the interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false

if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
fi
"$PY" - <<'EOF'
import torch, transformers, peft
cuda = torch.cuda.is_available()
print(f"torch {torch.__version__} (cuda {torch.version.cuda}, available {cuda}"
      + (f", bf16 {torch.cuda.is_bf16_supported()}" if cuda else "") + f"), "
      f"transformers {transformers.__version__}, peft {peft.__version__}")
EOF
# 450 s leaves a margin inside the 8-minute budget.
exec timeout 450 "$PY" benchmarks/training_gpu_check.py "$@"
