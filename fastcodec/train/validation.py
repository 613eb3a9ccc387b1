"""Validation of a model on the validation crops: bpp and PSNR per quality, and the PSNR of
the transforms alone."""

from __future__ import annotations

import torch

from fastcodec.models.codec_model import CodecModel


def psnr(mse: torch.Tensor) -> torch.Tensor:
    return -10.0 * torch.log10(mse.clamp_min(1e-10))


@torch.no_grad()
def validate(model: CodecModel, images: torch.Tensor, device, chunk: int = 4) -> dict:
    """bpp (likelihoods of the rounded latent) and PSNR (of the clamped output) per quality,
    averaged over images; ``psnr_ceiling``: PSNR of the transforms alone (the top quality's
    latent, scaled by its gains but not rounded). When the top quality's PSNR is close to it,
    the transforms, not the rate, limit the quality."""
    was_training = model.training
    model.eval()
    k = model.num_qualities
    bpp = torch.zeros(k, dtype=torch.float64)
    pq = torch.zeros(k, dtype=torch.float64)
    ceiling = torch.zeros((), dtype=torch.float64)
    g, ig = (t[None, :, None, None] for t in model.gains(k - 1))
    for start in range(0, images.shape[0], chunk):
        x = images[start : start + chunk].to(device)
        for q in range(k):
            out = model(x, q)
            mse = ((out["x_hat"].float().clamp(0, 1) - x) ** 2).flatten(1).mean(1)
            bpp[q] += out["bpp"].double().sum().cpu()
            pq[q] += psnr(mse).double().sum().cpu()
        # the same latent (the forward's y, padded to 16k), unrounded
        x_hat = model.g_s(out["y"].float() * g * ig)[:, :, : x.shape[2], : x.shape[3]]
        mse = ((x_hat.float().clamp(0, 1) - x) ** 2).flatten(1).mean(1)
        ceiling += psnr(mse).double().sum().cpu()
    model.train(was_training)
    n = images.shape[0]
    return {
        "bpp": [round(float(v / n), 4) for v in bpp],
        "psnr": [round(float(v / n), 3) for v in pq],
        "psnr_ceiling": round(float(ceiling / n), 3),
    }
