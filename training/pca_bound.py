"""A linear yardstick for the latent's size: the PSNR a k-component PCA of 16x16x3 pixel blocks
reaches on the validation images, for several k.

    python training/pca_bound.py --train ../shared/data/train --val ../shared/data/val

A codec whose latent is at 1/16 resolution keeps M numbers per 16x16x3 block (768 values). Its
*unquantized* reconstruction (``psnr_ceiling`` in the training log) should beat a linear PCA with
k = M components fitted on the training images; when it does not, the transforms, not M, limit
the top quality. PSNR here pools the squared error over all validation blocks (peak 255).
"""

from __future__ import annotations

import argparse
import numpy as np

from fastcodec.train.data import list_images, load_rgb

BLOCK = 16


def image_blocks(paths, stride: int = 1) -> np.ndarray:
    """Non-overlapping BLOCKxBLOCK RGB blocks of every ``stride``-th image: float64 [n, BLOCK*BLOCK*3]."""
    rows = []
    for path in paths[::stride]:
        rgb = load_rgb(path).astype(np.float64)
        h, w = rgb.shape[0] // BLOCK * BLOCK, rgb.shape[1] // BLOCK * BLOCK
        tiles = rgb[:h, :w].reshape(h // BLOCK, BLOCK, w // BLOCK, BLOCK, 3).swapaxes(1, 2)
        rows.append(tiles.reshape(-1, BLOCK * BLOCK * 3))
    if not rows:
        raise SystemExit("no images found")
    return np.concatenate(rows)


def pca_psnr(train: np.ndarray, val: np.ndarray, ks) -> dict:
    """PSNR (dB) of ``val`` projected on the top-k principal axes of ``train``, for each k."""
    mean = train.mean(axis=0)
    _, axes = np.linalg.eigh(np.cov((train - mean).T))
    axes = axes[:, ::-1]  # largest variance first
    centred = val - mean
    out = {}
    for k in ks:
        basis = axes[:, :k]
        residual = centred - (centred @ basis) @ basis.T
        out[k] = float(10 * np.log10(255.0**2 / np.mean(residual**2)))
    return out


def _images(folder: str):
    """The images the trainer would read from ``folder`` (``fastcodec.train.data.list_images``)."""
    try:
        return list_images(folder)
    except FileNotFoundError:
        raise SystemExit(f"not a folder: {folder}") from None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", default="../shared/data/train", help="folder the axes are fitted on")
    parser.add_argument("--val", default="../shared/data/val", help="folder the PSNR is measured on")
    parser.add_argument("--train-stride", type=int, default=3, help="use every n-th training image")
    parser.add_argument("-k", type=int, nargs="+", default=[64, 128, 192, 256, 320, 384])
    args = parser.parse_args(argv)
    train = image_blocks(_images(args.train), args.train_stride)
    val = image_blocks(_images(args.val))
    print(f"{len(train)} training blocks, {len(val)} validation blocks of {BLOCK}x{BLOCK}x3")
    for k, psnr in pca_psnr(train, val, args.k).items():
        print(f"k = {k:4d}: {psnr:6.2f} dB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
