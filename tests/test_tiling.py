"""Tiled transforms (fastcodec.tiling) and the engine's tile_size: tiled == untiled, the halo
follows the kernels, and too small a halo is caught."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fastcodec.container import pack
from fastcodec.engine import Engine
from fastcodec.models import CodecModel
from fastcodec.tiling import (
    analysis_tiled,
    receptive_halo_analysis,
    receptive_halo_synthesis,
    synthesis_tiled,
)
from fastcodec.zoo import load_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")

EXACT = 1e-10  # float64: only the summation order may differ between a tile and the whole


def tiny_model(analysis_kernels=(5, 3, 3, 3), skip=False) -> CodecModel:
    """A small float64 model in eval mode (random weights, fixed seed; with ``skip``, random
    skip paths too, which stay inside each 2x2 window and so need no more halo)."""
    torch.manual_seed(0)
    model = CodecModel(N=8, M=8, analysis_kernels=analysis_kernels, skip=skip).double().eval()
    if skip:
        with torch.no_grad():
            for conv in (*model.g_a.skips, *model.g_s.skips):
                conv.weight.normal_(0, 0.3)
                conv.bias.normal_(0, 0.1)
    return model


def random_image(batch, height, width, seed=1) -> torch.Tensor:
    """float64 ``[batch, 3, height, width]`` uniform in [0, 1), channels_last."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, 3, height, width, dtype=torch.float64, generator=gen)
    return x.contiguous(memory_format=torch.channels_last)


def random_latent(batch, channels, height, width, seed=2) -> torch.Tensor:
    """float64 ``[batch, channels, height, width]`` standard normal, scaled like a latent."""
    gen = torch.Generator().manual_seed(seed)
    return 3 * torch.randn(batch, channels, height, width, dtype=torch.float64, generator=gen)


# (batch, image height, image width, tile in image pixels): odd tile counts, non-square,
# sides not multiples of the tile, tile == image, tile larger than the image
ANALYSIS_CASES = [
    (1, 48, 48, 16),     # 3 x 3 tiles of one latent pixel
    (2, 80, 48, 32),     # 3 x 2 tiles, the last ones partial; batch 2
    (1, 112, 208, 48),   # 3 x 5 tiles, partial at the bottom and right
    (2, 64, 96, 64),     # tile == height, 2 tiles across
    (1, 64, 64, 64),     # tile == image: one call
    (1, 32, 48, 128),    # tile larger than the image
]


@pytest.mark.parametrize("kernels, skip", [((5, 3, 3, 3), False), ((5, 5, 5, 5), False),
                                          ((5, 3, 3, 3), True)])
@pytest.mark.parametrize("batch, height, width, tile", ANALYSIS_CASES)
def test_analysis_tiled_is_exact(kernels, skip, batch, height, width, tile):
    model = tiny_model(kernels, skip)
    x = random_image(batch, height, width)
    with torch.no_grad():
        whole = model.g_a(x)
        tiled = analysis_tiled(model.g_a, x, tile)
    assert tiled.shape == whole.shape and tiled.dtype == whole.dtype
    assert tiled.is_contiguous(memory_format=torch.channels_last)
    assert whole.abs().max() > 0.01  # a real signal, not zeros
    assert (tiled - whole).abs().max().item() < EXACT


# (batch, latent height, latent width, tile in latent pixels)
SYNTHESIS_CASES = [
    (1, 3, 3, 1),
    (2, 5, 3, 2),
    (1, 7, 13, 3),
    (2, 4, 6, 4),
    (1, 4, 4, 4),
    (1, 2, 3, 8),
]


@pytest.mark.parametrize("skip", [False, True])
@pytest.mark.parametrize("batch, height, width, tile", SYNTHESIS_CASES)
def test_synthesis_tiled_is_exact(skip, batch, height, width, tile):
    model = tiny_model(skip=skip)
    y = random_latent(batch, model.M, height, width)
    with torch.no_grad():
        whole = model.g_s(y)
        tiled = synthesis_tiled(model.g_s, y, tile)
    assert tiled.shape == (batch, 3, 16 * height, 16 * width) == whole.shape
    assert whole.abs().max() > 0.01
    assert (tiled - whole).abs().max().item() < EXACT


def test_synthesis_tiled_keeps_channels_last():
    model = tiny_model()
    y = random_latent(1, model.M, 5, 7).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        tiled = synthesis_tiled(model.g_s, y, 2)
        whole = model.g_s(y)
    assert tiled.is_contiguous(memory_format=torch.channels_last)
    assert (tiled - whole).abs().max().item() < EXACT


