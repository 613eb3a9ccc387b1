"""What encoder-side refinement (``refine_steps``) buys for its encode time: BD-rate against no
refinement, PSNR gain per quality and encode time per megapixel, for a list of step counts, side
by side in one run, in float32 and (optionally) bfloat16 transforms.

    python benches/refine_tradeoff.py                              # 8 validation crops, CPU
    python benches/refine_tradeoff.py --steps 0,10,50 --dtypes float32,bfloat16 --device cuda \\
        -o benches/results/refine-tradeoff-h100

Images: centre crops (``--crop``) of the first ``--max-images`` images of ``--images`` (default
``../shared/data/val``: never tune on Kodak). Per (dtype, steps, quality): mean bpp from the real
bytes, mean RGB PSNR of the decoded images, encode seconds (refinement included; the model load
and a warm-up call excluded). BD-rate is against steps 0 in the same dtype, over the curves'
overlap. Writes ``OUT/refine-tradeoff.json`` and ``OUT/refine-tradeoff.png`` (saving vs encode
time, PSNR gain per quality) and prints a table. Timing is wall clock on a machine that should
be otherwise idle: say what else ran.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def load_crops(folder: Path, count: int, crop: int) -> list:
    """Centre crops ``crop x crop`` (of smaller images: as much as fits, in multiples of 16) of
    the first ``count`` images, as uint8 ``[H, W, 3]`` arrays."""
    from fastcodec.evaluate import collect_images, load_rgb
    from fastcodec.train.data import centre_crop

    return [np.ascontiguousarray(centre_crop(load_rgb(path), crop))
            for path in collect_images([str(folder)], max_images=count)]


def measure(images: list, *, model: str, device, dtype: str, steps: int,
            qualities: list) -> list:
    """One point per quality: ``{quality, bpp, psnr, encode_s}`` (means over the images;
    encode_s for all of them)."""
    import torch

    import fastcodec
    from fastcodec.metrics import psnr

    codec = fastcodec.Codec(model=model, device=device, refine_steps=steps,
                            transform_dtype=getattr(torch, dtype))
    pixels = sum(im.shape[0] * im.shape[1] for im in images)
    codec.compress(images[:1], quality=qualities[0])  # warm-up: model load, first calls
    points = []
    for q in qualities:
        t0 = time.perf_counter()
        blobs = codec.compress(images, quality=q)
        seconds = time.perf_counter() - t0
        decoded = codec.decompress(blobs)
        points.append({
            "quality": q,
            "bpp": 8 * sum(len(b) for b in blobs) / pixels,
            "psnr": float(np.mean([psnr(a, b) for a, b in zip(images, decoded)])),
            "encode_s": seconds,
        })
    return points


def summarize(runs: list, megapixels: float) -> list:
    """Adds ``bd_rate_vs_0`` (percent, same dtype) and ``encode_s_per_mp`` to each run."""
    from fastcodec.metrics import bd_rate

    base = {r["dtype"]: r for r in runs if r["steps"] == 0}
    for r in runs:
        b = base.get(r["dtype"])
        pts, ref = r["points"], (b["points"] if b else None)
        r["bd_rate_vs_0"] = (None if ref is None else bd_rate(
            [p["bpp"] for p in ref], [p["psnr"] for p in ref],
            [p["bpp"] for p in pts], [p["psnr"] for p in pts]))
        r["psnr_gain_vs_0"] = (None if ref is None else
                               [p["psnr"] - q["psnr"] for p, q in zip(pts, ref)])
        r["encode_s_per_mp"] = sum(p["encode_s"] for p in pts) / (len(pts) * megapixels)
    return runs


def plot(runs: list, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for dtype in dict.fromkeys(r["dtype"] for r in runs):
        rs = [r for r in runs if r["dtype"] == dtype and r["bd_rate_vs_0"] is not None]
        left.plot([r["encode_s_per_mp"] for r in rs], [-r["bd_rate_vs_0"] for r in rs], "o-",
                  label=dtype)
        for r in rs:
            left.annotate(str(r["steps"]), (r["encode_s_per_mp"], -r["bd_rate_vs_0"]),
                          textcoords="offset points", xytext=(4, -10), fontsize=8)
    left.set_xscale("log")
    left.set_xlabel("encode time (s per megapixel, per quality)")
    left.set_ylabel("bits saved at equal PSNR vs no refinement (%)")
    left.set_title("saving vs encode time (labels: steps)")
    left.grid(True, alpha=0.3)
    left.legend()
    first = runs[0]["dtype"]
    for r in runs:
        if r["dtype"] == first and r["steps"] and r["psnr_gain_vs_0"] is not None:
            right.plot([p["quality"] for p in r["points"]], r["psnr_gain_vs_0"], "o-",
                       label=f"{r['steps']} steps")
    right.set_xlabel("quality")
    right.set_ylabel("PSNR gain vs no refinement (dB)")
    right.set_title(f"gain per quality ({first})")
    right.grid(True, alpha=0.3)
    right.legend()
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _ints(text: str) -> list:
    return [int(v) for v in text.split(",") if v.strip()]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", default=str(ROOT / ".." / "shared" / "data" / "val"))
    p.add_argument("--max-images", type=int, default=8)
    p.add_argument("--crop", type=int, default=256)
    p.add_argument("--model", default=None, help="model id (default: the zoo's)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--steps", type=_ints, default=[0, 5, 10, 20, 50, 100])
    p.add_argument("--qualities", type=_ints, default=[1, 2, 3, 4, 5, 6])
    p.add_argument("--dtypes", default="float32", help="comma-separated: float32,bfloat16")
    p.add_argument("-o", "--out", default="refine-tradeoff")
    args = p.parse_args(argv)

    import torch

    import fastcodec
    from fastcodec.zoo import DEFAULT_MODEL

    model = args.model or DEFAULT_MODEL
    if 0 not in args.steps:
        p.error("--steps must include 0 (the reference)")
    images = load_crops(Path(args.images), args.max_images, args.crop)
    if not images:
        p.error(f"no images in {args.images}")
    megapixels = sum(im.shape[0] * im.shape[1] for im in images) / 1e6
    runs = []
    for dtype in args.dtypes.split(","):
        for steps in args.steps:
            t0 = time.perf_counter()
            points = measure(images, model=model, device=args.device, dtype=dtype, steps=steps,
                             qualities=args.qualities)
            runs.append({"dtype": dtype, "steps": steps, "points": points})
            print(f"[refine_tradeoff] {dtype} {steps} steps: {time.perf_counter() - t0:.0f} s",
                  file=sys.stderr, flush=True)
    summarize(runs, megapixels)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = {
        "command": " ".join(["python benches/refine_tradeoff.py",
                             *(argv if argv is not None else sys.argv[1:])]),
        "model": model, "device": args.device, "images": len(images), "megapixels": megapixels,
        "crop": args.crop, "source": args.images,
        "environment": {"fastcodec": fastcodec.__version__, "torch": torch.__version__,
                        "threads": torch.get_num_threads(), "machine": platform.machine(),
                        "processor": platform.processor(),
                        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())},
        "runs": runs,
    }
    (out / "refine-tradeoff.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(runs, out / "refine-tradeoff.png",
         f"{model}, {len(images)} crops of {args.crop}px, {args.device}")
    print(f"{'dtype':9} {'steps':>5} {'BD-rate':>8} {'s/MP':>7}  PSNR gain per quality (dB)")
    for r in runs:
        gains = " ".join(f"{g:+.2f}" for g in (r["psnr_gain_vs_0"] or []))
        bd = "" if r["bd_rate_vs_0"] is None else f"{r['bd_rate_vs_0']:+.1f}%"
        print(f"{r['dtype']:9} {r['steps']:>5} {bd:>8} {r['encode_s_per_mp']:7.2f}  {gains}")
    print(f"wrote {out / 'refine-tradeoff.json'} and {out / 'refine-tradeoff.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
