#!/usr/bin/env bash
# The whole offline test suite, in the project's own virtual environment.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# a worker count that is no number ('two', '0') ran the suite in one process after bash's 'integer expression
# expected': refused before anything is installed or run (empty: the default, as unset)
if [ -n "${DEPLOYTOOL_TEST_WORKERS:-}" ]; then
  case "$DEPLOYTOOL_TEST_WORKERS" in
    *[!0-9]*) bad=1 ;;
    *) [ "$((10#$DEPLOYTOOL_TEST_WORKERS))" -ge 1 ] && bad=0 || bad=1 ;;
  esac
  if [ "$bad" = 1 ]; then
    echo "error: DEPLOYTOOL_TEST_WORKERS='$DEPLOYTOOL_TEST_WORKERS': expected a number of pytest workers >= 1" >&2
    exit 2
  fi
fi
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
# one pytest worker per usable core, at most 4 (pytest-xdist): alone the suite keeps about one core busy (load
# average 1.0 on 2 cores); 2 workers ran it in 17.6 min on 2026-12-06, one process in 19-32 min on earlier days
# (2 cores, 24 GB). DEPLOYTOOL_TEST_WORKERS=1 runs it in this one process (e.g. to debug a test)
PY="${DEPLOYTOOL_VENV:-$ROOT/.venv}/bin/python"
WORKERS=${DEPLOYTOOL_TEST_WORKERS:-$("$PY" -c 'import os; print(min(4, len(os.sched_getaffinity(0))))')}
if [ "$WORKERS" -gt 1 ]; then
  exec "$PY" -m pytest -q -n "$WORKERS" "$@"
fi
exec "$PY" -m pytest -q "$@"
