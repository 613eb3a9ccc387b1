"""Training data: the image files of a folder, decoding them, random crops of a batch
(CropSampler) and the centre crops of the validation images."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import numpy as np
import torch

from fastcodec.train.options import TrainError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".ppm", ".bmp", ".webp"}


def list_images(folder) -> List[Path]:
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder not found: {root}")
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


def load_rgb(path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


class CropSampler:
    """Random crops (with random horizontal flips) from images held in memory."""

    def __init__(self, images: List[np.ndarray], crop: int, seed) -> None:
        if not images:
            raise ValueError("no training images")
        self.crop = crop
        self.images = []
        for im in images:  # images smaller than the crop are padded by reflection once
            h, w = im.shape[:2]
            ph, pw = max(0, crop - h), max(0, crop - w)
            if ph or pw:
                im = np.pad(im, ((0, ph), (0, pw), (0, 0)), mode="reflect" if
                            (ph < h and pw < w) else "edge")
            self.images.append(im)
        self.rng = np.random.default_rng(seed)

    def batch(self, n: int) -> torch.Tensor:
        c = self.crop
        out = np.empty((n, c, c, 3), dtype=np.uint8)
        for i in range(n):
            im = self.images[self.rng.integers(len(self.images))]
            top = self.rng.integers(im.shape[0] - c + 1)
            left = self.rng.integers(im.shape[1] - c + 1)
            patch = im[top : top + c, left : left + c]
            out[i] = patch[:, ::-1] if self.rng.random() < 0.5 else patch
        return torch.from_numpy(out).permute(0, 3, 1, 2).float().div_(255.0)

    def state(self) -> dict:
        return self.rng.bit_generator.state

    def set_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state


def centre_crop(im: np.ndarray, size: int) -> np.ndarray:
    h, w = im.shape[:2]
    ch, cw = min(size, h), min(size, w)
    ch, cw = ch - ch % 16, cw - cw % 16
    top, left = (h - ch) // 2, (w - cw) // 2
    return im[top : top + ch, left : left + cw]


def load_val(folder, size: int, max_images: int = 0) -> Optional[torch.Tensor]:
    """Centre crops (``size``, same for all) of the validation images as ``[V, 3, s, s]``."""
    if not folder:
        return None
    paths = list_images(folder)
    if max_images:
        paths = paths[:max_images]
    crops = [centre_crop(load_rgb(p), size) for p in paths]
    kept = [c for c in crops if c.shape[:2] == (size, size)]
    if not kept:
        raise TrainError(f"no validation image in {folder} is at least {size}x{size} "
                         f"({len(crops)} images); lower --val-crop or leave out --val")
    if len(kept) < len(crops):
        print(f"[train] note: {len(crops) - len(kept)} of {len(crops)} validation images are "
              f"smaller than --val-crop {size} and are left out", flush=True)
    return torch.from_numpy(np.stack(kept)).permute(0, 3, 1, 2).float().div_(255.0)
