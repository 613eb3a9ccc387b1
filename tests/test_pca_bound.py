"""training/pca_bound.py: the linear yardstick for the latent size (PCA of 16x16x3 blocks)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from _fastcodec_test_helpers import training_script


@pytest.fixture(scope="module")
def pca_bound():
    return training_script("pca_bound")


def _smooth_image(rng, h, w):
    """Random low-frequency RGB image (uint8): structured enough that PCA compacts it."""
    coarse = rng.uniform(0, 255, (h // 8 + 2, w // 8 + 2, 3))
    big = np.kron(coarse, np.ones((8, 8, 1)))[:h, :w]
    return np.clip(big + rng.normal(0, 4, big.shape), 0, 255).astype(np.uint8)


def test_blocks_are_the_image_tiles_in_raster_order(pca_bound, tmp_path):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (37, 50, 3), dtype=np.uint8)  # 2x3 whole blocks, the rest dropped
    Image.fromarray(img).save(tmp_path / "a.png")
    blocks = pca_bound.image_blocks([tmp_path / "a.png"])
    assert blocks.shape == (6, 768)
    np.testing.assert_array_equal(blocks[4].reshape(16, 16, 3), img[16:32, 16:32])


def test_psnr_grows_with_k_and_is_lossless_at_full_rank(pca_bound):
    rng = np.random.default_rng(1)
    train = rng.normal(0, 30, (2000, 768)) @ rng.normal(0, 1, (768, 768)) / 28 + 128
    val = rng.normal(0, 30, (300, 768)) @ rng.normal(0, 1, (768, 768)) / 28 + 128
    psnr = pca_bound.pca_psnr(train, val, [16, 64, 256, 768])
    assert psnr[16] < psnr[64] < psnr[256]
    assert psnr[768] > 200  # every axis kept: only rounding error is left


def test_command_line_on_a_folder(pca_bound, tmp_path, capsys):
    rng = np.random.default_rng(2)
    for folder in ("train", "val"):
        (tmp_path / folder).mkdir()
        for i in range(3):
            Image.fromarray(_smooth_image(rng, 64, 80)).save(tmp_path / folder / f"{i}.png")
    assert pca_bound.main(["--train", str(tmp_path / "train"), "--val", str(tmp_path / "val"),
                           "--train-stride", "1", "-k", "8", "32"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("60 training blocks, 60 validation blocks")
    db = [float(line.split(":")[1].split()[0]) for line in lines[1:]]
    assert len(db) == 2 and 0 < db[0] < db[1]
    with pytest.raises(SystemExit, match="not a folder"):
        pca_bound.main(["--val", str(tmp_path / "missing")])
