"""Encoder-side latent refinement (fastcodec.refine): lower real loss, same format, same decoder."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import fastcodec
from fastcodec import zoo
from fastcodec.cli import main as cli_main
from fastcodec.metrics import psnr
from fastcodec.models import pad_to_multiple
from fastcodec.refine import MAX_STEPS, refine_latent
from fastcodec.samples import sample_paths


@pytest.fixture(scope="module")
def crop():
    """A 90x70 crop of the bundled sample (sides not multiples of 16), uint8 [H, W, 3]."""
    rgb = np.asarray(Image.open(sample_paths()[0]).convert("RGB"))
    return np.ascontiguousarray(rgb[100:190, 200:270])


@pytest.fixture(scope="module")
def shipped():
    return zoo.load_model(zoo.DEFAULT_MODEL, "cpu")


def _quantizer(sm, quality):
    g, ig = sm.model.gains(quality - 1.0)
    med = torch.from_numpy(sm.tables[quality].medians)
    return (g.detach().reshape(1, -1, 1, 1), ig.detach().reshape(1, -1, 1, 1),
            med.reshape(1, -1, 1, 1))


def _real_loss(sm, x, y, quality, size):
    """Per image: lambda * 255^2 * MSE of the decoded (rounded) latent over the original pixels
    + bits of the rounded symbols under the prior per original pixel."""
    g, ig, med = _quantizer(sm, quality)
    lam = float(sm.model.lambda_of(quality - 1.0))
    with torch.no_grad():
        rounded = torch.round(y * g - med) + med
        x_hat = sm.model.g_s(rounded * ig)[..., : size[0], : size[1]]
        mse = (x_hat - x[..., : size[0], : size[1]]).pow(2).flatten(1).mean(1)
        bits = -torch.log2(sm.model.entropy.likelihood(rounded, g)).flatten(1).sum(1)
    return lam * 255.0**2 * mse + bits / (size[0] * size[1])


def _batch(crop):
    """Two different images of the crop's size, float [2, 3, H16, W16] padded, and (H, W)."""
    a = torch.from_numpy(crop).permute(2, 0, 1).float() / 255
    b = torch.flip(a, dims=(1,))  # upside down: another image
    x = torch.stack([a, b])
    return pad_to_multiple(x), tuple(crop.shape[:2])


@pytest.mark.parametrize("quality", [2.0, 6.0])
def test_refined_latent_has_lower_real_loss(shipped, crop, quality):
    x, size = _batch(crop)
    with torch.no_grad():
        y = shipped.model.g_a(x)
    g, ig, med = _quantizer(shipped, quality)
    lam = float(shipped.model.lambda_of(quality - 1.0))
    refined = refine_latent(shipped.model.g_s, shipped.model.entropy, x, y, g, ig, med, lam,
                            12, size=size)
    assert refined.shape == y.shape and refined.dtype == torch.float32
    base = _real_loss(shipped, x, y, quality, size)
    new = _real_loss(shipped, x, refined, quality, size)
    # every image keeps its best latent (step 0 is g_a's own), and the steps do find better ones
    assert torch.all(new <= base + 1e-6), (base, new)
    assert torch.all(new < base * 0.995), (base, new)
    assert not torch.equal(refined, y)


def test_tiled_refinement_lowers_the_whole_image_loss(shipped, crop):
    """Tiles of 2x2 latent pixels (the crop's latent is 6x5): each tile's distortion is taken
    on its own pixels through the halo; a misplaced crop would pick worse latents."""
    x, size = _batch(crop)
    quality = 6.0
    with torch.no_grad():
        y = shipped.model.g_a(x)
    g, ig, med = _quantizer(shipped, quality)
    lam = float(shipped.model.lambda_of(quality - 1.0))
    refined = refine_latent(shipped.model.g_s, shipped.model.entropy, x, y, g, ig, med, lam,
                            12, size=size, tile=2)
    base = _real_loss(shipped, x, y, quality, size)
    new = _real_loss(shipped, x, refined, quality, size)
    assert torch.all(new < base * 0.995), (base, new)


