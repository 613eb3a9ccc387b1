"""Validation rate-distortion of the ablation runs in this folder, one panel per step.

    python training/ablations/plot_ablation.py [--steps 1000 2000 3000] [-o ablation.png]

Reads ``*/log.jsonl`` (the ``val`` events ``fastcodec train`` writes) and plots PSNR against bpp
for every run; prints PSNR at a few common rates (log-rate interpolation inside both curves).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def val_curves(log: Path) -> dict:
    """``{step: (bpp array, psnr array)}`` of one run's validation events."""
    out = {}
    for line in log.read_text().splitlines():
        event = json.loads(line)
        if event.get("event") == "val":
            out[int(event["step"])] = (np.array(event["bpp"]), np.array(event["psnr"]))
    return out


def psnr_at(curve, rate: float) -> float:
    """PSNR at ``rate`` bpp, interpolated in log-rate; NaN outside the curve."""
    bpp, psnr = curve
    order = np.argsort(bpp)
    if not bpp.min() <= rate <= bpp.max():
        return float("nan")
    return float(np.interp(np.log(rate), np.log(bpp[order]), psnr[order]))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, nargs="+", default=[1000, 2000, 3000])
    p.add_argument("--rates", type=float, nargs="+", default=[0.2, 0.3, 0.45])
    p.add_argument("-o", "--out", default=str(HERE / "ablation.png"))
    args = p.parse_args(argv)
    runs = {d.name: val_curves(d / "log.jsonl") for d in sorted(HERE.iterdir())
            if (d / "log.jsonl").exists()}
    print("PSNR (dB) of the validation crops at equal rates")
    print(f"{'step':>6}{'bpp':>6}" + "".join(f"{name:>15}" for name in runs))
    for step in args.steps:
        for rate in args.rates:
            row = "".join(f"{psnr_at(c[step], rate):>15.2f}" for c in runs.values())
            print(f"{step:>6}{rate:>6.2f}{row}")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(args.steps), figsize=(4.2 * len(args.steps), 3.6),
                             sharey=True)
    for ax, step in zip(np.atleast_1d(axes), args.steps):
        for name, curves in runs.items():
            bpp, psnr = curves[step]
            ax.plot(bpp, psnr, "o-", label=name, markersize=4)
        ax.set_title(f"step {step}")
        ax.set_xlabel("bpp (likelihoods, 29 val crops 256x256)")
        ax.grid(alpha=0.3)
    np.atleast_1d(axes)[0].set_ylabel("RGB PSNR (dB)")
    np.atleast_1d(axes)[0].legend()
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
