#!/usr/bin/env bash
# Fused-ops GPU run on a fresh CUDA machine that has this repository and PyTorch (+ Triton):
# builds and installs fastcodec (editable), runs the GPU op tests, then the "ops" benchmark group.
#
#   benches/gpu_ops.sh [LOGDIR]        # LOGDIR defaults to benches/results/gpu-<date>
#
# Everything ends within BUDGET_S seconds (default 570, i.e. inside 10 minutes): the build and the
# tests are given time limits, and the benchmarks get a deadline (--ops-deadline) after which the
# remaining ones are skipped with a note (torch.compile ones first), so the summary and the JSON
# are always written. Files in LOGDIR (7, 8 when the build is retried without CUDA):
#   machine.txt          nvidia-smi, python, torch, triton, nvcc
#   build.log            pip install -e . (CMake / nvcc output)
#   tests-ops.log        python -m pytest tests/ops -q
#   bench-ops.log        python -m pytest benches -q -k ops (full output, summary at the end)
#   ops-gpu.json         pytest-benchmark JSON (extra_info: ms, GB/s, TFLOP/s, floor, ratios, memory)
#   ops-gpu-summary.txt  the fused-ops summary table with command and machine
#   status.txt           each step's exit status and duration
#
# Environment: PYTHON (default python3), BUDGET_S (570), BUILD_TIMEOUT_S (240),
# TESTS_TIMEOUT_S (300), BENCH_RESERVE_S (time kept for the benchmarks, 240), TEST_WORKERS
# (pytest-xdist workers for tests/ops when xdist is installed, default 8; 0 = no xdist),
# FASTCODEC_CUDA_ARCHITECTURES (default: the GPU's own, e.g. 90 on an H100), BENCH_ARGS (extra
# pytest arguments for the benchmarks, e.g. "--ops-dtypes bf16 --ops-cuda-backend"), SKIP_TESTS
# (set: skip tests/ops, e.g. when they already ran, to give the benchmarks the whole budget).
# Exit status: 0 all ran and passed; 1 a step failed; 2 no GPU; 3 tests/ops skipped for time.
set -uo pipefail
cd "$(dirname "$0")/.."

T0=$SECONDS
BUDGET_S=${BUDGET_S:-570}
PY=${PYTHON:-python3}
dir="${1:-benches/results/gpu-$(date +%Y-%m-%d)}"
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
status="$dir/status.txt"
: > "$status"
export PYTHONUNBUFFERED=1
unset TRITON_INTERPRET

left() { echo $((BUDGET_S - (SECONDS - T0))); }
note() { echo "[gpu_ops] $*" | tee -a "$status"; }
step_done() {  # name rc start
    note "$1: exit $2 after $((SECONDS - $3)) s ($(left) s of the budget left)"
}

# ---- machine ---------------------------------------------------------------------------------
{
    echo "date: $(date -Iseconds)"
    echo "host: $(uname -srm), $(nproc) cores"
    echo "git: $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD 2>/dev/null || echo ' (working tree modified)')"
    nvidia-smi || echo "nvidia-smi failed"
    nvidia-smi --query-gpu=name,driver_version,compute_cap,clocks.sm,clocks.max.sm,clocks.mem,power.draw,temperature.gpu --format=csv || true
    command -v nvcc >/dev/null 2>&1 && nvcc --version | tail -2
    "$PY" - <<'EOF'
import sys, platform
print("python", platform.python_version(), sys.executable)
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version(),
      "available", torch.cuda.is_available())
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print("device", p.name, f"sm_{p.major}{p.minor}", p.multi_processor_count, "SMs",
          f"{p.total_memory / 2**30:.1f} GiB", "L2", getattr(p, "L2_cache_size", "?"))
try:
    import triton
    print("triton", triton.__version__)
except Exception as exc:
    print("triton not importable:", exc)
EOF
} > "$dir/machine.txt" 2>&1
cat "$dir/machine.txt"
if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    note "torch sees no CUDA device: this script is for a GPU machine (CPU: python -m pytest benches -k ops)"
    exit 2
fi

# ---- build -----------------------------------------------------------------------------------
t=$SECONDS
if ! command -v nvcc >/dev/null 2>&1 && [[ -x /usr/local/cuda/bin/nvcc ]]; then
    export PATH="/usr/local/cuda/bin:$PATH"
fi
if [[ -z "${FASTCODEC_CUDA_ARCHITECTURES:-}" ]]; then
    cap="$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d ' .')"
    [[ "$cap" =~ ^[0-9]+$ ]] && export FASTCODEC_CUDA_ARCHITECTURES="$cap"
