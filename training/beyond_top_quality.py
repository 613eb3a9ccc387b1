"""What more rate buys past the top quality: the top quality's latent quantized on a finer grid
(its gains times ``f``, inverse gains divided by ``f``), coded as is and after encoder-side
refinement, against Pillow JPEG (4:2:0, as ``fastcodec eval``) on the same validation crops.

    python training/beyond_top_quality.py fcf96-v6 --val ../shared/data/val --images 6 \
        --factors 1,1.5,2,3 --steps 50

A finer grid is what a quality above the top one would use (``gain ~ sqrt(lambda)``: factor
``f`` stands for ``lambda = f^2 * lambda_top``, the trade-off refinement aims at). Bits: the real
range-coded bytes of the symbols with integer tables exported for those gains; PSNR: the 8-bit
decoded image, per crop, then the mean. The last column is JPEG's rate at the same PSNR
(interpolated in log-rate over its quality sweep) divided into ours: below 1, fewer bits than
JPEG. When the PSNR climbs by tenths of a dB while the rate grows by half, the transforms, not
the rate, hold the top back.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

import numpy as np
import torch


def _to_uint8(x: torch.Tensor) -> np.ndarray:
    """``[n, 3, H, W]`` floats in [0, 1] -> uint8 ``[n, H, W, 3]``."""
    return (x.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()


@torch.no_grad()
def coded_point(model, x: torch.Tensor, y: torch.Tensor, gain: torch.Tensor,
                inv_gain: torch.Tensor) -> dict:
    """Codes latent ``y [n, M, h, w]`` of crops ``x [n, 3, 16h, 16w]`` with ``gain``,
    ``inv_gain [M]``: ``{"bpp", "psnr"}``, bpp from the range coder's bytes."""
    from fastcodec import metrics

    tables = model.entropy.export_tables(gain)
    med = torch.from_numpy(tables.medians)[None, :, None, None]
    symbols = torch.round(y * gain[None, :, None, None] - med)
    indexes = np.broadcast_to(np.arange(y.shape[1], dtype=np.int32)[:, None, None],
                              y.shape[1:])
    streams = tables.coder().encode_batch(symbols.to(torch.int32).numpy(), indexes)
    x_hat = model.g_s((symbols + med) * inv_gain[None, :, None, None])
    pixels = x.shape[-1] * x.shape[-2]
    rgb, dec = _to_uint8(x), _to_uint8(x_hat)
    return {"bpp": float(np.mean([8.0 * len(s) / pixels for s in streams])),
            "psnr": float(np.mean([metrics.psnr(a, b) for a, b in zip(rgb, dec)]))}


def finer_points(model, x: torch.Tensor, factors: Sequence[float], steps: int) -> list:
    """Per factor ``f``: ``{"factor", "lambda", "plain": point, "refined": point}`` (refined:
    ``steps`` of :func:`fastcodec.refine.refine_latent` at ``lambda = f^2 * lambda_top``)."""
    from fastcodec.refine import refine_latent

    model.eval()
    top = model.num_qualities - 1
    g_top, ig_top = model.gains(top)
    lam_top = float(model.lambdas[top])
    with torch.no_grad():
        y0 = model.g_a(x).float()
    out = []
    for f in factors:
        g, ig = g_top.detach() * f, ig_top.detach() / f
        lam = lam_top * f * f
        med = torch.from_numpy(model.entropy.export_tables(g).medians)[None, :, None, None]
        y = refine_latent(model.g_s, model.entropy, x, y0, g[None, :, None, None],
                          ig[None, :, None, None], med, lam, steps)
        out.append({"factor": float(f), "lambda": lam,
                    "plain": coded_point(model, x, y0, g, ig),
                    "refined": coded_point(model, x, y, g, ig)})
    return out


def jpeg_points(x: torch.Tensor, qualities: Sequence[int]) -> list:
    """Pillow JPEG (``fastcodec eval``'s settings) on the same crops: ``[{"quality", "bpp",
    "psnr"}]``."""
    from fastcodec import evaluate

    images = [(f"crop{i}", a) for i, a in enumerate(_to_uint8(x))]
    points = evaluate.run_anchor("jpeg", images, qualities, evaluate.anchor_settings("jpeg"),
                                 progress=lambda line: None)
    return [{"quality": p["quality"], "bpp": p["bpp"], "psnr": p["psnr"]} for p in points]


def jpeg_rate_at(points: list, psnr: float) -> float:
    """JPEG's bpp at ``psnr`` (log-rate interpolated; NaN outside its sweep)."""
    ps = np.array([p["psnr"] for p in points])
    rates = np.log([p["bpp"] for p in points])
    order = np.argsort(ps)
    if not ps.min() <= psnr <= ps.max():
        return float("nan")
    return float(np.exp(np.interp(psnr, ps[order], rates[order])))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model", help="shipped model id or training checkpoint")
    p.add_argument("--val", default="../shared/data/val", help="validation images")
    p.add_argument("--images", type=int, default=6)
    p.add_argument("--crop", type=int, default=256)
    p.add_argument("--factors", default="1,1.5,2,3",
                   help="grid refinements past the top quality (1: the top quality itself)")
    p.add_argument("--steps", type=int, default=50, help="refinement steps")
    p.add_argument("--jpeg-qualities", default="50,60,70,80,85,90,93,95,97")
    args = p.parse_args(argv)

    from fastcodec.train.checkpoints import load_model
    from fastcodec.train.data import load_val

    model = load_model(args.model)
    x = load_val(args.val, args.crop, args.images)
    if x is None:
        p.error(f"no image of at least {args.crop}px under {args.val}")
    factors = [float(v) for v in args.factors.split(",")]
    jpeg = jpeg_points(x, [int(v) for v in args.jpeg_qualities.split(",")])
    print(f"{args.model}, {len(x)} crops of {args.crop}px; bpp from the coded bytes; "
          f"x JPEG = our bpp / JPEG's bpp at the same PSNR")
    print(f"{'factor':>6} {'lambda':>7} | {'bpp':>6} {'PSNR':>6} {'x JPEG':>6} | refined "
          f"{args.steps}: {'bpp':>6} {'PSNR':>6} {'x JPEG':>6}")
    for row in finer_points(model, x, factors, args.steps):
        cells = []
        for key in ("plain", "refined"):
            pt = row[key]
            cells.append(f"{pt['bpp']:6.3f} {pt['psnr']:6.2f} "
                         f"{pt['bpp'] / jpeg_rate_at(jpeg, pt['psnr']):6.2f}")
        print(f"{row['factor']:6.2f} {row['lambda']:7.3f} | {cells[0]} | refined "
              f"{args.steps}: {cells[1]}", flush=True)
    print("JPEG: " + ", ".join(f"q{j['quality']} {j['bpp']:.3f} bpp {j['psnr']:.2f} dB"
                               for j in jpeg))
    return 0


if __name__ == "__main__":
    sys.exit(main())
