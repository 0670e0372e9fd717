#!/usr/bin/env bash
# The whole offline test suite, in the project's own virtual environment.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$ROOT/scripts/setup_env.sh"
cd "$ROOT"
# headless Chromium renders the HTML device report in tests/report/test_report.py (skipped, with the reason,
# where it cannot be installed); only when it is missing and apt is there, as root
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null 2>&1 \
    || echo "note: could not install chromium; the HTML report rendering test will be skipped" >&2
fi
# Debian's OpenSSH server: tests/remote/test_remote_bench.py starts its own sshd on 127.0.0.1 (temporary port and
# keys) for `bench --remote` end to end (skipped, with the reason, where it cannot be installed)
if [ ! -x /usr/sbin/sshd ] && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server) >/dev/null 2>&1 \
    || echo "note: could not install openssh-server; the bench --remote tests will be skipped" >&2
fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec "${DEPLOYTOOL_VENV:-$ROOT/.venv}/bin/python" -m pytest -q "$@"
