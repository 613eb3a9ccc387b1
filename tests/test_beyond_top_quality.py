"""training/beyond_top_quality.py: the top quality's latent on finer grids, coded for real,
against JPEG on the same crops."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from _fastcodec_test_helpers import training_script

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


def test_factor_one_is_the_top_quality_and_finer_grids_cost_more_bits(tiny_images):
    beyond = training_script("beyond_top_quality")
    from fastcodec import metrics, zoo
    from fastcodec.train.data import load_val

    model = zoo.load_file(zoo.weights_path()).model
    x = load_val(str(tiny_images), 32, 3)
    rows = beyond.finer_points(model, x, [1.0, 2.0], steps=3)
    top = model.num_qualities - 1
    assert [r["factor"] for r in rows] == [1.0, 2.0]
    assert rows[1]["lambda"] == pytest.approx(4 * float(model.lambdas[top]))
    # factor 1 codes exactly what the codec writes at its top quality
    streams, info = model.compress(x, top)
    assert rows[0]["plain"]["bpp"] == pytest.approx(
        np.mean([8.0 * len(s) / (32 * 32) for s in streams]))
    decoded = beyond._to_uint8(model.decompress(streams, info))
    assert rows[0]["plain"]["psnr"] == pytest.approx(
        np.mean([metrics.psnr(a, b) for a, b in zip(beyond._to_uint8(x), decoded)]))
    assert rows[1]["plain"]["bpp"] > rows[0]["plain"]["bpp"]  # a finer grid, more symbols
    for row in rows:
        assert all(math.isfinite(row[k][m]) for k in ("plain", "refined") for m in ("bpp", "psnr"))


def test_jpeg_reference_and_its_rate_at_a_psnr(tiny_images):
    beyond = training_script("beyond_top_quality")
    from fastcodec.train.data import load_val

    jpeg = beyond.jpeg_points(load_val(str(tiny_images), 32, 2), [30, 90])
    assert [j["quality"] for j in jpeg] == [30, 90]
    assert jpeg[1]["bpp"] > jpeg[0]["bpp"] and jpeg[1]["psnr"] > jpeg[0]["psnr"]
    mid = 0.5 * (jpeg[0]["psnr"] + jpeg[1]["psnr"])
    rate = beyond.jpeg_rate_at(jpeg, mid)
    assert rate == pytest.approx(math.sqrt(jpeg[0]["bpp"] * jpeg[1]["bpp"]))
    assert math.isnan(beyond.jpeg_rate_at(jpeg, jpeg[1]["psnr"] + 1))


def test_command_line_prints_a_row_per_factor(tiny_images, tmp_path, capsys):
    beyond = training_script("beyond_top_quality")
    from fastcodec.models import CodecModel

    path = tmp_path / "ckpt.pt"
    model = CodecModel(N=8, M=8)
    torch.save({"model": model.state_dict(), "model_config": model.config}, path)
    assert beyond.main([str(path), "--val", str(tiny_images), "--images", "2", "--crop", "32",
                        "--factors", "1,2", "--steps", "2", "--jpeg-qualities", "20,95"]) == 0
    out = capsys.readouterr().out
    assert "2 crops of 32px" in out
    assert out.count("refined 2:") == 3 and "JPEG: q20" in out
