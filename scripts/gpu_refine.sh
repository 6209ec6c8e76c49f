#!/usr/bin/env bash
# The finest refinement points (studies/gpu/*.yaml) on a GPU machine, through the Dask
# scheduler path: a scheduler and one worker on 127.0.0.1, `mfjko sweep --scheduler`, the
# same code as on a CPU cluster. Run from the repository root:
#
#   bash scripts/gpu_refine.sh [SPEC] [SECONDS]
#
# SPEC: a sweep YAML (default studies/gpu/regression_refine_fine.yaml); SECONDS: time
# limit of the sweep (default 420; finished points are kept, `--resume` goes on).
# Packages: on a machine that reaches PyPI, `pip install -c constraints.txt -e ".[gpu]"`
# (JAX with CUDA 12, the `gpu` extra) installs everything, and this script does that when
# mfjko does not import and there is no .whl/. On a machine without a registry, missing
# packages travel as wheels in .whl/ (installed to /tmp/site when present); for a CUDA image
# with JAX, diffrax, equinox, optax, pandas, pyarrow, xarray, typer and rich (Python 3.12):
#   pip download --no-deps --only-binary=:all: --python-version 3.12 -d .whl \
#     --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 \
#     pydantic pydantic_core annotated-types typing-inspection ott-jax==0.6.0 jaxopt \
#     zarr numcodecs donfig google-crc32c dask distributed tornado tblib zict locket partd
# Writes into
# $OUT (default runs/gpu_out): device.txt (GPU, driver, JAX and its devices), sweep.tgz
# (the sweep folder: points, results), and the scheduler/worker/sweep logs.
set -u
SPEC=${1:-studies/gpu/regression_refine_fine.yaml}
LIMIT=${2:-420}
OUT=${OUT:-runs/gpu_out}
SWEEP=runs/gpu/$(basename "$SPEC" .yaml)
mkdir -p "$OUT" runs/gpu
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD/src
else
  export PYTHONPATH=$PWD/src
  python3 -c "import mfjko" 2>/dev/null \
    || python3 -m pip install -q -c constraints.txt -e ".[gpu]" || exit 1
fi
# one GPU, two JAX processes (the sweep's client resolves derived keys): allocate on demand
export XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONUNBUFFERED=1 MFJKO_XLA_CACHE=0
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 || true
  python3 -c "import jax, mfjko; print('jax', jax.__version__, jax.devices())"; } \
  > "$OUT/device.txt" 2>&1
cat "$OUT/device.txt"
python3 -m distributed.cli.dask_scheduler --host 127.0.0.1 --port 8786 --no-dashboard \
  > "$OUT/scheduler.log" 2>&1 &
trap 'kill $(jobs -p) 2>/dev/null' EXIT  # the scheduler and the worker end with the script
python3 -m distributed.cli.dask_worker tcp://127.0.0.1:8786 --nworkers 1 --nthreads 1 \
  --memory-limit 0 --no-dashboard > "$OUT/worker.log" 2>&1 &
sleep 8
R=; [ -f "$SWEEP/sweep.yaml" ] && R=--resume
start=$(date +%s)
timeout "$LIMIT" python3 -c "from mfjko.cli import app; app()" sweep "$SPEC" --out "$SWEEP" \
  --scheduler tcp://127.0.0.1:8786 --no-progress $R 2>&1 | tee "$OUT/sweep.log"
rc=${PIPESTATUS[0]}
echo "sweep exit $rc after $(( $(date +%s) - start )) s" | tee -a "$OUT/sweep.log"
tar czf "$OUT/sweep.tgz" -C runs/gpu "$(basename "$SWEEP")"
exit "$rc"
