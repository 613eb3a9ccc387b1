"""The benchmark suite still runs (CI-sized, no timing assertions), so it cannot rot."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_benchmarks_run_in_quick_mode(tmp_path):
    pytest.importorskip("pytest_benchmark", reason="pytest-benchmark is not installed")
    run = subprocess.run(
        [sys.executable, "-m", "pytest", str(ROOT / "benches"), "-q", "--quick",
         "-p", "no:cacheprovider", "--benchmark-json", str(tmp_path / "bench.json")],
        # Outside the checkout: `python -m` puts the working directory first on sys.path, and
        # the installed package (with its compiled modules) must win over the source tree.
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "fastcodec, 1 thread" in run.stdout
    assert (tmp_path / "bench.json").stat().st_size > 0


def test_codec_benchmark_times_the_model_it_is_asked_for(tmp_path):
    pytest.importorskip("pytest_benchmark", reason="pytest-benchmark is not installed")
    from fastcodec.zoo import DEFAULT_MODEL, available_models

    other = next((m for m in available_models() if m != DEFAULT_MODEL), None)
    if other is None:
        pytest.skip("only one model is installed")
    summary = tmp_path / "summary.txt"
    run = subprocess.run(
        [sys.executable, "-m", "pytest", str(ROOT / "benches" / "test_bench_codec.py"), "-q",
         "--quick", "-p", "no:cacheprovider", "-k", "fastcodec and encode-cpu-b1",
         "--codec-model", other, "--bench-summary", str(summary)],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    text = summary.read_text()
    assert f" {other} (training step" in text
    assert DEFAULT_MODEL not in text


def _codec_workload():
    """benches/codec_workload.py, loaded on its own (benches/ is not a package)."""
    import importlib.util

    name = "_benches_codec_workload"
    if name not in sys.modules:  # (dataclasses look their module up in sys.modules)
        spec = importlib.util.spec_from_file_location(name, ROOT / "benches" / "codec_workload.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def _row(codec: str, device: str, mp_per_s: float, op: str = "encode", batch: int = 1) -> dict:
    return {"codec": codec, "op": op, "device": device, "batch": batch, "threads": 2,
            "MP_per_s": mp_per_s}


def test_codec_ratios_compare_equal_precisions_only():
    """The reviewer's case: bf16 fastcodec rows were divided by the float32 factorized row when
    the factorized row of their precision was missing (cuda-bf16; cpu-bf16 deselected)."""
    cw = _codec_workload()
    results = cw.CodecResults()
    results.record(_row("factorized", "cpu", 1.0))
    results.record(_row("factorized", "cuda", 100.0))
    fast = {d: _row("fastcodec", d, mp) for d, mp in
            (("cpu", 3.0), ("cpu-bf16", 6.0), ("cuda", 400.0), ("cuda-bf16", 800.0))}
    for info in fast.values():
        results.record(info)
    assert fast["cpu"]["speedup_vs_factorized"] == pytest.approx(3.0)
    assert fast["cuda"]["speedup_vs_factorized"] == pytest.approx(4.0)
    assert "speedup_vs_factorized" not in fast["cpu-bf16"]
    assert "speedup_vs_factorized" not in fast["cuda-bf16"]
    text = "\n".join(results.summary_lines())
    assert "cpu-bf16 b1: encode: factorized n/a (no factorized cpu-bf16 b1 row)" in text
    assert "cuda-bf16 b1: encode: factorized n/a (no factorized cuda-bf16 b1 row)" in text
    # with the baselines of the same precision measured, the ratios are against those
    results.record(_row("factorized", "cpu-bf16", 2.0))
    results.record(_row("factorized", "cuda-bf16", 200.0))
    assert fast["cpu-bf16"]["speedup_vs_factorized"] == pytest.approx(3.0)
    assert fast["cuda-bf16"]["speedup_vs_factorized"] == pytest.approx(4.0)
    assert "n/a" not in "\n".join(results.summary_lines())


def test_codec_factorized_cases_cover_every_fastcodec_device(tmp_path):
    """Every fastcodec device id has its factorized case (cuda-bf16 included; it skips without
    CUDA like the other CUDA cases)."""
    pytest.importorskip("pytest_benchmark", reason="pytest-benchmark is not installed")
    run = subprocess.run(
        [sys.executable, "-m", "pytest", str(ROOT / "benches" / "test_bench_codec.py"), "-q",
         "--quick", "-p", "no:cacheprovider", "--collect-only", "-k", "factorized or fastcodec"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    cases = {codec: {line.split("[", 1)[1].rstrip("]") for line in run.stdout.splitlines()
                     if f"::test_{codec}[" in line} for codec in ("factorized", "fastcodec")}
    assert "encode-cuda-bf16-b1" in cases["factorized"]
    assert cases["factorized"] == cases["fastcodec"]
