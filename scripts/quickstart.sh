#!/usr/bin/env bash
# The main job on the embedded default: recipes/quickstart.yaml (all-MiniLM-L6-v2 and the Rotten
# Tomatoes reviews, both from PyPI packages): fine-tune, reorder, export, slice, int8/ternary,
# benchmark, project onto a Kirin 990 and a Raspberry Pi 4, and write the HTML report.
# Extra arguments go to `deploytool run` (e.g. -o DIR). Steps already done are reused.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$ROOT/scripts/setup_env.sh"
cd "$ROOT"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec "${DEPLOYTOOL_VENV:-$ROOT/.venv}/bin/deploytool" run recipes/quickstart.yaml -o runs/quickstart "$@"
