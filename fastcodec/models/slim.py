"""Reshaping a trained codec: fewer channels in the two full-resolution layers (slimming),
zero-initialized linear skip paths, or a wider latent path (widening), then fine-tuning.

The first analysis block and the last synthesis block run at full resolution, so their widths
set most of the cost per pixel. :func:`slim` keeps the ``first_width`` output channels of the
first analysis block and the ``last_width`` (post pixel-shuffle) channels of the last synthesis
block that matter most, and folds the mean contribution of the dropped ones into the next
layer's bias, so the slimmed model starts close to the original and fine-tuning recovers the
rest (``fastcodec train --resume`` on the checkpoint this writes: fresh optimizers, step 0).

Importance of a channel = its mean absolute activation on sample crops (the block's output after
ReLU and pooling / pixel shuffle, plus the skip path's when the model has skips) times the norm
of the next layer's weights that read it.

:func:`narrow_latent` drops the least used latent channels (dead ones cost nothing to drop);
:func:`dead_channels` finds the channels that carry (almost) no bits and :func:`revive` starts
them over (train with ``--revive-hold/--revive-ramp``). :func:`widen` gives the latent more
channels (``M``), widens the fourth analysis block that feeds it (``head_width``) or the
reduced-resolution hidden layers (``N``) and/or moves the trained qualities to new
``lambdas``; the new channels start so that the reconstruction is (nearly) unchanged.

Command line::

    python -m fastcodec.models.slim IN.pt OUT.pt --first-width 32 --last-width 16 \\
        --data ../shared/data/train
    python -m fastcodec.models.slim IN.pt OUT.pt --skip --data ../shared/data/train
    python -m fastcodec.models.slim IN.pt OUT.pt --M 192 --head-width 192 \\
        --lambdas 0.0018 0.0042 0.0099 0.0235 0.055 0.13
    python -m fastcodec.models.slim IN.pt OUT.pt --N 96
    python -m fastcodec.models.slim IN.pt OUT.pt --M 128 --data ../shared/data/train
    python -m fastcodec.models.slim IN.pt OUT.pt --revive --data ../shared/data/train
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Optional, Sequence, Tuple

import torch
from torch import Tensor

from fastcodec.models.codec_model import CodecModel
from fastcodec.models.transforms import block_with_skip

__all__ = ["slim", "widen", "narrow_latent", "main"]


def _keep(importance: Tensor, width: int) -> Tensor:
    """Indices of the ``width`` largest entries, in their original order."""
    return torch.sort(torch.topk(importance, width).indices).values


@torch.no_grad()
def slim(model: CodecModel, samples: Tensor, first_width: Optional[int] = None,
         last_width: Optional[int] = None, skip: Optional[bool] = None) -> CodecModel:
    """A copy of ``model`` with narrower full-resolution layers.

    Args:
        model: the trained codec (its weights are not changed).
        samples: ``[B, 3, H, W]`` float crops in [0, 1] (H, W multiples of 16) for the mean
            activations; training images, never the test set.
        first_width, last_width: new widths (None: keep the current one). Must not exceed it.
        skip: add the linear skip paths (zero-initialized: the function does not change) when
            True and the model has none (None: keep as is). Existing skips are kept; those
            of a slimmed layer keep the same channels.
    """
    model = model.float().eval()
    cfg = dict(model.config)
    b0, b1 = model.g_a.blocks[0], model.g_a.blocks[1]
    s3, out = model.g_s.blocks[3], model.g_s.out
    old_first, old_last = b0.weight.shape[0], out.weight.shape[1]
    first = old_first if first_width is None else int(first_width)
    last = old_last if last_width is None else int(last_width)
    if not (1 <= first <= old_first and 1 <= last <= old_last):
        raise ValueError(f"widths must be in 1..{old_first} and 1..{old_last}, "
                         f"got {first_width}, {last_width}")
    scale = int(round((s3.weight.shape[0] // old_last) ** 0.5))

    # mean activations of the first analysis stage and the last synthesis stage (block plus
    # skip path when the model has them: then they may be negative, so importance uses |.|)
    h0 = block_with_skip(model.g_a.blocks[0], model.g_a.skips, 0, samples)
    y = model.g_a(samples)
    for i, block in enumerate(model.g_s.blocks):
        y = block_with_skip(block, model.g_s.skips, i, y)
    a0, a3 = h0.mean((0, 2, 3)), y.mean((0, 2, 3))
    m0, m3 = h0.abs().mean((0, 2, 3)), y.abs().mean((0, 2, 3))

    keep0 = _keep(m0 * b1.weight.flatten(2).norm(dim=(0, 2)), first)
    keep3 = _keep(m3 * out.weight.flatten(2).norm(dim=(0, 2)), last)
    drop0 = torch.ones(old_first, dtype=torch.bool)
    drop0[keep0] = False
    drop3 = torch.ones(old_last, dtype=torch.bool)
    drop3[keep3] = False

    had_skip = bool(cfg.get("skip", False))
    cfg.update(first_width=first, last_width=last, skip=had_skip or bool(skip))
    new = CodecModel.from_config(cfg)
    state = dict(new.state_dict())  # zero skips when added; load_state_dict copies
    state.update(model.state_dict())
    # first analysis block: keep filters; the next block reads only those, plus the dropped
    # channels' mean as a constant in its bias
    state["g_a.blocks.0.weight"] = b0.weight[keep0]
    state["g_a.blocks.0.bias"] = b0.bias[keep0]
    w1 = b1.weight
    state["g_a.blocks.1.weight"] = w1[:, keep0]
    state["g_a.blocks.1.bias"] = b1.bias + (w1[:, drop0].sum((2, 3)) * a0[drop0]).sum(1)
    # last synthesis block: output channel c of the shuffle is conv outputs c*s^2 .. c*s^2+s^2-1
    rows = (keep3[:, None] * scale * scale + torch.arange(scale * scale)).flatten()
    state["g_s.blocks.3.weight"] = s3.weight[rows]
    state["g_s.blocks.3.bias"] = s3.bias[rows]
    state["g_s.out.weight"] = out.weight[:, keep3]
    state["g_s.out.bias"] = out.bias + (out.weight[:, drop3].sum((2, 3)) * a3[drop3]).sum(1)
    if had_skip:  # the skips that write the slimmed channels or read them
        sk0, sk1 = model.g_a.skips[0], model.g_a.skips[1]
        state["g_a.skips.0.weight"] = sk0.weight[keep0]
        state["g_a.skips.0.bias"] = sk0.bias[keep0]
        state["g_a.skips.1.weight"] = sk1.weight[:, keep0]
        state["g_a.skips.1.bias"] = sk1.bias + (sk1.weight[:, drop0].sum((2, 3)) * a0[drop0]).sum(1)
    new.load_state_dict(state)
    return new.eval()


def _grow(old: Tensor, new: Tensor) -> Tensor:
    """``new`` (the wider tensor, already initialized) with ``old`` copied into its leading
    slice along every dim."""
    out = new.clone()
    out[tuple(slice(0, n) for n in old.shape)] = old
    return out


def _log_gains_at(log_gains: Tensor, lambdas: Sequence[float], at: Sequence[float],
                  sign: float) -> Tensor:
    """Rows of ``log_gains [K, M]`` (trained at ascending ``lambdas``) for the trade-offs
    ``at``: linear in log-lambda between neighbours, and ``sign * 0.5 * log(at / end)`` past the
    nearest end (``sign`` -1 for inverse gains)."""
    x = torch.log(torch.tensor(lambdas, dtype=torch.float64))
    rows = []
    for lam in at:
        t = math.log(lam)
        if t <= x[0]:
            row = log_gains[0].double() + sign * 0.5 * (t - x[0])
        elif t >= x[-1]:
            row = log_gains[-1].double() + sign * 0.5 * (t - x[-1])
        else:
            i = int(torch.searchsorted(x, torch.tensor(t, dtype=torch.float64))) - 1
            w = (t - x[i]) / (x[i + 1] - x[i])
            row = log_gains[i].double() * (1 - w) + log_gains[i + 1].double() * w
        rows.append(row.to(log_gains.dtype))
    return torch.stack(rows)


#: The layers that write the ``N``-wide hidden activations (see
#: :mod:`fastcodec.models.transforms`), with their output channels per hidden channel (an
#: upsampling block writes ``scale**2 = 4`` conv channels per pixel-shuffled one), and the
#: layers that read them, with the weight dim holding their input channels (conv weights are
#: ``[out, in, k, k]``, the synthesis skips, transposed convs, ``[in, out, 2, 2]``).
_HIDDEN_WRITERS = (("g_a.blocks.1", 1), ("g_a.blocks.2", 1),
                   ("g_s.blocks.0", 4), ("g_s.blocks.1", 4), ("g_s.blocks.2", 4))
_HIDDEN_READERS = (("g_a.blocks.2", 1), ("g_a.blocks.3", 1), ("g_a.skips.2", 1),
                   ("g_a.skips.3", 1), ("g_s.blocks.1", 1), ("g_s.blocks.2", 1),
                   ("g_s.blocks.3", 1), ("g_s.skips.1", 0), ("g_s.skips.2", 0))


def _rescale_new_rows(w: Tensor, trained: Tensor) -> None:
    """Scales the rows (output channels) of ``w`` past ``trained``'s so that their mean norm
    is that of ``trained``'s rows (fresh filters at the trained filters' scale), in place."""
    start = trained.shape[0]
    rows = w[start:]
    target = trained.flatten(1).norm(dim=1).mean()
    w[start:] = rows * (target / rows.flatten(1).norm(dim=1).mean().clamp_min(1e-12))


def _read_new_hidden_with_zeros(state: dict, old: dict, old_n: int, side: str) -> None:
    """In ``state`` (a wider model's, old weights already copied in): new hidden channels of
    transform ``side`` (``"g_a"`` or ``"g_s"``) written at the trained filters' scale and read
    with zero weights."""
    for name, _ in _HIDDEN_WRITERS:
        if name.startswith(side + "."):
            _rescale_new_rows(state[f"{name}.weight"], old[f"{name}.weight"])
    for name, dim in _HIDDEN_READERS:
        key = f"{name}.weight"
        if name.startswith(side + ".") and key in state:  # skips only when the model has them
            state[key].narrow(dim, old_n, state[key].shape[dim] - old_n).zero_()


@torch.no_grad()
def widen(model: CodecModel, M: Optional[int] = None, head_width: Optional[int] = None,
          lambdas: Optional[Sequence[float]] = None, seed: int = 0,
          N: Optional[int] = None, analysis_width: Optional[int] = None) -> CodecModel:
    """A copy of ``model`` with a wider latent path, wider hidden layers and/or new
    rate-distortion trade-offs.

    Args:
        model: the trained codec (its weights are not changed).
        N: hidden width of the reduced-resolution layers (None: keep): the outputs of the
            second and third analysis blocks and of the first three synthesis blocks. New
            channels are written by fresh filters at the trained filters' scale and read
            with zero weights (their skip paths: zero, as created), so the function is
            unchanged and the readers get a gradient from the first step. The full-resolution
            widths (``first_width``, ``last_width``) and ``head_width`` stay as they are. An
            analysis that has its own ``analysis_width`` keeps it.
        analysis_width: hidden width of the analysis's reduced-resolution layers only (None:
            keep): a wider encoder for the same decoder, widened as ``N`` is.
        M: latent channels (None: keep). New channels: the head writes them with filters at
            the scale of the trained ones, the first synthesis block reads them with filters
            scaled by 1e-2 (not zero: the new channels need a gradient), their gains start at
            the mean of the trained ones and their densities fresh.
        head_width: output width of the fourth analysis block (None: keep). New channels:
            fresh filters, zero skip filters, read by the head with zero weights.
        lambdas: new trade-offs, one per trained quality (None: keep). A new trade-off inside
            the trained range gets the gains the model already interpolates there (log-gain
            linear in log-lambda between the two trained neighbours); outside it, the nearest
            end's gains moved by ``sqrt(new / end)``, the ``gain ~ sqrt(lambda)`` rule.
        seed: seed of the fresh filters.

    Returns a model whose reconstruction differs from ``model``'s only through the 1e-2 scaled
    reads of new latent channels (and the rate, through their densities and new gains).

    In practice (``fcf64-v3``): the wider fourth block was taken up within a few thousand
    steps (the head reads the new block channels at about half the weight of the old ones),
    but 64 new *latent* channels died: they cost rate from the first step and paid back nothing
    while read weakly, so their gains collapsed (to ~1 %) and a channel whose symbols are all
    zero gets no gradient back. Grow ``M`` together with :func:`revive` of the new channels
    (the command line's ``--M ... --revive``) and train with the rate's gradient held off them.
    """
    model = model.float().eval()
    cfg = dict(model.config)
    old_n = model.N
    n = old_n if N is None else int(N)
    old_aw = model.g_a.blocks[1].weight.shape[0]
    if analysis_width is not None:
        aw = int(analysis_width)
    else:  # an analysis sized by N follows N
        aw = n if model.config.get("analysis_width") is None else old_aw
    old_m = model.M
    old_head = model.g_a.head.weight.shape[1]
    m = old_m if M is None else int(M)
    head = old_head if head_width is None else int(head_width)
    if m < old_m or head < old_head or n < old_n or aw < old_aw:
        raise ValueError(f"widen only grows: M {old_m} -> {m}, head width {old_head} -> {head}, "
                         f"N {old_n} -> {n}, analysis width {old_aw} -> {aw}")
    old_lambdas = [float(v) for v in model.config["lambdas"]]
    new_lambdas = old_lambdas if lambdas is None else [float(v) for v in lambdas]
    if len(new_lambdas) != len(old_lambdas):
        raise ValueError(f"expected {len(old_lambdas)} lambdas, got {len(new_lambdas)}")
    # widths that default to N's are pinned, so a wider N widens only the hidden layers
    cfg.update(M=m, head_width=head, lambdas=new_lambdas, N=n,
               analysis_width=None if aw == n else aw,
               first_width=model.g_a.blocks[0].weight.shape[0],
               last_width=model.g_s.out.weight.shape[1])
    torch.manual_seed(seed)
    new = CodecModel.from_config(cfg)
    fresh = new.state_dict()
    old = model.state_dict()
    state = {}
    for key, value in fresh.items():
        src = old.get(key)
        if src is None:
            state[key] = value
        else:
            state[key] = src.clone() if src.shape == value.shape else _grow(src, value)
    if m > old_m:  # head rows writing new channels: at the trained rows' scale
        _rescale_new_rows(state["g_a.head.weight"], old["g_a.head.weight"])
        state["g_s.blocks.0.weight"][:, old_m:] *= 1e-2  # (new skip rows: zero, as created)
        for name in ("log_gain", "log_inv_gain"):
            g = state[name]
            g[:, old_m:] = old[name].mean(1, keepdim=True)
    if head > old_head:  # the head reads new block channels with zero weights
        state["g_a.head.weight"][:, old_head:] = 0.0  # (their skip filters: zero, as created)
    if aw > old_aw:
        _read_new_hidden_with_zeros(state, old, old_aw, "g_a")
    if n > old_n:
        _read_new_hidden_with_zeros(state, old, old_n, "g_s")
    if new_lambdas != old_lambdas:
        for name, sign in (("log_gain", 1.0), ("log_inv_gain", -1.0)):
            state[name] = _log_gains_at(state[name], old_lambdas, new_lambdas, sign)
    state["lambdas"] = torch.tensor(new_lambdas, dtype=torch.float32)
    new.load_state_dict(state)
    return new.eval()


@torch.no_grad()
def narrow_latent(model: CodecModel, samples: Tensor, M: int) -> CodecModel:
    """A copy of ``model`` that keeps the ``M`` latent channels with the most nonzero symbols
    at the top quality on ``samples`` (``[B, 3, H, W]`` crops in [0, 1]; ties: the larger
    spread of the scaled latent), in their original order.

    A dropped channel whose symbols are all zero only ever gives the decoder the constant
    ``median * gain * inverse_gain``: its contribution is folded into the first synthesis block's
    bias (the middle quality's value; exact at that quality away from the borders, and the
    same up to the spread of the gains elsewhere), and into the skip's bias as the mean of its
    2x2 taps."""
    model = model.float().eval()
    if not 1 <= int(M) <= model.M:
        raise ValueError(f"M must be in 1..{model.M}, got {M}")
    top = model.num_qualities - 1
    med = model.entropy.medians()
    active, spread = channel_activity(model, samples)
    order = sorted(range(model.M), key=lambda c: (float(active[c]), float(spread[c])),
                   reverse=True)
    keep = torch.tensor(sorted(order[: int(M)]))
    drop = torch.tensor(sorted(order[int(M):]), dtype=torch.long)

    cfg = dict(model.config)
    cfg.update(M=int(M))
    new = CodecModel.from_config(cfg)
    state = dict(model.state_dict())
    state["g_a.head.weight"] = state["g_a.head.weight"][keep]
    state["g_a.head.bias"] = state["g_a.head.bias"][keep]
    for name in ("log_gain", "log_inv_gain"):
        state[name] = state[name][:, keep]
    for key in [k for k in state if k.startswith("entropy.")]:
        if state[key].dim() > 0 and state[key].shape[0] == model.M:
            state[key] = state[key][keep]
    g_mid, ig_mid = model.gains(top / 2)
    const = (med * g_mid * ig_mid)[drop]  # what the decoder sees of a zero symbol
    w0 = state["g_s.blocks.0.weight"]
    state["g_s.blocks.0.bias"] = state["g_s.blocks.0.bias"] + (
        w0[:, drop].sum((2, 3)) * const).sum(1)
    state["g_s.blocks.0.weight"] = w0[:, keep]
    if model.g_s.skips is not None:  # ConvTranspose2d weight [in, out, 2, 2]
        # each output pixel reads one tap: a constant input gives a 2x2-periodic pattern,
        # folded as its mean (exact when the taps are equal)
        sk = state["g_s.skips.0.weight"]
        state["g_s.skips.0.bias"] = state["g_s.skips.0.bias"] + (
            sk[drop].mean((2, 3)) * const[:, None]).sum(0)
        state["g_s.skips.0.weight"] = sk[keep]
    new.load_state_dict(state)
    return new.eval()


@torch.no_grad()
def channel_activity(model: CodecModel, samples: Tensor) -> Tuple[Tensor, Tensor]:
    """Per latent channel at the top quality on ``samples`` (``[B, 3, H, W]`` crops in
    [0, 1]): the share of positions whose symbol is nonzero, and the spread (std) of the scaled
    latent; both ``[M]``."""
    model = model.float().eval()
    g, _ = model.gains(model.num_qualities - 1)
    yg = model.g_a(samples).float() * g[None, :, None, None]
    symbols = torch.round(yg - (model.entropy.medians() * g)[None, :, None, None])
    return (symbols != 0).float().mean((0, 2, 3)), yg.std((0, 2, 3))


def dead_channels(model: CodecModel, samples: Tensor, min_active: float = 1e-2) -> list[int]:
    """Latent channels (ascending) whose symbols are nonzero at fewer than ``min_active`` of the
    positions of ``samples`` at the top quality (:func:`channel_activity`): they tell the
    decoder (almost) nothing, at any quality."""
    active, _ = channel_activity(model, samples)
    return [int(c) for c in torch.nonzero(active < min_active).flatten()]


@torch.no_grad()
def revive(model: CodecModel, channels: Sequence[int], seed: int = 0) -> CodecModel:
    """A copy of ``model`` in which the latent ``channels`` (dead ones, see
    :func:`dead_channels`) start over, with the reconstruction (nearly) unchanged.

    A dead channel's symbols are all zero: its gains have collapsed, so nothing the analysis
    writes there survives rounding, and it gets no useful gradient back. Each revived channel
    gets: head filters at the scale of the live channels' (fresh directions, zero bias); the
    live channels' median gains at every quality; a fresh density; and first-synthesis-block
    read filters at a tenth of the fresh scale (skip taps zero), with the constant it used to
    feed the decoder folded into the biases as :func:`narrow_latent` does.

    Train the result with the rate's gradient into these channels held off and ramped in
    (``fastcodec train --revive-hold --revive-ramp``): otherwise they cost bits from the first
    step while the decoder barely reads them, and die again."""
    model = model.float().eval()
    chans = sorted({int(c) for c in channels})
    if not chans or chans[0] < 0 or chans[-1] >= model.M:
        raise ValueError(f"channels must be a non-empty subset of 0..{model.M - 1}, got "
                         f"{list(channels)}")
    live = [c for c in range(model.M) if c not in chans]
    if not live:
        raise ValueError("revive needs at least one live channel to take its scales from")
    torch.manual_seed(seed)
    fresh = CodecModel.from_config(model.config).state_dict()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    idx = torch.tensor(chans)

    top = model.num_qualities - 1
    g_mid, ig_mid = model.gains(top / 2)
    const = (model.entropy.medians() * g_mid * ig_mid)[idx]  # what the decoder saw
    w0 = state["g_s.blocks.0.weight"]
    state["g_s.blocks.0.bias"] += (w0[:, idx].sum((2, 3)) * const).sum(1)
    w0[:, idx] = 0.1 * fresh["g_s.blocks.0.weight"][:, idx]
    if model.g_s.skips is not None:  # ConvTranspose2d weight [in, out, 2, 2]
        sk = state["g_s.skips.0.weight"]
        state["g_s.skips.0.bias"] += (sk[idx].mean((2, 3)) * const[:, None]).sum(0)
        sk[idx] = 0.0

    head = state["g_a.head.weight"]
    rows = fresh["g_a.head.weight"][idx]
    scale = head[live].flatten(1).norm(dim=1).mean() / rows.flatten(1).norm(dim=1).mean()
    head[idx] = rows * scale
    state["g_a.head.bias"][idx] = 0.0
    for name in ("log_gain", "log_inv_gain"):
        state[name][:, idx] = state[name][:, live].median(1, keepdim=True).values
    for key, value in state.items():
        if key.startswith("entropy.") and value.dim() > 0 and value.shape[0] == model.M:
            value[idx] = fresh[key][idx]
    new = CodecModel.from_config(model.config)
    new.load_state_dict(state)
    return new.eval()


def _samples(folder: str, count: int, crop: int, seed: int) -> Tensor:
    from fastcodec.train.data import CropSampler, list_images, load_rgb

    paths = list_images(folder)
    if not paths:
        raise FileNotFoundError(f"no images under {folder}")
    sampler = CropSampler([load_rgb(p) for p in paths], crop, [seed])
    return sampler.batch(count)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m fastcodec.models.slim", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="training checkpoint (its EMA weights when it has them)")
    p.add_argument("out", help="checkpoint to write (resume it with fastcodec train)")
    p.add_argument("--first-width", type=int, default=None)
    p.add_argument("--last-width", type=int, default=None)
    p.add_argument("--skip", action="store_true", help="add zero-initialized linear skips")
    p.add_argument("--M", type=int, default=None,
                   help="latent channels: more widens, fewer keeps the most used ones "
                        "(needs --data)")
    p.add_argument("--head-width", type=int, default=None,
                   help="widen: output width of the fourth analysis block")
    p.add_argument("--N", type=int, default=None,
                   help="widen: hidden width of the reduced-resolution layers")
    p.add_argument("--analysis-width", type=int, default=None,
                   help="widen: hidden width of the analysis's reduced-resolution layers only "
                        "(a wider encoder for the same decoder)")
    p.add_argument("--lambdas", type=float, nargs="+", default=None,
                   help="new trade-offs of the trained qualities (gains: the trained ones "
                        "interpolated; sqrt(new/old) past the ends)")
    p.add_argument("--revive", action="store_true",
                   help="restart the dead latent channels, and the ones a larger --M adds "
                        "(needs --data); train the result with --revive-hold/--revive-ramp")
    p.add_argument("--min-active", type=float, default=1e-2,
                   help="with --revive: a channel whose symbols are nonzero at fewer than this "
                        "share of the positions at the top quality is dead")
    p.add_argument("--data", default=None,
                   help="training images for the mean activations (needed to slim)")
    p.add_argument("--samples", type=int, default=64, help="crops for the mean activations")
    p.add_argument("--crop", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    from fastcodec.train.checkpoints import load_checkpoint, load_model, save_checkpoint

    src = load_checkpoint(args.checkpoint)
    model = load_model(args.checkpoint)  # EMA weights when present
    new = model
    if args.first_width is not None or args.last_width is not None or args.skip:
        if args.data is None:
            p.error("--data is needed to slim or add skips")
        new = slim(new, _samples(args.data, args.samples, args.crop, args.seed),
                   args.first_width, args.last_width, skip=args.skip or None)
    grow_m = args.M
    if args.M is not None and args.M < new.M:
        if args.data is None:
            p.error("--data is needed to narrow the latent")
        new = narrow_latent(new, _samples(args.data, args.samples, args.crop, args.seed), args.M)
        grow_m = None
    if (grow_m is not None or args.head_width is not None or args.lambdas is not None
            or args.N is not None or args.analysis_width is not None):
        new = widen(new, grow_m, args.head_width, args.lambdas, seed=args.seed, N=args.N,
                    analysis_width=args.analysis_width)
    revived = []
    if args.revive:
        if args.data is None:
            p.error("--data is needed to find the dead channels")
        dead = dead_channels(new, _samples(args.data, args.samples, args.crop, args.seed),
                             args.min_active)
        # channels that --M added start over too, so the schedule holds their rate off
        revived = sorted(set(dead) | set(range(model.M, new.M)))
        if revived:
            new = revive(new, revived, seed=args.seed)
    state = {k: v.contiguous() for k, v in new.state_dict().items()}
    change = ", ".join(f"{k} {v}" for k, v in (("first_width", args.first_width),
                                                 ("last_width", args.last_width),
                                                 ("skip", args.skip or None),
                                                 ("M", args.M), ("N", args.N),
                                                 ("analysis_width", args.analysis_width),
                                                 ("head_width", args.head_width),
                                                 ("lambdas", args.lambdas),
                                                 ("revived", len(revived) or None))
                       if v is not None)
    lineage = list(src.get("lineage", []))
    if lineage and "slimmed_from" in src and int(src.get("step", 0)) == 0:
        # reshaped again before any training: one entry names both changes
        lineage[-1] = {**lineage[-1], "then": f"{lineage[-1]['then']}; {change or 'copied'}"}
    else:
        lineage.append({"run": Path(args.checkpoint).parent.name,
                        "steps": int(src.get("step", 0)), "then": change or "copied"})
    save_checkpoint(Path(args.out), {
        "model": state, "ema": state, "model_config": new.config, "step": 0,
        "lineage": lineage,
        **({"revive": {"channels": revived, "start": 0}} if revived else {}),
        "slimmed_from": {"checkpoint": str(args.checkpoint), "step": int(src.get("step", 0)),
                         "change": change or "copied"},
    })
    before = sum(p.numel() for p in model.parameters())
    after = sum(p.numel() for p in new.parameters())
    cfg = new.config
    print(f"wrote {args.out}: {before:,} -> {after:,} parameters (N {cfg['N']}, "
          f"analysis width {cfg.get('analysis_width') or cfg['N']}, M {cfg['M']}, "
          f"first width {cfg['first_width']}, head width {cfg['head_width']}, last width "
          f"{cfg['last_width']}, skip {cfg['skip']}, lambdas {cfg['lambdas']})"
          + (f"; revived {len(revived)} dead latent channels" if args.revive else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
