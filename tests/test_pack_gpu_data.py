"""training/pack_gpu_data.py: images for a lent GPU machine, packed into a byte budget."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from _fastcodec_test_helpers import training_script


@pytest.fixture(scope="module")
def pack():
    return training_script("pack_gpu_data")


def test_packs_jpeg_training_crops_and_png_validation_crops_within_the_budget(pack, tiny_images,
                                                                             tmp_path, capsys):
    val = tmp_path / "val"
    val.mkdir()
    rng = np.random.default_rng(1)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (40 + i, 70, 3), dtype=np.uint8)).save(val / f"v{i}.png")
    out = tmp_path / "out"
    (out / "train").mkdir(parents=True)
    (out / "train" / "stale.jpg").write_bytes(b"from an earlier pack")
    budget = 0.012  # MiB: room for some of the eight tiny crops, not all
    assert pack.main(["--train", str(tiny_images), "--val", str(val), "--out", str(out),
                      "--budget-mb", str(budget), "--val-images", "2", "--val-crop", "32"]) == 0
    train = sorted((out / "train").iterdir())
    vals = sorted((out / "val").iterdir())
    assert 0 < len(train) < 8 and all(p.suffix == ".jpg" for p in train)
    assert [p.name for p in vals] == ["v0.png", "v1.png"]
    assert sum(p.stat().st_size for p in train + vals) <= budget * 2**20
    for p in vals:  # centre crops, pixels as in the source
        with Image.open(p) as im:
            assert im.size == (32, 32)
    with Image.open(val / "v1.png") as src, Image.open(out / "val" / "v1.png") as crop:
        assert np.array_equal(np.asarray(src)[4:36, 19:51], np.asarray(crop))
    for p in train:  # close to the PNG it came from
        with Image.open(p) as a, Image.open(tiny_images / (p.stem + ".png")) as b:
            err = np.asarray(a, np.float64) - np.asarray(b, np.float64)
        assert 10 * np.log10(255**2 / np.mean(err**2)) > 35
    assert f"{len(train)} of 8 training crops" in capsys.readouterr().out

    assert pack.main(["--train", str(tiny_images), "--val", str(val), "--out", str(out),
                      "--budget-mb", "0.0001"]) == 1  # not even one crop fits