fi
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}"
{
    # Build requirements (--no-build-isolation uses what is installed); installed only if missing.
    if ! "$PY" -c "import scikit_build_core, pybind11" 2>/dev/null; then
        echo "installing scikit-build-core and pybind11"
        "$PY" -m pip install "scikit-build-core>=0.10" "pybind11>=2.12"
    fi
    if ! command -v cmake >/dev/null 2>&1 && ! "$PY" -c "import cmake" 2>/dev/null; then
        echo "installing cmake and ninja"
        "$PY" -m pip install "cmake>=3.18" ninja
    fi
    for m in pytest pytest_benchmark hypothesis; do
        if ! "$PY" -c "import $m" 2>/dev/null; then
            echo "installing ${m//_/-}"
            "$PY" -m pip install "${m//_/-}"
        fi
    done
} > "$dir/build.log" 2>&1
# The runtime dependencies (numpy, torch, Pillow) are already there: --no-deps keeps pip offline.
deps_flag=""
"$PY" -c "import numpy, torch, PIL" 2>/dev/null && deps_flag="--no-deps"
build_limit=$(( ${BUILD_TIMEOUT_S:-240} < $(left) - 240 ? ${BUILD_TIMEOUT_S:-240} : $(left) - 240 ))
(( build_limit < 60 )) && build_limit=60
echo "FASTCODEC_CUDA_ARCHITECTURES=${FASTCODEC_CUDA_ARCHITECTURES:-default}, limit ${build_limit} s" >> "$dir/build.log"
timeout "$build_limit" "$PY" -m pip install -v --no-build-isolation $deps_flag -e . >> "$dir/build.log" 2>&1
rc=$?
step_done "build (pip install -e ., CUDA kernels for ${FASTCODEC_CUDA_ARCHITECTURES:-default})" $rc $t
if (( rc != 0 )) && (( $(left) > 330 )); then
    note "build failed (see build.log, tail below); retrying without the CUDA C++ kernels (FASTCODEC_CUDA=OFF): the Triton kernels are still benchmarked"
    tail -20 "$dir/build.log"
    t=$SECONDS
    FASTCODEC_CUDA=OFF timeout 180 "$PY" -m pip install -v --no-build-isolation $deps_flag -e . > "$dir/build-nocuda.log" 2>&1
    rc=$?
    step_done "build without CUDA kernels" $rc $t
fi
if ! "$PY" -c "import fastcodec._rangecoder" 2>/dev/null; then
    note "fastcodec is not importable after the build: stopping (see build.log)"
    tail -30 "$dir/build.log"
    exit 1
fi
"$PY" - <<'EOF' 2>&1 | tee -a "$status"
from fastcodec.ops import _backend
from fastcodec.kernels import cuda_ops
print("[gpu_ops] backends: triton", _backend.triton_available(), "| cuda C++",
      cuda_ops.is_available(), end="")
try:
    import fastcodec._cuda as ext
    print(", built for", list(ext.compiled_architectures()))
except ImportError:
    print(" (fastcodec._cuda not built)")
EOF

# ---- tests -----------------------------------------------------------------------------------
t=$SECONDS
tests_limit=$(( $(left) - ${BENCH_RESERVE_S:-240} ))
(( tests_limit > ${TESTS_TIMEOUT_S:-300} )) && tests_limit=${TESTS_TIMEOUT_S:-300}
tests_rc=""
if [[ -n "${SKIP_TESTS:-}" ]]; then
    note "tests/ops skipped (SKIP_TESTS is set)"
elif (( tests_limit < 30 )); then
    note "tests/ops skipped: only $(left) s left"
    tests_rc=skipped
else
    xdist=()
    if [[ "${TEST_WORKERS:-8}" != 0 ]] && "$PY" -c "import xdist" 2>/dev/null; then
        xdist=(-n "${TEST_WORKERS:-8}")
    fi
    note "tests/ops: limit ${tests_limit} s ${xdist[*]:+(pytest-xdist ${xdist[*]})}"
    timeout "$tests_limit" "$PY" -m pytest tests/ops -q -p no:cacheprovider "${xdist[@]}" 2>&1 | tee "$dir/tests-ops.log"
    tests_rc=${PIPESTATUS[0]}
    (( tests_rc == 124 )) && note "tests/ops stopped at the time limit (${tests_limit} s): see tests-ops.log"
    step_done "tests (python -m pytest tests/ops -q)" "$tests_rc" $t
fi

# ---- benchmarks --------------------------------------------------------------------------------
t=$SECONDS
bench_left=$(left)
if (( bench_left < 60 )); then
    note "benchmarks skipped: only ${bench_left} s left"
    exit 1
fi
deadline=$(( $(date +%s) + bench_left - 30 ))  # time to write the summary and JSON after it
note "benchmarks: deadline in $((bench_left - 30)) s"
# shellcheck disable=SC2086
timeout $((bench_left - 5)) "$PY" -m pytest benches -q -k ops -p no:cacheprovider \
    --benchmark-json "$dir/ops-gpu.json" --ops-summary "$dir/ops-gpu-summary.txt" \
    --ops-deadline "$deadline" ${BENCH_ARGS:-} 2>&1 | tee "$dir/bench-ops.log"
bench_rc=${PIPESTATUS[0]}
step_done "benchmarks (python -m pytest benches -q -k ops)" "$bench_rc" $t
note "total $((SECONDS - T0)) s; logs in $dir"
[[ -f "$dir/ops-gpu-summary.txt" ]] && cat "$dir/ops-gpu-summary.txt"
if [[ "$bench_rc" != 0 || ( -n "$tests_rc" && "$tests_rc" != 0 && "$tests_rc" != skipped ) ]]; then
    exit 1
fi
[[ "$tests_rc" == skipped ]] && exit 3
exit 0
