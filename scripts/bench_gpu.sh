#!/usr/bin/env bash
# `jaxpapers bench gpu` on a GPU machine with its own preinstalled jax and no package index.
#
# Installs the checkout without its dependencies (pip --no-deps --no-index --no-build-isolation,
# editable; if that fails, a copy of the packages on PYTHONPATH), plus the wheels in .whl/ that
# scripts/gpu_wheels.sh downloaded (grain and its needs) into /tmp/jaxpapers_wheels, then runs the
# suite, which writes OUT_DIR/bench_gpu.json as each check ends. Under 6 minutes on one H200.
#
# Usage: bash scripts/bench_gpu.sh [OUT_DIR] [extra `jaxpapers bench gpu` flags, e.g. --dry-run]
#   OUT_DIR defaults to $OUT (the device tool's output folder), else runs/. PYTHON picks the
#   interpreter (default python3, the one that holds jax there).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT_DIR="${1:-${OUT:-runs}}"
shift || true
PY="${PYTHON:-python3}"
export PYTHONUNBUFFERED=1
mkdir -p "$OUT_DIR"
if compgen -G ".whl/*.whl" >/dev/null; then
  WHEELS=/tmp/jaxpapers_wheels
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$WHEELS" .whl/*.whl || { echo "bench_gpu.sh: installing .whl/*.whl failed" >&2; exit 3; }
  export PYTHONPATH="$WHEELS${PYTHONPATH:+:$PYTHONPATH}"
fi
check='import jaxpapers.experiments, kernels_pallas, jaxpapers.cli'
if ! { "$PY" -m pip install -q --no-deps --no-index --no-build-isolation -e . && "$PY" -c "$check"; }; then
  echo "bench_gpu.sh: the editable install failed; using a copy of the packages on PYTHONPATH" >&2
  SRC=/tmp/jaxpapers_src
  rm -rf "$SRC" && mkdir -p "$SRC"
  cp -r jaxpapers kernels_pallas "$SRC"/ && cp -r experiments "$SRC"/jaxpapers/experiments
  export PYTHONPATH="$SRC${PYTHONPATH:+:$PYTHONPATH}"
  "$PY" -c "$check" || { echo "bench_gpu.sh: jaxpapers does not import here" >&2; exit 3; }
fi
"$PY" -c 'import jax; print("jax", jax.__version__, jax.default_backend(), jax.devices())'
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
"$PY" -m jaxpapers.cli bench gpu --out "$OUT_DIR" "$@"
