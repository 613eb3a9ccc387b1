#!/usr/bin/env bash
# Runs the range-coder Python tests against an AddressSanitizer + UndefinedBehaviorSanitizer build
# of fastcodec._rangecoder.
#
#   tools/sanitize.sh                      # pytest tests -q -k "rangecoder or compat or fuzz"
#   tools/sanitize.sh tests/test_x.py -x   # other pytest arguments
#   tools/sanitize.sh --script file.py     # run a Python file against the sanitized build instead
#
# The sanitized extension is built with gcc in its own CMake build directory (build/sanitize,
# FASTCODEC_SANITIZE=ON, RelWithDebInfo) and loaded from a staging copy of the package; the editable
# dev install (build/<wheel tag>, site-packages) is never rebuilt or replaced, so other work in the
# same checkout and venv keeps the normal extension throughout. gcc's libasan/libubsan are
# LD_PRELOADed into the (uninstrumented) interpreter. At the end the script checks that the dev
# install still imports without any preload, and rebuilds it non-sanitized if it was sanitized.
#
# Environment: PYTHON (default: python on PATH, e.g. the activated venv), FASTCODEC_SANITIZE_BUILD
# (build directory, default build/sanitize), SANITIZE_K (pytest -k expression).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${PYTHON:-python}
BUILD=${FASTCODEC_SANITIZE_BUILD:-$ROOT/build/sanitize}
STAGE=$BUILD/stage
K=${SANITIZE_K:-rangecoder or compat or fuzz}

log() { printf '[sanitize] %s\n' "$*" >&2; }

# --- leave the dev install as it was (runs on every exit) -------------------------------------
# This script never builds into the dev install, so this is a check, plus a repair for the case
# where the dev extension itself is sanitized (e.g. it was installed with
# -Ccmake.define.FASTCODEC_SANITIZE=ON): that is rebuilt non-sanitized from this checkout.
restore_dev_install() {
  local rc=$? state
  set +e
  state=$(cd / && env -u LD_PRELOAD -u ASAN_OPTIONS -u UBSAN_OPTIONS "$PY" - "$ROOT" <<'EOF'
import os, subprocess, sys
try:
    import fastcodec, fastcodec._rangecoder as m
except Exception as exc:  # noqa: BLE001
    print(f"unimportable ({type(exc).__name__}: {exc})")
    sys.exit()
libs = subprocess.run(["ldd", m.__file__], capture_output=True, text=True).stdout
ours = os.path.realpath(fastcodec.__file__).startswith(os.path.realpath(sys.argv[1]) + os.sep)
print(("sanitized" if "libasan" in libs or "libubsan" in libs else "ok") + ("" if ours else "-other"))
EOF
)
  case $state in
    ok|ok-other)
      log "dev install OK: fastcodec._rangecoder imports without LD_PRELOAD (not sanitized)" ;;
    sanitized)
      log "dev install is sanitized: rebuilding it non-sanitized"
      if (cd "$ROOT" && env -u LD_PRELOAD "$PY" -m pip install --no-build-isolation -q -e . \
            -Ccmake.define.FASTCODEC_SANITIZE=OFF) &&
         (cd / && env -u LD_PRELOAD "$PY" -c "import fastcodec._rangecoder"); then
        log "dev install rebuilt and importable"
      else
        log "FAILED to restore the dev install"; rc=1
      fi ;;
    *)
      log "WARNING: $PY's fastcodec is not this checkout's or not importable ($state); left alone" ;;
  esac
  exit "$rc"
}
trap restore_dev_install EXIT

# --- build ---------------------------------------------------------------------------------
ASAN_LIB=$(gcc -print-file-name=libasan.so)
UBSAN_LIB=$(gcc -print-file-name=libubsan.so)
for lib in "$ASAN_LIB" "$UBSAN_LIB"; do
  [[ -f $lib ]] || { log "gcc's $(basename "$lib") not found (install libasan/libubsan)"; exit 2; }
