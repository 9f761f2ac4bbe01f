#!/usr/bin/env bash
# Prepares, on this machine, what a lent GPU machine lacks for `python -m benchmarks.device`. Its image has
# Python 3.12 with torch, transformers, accelerate, safetensors, opencv and numpy, but not these, and it has
# no network: they travel as wheels in .device/wheels (git-ignored), which the device tool carries with the
# working tree (64 MiB in all). The device run is then, in one call of the device tool (carry [".device"]):
#
#   pip install -q --no-index --no-deps .device/wheels/*.whl && pip install -q --no-deps --no-build-isolation -e . \
#     && python -m benchmarks.device --out "$OUT"
#
# transformers stays the image's own (a 13 MB wheel would not fit); dlib's landmark model (100 MB) does not fit
# either, so the device run's talking-face figures leave out face detection (see benchmarks/device.py).
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf .device/wheels
mkdir -p .device/wheels
python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 -d .device/wheels -c tests/constraints.txt \
  diffusers av invisible-watermark PyWavelets praat-parselmouth
du -ch .device/wheels/* | tail -n 1