def test_refine_leaves_inputs_alone_and_zero_steps_is_identity(shipped, crop):
    x, size = _batch(crop)
    with torch.no_grad():
        y = shipped.model.g_a(x)
    y_before = y.clone()
    g, ig, med = _quantizer(shipped, 4.0)
    same = refine_latent(shipped.model.g_s, shipped.model.entropy, x, y, g, ig, med, 0.01, 0)
    assert torch.equal(same, y) and same is not y
    refine_latent(shipped.model.g_s, shipped.model.entropy, x, y, g, ig, med, 0.01, 2)
    assert torch.equal(y, y_before)
    assert all(p.grad is None for p in shipped.model.parameters())


def test_refined_files_decode_with_higher_psnr(crop):
    base = fastcodec.compress(crop, quality=6, device="cpu")[0]
    refined = fastcodec.compress(crop, quality=6, device="cpu", refine_steps=10)
    again = fastcodec.compress(crop, quality=6, device="cpu", refine_steps=10)
    assert refined == again  # seeded noise: the same bytes every time
    refined = refined[0]
    assert refined != base
    assert fastcodec.info(refined)["quality"] == fastcodec.info(base)["quality"] == 6.0
    out_base = fastcodec.decompress(base)[0]
    out = fastcodec.decompress(refined)[0]
    assert out.shape == crop.shape and out.dtype == np.uint8
    assert psnr(crop, out) > psnr(crop, out_base) + 0.1
    assert len(refined) < 1.1 * len(base)


def test_refine_with_rate_control(crop):
    codec = fastcodec.Codec(device="cpu", refine_steps=3)
    blob, = codec.compress(crop, target_bpp=1.0)
    assert 8 * len(blob) / (crop.shape[0] * crop.shape[1]) <= 1.0
    assert codec.last_choices[0]["met"]
    assert fastcodec.decompress(blob)[0].shape == crop.shape


@pytest.mark.parametrize("steps", [-1, True, 1.5, "3", MAX_STEPS + 1])
def test_bad_refine_steps(steps):
    with pytest.raises(ValueError, match="refine_steps"):
        fastcodec.Codec(device="cpu", refine_steps=steps)


def test_cli_refine(tmp_path, crop, capsys):
    src = tmp_path / "a.png"
    Image.fromarray(crop).save(src)
    assert cli_main(["compress", str(src), "-o", str(tmp_path / "plain"), "-q", "6"]) == 0
    assert cli_main(["compress", str(src), "-o", str(tmp_path / "refined"), "-q", "6",
                     "--refine", "20", "--json"]) == 0
    assert '"refine_steps": 20' in capsys.readouterr().out
    plain = (tmp_path / "plain" / "a.fcc").read_bytes()
    refined = (tmp_path / "refined" / "a.fcc").read_bytes()
    assert plain != refined
    assert psnr(crop, fastcodec.decompress(refined)[0]) > psnr(crop, fastcodec.decompress(plain)[0])
    with pytest.raises(SystemExit) as exc:
        cli_main(["compress", str(src), "-o", str(tmp_path / "x"), "--refine", "-2"])
    assert exc.value.code == 2
    assert "--refine" in capsys.readouterr().err


def test_wide_image_is_refined_in_tiles(crop):
    """1090 pixels wide: a latent of 69 columns, refined as two tiles (REFINE_TILE = 64)."""
    from fastcodec.refine import REFINE_TILE

    wide = np.ascontiguousarray(np.tile(crop[:40], (1, 16, 1))[:, :1090])
    assert -(-wide.shape[1] // 16) > REFINE_TILE
    base = fastcodec.compress(wide, quality=6, device="cpu")[0]
    refined = fastcodec.compress(wide, quality=6, device="cpu", refine_steps=4)[0]
    out_base, out = fastcodec.decompress([base, refined])
    assert out.shape == wide.shape
    assert psnr(wide, out) > psnr(wide, out_base) + 0.05


def test_first_step_size_grows_with_lambda():
    from fastcodec.refine import REFINE_LR, REFINE_LR_LAMBDA, first_step_size

    assert first_step_size(REFINE_LR_LAMBDA) == pytest.approx(REFINE_LR)
    sizes = [first_step_size(lam) for lam in (0.0004, 0.004, 0.04, 0.13)]
    assert sizes == sorted(sizes) and sizes[0] > 0
