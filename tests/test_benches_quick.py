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
