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