@pytest.mark.parametrize("halo", [0, 1])
def test_too_small_a_halo_is_not_exact(halo):
    """The exactness tests can fail: without enough halo, tile seams show."""
    model = tiny_model()
    x = random_image(1, 80, 112)
    y = random_latent(1, model.M, 5, 7)
    with torch.no_grad():
        a_err = (analysis_tiled(model.g_a, x, 32, halo=halo) - model.g_a(x)).abs().max()
        s_err = (synthesis_tiled(model.g_s, y, 2, halo=halo) - model.g_s(y)).abs().max()
    assert a_err.item() > 1e-4 and s_err.item() > 1e-4


def test_receptive_halos_follow_the_kernels():
    # g_a (5,3,3,3) + 3x3 head, radius in image px: (2+1) + (2+2) + (4+4) + (8+8) + 16 = 47
    #   -> ceil(47 / 16) = 3, + 1 margin = 4 latent px
    default = tiny_model()
    assert receptive_halo_analysis(default.g_a) == 4
    # g_s: 1 + 1/2 + 1/4 + 1/8 + 1/16 latent px = 1.9375 -> 2, + 1 = 3
    assert receptive_halo_synthesis(default.g_s) == 3
    # (5,5,5,5): (2+1) + (4+2) + (8+4) + (16+8) + 16 = 61 -> 4, + 1 = 5
    assert receptive_halo_analysis(tiny_model((5, 5, 5, 5)).g_a) == 5
    wide = CodecModel(N=8, M=8, synthesis_kernels=(5, 5, 5, 5))
    assert receptive_halo_synthesis(wide.g_s) == 5  # 2 * 1.875 + 1/16 = 3.8125 -> 4, + 1
    shipped = load_model().model  # the shipped model has the default kernels
    assert shipped.config["analysis_kernels"] == [5, 3, 3, 3]
    assert shipped.config["synthesis_kernels"] == [3, 3, 3, 3]
    assert receptive_halo_analysis(shipped.g_a) == 4
    assert receptive_halo_synthesis(shipped.g_s) == 3


def test_tiled_argument_errors():
    model = tiny_model()
    x = random_image(1, 32, 32)
    with pytest.raises(ValueError, match="multiple of 16"):
        analysis_tiled(model.g_a, x, 24)
    with pytest.raises(ValueError, match="positive int"):
        analysis_tiled(model.g_a, x, 0)
    with pytest.raises(ValueError, match="multiples of 16"):
        analysis_tiled(model.g_a, random_image(1, 30, 32), 16)
    with pytest.raises(ValueError, match="halo"):
        synthesis_tiled(model.g_s, random_latent(1, 8, 2, 2), 1, halo=-1)


# ------------------------------------------------------------------------------- engine

def smooth_image(height, width, seed) -> np.ndarray:
    """uint8 ``[height, width, 3]``: low-frequency colour waves plus a little noise."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:height, 0:width] / max(height, width)
    waves = [np.sin(rng.uniform(2, 6) * rows + rng.uniform(2, 6) * cols + rng.uniform(0, 6))
             for _ in range(3)]
    picture = 128 + 90 * np.stack(waves, -1) + rng.normal(0, 3, (height, width, 3))
    return np.clip(picture, 0, 255).astype(np.uint8)


def to_blobs(shipped, coded, images, quality):
    """``.fcc`` bytes of the engine's ``encode`` output."""
    return [pack(model_id=shipped.model_id, weights_hash=shipped.weights_hash, quality=quality,
                 height=im.shape[0], width=im.shape[1], layout="rgb", latent_shape=shape,
                 streams=streams) for im, (shape, streams) in zip(images, coded)]


@pytest.fixture(scope="module")
def shipped():
    return load_model()


def test_engine_tiled_matches_untiled(shipped):
    image = smooth_image(150, 200, seed=3)  # padded to 160 x 208: 3 x 4 tiles of 64
    untiled = Engine(shipped, threads=1)
    tiled = Engine(shipped, threads=1, tile_size=64)
    assert untiled.tile_size == 2048 and tiled.tile_size == 64
    quality = 4.0
    (shape_u, _), = coded_u = untiled.encode([image], quality)
    (shape_t, _), = coded_t = tiled.encode([image], quality)
    assert shape_u == shape_t == (shipped.model.M, 10, 13)
    (_, reference), = untiled.decode(to_blobs(shipped, coded_u, [image], quality))
    blob_t = to_blobs(shipped, coded_t, [image], quality)
    for decoder in (untiled, tiled):
        (header, picture), = decoder.decode(blob_t)
        assert picture.shape == image.shape and picture.dtype == np.uint8
        assert np.abs(picture.astype(int) - reference).mean() < 1


def test_engine_tile_size_validation(shipped):
    for bad in (0, -16, 24, 100, 16.0, True, "64"):
        with pytest.raises(ValueError, match="tile_size must be a positive multiple of 16"):
            Engine(shipped, threads=1, tile_size=bad)
    assert Engine(shipped, threads=1, tile_size=16).tile_size == 16
