#!/usr/bin/env bash
# Installs everything the test suite needs on a Debian or Ubuntu machine that has only Python:
#   - system packages, when missing: libGL and glib (opencv-python loads them at import), espeak-ng (the
#     tests' speech), ffmpeg (the command line LatentSync's speech reader calls, compared against) and chromium
#     (the web demo's browser test), with apt-get as root or through sudo;
#   - genface with its test and web extras, at the versions CI passed with (tests/constraints.txt);
#   - the reference packages the parity tests compare against (tests/reference-requirements.txt).
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
ldconfig -p | grep -q 'libGL.so.1' || missing+=(libgl1)
ldconfig -p | grep -q 'libgthread-2.0.so.0' || missing+=(libglib2.0-0)
command -v espeak-ng >/dev/null || missing+=(espeak-ng)
command -v ffmpeg >/dev/null || missing+=(ffmpeg)
[ -x /usr/bin/chromium ] || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
  if ! command -v apt-get >/dev/null; then
    echo "tests/install.sh: install these (Debian names) with your package manager, then run it again: ${missing[*]}" >&2
    exit 1
  fi
  as_root=()
  [ "$(id -u)" -eq 0 ] || as_root=(sudo)
  echo "tests/install.sh: installing system packages: ${missing[*]}"
  "${as_root[@]}" apt-get update -qq
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi

python -m pip install torch==2.13.0 -e ".[test,web]" -c tests/constraints.txt
python -m pip install --no-deps -r tests/reference-requirements.txt
