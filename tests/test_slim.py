"""Reshaping a trained codec (fastcodec.models.slim): slimming (the kept channels, the folded
biases), added skips, widening the latent path and the hidden layers, the checkpoint it writes and the training run
that resumes from it."""

from __future__ import annotations

import pytest
import torch

from fastcodec.models import CodecModel
from fastcodec.models.slim import main as slim_main
from fastcodec.models.slim import dead_channels, narrow_latent, revive, slim, widen
from fastcodec.train import loop
from fastcodec.train.checkpoints import load_checkpoint, load_model, save_checkpoint
from fastcodec.train.options import build_parser
from fastcodec.train.schedule import rate_grad_scale

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


def _model(seed=0) -> CodecModel:
    torch.manual_seed(seed)
    m = CodecModel(N=12, M=8, last_width=6).eval()
    with torch.no_grad():  # biases > 0 so every channel is active somewhere
        for block in (*m.g_a.blocks, *m.g_s.blocks):
            block.bias.uniform_(0.05, 0.2)
    return m


def _samples(n=4, size=32, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=g)


def _outputs(m: CodecModel, x):
    with torch.no_grad():
        y = m.g_a(x)
        return y, m.g_s(y)


def test_same_widths_is_the_same_model():
    m, x = _model(), _samples()
    s = slim(m, x)
    assert s.config["first_width"] == 12 and s.config["last_width"] == 6
    for a, b in zip(_outputs(m, x), _outputs(s, x)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_dead_channels_are_the_ones_dropped_exactly():
    """Channels that never fire have importance 0: slimming them away changes nothing."""
    m, x = _model(), _samples()
    with torch.no_grad():
        for i in (1, 4, 7, 10):  # first analysis block: 4 dead filters of 12
            m.g_a.blocks[0].weight[i] = 0
            m.g_a.blocks[0].bias[i] = -1
        for c in (0, 3):  # last synthesis block: 2 dead output channels of 6 (4 conv rows each)
            m.g_s.blocks[3].weight[c * 4 : c * 4 + 4] = 0
            m.g_s.blocks[3].bias[c * 4 : c * 4 + 4] = -1
    s = slim(m, x, first_width=8, last_width=4)
    assert s.g_a.blocks[0].weight.shape[0] == 8 and s.g_a.blocks[1].weight.shape[1] == 8
    assert s.g_s.blocks[3].weight.shape[0] == 16 and s.g_s.out.weight.shape[1] == 4
    (y0, x0), (y1, x1) = _outputs(m, x), _outputs(s, x)
    torch.testing.assert_close(y1, y0, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(x1, x0, rtol=1e-5, atol=1e-6)


def test_constant_channels_fold_into_the_next_bias():
    """A dropped channel that is constant inside the image moves into the next layer's bias."""
    m = _model()
    x = _samples(size=64)
    b0, b1 = m.g_a.blocks[0], m.g_a.blocks[1]
    with torch.no_grad():
        b0.bias.fill_(1.0)  # every channel fires strongly (mean activation >= 1) ...
        b0.weight[5] = 0  # ... but channel 5 is the constant relu(0.5) = 0.5
        b0.bias[5] = 0.5
        b1.weight[:, 5] *= 0.05  # and the next layer reads it weakly: the least important
    s = slim(m, x, first_width=11)
    assert torch.all(s.g_a.blocks[0].bias == 1.0)  # channel 5 (bias 0.5) is the one dropped
    ref = b1(b0(x))
    out = s.g_a.blocks[1](s.g_a.blocks[0](x))
    # away from the borders (where the padding zeroes the constant) the result is unchanged
    inner = (..., slice(2, -2), slice(2, -2))
    torch.testing.assert_close(out[inner], ref[inner], rtol=1e-5, atol=1e-5)
    kept = [i for i in range(12) if i != 5]
    naive = torch.nn.functional.conv2d(  # the same channels without the folded bias
        b0(x)[:, kept], b1.weight[:, kept], b1.bias, padding=1)
    assert (torch.nn.functional.avg_pool2d(torch.relu(naive), 2) - ref)[inner].abs().max() > 1e-3


def test_bad_widths():
    m, x = _model(), _samples()
    with pytest.raises(ValueError, match="widths"):
        slim(m, x, first_width=13)
    with pytest.raises(ValueError, match="widths"):
        slim(m, x, last_width=0)


def _tiny_run(tmp_path, tiny_images, steps: int):
    """A few training steps of an 8-channel model: the checkpoint the command line reshapes."""
    run = tmp_path / "run"
    loop.run(build_parser().parse_args([
        "--data", str(tiny_images), "--val", "", "--out", str(run), "--N", "8", "--M", "8",
        "--crop", "32", "--batch-size", "2", "--steps", str(steps), "--threads", "1",
    ]))
    return run


def test_command_line_writes_a_checkpoint_training_resumes(tmp_path, tiny_images, monkeypatch):
    run = _tiny_run(tmp_path, tiny_images, steps=3)
    out = tmp_path / "slim.pt"
    assert slim_main([str(run / "latest.pt"), str(out), "--first-width", "4", "--last-width",
                      "2", "--data", str(tiny_images), "--samples", "4", "--crop", "32"]) == 0
    ckpt = load_checkpoint(out)
    assert ckpt["step"] == 0 and "optimizer" not in ckpt
    assert ckpt["model_config"]["first_width"] == 4 and ckpt["model_config"]["last_width"] == 2
    assert ckpt["slimmed_from"]["step"] == 3

    fine = tmp_path / "fine"
    loop.run(build_parser().parse_args([
        "--data", str(tiny_images), "--val", "", "--out", str(fine), "--resume", str(out),
        "--crop", "32", "--batch-size", "2", "--steps", "4", "--threads", "1",
    ]))
    done = load_checkpoint(fine / "latest.pt")
    assert done["step"] == 4 and done["model_config"]["first_width"] == 4
    assert done["lineage"] == [{"run": "run", "steps": 3,
                                "then": "first_width 4, last_width 2"}]
    from fastcodec import zoo

    shipped = zoo.load_file(zoo.export_checkpoint(fine / "latest.pt", tmp_path / "t-1.pt", "t-1"))
    assert shipped.metadata["total_steps"] == 7 and shipped.metadata["lineage"][0]["steps"] == 3
    assert load_model(fine / "latest.pt").g_a.blocks[0].weight.shape[0] == 4

    # training goes on from the shipped model itself (by id): its weights, step and lineage
    monkeypatch.setenv(zoo.WEIGHTS_PATH_ENV, str(tmp_path))
    as_ckpt = load_checkpoint("t-1")
    assert as_ckpt["step"] == 4 and as_ckpt["lineage"] == done["lineage"]
    assert "optimizer" not in as_ckpt and as_ckpt["from_weights"] == "t-1"
    for name, value in shipped.model.state_dict().items():
        assert torch.equal(as_ckpt["model"][name], value), name
    more = tmp_path / "more"
    loop.run(build_parser().parse_args([
        "--data", str(tiny_images), "--val", "", "--out", str(more), "--resume", "t-1",
        "--crop", "32", "--batch-size", "2", "--steps", "6", "--threads", "1",
    ]))
    again = load_checkpoint(more / "latest.pt")
    assert again["step"] == 6 and again["lineage"] == done["lineage"]
    assert not torch.equal(again["model"]["g_a.head.weight"], as_ckpt["model"]["g_a.head.weight"])
    assert load_checkpoint(tmp_path / "t-1.pt")["step"] == 4  # a path works as well


def test_adding_skips_keeps_the_function_and_slimming_keeps_their_channels():
    m, x = _model(), _samples()
    with_skip = slim(m, x, skip=True)
    assert with_skip.config["skip"] and with_skip.g_a.skips is not None
    for a, b in zip(_outputs(m, x), _outputs(with_skip, x)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)  # zero-initialized
    with torch.no_grad():  # trained skips, and a dead channel in each slimmed layer
        for conv in (*with_skip.g_a.skips, *with_skip.g_s.skips):
            conv.weight.normal_(0, 0.05)
            conv.bias.uniform_(-0.05, 0.05)
        with_skip.g_a.blocks[0].weight[3] = 0
        with_skip.g_a.blocks[0].bias[3] = -1
        with_skip.g_a.skips[0].weight[3] = 0  # the channel is dead in both paths
        with_skip.g_a.skips[0].bias[3] = 0
        with_skip.g_s.blocks[3].weight[4:8] = 0  # output channel 1 of 6 (no skip there)
        with_skip.g_s.blocks[3].bias[4:8] = -1
    s = slim(with_skip, x, first_width=11, last_width=5)
    assert s.g_a.skips[1].weight.shape[1] == 11 and len(s.g_s.skips) == 3
    for a, b in zip(_outputs(with_skip, x), _outputs(s, x)):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)


def _trained_skips(m: CodecModel) -> CodecModel:
    with torch.no_grad():
        for conv in (*m.g_a.skips, *m.g_s.skips):
            conv.weight.normal_(0, 0.05)
            conv.bias.uniform_(-0.05, 0.05)
    return m


def _model_with_skips(skip: bool) -> CodecModel:
    """``_model()``, with trained-looking skip paths added when ``skip``."""
    m = _model()
    return _trained_skips(slim(m, _samples(), skip=True)) if skip else m


@pytest.mark.parametrize("skip", [False, True])
def test_widening_the_head_keeps_the_function(skip):
    m, x = _model_with_skips(skip), _samples()
    w = widen(m, head_width=20)
    assert w.g_a.blocks[3].weight.shape[0] == 20 and w.g_a.head.weight.shape[1] == 20
    assert w.g_a.blocks[3].weight[12:].abs().sum() > 0  # fresh filters, read with zeros
    for a, b in zip(_outputs(m, x), _outputs(w, x)):
        torch.testing.assert_close(b, a, rtol=1e-6, atol=1e-6)
    assert widen(m, head_width=12).config["head_width"] == 12


@pytest.mark.parametrize("skip", [False, True])
def test_widening_the_latent_keeps_old_channels_and_reads_new_ones_weakly(skip):
    m, x = _model_with_skips(skip), _samples()
    with torch.no_grad():
        m.log_gain.uniform_(-1, 1)
    w = widen(m, M=11)
    (y0, x0), (y1, x1) = _outputs(m, x), _outputs(w, x)
    assert y1.shape[1] == 11
    torch.testing.assert_close(y1[:, :8], y0, rtol=1e-6, atol=1e-6)
    assert y1[:, 8:].abs().mean() > 0.1 * y0.abs().mean()  # the new channels carry values
    change = (x1 - x0).abs().max()
    assert 0 < change < 0.05 * x0.abs().max()  # read with 1e-2 scaled filters
    with torch.no_grad():  # without those reads: the same reconstruction
        w.g_s.blocks[0].weight[:, 8:] = 0
    torch.testing.assert_close(_outputs(w, x)[1], x0, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(w.log_gain[:, 8:], m.log_gain.mean(1, keepdim=True).expand(-1, 3))
    # the densities of the trained channels are unchanged
    g0, _ = m.gains(2)
    g1, _ = w.gains(2)
    probe = torch.randn(2, 8, 4, 4) * 3
    m.eval(), w.eval()
    g0, g1 = g0[None, :, None, None], g1[None, :, None, None]
    lik0 = m.entropy.likelihood(probe * g0, g0)
    lik1 = w.entropy.likelihood(torch.cat([probe, torch.zeros(2, 3, 4, 4)], 1) * g1, g1)[:, :8]
    torch.testing.assert_close(lik1, lik0)


@pytest.mark.parametrize("skip", [False, True])
def test_widening_the_hidden_layers_keeps_the_function_and_trains_the_new_channels(skip):
    m, x = _model_with_skips(skip), _samples()
    w = widen(m, N=17)
    assert w.config["N"] == 17
    # widths that followed N are pinned at the old ones: only the hidden layers grow
    assert w.config["first_width"] == 12 and w.config["head_width"] == 12
    assert w.config["last_width"] == 6
    assert w.g_a.blocks[0].weight.shape[0] == 12 and w.g_a.head.weight.shape[1] == 12
    assert [tuple(b.weight.shape[:2]) for b in w.g_a.blocks[1:]] == [(17, 12), (17, 17), (12, 17)]
    assert [tuple(b.weight.shape[:2]) for b in w.g_s.blocks] == [
        (68, 8), (68, 17), (68, 17), (24, 17)]
    assert w.g_a.blocks[1].weight[12:].abs().sum() > 0  # fresh writers, read with zeros
    assert w.g_s.blocks[1].weight[48:].abs().sum() > 0
    for a, b in zip(_outputs(m, x), _outputs(w, x)):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        torch.testing.assert_close(w(x, 2.5)["bpp"], m(x, 2.5)["bpp"])
    w.train()
    ((w(x, 2)["x_hat"] - x) ** 2).mean().backward()
    for reader in (w.g_a.blocks[2], w.g_a.blocks[3], w.g_s.blocks[1], w.g_s.blocks[3]):
        assert reader.weight.grad[:, 12:].abs().sum() > 0  # the zero reads learn
    with pytest.raises(ValueError, match="only grows"):
        widen(m, N=10)


@pytest.mark.parametrize("skip", [False, True])
def test_widening_the_analysis_alone_keeps_the_function_and_the_decoder(skip):
    m, x = _model_with_skips(skip), _samples()
    w = widen(m, analysis_width=20)
    assert w.config["N"] == 12 and w.config["analysis_width"] == 20
    assert [tuple(b.weight.shape[:2]) for b in w.g_a.blocks[1:]] == [(20, 12), (20, 20), (12, 20)]
    ws, ms = w.state_dict(), m.state_dict()
    for key in ms:  # the decoder and the prior are the same tensors
        if key.startswith(("g_s.", "entropy.")) or key == "log_inv_gain":
            assert torch.equal(ws[key], ms[key]), key
    assert w.g_a.blocks[1].weight[12:].abs().sum() > 0  # fresh writers, read with zeros
    for a, b in zip(_outputs(m, x), _outputs(w, x)):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)
    w.train()
    ((w(x, 2)["x_hat"] - x) ** 2).mean().backward()
    for reader in (w.g_a.blocks[2], w.g_a.blocks[3]):
        assert reader.weight.grad[:, 12:].abs().sum() > 0  # the zero reads learn
    # a later N widens the decoder only: the analysis keeps its own width
    both = widen(w, N=16)
    assert both.config["analysis_width"] == 20 and both.g_a.blocks[1].weight.shape[0] == 20
    assert both.g_s.blocks[0].weight.shape[0] == 64
    # an analysis sized by N follows a wider N; back at N's width it is N's again
    assert widen(m, N=16).g_a.blocks[1].weight.shape[0] == 16
    assert widen(w, N=20).config["analysis_width"] is None
    with pytest.raises(ValueError, match="only grows"):
        widen(w, analysis_width=16)


def test_new_lambdas_take_the_interpolated_gains_and_extrapolate_by_the_square_root():
    m = _model()
    with torch.no_grad():
        m.log_gain.uniform_(-1, 1)
        m.log_inv_gain.uniform_(-1, 1)
    lam = [float(v) for v in m.lambdas]
    # below the range, between trained qualities, on one, above the range
    where = [("below", 0.25), (0.5, None), (2.25, None), (3, None), (4.7, None), ("above", 2.0)]
    new = [lam[0] * 0.25] + [float(m.lambda_of(q)) for q, _ in where[1:5]] + [lam[-1] * 2.0]
    w = widen(m, lambdas=new)
    assert w.config["lambdas"] == pytest.approx(new)
    torch.testing.assert_close(w.lambdas, torch.tensor(new, dtype=torch.float32))
    for k, (q, f) in enumerate(where):
        g1, ig1 = w.gains(k)
        if f is None:  # what the trained model already gives at that trade-off
            g0, ig0 = m.gains(q)
        else:
            g0, ig0 = m.gains(0 if q == "below" else len(lam) - 1)
            g0, ig0 = g0 * f ** 0.5, ig0 / f ** 0.5
        torch.testing.assert_close(g1, g0, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(ig1, ig0, rtol=1e-5, atol=1e-6)


def test_widen_rejects_shrinking_and_a_wrong_number_of_lambdas():
    m = _model()
    with pytest.raises(ValueError, match="only grows"):
        widen(m, M=6)
    with pytest.raises(ValueError, match="only grows"):
        widen(m, head_width=10)
    with pytest.raises(ValueError, match="lambdas"):
        widen(m, lambdas=[0.01, 0.02])


def test_command_line_widens_without_data(tmp_path, tiny_images):
    run = _tiny_run(tmp_path, tiny_images, steps=2)
    out = tmp_path / "wide.pt"
    assert slim_main([str(run / "latest.pt"), str(out), "--M", "12", "--head-width", "12"]) == 0
    ckpt = load_checkpoint(out)
    assert ckpt["model_config"]["M"] == 12 and ckpt["model_config"]["head_width"] == 12
    assert ckpt["lineage"][-1]["then"] == "M 12, head_width 12"
    # reshaped again before any training: still one entry, naming both changes
    again = tmp_path / "wider.pt"
    assert slim_main([str(out), str(again), "--M", "13", "--N", "14"]) == 0
    assert load_checkpoint(again)["lineage"] == [
        {"run": "run", "steps": 2, "then": "M 12, head_width 12; M 13, N 14"}]
    assert load_model(again).config["N"] == 14
    encoder = tmp_path / "encoder.pt"
    assert slim_main([str(out), str(encoder), "--analysis-width", "20"]) == 0
    assert load_model(encoder).config["analysis_width"] == 20
    model = load_model(out)
    assert model.entropy.quantiles.shape[0] == 12
    with pytest.raises(SystemExit):  # slimming needs sample crops
        slim_main([str(run / "latest.pt"), str(out), "--first-width", "4"])


@pytest.mark.parametrize("skip", [False, True])
def test_narrowing_drops_dead_latent_channels_and_folds_their_constant(skip):
    m, x = _model(), _samples(n=2, size=128)
    if skip:
        m = _trained_skips(slim(m, x, skip=True))
    dead = [2, 5]
    with torch.no_grad():
        m.entropy.quantiles[:, 0, 1].uniform_(-0.3, 0.3)  # nonzero medians
        m.log_gain.uniform_(-0.5, 0.5)
        for c in dead:  # a constant latent at the median: symbol 0 at every quality
            m.g_a.head.weight[c] = 0
            m.g_a.head.bias[c] = m.entropy.medians()[c]
            if skip:  # equal taps: the skip's share of the constant is a bias too
                m.g_s.skips[0].weight[c] = m.g_s.skips[0].weight[c].mean((1, 2), keepdim=True)
    n = narrow_latent(m, x, M=6)
    assert n.M == 6 and n.g_a.head.weight.shape[0] == 6 and n.entropy.quantiles.shape[0] == 6
    kept = [c for c in range(8) if c not in dead]
    torch.testing.assert_close(n.log_gain, m.log_gain[:, kept])
    with torch.no_grad():
        r0, r1 = m(x, 2.5), n(x, 2.5)
    torch.testing.assert_close(r1["likelihoods"], r0["likelihoods"][:, kept])
    inner = (..., slice(40, -40), slice(40, -40))  # the folded constant is exact inside
    torch.testing.assert_close(r1["x_hat"][inner], r0["x_hat"][inner], rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="M must be"):
        narrow_latent(m, x, M=9)


def _with_dead_channels(dead, skip=False):
    """``_model()`` (skips optional) whose latent ``dead`` channels are constant at the median:
    symbol 0 at every quality."""
    m, x = _model(), _samples(n=2, size=128)
    if skip:
        m = _trained_skips(slim(m, x, skip=True))
    with torch.no_grad():
        m.entropy.quantiles[:, 0, 1].uniform_(-0.3, 0.3)  # nonzero medians
        m.log_gain.uniform_(-0.5, 0.5)
        m.g_a.head.weight *= 30  # live channels: symbols well away from 0
        for c in dead:
            m.g_a.head.weight[c] = 0
            m.g_a.head.bias[c] = m.entropy.medians()[c]
            if skip:  # equal taps: the skip's share of the constant is a bias too
                m.g_s.skips[0].weight[c] = m.g_s.skips[0].weight[c].mean((1, 2), keepdim=True)
    return m, x


@pytest.mark.parametrize("skip", [False, True])
def test_revive_restarts_dead_channels_and_keeps_the_reconstruction(skip):
    dead = [1, 6]
    m, x = _with_dead_channels(dead, skip)
    assert dead_channels(m, x) == dead
    r = revive(m, dead, seed=3)
    live = [c for c in range(8) if c not in dead]
    # live channels: untouched weights, gains, densities
    torch.testing.assert_close(r.log_gain[:, live], m.log_gain[:, live])
    torch.testing.assert_close(r.entropy.quantiles[live], m.entropy.quantiles[live])
    y0, y1 = m.g_a(x).detach(), r.g_a(x).detach()
    torch.testing.assert_close(y1[:, live], y0[:, live])
    # revived channels: live-scale head filters, live median gains, a fresh density
    assert y1[:, dead].std() > 0.2 * y0[:, live].std()
    torch.testing.assert_close(r.log_gain[:, dead],
                               m.log_gain[:, live].median(1, keepdim=True).values.expand(-1, 2))
    fresh = CodecModel(N=12, M=8).entropy.quantiles
    torch.testing.assert_close(r.entropy.quantiles[dead], fresh[dead])
    assert dead_channels(r, x) == []  # they carry bits again
    # the decoder reads them weakly and their old constant went into the biases: the
    # reconstruction moves only a little (exactly nothing once those reads are zero)
    inner = (..., slice(40, -40), slice(40, -40))  # the folded constant is exact inside
    with torch.no_grad():
        x0, x1 = m(x, 2.5)["x_hat"][inner], r(x, 2.5)["x_hat"][inner]
        assert 0 < (x1 - x0).abs().max() < 0.1 * x0.abs().max()
        r.g_s.blocks[0].weight[:, dead] = 0
        torch.testing.assert_close(r(x, 2.5)["x_hat"][inner], x0, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="channels must be"):
        revive(m, [8])
    with pytest.raises(ValueError, match="channels must be"):
        revive(m, [])
    with pytest.raises(ValueError, match="live channel"):
        revive(m, range(8))


def test_rate_grad_scale_scales_only_the_rate_gradient_into_the_latent():
    m, x = _model(), _samples(n=2, size=32)
    m.train()

    def grads(scale):
        m.zero_grad()
        m.rate_grad_scale = scale
        torch.manual_seed(0)  # the same noise
        res = m(x, 3)
        res["bpp"].sum().backward()
        return m.g_a.head.weight.grad.clone(), m.log_gain.grad.clone(), \
            m.entropy.biases[0].grad.clone(), res["bpp"].detach()

    head1, gain1, dens1, bpp1 = grads(None)
    w = torch.ones(8)
    w[[2, 5]] = 0.0
    head0, gain0, dens0, bpp0 = grads(w)
    m.rate_grad_scale = None
    torch.testing.assert_close(bpp0, bpp1)  # the value is unchanged
    assert head0[[2, 5]].abs().max() == 0 and gain0[:, [2, 5]].abs().max() == 0
    assert head1[[2, 5]].abs().max() > 0 and gain1[3, [2, 5]].abs().max() > 0
    torch.testing.assert_close(head0[[0, 1, 3]], head1[[0, 1, 3]])
    torch.testing.assert_close(dens0, dens1)  # the densities learn as before


def test_revive_schedule_holds_then_ramps():
    rev = {"channels": [1, 4], "start": 10, "hold": 100, "ramp": 50}
    assert rate_grad_scale(rev, 60, 6, "cpu").tolist() == [1, 0, 1, 1, 0, 1]
    assert rate_grad_scale(rev, 110, 6, "cpu")[1] == 0
    assert rate_grad_scale(rev, 135, 6, "cpu")[4] == pytest.approx(0.5)
    assert rate_grad_scale(rev, 160, 6, "cpu") is None


def test_command_line_revives_and_training_follows_the_schedule(tmp_path, tiny_images):
    run = _tiny_run(tmp_path, tiny_images, steps=2)
    out = tmp_path / "revived.pt"
    model = load_model(run / "latest.pt")
    with torch.no_grad():  # live channels (symbols away from 0) but channel 3 dead
        model.g_a.head.weight *= 300
        model.g_a.head.weight[3] = 0
        model.g_a.head.bias[3] = model.entropy.medians()[3]
    save_checkpoint(run / "dead.pt", {"model": model.state_dict(), "ema": model.state_dict(),
                                      "model_config": model.config, "step": 0})
    assert slim_main([str(run / "dead.pt"), str(out), "--revive", "--data", str(tiny_images),
                      "--samples", "4", "--crop", "32"]) == 0
    ckpt = load_checkpoint(out)
    assert ckpt["revive"] == {"channels": [3], "start": 0}
    assert "revived" in ckpt["lineage"][-1]["then"]
    fine = tmp_path / "fine"
    loop.run(build_parser().parse_args([
        "--data", str(tiny_images), "--val", "", "--out", str(fine), "--resume", str(out),
        "--crop", "32", "--batch-size", "2", "--steps", "3", "--threads", "1",
        "--revive-hold", "1", "--revive-ramp", "4", "--log-every", "1",
    ]))
    done = load_checkpoint(fine / "latest.pt")
    assert done["revive"] == {"channels": ckpt["revive"]["channels"], "start": 0, "hold": 1,
                              "ramp": 4}
    import json

    logged = [json.loads(line) for line in (fine / "log.jsonl").read_text().splitlines()]
    ramp = [e["revived_rate_grad"] for e in logged if e["event"] == "train"]
    assert ramp == [0.0, 0.0, 0.25]  # set before steps 0, 1, 2: hold 1, then 1/4 per step
    with pytest.raises(SystemExit):
        slim_main([str(run / "dead.pt"), str(out), "--revive"])  # no --data


def test_command_line_revives_the_channels_a_larger_latent_adds(tmp_path, tiny_images):
    run = _tiny_run(tmp_path, tiny_images, steps=2)
    model = load_model(run / "latest.pt")
    with torch.no_grad():  # channels 0..7 live except 3
        model.g_a.head.weight *= 300
        model.g_a.head.weight[3] = 0
        model.g_a.head.bias[3] = model.entropy.medians()[3]
    save_checkpoint(run / "dead.pt", {"model": model.state_dict(), "ema": model.state_dict(),
                                      "model_config": model.config, "step": 0})
    out = tmp_path / "wider.pt"
    assert slim_main([str(run / "dead.pt"), str(out), "--M", "11", "--revive", "--data",
                      str(tiny_images), "--samples", "4", "--crop", "32"]) == 0
    ckpt = load_checkpoint(out)
    assert ckpt["model_config"]["M"] == 11
    assert ckpt["model_config"]["lambdas"] == model.config["lambdas"]  # not float32-rounded
    assert ckpt["revive"]["channels"] == [3, 8, 9, 10]
    wider = load_model(out)
    old_rows = model.g_a.head.weight.detach().flatten(1).norm(dim=1)
    new_rows = wider.g_a.head.weight.detach().flatten(1).norm(dim=1)
    live = [0, 1, 2, 4, 5, 6, 7]
    assert torch.equal(wider.g_a.head.weight[live], model.g_a.head.weight[live])
    assert float(new_rows[[3, 8, 9, 10]].mean()) == pytest.approx(float(old_rows[live].mean()),
                                                              rel=1e-4)
