"""Coverage-guided fuzzing of the native range coder (csrc/fuzz/fuzz_decode.cpp) with libFuzzer,
AddressSanitizer and UndefinedBehaviorSanitizer.

Builds the fuzz target with clang++ into a temporary directory, writes a small seed corpus (valid
streams made with the Python package in the target's input layout, plus random bytes) and fuzzes
for 45 seconds. Skipped when clang++ or libFuzzer is missing. About a minute in all.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [
    "csrc/fuzz/fuzz_decode.cpp",
    "csrc/rangecoder/tables.cpp",
    "csrc/rangecoder/coder.cpp",
    "csrc/rangecoder/parallel.cpp",
]
FLAGS = ["-std=c++17", "-O1", "-g", "-fsanitize=fuzzer,address,undefined",
         "-fno-sanitize-recover=all"]
FUZZ_SECONDS = 45

pytestmark = pytest.mark.slow

_I32_MIN, _I32_MAX = -(2**31), 2**31 - 1


def _clean_env() -> dict[str, str]:
    """The environment for clang and the fuzzer: no preloaded sanitizer runtime (tools/sanitize.sh
    preloads gcc's, which must not meet clang's) and no inherited sanitizer options."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("LD_PRELOAD", "ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS")}
    env["UBSAN_OPTIONS"] = "print_stacktrace=1:halt_on_error=1"
    return env


def _clang() -> str:
    clang = os.environ.get("FASTCODEC_FUZZ_CXX") or shutil.which("clang++")
    if not clang:
        pytest.skip("clang++ not found (needed to build the libFuzzer target)")
    return clang


def _check_libfuzzer(clang: str, tmp: Path) -> None:
    probe = tmp / "probe.cpp"
    probe.write_text(
        "#include <cstddef>\n#include <cstdint>\n"
        'extern "C" int LLVMFuzzerTestOneInput(const uint8_t*, size_t) { return 0; }\n'
    )
    try:
        res = subprocess.run(
            [clang, "-fsanitize=fuzzer,address,undefined", str(probe), "-o", str(tmp / "probe")],
            capture_output=True, text=True, timeout=60, env=_clean_env(),
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"{clang} cannot build a libFuzzer target: {exc}")
    if res.returncode != 0:
        pytest.skip(f"{clang} cannot build a libFuzzer target (libFuzzer/compiler-rt missing?): "
                    f"{res.stderr.strip()[-400:]}")


# --- seed corpus: the input layout documented at the top of csrc/fuzz/fuzz_decode.cpp ----------

