#!/usr/bin/env bash
# Set up the ARM64 emulator that `deploytool verify-arm64` uses: ONNX Runtime's Linux aarch64 wheel
# running under QEMU user-mode on this x86-64 machine. Everything goes into one user folder
# (default ~/.cache/deploytool/arm64); nothing system-wide changes: no `dpkg --add-architecture`,
# no binfmt_misc, no edits under /etc/apt (apt runs with a private APT_CONFIG under that folder).
#
#   qemu/qemu-aarch64   static QEMU 10 user-mode binary from Debian bookworm-backports' qemu-user
#                       (bookworm's own QEMU 7.2 crashes at `import onnxruntime` and computes wrong
#                       int8 results with SME, so it is not used)
#   rootfs/             an arm64 Debian 12 userland with python3.11 (packages unpacked, no chroot)
#   site/               aarch64 wheels unpacked: onnxruntime, numpy, protobuf, flatbuffers, packaging
#   READY               written last; its content names the versions
#
# Needs: Debian apt repositories (the ones this machine uses) and PyPI through pip. About 200 MB,
# one to two minutes. Idempotent: a finished set-up returns at once. Usage:
#   bash scripts/setup_arm64.sh [DIR]        (or DEPLOYTOOL_ARM64_HOME=DIR)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BASE=${1:-${DEPLOYTOOL_ARM64_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/deploytool/arm64}}
ORT_VERSION=${ORT_VERSION:-1.32.0}
NUMPY_VERSION=${NUMPY_VERSION:-2.4.6}
STAMP="ort=$ORT_VERSION numpy=$NUMPY_VERSION qemu=bookworm-backports python=3.11 v1"
QEMU=$BASE/qemu/qemu-aarch64
ROOTFS=$BASE/rootfs
SITE=$BASE/site

mkdir -p "$BASE"
# READY counts only with its parts: a folder whose qemu, python or onnxruntime was removed since is set up again
# (the missing part alone), not declared done (the user was told to run this script, which then did nothing)
ready() {
  [ -f "$BASE/READY" ] && [ "$(cat "$BASE/READY")" = "$STAMP" ] && [ -x "$QEMU" ] \
    && [ -x "$ROOTFS/usr/bin/python3.11" ] && [ -d "$SITE/onnxruntime" ]
}
if ready; then
  echo "$BASE"
  exit 0
fi
# one set-up at a time (tests and the CLI may start it in parallel)
exec 9>"$BASE/.lock"
flock 9
if ready; then
  echo "$BASE"
  exit 0
fi
rm -f "$BASE/READY"

die() { echo "setup_arm64: $*" >&2; exit 1; }
for tool in apt-get dpkg tar unzip; do
  command -v "$tool" >/dev/null 2>&1 || die "needs '$tool' (a Debian/Ubuntu host with apt)"
done
KEY=/usr/share/keyrings/debian-archive-keyring.gpg
[ -r "$KEY" ] || die "needs the Debian archive keyring $KEY (apt-get install debian-archive-keyring)"
# The Debian archive this machine already uses, else the public one.
MIRROR=""
if [ -r /etc/apt/sources.list.d/debian.sources ]; then
  MIRROR=$(sed -n 's#^URIs: *\(.*\)/debian/*$#\1#p' /etc/apt/sources.list.d/debian.sources | head -1)
