#!/usr/bin/env bash
# Downloads, here (where pip reaches PyPI), the wheels of the pure-Python and binary dependencies
# that the GPU machine lent to the project lacks, into .whl/ (git-ignored), for
# scripts/bench_gpu.sh to install there without a package index. That machine has Python 3.12
# (x86-64, manylinux), jax 0.11 with CUDA 13 plugins, flax, optax, orbax-checkpoint, chex, rich,
# scikit-learn, scipy, matplotlib and tensorstore, but no grain: grain, its array-record and
# portpicker come along (their other needs, absl-py, cloudpickle, etils, protobuf, psutil, are
# there). Versions are the ones the test suite runs here; keep one version of each.
#
# Usage: bash scripts/gpu_wheels.sh   (then carry .whl with the device run, see README "GPU suite")
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=("grain==0.2.18" "array-record==0.8.6" "portpicker==1.6.0")
mkdir -p .whl
python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
  -d .whl "${WHEELS[@]}"
ls -l .whl
