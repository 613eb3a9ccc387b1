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


def test_codec_refinement_rows_are_compared_with_the_plain_encode():
    cw = _codec_workload()
    results = cw.CodecResults()
    plain = {**_row("fastcodec", "cpu", 4.0, batch=2), "bpp": 0.70, "psnr_db": 29.0}
    refined = {**_row("fastcodec-r10", "cpu", 0.5, batch=2), "bpp": 0.71, "psnr_db": 29.5}
    alone = {**_row("fastcodec-r10", "cuda", 50.0, batch=2), "bpp": 0.7, "psnr_db": 29.5}
    for info in (refined, plain, alone):  # the ratios are filled in whatever the order
        results.record(info)
    assert refined["encode_time_vs_plain"] == pytest.approx(8.0)
    assert refined["psnr_gain_db"] == pytest.approx(0.5)
    assert refined["bpp_change"] == pytest.approx(0.01 / 0.70)
    text = "\n".join(results.summary_lines())
    assert "10 steps, cpu b2: 8.0x the encode time, +0.50 dB PSNR, +1.4% bits" in text
    assert "10 steps, cuda b2: n/a (no plain fastcodec encode cuda b2 row)" in text


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


def test_refine_tradeoff_reports_saving_gain_and_time(tmp_path, capsys):
    """benches/refine_tradeoff.py on two small crops: one run per step count, BD-rate against
    steps 0 of the same dtype, the JSON and the plot."""
    import importlib.util
    import json

    import numpy as np
    from PIL import Image

    pytest.importorskip("matplotlib")
    spec = importlib.util.spec_from_file_location("refine_tradeoff",
                                                  ROOT / "benches" / "refine_tradeoff.py")
    tradeoff = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tradeoff)
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:80, 0:72] / 40.0
    for i in range(3):
        smooth = 127 + 90 * np.sin(xx * (i + 2) + yy)[..., None] * np.array([1.0, 0.7, 0.4])
        noisy = np.clip(smooth + rng.normal(0, 6, smooth.shape), 0, 255).astype(np.uint8)
        Image.fromarray(noisy).save(images / f"im{i}.png")
    out = tmp_path / "out"
    assert tradeoff.main(["--images", str(images), "--max-images", "2", "--crop", "64",
                          "--steps", "0,4", "--qualities", "1,3,5,6", "-o", str(out)]) == 0
    result = json.loads((out / "refine-tradeoff.json").read_text())
    assert result["images"] == 2 and result["megapixels"] == pytest.approx(2 * 64 * 64 / 1e6)
    base, refined = result["runs"]
    assert (base["steps"], refined["steps"]) == (0, 4)
    assert base["bd_rate_vs_0"] == 0 and np.isfinite(refined["bd_rate_vs_0"])
    assert [p["quality"] for p in refined["points"]] == [1, 3, 5, 6]
    assert all(p["bpp"] > 0 and p["encode_s"] > 0 for p in refined["points"])
    assert len(refined["psnr_gain_vs_0"]) == 4 and refined["encode_s_per_mp"] > 0
    assert (out / "refine-tradeoff.png").stat().st_size > 0
    assert "BD-rate" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        tradeoff.main(["--images", str(images), "--steps", "4"])  # no reference run