fi
MIRROR=${MIRROR:-http://deb.debian.org}
SANDBOX_USER=$(id -un)

# mk_apt DIR ARCH "deb line" ...: an apt set-up that touches nothing outside DIR.
mk_apt() {
  local dir=$1 arch=$2; shift 2
  mkdir -p "$dir"/lists/partial "$dir"/archives/partial "$dir"/sources.d "$dir"/prefs.d
  : > "$dir/status"
  printf '%s\n' "$@" > "$dir/sources.list"
  cat > "$dir/apt.conf" <<EOF
APT::Architecture "$arch";
APT::Architectures { "$arch"; };
APT::Install-Recommends "false";
APT::Sandbox::User "$SANDBOX_USER";
Dir::State "$dir";
Dir::State::lists "$dir/lists";
Dir::State::status "$dir/status";
Dir::Cache "$dir";
Dir::Cache::archives "$dir/archives";
Dir::Etc::SourceList "$dir/sources.list";
Dir::Etc::SourceParts "$dir/sources.d";
Dir::Etc::Preferences "$dir/preferences";
Dir::Etc::PreferencesParts "$dir/prefs.d";
EOF
  APT_CONFIG=$dir/apt.conf apt-get -qq update || die "apt-get update failed for $arch ($MIRROR)"
}

# ------------------------------------------------------- 1. qemu-aarch64 10 (static binary)
if [ ! -x "$QEMU" ]; then
  echo "setup_arm64: fetching qemu-user (bookworm-backports)" >&2
  mk_apt "$BASE/apt-amd64" amd64 "deb [arch=amd64 signed-by=$KEY] $MIRROR/debian bookworm-backports main"
  ( cd "$BASE/apt-amd64/archives" && APT_CONFIG=$BASE/apt-amd64/apt.conf apt-get -qq download qemu-user/bookworm-backports ) \
    || die "cannot download qemu-user from bookworm-backports"
  mkdir -p "$BASE/qemu"
  dpkg --fsys-tarfile "$BASE"/apt-amd64/archives/qemu-user_*.deb | tar -x -O ./usr/bin/qemu-aarch64 > "$QEMU.tmp"
  chmod +x "$QEMU.tmp" && mv "$QEMU.tmp" "$QEMU"
  rm -rf "$BASE/apt-amd64"
fi
"$QEMU" --version | head -1 >&2

# ------------------------------------------- 2. arm64 userland with Python 3.11 (no chroot)
if [ ! -x "$ROOTFS/usr/bin/python3.11" ]; then
  echo "setup_arm64: fetching an arm64 python3.11 userland" >&2
  mk_apt "$BASE/apt-arm64" arm64 \
    "deb [arch=arm64 signed-by=$KEY] $MIRROR/debian bookworm main" \
    "deb [arch=arm64 signed-by=$KEY] $MIRROR/debian bookworm-updates main" \
    "deb [arch=arm64 signed-by=$KEY] $MIRROR/debian-security bookworm-security main"
  # an empty dpkg status makes apt download the whole dependency closure
  APT_CONFIG=$BASE/apt-arm64/apt.conf apt-get -qq install -y --download-only python3.11 libgomp1 libstdc++6 \
    || die "cannot download the arm64 python3.11 packages"
  rm -rf "$ROOTFS.tmp" && mkdir -p "$ROOTFS.tmp"
  for d in "$BASE"/apt-arm64/archives/*.deb; do dpkg -x "$d" "$ROOTFS.tmp"; done
  rm -rf "$ROOTFS.tmp/usr/share/doc" "$ROOTFS.tmp/usr/share/man" "$ROOTFS.tmp/usr/share/locale"
  rm -rf "$ROOTFS" && mv "$ROOTFS.tmp" "$ROOTFS"
  rm -rf "$BASE/apt-arm64"
fi

# --------------------------------------------------------------- 3. aarch64 wheels -> site
if [ ! -d "$SITE/onnxruntime" ]; then
  echo "setup_arm64: fetching the aarch64 onnxruntime $ORT_VERSION wheel" >&2
  PY=${PYTHON:-}
  if [ -z "$PY" ]; then
    for cand in "${DEPLOYTOOL_VENV:-$ROOT/.venv}/bin/python" python3; do
      if "$cand" -m pip --version >/dev/null 2>&1; then PY=$cand; break; fi
    done
  fi
  [ -n "$PY" ] || die "needs a Python with pip to download the aarch64 wheels"
  rm -rf "$BASE/wheels" "$SITE.tmp" && mkdir -p "$BASE/wheels" "$SITE.tmp"
  "$PY" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
      --platform manylinux2014_aarch64 --platform manylinux_2_27_aarch64 --platform manylinux_2_28_aarch64 \
      --python-version 3.11 --implementation cp --abi cp311 -d "$BASE/wheels" \
      "onnxruntime==$ORT_VERSION" "numpy==$NUMPY_VERSION" protobuf flatbuffers packaging \
    || die "cannot download the aarch64 wheels from PyPI"
  for w in "$BASE"/wheels/*.whl; do unzip -q -o "$w" -d "$SITE.tmp"; done
  rm -rf "$SITE" && mv "$SITE.tmp" "$SITE"
  rm -rf "$BASE/wheels"
fi

# ------------------------------------------------------------------------ 4. smoke test
PYTHONPATH=$SITE "$QEMU" -cpu cortex-a72 -L "$ROOTFS" "$ROOTFS/usr/bin/python3.11" -c \
  'import platform, onnxruntime as o; assert platform.machine() == "aarch64"; print("aarch64 onnxruntime", o.__version__, o.get_available_providers())' \
  >&2 || die "the emulated onnxruntime does not import"
echo "$STAMP" > "$BASE/READY"
echo "$BASE"
