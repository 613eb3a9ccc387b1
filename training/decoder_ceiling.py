"""Which transform holds the top quality back: the PSNR of the decoder fed the analysis
transform's latent (unquantized) against the PSNR it reaches from the best latent gradient
descent finds for it (unquantized, distortion only), on validation crops.

    python training/decoder_ceiling.py fcf96-v6 --val ../shared/data/val --steps 300

Both numbers use the top quality's gains (the decoder reads ``y * gain * inverse gain``), so the
first is the ``psnr_ceiling`` of the training log on these crops. The gap between them is what
a better encoder could add at high rates with this decoder; the second number caps what any
encoder, and any rate, can reach with it. PSNR: mean over crops of the per-crop RGB PSNR of the
8-bit rounded reconstruction (peak 255). The model is a shipped model id or a training checkpoint
(its EMA weights).
"""

from __future__ import annotations

import argparse
import math
import sys

import torch


def load_crops(folder: str, count: int, size: int) -> torch.Tensor:
    """Centre crops ``size x size`` of the first ``count`` images of ``folder`` (those smaller
    are left out): float32 ``[n, 3, size, size]`` in [0, 1], as the trainer validates on."""
    from fastcodec.train.data import load_val

    return load_val(folder, size, count)


def psnr(x_hat: torch.Tensor, x: torch.Tensor) -> float:
    """Mean per-image RGB PSNR (dB) of ``x_hat`` rounded to 8 bits against ``x`` ([n, 3, H, W])."""
    q = (x_hat.clamp(0, 1) * 255).round() / 255
    mse = (q - x).pow(2).flatten(1).mean(1).clamp_min(1e-12)
    return float((10 * torch.log10(1 / mse)).mean())


def ceilings(model, x: torch.Tensor, steps: int, lr: float = 0.05, log=None) -> dict:
    """``{"encoder": dB, "decoder": dB, "history": [(step, dB), ...]}``: the decoder's PSNR from
    the analysis transform's latent, then from a latent optimized for MSE alone by Adam (``steps``
    steps, step size ``lr`` decaying to 0 on a cosine, starting from the encoder's latent)."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    g, ig = model.gains(model.num_qualities - 1)
    scale = (g * ig).reshape(1, -1, 1, 1)
    h, w = x.shape[-2:]
    with torch.no_grad():
        z0 = model.g_a(x) * scale
        first = psnr(model.g_s(z0)[..., :h, :w], x)
    z = z0.clone().requires_grad_(True)
    opt = torch.optim.Adam([z], lr=lr)
    history = []
    for i in range(steps):
        for group in opt.param_groups:
            group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * i / steps))
        loss = (model.g_s(z)[..., :h, :w] - x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if (i + 1) % 50 == 0 or i + 1 == steps:
            with torch.no_grad():
                history.append((i + 1, psnr(model.g_s(z)[..., :h, :w], x)))
            if log is not None:
                log(f"step {i + 1}: {history[-1][1]:.3f} dB")
    best = history[-1][1] if history else first
    return {"encoder": first, "decoder": max(first, best), "history": history}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model", help="shipped model id or training checkpoint")
    p.add_argument("--val", default="../shared/data/val", help="validation images")
    p.add_argument("--images", type=int, default=4)
    p.add_argument("--crop", type=int, default=256)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    # a training checkpoint or a shipped model id
    from fastcodec.train.checkpoints import load_model

    torch.manual_seed(args.seed)
    model = load_model(args.model)
    x = load_crops(args.val, args.images, args.crop)
    out = ceilings(model, x, args.steps, args.lr,
                   log=lambda line: print(line, file=sys.stderr, flush=True))
    print(f"{args.model}: {len(x)} crops of {args.crop}px: decoder fed the encoder's latent "
          f"{out['encoder']:.2f} dB; fed the best latent found in {args.steps} steps "
          f"{out['decoder']:.2f} dB (+{out['decoder'] - out['encoder']:.2f} dB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
