"""Packs training and validation images into the checkout's ``shared/data/`` so that they travel
to a lent GPU machine, which receives the checkout (at most 64 MiB in all) and not ``../shared``.

    python training/pack_gpu_data.py                 # then: bash training/gpu_train.sh "$OUT"

The training crops (256x256 PNG, ~110 KB each) are re-encoded as JPEG quality 95 without chroma
subsampling (~3x smaller, 41.8 dB mean PSNR against the PNGs: finer than the codec's top
quality, ~30 dB on these crops), in a seeded random order, until the budget is spent: by
default what the 64 MiB leave after the tracked files, less 2 MiB (385 of the 1,107 crops with
the tree of 2026-12-05). Validation images become centre crops of ``--val-crop``
pixels, kept as PNG. ``shared/`` is ignored by git, so the pack is never committed. Prints one
summary line (counts, MB, mean PSNR of the re-encoding).
"""

from __future__ import annotations

import argparse
import io
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from fastcodec.train.data import centre_crop, load_rgb

ROOT = Path(__file__).resolve().parents[1]
LIMIT = 64 * 2**20  # what a lent machine receives: the checkout, shared/ and carried paths


def tracked_bytes(root: Path = ROOT) -> int:
    """Bytes of the files git tracks in ``root`` (what travels besides shared/)."""
    names = subprocess.run(["git", "ls-files", "-z"], cwd=root, check=True,
                           capture_output=True).stdout.split(b"\0")
    return sum((root / n.decode()).stat().st_size for n in names if n and (root / n.decode()).is_file())


def _png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def _jpeg_bytes(image: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=quality, subsampling=0)
    return buf.getvalue()


def _psnr(a: Image.Image, b_bytes: bytes) -> float:
    x = np.asarray(a, np.float64)
    y = np.asarray(Image.open(io.BytesIO(b_bytes)).convert("RGB"), np.float64)
    return float(10 * np.log10(255.0**2 / max(np.mean((x - y) ** 2), 1e-10)))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--train", default=str(ROOT / ".." / "shared" / "data" / "train"))
    p.add_argument("--val", default=str(ROOT / ".." / "shared" / "data" / "val"))
    p.add_argument("--out", default=str(ROOT / "shared" / "data"))
    p.add_argument("--budget-mb", type=float, default=None,
                   help="MiB for the pack (default: 64 MiB less the tracked files, less 2 MiB)")
    p.add_argument("--jpeg-quality", type=int, default=95)
    p.add_argument("--val-images", type=int, default=8)
    p.add_argument("--val-crop", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    budget = (int(args.budget_mb * 2**20) if args.budget_mb is not None
              else LIMIT - tracked_bytes() - 2 * 2**20)
    train_in = sorted(Path(args.train).glob("*.png"))
    val_in = sorted(Path(args.val).glob("*.png"))[: args.val_images]
    if not train_in:
        p.error(f"no PNG training images in {args.train}")
    out = Path(args.out)
    for sub in ("train", "val"):
        (out / sub).mkdir(parents=True, exist_ok=True)
        for old in (out / sub).iterdir():
            old.unlink()

    used = 0
    for path in val_in:  # validation first: it is small and every run wants it
        data = _png_bytes(Image.fromarray(centre_crop(load_rgb(path), args.val_crop)))
        (out / "val" / path.name).write_bytes(data)
        used += len(data)
    random.Random(args.seed).shuffle(train_in)
    kept, psnrs = 0, []
    for path in train_in:
        image = Image.open(path).convert("RGB")
        data = _jpeg_bytes(image, args.jpeg_quality)
        if used + len(data) > budget:
            break
        (out / "train" / (path.stem + ".jpg")).write_bytes(data)
        used, kept = used + len(data), kept + 1
        psnrs.append(_psnr(image, data))
    if not kept:
        print(f"pack_gpu_data: no room: the budget is {budget / 2**20:.1f} MiB", file=sys.stderr)
        return 1
    print(f"pack_gpu_data: {kept} of {len(train_in)} training crops (JPEG q{args.jpeg_quality} "
          f"4:4:4, mean PSNR {np.mean(psnrs):.1f} dB vs PNG) and {len(val_in)} validation crops "
          f"in {out}: {used / 2**20:.1f} MiB of a {budget / 2**20:.1f} MiB budget")
    return 0


if __name__ == "__main__":
    sys.exit(main())
