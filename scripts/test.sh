#!/usr/bin/env bash
# The whole offline test suite, in the project's own virtual environment.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$ROOT/scripts/setup_env.sh"
cd "$ROOT"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec "${DEPLOYTOOL_VENV:-$ROOT/.venv}/bin/python" -m pytest -q "$@"