def _row_offset(osel: int, bins: int) -> int:
    kind = osel % 8
    if kind == 0:
        return 0
    if kind == 1:
        return _I32_MIN
    if kind == 2:
        return _I32_MAX
    if kind == 3:
        return max(_I32_MIN, min(_I32_MAX, _I32_MAX - bins + 1))
    if kind == 4:
        return _I32_MIN + (osel >> 3)
    if kind == 6:
        return osel - 256 if osel >= 128 else osel
    if kind == 7:
        return -(bins // 2)  # C++ truncates towards zero; bins > 0
    raise ValueError("kind 5 reads its offset from the input; not used by the seeds")


def _row_cdf(bins: int, weights: list[int], precision: int) -> list[int]:
    total = 1 << precision
    if bins == 1:
        return [0, total]
    w = [1 + b for b in weights]
    spare, s, cum, cdf = total - bins, sum(w), 0, [0]
    for j in range(bins):
        cum += w[j]
        cdf.append(j + 1 + spare * cum // s)
    return cdf


def _valid_seed(rng: np.random.Generator, rc) -> bytes:
    """A header with valid tables plus a stream the package encoded with those tables."""
    num_rows = int(rng.integers(1, 9))
    precision = int(rng.integers(1, 17))
    flags = (num_rows - 1) | (int(rng.integers(0, 2)) << 4)  # sometimes the parallel check
    count = int(rng.integers(0, 67)) if rng.random() < 0.7 else int(rng.integers(67, 2049))
    # count = u % 67 for u < 0x8000, u % 2049 otherwise
    u = count if count < 67 else 0x8000 + (count - 0x8000) % 2049
    header = bytearray([flags, precision - 1, u & 0xFF, u >> 8])
    pattern = [int(b) for b in rng.integers(0, 256, int(rng.integers(1, 9)))]
    header += bytes([len(pattern) - 1, *pattern])

    cdfs, offsets = [], []
    for _ in range(num_rows):
        bins = int(rng.integers(1, min(1 << precision, 64) + 1))
        osel = int(rng.choice([0, 1, 2, 3, 4, 6, 7])) + 8 * int(rng.integers(0, 32))
        header += bytes([bins - 1, osel])
        weights = []
        if bins > 1:
            weights = [int(b) for b in rng.integers(0, 256, bins)]
            header += bytes(weights)
        cdfs.append(_row_cdf(bins, weights, precision))
        offsets.append(_row_offset(osel, bins))
    header += bytes(int(b) for b in rng.integers(0, 256, 4))  # how (c) damages its stream

    stride = max(len(c) for c in cdfs)
    table = np.zeros((num_rows, stride), dtype=np.int32)
    for r, c in enumerate(cdfs):
        table[r, : len(c)] = c
    lengths = np.array([len(c) for c in cdfs], dtype=np.int32)
    indexes = np.array([pattern[i % len(pattern)] % num_rows for i in range(count)],
                       dtype=np.int32)
    symbols = np.empty(count, dtype=np.int64)
    for i, t in enumerate(indexes):
        lo, hi = offsets[t] - 3, offsets[t] + len(cdfs[t]) + 2
        symbols[i] = rng.integers(lo, hi) if rng.random() < 0.95 else rng.choice(
            [_I32_MIN, _I32_MAX])
    symbols = np.clip(symbols, _I32_MIN, _I32_MAX).astype(np.int32)
    stream = rc.encode(symbols, indexes, table, lengths, np.array(offsets, dtype=np.int32),
                       precision)
    assert np.array_equal(rc.decode(stream, indexes, table, lengths,
                                    np.array(offsets, dtype=np.int32), precision), symbols)
    return bytes(header) + stream


def _write_seeds(corpus: Path) -> int:
    rng = np.random.default_rng(20240611)
    seeds = [bytes(rng.integers(0, 256, n, dtype=np.uint8)) for n in (0, 9, 40, 72, 300)]
    try:
        from fastcodec import rangecoder as rc
    except ImportError as exc:  # extension not built: random seeds only
        print(f"seed corpus: fastcodec.rangecoder unavailable ({exc}); random seeds only")
    else:
        seeds += [_valid_seed(rng, rc) for _ in range(12)]
    for i, s in enumerate(seeds):
        (corpus / f"seed-{i:02d}").write_bytes(s)
    return len(seeds)


# --- the test ------------------------------------------------------------------------------------

def test_fuzz_range_decoder(tmp_path: Path) -> None:
    clang = _clang()
    _check_libfuzzer(clang, tmp_path)

    binary = tmp_path / "fuzz_decode"
    cmd = [clang, *FLAGS, "-I", str(ROOT / "csrc/rangecoder"),
           *(str(ROOT / s) for s in SOURCES), "-o", str(binary)]
    build = subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=_clean_env())
    assert build.returncode == 0, f"building the fuzz target failed:\n{build.stderr[-4000:]}"

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    n_seeds = _write_seeds(corpus)

    run = subprocess.run(
        [str(binary), f"-max_total_time={FUZZ_SECONDS}", "-timeout=5", "-rss_limit_mb=2048",
         "-print_final_stats=1", f"-artifact_prefix={tmp_path}/", str(corpus)],
        capture_output=True, text=True, timeout=FUZZ_SECONDS + 90, env=_clean_env(),
        cwd=tmp_path,
    )
    log = run.stderr + run.stdout
    done = [ln for ln in log.splitlines() if re.match(r"#\d+\s+DONE", ln)]
    stats = [ln for ln in log.splitlines() if ln.startswith("stat::")]
    print(f"fuzz_decode: {n_seeds} seeds; " + (done[-1] if done else "(no DONE line)"))
    print("\n".join(stats))

    artifacts = sorted(p for p in tmp_path.iterdir()
                       if p.name.startswith(("crash-", "leak-", "timeout-", "oom-", "slow-unit-")))
    found = "".join(f"\n{p.name}: {p.read_bytes().hex()}" for p in artifacts)
    assert run.returncode == 0, (
        f"fuzz_decode exited with {run.returncode}{found}\n--- log tail ---\n{log[-6000:]}"
    )


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-s", "-q"]))
