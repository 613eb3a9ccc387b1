"""The images of an evaluation: files and folders to paths, a file to RGB uint8."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from fastcodec import metrics
from fastcodec.evaluate.common import IMAGE_SUFFIXES, EvalError


def collect_images(inputs: Sequence, max_images: Optional[int] = None) -> list[Path]:
    """Image paths from files and folders (a folder gives its files with an image suffix,
    sorted by name, not recursive); the first ``max_images`` of them when given."""
    paths: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(f for f in p.iterdir()
                           if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise EvalError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in folder {p}")
            paths.extend(found)
        elif p.is_file():
            paths.append(p)
        else:
            raise EvalError(f"no such file or folder: {p}")
    if max_images is not None:
        if max_images < 1:
            raise EvalError(f"--max-images must be >= 1, got {max_images}")
        paths = paths[:max_images]
    if not paths:
        raise EvalError("no images to evaluate")
    return paths


def load_rgb(path: Path) -> np.ndarray:
    """An image file as RGB uint8 [H, W, 3] (Pillow's ``convert("RGB")``: grey is replicated,
    alpha dropped)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            rgb = np.ascontiguousarray(np.asarray(im.convert("RGB")))
    except (OSError, ValueError) as exc:  # unreadable, truncated, not an image
        raise EvalError(f"cannot read {path}: {exc}") from None
    if min(rgb.shape[:2]) < metrics.WINDOW_SIZE:
        raise EvalError(f"{path}: {rgb.shape[1]}x{rgb.shape[0]} is too small: MS-SSIM needs "
                        f">= {metrics.WINDOW_SIZE} px on each side")
    return rgb
