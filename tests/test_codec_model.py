"""The learned codec model: shapes and padding, gains, the factorized prior's integer tables, and
coding with them (real coded bits vs the likelihoods, deterministic bytes, roundtrips)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from fastcodec.entropy.factorized import FactorizedPrior
from fastcodec.models import CodecModel, pad_to_multiple
from fastcodec.rangecoder import STREAM_OVERHEAD_BYTES, CdfTables

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


VAL_DIR = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "val"


def small_model(seed: int = 0, **kw) -> CodecModel:
    torch.manual_seed(seed)
    cfg = dict(N=16, M=24)
    cfg.update(kw)
    return CodecModel(**cfg)


def channel_indexes(c: int, *shape) -> np.ndarray:
    return np.broadcast_to(
        np.arange(c, dtype=np.int32).reshape((c,) + (1,) * len(shape)), (c, *shape)
    )


def fit_prior(y: torch.Tensor, gain=None, steps: int = 300, seed: int = 0) -> FactorizedPrior:
    """A FactorizedPrior fitted to fixed latents ``y [B, C, h, w]`` quantized with ``gain [C]``
    (likelihood of ``y * gain + U(-1/2, 1/2)`` + aux), as in training."""
    torch.manual_seed(seed)
    c = y.shape[1]
    g = torch.ones(c) if gain is None else gain
    g = g.reshape(1, c, 1, 1)
    prior = FactorizedPrior(c, init_scale=float(10 / g.min()))
    net = [p for n, p in prior.named_parameters() if n != "quantiles"]
    opt = torch.optim.Adam(net, lr=1e-2)
    aux_opt = torch.optim.Adam([prior.quantiles], lr=5e-2)
    for _ in range(steps):
        lik = prior.likelihood(y * g + torch.empty_like(y).uniform_(-0.5, 0.5), g)
        loss = -torch.log2(lik).sum() / y.numel() + prior.aux_loss()
        opt.zero_grad()
        aux_opt.zero_grad()
        loss.backward()
        opt.step()
        aux_opt.step()
    return prior


def check_tables(t, channels: int) -> None:
    cdfs, lengths, offsets = t.cdfs, t.cdf_lengths, t.offsets
    assert cdfs.dtype == np.int32 and lengths.dtype == np.int32 and offsets.dtype == np.int32
    assert cdfs.shape[0] == channels == lengths.shape[0] == offsets.shape[0]
    assert t.medians.dtype == np.float32 and t.medians.shape == (channels,)
    assert np.all(lengths <= cdfs.shape[1]) and lengths.max() == cdfs.shape[1]
    assert np.all(lengths >= 3)  # at least one regular symbol + the escape bin
    for c in range(channels):
        n = int(lengths[c])
        row = cdfs[c, :n].astype(np.int64)
        assert row[0] == 0 and row[-1] == 1 << t.precision
        assert np.all(np.diff(row) >= 1)  # strictly increasing: every bin, escape included
        assert np.all(cdfs[c, n:] == row[-1])  # padding repeats the last entry
        # symbol 0 (the median) is inside the regular range
        assert offsets[c] <= 0 < offsets[c] + n - 2
    CdfTables(cdfs, lengths, offsets, t.precision)  # the coder accepts them


# ------------------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("size", [(16, 16), (50, 70), (33, 17), (64, 48)])
def test_shapes_and_padding(size):
    h, w = size
    model = small_model()
    x = torch.rand(2, 3, h, w)
    out = model(x, torch.tensor([0, 5]))
    lh, lw = -(-h // 16), -(-w // 16)
    assert out["x_hat"].shape == x.shape
    assert out["likelihoods"].shape == (2, 24, lh, lw)
    assert out["y"].shape == (2, 24, lh, lw)
    assert out["bpp"].shape == (2,) and torch.all(out["bpp"] > 0)
    model.eval()
    with torch.no_grad():
        out = model(x, 2.5)
    assert out["x_hat"].shape == x.shape
    symbols, info = model.compress_latents(x, 2.5)
    assert symbols.shape == (2, 24, lh, lw) and symbols.dtype == np.int32
    assert model.decompress_latents(symbols, info).shape == x.shape
    padded = pad_to_multiple(x)
    assert padded.shape[-2:] == (16 * lh, 16 * lw)
    assert torch.equal(padded[..., :h, :w], x)


def test_gradients_reach_every_parameter():
    model = small_model()
    with torch.no_grad():  # untrained latents are small: large gains keep symbols non-zero
        model.log_gain.add_(4.0)
    out = model(torch.rand(2, 3, 32, 32), torch.tensor([1, 4]))
    loss = (out["x_hat"] ** 2).mean() + out["bpp"].mean()
    loss.backward()
    for name, p in model.named_parameters():
        if name == "entropy.quantiles":
            assert p.grad is None  # the main loss does not move the quantiles
        elif name.startswith("log_gain") or name.startswith("log_inv_gain"):
            assert p.grad is not None and torch.all(p.grad[[1, 4]].abs().sum(1) > 0)
            assert torch.all(p.grad[[0, 2, 3, 5]] == 0)
        else:
            assert p.grad is not None and torch.any(p.grad != 0), name
    model.zero_grad()
    out["aux_loss"].backward()
    assert model.entropy.quantiles.grad is not None
    assert all(
        p.grad is None for n, p in model.named_parameters() if n != "entropy.quantiles"
    )


def test_skip_paths_start_as_identity_and_learn():
    """Zero-initialized skips leave the function unchanged, get gradients, and (trained) pass
    detail the pooling blocks cannot; analysis skips on every block, synthesis on the first 3."""
    torch.manual_seed(0)
    plain = CodecModel(N=16, M=24, first_width=8, last_width=4).eval()
    torch.manual_seed(0)
    skip = CodecModel(N=16, M=24, first_width=8, last_width=4, skip=True).eval()
    missing = skip.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert sorted(missing) == sorted(
        [f"g_a.skips.{i}.{p}" for i in range(4) for p in ("weight", "bias")]
        + [f"g_s.skips.{i}.{p}" for i in range(3) for p in ("weight", "bias")])
    assert skip.g_a.skips[0].weight.shape == (8, 3, 2, 2)  # 2x2 stride-2: space-to-depth + 1x1
    assert skip.g_s.skips[2].weight.shape == (16, 16, 2, 2)  # transposed: 1x1 + depth-to-space
    x = torch.rand(2, 3, 32, 48)
    with torch.no_grad():
        torch.testing.assert_close(skip.g_a(x), plain.g_a(x), rtol=0, atol=0)
        y = plain.g_a(x)
        torch.testing.assert_close(skip.g_s(y), plain.g_s(y), rtol=0, atol=0)
    skip.train()
    with torch.no_grad():  # untrained latents are small: large gains keep symbols non-zero
        skip.log_gain.add_(4.0)
    out = skip(x, torch.tensor([0, 5]))
    ((out["x_hat"] - x) ** 2).mean().backward()
    for conv in (*skip.g_a.skips, *skip.g_s.skips):
        assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0
    # a 2x2 checkerboard is invisible to the last pooling stage's phase but not to its skip
    with torch.no_grad():
        skip.g_a.skips[0].weight.normal_()
        board = (torch.arange(32)[:, None] + torch.arange(48)) % 2
        a = skip.g_a.skips[0](board.float().expand(1, 3, 32, 48))
        b = skip.g_a.skips[0](1 - board.float().expand(1, 3, 32, 48))
    assert (a - b).abs().max() > 1e-3


def test_gains_interpolate_geometrically():
    model = small_model()
    with torch.no_grad():
        model.log_gain.normal_()
        model.log_inv_gain.normal_()
    g2, ig2 = model.gains(2)
    g3, ig3 = model.gains(3)
    g, ig = model.gains(2.25)
    assert torch.allclose(g, g2**0.75 * g3**0.25, rtol=1e-5)
    assert torch.allclose(ig, ig2**0.75 * ig3**0.25, rtol=1e-5)
    assert torch.allclose(model.gains(5)[0], torch.exp(model.log_gain[5]))
    gb, _ = model.gains(torch.tensor([2.0, 2.25]))
    assert gb.shape == (2, 24) and torch.allclose(gb[1], g)
    lam = model.lambda_of(2.5)
    assert torch.isclose(lam, (model.lambdas[2] * model.lambdas[3]).sqrt())
    for bad in (-0.1, 5.01, float("nan")):
        with pytest.raises(ValueError):
            model.gains(bad)


# ------------------------------------------------------------------------------------- tables


@pytest.mark.parametrize("quality", [0, 2.5, 5])
def test_export_invariants(quality):
    model = small_model()
    with torch.no_grad():  # a density that is not the initial one
        model.entropy.quantiles.add_(torch.randn_like(model.entropy.quantiles))
        for b in model.entropy.biases:
            b.add_(torch.randn_like(b))
    model.eval()
    t = model.export_tables(quality)
    check_tables(t, 24)
    assert model.export_tables(quality) is t  # cached
    model.train()
    assert model.export_tables(quality) is not t  # the cache follows the weights


def test_export_respects_precision_and_escape():
    prior = FactorizedPrior(4)
    for precision in (12, 16):
        t = prior.export_tables(precision=precision)
        check_tables(t, 4)
    # max_symbols caps the support; the rest goes through the escape bin
    t = prior.export_tables(torch.full((4,), 50.0), max_symbols=31)
    assert np.all(t.cdf_lengths <= 33)
    check_tables(t, 4)


def test_coded_bits_match_likelihoods_on_fitted_latents():
    torch.manual_seed(1)
    c = 8
    scales = torch.logspace(-1, 1, c)[None, :, None, None]
    medians = torch.linspace(-0.4, 0.4, c)[None, :, None, None]
    y = torch.distributions.Laplace(0.0, 1.0).sample((1, c, 32, 32)) * scales + medians
    prior = fit_prior(y)
    for gain in (1.0, 2.5):
        g = torch.full((c,), gain)
        t = prior.export_tables(g)
        check_tables(t, c)
        med = torch.from_numpy(t.medians)[None, :, None, None]
        symbols = torch.round(y * gain - med)
        with torch.no_grad():
            lik = prior.likelihood(symbols + med, g[None, :, None, None])
        estimated = float(-torch.log2(lik).sum())
        stream = t.coder().encode(symbols.int().numpy()[0], channel_indexes(c, 32, 32))
        coded = 8 * (len(stream) - STREAM_OVERHEAD_BYTES)
        assert abs(coded / estimated - 1) < 0.02, (gain, coded, estimated)


def _real_image() -> torch.Tensor:
    """A validation photo (centre 128x128) when the data is there, else a synthetic scene."""
    paths = sorted(VAL_DIR.glob("*.png")) if VAL_DIR.is_dir() else []
    if paths:
        from PIL import Image

        with Image.open(paths[0]) as im:
            a = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
        h, w = a.shape[:2]
        a = a[(h - 128) // 2 : (h + 128) // 2, (w - 128) // 2 : (w + 128) // 2]
        return torch.from_numpy(a.copy()).permute(2, 0, 1)[None]
    g = torch.Generator().manual_seed(3)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 128), torch.linspace(0, 1, 128), indexing="ij")
    base = torch.stack([torch.sin(6 * xx + 2 * yy), torch.cos(4 * yy), xx * yy]) * 0.4 + 0.5
    return (base + 0.05 * torch.randn(3, 128, 128, generator=g)).clamp(0, 1)[None]


def test_coded_bits_match_likelihoods_on_a_real_image():
    """The model's transforms on a real image, its prior fitted to those latents: the range
    coder on the exported integer tables spends what the eval-mode likelihoods predict."""
    model = small_model(M=32)
    x = _real_image()
    with torch.no_grad():
        y = model.g_a(pad_to_multiple(x))
        # gains that bring every channel to a spread of a few quantization steps
        model.log_gain[3] = torch.log(3.0 / y.std(dim=(0, 2, 3)).clamp_min(1e-6))
        g, _ = model.gains(3)
    model.entropy = fit_prior(y, g, steps=300)
    model.eval()
    with torch.no_grad():
        out = model(x, 3)
    estimated = float(out["bpp"].sum()) * x.shape[-2] * x.shape[-1]
    streams, info = model.compress(x, 3)
    coded = 8 * (len(streams[0]) - STREAM_OVERHEAD_BYTES)
    assert estimated > 1000
    assert abs(coded / estimated - 1) < 0.03, (coded, estimated)
    # and the decoder gets exactly the encoder's symbols back, hence the same image
    symbols, _ = model.compress_latents(x, 3)
    assert np.array_equal(model.decode_symbols(streams, info), symbols)
    # (floats: equal up to the last bits oneDNN may change with buffer alignment)
    torch.testing.assert_close(
        model.decompress(streams, info), model.decompress_latents(symbols, info),
        rtol=0, atol=1e-5,
    )


# ------------------------------------------------------------------------------------- coding


def test_bytes_are_deterministic():
    model = small_model().eval()
    x = torch.rand(2, 3, 40, 56, generator=torch.Generator().manual_seed(5))
    a, info_a = model.compress(x, 1.5)
    b, info_b = model.compress(x, 1.5)
    assert a == b and info_a == info_b
    # a second model instance from the same weights makes the same tables and the same bytes
    other = CodecModel(**model.config)
    other.load_state_dict(model.state_dict())
    other.eval()
    c, _ = other.compress(x, 1.5)
    assert c == a
    for name in ("cdfs", "cdf_lengths", "offsets", "medians"):
        assert np.array_equal(
            getattr(model.export_tables(1.5), name), getattr(other.export_tables(1.5), name)
        )


def test_symbols_roundtrip_including_escapes():
    model = small_model().eval()
    t = model.export_tables(4)
    rng = np.random.default_rng(0)
    symbols = rng.integers(-3, 4, size=(3, 24, 5, 7)).astype(np.int32)
    symbols[0, 0, 0, 0] = 10_000  # far outside every row: escape bin + bypass bits
    symbols[1, 5, 2, 3] = -(2**31)
    symbols[2, 7, 4, 6] = t.offsets[7] + t.cdf_lengths[7] - 2  # first value past the row
    info = dict(height=80, width=112, quality=4.0, latent_shape=(24, 5, 7))
    streams = model.encode_symbols(symbols, 4)
    assert len(streams) == 3
    assert np.array_equal(model.decode_symbols(streams, info), symbols)


def test_stored_tables_are_used_verbatim():
    model = small_model().eval()
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    state = model.tables_state([0, 2.5])
    assert set(state) == {0.0, 2.5}
    streams, info = model.compress(x, 2.5)
    fresh = CodecModel(**model.config)
    fresh.load_state_dict(model.state_dict())
    fresh.eval()
    fresh.load_tables_state(state)
    assert fresh.export_tables(2.5).cdfs is not None
    assert np.array_equal(fresh.export_tables(2.5).cdfs, state[2.5]["cdfs"])
    assert np.array_equal(fresh.decode_symbols(streams, info), model.compress_latents(x, 2.5)[0])


def test_fit_quantiles_solves_the_quantile_equations():
    y = torch.distributions.Laplace(torch.linspace(-2, 3, 6).reshape(1, 6, 1, 1), 1.5).sample(
        (1, 1, 12, 12)).reshape(1, 6, 12, 12)
    prior = fit_prior(y, steps=60)
    before = float(prior.aux_loss().detach())
    after = prior.fit_quantiles()
    assert after < 1e-3 < before
    q = prior.quantiles.detach().double()[:, 0, :]
    assert torch.all(q[:, 0] < q[:, 1]) and torch.all(q[:, 1] < q[:, 2])
    cdf = torch.sigmoid(prior.logits_cdf(q[:, None, 1:2], True, torch.float64)).flatten()
    torch.testing.assert_close(cdf, torch.full_like(cdf, 0.5), atol=1e-6, rtol=0)
    check_tables(prior.export_tables(), 6)  # tables from the refit quantiles stay valid