done

GEN=()
if command -v ninja >/dev/null 2>&1; then GEN=(-G Ninja); fi
if [[ -f $BUILD/CMakeCache.txt ]]; then GEN=(); fi  # keep the generator it was made with

log "configuring $BUILD (gcc, ASan+UBSan)"
CC=gcc CXX=g++ cmake -S "$ROOT" -B "$BUILD" "${GEN[@]}" \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DFASTCODEC_SANITIZE=ON -DFASTCODEC_CUDA=OFF -DFASTCODEC_FUZZ=OFF \
  -DPython_EXECUTABLE="$(command -v "$PY")" \
  -Dpybind11_DIR="$("$PY" -m pybind11 --cmakedir)" >/dev/null
log "building _rangecoder"
cmake --build "$BUILD" --target _rangecoder -j "$(nproc 2>/dev/null || echo 2)" >/dev/null

SO=$(find "$BUILD" -maxdepth 1 -name '_rangecoder*.so' | head -n 1)
[[ -n $SO ]] || { log "no _rangecoder*.so in $BUILD"; exit 2; }
SO_LIBS=$(ldd "$SO")  # not `ldd | grep -q`: under pipefail, grep's early exit can fail the pipe
[[ $SO_LIBS == *libasan* ]] || { log "$SO is not linked against libasan"; exit 2; }

# Staging copy of the package (Python sources as they are now, plus the sanitized extension).
rm -rf "$STAGE"
mkdir -p "$STAGE"
(cd "$ROOT" && tar --exclude='__pycache__' --exclude='*.so' -cf - fastcodec) | tar -xf - -C "$STAGE"
cp "$SO" "$STAGE/fastcodec/"

# --- run -----------------------------------------------------------------------------------
if [[ ${1:-} == --script ]]; then
  [[ $# -ge 2 ]] || { log "--script needs a file"; exit 2; }
  MODE=script
  shift
else
  MODE=pytest
  if [[ $# -eq 0 ]]; then set -- tests -q -p no:cacheprovider -k "$K"; fi
fi

export LD_PRELOAD="$ASAN_LIB $UBSAN_LIB"
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
if command -v llvm-symbolizer >/dev/null 2>&1; then
  export ASAN_SYMBOLIZER_PATH=$(command -v llvm-symbolizer)
fi
export FASTCODEC_SANITIZE_STAGE=$STAGE
export FASTCODEC_SANITIZE_MODE=$MODE

log "running ($MODE) under ASan+UBSan: $*"
set +e
(cd "$ROOT" && "$PY" -c '
import os, runpy, sys

# The editable install puts a finder for "fastcodec" first on sys.meta_path: drop it, so that the
# staged package with the sanitized extension is the one imported (and stays cached as such).
def _editable_finder(f):
    cls = type(f)
    return cls.__module__.startswith("_editable_skbc_fastcodec") or (
        cls.__name__.startswith("ScikitBuild") and "fastcodec" in str(getattr(f, "__dict__", "")))
sys.meta_path[:] = [f for f in sys.meta_path if not _editable_finder(f)]
stage = os.environ["FASTCODEC_SANITIZE_STAGE"]
sys.path.insert(0, stage)
import fastcodec._rangecoder as rc
assert rc.__file__.startswith(stage), rc.__file__
print(f"[sanitize] using {rc.__file__}", file=sys.stderr)

args = sys.argv[1:]
if os.environ["FASTCODEC_SANITIZE_MODE"] == "script":
    sys.argv = args
    runpy.run_path(args[0], run_name="__main__")
else:
    import pytest
    sys.exit(pytest.main(args))
' "$@")
status=$?
set -e
if [[ $status -eq 0 ]]; then
  log "PASSED: no sanitizer reports"
else
  log "FAILED with exit status $status (see the sanitizer report above, if any)"
fi
exit "$status"
