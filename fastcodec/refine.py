"""Encoder-side latent refinement: better pictures from the same weights and the same format.

The analysis transform predicts each image's latent in one pass. That prediction is not the
latent that minimizes the training loss ``lambda * 255^2 * MSE + bpp`` for this image under the
fixed decoder (the "amortization gap"; Campos et al. 2019, Yang et al. 2020). Refinement closes
part of the gap: it starts from ``g_a``'s latent and runs ``steps`` Adam steps on it, with

* the decoder seeing the latent rounded around the medians (straight-through gradient), so the
  distortion is the one the real decoder will produce;
* the rate of the noisy latent ``y * g + U(-1/2, 1/2)`` under the prior (as in training), a
  smooth stand-in for the coded bits;
* the latent optimized in the unscaled units of ``g_a``'s output, where one step size suits every
  channel (in scaled units the channels a quality switches off have near-zero gains and would
  be pushed out of their one-symbol range); the step size starts larger for the top qualities
  (:func:`first_step_size`) and decays to 0 on a cosine.

Each step also measures the real loss of the rounded latent (decoded distortion plus the bits
of the rounded symbols under the prior), and each image keeps the best latent seen; step 0 is
``g_a``'s own, so refinement never makes that loss worse. Only the encoder changes: the symbols,
the integer tables and the container are the usual ones, and any fastcodec with the model
decodes the files.

Cost: one synthesis forward and backward per step, about 4 decodes (on 2 CPU cores about 0.7 s
per megapixel per step with ``fcf64-v5``). On Kodak 50 steps give 6.1% fewer bits at equal PSNR
and +1.2 dB at quality 6, at a 5% worse MS-SSIM BD-rate (the model card has the table).

Latents larger than ``tile`` latent pixels on a side are refined tile by tile (block coordinate
descent): each tile's latent is optimized with the rest held fixed, its distortion measured on
every pixel it can change (the tile grown by the synthesis' reach,
:func:`fastcodec.tiling.receptive_halo_synthesis`, computed exactly from the tile grown by twice
that), so no tile can raise the whole image's measured loss. The noise is drawn from a generator
seeded per call, so the same input on the same device and dtype gives the same bytes.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import numbers
from typing import Optional, Tuple

import torch
from torch import Tensor, nn

from fastcodec.tiling import LATENT_STRIDE, _grow, _spans, receptive_halo_synthesis

__all__ = ["MAX_STEPS", "REFINE_LR", "REFINE_TILE", "check_steps", "first_step_size",
           "refine_latent", "steps_argument"]

#: Adam's first step size, in the units of ``g_a``'s output, at ``lambda = REFINE_LR_LAMBDA``. It
#: scales as ``lambda ** REFINE_LR_POWER`` (top qualities move further) and decays to 0 over the
#: steps on a cosine. Chosen on 6 validation crops of 256x256 (``../shared/data/val``, never
#: Kodak) for 50 steps: at qualities 1, 3, 5 and 6 its loss is within 0.2% of the best of five
#: fixed first step sizes (0.015 to 0.15), and at 10 steps it gains twice what a five times
#: smaller step does. On tiny images (a few latent pixels) short runs may find nothing better
#: than ``g_a``'s latent and keep it.
REFINE_LR = 0.15
REFINE_LR_LAMBDA = 0.04
REFINE_LR_POWER = 0.3
#: Tile side in latent pixels (1024 image pixels) above which a latent is refined tile by tile.
REFINE_TILE = 64
#: The most steps accepted (a guard against a typo costing hours).
MAX_STEPS = 10_000


def check_steps(steps) -> int:
    """``steps`` as an int in ``[0, MAX_STEPS]``, else ValueError."""
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) \
            or not 0 <= steps <= MAX_STEPS:
        raise ValueError(f"refine_steps must be an integer in [0, {MAX_STEPS}], got {steps!r}")
    return int(steps)


def first_step_size(lam: float) -> float:
    """Adam's first step size at a quality of trade-off ``lam`` (units of ``g_a``'s output)."""
    return REFINE_LR * (float(lam) / REFINE_LR_LAMBDA) ** REFINE_LR_POWER


def steps_argument(text: str) -> int:
    """``--refine STEPS`` (an argparse ``type``)."""
    try:
        return check_steps(int(text))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be an integer in [0, {MAX_STEPS}], got {text!r}") from None


def refine_latent(
    g_s: nn.Module,
    prior: nn.Module,
    x: Tensor,
    y: Tensor,
    gain: Tensor,
    inv_gain: Tensor,
    median: Tensor,
    lam: float,
    steps: int,
    *,
    size: Optional[Tuple[int, int]] = None,
    lr: Optional[float] = None,
    tile: int = REFINE_TILE,
    halo: Optional[int] = None,
    autocast_dtype: Optional[torch.dtype] = None,
    seed: int = 0,
) -> Tensor:
    """Refined latents of a batch of same-sized images.

    Args:
        g_s: the synthesis transform (its parameters are used detached: no weight gradients).
        prior: the :class:`fastcodec.entropy.factorized.FactorizedPrior` of the model.
        x: float image ``[B, 3, 16h, 16w]`` in [0, 1] (padded to multiples of 16).
        y: float32 latent ``[B, M, h, w]`` from ``g_a`` (unscaled).
        gain, inv_gain, median: float32 ``[1, M, 1, 1]`` of the quality (median in scaled
            units, as stored with the tables).
        lam: the quality's trade-off ``lambda`` (loss ``lambda * 255^2 * MSE + bpp``).
        steps: Adam steps (0 returns ``y``).
        size: ``(H, W)`` of the images before padding: only those pixels count (None: all).
        lr: Adam's first step size in the units of ``y`` (None: :func:`first_step_size`);
            it decays to 0 over the steps on a cosine.
        tile: tile side in latent pixels.
        halo: the synthesis' reach in latent pixels (None:
            :func:`fastcodec.tiling.receptive_halo_synthesis`).
        autocast_dtype: run the synthesis under autocast in this dtype (None: float32).
        seed: seed of the rate term's noise.

    Returns float32 ``[B, M, h, w]``: per image (and tile), the step's latent with the lowest
    real loss, ``y`` itself when no step improved on it.
    """
    steps = check_steps(steps)
    lr = first_step_size(lam) if lr is None else float(lr)
    y = y.detach().float().clone()  # a normal tensor, also when y came from inference mode
    if steps == 0:
        return y
    x = x.detach().float().clone()
    gain, inv_gain, median = (t.detach().float().clone() for t in (gain, inv_gain, median))
    rows, cols = y.shape[-2:]
    height, width = size if size is not None else (rows * LATENT_STRIDE, cols * LATENT_STRIDE)
    pixels = float(height * width)
    weight = float(lam) * 255.0**2 / (3.0 * pixels)  # lambda * 255^2 * MSE = weight * SSE
    params = {k: v.detach() for k, v in g_s.named_parameters()}
    params.update({k: v.detach() for k, v in g_s.named_buffers()})
    halo = receptive_halo_synthesis(g_s) if halo is None else halo
    gen = torch.Generator(device=y.device)
    gen.manual_seed(int(seed))
    if autocast_dtype is None:
        autocast = contextlib.nullcontext
    else:
        def autocast():
            return torch.autocast(y.device.type, dtype=autocast_dtype)

    def synth(latent: Tensor) -> Tensor:
        latent = latent.contiguous(memory_format=torch.channels_last)
        with autocast():
            out = torch.func.functional_call(g_s, params, (latent,))
        return out.float()

    with torch.enable_grad():
        for r0, r1 in _spans(rows, tile):
            for c0, c1 in _spans(cols, tile):
                # latents of the tile reach image pixels up to `halo` latent pixels away (the
                # affected region); those pixels depend on latents up to `halo` further out
                # (the window), so the affected region's distortion is exact in the window
                ar0, ar1 = _grow((r0, r1), halo, rows)
                ac0, ac1 = _grow((c0, c1), halo, cols)
                wr0, wr1 = _grow((ar0, ar1), halo, rows)
                wc0, wc1 = _grow((ac0, ac1), halo, cols)
                # what the decoder sees around the tile: the rounded, rescaled latent
                window = (torch.round(y[..., wr0:wr1, wc0:wc1] * gain - median) + median) \
                    * inv_gain
                top, bottom = ar0 * LATENT_STRIDE, min(ar1 * LATENT_STRIDE, height)
                left, right = ac0 * LATENT_STRIDE, min(ac1 * LATENT_STRIDE, width)
                if top >= bottom or left >= right:
                    crop = None  # the tile lies in the padding: only its rate counts
                    target = None
                else:
                    crop = (slice(top - wr0 * LATENT_STRIDE, bottom - wr0 * LATENT_STRIDE),
                            slice(left - wc0 * LATENT_STRIDE, right - wc0 * LATENT_STRIDE))
                    target = x[..., top:bottom, left:right]
                interior = (slice(r0 - wr0, r1 - wr0), slice(c0 - wc0, c1 - wc0))
                y[..., r0:r1, c0:c1] = _refine_tile(
                    synth, prior, y[..., r0:r1, c0:c1], window, interior, target, crop, gain,
                    inv_gain, median, weight, pixels, steps, lr, gen)
    return y


def _refine_tile(synth, prior, latent, window, interior, target, crop, gain, inv_gain, median,
                 weight, pixels, steps, lr, gen) -> Tensor:
    """Adam on a tile's latent ``[B, M, th, tw]``, starting from ``latent``; the decoder's
    input ``window [B, M, wh, ww]`` stays fixed around it (``interior``: the tile's place
    there). ``target`` holds the image pixels the tile can change, ``crop`` their place in the
    window's synthesis (None: no pixel of the original image, only the rate counts). Returns
    the tile's latent with the lowest real loss per image."""
    ir, ic = interior
    v = latent.clone().requires_grad_(True)
    opt = torch.optim.Adam([v], lr=lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda t: 0.5 * (1.0 + math.cos(math.pi * min(t, steps) / steps)))
    best_v = v.detach().clone()
    best_loss = None
    for step in range(steps + 1):
        yg = v * gain
        rounded = torch.round(yg - median) + median
        quantized = yg + (rounded - yg).detach()  # straight-through
        if crop is None:
            sse = torch.zeros(v.shape[0], device=v.device)
        else:
            full = window.clone()
            full[..., ir, ic] = quantized * inv_gain
            x_hat = synth(full)[..., crop[0], crop[1]]
            sse = (x_hat - target).pow(2).flatten(1).sum(1)
        with torch.no_grad():
            real_bits = -torch.log2(prior.likelihood(rounded.detach(), gain)).flatten(1).sum(1)
            real = weight * sse.detach() + real_bits / pixels
            if best_loss is None:
                best_loss = real
            else:
                better = real < best_loss
                best_loss = torch.where(better, real, best_loss)
                best_v[better] = v.detach()[better]
        if step == steps:
            break  # the last step's latent is measured, not moved
        noise = torch.rand(yg.shape, generator=gen, device=yg.device, dtype=yg.dtype) - 0.5
        bits = -torch.log2(prior.likelihood(yg + noise, gain)).flatten(1).sum(1)
        loss = (weight * sse + bits / pixels).sum()
        (grad,) = torch.autograd.grad(loss, [v])
        v.grad = grad
        opt.step()
        schedule.step()
    return best_v
